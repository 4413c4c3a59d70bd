//! State shared by the [`Proxy`](super::Proxy) handle, its accept loop and its
//! connection tasks: settings, counters, and the registry used to cut or reset
//! connections from outside.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

use super::pump::{Outcome, PumpCtx, pump};
use super::settings::{Budget, Direction, Settings};

/// How long a cut connection keeps discarding incoming bytes (so the FIN stays a FIN).
const DRAIN_AFTER_CUT: Duration = Duration::from_millis(1000);

struct Entry {
    /// Duplicates of the client-side and (once connected) upstream-side sockets.
    client: std::net::TcpStream,
    upstream: Option<std::net::TcpStream>,
    task: AbortHandle,
    budget: Arc<Budget>,
}

pub(crate) struct Shared {
    pub(crate) upstream: SocketAddr,
    pub(crate) settings: watch::Sender<Settings>,
    pub(crate) bytes: [Arc<AtomicU64>; 2],
    accepted: AtomicUsize,
    next_id: AtomicU64,
    reset_after: Mutex<Option<u64>>,
    conns: Mutex<HashMap<u64, Entry>>,
    changed: Notify,
    runtime: Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dup(tcp: TcpStream) -> std::io::Result<(std::net::TcpStream, TcpStream)> {
    let std = tcp.into_std()?;
    let dup = std.try_clone()?;
    Ok((dup, TcpStream::from_std(std)?))
}

impl Shared {
    pub(crate) fn new(runtime: Handle, upstream: SocketAddr) -> Self {
        Self {
            upstream,
            settings: watch::Sender::new(Settings::default()),
            bytes: [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))],
            accepted: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            reset_after: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            runtime,
        }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn open(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Registers an accepted client connection and spawns its forwarding task.
    pub(crate) fn spawn_connection(self: &Arc<Self>, tcp: TcpStream) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let (client_dup, tcp) = match dup(tcp) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "could not register accepted connection; dropping it");
                self.changed.notify_waiters();
                return;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let budget = Arc::new(Budget::new(*lock(&self.reset_after)));
        let guard = Guard { shared: Arc::clone(self), id };
        let fut = serve(Arc::clone(self), id, tcp, Arc::clone(&budget));
        {
            let mut conns = lock(&self.conns);
            let handle = tokio::spawn(async move {
                let _guard = guard;
                fut.await;
            });
            conns.insert(id, Entry { client: client_dup, upstream: None, task: handle.abort_handle(), budget });
        }
        self.changed.notify_waiters();
    }

    fn take_all(&self) -> Vec<Entry> {
        lock(&self.conns).drain().map(|(_, e)| e).collect()
    }

    /// FIN on both sides of every connection.
    pub(crate) fn cut_all(&self) {
        for entry in self.take_all() {
            entry.task.abort();
            for socket in std::iter::once(entry.client).chain(entry.upstream) {
                if let Err(e) = socket.shutdown(Shutdown::Write) {
                    tracing::debug!(error = %e, "shutdown(write) in cut failed");
                }
                self.runtime.spawn(async move {
                    if let Ok(mut tcp) = TcpStream::from_std(socket) {
                        let _ = tokio::time::timeout(DRAIN_AFTER_CUT, discard_until_eof(&mut tcp)).await;
                    }
                });
            }
        }
        self.changed.notify_waiters();
    }

    /// RST on both sides of every connection.
    pub(crate) fn reset_all(&self) {
        for entry in self.take_all() {
            reset_entry(entry);
        }
        self.changed.notify_waiters();
    }

    fn reset_one(&self, id: u64) {
        let entry = lock(&self.conns).remove(&id);
        if let Some(entry) = entry {
            reset_entry(entry);
        }
        self.changed.notify_waiters();
    }

    /// Sets the `reset_after` budget of new and existing connections; resets now where it is 0.
    pub(crate) fn set_reset_after(&self, bytes: Option<u64>) {
        *lock(&self.reset_after) = bytes;
        let ids: Vec<u64> = {
            let conns = lock(&self.conns);
            for entry in conns.values() {
                entry.budget.set(bytes);
            }
            conns.keys().copied().collect()
        };
        if bytes == Some(0) {
            for id in ids {
                self.reset_one(id);
            }
        }
    }

    /// Aborts everything (proxy dropped).
    pub(crate) fn abort_all(&self) {
        for entry in self.take_all() {
            entry.task.abort();
        }
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

/// Forwards one client connection to the upstream until both directions end.
async fn serve(shared: Arc<Shared>, id: u64, mut client: TcpStream, budget: Arc<Budget>) {
    let connected = TcpStream::connect(shared.upstream).await.and_then(|up| {
        up.set_nodelay(true)?;
        dup(up)
    });
    let mut upstream = match connected {
        Ok((upstream_dup, upstream)) => {
            if let Some(entry) = lock(&shared.conns).get_mut(&id) {
                entry.upstream = Some(upstream_dup);
            }
            upstream
        }
        Err(e) => {
            tracing::debug!(error = %e, upstream = %shared.upstream, "upstream connect failed; resetting client");
            shared.reset_one(id);
            return;
        }
    };
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let ctx = |dir: Direction| PumpCtx {
        dir,
        settings: shared.settings.subscribe(),
        budget: &budget,
        counter: Arc::clone(&shared.bytes[dir.index()]),
    };
    let up = pump(client_read, upstream_write, ctx(Direction::Upstream));
    let down = pump(upstream_read, client_write, ctx(Direction::Downstream));
    tokio::pin!(up, down);
    let (first, up_finished) = tokio::select! {
        outcome = &mut up => (outcome, true),
        outcome = &mut down => (outcome, false),
    };
    // A clean EOF one way waits for the other way; anything else resets both sides.
    let outcome = match first {
        Outcome::Eof if up_finished => down.await,
        Outcome::Eof => up.await,
        other => other,
    };
    if outcome != Outcome::Eof {
        tracing::debug!(id, ?outcome, "resetting proxied connection");
        shared.reset_one(id);
    }
}

/// Sets `SO_LINGER` 0 on both sockets, aborts the task and closes the duplicates: RST.
fn reset_entry(entry: Entry) {
    for socket in std::iter::once(entry.client).chain(entry.upstream) {
        let socket = TcpSocket::from_std_stream(socket);
        if let Err(e) = socket.set_zero_linger() {
            tracing::debug!(error = %e, "setting SO_LINGER 0 failed");
        }
    }
    entry.task.abort();
}

async fn discard_until_eof(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut scratch).await {
        if n == 0 {
            return;
        }
    }
}

/// Removes a connection from the registry when its task ends (or is aborted).
struct Guard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let removed = lock(&self.shared.conns).remove(&self.id);
        drop(removed);
        self.shared.changed.notify_waiters();
    }
}
