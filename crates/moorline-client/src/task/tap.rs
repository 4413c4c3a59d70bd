//! The data path without a hop: the client's [`moorline::WsTap`].
//!
//! Installed on the session's WebSocket once it is restored, it runs inside the connection's
//! worker: a data message (what the dialect classifies as [`Inbound::Data`]) goes straight
//! to the user's queue, with its channel; anything else (responses, heartbeats, pings, bad
//! frames), and every message while the gate is shut, is handed back and reaches the task
//! as before. moorline offers a message only once the task has handled every event before
//! it, so the user sees messages and the task's events in the order they came.
//!
//! The gate is open only while the task would do nothing but deliver: the session restored,
//! a queue (not a callback) as the sink, nothing parked in the side buffer. A full queue
//! (backpressure) hands the message back: the task parks it and shuts the gate. What the task
//! would have noted on the way (the time of the last data message for the liveness timers,
//! the statistics, the recording) the tap notes itself; the task folds the time in before it
//! reads its deadlines.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use moorline::ws::Message;

use crate::dialect::{Dialect, Frame, Inbound};
use crate::event::{Channel, ClientEvent, Payload};
use crate::queue::{TapWriter, TrySendError};
use crate::record::Direction;
use crate::shared::Shared;

/// What the task and its tap share.
#[derive(Debug)]
pub(crate) struct Gate {
    /// The task would only deliver: the tap may take data.
    open: AtomicBool,
    /// Nanoseconds after `base` (plus one) of the last data message the tap took; 0: none
    /// since the task last looked.
    last_data: AtomicU64,
    base: std::time::Instant,
    /// The channels the task knows (subscribed), to hand out the task's own `Channel`s.
    known: Mutex<HashSet<Channel>>,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            open: AtomicBool::new(false),
            last_data: AtomicU64::new(0),
            base: std::time::Instant::now(),
            known: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// When the tap last took a data message, since the task last asked.
    pub(crate) fn take_last_data(&self) -> Option<std::time::Instant> {
        match self.last_data.swap(0, Ordering::AcqRel) {
            0 => None,
            n => Some(self.base + std::time::Duration::from_nanos(n - 1)),
        }
    }

    pub(crate) fn set_known(&self, known: &HashSet<Channel>) {
        *lock(&self.known) = known.clone();
    }

    fn note_data(&self) {
        let n = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        self.last_data.store(n, Ordering::Release);
    }

    fn intern(&self, name: &str) -> Channel {
        match lock(&self.known).get(name) {
            Some(c) => c.clone(),
            None => Arc::from(name),
        }
    }
}

/// The tap of one session.
pub(crate) struct DataTap {
    pub(crate) gate: Arc<Gate>,
    pub(crate) dialect: Arc<dyn Dialect>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) queue: TapWriter,
}

impl moorline::WsTap for DataTap {
    fn offer(&self, message: Message) -> Result<(), Message> {
        if !self.gate.open.load(Ordering::Acquire) {
            return Err(message);
        }
        let (data, channel) = match &message {
            Message::Text(text) => match self.dialect.classify(Frame::Text(text.as_str())) {
                Inbound::Data { channel } => (Payload::Text(text.clone()), channel.map(|c| self.gate.intern(&c))),
                _ => return Err(message),
            },
            Message::Binary(bytes) => match self.dialect.classify(Frame::Binary(bytes)) {
                Inbound::Data { channel } => (Payload::Binary(bytes.clone()), channel.map(|c| self.gate.intern(&c))),
                _ => return Err(message),
            },
            _ => return Err(message),
        };
        let len = data.len();
        match self.queue.try_send(ClientEvent::Message { data, channel }) {
            Ok(()) => {}
            // Backpressure: the task parks it (and stops reading once its side buffer fills).
            Err(TrySendError::Full(_)) => return Err(message),
            // Nobody reads the events any more: counted as dropped, as the task does.
            Err(TrySendError::ReaderGone(_)) => self.shared.lock().drops += 1,
        }
        self.shared.record(Direction::In, &message);
        self.shared.count_in(len);
        self.shared.messages_direct.fetch_add(1, Ordering::Relaxed);
        self.gate.note_data();
        Ok(())
    }
}

/// The known channels, even if a panicking holder poisoned the lock (a plain set: nothing
/// half-done to see).
fn lock(m: &Mutex<HashSet<Channel>>) -> std::sync::MutexGuard<'_, HashSet<Channel>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
