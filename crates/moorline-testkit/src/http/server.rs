//! [`TestServer`]: the handle tests hold, and its builder.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::conn;
use super::control::Shared;
use super::ctx::{Config, ConnCtx};
use super::fault::Fault;
use crate::tls::{self, ServerCerts};

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Configures and starts a [`TestServer`].
#[derive(Debug, Clone)]
pub struct TestServerBuilder {
    tls: bool,
    h2: bool,
    push: bool,
    client_auth: bool,
    fault: Option<Fault>,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        Self { tls: false, h2: false, push: true, client_auth: false, fault: None }
    }
}

impl TestServerBuilder {
    /// Serve over TLS (default off), with a certificate for `localhost` and
    /// `127.0.0.1` signed by a CA generated at start ([`TestServer::ca_pem`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Enable HTTP/2 (default off).
    ///
    /// With TLS, ALPN offers `["h2", "http/1.1"]` when on, only `http/1.1`
    /// when off. On plain TCP, HTTP/1.1 is always served and, when on,
    /// connections starting with the HTTP/2 preface are served as HTTP/2
    /// (prior knowledge).
    pub fn h2(mut self, on: bool) -> Self {
        self.h2 = on;
        self
    }

    /// Whether `GET /push` sends a PUSH_PROMISE when the HTTP/2 client allows
    /// push (default on). When off, `/push` just answers `200` `push`.
    pub fn enable_push(mut self, on: bool) -> Self {
        self.push = on;
        self
    }

    /// Require TLS clients to present a certificate signed by the server's CA
    /// (default off). [`TestServer::client_cert_pem`] and
    /// [`TestServer::client_key_pem`] give one that passes.
    pub fn require_client_cert(mut self, on: bool) -> Self {
        self.client_auth = on;
        self
    }

    /// A fault in force from the first connection on (default none); same as
    /// calling [`TestServer::set_fault`] right after start.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving in the current tokio runtime.
    pub async fn start(self) -> io::Result<TestServer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let certs = ServerCerts::generate()?;
        let tls =
            if self.tls { Some(TlsAcceptor::from(certs.server_config(self.h2, self.client_auth)?)) } else { None };
        let listener = crate::net::bind_loopback(0).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(runtime, self.fault));
        let config = Arc::new(Config { tls, h2: self.h2, push: self.push });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), config));
        tracing::debug!(%addr, tls = self.tls, h2 = self.h2, "test server started");
        Ok(TestServer { addr, tls: self.tls, h2: self.h2, certs, shared, accept_task })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, config: Arc<Config>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tracing::trace!(%peer, "accepted connection");
                // Latency over segment count, as a real server tuned for APIs would: without it
                // a head and a body written apart wait on Nagle and the peer's delayed ACK.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
                let (s, c) = (Arc::clone(&shared), Arc::clone(&config));
                shared.spawn_connection(tcp, move |id, tcp| conn::run(tcp, ConnCtx { shared: s, config: c, id }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A real HTTP/1.1 + HTTP/2 server on `127.0.0.1`, driveable to misbehave.
///
/// See the [module documentation](super) for the routes. Dropping the server
/// stops it: the listener is closed and every connection task is aborted.
pub struct TestServer {
    addr: SocketAddr,
    tls: bool,
    h2: bool,
    certs: ServerCerts,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("h2", &self.h2)
            .field("connections_accepted", &self.connections_accepted())
            .field("open_connections", &self.open_connections())
            .field("requests_seen", &self.requests_seen())
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// A builder with defaults: plain TCP, HTTP/1.1 only, push allowed, no fault.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// The listening address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A base URL for this server, e.g. `https://localhost:40123`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.port())
    }

    /// PEM of the CA that signed the server certificate.
    ///
    /// Generated even for plain-TCP servers, where it is simply unused.
    pub fn ca_pem(&self) -> &str {
        &self.certs.ca_pem
    }

    /// DER of the CA that signed the server certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.certs.ca_der.clone()
    }

    /// PEM of a client certificate signed by the server's CA, accepted when
    /// [`TestServerBuilder::require_client_cert`] is on.
    pub fn client_cert_pem(&self) -> &str {
        &self.certs.client_cert_pem
    }

    /// PEM (PKCS#8) private key of [`TestServer::client_cert_pem`].
    pub fn client_key_pem(&self) -> &str {
        &self.certs.client_key_pem
    }

    /// A rustls client configuration (ring provider) trusting only this
    /// server's CA and offering `alpn`; handy for raw clients in tests.
    pub fn client_tls_config(&self, alpn: &[&str]) -> io::Result<ClientConfig> {
        tls::client_config(self.ca_der(), alpn)
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted()
    }

    /// Connections currently open (served, stalled or lingering in a graceful close).
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// Requests whose head was fully received, over both protocols (including
    /// requests that were then stalled, refused or faulted).
    pub fn requests_seen(&self) -> usize {
        self.shared.requests_seen()
    }

    /// Puts `fault` in force for new connections / new requests from now on.
    pub fn set_fault(&self, fault: Fault) {
        tracing::debug!(?fault, "fault set");
        self.shared.set_fault(Some(fault));
    }

    /// Removes the fault in force; new connections and requests behave normally.
    pub fn clear_fault(&self) {
        self.shared.set_fault(None);
    }

    /// Gracefully closes (FIN) every open connection; no further bytes are
    /// written on them (TLS connections get no close_notify either).
    pub fn close_all(&self) {
        self.shared.close_all();
    }

    /// Makes every open connection half-open: the server stops reading and
    /// writing on it (no responses, no HTTP/2 PING answers, no FIN) while the
    /// socket stays open, as a peer behind a dead network path would. Only a
    /// client-side keepalive or timeout can notice.
    pub fn freeze_all(&self) {
        self.shared.freeze_all();
    }

    /// Resets (RST, via `SO_LINGER` 0) every open connection.
    pub fn reset_all(&self) {
        self.shared.reset_all();
    }

    /// Waits until [`requests_seen`](Self::requests_seen) reaches `n`; `false` on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.requests_seen() >= n).await
    }

    /// Waits until [`connections_accepted`](Self::connections_accepted) reaches `n`;
    /// `false` on timeout.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.connections_accepted() >= n).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.abort_all();
    }
}
