//! What travels on the worker → owner channel: one event, or a batch of the WebSocket
//! messages of one stream decoded from one read. A batch costs one channel operation (and one wake-up)
//! instead of one per message; the owner's [`Events`](super::owner::Events) unpacks it, so
//! the owner still sees one event at a time, in order.
//!
//! What waits for the owner is bounded twice: the channel's capacity counts deliveries
//! ([`ConnectOptions::event_buffer`](crate::ConnectOptions::event_buffer)), and a [`Budget`]
//! counts their payload bytes
//! ([`ConnectOptions::event_buffer_bytes`](crate::ConnectOptions::event_buffer_bytes)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::event::Event;
use crate::ids::StreamRef;
use crate::wsio::Message;

/// The most events one batch carries (so the channel's capacity, counted in deliveries,
/// still bounds what waits for the owner).
pub(crate) const MAX_BATCH: usize = 32;

/// The most payload bytes one batch carries (a single larger message still makes one
/// delivery): what one delivery may take past the byte budget.
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One item on the owner's channel.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A single event other than a WebSocket message, boxed: the channel allocates its slots
    /// in blocks of 32 up front (one per connection at least), so the slot stays small
    /// (64 bytes rather than an `Event`'s 144: 2.5 KB less per connection).
    One(Box<Event>),
    /// A single WebSocket message ([`Event::Ws`] to the owner), unboxed: the data path.
    WsOne(StreamRef, Message),
    /// Messages of one WebSocket, in order (never empty): each is an
    /// [`Event::Ws`] to the owner. Only the messages travel (not a whole `Event` each).
    Ws(StreamRef, Vec<Message>),
}

impl Delivery {
    /// How many events the owner gets from it.
    pub(crate) fn events(&self) -> u64 {
        match self {
            Delivery::One(_) | Delivery::WsOne(..) => 1,
            Delivery::Ws(_, messages) => messages.len() as u64,
        }
    }

    /// The delivery of one event.
    pub(crate) fn event(ev: Event) -> Self {
        match ev {
            Event::Ws { stream, message } => Delivery::WsOne(stream, message),
            ev => Delivery::One(Box::new(ev)),
        }
    }
}

impl From<Event> for Delivery {
    fn from(ev: Event) -> Self {
        Delivery::event(ev)
    }
}

/// The payload bytes an event holds, as the [`Budget`] counts them: a body chunk's or a
/// WebSocket message's. Heads are bounded elsewhere (head limits, one per request, and the
/// limit on 1xx heads).
pub(crate) fn event_bytes(ev: &Event) -> usize {
    match ev {
        Event::Data { data, .. } => data.len(),
        Event::Ws { message, .. } => message.len(),
        _ => 0,
    }
}

/// The payload bytes queued for one owner and not yet handed to it: in its channel, and in
/// its [`Events`](super::owner::Events) (a batch being unpacked, events an await set aside).
/// The worker adds before it queues a delivery, `Events` subtracts as each event leaves it.
///
/// Taking waits while the budget is used up (`used >= limit`); a taker may then go past the
/// limit by its own size, so what is held stays below `limit` + one delivery (at most
/// [`MAX_BATCH_BYTES`] or one message). A message larger than the whole budget thus still
/// gets through once the owner caught up.
///
/// Each owner has its own budget: after `set_owner` the worker charges a fresh one and
/// [retires](Budget::retire) the old one, so an old `Events` left unread cannot stall the
/// new owner.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// Takers waiting for room; releases wake them only when there are some.
    waiters: AtomicUsize,
    room: Notify,
    /// No longer the owner's budget: it admits everything (the worker charges the new one).
    retired: AtomicBool,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit: limit.max(1),
            waiters: AtomicUsize::new(0),
            room: Notify::new(),
            retired: AtomicBool::new(false),
        }
    }

    /// The byte limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes if the budget is not used up; `false` (and nothing taken) if it is.
    pub(crate) fn try_take(&self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let limit = self.limit;
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| (u < limit).then(|| u.saturating_add(n)))
            .is_ok();
        if !taken && self.retired.load(Ordering::Acquire) {
            self.used.fetch_add(n, Ordering::SeqCst);
            return true;
        }
        taken
    }

    /// Takes `n` bytes, waiting while the budget is used up. Cancel-safe: nothing is taken
    /// unless it returns.
    pub(crate) async fn take(&self, n: usize) {
        if self.try_take(n) {
            return;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiters);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check: a release after it wakes us.
            room.as_mut().enable();
            if self.try_take(n) {
                return;
            }
            room.await;
        }
    }

    /// Gives `n` bytes back (an event left for the owner, or was dropped).
    pub(crate) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.room.notify_waiters();
        }
    }

    /// Whether some taker is waiting for room.
    pub(crate) fn is_waited_on(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) != 0
    }

    /// This budget no longer bounds anything: takers waiting on it go on.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.room.notify_waiters();
    }
}

/// Counts a waiting taker while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Bytes taken from a [`Budget`] for an event on its way to the worker (from an HTTP/2
/// stream task): given back if the event is dropped on the way, kept when the worker queues
/// it for the owner.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Option<Arc<Budget>>,
    n: usize,
}

impl Charge {
    /// Takes the bytes of `ev` from `budget` (waiting while it is used up).
    pub(crate) async fn take(budget: impl FnOnce() -> Arc<Budget>, ev: &Event) -> Self {
        Self::take_bytes(budget, event_bytes(ev)).await
    }

    /// Takes `n` payload bytes from `budget` (waiting while it is used up): a batch's.
    pub(crate) async fn take_bytes(budget: impl FnOnce() -> Arc<Budget>, n: usize) -> Self {
        if n == 0 {
            return Self { budget: None, n };
        }
        let budget = budget();
        budget.take(n).await;
        Self { budget: Some(budget), n }
    }

    /// The bytes taken.
    pub(crate) fn bytes(&self) -> usize {
        self.n
    }

    /// Gives `n` of the bytes back (messages of a batch that left another way).
    pub(crate) fn release(&mut self, n: usize) {
        let n = n.min(self.n);
        self.n -= n;
        if let Some(b) = &self.budget {
            b.give_back(n);
        }
    }

    /// Settles the charge for a delivery to the owner whose budget is `current`: `true` if
    /// the bytes were taken from it (they stay taken: the owner's `Events` gives them back),
    /// `false` if they must be taken again (taken from a retired budget, or nothing taken).
    pub(crate) fn settle(mut self, current: &Arc<Budget>) -> bool {
        match self.budget.take() {
            Some(b) if Arc::ptr_eq(&b, current) => true,
            Some(b) => {
                b.give_back(self.n);
                self.n == 0
            }
            None => self.n == 0,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(b) = self.budget.take() {
            b.give_back(self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn takers_wait_while_the_budget_is_used_up() {
        let b = Arc::new(Budget::new(100));
        assert!(b.try_take(60));
        assert!(b.try_take(60), "room left: a taker may go past the limit by its own size");
        assert!(!b.try_take(1));
        assert!(b.try_take(0), "nothing to take never waits");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.take(500).await }
        });
        tokio::task::yield_now().await;
        assert!(b.is_waited_on());
        b.give_back(10); // 110 used: still no room
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.give_back(60); // 50 used
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert!(!b.is_waited_on());
        assert_eq!(b.used.load(Ordering::SeqCst), 550);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retired_budget_lets_waiters_go() {
        let b = Arc::new(Budget::new(10));
        assert!(b.try_take(10));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.take(5).await }
        });
        tokio::task::yield_now().await;
        b.retire();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_dropped_charge_gives_its_bytes_back() {
        let b = Arc::new(Budget::new(10));
        let ev =
            Event::Data { stream: StreamRef { conn: 1, id: 1 }, data: bytes::Bytes::from_static(b"abc"), fin: false };
        let charge = Charge::take(|| b.clone(), &ev).await;
        assert_eq!(b.used.load(Ordering::SeqCst), 3);
        drop(charge);
        assert_eq!(b.used.load(Ordering::SeqCst), 0);
        let charge = Charge::take(|| b.clone(), &ev).await;
        assert!(charge.settle(&b), "taken from the current budget: it stays taken");
        assert_eq!(b.used.load(Ordering::SeqCst), 3);
        let other = Arc::new(Budget::new(10));
        let charge = Charge::take(|| b.clone(), &ev).await;
        assert!(!charge.settle(&other), "taken from another budget: given back there");
        assert_eq!(b.used.load(Ordering::SeqCst), 3);
    }
}
