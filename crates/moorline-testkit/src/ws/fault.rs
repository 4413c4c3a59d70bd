//! [`Fault`]: the misbehaviours a [`MockServer`](super::MockServer) can inject.

use std::time::Duration;

use super::frame::Frame;

/// A misbehaviour, applied with [`MockServer::fault`](super::MockServer::fault)
/// (every open connection) or [`MockServer::fault_to`](super::MockServer::fault_to)
/// (one client).
///
/// Connection faults act on connections that exist when applied.
/// [`RefuseConnections`](Fault::RefuseConnections) and
/// [`RejectUpgrade`](Fault::RejectUpgrade) are server-wide and act on *new*
/// connections only; `fault_to` ignores them (and returns `false`).
///
/// Over HTTP/2 (RFC 8441) each WebSocket session is a client of its own:
/// frame-level faults act on the session's bytes (inside its DATA frames),
/// while [`Fin`](Fault::Fin), [`Reset`](Fault::Reset), [`HalfOpen`](Fault::HalfOpen)
/// and [`GoAway`](Fault::GoAway) act on the TCP connection, so on every
/// session it carries.
///
/// Faults that write ([`Close`](Fault::Close), [`StallAfter`](Fault::StallAfter),
/// [`PartialFrame`](Fault::PartialFrame)) are queued behind messages already
/// injected to the client, so these are fully sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Send a close frame with this code and reason, wait up to 2 s for the
    /// client's close frame, then close the TCP connection (FIN).
    Close {
        /// Close code (e.g. 1001 going away, 1011 internal error, 4000+ private).
        code: u16,
        /// Close reason (at most 123 bytes of UTF-8 on the wire).
        reason: String,
    },
    /// Close the TCP connection (FIN) without a close frame. The server keeps
    /// discarding incoming bytes for about a second so the close stays a FIN.
    Fin,
    /// Reset the TCP connection (RST, via `SO_LINGER` 0); no close frame.
    Reset,
    /// Stop reading and writing, keep the socket open (no FIN, no RST):
    /// the client's writes pile up unread in the kernel, nothing arrives.
    /// The socket stays open until the server is dropped.
    HalfOpen,
    /// Let this many more outgoing bytes (WebSocket bytes, below TLS if any)
    /// through, then stop writing for good; reading continues.
    StallAfter(usize),
    /// Write only the first `bytes` bytes of the encoded `frame` (server frames
    /// are unmasked: 2..10 header bytes then the payload) and stop writing for good.
    PartialFrame {
        /// The frame to start sending.
        frame: Frame,
        /// How many of its encoded bytes to send.
        bytes: usize,
    },
    /// Write every outgoing byte separately, waiting this long between bytes
    /// (in force until the connection ends).
    SlowDrip(Duration),
    /// Close the listening socket for this long, then listen again on the same
    /// port: new connection attempts are refused by the kernel (`ECONNREFUSED`).
    /// Server-wide.
    RefuseConnections(Duration),
    /// HTTP/2 connections only: start a graceful shutdown, as a server going
    /// away does: GOAWAY, sessions already open run on, new streams are
    /// refused, and the connection closes when the last session ends. Applied to
    /// an HTTP/2 WebSocket session, it acts on that session's connection;
    /// HTTP/1.1 connections are not affected (and not counted).
    GoAway,
    /// Answer new upgrade requests with this HTTP status (e.g. 503) instead of
    /// `101`, until [`MockServer::clear_faults`](super::MockServer::clear_faults).
    /// Server-wide.
    RejectUpgrade(u16),
}

impl Fault {
    /// Whether this fault is server-wide (acts on new connections) rather than per connection.
    pub fn is_server_wide(&self) -> bool {
        matches!(self, Fault::RefuseConnections(_) | Fault::RejectUpgrade(_))
    }
}
