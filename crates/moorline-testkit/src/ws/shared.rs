//! State shared by the [`MockServer`](super::MockServer) handle, the accept loop and
//! every connection task: counters, the client registry, and fault application.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::client::{ClientId, ClientInfo};
use super::close::GOING_AWAY;
use super::fault::Fault;
use super::frame::Frame;
use super::io::IoControl;
use super::log::{Log, ReceivedHook};
use super::replay::{Recording, scale, schedule};
use super::reply::Rules;
use crate::net;
use crate::registry::Registry;
use crate::sync::lock;

/// Stand-in for "forever" in refusal deadlines.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a connection task's writer is told to do, in order.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send this frame.
    Send(Frame),
    /// Let this many more bytes out, then stall writes.
    StallAfter(usize),
    /// Send only the first `usize` bytes of this frame, then stall writes.
    Partial(Frame, usize),
    /// Send a close frame, wait a little for the answer, then end the connection.
    Close(u16, String),
    /// HTTP/2 connections only: start a graceful shutdown (GOAWAY).
    GoAway,
}

/// One accepted connection, as seen from outside its task.
struct Entry {
    /// A duplicate of the socket (same kernel socket, other fd) for FIN/RST/half-open.
    dup: std::net::TcpStream,
    task: AbortHandle,
    commands: mpsc::UnboundedSender<Command>,
    io: Arc<IoControl>,
    /// Set once the WebSocket upgrade completed.
    info: Option<ClientInfo>,
    /// For a WebSocket session on an HTTP/2 connection: that connection's entry.
    parent: Option<ClientId>,
    /// Whether this is an HTTP/2 connection (which carries sessions, not frames).
    h2: bool,
}

/// Everything one connection task needs from the registry.
pub(crate) struct ConnParts {
    pub(crate) id: ClientId,
    pub(crate) tcp: TcpStream,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) sender: mpsc::UnboundedSender<Command>,
    pub(crate) io: Arc<IoControl>,
}

/// Everything one HTTP/2 WebSocket session task needs from the registry.
pub(crate) struct SessionParts {
    pub(crate) id: ClientId,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) sender: mpsc::UnboundedSender<Command>,
    pub(crate) io: Arc<IoControl>,
}

pub(crate) struct Shared {
    pub(crate) log: Log,
    pub(crate) rules: Rules,
    tcp_accepted: AtomicUsize,
    upgraded: AtomicUsize,
    clients: Arc<Registry<ClientId, Entry>>,
    frozen: Mutex<Vec<std::net::TcpStream>>,
    reject: Mutex<Option<u16>>,
    refusing: watch::Sender<bool>,
    refuse_until: Mutex<Option<tokio::time::Instant>>,
    pub(crate) replay_on_connect: Option<(Recording, f64)>,
    /// Limits of every WebSocket session.
    pub(crate) ws_config: WebSocketConfig,
    runtime: Handle,
}

impl Shared {
    pub(crate) fn new(
        runtime: Handle,
        refusing: watch::Sender<bool>,
        replay: Option<(Recording, f64)>,
        on_received: Option<ReceivedHook>,
        ws_config: WebSocketConfig,
    ) -> Self {
        let started = Instant::now();
        Self {
            log: Log::new(started, on_received),
            rules: Rules::default(),
            tcp_accepted: AtomicUsize::new(0),
            upgraded: AtomicUsize::new(0),
            clients: Arc::new(Registry::new()),
            frozen: Mutex::new(Vec::new()),
            reject: Mutex::new(None),
            refusing,
            refuse_until: Mutex::new(None),
            replay_on_connect: replay,
            ws_config,
            runtime,
        }
    }

    pub(crate) fn tcp_accepted(&self) -> usize {
        self.tcp_accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn upgraded(&self) -> usize {
        self.upgraded.load(Ordering::SeqCst)
    }

    pub(crate) fn open(&self) -> usize {
        self.clients.lock().values().filter(|e| e.info.is_some()).count()
    }

    pub(crate) fn clients(&self) -> Vec<ClientInfo> {
        let mut out: Vec<ClientInfo> = self.clients.lock().values().filter_map(|e| e.info.clone()).collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// The status new upgrades are rejected with, if any.
    pub(crate) fn reject_status(&self) -> Option<u16> {
        *lock(&self.reject)
    }

    /// Registers an accepted TCP connection and spawns `serve` for it.
    pub(crate) fn spawn_connection<F, Fut>(self: &Arc<Self>, tcp: TcpStream, serve: F)
    where
        F: FnOnce(ConnParts) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tcp_accepted.fetch_add(1, Ordering::SeqCst);
        let (dup, tcp) = match net::duplicate(tcp) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "could not register accepted connection; dropping it");
                self.clients.notify();
                return;
            }
        };
        let id = ClientId(self.clients.next_id());
        let (sender, commands) = mpsc::unbounded_channel();
        let io = Arc::new(IoControl::default());
        let fut = serve(ConnParts { id, tcp, commands, sender: sender.clone(), io: Arc::clone(&io) });
        self.clients.spawn(id, fut, |task| Entry {
            dup,
            task,
            commands: sender,
            io,
            info: None,
            parent: None,
            h2: false,
        });
    }

    /// Marks connection `id` as HTTP/2: it carries WebSocket sessions (RFC 8441)
    /// registered with [`spawn_session`](Self::spawn_session).
    pub(crate) fn mark_h2(&self, id: ClientId) {
        if let Some(entry) = self.clients.lock().get_mut(&id) {
            entry.h2 = true;
        }
    }

    /// Registers a WebSocket session (an extended CONNECT stream) of HTTP/2
    /// connection `conn` and spawns `serve` for it. `None` if `conn` is gone.
    pub(crate) fn spawn_session<F, Fut>(self: &Arc<Self>, conn: ClientId, serve: F) -> Option<ClientId>
    where
        F: FnOnce(SessionParts) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut clients = self.clients.lock();
        let dup = match clients.get(&conn).map(|e| e.dup.try_clone()) {
            Some(Ok(dup)) => dup,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not register an HTTP/2 WebSocket session");
                return None;
            }
            None => return None,
        };
        let id = ClientId(self.clients.next_id());
        let (sender, commands) = mpsc::unbounded_channel();
        let io = Arc::new(IoControl::default());
        let fut = serve(SessionParts { id, commands, sender: sender.clone(), io: Arc::clone(&io) });
        self.clients.spawn_locked(&mut clients, id, fut, |task| Entry {
            dup,
            task,
            commands: sender,
            io,
            info: None,
            parent: Some(conn),
            h2: false,
        });
        Some(id)
    }

    /// Records a completed upgrade; starts the on-connect replay, if configured.
    pub(crate) fn upgraded_client(self: &Arc<Self>, info: ClientInfo) {
        let id = info.id;
        if let Some(entry) = self.clients.lock().get_mut(&id) {
            entry.info = Some(info);
        }
        let nth = self.upgraded.fetch_add(1, Ordering::SeqCst);
        if let Some((recording, speed)) = &self.replay_on_connect {
            // One recorded connection: every client gets it. Several (a session with
            // reconnects): the n-th client gets the n-th, as the recorded client did.
            let index = if recording.sessions() == 1 { 0 } else { nth };
            if index < recording.sessions() {
                self.play(id, scale(recording.session(index), *speed));
            } else {
                tracing::debug!(%id, connections = recording.sessions(), "every recorded connection was replayed already");
            }
        }
        self.clients.notify();
    }

    fn send(&self, id: ClientId, command: Command) -> bool {
        self.clients.lock().get(&id).is_some_and(|e| e.commands.send(command).is_ok())
    }

    /// Queues `frame` to every upgraded client; returns how many.
    pub(crate) fn inject_all(&self, frame: &Frame) -> usize {
        let clients = self.clients.lock();
        clients.values().filter(|e| e.info.is_some() && e.commands.send(Command::Send(frame.clone())).is_ok()).count()
    }

    /// Queues `frame` to client `id`.
    pub(crate) fn inject_to(&self, id: ClientId, frame: Frame) -> bool {
        self.send(id, Command::Send(frame))
    }

    /// Plays `recording` to client `id` in a background task.
    pub(crate) fn replay_to(self: &Arc<Self>, id: ClientId, recording: &Recording, speed: f64) -> bool {
        self.play(id, schedule(recording, speed))
    }

    /// Plays `plan` (frames at offsets from now) to client `id` in a background task.
    fn play(self: &Arc<Self>, id: ClientId, plan: Vec<(std::time::Duration, Frame)>) -> bool {
        let Some(sender) = self.clients.lock().get(&id).map(|e| e.commands.clone()) else {
            return false;
        };
        self.runtime.spawn(async move {
            let start = tokio::time::Instant::now();
            for (at, frame) in plan {
                tokio::time::sleep_until(start + at).await;
                if sender.send(Command::Send(frame)).is_err() {
                    return;
                }
            }
        });
        true
    }

    /// Applies a connection fault to every registered connection; returns how many.
    pub(crate) fn fault_all(self: &Arc<Self>, fault: &Fault) -> usize {
        if fault.is_server_wide() {
            self.server_fault(fault);
            return 0;
        }
        // Each fault acts once per thing it applies to: TCP faults per TCP
        // connection, GOAWAY per HTTP/2 connection, frame-level faults per
        // WebSocket (or not yet upgraded HTTP/1.1) connection.
        let ids: Vec<ClientId> = self
            .clients
            .lock()
            .iter()
            .filter(|(_, e)| match fault {
                Fault::Fin | Fault::Reset | Fault::HalfOpen => e.parent.is_none(),
                Fault::GoAway => e.h2,
                _ => !e.h2,
            })
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter(|id| self.fault_one(*id, fault)).count()
    }

    /// Applies a connection fault to connection `id`; `false` if unknown or server-wide.
    pub(crate) fn fault_one(&self, id: ClientId, fault: &Fault) -> bool {
        tracing::debug!(%id, ?fault, "fault");
        let Some((parent, h2)) = self.clients.lock().get(&id).map(|e| (e.parent, e.h2)) else {
            return false;
        };
        match fault {
            // Connection-level faults on an HTTP/2 session act on its connection.
            Fault::Fin | Fault::Reset | Fault::HalfOpen | Fault::GoAway if parent.is_some() => {
                return parent.is_some_and(|conn| self.fault_one(conn, fault));
            }
            Fault::GoAway => return h2 && self.send(id, Command::GoAway),
            Fault::Fin | Fault::Reset | Fault::HalfOpen => {}
            // Frame-level faults need a WebSocket: an HTTP/2 connection has none of its own.
            _ if h2 => return false,
            _ => {}
        }
        match fault {
            Fault::Close { code, reason } => self.send(id, Command::Close(*code, reason.clone())),
            Fault::StallAfter(n) => self.send(id, Command::StallAfter(*n)),
            Fault::PartialFrame { frame, bytes } => self.send(id, Command::Partial(frame.clone(), *bytes)),
            Fault::SlowDrip(delay) => self.clients.lock().get(&id).map(|e| e.io.drip(*delay)).is_some(),
            Fault::Fin | Fault::Reset | Fault::HalfOpen => {
                let Some(entry) = self.remove_with_sessions(id) else {
                    return false;
                };
                match fault {
                    Fault::Fin => self.fin(entry),
                    Fault::Reset => {
                        net::reset(entry.dup);
                        entry.task.abort();
                    }
                    _ => {
                        entry.task.abort();
                        lock(&self.frozen).push(entry.dup);
                    }
                }
                self.clients.notify();
                true
            }
            Fault::RefuseConnections(_) | Fault::RejectUpgrade(_) | Fault::GoAway => false,
        }
    }

    /// Removes connection `id` from the registry and aborts its HTTP/2 sessions, if any.
    fn remove_with_sessions(&self, id: ClientId) -> Option<Entry> {
        let mut clients = self.clients.lock();
        let entry = clients.remove(&id)?;
        clients.retain(|_, e| {
            let child = e.parent == Some(id);
            if child {
                e.task.abort();
            }
            !child
        });
        Some(entry)
    }

    fn server_fault(self: &Arc<Self>, fault: &Fault) {
        tracing::debug!(?fault, "server fault");
        match fault {
            Fault::RejectUpgrade(status) => *lock(&self.reject) = Some(*status),
            Fault::RefuseConnections(duration) => {
                let until = tokio::time::Instant::now() + (*duration).min(FAR);
                *lock(&self.refuse_until) = Some(until);
                self.refusing.send_replace(true);
                let shared = Arc::downgrade(self);
                self.runtime.spawn(async move {
                    tokio::time::sleep_until(until).await;
                    if let Some(shared) = shared.upgrade() {
                        shared.end_refusal_due(tokio::time::Instant::now());
                    }
                });
            }
            _ => {}
        }
    }

    /// Ends the refusal if its deadline (possibly extended since) has passed.
    fn end_refusal_due(&self, now: tokio::time::Instant) {
        let mut until = lock(&self.refuse_until);
        if until.is_some_and(|u| u <= now) {
            *until = None;
            self.refusing.send_replace(false);
        }
    }

    /// Ends server-wide faults (refusal, upgrade rejection) now.
    pub(crate) fn clear_server_faults(&self) {
        *lock(&self.reject) = None;
        *lock(&self.refuse_until) = None;
        self.refusing.send_replace(false);
    }

    fn fin(&self, entry: Entry) {
        net::fin_and_drain(&self.runtime, entry.dup);
        entry.task.abort();
    }

    /// Server shutdown: every WebSocket client (HTTP/1.1 connection or HTTP/2 session) is
    /// sent a close frame `1001 going away`, queued behind what it was already sent, and
    /// every HTTP/2 connection a GOAWAY (it ends when its last session has); connections
    /// that never upgraded are dropped. Returns how many clients were told.
    pub(crate) fn going_away(&self) -> usize {
        let clients = self.clients.lock();
        let mut told = 0;
        for entry in clients.values() {
            if entry.h2 {
                let _ = entry.commands.send(Command::GoAway);
            } else if entry.info.is_none() {
                entry.task.abort();
            } else if entry.commands.send(Command::Close(GOING_AWAY, "server shutting down".to_owned())).is_ok() {
                told += 1;
            }
        }
        told
    }

    /// Connections (of any kind, upgraded or not) whose task is still running.
    pub(crate) fn tasks(&self) -> usize {
        self.clients.len()
    }

    /// Aborts every connection (server shutdown) and closes half-open sockets.
    pub(crate) fn abort_all(&self) {
        for entry in self.clients.take_all() {
            entry.task.abort();
        }
        lock(&self.frozen).clear();
    }

    /// Waits until `cond` holds or `timeout` elapses; returns the final value of `cond`.
    pub(crate) async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        self.clients.wait_until(timeout, || cond(self)).await
    }
}
