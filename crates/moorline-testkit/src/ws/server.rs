//! [`MockServer`]: the handle tests hold, and its builder.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::client::{ClientId, ClientInfo};
use super::conn;
use super::fault::Fault;
use super::frame::Frame;
use super::log::{ExpectError, Received, ReceivedHook};
use super::matcher::Matcher;
use super::replay::Recording;
use super::reply::Reply;
use super::shared::Shared;
use crate::proxy::listener::accept_loop;
use crate::tls::{self, ServerCerts};

/// How long [`MockServer::shutdown`] waits for clients to answer the close frame.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Configures and starts a [`MockServer`].
#[derive(Debug, Clone, Default)]
pub struct MockServerBuilder {
    tls: bool,
    http2: bool,
    port: u16,
    replies: Vec<(Matcher, Reply)>,
    replay: Option<(Recording, f64)>,
    on_received: Option<ReceivedHook>,
    max_message_size: Option<usize>,
}

impl MockServerBuilder {
    /// Serve `wss://` (default off) with a certificate for `localhost` and
    /// `127.0.0.1` signed by a CA generated at start ([`MockServer::ca_pem`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Also serve WebSockets over HTTP/2 (RFC 8441, default off): the server
    /// advertises `SETTINGS_ENABLE_CONNECT_PROTOCOL` and accepts extended
    /// CONNECT streams with `:protocol websocket`, several per connection. Over
    /// TLS, ALPN offers `h2` before `http/1.1`; in clear text, a connection that
    /// starts with the HTTP/2 preface is served as HTTP/2 (prior knowledge).
    /// HTTP/1.1 upgrades keep working either way.
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Listen on this port of `127.0.0.1` (default 0: an ephemeral port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// A scripted reply in force from the start; same as [`MockServer::on`].
    pub fn on(mut self, matcher: Matcher, reply: Reply) -> Self {
        self.replies.push((matcher, reply));
        self
    }

    /// Play `recording` to each client as soon as its upgrade completes, `speed` times faster
    /// than recorded (`1.0` = recorded timing). A recording of one connection is played to
    /// every client; one of several (a session with reconnects) connection by connection: the
    /// n-th client gets the n-th recorded connection's frames, later clients nothing.
    pub fn replay_on_connect(mut self, recording: Recording, speed: f64) -> Self {
        self.replay = Some((recording, speed));
        self
    }

    /// Calls `hook` with every frame received from any client (data and control frames,
    /// close included), in the connection's task, before it is logged for
    /// [`MockServer::received`]: e.g. to print what clients send. Keep it short.
    pub fn on_received(mut self, hook: impl Fn(&Received) + Send + Sync + 'static) -> Self {
        self.on_received = Some(ReceivedHook(Arc::new(hook)));
        self
    }

    /// Largest message (and frame) accepted from a client, in bytes (default: tungstenite's
    /// 64 MiB per message, 16 MiB per frame). A larger one is refused with close code 1009
    /// (message too big) and the connection ends.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes);
        self
    }

    /// Binds `127.0.0.1` (port 0 unless [`port`](Self::port) says otherwise) and starts serving in the current tokio runtime.
    pub async fn start(self) -> io::Result<MockServer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let certs = ServerCerts::generate()?;
        let acceptor = if self.tls { Some(TlsAcceptor::from(certs.server_config(self.http2, false)?)) } else { None };
        let listener = crate::net::bind_loopback(self.port).await?;
        let addr = listener.local_addr()?;
        let (refusing, refusing_rx) = watch::channel(false);
        let mut ws_config = WebSocketConfig::default();
        if let Some(max) = self.max_message_size {
            ws_config = ws_config.max_message_size(Some(max)).max_frame_size(Some(max));
        }
        let shared = Arc::new(Shared::new(runtime, refusing, self.replay, self.on_received, ws_config));
        for (matcher, reply) in self.replies {
            shared.rules.add(matcher, reply);
        }
        let accept_shared = Arc::clone(&shared);
        let http2 = self.http2;
        let accept_task = tokio::spawn(accept_loop(listener, refusing_rx, move |tcp, peer| {
            tracing::trace!(%peer, "accepted connection");
            let (s, tls) = (Arc::clone(&accept_shared), acceptor.clone());
            accept_shared.spawn_connection(tcp, move |parts| conn::run(s, tls, http2, peer, parts));
        }));
        tracing::debug!(%addr, tls = self.tls, "WebSocket mock server started");
        Ok(MockServer { addr, tls: self.tls, certs, shared, accept_task })
    }
}

/// A WebSocket server on `127.0.0.1` that records what clients send, answers
/// by script, and misbehaves on demand.
///
/// See the [module documentation](super) for an overview. Dropping the server
/// stops it: the listener closes and every connection is aborted.
pub struct MockServer {
    addr: SocketAddr,
    tls: bool,
    certs: ServerCerts,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("connections_accepted", &self.connections_accepted())
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// A builder with defaults: plain `ws://`, no scripted replies, no replay.
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::default()
    }

    /// The listening address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `ws://127.0.0.1:PORT/` or `wss://127.0.0.1:PORT/` (the certificate is
    /// valid for `127.0.0.1` and `localhost`). Any path is accepted.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/", self.addr)
    }

    /// PEM of the CA that signed the server certificate (generated even without TLS).
    pub fn ca_pem(&self) -> &str {
        &self.certs.ca_pem
    }

    /// DER of the CA that signed the server certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.certs.ca_der.clone()
    }

    /// A rustls client configuration (ring provider) trusting only this
    /// server's CA, offering `http/1.1`.
    pub fn client_tls_config(&self) -> io::Result<ClientConfig> {
        tls::client_config(self.ca_der(), &["http/1.1"])
    }

    /// A rustls client configuration (ring provider) trusting only this
    /// server's CA, offering ALPN `alpn` (e.g. `&["h2"]` for RFC 8441).
    pub fn client_tls_config_with_alpn(&self, alpn: &[&str]) -> io::Result<ClientConfig> {
        tls::client_config(self.ca_der(), alpn)
    }

    /// Queues `frame` to every client whose upgrade completed; returns how many.
    pub fn inject(&self, frame: Frame) -> usize {
        self.shared.inject_all(&frame)
    }

    /// Queues `frame` to one client; `false` if it is gone.
    pub fn inject_to(&self, client: ClientId, frame: Frame) -> bool {
        self.shared.inject_to(client, frame)
    }

    /// The first received frame (oldest first, from any client, including
    /// frames received before the call) matching `matcher`, waiting up to
    /// `timeout` for one to arrive. Frames are not consumed: call
    /// [`clear_received`](Self::clear_received) to forget them.
    ///
    /// The error lists everything received when nothing matched in time.
    pub async fn expect_received(&self, matcher: Matcher, timeout: Duration) -> Result<Received, ExpectError> {
        self.shared.log.expect(&matcher, timeout).await
    }

    /// Every frame received so far (data and control frames, close included), oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log.all()
    }

    /// Forgets every frame received so far.
    pub fn clear_received(&self) {
        self.shared.log.clear();
    }

    /// Adds a scripted reply: when a received frame matches `matcher`, `reply`
    /// answers the sender. Rules are tried in the order they were added and the
    /// first match answers (so add specific rules before catch-alls).
    pub fn on(&self, matcher: Matcher, reply: Reply) {
        self.shared.rules.add(matcher, reply);
    }

    /// Removes every scripted reply.
    pub fn clear_replies(&self) {
        self.shared.rules.clear();
    }

    /// Plays `recording` to `client` in the background, `speed` times faster
    /// than recorded; `false` if the client is gone.
    pub fn replay_to(&self, client: ClientId, recording: &Recording, speed: f64) -> bool {
        self.shared.replay_to(client, recording, speed)
    }

    /// Applies `fault` to every open connection (or, for a server-wide fault,
    /// to the server); returns the number of connections affected.
    pub fn fault(&self, fault: Fault) -> usize {
        self.shared.fault_all(&fault)
    }

    /// Applies a connection `fault` to one client; `false` if it is gone or the fault is server-wide.
    pub fn fault_to(&self, client: ClientId, fault: Fault) -> bool {
        self.shared.fault_one(client, &fault)
    }

    /// Ends server-wide faults now ([`Fault::RejectUpgrade`], [`Fault::RefuseConnections`]).
    pub fn clear_faults(&self) {
        self.shared.clear_server_faults();
    }

    /// WebSocket upgrades completed so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.upgraded()
    }

    /// TCP connections accepted so far (including failed or rejected upgrades).
    pub fn tcp_connections_accepted(&self) -> usize {
        self.shared.tcp_accepted()
    }

    /// WebSocket connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open()
    }

    /// The currently open clients, by id.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.shared.clients()
    }

    /// Waits until [`connections_accepted`](Self::connections_accepted) reaches `n`; `false` on timeout.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.upgraded() >= n).await
    }

    /// Waits until exactly `n` connections are open; `false` on timeout.
    pub async fn wait_for_open_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.open() == n).await
    }
}

impl MockServer {
    /// Shuts the server down as a server going away does: stops listening, sends every
    /// client a close frame `1001` (going away), behind what it was already sent, and every
    /// HTTP/2 connection a GOAWAY, then waits (up to 3 s) for the clients to answer and the
    /// connections to end; whatever is left then is aborted. Connections that never
    /// upgraded are dropped.
    ///
    /// Dropping the server instead aborts every connection at once, without a close frame.
    pub async fn shutdown(self) {
        self.accept_task.abort();
        let told = self.shared.going_away();
        tracing::debug!(addr = %self.addr, clients = told, "shutting down: close 1001 sent");
        if !self.shared.wait_until(SHUTDOWN_GRACE, |s| s.tasks() == 0).await {
            tracing::debug!(addr = %self.addr, left = self.shared.tasks(), "connections left after the grace; aborting");
        }
        // Drop aborts whatever is left.
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.abort_all();
    }
}
