//! Typed errors: why a connection attempt failed, why a connection went down, why the worker
//! exited, why a stream failed, and why an API call was refused.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::StreamRef;

mod cause;
mod kind;

pub use cause::{
    AlpnMismatch, Http2Failure, Http2HandshakeFailure, OptionsError, PemItem, ProtocolFailure, RequestError, UrlProblem,
};
pub use kind::ErrorKind;

/// Why one attempt to establish a connection failed (before `Up`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The DNS lookup took longer than the lookup timeout.
    #[error("DNS lookup of {host:?} timed out after {timeout:?}")]
    LookupTimeout {
        /// Host being resolved.
        host: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The DNS lookup failed.
    #[error("DNS lookup of {host:?} failed: {source}")]
    Lookup {
        /// Host being resolved.
        host: String,
        /// The resolver's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The host resolved to no address.
    #[error("{host:?} resolved to no address")]
    NoAddress {
        /// Host being resolved.
        host: String,
    },
    /// The TCP connect took longer than the connect timeout.
    #[error("TCP connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Address tried last.
        addr: SocketAddr,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The TCP connect failed (refused, unreachable...).
    #[error("TCP connect to {addr} failed: {source}")]
    Connect {
        /// Address tried last.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The TLS handshake took longer than the TLS handshake timeout.
    #[error("TLS handshake with {server_name:?} timed out after {timeout:?}")]
    TlsHandshakeTimeout {
        /// Name the certificate was checked against.
        server_name: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The TLS handshake failed; `cause` says why in plain words.
    #[error("TLS handshake with {server_name:?} failed: {cause}")]
    Tls {
        /// Name the certificate was checked against.
        server_name: String,
        /// What went wrong.
        #[source]
        cause: TlsFailure,
    },
    /// ALPN negotiated a protocol we did not offer, or none where one was required.
    #[error("ALPN negotiation failed: {0}")]
    Alpn(#[source] AlpnMismatch),
    /// The HTTP/2 connection preface/settings exchange failed.
    #[error("HTTP/2 handshake failed: {0}")]
    Http2Handshake(#[source] Http2HandshakeFailure),
}

/// Why a TLS handshake failed, in words a user can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate chain does not lead to a trusted root.
    #[error(
        "certificate verification failed: the server certificate is not signed by a trusted CA (unknown issuer; a \
         private CA must be added with TlsOptions::add_ca_pem)"
    )]
    UnknownIssuer,
    /// The certificate does not cover the name we connected to.
    #[error(
        "certificate verification failed: the certificate is not valid for this server name (check the URL's host, \
         or TlsOptions::server_name)"
    )]
    NameMismatch,
    /// The certificate has expired or is not yet valid.
    #[error(
        "certificate verification failed: the certificate is expired or not yet valid (check the server's \
         certificate, and this machine's clock)"
    )]
    Expired,
    /// Any other certificate problem (revoked, bad signature, bad encoding...): rustls' verdict.
    #[error("certificate verification failed: {0} (check the server's certificate chain and the CAs you trust)")]
    BadCertificate(rustls::CertificateError),
    /// The server sent a TLS alert (it refused something about our handshake).
    #[error("the server sent TLS alert {alert:?}{hint}", alert = .0, hint = alert_hint(*.0))]
    Alert(rustls::AlertDescription),
    /// The server closed the connection in the middle of the TLS handshake.
    #[error(
        "the server closed the connection during the TLS handshake (is this port serving TLS? is the server name right?)"
    )]
    ClosedDuringHandshake,
    /// Another TLS protocol failure, as rustls reports it (no shared cipher suite or
    /// version, a malformed message...).
    #[error("TLS protocol failure: {0}")]
    Protocol(#[source] rustls::Error),
    /// The socket failed during the handshake.
    #[error("socket error during the TLS handshake: {0}")]
    Io(#[source] Arc<io::Error>),
}

/// Why an established connection went down.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DownReason {
    /// The peer closed the connection (TCP FIN / TLS close_notify).
    #[error("the peer closed the connection")]
    Closed,
    /// The socket failed (reset, broken pipe...).
    #[error("socket error: {0}")]
    Io(#[source] Arc<io::Error>),
    /// The peer sent HTTP/2 GOAWAY and the connection ended.
    #[error("the peer sent GOAWAY (error code {error_code}, last stream {last_stream_id})")]
    GoAway {
        /// HTTP/2 error code of the GOAWAY (0 = NO_ERROR).
        error_code: u32,
        /// Last stream id the peer may have processed.
        last_stream_id: u32,
    },
    /// Keepalive pings went unanswered: the connection was silently dead.
    #[error("keepalive: no PING answer within {0:?}")]
    KeepaliveTimeout(Duration),
    /// The peer broke the protocol (bad HTTP/1.1 framing, invalid HTTP/2 frames, a wrong
    /// WebSocket handshake...); the cause is typed and is the [`source`](std::error::Error::source).
    #[error("protocol error: {0}")]
    Protocol(#[source] ProtocolFailure),
    /// One of the connection's own tasks (the HTTP/2 IO or keepalive task) ended abnormally:
    /// a bug in moorline or a panic in a user's hook, reported instead of hanging.
    #[error("the connection's {task} task {}", if *.panicked { "panicked (a bug: please report it)" } else { "was cancelled" })]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// Whether it panicked (else it was cancelled).
        panicked: bool,
    },
    /// The server asked to close the HTTP/1.1 connection after a response (`connection: close`).
    #[error("the server closed the HTTP/1.1 connection after a response")]
    ServerRequestedClose,
    /// A request was cancelled while its body was being written; the connection cannot be reused.
    #[error("a request was cancelled in the middle of its body")]
    CancelledMidRequest,
    /// The WebSocket on this HTTP/1.1 connection completed its closing handshake.
    #[error("the WebSocket closed ({}; {})", .close.as_ref().map_or_else(|| "no code".to_owned(), |c| format!("code {}, {:?}", c.code, c.reason.as_str())), if *.by_us { "we closed first" } else { "the server closed first" })]
    WsClosed {
        /// The close frame received from the server (`None`: it carried no code).
        close: Option<moorline_proto::ws::CloseFrame>,
        /// Whether we sent our close frame first.
        by_us: bool,
    },
    /// The server did not answer our WebSocket close frame in time.
    #[error("the server did not finish the WebSocket closing handshake within {0:?}")]
    WsCloseTimeout(Duration),
    /// The server broke the WebSocket protocol; we sent a close frame with the matching code.
    #[error("WebSocket protocol error: {0}")]
    WsProtocol(#[source] moorline_proto::ws::ProtocolError),
    /// WebSocket keepalive: nothing arrived within this timeout after our ping (sent after
    /// an interval of silence), so the connection was silently dead. See
    /// [`WsOptions::keepalive`](crate::ws::WsOptions::keepalive).
    #[error("WebSocket keepalive: nothing received within {0:?} after our ping")]
    WsKeepaliveTimeout(Duration),
}

/// Why the connection worker exited. The owner receives it in [`crate::Event::Exit`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExitReason {
    /// `close()` was called.
    #[error("closed by the user")]
    Closed,
    /// `shutdown()` completed: in-flight streams finished, then the connection closed.
    #[error("shut down gracefully")]
    Shutdown,
    /// The retry policy gave up; `last` is the last failure.
    #[error("gave up after {attempts} failed attempts; last failure: {last}")]
    RetriesExhausted {
        /// Consecutive failures counted by the policy, including the last one it refused to
        /// retry: failed attempts and connections lost before they proved healthy (see
        /// [`crate::ConnectOptions::healthy_after`]). `retries + 1` for a bounded policy.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Failure,
    },
    /// The owner's event receiver was dropped, so nobody can observe the connection.
    #[error("the owner dropped its event receiver")]
    OwnerGone,
    /// Every `Connection` handle was dropped, so nobody can command the connection.
    #[error("every connection handle was dropped")]
    HandlesDropped,
    /// The owner closed the WebSocket this HTTP/1.1 connection had become (`ws_close`, or
    /// `cancel` of its stream): the connection ends with it and does not reconnect (open a
    /// new one for a new WebSocket). A close started by the server, or a protocol error,
    /// is a `Down` instead, and reconnection follows the retry policy.
    #[error("the owner closed the connection's WebSocket ({})", if *.completed { "closing handshake completed" } else { "the server did not answer within close_timeout" })]
    WsClosed {
        /// Whether the server answered our close frame within `close_timeout`.
        completed: bool,
    },
    /// The worker panicked; this is a bug in moorline, reported instead of lost.
    #[error("the connection worker panicked: {0}")]
    Panicked(String),
}

/// A failed attempt or a lost connection: what the retry policy sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A connection attempt failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An established connection went down.
    #[error(transparent)]
    Down(#[from] DownReason),
}

/// Why one stream failed while its connection stayed up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The server refused the stream (HTTP/2 REFUSED_STREAM): it was not processed, retry is safe.
    #[error("the server refused the stream without processing it (REFUSED_STREAM); safe to retry")]
    Refused,
    /// The server reset the stream with an HTTP/2 error code.
    #[error("the server reset the stream (HTTP/2 error code {0})")]
    Reset(u32),
    /// The request was issued while no connection was up.
    #[error("not connected: the request was not sent")]
    NotConnected,
    /// The connection is shutting down and refuses new streams.
    #[error("the connection is shutting down and accepts no new streams")]
    ShuttingDown,
    /// The request itself is invalid (bad header, conflicting framing...); not sent.
    #[error("invalid request: {0}")]
    InvalidRequest(#[source] RequestError),
    /// A stream-level protocol violation by the server.
    #[error("protocol error on the stream: {0}")]
    Protocol(#[source] ProtocolFailure),
    /// The WebSocket message was refused before anything was queued (see
    /// [`SendError`](moorline_proto::ws::SendError): a control payload over 125 bytes, a close
    /// code that may not be sent, a close reason over 123 bytes, a message after our close).
    #[error("WebSocket message not sent: {0}")]
    WsSend(#[source] moorline_proto::ws::SendError),
    /// The server did not finish the WebSocket closing handshake in time (over HTTP/2, where
    /// only the stream ends; over HTTP/1.1 it is [`DownReason::WsCloseTimeout`]).
    #[error("the server did not finish the WebSocket closing handshake within {0:?}")]
    WsCloseTimeout(Duration),
    /// The server answered a WebSocket upgrade wrongly (status, accept key, subprotocol,
    /// extensions). A non-101 answer over HTTP/1.1 also comes as a normal response.
    #[error("WebSocket handshake failed: {0}")]
    WsHandshake(#[source] moorline_proto::ws::HandshakeError),
    /// The server broke the WebSocket protocol on this stream (see [`DownReason::WsProtocol`]).
    #[error("WebSocket protocol error: {0}")]
    WsProtocol(#[source] moorline_proto::ws::ProtocolError),
    /// The WebSocket on this stream is closed (or closing): it takes no more messages.
    #[error("the WebSocket is closed")]
    WsClosed,
    /// The stream is not a WebSocket (or not yet upgraded).
    #[error("the stream is not an open WebSocket")]
    NotWebSocket,
    /// The server does not accept WebSockets over HTTP/2 (no SETTINGS_ENABLE_CONNECT_PROTOCOL).
    #[error("the server does not support WebSockets over HTTP/2 (RFC 8441)")]
    Http2WebSocketUnsupported,
    /// The server sent HTTP/2 GOAWAY before processing this request: its stream was above the
    /// GOAWAY's last-stream-id, or the request was issued while the connection drained and
    /// was never sent. Not processed: safe to retry once the connection is up again (after
    /// the `Down` that ends the draining connection, and the next `Up`).
    #[error(
        "the server sent GOAWAY (error code {error_code}, last stream {last_stream_id}) before processing the request; safe to retry"
    )]
    GoAwayUnprocessed {
        /// Last stream id the server may have processed.
        last_stream_id: u32,
        /// HTTP/2 error code of the GOAWAY (0 = NO_ERROR, a graceful shutdown).
        error_code: u32,
    },
}

/// Errors of the API calls on [`crate::Connection`] and [`crate::Events`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Options were rejected before anything was started.
    #[error("invalid options: {0}")]
    InvalidOptions(#[source] OptionsError),
    /// `open` was called outside a tokio runtime.
    #[error("no tokio runtime: call open() from within a tokio runtime")]
    NoRuntime,
    /// The connection worker has exited; the reason is known when the exit was observed.
    #[error("the connection worker has exited: {}", .0.as_ref().map_or_else(|| "reason unknown (event receiver closed)".to_owned(), ToString::to_string))]
    Exited(#[source] Option<ExitReason>),
    /// The connection went down while the call waited on a stream of it.
    #[error("the connection went down while waiting: {0}")]
    Down(#[source] DownReason),
    /// The stream failed.
    #[error("stream failed: {0}")]
    Stream(#[source] StreamError),
    /// The stream is over (answered, failed, cancelled or lost): it takes no more body data.
    #[error("stream {0:?} is over and takes no more body data")]
    StreamClosed(StreamRef),
    /// The call's timeout elapsed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// [`crate::Events::await_up`] (or [`crate::ws::connect`]) timed out while the worker
    /// was still trying to connect. `attempts` counts the attempts (and lost connections)
    /// that failed since the retry count was last reset, and `last` says why the last one failed (also the
    /// error's [`source`](std::error::Error::source)); `None` while the first attempt runs.
    #[error("{}", connect_timeout_text(*.after, *.attempts, .last.as_ref()))]
    ConnectTimeout {
        /// The timeout that elapsed.
        after: Duration,
        /// Consecutive failures the retry policy counts ([`crate::Info::failures`]): failed
        /// attempts and connections lost before they proved healthy (0: none yet).
        attempts: u32,
        /// The last failure, if any.
        #[source]
        last: Option<Failure>,
    },
    /// The stream reference belongs to another connection.
    #[error("stream {0:?} belongs to another connection")]
    ForeignStream(StreamRef),
    /// This receiver no longer owns the connection (`set_owner` moved the events elsewhere).
    #[error("this event receiver no longer owns the connection: ownership moved")]
    OwnershipMoved,
    /// An await stashed too many unrelated events while waiting.
    #[error("{0} unrelated events piled up while waiting; read events with next() instead")]
    Backlog(usize),
}

/// What a TLS alert from the server suggests to check.
fn alert_hint(alert: rustls::AlertDescription) -> &'static str {
    use rustls::AlertDescription as A;
    match alert {
        A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::AccessDenied => {
            " (the server wants a client certificate it trusts: check TlsOptions::client_cert_pem)"
        }
        A::UnrecognisedName => " (the server does not serve this name: check the host or TlsOptions::server_name)",
        A::NoApplicationProtocol => " (no common ALPN protocol: check the offered protocols)",
        A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity => {
            " (no TLS version or cipher suite in common with the server)"
        }
        _ => "",
    }
}

/// How [`Error::ConnectTimeout`] reads.
fn connect_timeout_text(after: Duration, attempts: u32, last: Option<&Failure>) -> String {
    match last {
        None => format!("timed out after {after:?} waiting for the connection (no attempt has failed yet)"),
        Some(last) => {
            let s = if attempts == 1 { "" } else { "s" };
            format!("timed out after {after:?} waiting for the connection: {attempts} failed attempt{s}; last: {last}")
        }
    }
}

#[cfg(test)]
mod tests;
