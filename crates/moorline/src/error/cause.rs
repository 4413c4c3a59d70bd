//! The typed causes inside the public errors: what was wrong with the options, the ALPN
//! answer, the HTTP/2 handshake, the peer's protocol, or a request. Each keeps the lower
//! layer's error (moorline-proto's, rustls', h2's, http's) as its
//! [`source`](std::error::Error::source), so nothing is flattened to text.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moorline_proto::http1::{DecodeError, EncodeError};
use moorline_proto::ws::HandshakeError;

use crate::ids::Protocol;

/// A shared, cloneable error from a library below us (h2, http, rustls-pemfile...).
pub(crate) type Shared = Arc<dyn StdError + Send + Sync + 'static>;

/// Why options were rejected by [`crate::open`], [`crate::ws::connect`],
/// [`crate::Connection::ws_upgrade`] or an option builder, before anything was started.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// A number or duration outside what can work.
    #[error("{option} is {value}, but it must be {expected}")]
    OutOfRange {
        /// The option, as named in the options table (`event_buffer`, `http1.pipeline`...).
        option: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// Options that contradict each other.
    #[error("{options}: {why}")]
    Conflict {
        /// The options involved.
        options: &'static str,
        /// Why they cannot go together.
        why: &'static str,
    },
    /// The host is empty.
    #[error("the host is empty")]
    EmptyHost,
    /// The URL cannot be used.
    #[error("URL {url:?}: {problem}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        problem: UrlProblem,
    },
    /// The TLS server name (the host, or [`crate::TlsOptions::server_name`]) is not a DNS
    /// name or an IP address.
    #[error("{name:?} is not a valid TLS server name (a DNS name or an IP address)")]
    ServerName {
        /// The name given.
        name: String,
    },
    /// A PEM text could not be read, or held nothing of the kind wanted.
    #[error("{item} PEM: {}", .source.as_ref().map_or_else(|| format!("no {item} found"), ToString::to_string))]
    Pem {
        /// What was being read.
        item: PemItem,
        /// The reader's error (`None`: the text held no such item).
        #[source]
        source: Option<Arc<std::io::Error>>,
    },
    /// A certificate was read but rustls refused it (as a trust anchor, or as our client
    /// certificate with its key).
    #[error("{item} rejected: {source}")]
    Certificate {
        /// Which certificate.
        item: PemItem,
        /// rustls' verdict.
        #[source]
        source: rustls::Error,
    },
    /// No root to verify servers against: verification is never turned off silently.
    #[error("no trusted root: add a CA (TlsOptions::add_ca_pem) or enable the webpki roots")]
    NoTrustedRoot,
    /// rustls could not build a configuration with the safe default TLS versions.
    #[error("TLS versions: {0}")]
    TlsVersions(#[source] rustls::Error),
    /// A request header name is not a valid HTTP field name.
    #[error("header name {name:?} is not a valid HTTP field name")]
    HeaderName {
        /// The name given.
        name: String,
    },
    /// A request header value holds bytes HTTP does not allow (control characters, newlines).
    #[error("the value of header {name:?} holds bytes HTTP does not allow (control characters or newlines)")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// The WebSocket handshake options are invalid (permessage-deflate parameters...).
    #[error("WebSocket options: {0}")]
    WebSocket(#[source] HandshakeError),
}

/// What an [`OptionsError::Pem`] or [`OptionsError::Certificate`] was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemItem {
    /// A certificate (chain) in PEM.
    Certificate,
    /// A CA certificate to trust.
    CaCertificate,
    /// Our client certificate.
    ClientCertificate,
    /// The client certificate's private key.
    PrivateKey,
}

impl fmt::Display for PemItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemItem::Certificate => "certificate",
            PemItem::CaCertificate => "CA certificate",
            PemItem::ClientCertificate => "client certificate",
            PemItem::PrivateKey => "private key",
        })
    }
}

/// What is wrong with a WebSocket URL.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UrlProblem {
    /// Not a URL at all.
    #[error("not a URL ({0})")]
    Syntax(#[source] Shared),
    /// No scheme.
    #[error("no scheme: write ws:// or wss://")]
    NoScheme,
    /// A scheme other than `ws` or `wss`.
    #[error("the scheme must be ws or wss, not {0}")]
    Scheme(String),
    /// No host.
    #[error("no host")]
    NoHost,
}

/// The server's ALPN answer did not fit what we offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", alpn_text(.offered, .selected.as_deref()))]
pub struct AlpnMismatch {
    /// What we offered.
    pub offered: Vec<Protocol>,
    /// What the server selected (`None`: nothing).
    pub selected: Option<Vec<u8>>,
}

fn alpn_text(offered: &[Protocol], selected: Option<&[u8]>) -> String {
    let offered: Vec<String> = offered.iter().map(|p| String::from_utf8_lossy(p.alpn()).into_owned()).collect();
    let offered = offered.join(", ");
    match selected {
        None => format!(
            "the server selected no ALPN protocol and HTTP/1.1 was not offered (we offered {offered}; allow HTTP/1.1 \
             or check that the server speaks HTTP/2)"
        ),
        Some(p) => format!(
            "the server selected {:?}, which we did not offer (we offered {offered})",
            String::from_utf8_lossy(p)
        ),
    }
}

/// An HTTP/2 error from h2: its error code when it has one, the h2 error as the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source}")]
pub struct Http2Failure {
    /// The HTTP/2 error code (RFC 9113 §7), when the error carries one.
    pub code: Option<u32>,
    /// h2's error.
    #[source]
    pub source: Shared,
}

impl Http2Failure {
    pub(crate) fn new(e: h2::Error) -> Self {
        Self { code: e.reason().map(u32::from), source: Arc::new(e) }
    }

    /// From an h2 error we only borrow (h2's errors are not `Clone`): the code, and h2's
    /// words as the source.
    pub(crate) fn new_ref(e: &h2::Error) -> Self {
        Self { code: e.reason().map(u32::from), source: Arc::new(Borrowed(e.to_string())) }
    }
}

/// h2's description of an error we could not take.
#[derive(Debug)]
struct Borrowed(String);

impl fmt::Display for Borrowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Borrowed {}

/// Why the HTTP/2 connection preface and SETTINGS exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Http2HandshakeFailure {
    /// h2 refused the exchange.
    #[error("{0}")]
    Http2(#[source] Http2Failure),
    /// The server closed the connection before sending its SETTINGS.
    #[error("the server closed the connection before its SETTINGS (does it speak HTTP/2?)")]
    ClosedBeforeSettings,
    /// No SETTINGS from the server within the timeout (the TLS handshake timeout).
    #[error("no HTTP/2 SETTINGS from the server within {0:?} (does it speak HTTP/2?)")]
    NoSettings(Duration),
    /// Our HTTP/2 connection task ended abnormally.
    #[error("the HTTP/2 connection task {}", if *.panicked { "panicked (a bug: please report it)" } else { "was cancelled" })]
    TaskFailed {
        /// Whether it panicked (else it was cancelled).
        panicked: bool,
    },
}

/// How the peer broke the protocol.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolFailure {
    /// HTTP/1.1 response framing (status line, headers, lengths, chunks...).
    #[error("HTTP/1.1: {0}")]
    Http1(#[source] DecodeError),
    /// An HTTP/2 error.
    #[error("HTTP/2: {0}")]
    Http2(#[source] Http2Failure),
    /// The answer to a WebSocket upgrade over HTTP/1.1 was wrong.
    #[error("WebSocket handshake: {0}")]
    WsHandshake(#[source] HandshakeError),
    /// The server switched protocols (a `101`) though no upgrade was asked for.
    #[error("the server switched protocols ({status}) without being asked")]
    UnaskedSwitch {
        /// The status it sent.
        status: u16,
    },
    /// The server sent more 1xx informational responses before the final one than the
    /// limit allows (HTTP/2: `max_header_list_size`).
    #[error("the server sent more than {limit} bytes of 1xx informational responses before the response")]
    InformationalTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The server ended a WebSocket's HTTP/2 stream without a close frame.
    #[error("the server ended the WebSocket stream without a close frame")]
    WsStreamEnded,
}

/// Why a request (or a request body, or a message on a stream) was refused before it was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The HTTP/1.1 encoder refused the request or its body (bad method, target or header,
    /// conflicting framing, a body longer or shorter than declared...).
    #[error("{0}")]
    Http1(#[source] EncodeError),
    /// h2 refused the request (a header HTTP/2 does not allow...).
    #[error("{0}")]
    Http2(#[source] Http2Failure),
    /// The request target cannot be used.
    #[error("target {target:?}: {why}")]
    Target {
        /// The target given.
        target: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The HTTP/1.1 connection is a WebSocket now: it takes no requests (open another).
    #[error("this HTTP/1.1 connection is a WebSocket now: open another connection for requests")]
    ConnectionIsWebSocket,
    /// The HTTP/1.1 connection became a WebSocket before this queued request was sent.
    #[error("the connection became a WebSocket before this request was sent (not sent)")]
    UpgradedBeforeSent,
    /// The request's body handle was dropped before `finish()`.
    #[error("the request body was dropped before finish()")]
    BodyDropped,
}
