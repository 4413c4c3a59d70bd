//! State shared by the [`Proxy`](super::Proxy) handle, its accept loop and its
//! connection tasks: settings, counters, and the registry used to cut or reset
//! connections from outside.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::pump::{Outcome, PumpCtx, pump};
use super::settings::{Budget, Direction, Settings};
use crate::net;
use crate::registry::Registry;
use crate::sync::lock;

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
    reset_after: Mutex<Option<u64>>,
    conns: Arc<Registry<u64, Entry>>,
    runtime: Handle,
}

impl Shared {
    pub(crate) fn new(runtime: Handle, upstream: SocketAddr) -> Self {
        Self {
            upstream,
            settings: watch::Sender::new(Settings::default()),
            bytes: [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))],
            accepted: AtomicUsize::new(0),
            reset_after: Mutex::new(None),
            conns: Arc::new(Registry::new()),
            runtime,
        }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn open(&self) -> usize {
        self.conns.len()
    }

    /// Registers an accepted client connection and spawns its forwarding task.
    pub(crate) fn spawn_connection(self: &Arc<Self>, tcp: TcpStream) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let (client, tcp) = match net::duplicate(tcp) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "could not register accepted connection; dropping it");
                self.conns.notify();
                return;
            }
        };
        let id = self.conns.next_id();
        let budget = Arc::new(Budget::new(*lock(&self.reset_after)));
        let fut = serve(Arc::clone(self), id, tcp, Arc::clone(&budget));
        self.conns.spawn(id, fut, |task| Entry { client, upstream: None, task, budget });
    }

    /// FIN on both sides of every connection.
    pub(crate) fn cut_all(&self) {
        for entry in self.conns.take_all() {
            entry.task.abort();
            for socket in std::iter::once(entry.client).chain(entry.upstream) {
                net::fin_and_drain(&self.runtime, socket);
            }
        }
        self.conns.notify();
    }

    /// RST on both sides of every connection.
    pub(crate) fn reset_all(&self) {
        for entry in self.conns.take_all() {
            reset_entry(entry);
        }
        self.conns.notify();
    }

    fn reset_one(&self, id: u64) {
        if let Some(entry) = self.conns.remove(id) {
            reset_entry(entry);
        }
        self.conns.notify();
    }

    /// Sets the `reset_after` budget of new and existing connections; resets now where it is 0.
    pub(crate) fn set_reset_after(&self, bytes: Option<u64>) {
        *lock(&self.reset_after) = bytes;
        let ids: Vec<u64> = {
            let conns = self.conns.lock();
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
        for entry in self.conns.take_all() {
            entry.task.abort();
        }
    }

    /// Waits until `cond` holds or `timeout` elapses; returns the final value of `cond`.
    pub(crate) async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        self.conns.wait_until(timeout, || cond(self)).await
    }
}

/// Forwards one client connection to the upstream until both directions end.
async fn serve(shared: Arc<Shared>, id: u64, mut client: TcpStream, budget: Arc<Budget>) {
    let connected = TcpStream::connect(shared.upstream).await.and_then(|up| {
        up.set_nodelay(true)?;
        net::duplicate(up)
    });
    let mut upstream = match connected {
        Ok((upstream_dup, upstream)) => {
            if let Some(entry) = shared.conns.lock().get_mut(&id) {
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
        net::reset(socket);
    }
    entry.task.abort();
}
