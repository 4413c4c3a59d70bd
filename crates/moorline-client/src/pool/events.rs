//! The pool's merged event stream: every member's [`ClientEvent`]s with the member's index,
//! in one queue bounded in bytes with the [`Overflow`] policy, read through the cancel-safe
//! [`PoolEvents`] (the same rules as the client's own [`EventStream`](crate::queue::EventStream)).
//!
//! One forwarding task per member writes into it (a [`PoolSender`] each):
//! - [`Overflow::Backpressure`]: a forwarder waits for room, and meanwhile does not read its
//!   member's stream, which fills and stops that member reading its socket: the venue is
//!   slowed, nothing is lost;
//! - [`Overflow::DropOldest`]: the oldest queued data messages are dropped to make room and
//!   reported, per member whose messages they were, as a [`ClientEvent::Dropped`] in the place
//!   of the gap. Never silent.
//!
//! Other events are never dropped nor refused. An empty queue takes any one message, so a
//! message larger than the ceiling still gets through. The stream ends once every forwarder
//! has ended (every member closed, or the pool dropped) and everything was read.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::config::Overflow;
use crate::event::ClientEvent;
use crate::queue::ReaderGone;

/// One event of the pool: a member's [`ClientEvent`] and the member's index.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolEvent {
    /// The member it came from: its index in the pool (the order of the members given to, or
    /// started by, the pool).
    pub member: usize,
    /// The event, as the member's client gave it (a [`ClientEvent::Dropped`] may also come
    /// from the pool's own queue: the member's messages dropped there).
    pub event: ClientEvent,
    /// Redundant mode, a data message: the sequence key it was deduplicated by (`None`: it
    /// had none, and was deduplicated by content).
    pub key: Option<u64>,
    /// Redundant mode: delivered after a later key of its channel (an out-of-order arrival
    /// inside the deduplication window that no member had delivered).
    pub late: bool,
}

impl PoolEvent {
    /// An event of `member`, without a key.
    pub fn new(member: usize, event: ClientEvent) -> Self {
        Self { member, event, key: None, late: false }
    }

    /// Bytes it counts against the pool's queue ([`ClientEvent::queued_bytes`]).
    pub fn queued_bytes(&self) -> usize {
        self.event.queued_bytes()
    }
}

/// Why [`PoolSender::try_send`] did not queue the event.
#[derive(Debug)]
pub(crate) enum TrySend {
    /// No room (backpressure): the event is handed back.
    Full(Box<PoolEvent>),
    /// Nobody reads.
    ReaderGone,
}

#[derive(Debug)]
struct Member {
    /// Dropped messages not yet reported, and their bytes.
    unreported: (u64, u64),
    /// The member's forwarder waiting for room.
    writer: Option<Waker>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<(PoolEvent, usize)>,
    bytes: usize,
    dropped: u64,
    members: Vec<Member>,
    senders: usize,
    reader_gone: bool,
    reader: Option<Waker>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    limit: usize,
    overflow: Overflow,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data behind the lock: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A queue of at most `limit` bytes for `members` members.
pub(crate) fn channel(limit: usize, overflow: Overflow, members: usize) -> (PoolSender, PoolEvents) {
    let state = State {
        queue: VecDeque::new(),
        bytes: 0,
        dropped: 0,
        members: (0..members).map(|_| Member { unreported: (0, 0), writer: None }).collect(),
        senders: 1,
        reader_gone: false,
        reader: None,
    };
    let shared = Arc::new(Shared { state: Mutex::new(state), limit, overflow });
    (PoolSender { shared: shared.clone() }, PoolEvents { shared })
}

/// A forwarder's end of the queue; the stream ends when every clone is dropped.
#[derive(Debug)]
pub(crate) struct PoolSender {
    shared: Arc<Shared>,
}

impl Clone for PoolSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self { shared: self.shared.clone() }
    }
}

impl Drop for PoolSender {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.senders -= 1;
        if s.senders == 0
            && let Some(w) = s.reader.take()
        {
            w.wake();
        }
    }
}

impl PoolSender {
    /// Queues an event without waiting (see the [module documentation](self)).
    pub(crate) fn try_send(&self, event: PoolEvent) -> Result<(), TrySend> {
        let size = event.queued_bytes();
        let mut s = self.shared.lock();
        if s.reader_gone {
            return Err(TrySend::ReaderGone);
        }
        if event.event.is_message() && !s.queue.is_empty() && s.bytes.saturating_add(size) > self.shared.limit {
            match self.shared.overflow {
                Overflow::Backpressure => return Err(TrySend::Full(Box::new(event))),
                Overflow::DropOldest => drop_oldest(&mut s, size, self.shared.limit),
            }
        }
        s.bytes += size;
        s.queue.push_back((event, size));
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        Ok(())
    }

    /// Waits until `bytes` more would fit (at once under [`Overflow::DropOldest`]); `member`
    /// is the forwarder's. Cancel-safe.
    pub(crate) async fn room(&self, member: usize, bytes: usize) -> Result<(), ReaderGone> {
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if s.reader_gone {
                return Poll::Ready(Err(ReaderGone));
            }
            let fits = s.queue.is_empty() || s.bytes.saturating_add(bytes) <= self.shared.limit;
            if fits || self.shared.overflow == Overflow::DropOldest {
                return Poll::Ready(Ok(()));
            }
            if let Some(m) = s.members.get_mut(member) {
                m.writer = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Queues an event, waiting for room under backpressure.
    pub(crate) async fn send(&self, event: PoolEvent) -> Result<(), ReaderGone> {
        let mut event = event;
        loop {
            self.room(event.member, event.queued_bytes()).await?;
            match self.try_send(event) {
                Ok(()) => return Ok(()),
                Err(TrySend::Full(back)) => event = *back,
                Err(TrySend::ReaderGone) => return Err(ReaderGone),
            }
        }
    }
}

/// Drops the oldest data messages until `size` more bytes fit (or no message is left),
/// counting them against the member they came from.
fn drop_oldest(s: &mut State, size: usize, limit: usize) {
    while s.bytes.saturating_add(size) > limit {
        let Some(i) = s.queue.iter().position(|(e, _)| e.event.is_message()) else { break };
        let Some((event, bytes)) = s.queue.remove(i) else { break };
        s.bytes -= bytes;
        s.dropped += 1;
        if let Some(m) = s.members.get_mut(event.member) {
            m.unreported.0 += 1;
            m.unreported.1 += bytes as u64;
        }
    }
}

/// The pool's events: every member's, merged, with the member's index; cancel-safe.
///
/// Bounded in bytes ([`PoolConfig::event_buffer_bytes`](super::PoolConfig)) with the
/// configured [`Overflow`]. One forwarding task per member writes into it:
/// - [`Overflow::Backpressure`]: a forwarder waits for room, and meanwhile does not read its
///   member's stream, which fills and stops that member reading its socket: the venue is
///   slowed, nothing is lost;
/// - [`Overflow::DropOldest`]: the oldest queued data messages are dropped to make room and
///   reported, per member whose messages they were, as a [`ClientEvent::Dropped`] in the place
///   of the gap. Never silent.
///
/// Other events are never dropped nor refused. An empty queue takes any one message, so a
/// message larger than the ceiling still gets through. The stream ends once every member's
/// forwarder has ended (each member closed, or the pool dropped) and everything was read.
#[derive(Debug)]
pub struct PoolEvents {
    shared: Arc<Shared>,
}

impl PoolEvents {
    /// The next event; `None` once every member has stopped and everything was read.
    /// Cancel-safe: usable in `select!` without losing an event.
    pub async fn recv(&mut self) -> Option<PoolEvent> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<PoolEvent> {
        take(&mut self.shared.lock())
    }

    /// Polls for the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<PoolEvent>> {
        let mut s = self.shared.lock();
        if let Some(event) = take(&mut s) {
            return Poll::Ready(Some(event));
        }
        if s.senders == 0 {
            return Poll::Ready(None);
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Data messages the pool's queue dropped so far ([`Overflow::DropOldest`]).
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }
}

fn take(s: &mut State) -> Option<PoolEvent> {
    if let Some((member, m)) = s.members.iter_mut().enumerate().find(|(_, m)| m.unreported.0 > 0) {
        let (messages, bytes) = std::mem::take(&mut m.unreported);
        return Some(PoolEvent::new(member, ClientEvent::Dropped { messages, bytes }));
    }
    let (event, bytes) = s.queue.pop_front()?;
    s.bytes -= bytes;
    for m in &mut s.members {
        if let Some(w) = m.writer.take() {
            w.wake();
        }
    }
    Some(event)
}

impl Drop for PoolEvents {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.reader_gone = true;
        s.queue.clear();
        s.bytes = 0;
        for m in &mut s.members {
            if let Some(w) = m.writer.take() {
                w.wake();
            }
        }
    }
}

impl futures_core::Stream for PoolEvents {
    type Item = PoolEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PoolEvent>> {
        self.get_mut().poll_recv(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::event::Payload;

    fn msg(member: usize, i: u32, len: usize) -> PoolEvent {
        let mut v = vec![0u8; len.max(4)];
        v[..4].copy_from_slice(&i.to_be_bytes());
        PoolEvent::new(member, ClientEvent::Message { data: Payload::Binary(Bytes::from(v)), channel: None })
    }

    fn index(e: &PoolEvent) -> u32 {
        let ClientEvent::Message { data: Payload::Binary(b), .. } = &e.event else { panic!("{e:?}") };
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Two members flooding a reader that does not read: never more than the ceiling, every
    /// drop reported against the member whose messages they were.
    #[tokio::test]
    async fn drop_oldest_flood_is_bounded_and_reported_per_member() {
        let limit = 32 << 10;
        let (tx, mut rx) = channel(limit, Overflow::DropOldest, 2);
        let mut peak = 0;
        for i in 0..20_000 {
            tx.try_send(msg((i % 2) as usize, i, 500)).unwrap();
            peak = peak.max(rx.queued_bytes());
        }
        assert!(peak <= limit, "{peak}");
        drop(tx);
        let (mut reported, mut got) = ([0u64; 2], 0u64);
        while let Some(e) = rx.recv().await {
            match e.event {
                ClientEvent::Dropped { messages, bytes } => {
                    assert_eq!(bytes, messages * 564);
                    reported[e.member] += messages;
                }
                ClientEvent::Message { .. } => got += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(reported[0] + reported[1] + got, 20_000);
        assert_eq!(reported, [10_000 - got / 2, 10_000 - got / 2]);
        assert_eq!(rx.dropped(), reported[0] + reported[1]);
    }

    /// Backpressure: two writers, one reader; nothing lost, each member's order kept, the
    /// queue never past its ceiling.
    #[tokio::test]
    async fn backpressure_loses_nothing_and_keeps_each_members_order() {
        let limit = 8 << 10;
        let (tx, mut rx) = channel(limit, Overflow::Backpressure, 2);
        let mut writers = Vec::new();
        for m in 0..2 {
            let tx = tx.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..3_000 {
                    tx.send(msg(m, i, 300)).await.unwrap();
                }
            }));
        }
        drop(tx);
        let mut next = [0u32; 2];
        let mut peak = 0;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap() {
            peak = peak.max(rx.queued_bytes());
            assert_eq!(index(&e), next[e.member]);
            next[e.member] += 1;
        }
        assert_eq!(next, [3_000, 3_000]);
        assert!(peak <= limit, "{peak}");
        for w in writers {
            w.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_dropped_reader_frees_the_queue_and_stops_the_writers() {
        let (tx, rx) = channel(4096, Overflow::Backpressure, 1);
        tx.try_send(msg(0, 0, 4000)).unwrap();
        let waiting = tokio::spawn(async move { tx.send(msg(0, 1, 4000)).await });
        tokio::task::yield_now().await;
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
        assert_eq!(r, Err(ReaderGone));
    }

    /// `recv()` losing a `select!` loses nothing; other events are never dropped.
    #[tokio::test(start_paused = true)]
    async fn recv_is_cancel_safe_and_other_events_stay() {
        let (tx, mut rx) = channel(1 << 20, Overflow::DropOldest, 1);
        tx.try_send(PoolEvent::new(0, ClientEvent::Idle { silent_for: Duration::ZERO })).unwrap();
        let writer = tokio::spawn(async move {
            for i in 0..1_000 {
                tx.send(msg(0, i, 8)).await.unwrap();
                if i % 5 == 0 {
                    tokio::time::sleep(Duration::from_micros(300)).await;
                }
            }
        });
        assert!(matches!(rx.recv().await.unwrap().event, ClientEvent::Idle { .. }));
        let (mut next, mut timer_won) = (0, 0);
        while next < 1_000 {
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_micros(100)) => timer_won += 1,
                e = rx.recv() => {
                    assert_eq!(index(&e.unwrap()), next);
                    next += 1;
                }
            }
        }
        assert!(timer_won > 0);
        writer.await.unwrap();
        assert!(rx.recv().await.is_none());
    }
}
