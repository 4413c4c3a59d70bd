//! The owner's tap: WebSocket messages handed to the owner's code inside the connection's
//! worker, without the hop through [`Events`](crate::Events).
//!
//! An owner that routes messages (the trading client: data to its user's queue, control
//! frames to its own task) pays a task switch per message if every message goes through the
//! event channel to its task first. With a [`WsTap`] installed on a WebSocket
//! ([`Connection::set_ws_tap`](crate::Connection::set_ws_tap)), the worker offers each
//! message it decodes to the tap before it queues it; what the tap takes never enters the
//! channel, what it hands back is queued as usual.
//!
//! Order is kept: a message is offered only when the owner has handled every event queued
//! before it. The worker counts what it queues; [`Events`](crate::Events) publishes how
//! many it has released, an event being released when the owner next calls
//! [`Events::next`](crate::Events::next) or [`Events::try_next`](crate::Events::try_next)
//! after it (so an owner that handles events one at a time, then asks for the next, has
//! handled all of them when the two counts meet). Events taken by the `await_*` functions
//! are not released that way: an owner that uses them keeps the tap closed (safe, only
//! slower).
//!
//! Over HTTP/2 a WebSocket's messages come to the worker from the stream's own task (h2
//! reads each stream apart), their bytes already taken from the owner's budget; the worker
//! offers them to the tap the same way, in order, and gives back the bytes of those it took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::ids::StreamRef;
use crate::sync::lock;
use crate::wsio::Message;

/// Code run inside the connection's worker for each message of one WebSocket, while the owner
/// has no event left to handle; installed with
/// [`Connection::set_ws_tap`](crate::Connection::set_ws_tap).
///
/// The worker offers a message only when the owner has handled every event queued before it:
/// its `Events` counts an event as handled once the owner asks for the next one
/// ([`Events::next`](crate::Events::next), [`Events::try_next`](crate::Events::try_next)), so
/// what the tap takes never overtakes what the owner is still working on. Events taken by the
/// `await_*` functions are not counted that way: the tap then stays shut (only slower).
///
/// `offer` runs on the worker's task: it must not block (a full queue is a reason to hand
/// the message back, not to wait), and a panic in it ends the connection's worker.
///
/// ```
/// use std::sync::Mutex;
/// use moorline::{WsTap, ws::Message};
///
/// /// Takes text messages into a vector, hands the others back.
/// struct Texts(Mutex<Vec<String>>);
///
/// impl WsTap for Texts {
///     fn offer(&self, message: Message) -> Result<(), Message> {
///         match message {
///             Message::Text(t) => Ok(self.0.lock().unwrap().push(t.to_string())),
///             other => Err(other),
///         }
///     }
/// }
/// let t = Texts(Mutex::new(Vec::new()));
/// assert!(t.offer(Message::text("hi")).is_ok());
/// assert!(t.offer(Message::binary(vec![1])).is_err());
/// ```
pub trait WsTap: Send + Sync + 'static {
    /// Takes `message` (`Ok`) or hands it back to be queued for the owner (`Err`).
    fn offer(&self, message: Message) -> Result<(), Message>;
}

/// The installed tap and the owner's published count, shared by the handles, the worker and
/// [`Events`](crate::Events).
#[derive(Default)]
pub(crate) struct TapSlot {
    /// Bumped on every change of `tap`, so the worker reloads it only then.
    generation: AtomicU64,
    tap: Mutex<Option<(StreamRef, Arc<dyn WsTap>)>>,
    /// Events the owner has released (see the module documentation); only kept up to date
    /// once a tap was ever installed (`generation` > 0).
    pub(crate) released: AtomicU64,
}

impl TapSlot {
    pub(crate) fn set(&self, tap: Option<(StreamRef, Arc<dyn WsTap>)>) {
        *lock(&self.tap) = tap;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a tap was ever installed (the owner then publishes what it released).
    pub(crate) fn armed(&self) -> bool {
        self.generation.load(Ordering::Relaxed) > 0
    }
}

/// The worker's view of the slot: the tap cached, and what it queued for the owner.
#[derive(Default)]
pub(crate) struct TapCache {
    generation: u64,
    tap: Option<(StreamRef, Arc<dyn WsTap>)>,
    /// Events queued for the current owner (counted as `Events` counts what it receives).
    pub(crate) queued: u64,
}

impl TapCache {
    /// Offers `message` of `stream` to the tap when one is installed for it and the owner
    /// has released every event queued before; gives it back otherwise.
    pub(crate) fn offer(&mut self, slot: &TapSlot, stream: StreamRef, message: Message) -> Result<(), Message> {
        match self.open_tap(slot, stream) {
            Some(tap) => tap.offer(message),
            None => Err(message),
        }
    }

    /// Whether [`TapCache::offer`] would offer a message of `stream` to a tap now.
    pub(crate) fn ready(&mut self, slot: &TapSlot, stream: StreamRef) -> bool {
        self.open_tap(slot, stream).is_some()
    }

    /// The tap installed for `stream`, if the owner has released every event queued before.
    fn open_tap(&mut self, slot: &TapSlot, stream: StreamRef) -> Option<&Arc<dyn WsTap>> {
        let generation = slot.generation.load(Ordering::Acquire);
        if generation == 0 {
            return None;
        }
        if generation != self.generation {
            self.tap = lock(&slot.tap).clone();
            self.generation = generation;
        }
        match &self.tap {
            Some((s, tap)) if *s == stream && slot.released.load(Ordering::Acquire) == self.queued => Some(tap),
            _ => None,
        }
    }

    /// A new owner: its `Events` counts from zero, and the tap was the old owner's.
    pub(crate) fn owner_changed(&mut self, slot: &TapSlot, held: u64) {
        slot.set(None);
        self.queued = held;
        slot.released.store(0, Ordering::Release);
    }
}
