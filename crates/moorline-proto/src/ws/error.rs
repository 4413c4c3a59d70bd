//! Why a WebSocket opening handshake failed.

/// A WebSocket opening handshake the server answered wrongly, or a bad configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with another status than 101 (HTTP/1.1) or 2xx (HTTP/2).
    #[error("the server refused the WebSocket handshake with status {status}")]
    Status {
        /// The status it sent.
        status: u16,
    },
    /// `Upgrade: websocket` is missing from a 101 response.
    #[error("the 101 response lacks `upgrade: websocket`")]
    MissingUpgrade,
    /// `Connection: upgrade` is missing from a 101 response.
    #[error("the 101 response lacks `connection: upgrade`")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is missing or not the hash of our key.
    #[error("bad sec-websocket-accept: expected {expected:?}, got {got:?}")]
    BadAccept {
        /// What RFC 6455 §4.2.2 says it must be for our key.
        expected: String,
        /// What the server sent (`None`: nothing).
        got: Option<String>,
    },
    /// The server chose a subprotocol we did not offer (or sent several).
    #[error("the server chose subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// The server answered with an extension we did not offer, or a bad one.
    #[error("bad sec-websocket-extensions: {0}")]
    BadExtension(String),
    /// A header value is not visible ASCII.
    #[error("header {0} is not valid text")]
    BadHeaderValue(&'static str),
    /// The handshake options are invalid.
    #[error("invalid WebSocket options: {0}")]
    BadConfig(String),
}

/// Why a WebSocket message was not sent (see [`Session::send`](super::Session::send)).
///
/// Every outgoing check lives in [`check_outgoing`](super::check_outgoing) and the session's
/// close state; nothing was queued when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A ping or pong payload over 125 bytes (RFC 6455 §5.5).
    #[error("ping and pong payloads are at most 125 bytes; this one has {0}")]
    ControlTooLong(usize),
    /// A close code that may not appear on the wire (1005, 1006, 1015, 0-999, ...).
    #[error("close code {0} may not be sent (allowed: 1000-1003, 1007-1014, 3000-4999)")]
    CloseCode(super::CloseCode),
    /// A close reason over 123 bytes.
    #[error("close reasons are at most 123 bytes; this one has {0}")]
    CloseReasonTooLong(usize),
    /// Our close frame was already sent (or the session ended): nothing may follow it.
    #[error("the WebSocket is closing or closed: nothing may be sent after the close frame")]
    Closed {
        /// This is the first refusal since the close: a shell reports it to the owner once
        /// and only logs the later ones.
        first: bool,
    },
    /// The encoder failed (permessage-deflate could not compress the message).
    #[error("could not encode the message: {0}")]
    Encode(#[source] super::ProtocolError),
}
