//! [`ClientError`], what the client's calls fail with, and the retry classification of a
//! failed connection attempt ([`classify_connect_error`], the one place that reads moorline's
//! errors to decide whether to retry).

use std::time::Duration;

use moorline::{Error as MoorlineError, ExitReason};

use crate::config::ConfigError;
use crate::jsonrpc::{EncodeError, RpcError};

/// Whether an error leaves the client working: moorline's [`moorline::ErrorKind`],
/// one type for both layers. `Recoverable`: the client goes on (it reconnects, or the call may
/// be made again). `Fatal`: the client stops: a wrong URL, certificate, credentials or
/// configuration that retrying cannot fix.
pub use moorline::ErrorKind;

/// Why a client call failed, or why the client stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection was not up, or went down before the answer came.
    #[error("{}", if *.sent { "the connection went down after the message was sent: it may have been processed" } else { "not connected: the message was not sent" })]
    Disconnected {
        /// Whether the message reached the socket before the connection went down (a request
        /// sent may have been processed by the venue; one not sent was not).
        sent: bool,
    },
    /// A deadline passed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out (`"request public/buy"`, `"subscribe"`, `"queued send"`...).
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The client-side rate limit had no room (mode refuse, or the wait would pass `max_wait`).
    #[error("rate limited by pool {pool:?}: room again in {retry_after:?}")]
    RateLimited {
        /// The pool that is empty.
        pool: &'static str,
        /// When the request would fit.
        retry_after: Duration,
    },
    /// The venue answered with a JSON-RPC error.
    #[error("{error}")]
    Rpc {
        /// The error object.
        error: RpcError,
        /// Whether the dialect knows this code as transient (Deribit's 10028
        /// `too_many_requests`, 13888 `timed_out`...).
        retryable: bool,
    },
    /// A request or its params could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The venue's answer could not be read.
    #[error("could not read the venue's answer: {0}")]
    BadReply(String),
    /// The configuration was refused.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A queue the user set a bound for is full (sends while disconnected).
    #[error("{what} is full ({bytes} bytes queued, limit {limit})")]
    QueueFull {
        /// Which queue.
        what: &'static str,
        /// Bytes in it.
        bytes: usize,
        /// Its bound.
        limit: usize,
    },
    /// The client is closed (by `close()`, or after a fatal error).
    #[error("the client is closed")]
    Closed,
    /// A connection attempt failed in a way retrying cannot fix (HTTP 401/403/404 on the
    /// upgrade, certificate verification, bad URL); the client stopped.
    #[error("connection failed and will not be retried: {source}")]
    FatalConnect {
        /// moorline's error.
        #[source]
        source: MoorlineError,
    },
    /// The retry policy gave up.
    #[error("gave up after {attempts} failed attempts; last: {last}")]
    RetriesExhausted {
        /// Consecutive failures counted.
        attempts: u32,
        /// The last failure.
        #[source]
        last: MoorlineError,
    },
    /// The connection layer refused a send for another reason (a message it cannot encode).
    #[error("send failed: {0}")]
    Send(#[source] MoorlineError),
    /// The client's task panicked; this is a bug, reported instead of lost.
    #[error("the client task panicked: {0}")]
    Panicked(String),
}

impl ClientError {
    /// Whether the client goes on after this error.
    ///
    /// ```
    /// use moorline_client::{ClientError, ErrorKind};
    ///
    /// assert_eq!(ClientError::Disconnected { sent: false }.kind(), ErrorKind::Recoverable);
    /// assert_eq!(ClientError::Closed.kind(), ErrorKind::Fatal);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Disconnected { .. }
            | Self::Timeout { .. }
            | Self::RateLimited { .. }
            | Self::Rpc { .. }
            | Self::Encode(_)
            | Self::BadReply(_)
            | Self::QueueFull { .. }
            | Self::Send(_) => ErrorKind::Recoverable,
            Self::Config(_)
            | Self::Closed
            | Self::FatalConnect { .. }
            | Self::RetriesExhausted { .. }
            | Self::Panicked(_) => ErrorKind::Fatal,
        }
    }

    /// Whether making the same call again may succeed: the failure was transient. It does
    /// not say the venue did not process the first one: see
    /// [`Disconnected::sent`](Self::Disconnected) and, for a timeout, assume it may have.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Disconnected { .. } | Self::Timeout { .. } | Self::RateLimited { .. } | Self::QueueFull { .. } => {
                true
            }
            Self::Rpc { retryable, .. } => *retryable,
            Self::Encode(_) | Self::BadReply(_) | Self::Send(_) => false,
            _ => self.kind() == ErrorKind::Recoverable,
        }
    }
}

/// Whether a failed connection attempt is retried: the retry classification.
///
/// The client opens each attempt with moorline's own retries off (the client owns
/// reconnection, so two layers never fight), so the error is the attempt's own:
///
/// | failure | kind |
/// |---|---|
/// | bad URL, invalid options, no runtime | fatal |
/// | upgrade answered 401, 403, 404, another 4xx except 408, 425 and 429, or a 2xx/3xx (not a WebSocket endpoint, or moved: redirects are not followed) | fatal (the same request gets the same answer) |
/// | upgrade answered 408, 425, 429 or 5xx | retried |
/// | certificate verification (unknown issuer, wrong name, expired, bad certificate) | fatal |
/// | a handshake the server got wrong (accept key, subprotocol, extension, missing upgrade headers), HTTP/2 WebSocket unsupported, ALPN mismatch | fatal (a misconfigured server or a wrong `http2` option) |
/// | TCP refused or unreachable, DNS failure, any timeout, TLS alert or I/O failure, HTTP/2 handshake, the connection dropped during the attempt | retried |
///
/// moorline's `Error` is matched here and nowhere else, so a change of its types touches
/// this function only.
///
/// ```
/// use moorline_client::{ErrorKind, classify_connect_error};
///
/// let bad_url = moorline::ws::WsUrl::parse("http://example.org/").unwrap_err();
/// assert_eq!(classify_connect_error(&bad_url), ErrorKind::Fatal);
/// assert_eq!(classify_connect_error(&moorline::Error::Timeout(std::time::Duration::from_secs(1))), ErrorKind::Recoverable);
/// ```
pub fn classify_connect_error(error: &MoorlineError) -> ErrorKind {
    match error {
        // One attempt's worker ending for a reason of its own (a bug, a dropped handle) is
        // no verdict on the venue: the next attempt gets a new worker.
        MoorlineError::Exited(None) => ErrorKind::Recoverable,
        MoorlineError::Exited(Some(reason)) if !matches!(reason, ExitReason::RetriesExhausted { .. }) => {
            ErrorKind::Recoverable
        }
        // Everything else as moorline classifies it (`moorline::ErrorKind`'s table): TLS
        // verification, ALPN mismatch, an upgrade refused with a 4xx other than 408/425/429,
        // a wrong handshake, invalid options are fatal; the rest is retried.
        _ => error.kind(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use moorline::ws::HandshakeError;
    use moorline::{ConnectError, DownReason, Failure, StreamError, TlsFailure};

    use super::*;

    fn status(status: u16) -> MoorlineError {
        MoorlineError::Stream(StreamError::WsHandshake(HandshakeError::Status { status }))
    }

    fn exited(last: Failure) -> MoorlineError {
        MoorlineError::Exited(Some(ExitReason::RetriesExhausted { attempts: 1, last }))
    }

    #[test]
    fn upgrade_statuses() {
        for s in [400, 401, 403, 404, 405, 410, 426, 200, 301, 302] {
            assert_eq!(classify_connect_error(&status(s)), ErrorKind::Fatal, "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_connect_error(&status(s)), ErrorKind::Recoverable, "{s}");
        }
    }

    #[test]
    fn tls_verification_is_fatal_other_tls_failures_are_not() {
        let tls = |cause| exited(ConnectError::Tls { server_name: "venue".into(), cause }.into());
        for cause in [
            TlsFailure::UnknownIssuer,
            TlsFailure::NameMismatch,
            TlsFailure::Expired,
            TlsFailure::BadCertificate(rustls::CertificateError::Revoked),
        ] {
            assert_eq!(classify_connect_error(&tls(cause.clone())), ErrorKind::Fatal, "{cause}");
        }
        for cause in [TlsFailure::Alert(rustls::AlertDescription::InternalError), TlsFailure::ClosedDuringHandshake] {
            assert_eq!(classify_connect_error(&tls(cause.clone())), ErrorKind::Recoverable, "{cause}");
        }
        // The same failure seen through a connect timeout.
        let last = Some(ConnectError::Tls { server_name: "v".into(), cause: TlsFailure::UnknownIssuer }.into());
        let e = MoorlineError::ConnectTimeout { after: Duration::from_secs(1), attempts: 1, last };
        assert_eq!(classify_connect_error(&e), ErrorKind::Fatal);
    }

    #[test]
    fn transient_failures_are_retried() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let refused =
            ConnectError::Connect { addr, source: Arc::new(io::Error::from(io::ErrorKind::ConnectionRefused)) };
        let cases = [
            exited(refused.into()),
            exited(ConnectError::NoAddress { host: "x".into() }.into()),
            exited(ConnectError::ConnectTimeout { addr, timeout: Duration::from_secs(1) }.into()),
            exited(DownReason::Closed.into()),
            MoorlineError::Timeout(Duration::from_secs(1)),
            MoorlineError::ConnectTimeout { after: Duration::from_secs(1), attempts: 0, last: None },
            MoorlineError::Down(DownReason::Closed),
            MoorlineError::Exited(None),
            MoorlineError::Exited(Some(ExitReason::Panicked("bug".into()))),
            MoorlineError::Stream(StreamError::Refused),
        ];
        for e in cases {
            assert_eq!(classify_connect_error(&e), ErrorKind::Recoverable, "{e}");
        }
        assert_eq!(
            classify_connect_error(&exited(
                ConnectError::Alpn(moorline::AlpnMismatch { offered: vec![], selected: Some(b"h3".to_vec()) }).into()
            )),
            ErrorKind::Fatal
        );
        assert_eq!(
            classify_connect_error(&MoorlineError::Stream(StreamError::Http2WebSocketUnsupported)),
            ErrorKind::Fatal
        );
        let bad_accept = HandshakeError::BadAccept { expected: "a".into(), got: None };
        assert_eq!(
            classify_connect_error(&MoorlineError::Stream(StreamError::WsHandshake(bad_accept))),
            ErrorKind::Fatal
        );
    }

    #[test]
    fn kinds_and_retryability() {
        let rpc = |retryable| ClientError::Rpc {
            error: RpcError { code: 10028, message: "too_many_requests".into(), data: None },
            retryable,
        };
        assert!(rpc(true).is_retryable() && !rpc(false).is_retryable());
        assert_eq!(rpc(false).kind(), ErrorKind::Recoverable);
        assert_eq!(rpc(false).to_string(), "the venue answered with error 10028: too_many_requests");
        let t = ClientError::Timeout { what: "request public/buy".into(), after: Duration::from_secs(10) };
        assert!(t.is_retryable());
        assert_eq!(t.to_string(), "request public/buy timed out after 10s");
        let r = ClientError::RateLimited { pool: "subscribe", retry_after: Duration::from_millis(300) };
        assert!(r.is_retryable() && r.kind() == ErrorKind::Recoverable);
        assert_eq!(
            ClientError::Disconnected { sent: true }.to_string(),
            "the connection went down after the message was sent: it may have been processed"
        );
        let fatal = ClientError::FatalConnect { source: status(401) };
        assert_eq!(fatal.kind(), ErrorKind::Fatal);
        assert!(!fatal.is_retryable());
        assert!(std::error::Error::source(&fatal).is_some());
        assert!(fatal.to_string().contains("status 401"), "{fatal}");
        assert_eq!(ClientError::Config(ConfigError::IdleReconnectWithoutIdle).kind(), ErrorKind::Fatal);
        assert_eq!(ClientError::Panicked("x".into()).kind(), ErrorKind::Fatal);
    }
}
