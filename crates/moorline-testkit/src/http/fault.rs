//! Faults the [`TestServer`](super::TestServer) can be told to inject.

/// A misbehaviour the [`TestServer`](super::TestServer) applies from the moment
/// it is set with [`TestServer::set_fault`](super::TestServer::set_fault).
///
/// Connection-level faults ([`RefuseConnections`](Fault::RefuseConnections),
/// [`ResetConnections`](Fault::ResetConnections), [`SilentTls`](Fault::SilentTls),
/// [`InvalidH2Frames`](Fault::InvalidH2Frames), [`GoAwayAfter`](Fault::GoAwayAfter))
/// are sampled once when a TCP connection is accepted. Request-level faults
/// ([`GarbageStatusLine`](Fault::GarbageStatusLine),
/// [`OversizedHeaders`](Fault::OversizedHeaders), [`RefuseStreams`](Fault::RefuseStreams),
/// [`Stall`](Fault::Stall)) are sampled each time a request head has been received.
/// Connections and requests already in progress are not affected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// HTTP/1.1: answer any request with the bytes `HTTX/9.9 what\r\n\r\n`,
    /// then close the connection. No effect on HTTP/2.
    GarbageStatusLine,
    /// Answer with a `200` whose head carries one `x-oversized` header whose
    /// value is this many bytes long (and an empty body). Meant for HTTP/1.1;
    /// on HTTP/2 the same header is sent through `h2` (which may split it over
    /// CONTINUATION frames or fail the stream if the peer's limit forbids it).
    OversizedHeaders(usize),
    /// HTTP/2 (either ALPN `h2` or plain prior knowledge): after reading the
    /// client preface, send a valid empty SETTINGS frame, then a DATA frame on
    /// stream 0 (a connection protocol error), then keep the socket open,
    /// reading and discarding, until the client closes it.
    InvalidH2Frames,
    /// Accept each new TCP connection, then immediately close it gracefully
    /// (FIN) without writing anything.
    RefuseConnections,
    /// Accept each new TCP connection, then immediately reset it (RST, via
    /// `SO_LINGER` 0).
    ResetConnections,
    /// HTTP/2: reset every new stream with `REFUSED_STREAM` (via `h2`'s
    /// `send_reset`). No effect on HTTP/1.1.
    RefuseStreams,
    /// Accept connections (complete the TLS handshake and the HTTP/2
    /// preface/SETTINGS exchange), read requests, never answer them.
    Stall,
    /// HTTP/2 raw mode (no `h2` crate): read the client preface, send an empty
    /// SETTINGS frame, ACK the client's SETTINGS and PINGs, count HEADERS
    /// frames on odd stream ids and, once `streams` of them were received, send
    /// `GOAWAY(last_stream_id, NO_ERROR)`, keep reading for about 200 ms, then
    /// close the connection. No stream is ever answered.
    /// HTTP/1.1 connections are served normally.
    GoAwayAfter {
        /// Number of HEADERS frames (new streams) to wait for before the GOAWAY.
        /// `0` sends the GOAWAY right after the SETTINGS frame.
        streams: usize,
        /// The last-stream-id carried by the GOAWAY frame.
        last_stream_id: u32,
    },
    /// Accept TCP connections but never start the TLS handshake (nothing is
    /// read or written) until the connection is closed by the test. On a
    /// plain-TCP server the connection is likewise accepted and left silent.
    SilentTls,
    /// Half-open: accept TCP connections, then neither read nor write, keeping the socket
    /// open. A client that already considers itself connected (HTTP/2 sends its preface
    /// without waiting) sees a silently dead peer: only keepalive can notice.
    HalfOpen,
}

impl Fault {
    /// Whether this fault is sampled once per accepted connection (as opposed
    /// to once per received request).
    pub fn is_connection_level(&self) -> bool {
        matches!(
            self,
            Fault::RefuseConnections
                | Fault::ResetConnections
                | Fault::SilentTls
                | Fault::HalfOpen
                | Fault::InvalidH2Frames
                | Fault::GoAwayAfter { .. }
        )
    }
}
