//! The venue behind a mutex, each connection's outbox, and the table of accepted
//! connections the faults act on. Deliveries are queued while the venue lock is held, so
//! every connection sees events in the order the venue produced them (a `book` change never
//! overtakes its predecessor).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::hook_spec::{Fault, RequestAction, RequestRule};
use super::snapshot::BookSnapshot;
use super::time::Now;
use super::venue::{ConnId, Delivery, Outgoing, Venue};
use crate::net;
use crate::sync::lock;
use crate::ws::close::GOING_AWAY;
use crate::ws::io::IoControl;

pub(crate) struct Core {
    pub(crate) venue: Venue,
    outboxes: HashMap<ConnId, mpsc::UnboundedSender<Outgoing>>,
}

/// One accepted connection, as seen from outside its task.
struct Entry {
    peer: SocketAddr,
    /// A duplicate of the socket (same kernel socket, other fd) for FIN/RST/half-open.
    dup: std::net::TcpStream,
    task: AbortHandle,
    io: Arc<IoControl>,
}

/// State shared by the handle, the accept loop, the market clock and connections.
pub(crate) struct Shared {
    core: Mutex<Core>,
    conns: Mutex<HashMap<ConnId, Entry>>,
    /// Sockets of half-open connections, kept open until the simulator is dropped.
    frozen: Mutex<Vec<std::net::TcpStream>>,
    rules: Mutex<Vec<RequestRule>>,
    next_id: AtomicU64,
    open: AtomicUsize,
    runtime: Handle,
}

impl Shared {
    pub(crate) fn new(venue: Venue, runtime: Handle) -> Self {
        Self {
            core: Mutex::new(Core { venue, outboxes: HashMap::new() }),
            conns: Mutex::new(HashMap::new()),
            frozen: Mutex::new(Vec::new()),
            rules: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            runtime,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        // Nothing panics while holding the lock; recover anyway rather than cascade.
        lock(&self.core)
    }

    /// Sends what the venue produced to the connections' outboxes (with the venue locked).
    fn route(core: &Core, deliveries: Vec<Delivery>) {
        for Delivery { conn, out } in deliveries {
            if let Some(outbox) = core.outboxes.get(&conn) {
                // A closed outbox means the connection is ending; nothing to do.
                let _ = outbox.send(out);
            }
        }
    }

    /// Runs `f` on the venue and routes what it produced, under one lock.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut Venue) -> (R, Vec<Delivery>)) -> R {
        let mut core = self.lock();
        let (result, deliveries) = f(&mut core.venue);
        Self::route(&core, deliveries);
        result
    }

    /// Registers an accepted TCP connection: a fresh id, and its task spawned by `spawn`
    /// (given the id, the stream and its write-fault control). The table is locked while
    /// spawning, so the task cannot unregister before it is registered.
    pub(crate) fn accept(
        &self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        spawn: impl FnOnce(ConnId, tokio::net::TcpStream, Arc<IoControl>) -> AbortHandle,
    ) {
        let (dup, tcp) = match net::duplicate(tcp) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "could not register an accepted connection; dropping it");
                return;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let io = Arc::new(IoControl::default());
        let mut conns = lock(&self.conns);
        let task = spawn(id, tcp, Arc::clone(&io));
        conns.insert(id, Entry { peer, dup, task, io });
    }

    /// The WebSocket upgrade of `conn` completed: the venue opens its session.
    pub(crate) fn connect(&self, conn: ConnId, outbox: mpsc::UnboundedSender<Outgoing>) {
        self.open.fetch_add(1, Ordering::SeqCst);
        let mut core = self.lock();
        core.venue.connect(conn, Now::system());
        core.outboxes.insert(conn, outbox);
    }

    /// Connection `conn` ended (`upgraded`: its session was open): unregisters it, and the
    /// venue ends its session (cancel-on-disconnect fires).
    pub(crate) fn disconnect(&self, conn: ConnId, upgraded: bool) {
        lock(&self.conns).remove(&conn);
        if upgraded {
            let mut core = self.lock();
            core.outboxes.remove(&conn);
            let deliveries = core.venue.disconnect(conn, Now::system());
            Self::route(&core, deliveries);
            drop(core);
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Server shutdown: queues a close frame 1001 (going away) to every connection, behind
    /// what it was already sent.
    pub(crate) fn going_away(&self) {
        let core = self.lock();
        for outbox in core.outboxes.values() {
            let _ = outbox.send(Outgoing::Close { code: GOING_AWAY, reason: "server shutting down".to_owned() });
        }
    }

    /// A text frame from `conn`, read at `now`. Request rules (cut, delay) apply here.
    pub(crate) fn on_text(self: &Arc<Self>, conn: ConnId, text: &str, now: Now) {
        let rule = self.take_rule(conn, text);
        let mut us_out = || now.unix_us + u64::try_from(now.instant.elapsed().as_micros()).unwrap_or(0);
        let mut core = self.lock();
        let mut deliveries = core.venue.on_text(conn, text, now, &mut us_out);
        match rule {
            None => Self::route(&core, deliveries),
            Some(RequestAction::Cut(fault)) => {
                deliveries.retain(|d| d.conn != conn);
                Self::route(&core, deliveries);
                drop(core);
                tracing::debug!(conn, ?fault, "request processed; cutting the connection before its response");
                self.fault(conn, &fault);
            }
            Some(RequestAction::Delay(delay)) => {
                let mut rest = deliveries.into_iter();
                let response = rest.next();
                Self::route(&core, rest.collect());
                if let (Some(response), Some(outbox)) = (response, core.outboxes.get(&conn).cloned()) {
                    tracing::debug!(conn, ?delay, "delaying a response");
                    self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = outbox.send(response.out);
                    });
                }
            }
        }
    }

    /// The first armed rule that matches this request from `conn` (used up).
    fn take_rule(&self, conn: ConnId, text: &str) -> Option<RequestAction> {
        let mut rules = lock(&self.rules);
        if rules.is_empty() {
            return None;
        }
        let request: Value = serde_json::from_str(text).ok()?;
        let pos = rules.iter().position(|r| r.matches(conn, &request))?;
        Some(rules.remove(pos).action)
    }

    /// Arms a request rule.
    pub(crate) fn add_rule(&self, rule: RequestRule) {
        lock(&self.rules).push(rule);
    }

    pub(crate) fn on_binary(&self, conn: ConnId) {
        self.run(|v| ((), v.on_binary(conn, Now::system())));
    }

    /// A control frame (ping, pong) from `conn`: it is not idle.
    pub(crate) fn on_control_frame(&self, conn: ConnId) {
        self.lock().venue.on_frame(conn, Now::system());
    }

    pub(crate) fn on_timer(&self, conn: ConnId) {
        self.run(|v| ((), v.on_timer(conn, Now::system())));
    }

    pub(crate) fn deadline(&self, conn: ConnId) -> Option<Instant> {
        self.lock().venue.deadline(conn)
    }

    pub(crate) fn step_market(&self) {
        self.run(|v| ((), v.step_market(Now::system())));
    }

    pub(crate) fn book_snapshot(&self, instrument_name: &str) -> Option<BookSnapshot> {
        self.lock().venue.book_snapshot(instrument_name)
    }

    /// Open WebSocket connections.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Ids and addresses of the upgraded connections, by id.
    pub(crate) fn peers(&self) -> Vec<(ConnId, SocketAddr)> {
        let core = self.lock();
        let conns = lock(&self.conns);
        let mut out: Vec<(ConnId, SocketAddr)> =
            conns.iter().filter(|(id, _)| core.outboxes.contains_key(id)).map(|(id, e)| (*id, e.peer)).collect();
        out.sort_unstable();
        out
    }

    /// Applies `fault` to connection `conn`; `false` if it is not open.
    pub(crate) fn fault(&self, conn: ConnId, fault: &Fault) -> bool {
        tracing::debug!(conn, ?fault, "fault");
        match fault {
            Fault::Close { code, reason } => {
                let core = self.lock();
                let close = Outgoing::Close { code: *code, reason: reason.clone() };
                core.outboxes.get(&conn).is_some_and(|o| o.send(close).is_ok())
            }
            Fault::StallAfter { bytes } => lock(&self.conns).get(&conn).map(|e| e.io.stall_after(*bytes)).is_some(),
            Fault::SlowDrip { delay_ms } => {
                let delay = Duration::from_millis(*delay_ms);
                lock(&self.conns).get(&conn).map(|e| e.io.drip(delay)).is_some()
            }
            Fault::Fin | Fault::Reset | Fault::HalfOpen => {
                // Taken out of the table first; no lock is held while the task is aborted.
                let Some(entry) = lock(&self.conns).remove(&conn) else { return false };
                match fault {
                    Fault::Fin => net::fin_and_drain(&self.runtime, entry.dup),
                    Fault::Reset => net::reset(entry.dup),
                    _ => lock(&self.frozen).push(entry.dup),
                }
                entry.task.abort();
                true
            }
        }
    }

    /// Applies `fault` to every open connection; returns how many.
    pub(crate) fn fault_all(&self, fault: &Fault) -> usize {
        let ids: Vec<ConnId> = self.peers().into_iter().map(|(id, _)| id).collect();
        ids.into_iter().filter(|id| self.fault(*id, fault)).count()
    }

    /// Aborts every connection task (the simulator is dropped) and closes half-open sockets.
    pub(crate) fn abort_all(&self) {
        let entries: Vec<Entry> = lock(&self.conns).drain().map(|(_, e)| e).collect();
        for entry in entries {
            entry.task.abort();
        }
        lock(&self.frozen).clear();
    }
}
