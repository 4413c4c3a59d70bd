//! [`Outbox`]: the sending side of one WebSocket, shared by the handles and the driver.
//!
//! It holds the [`Outbound`] half of the WebSocket's sans-IO [`Session`] (encoder, encoded
//! bytes, the waiting pong, the close state: every outgoing rule lives there) and the
//! [`Sink`] the bytes go to: the socket's write half over HTTP/1.1, the stream's h2
//! [`SendStream`] over HTTP/2. The driver keeps the [`Inbound`] half and reaches this one
//! through [`Access`] (under the same lock) for the frames it queues itself (pongs, close
//! replies, keepalive pings), so every frame leaves in the order it was queued.
//!
//! A handle's `ws_send` encodes its message here itself, with no trip through the worker's
//! command channel, and hands the bytes on at once as far as the sink takes them now (a
//! round trip costs no task switch on the way out): over HTTP/1.1 a write to the socket,
//! over HTTP/2 a DATA frame within the stream's flow-control capacity (h2's connection task
//! writes it). What the sink does not take stays queued, and the driver is woken to send it.
//!
//! The sink is only ever polled with the lock held, and a caller polls it with a no-op
//! waker: whenever such a poll leaves bytes (or a flush) behind, the caller wakes the driver,
//! whose next poll registers its own waker again. So the driver can never be left waiting
//! for a readiness (or flow-control capacity) nobody will report.

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use h2::{Reason, SendStream};
use moorline_proto::ws::{
    EncodeOptions, Ended, Inbound, KeepaliveConfig, Message, Negotiated, Outbound, OutboundAccess, Role, SendError,
    Session, SessionConfig,
};
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::sync::Notify;

use super::options::WsOptions;
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
/// The same ceiling over HTTP/1.1 and HTTP/2: what a WebSocket has queued is at most this
/// plus one message (the one that crossed it) plus the driver's own control frames.
pub(crate) const WRITE_HIGH_WATER: usize = 256 * 1024;

/// Masking keys for our frames, one per frame: the thread's CSPRNG.
pub(crate) type Mask = fn() -> [u8; 4];

fn mask() -> [u8; 4] {
    rand::random()
}

/// The clock the sessions run on: tokio's (so a paused test clock holds for them too).
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The tokio instant of a session deadline; `None` (never) is an instant the timer never
/// reaches (about 30 years ahead).
pub(crate) fn tokio_instant(at: Option<std::time::Instant>) -> tokio::time::Instant {
    match at {
        Some(at) => tokio::time::Instant::from_std(at),
        None => crate::conn::deadline(std::time::Duration::MAX),
    }
}

/// Whether a keepalive timer set for `armed` must move to `next` after a read: only when
/// `next` comes earlier (or the timer is not set). The keepalive deadline only moves later as
/// reads come in, so the timer stays where it is: it fires early, the session finds nothing
/// due, and the driver sets it to the real deadline then: one timer update per interval
/// rather than one per read (the update took the timer wheel's lock every read).
pub(crate) fn moves_timer(armed: Option<std::time::Instant>, next: Option<std::time::Instant>) -> bool {
    match (armed, next) {
        (Some(armed), Some(next)) => next < armed,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// The session rules for a WebSocket that agreed `negotiated` with `options`.
pub(crate) fn session_config(negotiated: &Negotiated, options: &WsOptions) -> SessionConfig {
    SessionConfig {
        role: Role::Client,
        limits: options.limits,
        encode: EncodeOptions {
            max_frame_payload: options.max_frame_payload,
            compress_min_size: options.compress_min_size,
            ..EncodeOptions::default()
        },
        deflate: negotiated.deflate,
        auto_pong: options.auto_pong,
        surface_control: options.surface_control,
        close_timeout: options.close_timeout,
        keepalive: options.keepalive.map(|k| KeepaliveConfig { interval: k.interval, timeout: k.timeout }),
    }
}

/// A WebSocket session starting now: the [`Inbound`] half for the driver, the [`Outbox`]
/// (with the [`Outbound`] half) for the driver and the handles, sending into `sink`.
pub(crate) fn start(negotiated: &Negotiated, options: &WsOptions, sink: Sink) -> (Inbound, Arc<Outbox>) {
    let (inbound, outbound) = Session::new(&session_config(negotiated, options), mask as Mask, now()).split();
    (inbound, Arc::new(Outbox::new(outbound, sink)))
}

/// Where the encoded bytes go.
pub(crate) enum Sink {
    /// The socket's write half (HTTP/1.1: the connection is the WebSocket).
    Socket(WriteHalf<BoxIo>),
    /// The stream's sending half (HTTP/2, RFC 8441): DATA frames within flow control.
    H2(SendStream<Bytes>),
}

/// Why the sink refused bytes.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The socket's error (a write of zero bytes is `WriteZero`).
    Io(std::io::Error),
    /// h2's error for the stream (or the connection under it).
    H2(h2::Error),
}

/// What a message refused by the session's outgoing rules becomes for the caller.
pub(crate) fn refused(error: SendError) -> StreamError {
    match error {
        SendError::Closed { .. } => StreamError::WsClosed,
        other => StreamError::WsSend(other),
    }
}

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
struct OutState {
    /// The session's sending half: encoder, encoded bytes, the waiting pong, close state.
    ws: Outbound<Mask>,
    /// Where the bytes go, until the session ends.
    sink: Option<Sink>,
    /// Written but not flushed (a TLS stream buffers).
    unflushed: bool,
    /// The session is over; senders go through the worker.
    ended: bool,
}

impl std::fmt::Debug for OutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match self.sink {
            Some(Sink::Socket(_)) => "socket",
            Some(Sink::H2(_)) => "h2",
            None => "none",
        };
        f.debug_struct("OutState")
            .field("ws", &self.ws)
            .field("sink", &sink)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl OutState {
    /// Hands what is queued to the sink as far as it takes it now, registering `cx` for what
    /// it does not take. `Ready(Ok)` when nothing is left (or there is no sink).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        let OutState { ws, sink, unflushed, .. } = self;
        match sink {
            None => Poll::Ready(Ok(())),
            Some(Sink::Socket(io)) => drain_socket(ws, io, unflushed, cx).map_err(WriteError::Io),
            Some(Sink::H2(send)) => drain_h2(ws, send, cx).map_err(WriteError::H2),
        }
    }

    /// Whether the driver has writing (or flushing) to do.
    fn pending(&self) -> bool {
        self.ws.wants_write() || self.unflushed
    }
}

/// Writes and flushes what is queued as far as the socket takes it now; a write syscall
/// takes at most [`WRITE_CHUNK`].
fn drain_socket(
    ws: &mut Outbound<Mask>,
    io: &mut WriteHalf<BoxIo>,
    unflushed: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        // Everything ahead of the waiting pong is written: then it may go.
        let out = ws.pending_output();
        if out.is_empty() {
            break;
        }
        let end = out.len().min(WRITE_CHUNK);
        match Pin::new(&mut *io).poll_write(cx, &out[..end]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                ws.consume_output(n);
                *unflushed = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    if *unflushed {
        match Pin::new(io).poll_flush(cx) {
            Poll::Ready(Ok(())) => *unflushed = false,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Poll::Ready(Ok(()))
}

/// Sends what is queued as DATA frames, as far as the stream's flow-control capacity goes:
/// h2 buffers no more than it was granted, so what waits for capacity waits here, counted
/// against the high-water mark.
fn drain_h2(
    ws: &mut Outbound<Mask>,
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), h2::Error>> {
    loop {
        let queued = ws.queued();
        if queued == 0 {
            return Poll::Ready(Ok(()));
        }
        // Capacity for what is queued on top of what h2 holds already.
        send.reserve_capacity(queued);
        let capacity = send.capacity();
        if capacity > 0 {
            send.send_data(ws.take_output(capacity), false)?;
            continue;
        }
        match send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Err(h2::Error::from(Reason::STREAM_CLOSED))),
            Poll::Pending => return Poll::Pending,
        }
    }
}

impl Outbox {
    /// An outbox over `ws`, the session's sending half, sending into `sink`.
    pub(crate) fn new(ws: Outbound<Mask>, sink: Sink) -> Self {
        Self {
            state: Mutex::new(OutState { ws, sink: Some(sink), unflushed: false, ended: false }),
            wake: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// A handle's send: encode `message` (waiting while the queue is over the high-water
    /// mark) and, with `now`, hand what is queued to the sink at once, as far as it takes
    /// it. Without `now`, the driver is woken to send it if it did not already have work.
    /// `Ended` once the driver has let go of the session.
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
        if s.ws.buffered() >= WRITE_HIGH_WATER {
            return None;
        }
        let idle = !s.pending();
        if let Err(e) = s.ws.send(message, self::now) {
            return Some(Err(refused(e)));
        }
        if now {
            // A failed write leaves the bytes queued: the driver meets the error again and
            // ends the session with it.
            let _ = s.poll_drain(&mut Context::from_waker(Waker::noop()));
        }
        let left = s.pending() && (idle || now);
        drop(s);
        if left || matches!(message, Message::Close(_)) {
            self.wake_driver();
        }
        Some(Ok(Queued::Done))
    }

    /// The driver's own send of a message that came through the worker (it checks the
    /// high-water mark itself). Its next turn sends the bytes.
    pub(crate) fn send_from_driver(&self, message: &Message) -> Result<(), SendError> {
        lock(&self.state).ws.send(message, now)
    }

    /// A caller's write of what is queued, when it is a little (at most [`FED_WRITE_MAX`]):
    /// the driver is woken for what the sink does not take. A no-op with nothing queued,
    /// no sink, or more than that queued: the driver, woken when the queue began, writes
    /// it from its own thread while the caller goes on.
    pub(crate) fn write_now(&self) {
        let mut s = lock(&self.state);
        if s.ended || s.sink.is_none() || !s.pending() || s.ws.buffered() > FED_WRITE_MAX {
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

    /// What the driver checks on each turn, under one lock.
    pub(crate) fn status(&self) -> Status {
        let s = lock(&self.state);
        Status {
            room: s.ws.buffered() < WRITE_HIGH_WATER,
            close_deadline: s.ws.close_deadline().map(tokio::time::Instant::from_std),
            ended: s.ws.ended().is_some(),
        }
    }

    /// How the session ended, once it has.
    pub(crate) fn ended(&self) -> Option<Ended> {
        lock(&self.state).ws.ended().cloned()
    }

    /// Whether our close frame is queued (or the session ended): nothing more may be sent.
    pub(crate) fn sent_close(&self) -> bool {
        lock(&self.state).ws.sent_close()
    }

    /// The driver's write: drain what is queued, with the driver's waker. `Ready(Ok)` only
    /// when this write brought the queue back under the high-water mark (the driver then
    /// takes commands and reads again); otherwise progress is made inside, and new bytes
    /// come with a [`Outbox::poll_woken`]. `Ready(Err)` is the sink's error.
    pub(crate) fn poll_write_out(&self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        let mut s = lock(&self.state);
        let before = s.ws.buffered();
        let r = s.poll_drain(cx);
        let after = s.ws.buffered();
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
        lock(&self.state).ws.buffered() < WRITE_HIGH_WATER
    }

    /// The session is over (or closing on the driver's own terms): senders go through the
    /// worker from now on. Returns the sink and what was queued (the waiting pong
    /// included), for a last bounded flush. Idempotent (later calls get nothing).
    pub(crate) fn end(&self) -> (Option<Sink>, BytesMut) {
        let taken = {
            let mut s = lock(&self.state);
            s.ended = true;
            let rest = s.ws.take_all_output();
            (s.sink.take(), rest)
        };
        self.room.notify_waiters();
        taken
    }
}

/// What the driver checks on each turn (see [`Outbox::status`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    /// Below the high-water mark: the driver takes commands and reads.
    pub(crate) room: bool,
    /// When the closing handshake times out, while our close frame waits for an answer.
    pub(crate) close_deadline: Option<tokio::time::Instant>,
    /// The session has ended (how: [`Outbox::ended`]).
    pub(crate) ended: bool,
}

/// How the driver's [`Inbound`] half reaches the outbox's [`Outbound`] half: under the lock,
/// only for control frames, keepalive pings and timeouts (never for a data message).
pub(crate) struct Access<'a>(pub(crate) &'a Outbox);

impl OutboundAccess for Access<'_> {
    type Mask = Mask;
    fn with_outbound<R>(&mut self, f: impl FnOnce(&mut Outbound<Mask>) -> R) -> R {
        f(&mut lock(&self.0.state).ws)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::moves_timer;

    #[test]
    fn a_keepalive_timer_moves_only_earlier() {
        let t0 = std::time::Instant::now();
        let later = t0 + std::time::Duration::from_secs(1);
        assert!(!moves_timer(Some(t0), Some(later)), "pushed back by a read: stays, fires early");
        assert!(moves_timer(Some(later), Some(t0)));
        assert!(moves_timer(None, Some(t0)), "not set: set");
        assert!(!moves_timer(Some(t0), None), "resting: left to fire and be set again");
        assert!(!moves_timer(Some(t0), Some(t0)));
    }

    use std::time::Duration;

    use bytes::BytesMut;
    use moorline_proto::ws::{CloseCode, CloseFrame, Decoder, Limits, Message, Negotiated, Role};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::{Outbox, Queued, Sink, WRITE_HIGH_WATER, start};
    use crate::dial::BoxIo;
    use crate::error::StreamError;
    use crate::ws::WsOptions;

    /// An outbox writing to a loopback socket, and the server's end of it.
    async fn socket_outbox() -> (std::sync::Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let io: BoxIo = Box::new(client);
        let (_, wr) = tokio::io::split(io);
        let negotiated = Negotiated { protocol: None, deflate: None };
        let (_inbound, out) = start(&negotiated, &WsOptions::default(), Sink::Socket(wr));
        (out, server)
    }

    /// Reads and decodes (as the server) until `n` messages came.
    async fn read_messages(server: &mut TcpStream, n: usize) -> Vec<Message> {
        let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
        let (mut wire, mut got) = (BytesMut::new(), Vec::new());
        while got.len() < n {
            while let Some(m) = decoder.decode(&mut wire).unwrap() {
                got.push(m);
            }
            if got.len() < n {
                assert!(server.read_buf(&mut wire).await.unwrap() > 0, "closed early");
            }
        }
        got
    }

    #[tokio::test]
    async fn the_caller_writes_its_message_itself() {
        let (out, mut server) = socket_outbox().await;
        // No driver runs: what arrives was written by the sends themselves.
        assert!(matches!(out.try_send(&Message::text("one"), true), Some(Ok(Queued::Done))));
        assert!(matches!(out.try_send(&Message::text("two"), true), Some(Ok(Queued::Done))));
        let got = tokio::time::timeout(Duration::from_secs(5), read_messages(&mut server, 2)).await.unwrap();
        assert_eq!(got, [Message::text("one"), Message::text("two")]);
    }

    #[tokio::test]
    async fn past_the_ceiling_senders_wait_and_the_queue_stays_bounded() {
        let (out, _server) = socket_outbox().await;
        let big = Message::binary(vec![7u8; 64 << 10]);
        // The server reads nothing: the kernel's buffers fill, then the outbox.
        let mut sent = 0usize;
        while let Some(r) = out.try_send(&big, true) {
            assert!(matches!(r, Ok(Queued::Done)));
            sent += 1;
            assert!(sent < 10_000, "the outbox never filled");
        }
        let queued = super::lock(&out.state).ws.buffered();
        assert!(queued >= WRITE_HIGH_WATER, "{queued}");
        assert!(queued < WRITE_HIGH_WATER + (64 << 10) + 14, "{queued}");
        // A waiting sender is let go when the session ends: it then goes through the worker.
        let waiting = {
            let out = out.clone();
            let big = big.clone();
            tokio::spawn(async move { out.send(&big, true).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        let (sink, rest) = out.end();
        assert!(matches!(sink, Some(Sink::Socket(_))));
        assert_eq!(rest.len(), queued);
        assert!(matches!(waiting.await.unwrap(), Ok(Queued::Ended)));
        assert!(matches!(out.try_send(&Message::text("late"), true), Some(Ok(Queued::Ended))));
    }

    #[tokio::test]
    async fn after_our_close_sends_are_refused_and_bad_messages_never_queue() {
        let (out, mut server) = socket_outbox().await;
        let too_long = Message::Ping(vec![0u8; 126].into());
        assert!(matches!(
            out.try_send(&too_long, true),
            Some(Err(StreamError::WsSend(moorline_proto::ws::SendError::ControlTooLong(126))))
        ));
        let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
        assert!(matches!(out.try_send(&close, true), Some(Ok(Queued::Done))));
        assert!(out.sent_close());
        assert!(out.status().close_deadline.is_some());
        assert!(matches!(out.try_send(&Message::text("late"), true), Some(Err(StreamError::WsClosed))));
        let got = tokio::time::timeout(Duration::from_secs(5), read_messages(&mut server, 1)).await.unwrap();
        assert_eq!(got, [close]);
    }
}
