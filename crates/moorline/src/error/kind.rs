//! Recoverable or fatal: the one question a retry policy or a trading client asks of every
//! error.

use super::{
    ConnectError, DownReason, Error, ExitReason, Failure, Http2HandshakeFailure, ProtocolFailure, StreamError,
    TlsFailure,
};
use moorline_proto::ws::{HandshakeError, SendError};

/// Whether trying again can help.
///
/// | kind | what it means | examples |
/// |---|---|---|
/// | `Recoverable` | the same thing may work later: reconnect (with backoff) or retry | connect refused, reset or timed out; DNS failures; a TLS handshake cut short; a lost connection (reset, FIN, keepalive timeout, GOAWAY, a protocol error); an upgrade answered 5xx, 408, 425 or 429; a stream refused or not processed |
/// | `Fatal` | it will fail the same way until someone changes something | invalid options or URL; TLS verification failures (unknown issuer, wrong name, expired) and certificate alerts; an ALPN mismatch; an upgrade answered 401, 403, 404 (any 4xx but 408/425/429) or a wrong accept key; an invalid request; a message refused by the WebSocket rules; the worker closed by its user |
///
/// moorline's own reconnection retries whatever the [`RetryPolicy`](crate::RetryPolicy)
/// says; a policy can consult [`Failure::kind`] to stop on fatal failures:
///
/// ```
/// use std::time::Duration;
/// use moorline::{ErrorKind, Failure, RetryPolicy};
///
/// let policy = RetryPolicy::custom(|attempt: u32, failure: &Failure| {
///     (failure.kind() == ErrorKind::Recoverable && attempt < 10)
///         .then(|| Duration::from_millis(100 << attempt.min(8)))
/// });
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Trying again (reconnecting, retrying) may succeed.
    Recoverable,
    /// Trying again fails the same way: report it, change the configuration.
    Fatal,
}

use ErrorKind::{Fatal, Recoverable};

impl ErrorKind {
    /// `true` for [`ErrorKind::Fatal`].
    pub fn is_fatal(self) -> bool {
        self == Fatal
    }
}

/// An HTTP status on a WebSocket upgrade: 5xx, 408, 425 and 429 may pass; other answers
/// (4xx, and 1xx-3xx where a 101 or 2xx upgrade was due) will not.
fn status_kind(status: u16) -> ErrorKind {
    match status {
        408 | 425 | 429 | 500..=599 => Recoverable,
        _ => Fatal,
    }
}

fn handshake_kind(e: &HandshakeError) -> ErrorKind {
    match e {
        HandshakeError::Status { status } => status_kind(*status),
        _ => Fatal,
    }
}

impl TlsFailure {
    /// Verification failures and refusals are fatal; a handshake cut short is not.
    pub fn kind(&self) -> ErrorKind {
        use rustls::AlertDescription as A;
        match self {
            TlsFailure::UnknownIssuer
            | TlsFailure::NameMismatch
            | TlsFailure::Expired
            | TlsFailure::BadCertificate(_) => Fatal,
            TlsFailure::Alert(
                A::CertificateRequired
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::UnrecognisedName
                | A::NoApplicationProtocol
                | A::ProtocolVersion
                | A::HandshakeFailure
                | A::InsufficientSecurity,
            ) => Fatal,
            TlsFailure::Alert(_) => Recoverable,
            TlsFailure::Protocol(
                rustls::Error::PeerIncompatible(_)
                | rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType
                | rustls::Error::InvalidCertRevocationList(_),
            ) => Fatal,
            TlsFailure::Protocol(_) | TlsFailure::ClosedDuringHandshake | TlsFailure::Io(_) => Recoverable,
        }
    }
}

impl ConnectError {
    /// Fatal for TLS verification failures and an ALPN mismatch; recoverable otherwise.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectError::Tls { cause, .. } => cause.kind(),
            ConnectError::Alpn(_) => Fatal,
            ConnectError::Http2Handshake(Http2HandshakeFailure::TaskFailed { panicked: true }) => Fatal,
            _ => Recoverable,
        }
    }
}

impl DownReason {
    /// A lost connection is recoverable: the next one may be fine. Only a panic in one of
    /// the connection's tasks is fatal (a bug).
    pub fn kind(&self) -> ErrorKind {
        match self {
            DownReason::TaskFailed { panicked: true, .. } => Fatal,
            _ => Recoverable,
        }
    }
}

impl Failure {
    /// The kind of the failed attempt or of the lost connection.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connect(e) => e.kind(),
            Failure::Down(r) => r.kind(),
        }
    }
}

impl ExitReason {
    /// Retries running out is as recoverable as the last failure (opening the connection
    /// again later may work); every other exit was asked for, or a bug: fatal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExitReason::RetriesExhausted { last, .. } => last.kind(),
            _ => Fatal,
        }
    }
}

impl ProtocolFailure {
    /// A wrong upgrade answer follows [`ErrorKind`]'s status rule; other protocol breaches
    /// may be a passing fault (a corrupted connection): recoverable.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProtocolFailure::WsHandshake(e) => handshake_kind(e),
            _ => Recoverable,
        }
    }
}

impl StreamError {
    /// Whether the stream's request may be tried again (on this connection or the next).
    pub fn kind(&self) -> ErrorKind {
        match self {
            StreamError::Refused
            | StreamError::Reset(_)
            | StreamError::NotConnected
            | StreamError::ShuttingDown
            | StreamError::WsProtocol(_)
            | StreamError::WsCloseTimeout(_)
            | StreamError::GoAwayUnprocessed { .. } => Recoverable,
            StreamError::Protocol(p) => p.kind(),
            StreamError::WsHandshake(e) => handshake_kind(e),
            StreamError::WsSend(SendError::Encode(_)) => Recoverable,
            StreamError::InvalidRequest(_)
            | StreamError::WsSend(_)
            | StreamError::WsClosed
            | StreamError::NotWebSocket
            | StreamError::Http2WebSocketUnsupported => Fatal,
        }
    }

    /// Whether the same request can be sent again as it is, knowing the server did not
    /// process it: refused (REFUSED_STREAM), above a GOAWAY's last stream, issued while no
    /// connection was up, or refused by a connection that was shutting down. A reset or a
    /// protocol error may come after the server acted on the request: not retryable
    /// without knowing more (an idempotent request may still be resent by choice).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StreamError::Refused
                | StreamError::NotConnected
                | StreamError::ShuttingDown
                | StreamError::GoAwayUnprocessed { .. }
        )
    }
}

impl Error {
    /// Whether trying again may succeed (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidOptions(_)
            | Error::NoRuntime
            | Error::StreamClosed(_)
            | Error::ForeignStream(_)
            | Error::OwnershipMoved
            | Error::Backlog(_) => Fatal,
            Error::Exited(reason) => reason.as_ref().map_or(Fatal, ExitReason::kind),
            Error::Down(reason) => reason.kind(),
            Error::Stream(e) => e.kind(),
            Error::Timeout(_) => Recoverable,
            Error::ConnectTimeout { last, .. } => last.as_ref().map_or(Recoverable, Failure::kind),
        }
    }

    /// Whether a request that failed with this error can be sent again as it is: its stream
    /// failed in a way that proves the server did not process it
    /// ([`StreamError::is_retryable`]), or the connection never came up to send it. A
    /// connection lost or a timeout while the request was out is not: the server may have
    /// acted on it (`Event::Down` lists which streams were certainly not processed).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Stream(e) => e.is_retryable(),
            Error::ConnectTimeout { last, .. } => last.as_ref().is_none_or(|f| f.kind() == Recoverable),
            _ => false,
        }
    }
}
