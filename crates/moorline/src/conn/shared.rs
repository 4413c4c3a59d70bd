//! [`Shared`]: the state shared by a connection's handles, its worker and its supervisor.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::delivery::{Budget, Delivery};
use super::info::{Info, State};
use super::tap::TapSlot;
use crate::error::{Error, ExitReason};
use crate::ids::StreamRef;
use crate::sync::lock;
use crate::wsio::{Message, Outbox, Queued};

/// State shared by the handles, the worker and its supervisor.
pub(crate) struct Shared {
    pub(crate) id: u64,
    next_stream: AtomicU64,
    /// The current owner's sender; the supervisor takes it to send `Exit`.
    pub(crate) owner: Mutex<Option<mpsc::Sender<Delivery>>>,
    pub(crate) info: Mutex<Info>,
    pub(crate) abort: Mutex<Option<AbortHandle>>,
    /// The outbox of each WebSocket whose session runs (the HTTP/1.1 one, or those of the
    /// HTTP/2 streams): handles send through it. Kept by [`WsRegistration`].
    ws_out: Mutex<Outboxes>,
    /// WebSocket messages on their way through the command channel (see [`InChannel`]).
    pub(crate) ws_in_channel: Arc<AtomicUsize>,
    /// [`Connection::mark_healthy`] calls, for the worker (which ignores those made while
    /// no connection is up).
    pub(crate) healthy: tokio::sync::Notify,
    /// WebSocket streams that ended, and what a send on one of them returns.
    ws_ended: Mutex<EndedWs>,
    /// The current owner's byte budget, for HTTP/2 stream tasks to take from (the worker
    /// replaces it on `set_owner`).
    pub(crate) budget: Mutex<Arc<Budget>>,
    /// The owner's WebSocket tap, and how many events the owner released (see [`TapSlot`]).
    pub(crate) tap: TapSlot,
}

/// The live WebSockets' outboxes, by stream (hashed cheaply: a send looks its stream up).
type Outboxes = HashMap<StreamRef, Arc<Outbox>, BuildHasherDefault<StreamHasher>>;

/// A multiply-rotate hash of a [`StreamRef`]'s two integers (not DoS-resistant, and need not
/// be: the keys are ours, handed out in sequence).
#[derive(Default)]
pub(crate) struct StreamHasher(u64);

impl Hasher for StreamHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// While it lives, handles send on `stream` through its outbox directly. Dropping it ends
/// that: the outbox leaves [`Shared`], refuses further direct sends and lets go of its sink
/// (the socket's write half, or the h2 stream's sending half).
pub(crate) struct WsRegistration {
    shared: Arc<Shared>,
    stream: StreamRef,
    out: Arc<Outbox>,
}

impl WsRegistration {
    /// Registers `out` as the outbox of WebSocket `stream`.
    pub(crate) fn new(shared: &Arc<Shared>, stream: StreamRef, out: Arc<Outbox>) -> Self {
        lock(&shared.ws_out).insert(stream, out.clone());
        Self { shared: shared.clone(), stream, out }
    }
}

impl Drop for WsRegistration {
    fn drop(&mut self) {
        lock(&self.shared.ws_out).remove(&self.stream);
        let _ = self.out.end();
    }
}

/// How many ended WebSocket streams [`Shared`] remembers (the oldest are forgotten first; a
/// send on a forgotten one goes to the worker, which reports it as an event).
const ENDED_WS_MEMORY: usize = 1024;

/// The ended WebSocket streams [`Shared`] remembers, at most [`ENDED_WS_MEMORY`].
#[derive(Default)]
pub(crate) struct EndedWs {
    errors: HashMap<StreamRef, Error>,
    order: VecDeque<StreamRef>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Shared {
    /// The state of a new connection `id`, whose first owner listens on `owner` with `budget`.
    pub(crate) fn new(id: u64, owner: mpsc::Sender<Delivery>, info: Info, budget: Arc<Budget>) -> Self {
        Shared {
            id,
            next_stream: AtomicU64::new(1),
            owner: Mutex::new(Some(owner)),
            info: Mutex::new(info),
            abort: Mutex::new(None),
            ws_out: Mutex::new(Outboxes::default()),
            ws_in_channel: Arc::new(AtomicUsize::new(0)),
            healthy: tokio::sync::Notify::new(),
            ws_ended: Mutex::new(EndedWs::default()),
            budget: Mutex::new(budget),
            tap: TapSlot::default(),
        }
    }

    /// A fresh stream reference of this connection.
    pub(crate) fn new_stream(&self) -> StreamRef {
        StreamRef { conn: self.id, id: self.next_stream.fetch_add(1, Ordering::Relaxed) }
    }

    /// Records the connection's new state, for [`Info::state`].
    pub(crate) fn set_state(&self, state: State) {
        lock(&self.info).state = state;
    }

    /// The current owner's byte budget.
    pub(crate) fn budget(&self) -> Arc<Budget> {
        lock(&self.budget).clone()
    }

    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        lock(&self.info).exit.clone()
    }

    /// Records that WebSocket `stream` ended: from now on a send on it returns `error`. The
    /// drivers call it before the owner can hear of the end (and before the outbox refuses
    /// direct sends), so a send made after the owner saw the end cannot report success. The
    /// first record of a stream stands (it is the most precise).
    pub(crate) fn ws_ended(&self, stream: StreamRef, error: Error) {
        let mut ended = lock(&self.ws_ended);
        if ended.errors.contains_key(&stream) {
            return;
        }
        if ended.order.len() >= ENDED_WS_MEMORY
            && let Some(old) = ended.order.pop_front()
        {
            ended.errors.remove(&old);
        }
        ended.order.push_back(stream);
        ended.errors.insert(stream, error);
    }

    /// What a send on `stream` returns if it is a WebSocket that ended.
    pub(crate) fn ws_end_error(&self, stream: &StreamRef) -> Option<Error> {
        lock(&self.ws_ended).errors.get(stream).cloned()
    }

    /// Ends direct sends on WebSocket `stream` now (its driver is going away): its outbox
    /// leaves and refuses what comes, and lets go of its sink.
    pub(crate) fn ws_unregister(&self, stream: &StreamRef) {
        let out = lock(&self.ws_out).remove(stream);
        if let Some(out) = out {
            let _ = out.end();
        }
    }

    /// Writes what `ws_feed` left queued in the outbox of WebSocket `stream`, as far as the
    /// sink takes it now (the rest is the driver's).
    pub(crate) fn ws_write_fed(&self, stream: &StreamRef) {
        if let Some(out) = lock(&self.ws_out).get(stream) {
            out.write_now();
        }
    }

    /// Sends on `stream` through its outbox, unless messages sent earlier are still on their
    /// way through the command channel (they must go first) or the stream has no outbox.
    /// `None`: the caller must go through the worker.
    pub(crate) async fn ws_direct(
        &self,
        stream: &StreamRef,
        message: &Message,
        now: bool,
    ) -> Option<Result<(), Error>> {
        if self.ws_in_channel.load(Ordering::Acquire) != 0 {
            return None;
        }
        let out = {
            let slot = lock(&self.ws_out);
            let out = slot.get(stream)?;
            match out.try_send(message, now) {
                Some(Ok(Queued::Done)) => return Some(Ok(())),
                Some(Ok(Queued::Ended)) => return None,
                Some(Err(e)) => return Some(Err(Error::Stream(e))),
                // The queue is full: wait for room.
                None => out.clone(),
            }
        };
        match out.send(message, now).await {
            Ok(Queued::Done) => Some(Ok(())),
            // The session just ended: the worker reports what became of the stream.
            Ok(Queued::Ended) => None,
            Err(e) => Some(Err(Error::Stream(e))),
        }
    }
}
