//! The client's task: one per client, it owns the moorline `Connection` and `Events` of the
//! current attempt and every state machine of `moorline_proto::client`, and runs one loop:
//! `select!` over the user's commands, the connection attempt under way, the socket's events,
//! room in the user's queue, and `sleep_until` the earliest deadline of every machine
//! (recomputed on every turn, so a sleep never belongs to an older attempt).
//!
//! - `mod.rs` (here): the loop, the deadlines, delivery to the user (queue or callback);
//! - `session.rs`: one attempt: connecting, the connection's end, the retry, closing;
//! - `restore.rs`: the session sequence on every (re)connect: handshake → authentication →
//!   subscriptions (batched, paced, confirmed) → `Connected`/`Reconnected` + `Restored`;
//! - `route.rs`: every frame read: responses to their waiters, heartbeats answered, data to
//!   the user.
//!
//! **A slow reader never causes a false timeout.** The task always reads the socket: data
//! that does not fit in the user's queue (`Overflow::Backpressure`) waits in a side buffer
//! of at most `incoming_buffer_bytes` more, while heartbeats, pings and responses are still
//! handled at once (they never queue behind data). Only when the side buffer is full too
//! does the task stop reading (so TCP slows the venue); while it is stopped the liveness
//! timers are suspended (nothing can be observed, so nothing is concluded) and restart from
//! the moment reading resumes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use moorline::ws::WsSession;
use moorline_proto::client::backoff::{Backoff, BackoffConfig, Failure};
use moorline_proto::client::liveness::{Liveness, LivenessConfig};
use moorline_proto::client::subscriptions::{Subscriptions, SubscriptionsConfig};
use moorline_proto::client::{Attempt, earliest};
use moorline_proto::retry::{RetryPolicy, UNLIMITED};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{Attempts, Jitter};
use crate::dialect::Dialect;
use crate::error::{ClientError, ErrorKind, classify_connect_error};
use crate::event::{Channel, ClientEvent};
use crate::queue::TrySendError;
use crate::shared::{ClientState, Command, RUNNING_TASKS, Shared, Sink, SubscribeOutcome, Waiter};

mod restore;
mod route;
mod session;
mod tap;

use session::Session;

type Connecting = Pin<Box<dyn Future<Output = Result<WsSession, moorline::Error>> + Send>>;

/// The most already-delivered events handled in one turn of the loop (see `drain_events`).
const DRAIN_MAX: usize = 64;

/// A user's subscribe or unsubscribe call, answered once every channel is.
struct Group {
    tx: Option<oneshot::Sender<SubscribeOutcome>>,
    remaining: usize,
    outcome: SubscribeOutcome,
}

/// One subscription batch in flight (split into venue requests by the dialect's batch key).
struct BatchInFlight {
    id: moorline_proto::client::subscriptions::BatchId,
    parts: usize,
    confirmed: Vec<Channel>,
    errors: Vec<String>,
}

/// The task's state.
pub(crate) struct Task {
    url: String,
    shared: Arc<Shared>,
    dialect: Arc<dyn Dialect>,
    cmds: mpsc::Receiver<Command>,
    sink: Sink,
    backoff: Backoff<moorline::Error>,
    live: Liveness,
    subs: Subscriptions<Channel, u64>,
    groups: HashMap<u64, Group>,
    next_group: u64,
    /// Channel names handed out with messages (one allocation per channel).
    known: HashSet<Channel>,
    session: Option<Session>,
    connecting: Option<(Attempt, Connecting)>,
    /// Events waiting for room in the user's queue (backpressure), in order.
    side: VecDeque<ClientEvent>,
    side_bytes: usize,
    ever_connected: bool,
    batches: HashMap<u64, BatchInFlight>,
    /// `Client::reauthenticate` calls waiting for the next authentication's answer.
    auth_waiters: Vec<oneshot::Sender<Result<(), ClientError>>>,
    rng: u64,
    finished: bool,
    /// The loop's one timer, moved only when the earliest deadline changes (a fresh sleep
    /// per turn registered and removed a timer entry for every message).
    timer: Pin<Box<tokio::time::Sleep>>,
    /// What `timer` is set to (`None`: not armed, or fired and to be set again).
    timer_at: Option<Instant>,
    /// What the session's tap (data straight from the worker to the user) shares with the task.
    gate: Arc<tap::Gate>,
}

/// What woke the loop.
enum Wake {
    Command(Option<Command>),
    Connected(Box<Result<WsSession, moorline::Error>>),
    Event(Option<moorline::Event>),
    Room(bool),
    Timer,
}

impl Task {
    pub(crate) fn new(url: String, shared: Arc<Shared>, cmds: mpsc::Receiver<Command>, sink: Sink) -> Self {
        let config = &shared.config;
        let retries = match config.retry.attempts {
            Attempts::Limited(n) => n,
            Attempts::Unlimited => UNLIMITED,
        };
        let jitter = match config.retry.jitter {
            Jitter::None => moorline_proto::client::backoff::Jitter::None,
            Jitter::Full => moorline_proto::client::backoff::Jitter::Full,
            Jitter::Proportional(f) => moorline_proto::client::backoff::Jitter::Proportional {
                percent: (f * 100.0).round().clamp(1.0, 100.0) as u8,
            },
        };
        let backoff = Backoff::new(
            RetryPolicy::exponential(retries, config.retry.base, config.retry.cap),
            BackoffConfig { healthy_after: config.retry.healthy_after, jitter },
        )
        .classify(|e: &moorline::Error| match classify_connect_error(e) {
            ErrorKind::Fatal => Failure::Fatal,
            ErrorKind::Recoverable => Failure::Retryable,
        });
        let l = &config.liveness;
        let live = Liveness::new(LivenessConfig {
            dead_after: l.dead_after,
            idle_after: l.idle_after.unwrap_or(std::time::Duration::MAX),
            idle_reconnect: l.idle_reconnect,
            heartbeat_timeout: l.heartbeat_grace,
        });
        let dialect = shared.dialect.clone();
        let cost_dialect = dialect.clone();
        let mut sub_config = SubscriptionsConfig::with_cost(move |c: &Channel| cost_dialect.channel_cost(c));
        sub_config.restore = config.restore_subscriptions;
        sub_config.max_request_bytes = dialect.max_request_bytes();
        sub_config.request_overhead = dialect.request_overhead();
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish() | 1;
        Self {
            url,
            dialect,
            cmds,
            sink,
            backoff,
            live,
            subs: Subscriptions::new(sub_config),
            groups: HashMap::new(),
            next_group: 0,
            known: HashSet::new(),
            session: None,
            connecting: None,
            side: VecDeque::new(),
            side_bytes: 0,
            ever_connected: false,
            batches: HashMap::new(),
            auth_waiters: Vec::new(),
            rng: seed,
            finished: false,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_at: None,
            gate: Arc::new(tap::Gate::new()),
            shared,
        }
    }

    /// A uniformly random `u64` for the backoff's jitter (xorshift64*).
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Whether reading the socket is paused: the user's queue and the side buffer are full.
    fn paused(&self) -> bool {
        self.side_bytes >= self.shared.config.incoming_buffer_bytes
    }

    /// The loop (see the module documentation).
    pub(crate) async fn run(mut self: Box<Self>) {
        self.start_attempt();
        while !self.finished {
            let wake = self.wait().await;
            match wake {
                // The rare steps boxed: the task is allocated at its future's largest state, for
                // its whole life (`-Zprint-type-sizes`: 7 KB with these inline).
                Wake::Command(Some(cmd)) => Box::pin(self.on_command(cmd)).await,
                Wake::Command(None) => Box::pin(self.close(None)).await,
                Wake::Connected(result) => Box::pin(self.on_connect_result(*result)).await,
                Wake::Event(ev) => {
                    self.on_event(ev).await;
                    self.drain_events().await;
                    self.update_gate();
                }
                Wake::Room(reader_here) => {
                    self.flush_side(reader_here);
                    self.update_gate();
                }
                Wake::Timer => {
                    // A fired timer stays ready: set it again on the next turn, even to the
                    // same instant (a deadline no machine moved fires again, as it should).
                    self.timer_at = None;
                    Box::pin(self.on_timer()).await;
                }
            }
        }
    }

    /// Events the connection delivered already (a batch decoded from one read), handled in
    /// the same turn: the loop's `wait` (the deadlines, under the shared lock, a fresh timer
    /// and five futures) then costs once per batch rather than once per message. At most
    /// [`DRAIN_MAX`] in a row, so commands and timers still come in between; stops as soon as
    /// reading pauses (a full queue and side buffer) or the session changes.
    async fn drain_events(&mut self) {
        for _ in 0..DRAIN_MAX {
            if self.finished || self.paused() {
                return;
            }
            let Some(s) = self.session.as_mut() else { return };
            let Some(ev) = s.events.try_next() else { return };
            self.on_event(Some(ev)).await;
        }
    }

    /// The earliest deadline of every machine, and what the session itself waits for.
    fn next_deadline(&self) -> Option<Instant> {
        let pending = self.shared.lock().pending.next_deadline();
        let live = if self.paused() { None } else { self.live.next_deadline() };
        let session = self.session.as_ref().and_then(|s| s.next_deadline());
        let machines = earliest([live, self.backoff.next_deadline(), pending]).map(Instant::from_std);
        match (machines, session) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn wait(&mut self) -> Wake {
        self.fold_tapped();
        let deadline = self.next_deadline();
        let paused = self.paused();
        let front = self.side.front().map(|e| e.queued_bytes());
        // The timer moves only when the deadline comes earlier (or it fired, or was off). A
        // later one, the usual case (every frame pushes the liveness deadlines back), leaves
        // it where it is: it then fires early, the machines find nothing due, and it is set
        // again: once per interval rather than a timer-wheel update per message.
        match (deadline, self.timer_at) {
            (Some(at), Some(armed)) if at >= armed => {}
            (Some(at), _) => {
                self.timer.as_mut().reset(at);
                self.timer_at = Some(at);
            }
            (None, _) => self.timer_at = None,
        }
        let Task { cmds, connecting, session, sink, timer, .. } = self;
        let queue = match &*sink {
            Sink::Queue(q) => Some(q),
            Sink::Handler(_) => None,
        };
        let connecting = async {
            match connecting.as_mut() {
                Some((_, f)) => f.await,
                None => std::future::pending().await,
            }
        };
        let events = async {
            match session.as_mut() {
                Some(s) if !paused => s.events.next().await,
                _ => std::future::pending().await,
            }
        };
        let room = async {
            match (front, queue) {
                (Some(bytes), Some(q)) => q.room(bytes).await.is_ok(),
                _ => std::future::pending().await,
            }
        };
        let armed = self.timer_at.is_some();
        tokio::select! {
            biased;
            cmd = cmds.recv() => Wake::Command(cmd),
            ev = events => Wake::Event(ev),
            r = connecting => Wake::Connected(Box::new(r)),
            r = room => Wake::Room(r),
            () = timer.as_mut(), if armed => Wake::Timer,
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe { channels, unsubscribe, tx } => self.on_subscribe(channels, unsubscribe, tx).await,
            Command::Reconnect => {
                if self.session.is_some() {
                    self.drop_session(crate::event::DisconnectReason::Requested, false).await;
                }
                if self.connecting.is_none() && self.session.is_none() {
                    self.start_attempt();
                }
            }
            Command::Reauthenticate { tx } => self.on_reauthenticate(tx).await,
            Command::Close { tx } => {
                self.close(None).await;
                let _ = tx.send(());
            }
        }
    }

    async fn on_timer(&mut self) {
        self.fold_tapped();
        let now = Instant::now();
        let std_now = now.into_std();
        if let Some(moorline_proto::client::backoff::BackoffAction::Connect(_)) = self.backoff.on_timeout(std_now) {
            self.connect_now();
        }
        if !self.paused() {
            self.on_liveness(std_now).await;
        }
        self.expire_requests(std_now).await;
        self.session_timers(now).await;
    }

    /// Hands an event to the user: the callback, or the queue (see the module documentation
    /// for a full queue).
    pub(super) fn deliver(&mut self, event: ClientEvent) {
        match &mut self.sink {
            Sink::Handler(h) => h(event),
            Sink::Queue(q) => {
                if !self.side.is_empty() {
                    self.side_bytes += event.queued_bytes();
                    self.side.push_back(event);
                    return;
                }
                match q.try_send(event) {
                    Ok(()) => {}
                    Err(TrySendError::Full(event)) => {
                        // Parked: the tap must not overtake it.
                        self.gate.set_open(false);
                        self.side_bytes += event.queued_bytes();
                        self.side.push_back(event);
                    }
                    // Nobody reads the events any more: counted as dropped.
                    Err(TrySendError::ReaderGone(_)) => self.shared.lock().drops += 1,
                }
            }
        }
    }

    /// Moves what fits from the side buffer to the user's queue.
    fn flush_side(&mut self, reader_here: bool) {
        let was_paused = self.paused();
        let Sink::Queue(q) = &self.sink else { return };
        while let Some(event) = self.side.pop_front() {
            let bytes = event.queued_bytes();
            match q.try_send(event) {
                Ok(()) => self.side_bytes -= bytes,
                Err(TrySendError::Full(event)) => {
                    self.side.push_front(event);
                    break;
                }
                Err(TrySendError::ReaderGone(_)) => {
                    self.side_bytes -= bytes;
                    self.shared.lock().drops += 1;
                }
            }
        }
        let _ = reader_here;
        if was_paused && !self.paused() {
            // Reading resumes: nothing could be observed while paused, so the liveness
            // timers start again from now rather than declaring the peer dead.
            if let Some(s) = &self.session {
                let now = Instant::now().into_std();
                self.live.on_frame(s.attempt, now);
                if let Some(interval) = s.heartbeat {
                    self.live.expect_heartbeat(s.attempt, interval, now);
                }
            }
        }
    }

    /// The channel's shared name (one allocation per known channel).
    /// Opens the tap's gate while the task would only deliver data: the session restored,
    /// events going to a queue, nothing parked.
    fn update_gate(&self) {
        let ready = self.session.as_ref().is_some_and(|s| s.phase == session::Phase::Ready);
        let open = ready && !self.finished && self.side.is_empty() && matches!(self.sink, Sink::Queue(_));
        self.gate.set_open(open);
    }

    /// Installs the session's tap (at the end of its restore).
    fn install_tap(&self) {
        let (Some(s), Sink::Queue(q)) = (&self.session, &self.sink) else { return };
        let tap = tap::DataTap {
            gate: self.gate.clone(),
            dialect: self.dialect.clone(),
            shared: self.shared.clone(),
            queue: q.tap_writer(),
        };
        self.gate.set_known(&self.known);
        s.conn.set_ws_tap(&s.stream, Some(Arc::new(tap)));
        self.update_gate();
    }

    /// What the tap saw since the task last looked: the time of the last data message, for
    /// the liveness timers.
    fn fold_tapped(&mut self) {
        let Some(at) = self.gate.take_last_data() else { return };
        if let Some(s) = &mut self.session {
            s.last_frame = s.last_frame.max(Instant::from_std(at));
            self.live.on_data(s.attempt, at);
        }
    }

    pub(super) fn intern(&mut self, name: &str) -> Channel {
        match self.known.get(name) {
            Some(c) => c.clone(),
            None => Arc::from(name),
        }
    }

    fn set_status(&self, s: ClientState) {
        self.shared.set_status(s);
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        RUNNING_TASKS.fetch_sub(1, Ordering::SeqCst);
        if self.finished {
            return;
        }
        // The task ended without closing: it panicked, or the runtime shut down. Nobody is
        // left waiting: every request and subscribe call fails, the stream ends with why.
        let error = if std::thread::panicking() {
            ClientError::Panicked("the client task panicked (see the panic message in the log)".into())
        } else {
            ClientError::Closed
        };
        let failed = {
            let mut s = self.shared.lock();
            s.closed = Some(Some(error.clone()));
            s.link = None;
            s.pending.fail_all()
        };
        for (_, waiter) in failed {
            if let Waiter::User { tx, .. } = waiter {
                let _ = tx.send(Err(error.clone()));
            }
        }
        self.shared.set_status(ClientState::Closed);
        if let Some(s) = &self.session {
            s.conn.close();
        }
        if let Sink::Queue(q) = &self.sink {
            let _ = q.try_send(ClientEvent::Closed { error: Some(error) });
            q.close();
        }
    }
}
