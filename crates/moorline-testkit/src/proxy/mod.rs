//! A fault-injecting TCP proxy on `127.0.0.1`, to put in front of any server.
//!
//! [`Proxy::start`] listens on an ephemeral loopback port and forwards every
//! accepted connection to an upstream address, both directions. At run time,
//! for existing and new connections alike, it can
//!
//! * add latency per [`Direction`] ([`Proxy::set_latency`]; applies to bytes
//!   read after the change);
//! * limit bandwidth per direction in bytes/s ([`Proxy::set_bandwidth`]);
//! * cut every connection with a FIN both ways ([`Proxy::cut`]) or reset it
//!   with a RST both ways ([`Proxy::reset`]);
//! * blackhole traffic: nothing is read or written in either direction while
//!   the sockets stay open, like a network partition; traffic resumes (nothing
//!   lost) when lifted ([`Proxy::blackhole`]);
//! * reset connections after a number of forwarded bytes ([`Proxy::reset_after`]);
//! * refuse new connections: the listening socket is closed (`ECONNREFUSED`)
//!   and reopened on the same port when lifted ([`Proxy::refuse_connections`]).
//!
//! A half-close (FIN) from either side is passed on; an I/O error on either
//! side, or a failed upstream connect, resets the connection on both sides.
//!
//! ```no_run
//! # async fn demo(upstream: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use moorline_testkit::proxy::{Direction, Proxy};
//!
//! let proxy = Proxy::start(upstream).await?;
//! proxy.set_latency(Direction::Downstream, Duration::from_millis(50));
//! proxy.set_bandwidth(Direction::Downstream, Some(64 * 1024));
//! // ... point the client under test at proxy.addr() ...
//! proxy.blackhole(true);
//! # Ok(())
//! # }
//! ```

mod limiter;
pub(crate) mod listener;
mod pump;
mod settings;
mod shared;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use settings::Direction;
use shared::Shared;

/// A TCP proxy from `127.0.0.1:port` to an upstream address, with run-time faults.
///
/// Dropping the proxy stops it: the listener closes and every connection is aborted.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    refusing: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("connections_accepted", &self.connections_accepted())
            .field("open_connections", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds `127.0.0.1:0` and starts forwarding to `upstream` in the current tokio runtime.
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let listener = crate::net::bind_loopback(0).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(runtime, upstream));
        let (refusing, refusing_rx) = watch::channel(false);
        let accept_shared = Arc::clone(&shared);
        let accept_task = tokio::spawn(listener::accept_loop(listener, refusing_rx, move |tcp, peer| {
            tracing::trace!(%peer, "proxy accepted connection");
            accept_shared.spawn_connection(tcp);
        }));
        tracing::debug!(%addr, %upstream, "proxy started");
        Ok(Proxy { addr, shared, refusing, accept_task })
    }

    /// The listening address (`127.0.0.1:port`) clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Delays bytes going in `direction` by `latency` (zero: none), counted from
    /// when the proxy read them.
    pub fn set_latency(&self, direction: Direction, latency: Duration) {
        self.shared.settings.send_modify(|s| s.latency[direction.index()] = latency);
    }

    /// Limits `direction` to `bytes_per_second` (`None`: unlimited; `Some(0)`:
    /// nothing more gets through).
    pub fn set_bandwidth(&self, direction: Direction, bytes_per_second: Option<u64>) {
        self.shared.settings.send_modify(|s| s.bandwidth[direction.index()] = bytes_per_second);
    }

    /// Closes every open connection gracefully on both sides (FIN to the
    /// client and to the upstream); nothing more is forwarded.
    pub fn cut(&self) {
        self.shared.cut_all();
    }

    /// Resets every open connection on both sides (RST, via `SO_LINGER` 0).
    pub fn reset(&self) {
        self.shared.reset_all();
    }

    /// Stops (`true`) or resumes (`false`) forwarding in both directions for
    /// every connection, keeping the sockets open. While on, nothing is read,
    /// so data waits in kernel buffers and is delivered when lifted.
    pub fn blackhole(&self, on: bool) {
        self.shared.settings.send_modify(|s| s.blackhole = on);
    }

    /// Resets (RST, both sides) each connection once `bytes` more bytes have
    /// been forwarded on it, both directions together: existing connections
    /// count from now, new ones from their start. Exactly `bytes` bytes get
    /// through. `Some(0)` resets existing connections now; `None` removes the limit.
    pub fn reset_after(&self, bytes: Option<u64>) {
        self.shared.set_reset_after(bytes);
    }

    /// Refuses (`true`) new connections: the listening socket is closed, so
    /// connecting fails with `ECONNREFUSED`; `false` listens again on the same port.
    /// Existing connections are not affected.
    pub fn refuse_connections(&self, on: bool) {
        self.refusing.send_replace(on);
    }

    /// Bytes forwarded in `direction` so far, over all connections.
    pub fn bytes(&self, direction: Direction) -> u64 {
        self.shared.bytes[direction.index()].load(Ordering::SeqCst)
    }

    /// Client connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted()
    }

    /// Connections currently being forwarded.
    pub fn open_connections(&self) -> usize {
        self.shared.open()
    }

    /// Waits until [`connections_accepted`](Self::connections_accepted) reaches `n`; `false` on timeout.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.accepted() >= n).await
    }

    /// Waits until exactly `n` connections are open; `false` on timeout.
    pub async fn wait_for_open_connections(&self, n: usize, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.open() == n).await
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.abort_all();
    }
}
