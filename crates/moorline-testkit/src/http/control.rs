//! Shared server state: counters, the current fault, and the registry of open
//! connections used to close or reset them from the outside.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::fault::Fault;
use super::io::{DRAIN_AFTER_CLOSE, discard_until_eof};

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
    next_id: AtomicU64,
    fault: Mutex<Option<Fault>>,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    /// Sockets of frozen connections, kept open (and unread) until the server is dropped.
    frozen: Mutex<Vec<std::net::TcpStream>>,
    changed: Notify,
    runtime: Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Creates the state; `runtime` runs background drains started by [`Shared::close_all`].
    pub(crate) fn new(runtime: Handle, fault: Option<Fault>) -> Self {
        Self {
            accepted: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            fault: Mutex::new(fault),
            conns: Mutex::new(HashMap::new()),
            frozen: Mutex::new(Vec::new()),
            changed: Notify::new(),
            runtime,
        }
    }

    /// Number of TCP connections accepted so far.
    pub(crate) fn connections_accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Number of connections whose task is still alive.
    pub(crate) fn open_connections(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Number of request heads fully received.
    pub(crate) fn requests_seen(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Records one more fully received request head.
    pub(crate) fn request_seen(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
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
        let registered = (|| -> std::io::Result<(std::net::TcpStream, TcpStream)> {
            let std = tcp.into_std()?;
            let dup = std.try_clone()?;
            Ok((dup, TcpStream::from_std(std)?))
        })();
        let (dup, tcp) = match registered {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "could not register accepted connection; dropping it");
                self.changed.notify_waiters();
                return;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let guard = ConnGuard { shared: Arc::clone(self), id };
        let fut = serve(id, tcp);
        {
            // Hold the registry lock across spawn + insert so that the task's
            // guard cannot try to deregister before the entry exists.
            let mut conns = lock(&self.conns);
            let handle = tokio::spawn(async move {
                let _guard = guard;
                fut.await;
            });
            conns.insert(id, ConnEntry { dup, task: handle.abort_handle() });
        }
        self.changed.notify_waiters();
    }

    fn take_all(&self) -> Vec<ConnEntry> {
        lock(&self.conns).drain().map(|(_, e)| e).collect()
    }

    /// Gracefully closes every open connection: FIN now, no further bytes.
    pub(crate) fn close_all(&self) {
        for entry in self.take_all() {
            if let Err(e) = entry.dup.shutdown(Shutdown::Write) {
                tracing::debug!(error = %e, "shutdown(write) in close_all failed");
            }
            entry.task.abort();
            // Keep reading on the duplicate for a while so that unread client
            // bytes do not turn the final close into a RST.
            let dup = entry.dup;
            self.runtime.spawn(async move {
                if let Ok(mut tcp) = TcpStream::from_std(dup) {
                    let _ = tokio::time::timeout(DRAIN_AFTER_CLOSE, discard_until_eof(&mut tcp)).await;
                }
            });
        }
        self.changed.notify_waiters();
    }

    /// Makes every open connection half-open: its task stops (nothing is read or written
    /// any more, not even HTTP/2 PING answers) while the socket stays open.
    pub(crate) fn freeze_all(&self) {
        let entries = self.take_all();
        let mut frozen = lock(&self.frozen);
        for entry in entries {
            entry.task.abort();
            frozen.push(entry.dup);
        }
        drop(frozen);
        self.changed.notify_waiters();
    }

    /// Resets (RST) every open connection.
    pub(crate) fn reset_all(&self) {
        for entry in self.take_all() {
            reset_entry(entry);
        }
        self.changed.notify_waiters();
    }

    /// Resets (RST) connection `id`, if it is still open.
    pub(crate) fn reset_connection(&self, id: u64) {
        let entry = lock(&self.conns).remove(&id);
        if let Some(entry) = entry {
            reset_entry(entry);
        }
        self.changed.notify_waiters();
    }

    /// Aborts every connection task (server shutdown) and closes frozen sockets.
    pub(crate) fn abort_all(&self) {
        for entry in self.take_all() {
            entry.task.abort();
        }
        lock(&self.frozen).clear();
    }

    /// Waits until `cond` holds or `timeout` elapses; returns the final value of `cond`.
    pub(crate) async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(self);
            }
        }
    }
}

/// Sets `SO_LINGER` 0 on the socket, then closes our duplicate and aborts the
/// task: when the last descriptor goes away the kernel sends a RST.
fn reset_entry(entry: ConnEntry) {
    let socket = TcpSocket::from_std_stream(entry.dup);
    if let Err(e) = socket.set_zero_linger() {
        tracing::debug!(error = %e, "setting SO_LINGER 0 failed");
    }
    entry.task.abort();
    drop(socket);
}

/// Removes a connection from the registry when its task ends (or is aborted).
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let removed = lock(&self.shared.conns).remove(&self.id);
        drop(removed);
        self.shared.changed.notify_waiters();
    }
}
