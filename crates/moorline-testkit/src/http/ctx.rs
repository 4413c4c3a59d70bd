//! What every connection task of the HTTP test server knows: the server's settings, its
//! shared state and the connection's id (used by the dispatcher, `conn.rs`, and by the
//! protocols it hands a connection to: `h1.rs`, `h2.rs`, `raw_h2.rs`).

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::control::Shared;

/// The HTTP/2 client connection preface.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Server-wide settings every connection needs.
pub(crate) struct Config {
    /// TLS acceptor, when the server speaks TLS.
    pub(crate) tls: Option<TlsAcceptor>,
    /// Whether HTTP/2 is offered (ALPN) or detected (prior knowledge).
    pub(crate) h2: bool,
    /// Whether `/push` may push.
    pub(crate) push: bool,
}

/// What a connection task knows about its world.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Arc<Config>,
    /// This connection's id in the registry.
    pub(crate) id: u64,
}

impl ConnCtx {
    /// Resets (RST) this connection's TCP socket.
    pub(crate) fn reset_connection(&self) {
        self.shared.reset_connection(self.id);
    }
}
