//! Internal error type of the HTTP test server.

/// Everything that can end a connection or a stream early inside the test server.
///
/// These errors never reach the user of the test kit: they are logged with
/// `tracing` and end the affected connection or stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Socket or TLS I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The `h2` crate reported an error.
    #[error("http/2 error: {0}")]
    H2(#[from] h2::Error),
    /// Building an `http` value failed (bad header value, URI, ...).
    #[error("http value error: {0}")]
    Http(#[from] http::Error),
    /// The client sent something this server refuses to interpret.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The client's request head exceeded the size or header count limit.
    #[error("request head too large")]
    HeadTooLarge,
    /// The peer closed a stream before we were done with it.
    #[error("stream closed by peer")]
    StreamClosed,
}
