//! The user's incoming queue: [`ClientEvent`]s from the client task to the user, bounded in
//! bytes, with the configured [`Overflow`] policy, read through a cancel-safe [`EventStream`].
//!
//! The client task holds the one [`EventSender`]; it never blocks on the user. A data message
//! goes in when it fits under the byte ceiling (an empty queue takes any one message, so a
//! message larger than the ceiling still gets through):
//! - [`Overflow::Backpressure`]: [`EventSender::try_send`] hands a message that does not fit
//!   back ([`Full`]); the task keeps it, stops reading the socket (so TCP slows the venue) and
//!   waits on [`EventSender::room`] alongside its timers.
//! - [`Overflow::DropOldest`]: the oldest queued data messages are dropped to make room and
//!   counted; the reader gets a [`ClientEvent::Dropped`] with the count, in the place of the
//!   gap, before the next event. Never silent.
//!
//! Other events (connected, disconnected, errors...) are never dropped and never refused:
//! they are few (a handful per connection attempt) and count toward the bytes.
//!
//! [`EventStream::recv`] is cancel-safe: an event is taken from the queue only in the poll
//! that returns it, so a `recv()` losing a `select!` loses nothing. `EventStream` is also a
//! [`futures_core::Stream`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use moorline_client::config::Overflow;
//! use moorline_client::queue::channel;
//! use moorline_client::{ClientEvent, Payload};
//!
//! let (tx, mut rx) = channel(8 << 10, Overflow::DropOldest);
//! for i in 0..100u8 {
//!     let data = Payload::Binary(vec![i; 1000].into());
//!     tx.try_send(ClientEvent::Message { data, channel: None }).unwrap();
//! }
//! let Some(ClientEvent::Dropped { messages, .. }) = rx.recv().await else { panic!() };
//! assert_eq!(messages, 93); // seven 1 064-byte events fit in 8 KiB
//! assert_eq!(rx.dropped(), 93);
//! # });
//! ```

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::config::Overflow;
use crate::event::ClientEvent;

/// A message the queue had no room for ([`Overflow::Backpressure`]), handed back.
#[derive(Debug)]
pub struct Full(pub ClientEvent);

/// The reader ([`EventStream`]) was dropped: nobody reads the events any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event stream was dropped: nobody reads the client's events")]
pub struct ReaderGone;

/// Why [`EventSender::try_send`] did not queue the event.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// No room (backpressure): the event is handed back.
    #[error("the incoming queue is full")]
    Full(ClientEvent),
    /// Nobody reads.
    #[error(transparent)]
    ReaderGone(#[from] ReaderGone),
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(ClientEvent, usize)>,
    bytes: usize,
    dropped_messages: u64,
    dropped_bytes: u64,
    unreported_messages: u64,
    unreported_bytes: u64,
    closed: bool,
    reader_gone: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    limit: usize,
    overflow: Overflow,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes a queue of at most `limit` bytes with this overflow policy.
pub fn channel(limit: usize, overflow: Overflow) -> (EventSender, EventStream) {
    let shared = Arc::new(Shared { state: Mutex::new(State::default()), limit, overflow });
    (EventSender { shared: shared.clone() }, EventStream { shared })
}

/// The client task's end of the queue (one per client: not `Clone`).
#[derive(Debug)]
pub struct EventSender {
    shared: Arc<Shared>,
}

impl EventSender {
    /// Queues an event without waiting; see the [module documentation](self) for what a
    /// full queue does.
    // The error hands the event back, as tokio's `TrySendError<T>` does: boxing it would cost
    // an allocation on the path where the queue is full, to save a move.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, event: ClientEvent) -> Result<(), TrySendError> {
        self.shared.try_send(event)
    }

    /// A second writer for the task's fast path (`task::tap`): it queues as
    /// [`try_send`](Self::try_send) does, and does not end the stream when dropped.
    pub(crate) fn tap_writer(&self) -> TapWriter {
        TapWriter { shared: self.shared.clone() }
    }

    /// Waits until a message of `bytes` would fit (at once under [`Overflow::DropOldest`]).
    /// Cancel-safe: it takes nothing.
    pub async fn room(&self, bytes: usize) -> Result<(), ReaderGone> {
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if s.reader_gone {
                return Poll::Ready(Err(ReaderGone));
            }
            let fits = s.queue.is_empty() || s.bytes.saturating_add(bytes) <= self.shared.limit;
            if fits || self.shared.overflow == Overflow::DropOldest {
                return Poll::Ready(Ok(()));
            }
            s.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Queues an event, waiting for room under backpressure.
    pub async fn send(&self, event: ClientEvent) -> Result<(), ReaderGone> {
        let mut event = event;
        loop {
            self.room(event.queued_bytes()).await?;
            match self.try_send(event) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => event = back,
                Err(TrySendError::ReaderGone(e)) => return Err(e),
            }
        }
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Ends the stream: the reader gets what is queued, then `None`.
    pub fn close(&self) {
        let mut s = self.shared.lock();
        s.closed = true;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }
}

/// The task's fast-path writer (see [`EventSender::tap_writer`]).
#[derive(Debug)]
pub(crate) struct TapWriter {
    shared: Arc<Shared>,
}

impl TapWriter {
    /// As [`EventSender::try_send`].
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, event: ClientEvent) -> Result<(), TrySendError> {
        self.shared.try_send(event)
    }
}

impl Shared {
    #[allow(clippy::result_large_err)]
    fn try_send(&self, event: ClientEvent) -> Result<(), TrySendError> {
        let size = event.queued_bytes();
        let mut s = self.lock();
        if s.reader_gone {
            return Err(ReaderGone.into());
        }
        if event.is_message() && !s.queue.is_empty() && s.bytes.saturating_add(size) > self.limit {
            match self.overflow {
                Overflow::Backpressure => return Err(TrySendError::Full(event)),
                Overflow::DropOldest => drop_oldest(&mut s, size, self.limit),
            }
        }
        s.bytes += size;
        s.queue.push_back((event, size));
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        self.close();
    }
}

/// Drops the oldest data messages until `size` more bytes fit (or no message is left).
fn drop_oldest(s: &mut State, size: usize, limit: usize) {
    while s.bytes.saturating_add(size) > limit {
        // The oldest message is almost always at the front; other events are rare.
        let Some(i) = s.queue.iter().position(|(e, _)| e.is_message()) else { break };
        let Some((_, bytes)) = s.queue.remove(i) else { break };
        s.bytes -= bytes;
        s.dropped_messages += 1;
        s.unreported_messages += 1;
        s.dropped_bytes += bytes as u64;
        s.unreported_bytes += bytes as u64;
    }
}

/// The user's end: a cancel-safe stream of [`ClientEvent`]s.
#[derive(Debug)]
pub struct EventStream {
    shared: Arc<Shared>,
}

impl EventStream {
    /// The next event; `None` once the client has stopped and everything was read.
    /// Cancel-safe: usable in `select!` without losing an event.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.take(&mut self.shared.lock())
    }

    /// Polls for the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        let mut s = self.shared.lock();
        if let Some(event) = self.take(&mut s) {
            return Poll::Ready(Some(event));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn take(&self, s: &mut State) -> Option<ClientEvent> {
        if s.unreported_messages > 0 {
            let event = ClientEvent::Dropped { messages: s.unreported_messages, bytes: s.unreported_bytes };
            s.unreported_messages = 0;
            s.unreported_bytes = 0;
            return Some(event);
        }
        let (event, bytes) = s.queue.pop_front()?;
        s.bytes -= bytes;
        if let Some(w) = s.writer.take() {
            w.wake();
        }
        Some(event)
    }

    /// Data messages dropped so far ([`Overflow::DropOldest`]).
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped_messages
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.reader_gone = true;
        s.queue.clear();
        s.bytes = 0;
        if let Some(w) = s.writer.take() {
            w.wake();
        }
    }
}

impl futures_core::Stream for EventStream {
    type Item = ClientEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
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

    fn msg(i: u32, len: usize) -> ClientEvent {
        let mut v = vec![0u8; len.max(4)];
        v[..4].copy_from_slice(&i.to_be_bytes());
        ClientEvent::Message { data: Payload::Binary(Bytes::from(v)), channel: None }
    }

    fn index(e: &ClientEvent) -> u32 {
        let ClientEvent::Message { data: Payload::Binary(b), .. } = e else { panic!("{e:?}") };
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A flood nobody reads: the queue never holds more than its ceiling (plus nothing: the
    /// messages are smaller than it), and every dropped message is counted and reported.
    #[tokio::test]
    async fn drop_oldest_flood_stays_under_the_ceiling_and_counts_every_drop() {
        let limit = 64 << 10;
        let (tx, mut rx) = channel(limit, Overflow::DropOldest);
        let mut peak = 0;
        for i in 0..10_000 {
            tx.try_send(msg(i, 1000)).unwrap();
            peak = peak.max(tx.queued_bytes());
        }
        assert!(peak <= limit, "{peak}");
        tx.try_send(ClientEvent::Idle { silent_for: Duration::from_secs(1) }).unwrap();
        tx.close();
        let mut got = Vec::new();
        let mut reported = 0;
        while let Some(e) = rx.recv().await {
            match e {
                ClientEvent::Dropped { messages, bytes } => {
                    assert!(got.is_empty(), "the gap is reported where it is");
                    assert_eq!(bytes, messages * 1064);
                    reported += messages;
                }
                ClientEvent::Message { .. } => got.push(index(&e)),
                ClientEvent::Idle { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(reported + got.len() as u64, 10_000, "nothing lost silently");
        assert_eq!(rx.dropped(), reported);
        // The newest survive, in order.
        assert_eq!(*got.last().unwrap(), 9_999);
        assert!(got.windows(2).all(|w| w[0] + 1 == w[1]));
    }

    #[tokio::test]
    async fn other_events_are_never_dropped_or_refused() {
        let (tx, mut rx) = channel(4096, Overflow::DropOldest);
        tx.try_send(ClientEvent::Reconnecting { attempt: 1, delay: Duration::ZERO }).unwrap();
        for i in 0..100 {
            tx.try_send(msg(i, 2000)).unwrap();
        }
        let (btx, _brx) = channel(4096, Overflow::Backpressure);
        btx.try_send(msg(0, 4000)).unwrap();
        assert!(matches!(btx.try_send(msg(1, 10)), Err(TrySendError::Full(_))));
        btx.try_send(ClientEvent::Closed { error: None }).unwrap();
        assert!(matches!(rx.recv().await, Some(ClientEvent::Dropped { .. })));
        assert!(matches!(rx.recv().await, Some(ClientEvent::Reconnecting { .. })), "kept, in its place");
    }

    #[tokio::test]
    async fn a_message_larger_than_the_ceiling_still_gets_through_alone() {
        let (tx, mut rx) = channel(4096, Overflow::Backpressure);
        tx.try_send(msg(0, 100_000)).unwrap();
        assert!(matches!(tx.try_send(msg(1, 10)), Err(TrySendError::Full(_))));
        assert_eq!(index(&rx.recv().await.unwrap()), 0);
        tx.try_send(msg(1, 10)).unwrap();
    }

    /// Backpressure: a writer pushing 5 000 messages into a 16 KiB queue waits for the reader,
    /// never holds more than the ceiling, and nothing is lost or reordered.
    #[tokio::test]
    async fn backpressure_waits_for_the_reader_and_loses_nothing() {
        let limit = 16 << 10;
        let (tx, mut rx) = channel(limit, Overflow::Backpressure);
        let writer = tokio::spawn(async move {
            let mut peak = 0;
            for i in 0..5_000 {
                tx.send(msg(i, 500)).await.unwrap();
                peak = peak.max(tx.queued_bytes());
            }
            peak
        });
        let mut next = 0;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap() {
            assert_eq!(index(&e), next);
            next += 1;
            if next % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(next, 5_000);
        assert!(writer.await.unwrap() <= limit);
    }

    /// `recv()` in a `select!` that a timer keeps winning loses nothing.
    #[tokio::test(start_paused = true)]
    async fn recv_is_cancel_safe_in_select() {
        let (tx, mut rx) = channel(1 << 20, Overflow::Backpressure);
        let writer = tokio::spawn(async move {
            for i in 0..2_000 {
                tx.send(msg(i, 8)).await.unwrap();
                if i % 7 == 0 {
                    tokio::time::sleep(Duration::from_micros(300)).await;
                }
            }
        });
        let mut next = 0;
        let mut timer_won = 0;
        while next < 2_000 {
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_micros(100)) => timer_won += 1,
                e = rx.recv() => {
                    assert_eq!(index(&e.unwrap()), next);
                    next += 1;
                }
            }
        }
        assert!(timer_won > 0, "the select was cancelled at times");
        writer.await.unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_reader_is_reported_to_the_writer_and_frees_the_queue() {
        let (tx, rx) = channel(4096, Overflow::Backpressure);
        tx.try_send(msg(0, 4000)).unwrap();
        let waiting = tokio::spawn(async move { tx.send(msg(1, 4000)).await });
        tokio::task::yield_now().await;
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
        assert_eq!(r, Err(ReaderGone));
    }

    #[tokio::test]
    async fn it_is_a_stream() {
        use futures_core::Stream;
        let (tx, mut rx) = channel(4096, Overflow::Backpressure);
        tx.try_send(msg(3, 4)).unwrap();
        drop(tx);
        let mut rx = Pin::new(&mut rx);
        let first = poll_fn(|cx| rx.as_mut().poll_next(cx)).await;
        assert_eq!(index(&first.unwrap()), 3);
        assert!(poll_fn(|cx| rx.as_mut().poll_next(cx)).await.is_none());
    }
}
