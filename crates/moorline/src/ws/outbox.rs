//! [`Outbox`]: the sending side of one WebSocket, shared by the handles and the driver.
//!
//! A handle's `ws_send` encodes its message here itself, with no trip through the worker's
//! command channel. Over HTTP/1.1 the outbox also holds the socket's write half, so a
//! message with nothing queued ahead of it is written by the caller at once (a round trip
//! costs no task switch on the way out). What the socket does not take stays queued, and
//! the driver is woken to write it. The driver encodes its own frames (pongs, close replies)
//! here too, so every frame leaves in the order it was queued.
//!
//! The socket is only ever polled with the lock held, and a caller polls it with a no-op
//! waker: whenever such a poll leaves bytes (or a flush) behind, the caller wakes the driver,
//! whose next poll registers its own waker again. So the driver can never be left waiting
//! for a readiness nobody will report.

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use moorline_proto::ws::{Encoder, Message};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::dial::BoxIo;
use crate::error::StreamError;
use crate::sync::lock;

/// The most one write syscall is given: a long queue leaves in several writes. Chosen by
/// measurement (the 16 KiB `ws_echo`; figures in docs/DESIGN.md, "Outbox"): one write of a
/// whole burst, and 64 KiB chunks, were markedly slower on loopback than 32-48 KiB chunks.
pub(crate) const WRITE_CHUNK: usize = 48 * 1024;
/// The most [`Outbox::write_now`] writes from a caller's task: a few small replies leave at
/// once, a larger queue is left to the driver. Chosen by measurement (`ws_echo`; figures in
/// docs/DESIGN.md, "Fed replies leave during a burst"): the 64 B echo gains from the caller's writes, the 16 KiB echo
/// lost about a tenth of its throughput when its 64 KiB queues were written by the caller.
pub(crate) const FED_WRITE_MAX: usize = 16 * 1024;
/// Messages are queued only while less than this waits to be written; a sender beyond it
/// waits (backpressure: a server that stops reading slows the sender, memory stays bounded).
pub(crate) const WRITE_HIGH_WATER: usize = 256 * 1024;

/// How a message offered to [`Outbox::send`] fared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Encoded, and written or queued for the driver.
    Done,
    /// The session is over: the caller must go through the worker, which reports why.
    Ended,
}

/// The sending side of one WebSocket.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<OutState>,
    /// Wakes the driver: bytes a caller left queued, or a close frame a caller queued.
    /// (A flag and a waker rather than a `Notify`: the driver polls it on every turn.)
    wake: AtomicWaker,
    woken: AtomicBool,
    /// Wakes senders waiting for room, and at the end of the session.
    room: Notify,
}

/// What the lock guards.
pub(crate) struct OutState {
    encoder: Encoder,
    rng: StdRng,
    /// Encoded bytes not yet written.
    pub(crate) wbuf: BytesMut,
    /// The socket's write half, when callers may write it themselves (HTTP/1.1).
    io: Option<WriteHalf<BoxIo>>,
    /// Written but not flushed (a TLS stream buffers).
    unflushed: bool,
    /// When our close frame was queued.
    pub(crate) sent_close: Option<Instant>,
    /// Whether our close frame went out before the peer's arrived.
    pub(crate) closed_by_us: bool,
    /// The peer's close frame arrived.
    pub(crate) peer_closed: bool,
    /// The session is over; senders go through the worker.
    ended: bool,
    /// The payload of the latest ping not answered yet: its pong is encoded only when it can
    /// leave (the queue ahead of it is written, or a message is queued after it), so pings
    /// that arrive meanwhile replace it (RFC 6455 §5.5.3 lets us answer only the latest).
    /// A server flooding pings without reading costs one pong, not one per ping.
    pong: Option<Bytes>,
}

impl std::fmt::Debug for OutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutState")
            .field("queued", &self.wbuf.len())
            .field("direct", &self.io.is_some())
            .field("sent_close", &self.sent_close)
            .field("ended", &self.ended)
            .field("pong", &self.pong.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

impl OutState {
    /// Encodes `message` after what is queued. A close frame starts the closing handshake:
    /// nothing may be sent after it.
    pub(crate) fn encode(&mut self, message: &Message) -> Result<(), StreamError> {
        if self.sent_close.is_some() {
            return Err(StreamError::WsClosed);
        }
        self.flush_pong();
        let rng = &mut self.rng;
        self.encoder
            .encode(message, &mut || rng.random(), &mut self.wbuf)
            .map_err(|e| StreamError::WsSend(moorline_proto::ws::SendError::Encode(e)))?;
        if matches!(message, Message::Close(_)) {
            self.sent_close = Some(Instant::now());
            self.closed_by_us = !self.peer_closed;
        }
        Ok(())
    }

    /// Encodes one of our own control frames (a close or a keepalive ping; always valid,
    /// logged rather than fail if not), after the pong waiting to go out.
    pub(crate) fn encode_control(&mut self, message: &Message) {
        self.flush_pong();
        self.encode_raw(message);
    }

    fn encode_raw(&mut self, message: &Message) {
        let rng = &mut self.rng;
        if let Err(e) = self.encoder.encode(message, &mut || rng.random(), &mut self.wbuf) {
            tracing::error!(error = %e, "could not encode a control frame");
        }
    }

    /// Answers a ping: its pong replaces the one still waiting to be encoded, if any. None
    /// after our close frame.
    pub(crate) fn queue_pong(&mut self, payload: Bytes) {
        if self.sent_close.is_none() {
            self.pong = Some(payload);
        }
    }

    /// Encodes the waiting pong (if any) after what is queued.
    fn flush_pong(&mut self) {
        if let Some(payload) = self.pong.take() {
            self.encode_raw(&Message::Pong(payload));
        }
    }

    /// Bytes queued, counting the waiting pong's frame (a client frame: 2 header bytes and
    /// a 4-byte mask key before a payload of at most 125 bytes).
    fn queued(&self) -> usize {
        self.wbuf.len() + self.pong.as_ref().map_or(0, |p| p.len() + 6)
    }

    /// Writes and flushes what is queued as far as the socket takes it now, registering
    /// `cx` for what it does not take. `Ready(Ok)` when nothing is left; errors are the
    /// socket's (a write of zero bytes is `WriteZero`).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.io.is_none() {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.wbuf.is_empty() {
                // Everything ahead of the waiting pong is written: now it may go.
                if self.pong.is_none() {
                    break;
                }
                self.flush_pong();
            }
            let Some(io) = self.io.as_mut() else { return Poll::Ready(Ok(())) };
            let end = self.wbuf.len().min(WRITE_CHUNK);
            match Pin::new(&mut *io).poll_write(cx, &self.wbuf[..end]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    let _ = self.wbuf.split_to(n);
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.unflushed
            && let Some(io) = self.io.as_mut()
        {
            match Pin::new(io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether the driver has writing (or flushing) to do.
    pub(crate) fn pending(&self) -> bool {
        !self.wbuf.is_empty() || self.unflushed || self.pong.is_some()
    }
}

impl Outbox {
    /// An outbox for a client WebSocket using `encoder`; with `io`, callers write the
    /// socket themselves.
    pub(crate) fn new(encoder: Encoder, io: Option<WriteHalf<BoxIo>>) -> Self {
        Self {
            state: Mutex::new(OutState {
                encoder,
                rng: StdRng::from_rng(&mut rand::rng()),
                wbuf: BytesMut::new(),
                io,
                unflushed: false,
                sent_close: None,
                closed_by_us: false,
                peer_closed: false,
                ended: false,
                pong: None,
            }),
            wake: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// The state, locked (never held across an await).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        lock(&self.state)
    }

    /// A handle's send: encode `message` (waiting while the queue is over the high-water
    /// mark) and, with `now`, write what is queued at once, as far as the socket takes it.
    /// Without `now` (or without a socket to write), the driver is woken to write it if it
    /// did not already have work. `Ended` once the driver has let go of the session.
    pub(crate) async fn send(&self, message: &Message, now: bool) -> Result<Queued, StreamError> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(done) = self.try_send(message, now) {
                return done;
            }
            room.await;
        }
    }

    /// [`Outbox::send`] without waiting: `None` when the queue is over the high-water mark.
    pub(crate) fn try_send(&self, message: &Message, now: bool) -> Option<Result<Queued, StreamError>> {
        let mut s = lock(&self.state);
        if s.ended {
            return Some(Ok(Queued::Ended));
        }
        if s.wbuf.len() >= WRITE_HIGH_WATER {
            return None;
        }
        let idle = !s.pending();
        if let Err(e) = s.encode(message) {
            return Some(Err(e));
        }
        let mut tried = false;
        if now && s.io.is_some() {
            tried = true;
            // A failed write leaves the bytes queued: the driver meets the error again and
            // ends the session with it.
            let _ = s.poll_drain(&mut Context::from_waker(Waker::noop()));
        }
        let left = s.pending() && (idle || tried);
        drop(s);
        if left || matches!(message, Message::Close(_)) {
            self.wake_driver();
        }
        Some(Ok(Queued::Done))
    }

    /// A caller's write of what is queued, when it is a little (at most [`FED_WRITE_MAX`]):
    /// the driver is woken for what the socket does not take. A no-op with nothing queued,
    /// no socket, or more than that queued: the driver, woken when the queue began, writes
    /// it from its own thread while the caller goes on.
    pub(crate) fn write_now(&self) {
        let mut s = lock(&self.state);
        if s.ended || s.io.is_none() || !s.pending() || s.wbuf.len() > FED_WRITE_MAX {
            return;
        }
        // A failed write leaves the bytes queued: the driver meets the error again. (No sender
        // waits for room: so little is queued.)
        let _ = s.poll_drain(&mut Context::from_waker(Waker::noop()));
        let left = s.pending();
        drop(s);
        if left {
            self.wake_driver();
        }
    }

    /// Tells the driver a caller left work for it.
    fn wake_driver(&self) {
        self.woken.store(true, Ordering::Release);
        self.wake.wake();
    }

    /// Ready once a caller left work for the driver (a wake-up before the driver polls is
    /// kept for it).
    pub(crate) fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.wake.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Room below the high-water mark, and when our close frame was queued (if it was):
    /// what the driver checks on each turn, under one lock.
    pub(crate) fn status(&self) -> (bool, Option<Instant>) {
        let s = lock(&self.state);
        (s.wbuf.len() < WRITE_HIGH_WATER, s.sent_close)
    }

    /// The driver's write: drain what is queued, with the driver's waker. `Ready(Ok)` only
    /// when this write brought the queue back under the high-water mark (the driver then
    /// takes commands and reads the socket again); otherwise progress is made inside, and
    /// new bytes come with a [`Outbox::poll_woken`]. `Ready(Err)` is the socket's error.
    pub(crate) fn poll_write_out(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut s = lock(&self.state);
        let before = s.wbuf.len();
        let r = s.poll_drain(cx);
        let after = s.wbuf.len();
        drop(s);
        let room_back = before >= WRITE_HIGH_WATER && after < WRITE_HIGH_WATER;
        if room_back {
            self.room.notify_waiters();
        }
        match r {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ if room_back => Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
        }
    }

    /// Whether there is room for the driver to take more messages from its command channel.
    pub(crate) fn has_room(&self) -> bool {
        lock(&self.state).wbuf.len() < WRITE_HIGH_WATER
    }

    /// The session is over (or closing on the driver's own terms): senders go through the
    /// worker from now on. Returns the write half and what was queued, for a last bounded
    /// flush. Idempotent.
    pub(crate) fn end(&self) -> (Option<WriteHalf<BoxIo>>, BytesMut) {
        let taken = {
            let mut s = lock(&self.state);
            s.ended = true;
            s.flush_pong();
            (s.io.take(), std::mem::take(&mut s.wbuf))
        };
        self.room.notify_waiters();
        taken
    }

    /// Takes up to `max` queued bytes (HTTP/2: what flow control allows).
    pub(crate) fn take_chunk(&self, max: usize) -> bytes::Bytes {
        let mut s = lock(&self.state);
        if s.wbuf.is_empty() {
            // Everything ahead of the waiting pong is sent: now it may go.
            s.flush_pong();
        }
        let before = s.wbuf.len();
        let n = max.min(before);
        let chunk = s.wbuf.split_to(n).freeze();
        drop(s);
        if before >= WRITE_HIGH_WATER && before - n < WRITE_HIGH_WATER {
            self.room.notify_waiters();
        }
        chunk
    }

    /// How many bytes wait to be written (the waiting pong's frame included).
    pub(crate) fn queued(&self) -> usize {
        lock(&self.state).queued()
    }
}
