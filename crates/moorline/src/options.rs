//! Connection options, with Gun's defaults where Gun has them.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Failure, OptionsError, PemItem};
use crate::ids::Protocol;
use crate::instrument::{Hook, Instrument};

/// The largest [`ConnectOptions::event_buffer`] accepted. The owner channel cannot be
/// unbounded (tokio's limit is far lower than `usize::MAX`), and a larger buffer only lets
/// a slow owner fall further behind.
const MAX_EVENT_BUFFER: usize = 1 << 20;

/// A DNS resolver: the addresses of `host:port`. See [`ConnectOptions::resolver`].
pub type Resolver =
    Arc<dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> + Send + Sync>;

/// How a connection retries after a failed attempt or a lost connection: never, a fixed
/// delay, exponential backoff, or a function of the attempt number (1-based) and the typed
/// [`Failure`] that decides each delay (`None` gives up). See [`ConnectOptions::retry`] and,
/// for how failures are counted, [`ConnectOptions::healthy_after`].
///
/// ```
/// use std::time::Duration;
/// use moorline::{ConnectError, ConnectOptions, DownReason, Failure, RetryPolicy};
///
/// // Retry lost connections quickly, refused or timed-out connects with backoff, and give
/// // up at once on what retrying cannot fix (a certificate the server will keep sending).
/// let policy = RetryPolicy::custom(|attempt, failure: &Failure| match failure {
///     Failure::Down(DownReason::Closed | DownReason::Io(_)) if attempt <= 3 => Some(Duration::from_millis(100)),
///     Failure::Connect(ConnectError::Connect { .. } | ConnectError::ConnectTimeout { .. }) if attempt <= 10 => {
///         Some(Duration::from_millis(250).saturating_mul(attempt))
///     }
///     Failure::Connect(ConnectError::Tls { .. }) => None,
///     _ => (attempt <= 5).then_some(Duration::from_secs(1)),
/// });
/// let opts = ConnectOptions::default().retry(policy);
/// # let _ = opts;
/// ```
pub type RetryPolicy = moorline_proto::retry::RetryPolicy<Failure>;

/// The transport under the HTTP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (rustls).
    Tls,
}

/// TLS settings. Certificate verification is always on unless a full custom
/// [`rustls::ClientConfig`] that disables it is passed with [`TlsOptions::config`].
#[derive(Clone, Default)]
pub struct TlsOptions {
    pub(crate) webpki_roots: Option<bool>,
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    pub(crate) client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    pub(crate) server_name: Option<String>,
    pub(crate) config: Option<Arc<rustls::ClientConfig>>,
}

impl TlsOptions {
    /// Trust this CA (PEM, one or more certificates) in addition to the roots in use.
    /// When custom CAs are added, the built-in webpki roots are no longer trusted unless
    /// [`TlsOptions::webpki_roots`] is set to `true`.
    ///
    /// ```
    /// let err = moorline::TlsOptions::default().add_ca_pem("not a certificate").unwrap_err();
    /// assert!(err.to_string().contains("no certificate"));
    /// ```
    pub fn add_ca_pem(mut self, pem: &str) -> Result<Self, Error> {
        let certs = parse_certs(pem)?;
        for der in certs {
            self = self.add_ca_der(der)?;
        }
        Ok(self)
    }

    /// Trust this CA certificate (DER). It is checked to be a usable trust anchor now.
    pub fn add_ca_der(mut self, der: CertificateDer<'static>) -> Result<Self, Error> {
        rustls::RootCertStore::empty().add(der.clone()).map_err(|source| {
            Error::InvalidOptions(OptionsError::Certificate { item: PemItem::CaCertificate, source })
        })?;
        self.extra_roots.push(der);
        Ok(self)
    }

    /// Whether the Mozilla roots shipped by `webpki-roots` are trusted (default: yes when no
    /// custom CA was added).
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.webpki_roots = Some(on);
        self
    }

    /// Present a client certificate: chain and private key in PEM.
    pub fn client_cert_pem(mut self, chain_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let chain = parse_certs(chain_pem)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| pem_error(PemItem::PrivateKey, Some(e)))?
            .ok_or_else(|| pem_error(PemItem::PrivateKey, None))?;
        self.client_auth = Some((chain, Arc::new(key)));
        Ok(self)
    }

    /// Check the certificate against (and send as SNI) this name instead of the host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Use this rustls configuration as is (its ALPN list is replaced by the offered
    /// protocols). Roots, client certificate and verification are then the config's own.
    pub fn config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.config = Some(config);
        self
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("webpki_roots", &self.webpki_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("server_name", &self.server_name)
            .field("custom_config", &self.config.is_some())
            .finish()
    }
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(PemItem::Certificate, Some(e)))?;
    if certs.is_empty() {
        return Err(pem_error(PemItem::Certificate, None));
    }
    Ok(certs)
}

fn pem_error(item: PemItem, e: Option<std::io::Error>) -> Error {
    Error::InvalidOptions(OptionsError::Pem { item, source: e.map(Arc::new) })
}

/// Keepalive: a PING every `interval`; no answer within `timeout` means the connection
/// is dead (silently hung) and it is taken down. Used for HTTP/2 PINGs
/// ([`ConnectOptions::keepalive`]) and WebSocket pings
/// ([`WsOptions::keepalive`](crate::ws::WsOptions::keepalive)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// HTTP/1.1 settings.
#[derive(Debug, Clone)]
pub struct Http1Options {
    /// Requests written before their predecessors are answered (1 = no pipelining).
    pub pipeline: usize,
    /// Largest response head accepted, in bytes; also the most bytes of 1xx heads before
    /// one response, together (past it the connection goes down with a protocol error).
    pub max_head_bytes: usize,
    /// Most response header fields accepted.
    pub max_headers: usize,
}

impl Default for Http1Options {
    fn default() -> Self {
        Self { pipeline: 1, max_head_bytes: 64 * 1024, max_headers: 128 }
    }
}

/// HTTP/2 settings.
#[derive(Debug, Clone)]
pub struct Http2Options {
    /// Per-stream receive window: the most bytes the server may send ahead of the owner.
    pub stream_window: u32,
    /// Connection receive window.
    pub connection_window: u32,
    /// Largest header list accepted; also the most bytes of 1xx heads before one response,
    /// together, counted the same way (past it the stream fails with a protocol error).
    pub max_header_list_size: u32,
    /// Accept server push.
    pub enable_push: bool,
    /// The most framing overhead of small DATA frames h2 may hold unread, counted as h2
    /// counts it: 256 less the payload for each frame under 256 bytes (so 248 for a frame of
    /// 8 bytes). Past it h2 ends the connection (`ENHANCE_YOUR_CALM`). Flow control bounds
    /// the bytes a server sends ahead; this bounds the frames they come in (each costs h2
    /// some 150 bytes of bookkeeping while held). The stream tasks take every frame as it
    /// comes, even while the owner is slow (holding the bytes in one buffer per stream,
    /// within the stream window), so only a burst that arrives before they run counts.
    /// Default 4 MiB: a whole 1 MiB connection window of 52-byte frames; at worst (1-byte
    /// frames) some 16,000 frames held, about 2.5 MiB. At least 25,600 (h2's own floor).
    pub small_frame_budget: usize,
}

impl Default for Http2Options {
    fn default() -> Self {
        Self {
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            max_header_list_size: 64 * 1024,
            enable_push: false,
            small_frame_budget: DEFAULT_SMALL_FRAME_BUDGET,
        }
    }
}

/// Default of [`Http2Options::small_frame_budget`]: 4 MiB.
pub const DEFAULT_SMALL_FRAME_BUDGET: usize = 4 * 1024 * 1024;

/// h2's own floor for [`Http2Options::small_frame_budget`] (100 frames of 256 bytes' worth).
pub const MIN_SMALL_FRAME_BUDGET: usize = 25_600;

/// Default of [`ConnectOptions::event_buffer_bytes`]: 4 MiB of payload may wait for the owner.
///
/// Why 4 MiB: it is four times the default HTTP/2 connection window (1 MiB), so a busy owner
/// does not throttle a fast server on its own, and it holds thousands of typical market-data
/// messages (1-10 KiB) of slack for an owner that falls behind for a moment; yet it is a
/// fixed, small ceiling per connection, whatever the messages' size (the old bound was 256
/// deliveries: with 1 MiB messages, 256 MiB).
pub const DEFAULT_EVENT_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Options of [`crate::open`].
///
/// ```
/// use std::time::Duration;
/// use moorline::{ConnectOptions, Keepalive, RetryPolicy, Transport};
/// let opts = ConnectOptions::default()
///     .transport(Transport::Tcp)
///     .retry(RetryPolicy::fixed(3, Duration::from_millis(500)))
///     .connect_timeout(Duration::from_secs(2))
///     .keepalive(Some(Keepalive { interval: Duration::from_secs(10), timeout: Duration::from_secs(5) }));
/// # let _ = opts;
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) transport: Option<Transport>,
    pub(crate) protocols: Option<Vec<Protocol>>,
    pub(crate) tls: TlsOptions,
    pub(crate) lookup_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) healthy_after: Duration,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) hook: Option<Hook>,
    pub(crate) resolver: Option<Resolver>,
    pub(crate) event_buffer: usize,
    pub(crate) event_buffer_bytes: usize,
    pub(crate) http1: Http1Options,
    pub(crate) http2: Http2Options,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            transport: None,
            protocols: None,
            tls: TlsOptions::default(),
            lookup_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            healthy_after: moorline_proto::retry::DEFAULT_HEALTHY_AFTER,
            keepalive: Some(Keepalive { interval: Duration::from_secs(30), timeout: Duration::from_secs(10) }),
            hook: None,
            resolver: None,
            event_buffer: 256,
            event_buffer_bytes: DEFAULT_EVENT_BUFFER_BYTES,
            http1: Http1Options::default(),
            http2: Http2Options::default(),
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("transport", &self.transport)
            .field("protocols", &self.protocols)
            .field("tls", &self.tls)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("retry", &self.retry)
            .field("healthy_after", &self.healthy_after)
            .field("keepalive", &self.keepalive)
            .field("hook", &self.hook.is_some())
            .field("resolver", &self.resolver.is_some())
            .field("event_buffer", &self.event_buffer)
            .field("event_buffer_bytes", &self.event_buffer_bytes)
            .field("http1", &self.http1)
            .field("http2", &self.http2)
            .finish()
    }
}

impl ConnectOptions {
    /// TCP or TLS. Default: TLS on port 443, TCP elsewhere.
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = Some(t);
        self
    }
    /// Protocols offered, in preference order. Default: HTTP/2 then HTTP/1.1 over TLS (chosen
    /// by ALPN), HTTP/1.1 over TCP. `[Http2]` alone over TCP means HTTP/2 with prior knowledge.
    pub fn protocols(mut self, p: &[Protocol]) -> Self {
        self.protocols = Some(p.to_vec());
        self
    }
    /// TLS settings.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }
    /// DNS lookup timeout (default 10 s).
    pub fn lookup_timeout(mut self, d: Duration) -> Self {
        self.lookup_timeout = d;
        self
    }
    /// TCP connect timeout, per address tried (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// TLS handshake timeout (default 10 s).
    pub fn tls_handshake_timeout(mut self, d: Duration) -> Self {
        self.tls_handshake_timeout = d;
        self
    }
    /// Reconnection policy (default: Gun's 5 retries, 5 s apart). The policy is asked after
    /// every failed attempt and every lost connection, with the attempt number: the
    /// consecutive failures not yet forgiven (see [`ConnectOptions::healthy_after`]).
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
    /// How long a connection must stay up before the failures before it are forgiven
    /// (default 10 s; must be positive; `Duration::MAX`: only [`Connection::mark_healthy`] resets
    /// the count).
    ///
    /// Coming up is not enough: a connection lost before this time counts as one more
    /// failure, so a server that accepts TCP and then closes at once (or closes after
    /// failing every WebSocket upgrade) is retried with the policy's growing delays and, for a bounded
    /// policy, given up on, instead of being retried forever at the first delay. Once the
    /// connection has stayed up this long, or the caller calls [`Connection::mark_healthy`]
    /// (say, once its subscriptions are confirmed), the count is back to zero and the next
    /// failure is attempt 1 again.
    ///
    /// [`Connection::mark_healthy`]: crate::Connection::mark_healthy
    pub fn healthy_after(mut self, d: Duration) -> Self {
        self.healthy_after = d;
        self
    }
    /// HTTP/2 keepalive PINGs (default: every 30 s, 10 s to answer). `None` turns them off.
    pub fn keepalive(mut self, k: Option<Keepalive>) -> Self {
        self.keepalive = k;
        self
    }
    /// Resolve host names with this function instead of the system resolver (for pinned
    /// addresses, a custom DNS client, or tests). The lookup timeout applies to it.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// let pinned: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    /// let opts = moorline::ConnectOptions::default()
    ///     .resolver(move |_host, _port| Box::pin(async move { Ok(vec![pinned]) }));
    /// # let _ = opts;
    /// ```
    pub fn resolver(
        mut self,
        f: impl Fn(String, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.resolver = Some(Arc::new(f));
        self
    }

    /// Instrumentation hook, called for every [`Instrument`] step.
    pub fn hook(mut self, f: impl Fn(&Instrument) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(f));
        self
    }
    /// Deliveries buffered for the owner before the worker stops reading the socket (default
    /// 256, at most 1 048 576: `open` refuses more). A delivery is one event, or up to 32
    /// WebSocket messages decoded from one read. Their bytes are bounded by
    /// [`ConnectOptions::event_buffer_bytes`].
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.event_buffer = n;
        self
    }
    /// Payload bytes (response body chunks and WebSocket messages) queued for the owner
    /// before the worker stops reading the socket (default [`DEFAULT_EVENT_BUFFER_BYTES`],
    /// 4 MiB). Counted from when an event is queued until it leaves [`crate::Events`]
    /// (returned by `next`, or taken by an await; events an await sets aside still count).
    /// While the budget is used up, the worker reads no more from the socket (HTTP/1.1) and
    /// HTTP/2 stream tasks release no flow-control capacity, so a slow owner slows the
    /// server. One delivery may go past it: a message larger than the whole budget still
    /// gets through once the owner has caught up. Must be at least 1.
    pub fn event_buffer_bytes(mut self, bytes: usize) -> Self {
        self.event_buffer_bytes = bytes;
        self
    }
    /// HTTP/1.1 settings.
    pub fn http1(mut self, o: Http1Options) -> Self {
        self.http1 = o;
        self
    }
    /// HTTP/2 settings.
    pub fn http2(mut self, o: Http2Options) -> Self {
        self.http2 = o;
        self
    }

    /// The transport used for `port`.
    pub(crate) fn transport_for(&self, port: u16) -> Transport {
        self.transport.unwrap_or(if port == 443 { Transport::Tls } else { Transport::Tcp })
    }

    /// The protocols offered for `transport`.
    pub(crate) fn protocols_for(&self, transport: Transport) -> Vec<Protocol> {
        match (&self.protocols, transport) {
            (Some(p), _) => p.clone(),
            (None, Transport::Tls) => vec![Protocol::Http2, Protocol::Http1],
            (None, Transport::Tcp) => vec![Protocol::Http1],
        }
    }

    /// Reject options that cannot work, with a reason.
    pub(crate) fn validate(&self, port: u16) -> Result<(), Error> {
        let out = |option: &'static str, value: String, expected: &'static str| {
            Err(Error::InvalidOptions(OptionsError::OutOfRange { option, value, expected }))
        };
        let conflict = |options: &'static str, why: &'static str| {
            Err(Error::InvalidOptions(OptionsError::Conflict { options, why }))
        };
        if port == 0 {
            return out("port", "0".into(), "a destination port, 1-65535");
        }
        let transport = self.transport_for(port);
        let protocols = self.protocols_for(transport);
        if protocols.is_empty() {
            return conflict("protocols", "no protocol offered");
        }
        if transport == Transport::Tcp && protocols.len() > 1 {
            return conflict(
                "transport, protocols",
                "over plain TCP exactly one protocol must be chosen (there is no ALPN)",
            );
        }
        if self.event_buffer == 0 || self.event_buffer > MAX_EVENT_BUFFER {
            return out("event_buffer", self.event_buffer.to_string(), "1 to 1,048,576 deliveries");
        }
        if self.event_buffer_bytes == 0 {
            return out("event_buffer_bytes", "0".into(), "at least 1");
        }
        if self.http1.pipeline == 0 {
            return out("http1.pipeline", "0".into(), "at least 1");
        }
        if self.http1.max_head_bytes < 64 {
            return out("http1.max_head_bytes", self.http1.max_head_bytes.to_string(), "at least 64");
        }
        if self.http1.max_headers == 0 {
            return out("http1.max_headers", "0".into(), "at least 1");
        }
        if self.http2.stream_window == 0 {
            return out("http2.stream_window", "0".into(), "positive");
        }
        if self.http2.connection_window == 0 {
            return out("http2.connection_window", "0".into(), "positive");
        }
        if self.http2.small_frame_budget < MIN_SMALL_FRAME_BUDGET {
            let value = self.http2.small_frame_budget.to_string();
            return out("http2.small_frame_budget", value, "at least 25600");
        }
        for (option, d) in [
            ("lookup_timeout", self.lookup_timeout),
            ("connect_timeout", self.connect_timeout),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
        ] {
            if d.is_zero() {
                return out(option, "0s".into(), "positive");
            }
        }
        if self.healthy_after.is_zero() {
            return out(
                "healthy_after",
                "0s".into(),
                "positive: forgiving failures as soon as a connection is up would retry a server that accepts and \
                 closes at once forever, at the first delay (Connection::mark_healthy vouches for a connection \
                 explicitly)",
            );
        }
        if let Some(k) = self.keepalive {
            if k.interval.is_zero() {
                return out("keepalive.interval", "0s".into(), "positive");
            }
            if k.timeout.is_zero() {
                return out("keepalive.timeout", "0s".into(), "positive");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The reason `validate` gives for refusing `o` on `port`.
    fn refusal(o: &ConnectOptions, port: u16) -> String {
        match o.validate(port) {
            Err(Error::InvalidOptions(e)) => e.to_string(),
            other => panic!("{o:?} on port {port}: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_on_any_port() {
        for port in [1, 80, 443, 8080, u16::MAX] {
            ConnectOptions::default().validate(port).unwrap();
        }
    }

    #[test]
    fn transport_and_protocols_follow_the_port_unless_set() {
        let o = ConnectOptions::default();
        assert_eq!(o.transport_for(443), Transport::Tls);
        assert_eq!(o.transport_for(80), Transport::Tcp);
        assert_eq!(o.transport_for(8443), Transport::Tcp);
        assert_eq!(o.clone().transport(Transport::Tls).transport_for(80), Transport::Tls);
        assert_eq!(o.clone().transport(Transport::Tcp).transport_for(443), Transport::Tcp);
        assert_eq!(o.protocols_for(Transport::Tls), [Protocol::Http2, Protocol::Http1]);
        assert_eq!(o.protocols_for(Transport::Tcp), [Protocol::Http1]);
        let h2 = o.protocols(&[Protocol::Http2]);
        assert_eq!(h2.protocols_for(Transport::Tcp), [Protocol::Http2]);
        assert_eq!(h2.protocols_for(Transport::Tls), [Protocol::Http2]);
    }

    #[test]
    fn each_bad_option_is_refused_with_what_to_fix() {
        let d = ConnectOptions::default;
        let ka = |interval, timeout| Some(Keepalive { interval, timeout });
        let cases: Vec<(ConnectOptions, u16, &str)> = vec![
            (d(), 0, "port is 0, but it must be a destination port, 1-65535"),
            (d().protocols(&[]), 80, "no protocol"),
            (d().protocols(&[Protocol::Http2, Protocol::Http1]), 80, "exactly one protocol"),
            (d().event_buffer(0), 80, "event_buffer is 0, but it must be 1 to 1,048,576 deliveries"),
            (d().event_buffer(MAX_EVENT_BUFFER + 1), 80, "event_buffer is 1048577, but it must be 1 to 1,048,576"),
            (d().event_buffer(usize::MAX), 80, "event_buffer is 18446744073709551615"),
            (d().http1(Http1Options { pipeline: 0, ..Http1Options::default() }), 80, "http1.pipeline is 0"),
            (
                d().http1(Http1Options { max_head_bytes: 63, ..Http1Options::default() }),
                80,
                "http1.max_head_bytes is 63, but it must be at least 64",
            ),
            (d().http1(Http1Options { max_headers: 0, ..Http1Options::default() }), 80, "http1.max_headers is 0"),
            (d().http2(Http2Options { stream_window: 0, ..Http2Options::default() }), 80, "http2.stream_window is 0"),
            (
                d().http2(Http2Options { connection_window: 0, ..Http2Options::default() }),
                80,
                "http2.connection_window is 0, but it must be positive",
            ),
            (
                d().http2(Http2Options { small_frame_budget: 25_599, ..Http2Options::default() }),
                80,
                "http2.small_frame_budget is 25599, but it must be at least 25600",
            ),
            (d().lookup_timeout(Duration::ZERO), 80, "lookup_timeout is 0s, but it must be positive"),
            (d().connect_timeout(Duration::ZERO), 80, "connect_timeout is 0s"),
            (d().tls_handshake_timeout(Duration::ZERO), 80, "tls_handshake_timeout is 0s"),
            (d().keepalive(ka(Duration::ZERO, Duration::from_secs(1))), 80, "keepalive.interval is 0s"),
            (d().keepalive(ka(Duration::from_secs(1), Duration::ZERO)), 80, "keepalive.timeout is 0s"),
        ];
        for (o, port, want) in cases {
            let got = refusal(&o, port);
            assert!(got.contains(want), "{got:?} does not say {want:?}");
        }
    }

    #[test]
    fn limits_at_the_edge_are_accepted() {
        let d = ConnectOptions::default;
        for o in [
            d().event_buffer(1),
            d().event_buffer(MAX_EVENT_BUFFER),
            d().http1(Http1Options { pipeline: 1, max_head_bytes: 64, max_headers: 1 }),
            d().http2(Http2Options { stream_window: 1, connection_window: 1, ..Http2Options::default() }),
            d().keepalive(None),
            d().lookup_timeout(Duration::MAX).connect_timeout(Duration::MAX).tls_handshake_timeout(Duration::MAX),
            // HTTP/2 alone over TCP: prior knowledge.
            d().protocols(&[Protocol::Http2]),
        ] {
            o.validate(80).unwrap();
        }
        // Over TLS, ALPN chooses among several.
        d().protocols(&[Protocol::Http1, Protocol::Http2]).validate(443).unwrap();
    }

    #[test]
    fn debug_tells_whether_a_hook_or_resolver_is_set() {
        let o = ConnectOptions::default().hook(|_| {});
        let text = format!("{o:?}");
        assert!(text.contains("hook: true") && text.contains("resolver: false"), "{text}");
    }

    #[test]
    fn bad_pem_is_refused_with_a_reason() {
        let e = TlsOptions::default().add_ca_pem("not a certificate").unwrap_err();
        assert!(e.to_string().contains("no certificate found"), "{e}");
        let e = TlsOptions::default().client_cert_pem("nope", "nope").unwrap_err();
        assert!(e.to_string().contains("certificate PEM"), "{e}");
        let tls = TlsOptions::default().server_name("venue.example").webpki_roots(false);
        let text = format!("{tls:?}");
        assert!(text.contains("venue.example") && text.contains("extra_roots: 0"), "{text}");
    }
}
