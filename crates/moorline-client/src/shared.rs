//! What the handles ([`Client`](crate::Client)) and the client's task share, and what travels
//! between them: the state under one short lock ([`State`]: the link to send on, the pending
//! requests with their waiters, the rate limiter, the round-trip histograms), the counters,
//! the watched [`ClientState`], the user's commands and where the events go. Both
//! `client.rs` (above) and `task/` (beside it) use these; neither is used from here.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use moorline::ws::Message;
use moorline::{Connection, StreamRef};
use moorline_proto::client::pending::{Pending, PendingLimits};
use moorline_proto::client::stats::Histogram;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::dialect::{Dialect, SubOp};
use crate::error::ClientError;
use crate::event::{Channel, ClientEvent, Refused};
use crate::jsonrpc::RawValue;
use crate::limiter::Limiter;
use crate::queue;
use crate::record::{Direction, FrameKind};

/// Where the client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// The first connection (and its session) is being set up.
    Connecting,
    /// Connected and the session restored: sends go out.
    Connected,
    /// The connection was lost: waiting to reconnect, reconnecting or restoring.
    Reconnecting,
    /// Closed (by [`Client::close`](crate::Client::close), or after a fatal error or retries running out).
    Closed,
}

/// What the venue confirmed of a [`Client::subscribe`](crate::Client::subscribe) or [`Client::unsubscribe`](crate::Client::unsubscribe) call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// Channels the venue confirmed (subscribed, or taken off for an unsubscribe).
    pub confirmed: Vec<Channel>,
    /// Channels it refused, with the reason (or that failed: the client closed...).
    pub refused: Vec<Refused>,
}

/// How many client tasks run now (see [`running_tasks`](crate::running_tasks)).
pub(crate) static RUNNING_TASKS: AtomicUsize = AtomicUsize::new(0);

/// The connection the handles send on: set once the session is restored, cleared when it is
/// lost (so a send never goes out before the venue knows who we are and what we want).
#[derive(Debug)]
pub(crate) struct Link {
    pub conn: Connection,
    pub stream: StreamRef,
}

/// Who waits for a response.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A user's `request()`.
    User {
        tx: oneshot::Sender<Result<Box<RawValue>, ClientError>>,
        sent: Instant,
        /// For a request to send again after a reconnect: its method and params.
        resend: Option<(String, Option<Box<RawValue>>)>,
    },
    /// The client task's own request (handshake, authentication, subscriptions, heartbeat
    /// answer), on attempt `attempt`.
    Task { attempt: u64, job: Job, sent: Instant },
}

/// What a request of the task's own is for.
#[derive(Debug)]
pub(crate) enum Job {
    /// A step of the dialect's handshake (Deribit: `public/set_heartbeat`).
    Handshake { method: String },
    /// Authentication: the session's first (`renew: false`, with the credentials), or a
    /// renewal on a live session (Deribit: the refresh token; refused, it falls back to the
    /// credentials).
    Auth { renew: bool },
    /// One venue request of subscription batch `batch`.
    Batch { batch: u64, op: SubOp, channels: Vec<Channel> },
    /// The answer to a venue heartbeat (its response is a heartbeat round trip).
    HeartbeatAnswer,
}

/// What the handles and the task share, under one short lock.
pub(crate) struct State {
    pub link: Option<Arc<Link>>,
    pub pending: Pending<Waiter>,
    pub limiter: Option<Limiter>,
    pub request_rtt: Histogram,
    pub heartbeat_rtt: Histogram,
    pub reconnects: u64,
    pub drops: u64,
    /// Bytes of sends waiting for the connection (`OfflineSends::Queue`).
    pub offline_bytes: usize,
    /// Sends in that queue (a send while connected joins it rather than overtake them).
    pub offline_waiting: usize,
    /// Set once the client is closed: why (`None`: by the user).
    pub closed: Option<Option<ClientError>>,
}

/// State shared by the handles and the task.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The client's state, watched by sends waiting for the connection.
    pub status: watch::Sender<ClientState>,
    /// The head of the queue of sends made while disconnected (a fair, FIFO mutex).
    pub offline_gate: tokio::sync::Mutex<()>,
    pub messages_in: AtomicU64,
    /// Of those, the ones the session's tap delivered (see `task::tap`).
    pub messages_direct: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dialect: Arc<dyn Dialect>,
    pub config: ClientConfig,
}

impl Shared {
    /// The state of a client not yet connected.
    pub fn new(dialect: Arc<dyn Dialect>, config: ClientConfig) -> Self {
        let limits = PendingLimits { max_requests: 65_536, max_bytes: 64 << 20 };
        let state = State {
            link: None,
            pending: Pending::new(limits),
            limiter: config.rate_limit.as_ref().map(Limiter::new),
            request_rtt: Histogram::new(),
            heartbeat_rtt: Histogram::new(),
            reconnects: 0,
            drops: 0,
            offline_bytes: 0,
            offline_waiting: 0,
            closed: None,
        };
        Self {
            state: Mutex::new(state),
            status: watch::channel(ClientState::Connecting).0,
            offline_gate: tokio::sync::Mutex::new(()),
            messages_in: AtomicU64::new(0),
            messages_direct: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dialect,
            config,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data behind the lock: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_status(&self, s: ClientState) {
        self.status.send_replace(s);
    }

    pub fn count_out(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A data message of `bytes` in (what `Stats::messages_in` counts: not the venue's
    /// answers and heartbeats).
    pub fn count_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Hands `message` to the recorder, if the configuration has one (a queue push: the
    /// recorder's thread formats and writes).
    pub fn record(&self, dir: Direction, message: &Message) {
        let Some(recorder) = &self.config.record else { return };
        let (kind, payload) = match message {
            Message::Text(t) => (FrameKind::Text, t.clone().into_bytes()),
            Message::Binary(b) => (FrameKind::Binary, b.clone()),
            Message::Ping(b) => (FrameKind::Ping, b.clone()),
            Message::Pong(b) => (FrameKind::Pong, b.clone()),
            Message::Close(c) => (FrameKind::Close, c.as_ref().map(|c| c.payload()).unwrap_or_default()),
        };
        recorder.record(dir, kind, payload);
    }

    /// Marks the start of a new connection in the recording (`note`: which attempt), so a
    /// replay plays each connection's frames to a connection of its own.
    pub fn record_connected(&self, note: String) {
        let Some(recorder) = &self.config.record else { return };
        recorder.record(Direction::In, FrameKind::Connected, bytes::Bytes::from(note));
    }
}

/// A user command for the task (the control path; data never goes this way).
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe { channels: Vec<Channel>, unsubscribe: bool, tx: oneshot::Sender<SubscribeOutcome> },
    Reconnect,
    Reauthenticate { tx: oneshot::Sender<Result<(), ClientError>> },
    Close { tx: oneshot::Sender<()> },
}

/// What the user's events go to: the queue, or a callback.
pub(crate) enum Sink {
    Queue(queue::EventSender),
    Handler(Box<dyn FnMut(ClientEvent) + Send>),
}
