//! Shared server state: counters, the current fault, and the registry of open
//! connections used to close or reset them from the outside.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::fault::Fault;
use crate::net;
use crate::registry::Registry;
use crate::sync::lock;

/// One open connection, as seen from outside its task.
struct ConnEntry {
    /// A duplicate of the connection's socket (same kernel socket, other fd),
    /// used to shut it down or set `SO_LINGER` without the task's cooperation.
    dup: std::net::TcpStream,
    /// Aborts the connection's task (which owns the original fd).
    task: AbortHandle,
}

/// State shared by the [`TestServer`](super::TestServer) handle, the accept
/// loop and every connection task.
pub(crate) struct Shared {
    accepted: AtomicUsize,
    requests: AtomicUsize,
    fault: Mutex<Option<Fault>>,
    conns: Arc<Registry<u64, ConnEntry>>,
    /// Sockets of frozen connections, kept open (and unread) until the server is dropped.
    frozen: Mutex<Vec<std::net::TcpStream>>,
    runtime: Handle,
}

impl Shared {
    /// Creates the state; `runtime` runs background drains started by [`Shared::close_all`].
    pub(crate) fn new(runtime: Handle, fault: Option<Fault>) -> Self {
        Self {
            accepted: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            fault: Mutex::new(fault),
            conns: Arc::new(Registry::new()),
            frozen: Mutex::new(Vec::new()),
            runtime,
        }
    }

    /// Number of TCP connections accepted so far.
    pub(crate) fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Number of connections whose task is still alive.
    pub(crate) fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Number of request heads fully received.
    pub(crate) fn requests_seen(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Records one more fully received request head.
    pub(crate) fn request_seen(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.conns.notify();
    }

    /// The fault currently in force, if any.
    pub(crate) fn fault(&self) -> Option<Fault> {
        lock(&self.fault).clone()
    }

    /// Replaces the fault in force.
    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        *lock(&self.fault) = fault;
    }

    /// Registers an accepted connection and spawns its task.
    ///
    /// `serve` receives the connection id and the stream; the registry entry is
    /// removed when the task ends or is aborted.
    pub(crate) fn spawn_connection<F, Fut>(self: &Arc<Self>, tcp: TcpStream, serve: F)
    where
        F: FnOnce(u64, TcpStream) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let (dup, tcp) = match net::duplicate(tcp) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "could not register accepted connection; dropping it");
                self.conns.notify();
                return;
            }
        };
        let id = self.conns.next_id();
        self.conns.spawn(id, serve(id, tcp), |task| ConnEntry { dup, task });
    }

    /// Gracefully closes every open connection: FIN now, no further bytes.
    pub(crate) fn close_all(&self) {
        for entry in self.conns.take_all() {
            // FIN before the abort: nothing the task still writes gets out. Keep reading on
            // the duplicate for a while so that unread client bytes do not turn the final
            // close into a RST.
            net::fin_and_drain(&self.runtime, entry.dup);
            entry.task.abort();
        }
        self.conns.notify();
    }

    /// Makes every open connection half-open: its task stops (nothing is read or written
    /// any more, not even HTTP/2 PING answers) while the socket stays open.
    pub(crate) fn freeze_all(&self) {
        let entries = self.conns.take_all();
        let mut frozen = lock(&self.frozen);
        for entry in entries {
            entry.task.abort();
            frozen.push(entry.dup);
        }
        drop(frozen);
        self.conns.notify();
    }

    /// Resets (RST) every open connection.
    pub(crate) fn reset_all(&self) {
        for entry in self.conns.take_all() {
            reset_entry(entry);
        }
        self.conns.notify();
    }

    /// Resets (RST) connection `id`, if it is still open.
    pub(crate) fn reset_connection(&self, id: u64) {
        if let Some(entry) = self.conns.remove(id) {
            reset_entry(entry);
        }
        self.conns.notify();
    }

    /// Aborts every connection task (server shutdown) and closes frozen sockets.
    pub(crate) fn abort_all(&self) {
        for entry in self.conns.take_all() {
            entry.task.abort();
        }
        lock(&self.frozen).clear();
    }

    /// Waits until `cond` holds or `timeout` elapses; returns the final value of `cond`.
    pub(crate) async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        self.conns.wait_until(timeout, || cond(self)).await
    }
}

/// Sets `SO_LINGER` 0 on the socket, then closes our duplicate and aborts the
/// task: when the last descriptor goes away the kernel sends a RST.
fn reset_entry(entry: ConnEntry) {
    net::reset(entry.dup);
    entry.task.abort();
}
