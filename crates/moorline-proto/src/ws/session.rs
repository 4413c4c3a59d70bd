//! [`Session`]: one WebSocket session's rules, sans-IO: received bytes and the time in;
//! bytes to write, events for the owner and the next deadline out.
//!
//! It owns the [`Decoder`] and the [`Encoder`] and applies every session rule in one place:
//!
//! - **the closing handshake**, as a single [`CloseState`]: `Open`, then `CloseSent { at }`
//!   when our close frame is queued first (the close timer runs from `at`), then
//!   [`Ended::Closed`] once the peer's close frame arrives. A peer that closes first is
//!   answered at once with its own code (RFC 6455 §5.5.1), so that handshake ends in the
//!   same step (`by_us: false`). Frames after the peer's close frame are ignored;
//! - **nothing after our close**: [`send`](Session::send) refuses with
//!   [`SendError::Closed`], `first: true` only on the first refusal (the shell reports once);
//! - **outgoing checks** ([`check_outgoing`]): control payloads of at most 125 bytes, close
//!   codes allowed on the wire, reasons of at most 123 bytes;
//! - **auto-pong**, answering only the latest ping: a pong is encoded only when it can leave
//!   (the bytes ahead of it are taken, or a frame is queued after it), so pings that arrive
//!   meanwhile replace its payload (RFC 6455 §5.5.3). A ping flood costs one pong;
//! - **protocol errors**: our close frame with the error's code (1002, 1007, 1009) is queued
//!   and the session ends with [`Ended::ProtocolError`];
//! - **keepalive**: any inbound byte is life; after an interval of silence a ping is sent;
//!   when nothing at all arrives within the timeout after it, [`Ended::KeepaliveTimeout`].
//!   A read that answers our ping moves the next ping to an interval after that read;
//! - **deadlines** saturate: a `Duration::MAX` timeout means "never" (no deadline), it does
//!   not panic.
//!
//! No sockets, no runtime, no clock: the shell reads into [`read_buf`](Session::read_buf)
//! (or hands bytes to [`receive`](Session::receive)), drains the output
//! ([`pending_output`](Outbound::pending_output) / [`consume_output`](Outbound::consume_output),
//! or [`take_output`](Outbound::take_output)), and calls [`on_timeout`](Session::on_timeout)
//! when [`next_deadline`](Session::next_deadline) passes. Masking keys come from the mask
//! source given at construction (one call per client frame).
//!
//! A shell whose senders encode from their own tasks (under a lock) can
//! [`split`](Session::split) the session: the [`Outbound`] half (encoder, output, close
//! state) goes under the lock, the [`Inbound`] half (decoder, read buffer, keepalive) stays
//! with the reader, which reaches the outbound half through [`OutboundAccess`] only for
//! control frames, never for a data message.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use bytes::BytesMut;
//! use moorline_proto::ws::{
//!     CloseCode, CloseFrame, CloseState, Decoder, Ended, Limits, Message, Role, SendError, SessionConfig,
//!     SessionEvent, Session, write_frame,
//! };
//!
//! let t0 = Instant::now();
//! let config = SessionConfig { close_timeout: Duration::from_secs(5), ..SessionConfig::client() };
//! let mut ws: Session = Session::new(&config, || [1, 2, 3, 4], t0);
//!
//! // The server sends a text message and a ping.
//! let mut wire = BytesMut::new();
//! write_frame(true, false, 0x1, b"hello", None, &mut wire);
//! write_frame(true, false, 0x9, b"are you there", None, &mut wire);
//! ws.receive(&wire, t0);
//! assert_eq!(ws.next_event(), Some(SessionEvent::Message(Message::text("hello"))));
//! assert_eq!(ws.next_event(), None); // the ping was answered, not surfaced
//!
//! // We send, then close; the pong leaves first.
//! ws.send(&Message::text("bye"), || t0).unwrap();
//! ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "done")), || t0).unwrap();
//! assert_eq!(ws.state(), &CloseState::CloseSent { at: t0 });
//! assert_eq!(ws.next_deadline(), Some(t0 + Duration::from_secs(5)));
//! assert_eq!(ws.send(&Message::text("late"), || t0), Err(SendError::Closed { first: true }));
//!
//! // What the server reads: pong, text, close.
//! let mut out = BytesMut::from(&ws.outbound().take_output(usize::MAX)[..]);
//! let mut server = Decoder::new(Role::Server, Limits::default(), None);
//! assert_eq!(server.decode(&mut out).unwrap(), Some(Message::Pong("are you there".into())));
//! assert_eq!(server.decode(&mut out).unwrap(), Some(Message::text("bye")));
//! assert!(matches!(server.decode(&mut out).unwrap(), Some(Message::Close(Some(_)))));
//!
//! // The server answers: the handshake is complete.
//! let mut wire = BytesMut::new();
//! write_frame(true, false, 0x8, &[0x03, 0xe8], None, &mut wire);
//! ws.receive(&wire, t0);
//! let frame = Some(CloseFrame::new(CloseCode::NORMAL, ""));
//! assert_eq!(ws.next_event(), Some(SessionEvent::PeerClosed(frame.clone())));
//! assert_eq!(ws.ended(), Some(&Ended::Closed { by_us: true, frame }));
//! assert_eq!(ws.next_deadline(), None);
//! ```

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::close::CloseFrame;
use super::decode::{Decoder, Limits, Role};
use super::encode::{EncodeOptions, Encoder};
use super::error::SendError;
use super::extension::DeflateParams;
use super::message::Message;
use super::protocol_error::ProtocolError;

/// An emptied output buffer with more room than this is given back (see
/// [`Outbound::consume_output`]): what an idle connection keeps after a burst.
pub const KEEP_OUTPUT_ROOM: usize = 64 * 1024;
/// Keepalive of a WebSocket: ping after `interval` without an inbound byte; give up when
/// nothing arrives within `timeout` after the ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Silence after which a ping is sent (`Duration::MAX`: never).
    pub interval: Duration,
    /// How long after the ping something must arrive (`Duration::MAX`: forever).
    pub timeout: Duration,
}

/// How a [`Session`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our end: a client masks what it sends, a server does not.
    pub role: Role,
    /// Limits on what is received.
    pub limits: Limits,
    /// How messages are written.
    pub encode: EncodeOptions,
    /// permessage-deflate, if it was negotiated.
    pub deflate: Option<DeflateParams>,
    /// Answer pings with pongs (only the latest while a pong waits).
    pub auto_pong: bool,
    /// Return received pings and pongs as events too.
    pub surface_control: bool,
    /// How long the peer has to answer our close frame (`Duration::MAX`: forever).
    pub close_timeout: Duration,
    /// Keepalive pings (`None`: off).
    pub keepalive: Option<KeepaliveConfig>,
}

impl SessionConfig {
    /// A client session: default limits and encoding, no compression, auto-pong on, control
    /// frames not surfaced, a 5 s close timeout, no keepalive.
    pub fn client() -> Self {
        Self {
            role: Role::Client,
            limits: Limits::default(),
            encode: EncodeOptions::default(),
            deflate: None,
            auto_pong: true,
            surface_control: false,
            close_timeout: Duration::from_secs(5),
            keepalive: None,
        }
    }
}

/// Where the closing handshake stands: the one place that says what may still be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseState {
    /// No close frame either way: anything may be sent.
    Open,
    /// Our close frame was queued at `at`, before the peer's arrived: nothing more may be
    /// sent; the peer has the close timeout to answer.
    CloseSent {
        /// When our close frame was queued.
        at: Instant,
    },
    /// The session is over (see [`Ended`]); only the bytes still queued remain to be written.
    Ended(Ended),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Both close frames were exchanged. `by_us`: ours went first; `frame`: the peer's.
    Closed {
        /// Our close frame went out before the peer's arrived.
        by_us: bool,
        /// The peer's close frame (`None`: it carried no code).
        frame: Option<CloseFrame>,
    },
    /// The peer did not answer our close frame within this timeout.
    CloseTimeout(Duration),
    /// Nothing arrived within this timeout after our keepalive ping.
    KeepaliveTimeout(Duration),
    /// The peer broke the protocol (or the shell failed the session): our close frame with
    /// the error's code is queued.
    ProtocolError(ProtocolError),
}

/// Something received, for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A data message (or a ping or pong, with `surface_control`).
    Message(Message),
    /// The peer's close frame. Ours was queued before it, or is queued now in answer: the
    /// session has [`Ended::Closed`].
    PeerClosed(Option<CloseFrame>),
    /// The peer broke the protocol: the session has [`Ended::ProtocolError`] and our close
    /// frame with the matching code is queued. Nothing more is decoded.
    ProtocolError(ProtocolError),
}

/// Checks what a caller may send, before anything is encoded: control payloads of at most
/// 125 bytes, a close code allowed on the wire, a close reason of at most 123 bytes.
///
/// ```
/// use moorline_proto::ws::{CloseCode, CloseFrame, Message, SendError, check_outgoing};
///
/// assert!(check_outgoing(&Message::text("fine")).is_ok());
/// let bad = Message::Close(Some(CloseFrame::new(CloseCode::NO_STATUS, "")));
/// assert_eq!(check_outgoing(&bad), Err(SendError::CloseCode(CloseCode::NO_STATUS)));
/// ```
pub fn check_outgoing(message: &Message) -> Result<(), SendError> {
    match message {
        Message::Ping(p) | Message::Pong(p) if p.len() > 125 => Err(SendError::ControlTooLong(p.len())),
        Message::Close(Some(c)) if !c.code.is_valid_on_wire() => Err(SendError::CloseCode(c.code)),
        Message::Close(Some(c)) if c.reason.len() > 123 => Err(SendError::CloseReasonTooLong(c.reason.len())),
        _ => Ok(()),
    }
}

/// `at + d`, or `None` ("never") when that is beyond what `Instant` holds.
fn after(at: Instant, d: Duration) -> Option<Instant> {
    at.checked_add(d)
}

/// The sending half: the encoder, the bytes to write, the waiting pong and the close state.
///
/// `M` gives one masking key per client frame.
pub struct Outbound<M = fn() -> [u8; 4]> {
    encoder: Encoder,
    mask: M,
    role: Role,
    /// Encoded bytes not yet taken by the shell.
    wbuf: BytesMut,
    /// The payload of the latest ping not answered yet (encoded when it can leave).
    pong: Option<Bytes>,
    state: CloseState,
    close_timeout: Duration,
    /// A send after our close was refused already.
    refused_after_close: bool,
}

impl<M> std::fmt::Debug for Outbound<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("queued", &self.wbuf.len())
            .field("pong", &self.pong.as_ref().map(Bytes::len))
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<M: FnMut() -> [u8; 4]> Outbound<M> {
    /// The sending half of a session configured by `config`, masking with keys from `mask`.
    pub fn new(config: &SessionConfig, mask: M) -> Self {
        Self {
            encoder: Encoder::new(config.role, config.encode, config.deflate),
            mask,
            role: config.role,
            wbuf: BytesMut::new(),
            pong: None,
            state: CloseState::Open,
            close_timeout: config.close_timeout,
            refused_after_close: false,
        }
    }

    /// Queues `message` after what is queued (the waiting pong first). A close frame starts
    /// the closing handshake (its timer from `now()`, called only for a close frame); after
    /// it nothing more may be sent. Nothing of `message` is queued on an error.
    pub fn send(&mut self, message: &Message, now: impl FnOnce() -> Instant) -> Result<(), SendError> {
        if !matches!(self.state, CloseState::Open) {
            let first = !self.refused_after_close;
            self.refused_after_close = true;
            return Err(SendError::Closed { first });
        }
        check_outgoing(message)?;
        self.flush_pong();
        self.encoder.encode(message, &mut self.mask, &mut self.wbuf).map_err(SendError::Encode)?;
        if matches!(message, Message::Close(_)) {
            self.state = CloseState::CloseSent { at: now() };
        }
        Ok(())
    }

    /// Fails the session (a protocol error, found by the decoder or the shell): our close
    /// frame with the error's code is queued unless one was sent already, and the session
    /// ends with [`Ended::ProtocolError`]. No-op once the session has ended.
    pub fn fail(&mut self, error: &ProtocolError) {
        match self.state {
            CloseState::Open => {
                self.encode_control(&Message::Close(Some(CloseFrame::new(error.close_code(), ""))));
            }
            CloseState::CloseSent { .. } => {}
            CloseState::Ended(_) => return,
        }
        self.pong = None;
        self.state = CloseState::Ended(Ended::ProtocolError(error.clone()));
    }

    /// The peer's close frame arrived: answered with its code if ours was not sent, and the
    /// handshake is complete. No-op once the session has ended.
    fn on_peer_close(&mut self, frame: &Option<CloseFrame>) {
        let by_us = match self.state {
            CloseState::Open => {
                // Echo the code (RFC 6455 §5.5.1); an empty close is answered empty.
                let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                self.encode_control(&Message::Close(reply));
                false
            }
            CloseState::CloseSent { .. } => true,
            CloseState::Ended(_) => return,
        };
        self.pong = None;
        self.state = CloseState::Ended(Ended::Closed { by_us, frame: frame.clone() });
    }

    /// A ping arrived: its pong replaces the one waiting (only while open).
    fn queue_pong(&mut self, payload: Bytes) {
        if matches!(self.state, CloseState::Open) {
            self.pong = Some(payload);
        }
    }

    /// Queues a keepalive ping; `false` (nothing queued) once a close frame went either way.
    fn keepalive_ping(&mut self) -> bool {
        if !matches!(self.state, CloseState::Open) {
            return false;
        }
        self.encode_control(&Message::Ping(Bytes::new()));
        true
    }

    /// Ends the session with `ended` unless it has ended already.
    fn end_with(&mut self, ended: Ended) {
        if !matches!(self.state, CloseState::Ended(_)) {
            self.state = CloseState::Ended(ended);
        }
    }

    /// Encodes one of our own control frames (always valid), after the waiting pong.
    fn encode_control(&mut self, message: &Message) {
        self.flush_pong();
        self.encode_raw(message);
    }

    fn encode_raw(&mut self, message: &Message) {
        // Our own control frames pass the encoder's checks; nothing to report otherwise.
        let _ = self.encoder.encode(message, &mut self.mask, &mut self.wbuf);
    }

    /// Encodes the waiting pong (if any) after what is queued.
    fn flush_pong(&mut self) {
        if let Some(payload) = self.pong.take() {
            self.encode_raw(&Message::Pong(payload));
        }
    }

    /// The bytes to write now (the waiting pong is encoded once nothing is ahead of it).
    /// Say how many were written with [`consume_output`](Self::consume_output).
    pub fn pending_output(&mut self) -> &[u8] {
        if self.wbuf.is_empty() {
            self.flush_pong();
        }
        &self.wbuf
    }

    /// Takes up to `max` bytes to write (the waiting pong is encoded once nothing is ahead
    /// of it): for a shell that sends owned chunks (an HTTP/2 stream's DATA).
    pub fn take_output(&mut self, max: usize) -> Bytes {
        if self.wbuf.is_empty() {
            self.flush_pong();
        }
        let n = max.min(self.wbuf.len());
        self.wbuf.split_to(n).freeze()
    }

    /// Everything queued, the waiting pong included: the last write of a session.
    pub fn take_all_output(&mut self) -> BytesMut {
        self.flush_pong();
        std::mem::take(&mut self.wbuf)
    }
}

impl<M> Outbound<M> {
    /// `n` bytes of [`pending_output`](Self::pending_output) were written.
    pub fn consume_output(&mut self, n: usize) {
        // `advance` keeps the buffer a plain vector (a `split_to` would turn it into a shared
        // one, an allocation per write), and its room is reclaimed once it is empty.
        let n = n.min(self.wbuf.len());
        bytes::Buf::advance(&mut self.wbuf, n);
        // Emptied after a burst of large messages: the room goes back rather than stay with
        // the connection for its whole life (below the mark it is kept and reused).
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_OUTPUT_ROOM {
            self.wbuf = BytesMut::new();
        }
    }

    /// Encoded bytes waiting to be written (the waiting pong not counted): what a shell
    /// compares with its high-water mark.
    pub fn buffered(&self) -> usize {
        self.wbuf.len()
    }

    /// Bytes waiting to be written, counting the waiting pong's frame (2 header bytes, a
    /// 4-byte mask key for a client, and its payload).
    pub fn queued(&self) -> usize {
        let mask = if self.role == Role::Client { 4 } else { 0 };
        self.wbuf.len() + self.pong.as_ref().map_or(0, |p| 2 + mask + p.len())
    }

    /// Whether there is something to write (bytes or the waiting pong).
    pub fn wants_write(&self) -> bool {
        !self.wbuf.is_empty() || self.pong.is_some()
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> &CloseState {
        &self.state
    }

    /// How the session ended, once it has.
    pub fn ended(&self) -> Option<&Ended> {
        match &self.state {
            CloseState::Ended(ended) => Some(ended),
            _ => None,
        }
    }

    /// Whether our close frame is queued (or the session ended): nothing more may be sent.
    pub fn sent_close(&self) -> bool {
        !matches!(self.state, CloseState::Open)
    }

    /// When the closing handshake times out, while our close frame waits for an answer
    /// (`None` otherwise, or when the close timeout is `Duration::MAX`).
    pub fn close_deadline(&self) -> Option<Instant> {
        match self.state {
            CloseState::CloseSent { at } => after(at, self.close_timeout),
            _ => None,
        }
    }

    /// The close timeout configured.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// The close timer at `now`: ends the session with [`Ended::CloseTimeout`] when our close
    /// frame went unanswered for the close timeout.
    fn check_close_timer(&mut self, now: Instant) -> Option<Ended> {
        let deadline = self.close_deadline()?;
        if now < deadline {
            return None;
        }
        let ended = Ended::CloseTimeout(self.close_timeout);
        self.state = CloseState::Ended(ended.clone());
        Some(ended)
    }
}

/// How the [`Inbound`] half reaches the [`Outbound`] half: directly, or through the shell's
/// lock. Called only for control frames, keepalive pings and timeouts, never for a data
/// message.
pub trait OutboundAccess {
    /// The mask source of the outbound half.
    type Mask: FnMut() -> [u8; 4];
    /// Runs `f` on the outbound half (under the shell's lock, if it has one).
    fn with_outbound<R>(&mut self, f: impl FnOnce(&mut Outbound<Self::Mask>) -> R) -> R;
}

impl<M: FnMut() -> [u8; 4]> OutboundAccess for Outbound<M> {
    type Mask = M;
    fn with_outbound<R>(&mut self, f: impl FnOnce(&mut Outbound<M>) -> R) -> R {
        f(self)
    }
}

/// The receiving half: the decoder, the read buffer and the keepalive timer.
#[derive(Debug)]
pub struct Inbound {
    decoder: Decoder,
    rbuf: BytesMut,
    auto_pong: bool,
    surface_control: bool,
    /// A close frame or an error was decoded: nothing more is.
    input_done: bool,
    keepalive: Option<KeepaliveConfig>,
    /// When something was last received.
    last_rx: Instant,
    /// When our keepalive ping was queued, while nothing has come since.
    ping_sent: Option<Instant>,
    /// When the keepalive timer fires next (`None`: off, resting, or never).
    keepalive_at: Option<Instant>,
}

impl Inbound {
    /// The receiving half of a session configured by `config`, starting at `now`.
    pub fn new(config: &SessionConfig, now: Instant) -> Self {
        Self {
            decoder: Decoder::new(config.role, config.limits, config.deflate),
            rbuf: BytesMut::new(),
            auto_pong: config.auto_pong,
            surface_control: config.surface_control,
            input_done: false,
            keepalive: config.keepalive,
            last_rx: now,
            ping_sent: None,
            keepalive_at: config.keepalive.and_then(|k| after(now, k.interval)),
        }
    }

    /// The read buffer: the shell reads into it (then calls [`on_read`](Self::on_read)).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Something arrived: the peer is alive. `now()` is called only with keepalive on. When
    /// this answers our keepalive ping, the next ping is due an interval after it
    /// ([`keepalive_deadline`](Self::keepalive_deadline) moves); otherwise the deadline
    /// stays where it is (the timer checks the last read when it fires), so a shell need
    /// not reset its timer on every read.
    pub fn on_read(&mut self, now: impl FnOnce() -> Instant) {
        let Some(k) = self.keepalive else { return };
        self.last_rx = now();
        if self.ping_sent.take().is_some() {
            self.keepalive_at = after(self.last_rx, k.interval);
        }
    }

    /// Appends received `bytes` (for a shell that gets owned chunks) and counts it as life.
    pub fn receive(&mut self, bytes: &[u8], now: impl FnOnce() -> Instant) {
        self.rbuf.extend_from_slice(bytes);
        self.on_read(now);
    }

    /// The next thing for the owner decoded from the read buffer, `None` when more bytes are
    /// needed (or after the peer's close frame or an error: nothing more is decoded).
    ///
    /// Pings are answered through `out` (the latest only, while a pong waits); the peer's
    /// close frame is answered with ours unless ours went first; a protocol error queues our
    /// close frame with its code.
    pub fn next_event<A: OutboundAccess>(&mut self, out: &mut A) -> Option<SessionEvent> {
        if self.input_done {
            return None;
        }
        loop {
            let message = match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(message)) => message,
                Ok(None) => return None,
                Err(e) => {
                    self.input_done = true;
                    out.with_outbound(|o| o.fail(&e));
                    return Some(SessionEvent::ProtocolError(e));
                }
            };
            match message {
                Message::Ping(payload) => {
                    if self.auto_pong {
                        let pong = payload.clone();
                        out.with_outbound(|o| o.queue_pong(pong));
                    }
                    if self.surface_control {
                        return Some(SessionEvent::Message(Message::Ping(payload)));
                    }
                }
                Message::Pong(payload) => {
                    if self.surface_control {
                        return Some(SessionEvent::Message(Message::Pong(payload)));
                    }
                }
                Message::Close(frame) => {
                    // Nothing may follow a close frame: the rest is ignored.
                    self.input_done = true;
                    self.rbuf.clear();
                    out.with_outbound(|o| o.on_peer_close(&frame));
                    return Some(SessionEvent::PeerClosed(frame));
                }
                data => return Some(SessionEvent::Message(data)),
            }
        }
    }

    /// When the keepalive timer fires next (`None`: keepalive off or resting, or never).
    /// Once the session has ended the shell stops watching it
    /// ([`Session::next_deadline`] leaves it out).
    pub fn keepalive_deadline(&self) -> Option<Instant> {
        self.keepalive_at
    }

    /// The keepalive timer at `now`: after a whole interval of silence a ping is queued;
    /// when nothing came within the timeout after it, the session ends with
    /// [`Ended::KeepaliveTimeout`]. After a close frame either way, the timer rests (the
    /// closing handshake has its own timeout).
    fn keepalive_tick<A: OutboundAccess>(&mut self, now: Instant, out: &mut A) -> Option<Ended> {
        let k = self.keepalive?;
        if self.keepalive_at.is_none_or(|at| now < at) {
            return None;
        }
        if let Some(sent) = self.ping_sent {
            if self.last_rx < sent {
                let give_up = after(sent, k.timeout);
                if give_up.is_none_or(|g| now < g) {
                    self.keepalive_at = give_up;
                    return None;
                }
                self.keepalive_at = None;
                let ended = Ended::KeepaliveTimeout(k.timeout);
                out.with_outbound(|o| o.end_with(ended.clone()));
                return Some(ended);
            }
            self.ping_sent = None;
        }
        let due = after(self.last_rx, k.interval);
        if due.is_none_or(|d| now < d) {
            self.keepalive_at = due;
            return None;
        }
        if self.input_done || !out.with_outbound(Outbound::keepalive_ping) {
            self.keepalive_at = None;
            return None;
        }
        self.ping_sent = Some(now);
        self.keepalive_at = after(now, k.timeout);
        None
    }

    /// The timers at `now`: the close timer, then the keepalive. Returns how the session
    /// ended if it ended now (`None` too once it had ended before).
    pub fn on_timeout<A: OutboundAccess>(&mut self, now: Instant, out: &mut A) -> Option<Ended> {
        let (ended, over) = out.with_outbound(|o| (o.check_close_timer(now), o.ended().is_some()));
        if ended.is_some() || over {
            return ended;
        }
        self.keepalive_tick(now, out)
    }
}

/// One WebSocket session: [`Inbound`] and [`Outbound`] together (see the module doc).
pub struct Session<M = fn() -> [u8; 4]> {
    inbound: Inbound,
    outbound: Outbound<M>,
}

impl<M> std::fmt::Debug for Session<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("inbound", &self.inbound).field("outbound", &self.outbound).finish()
    }
}

impl<M: FnMut() -> [u8; 4]> Session<M> {
    /// A session configured by `config`, masking with keys from `mask`, starting at `now`
    /// (the keepalive counts silence from it).
    pub fn new(config: &SessionConfig, mask: M, now: Instant) -> Self {
        Self { inbound: Inbound::new(config, now), outbound: Outbound::new(config, mask) }
    }

    /// The two halves, for a shell whose senders encode under a lock of their own.
    pub fn split(self) -> (Inbound, Outbound<M>) {
        (self.inbound, self.outbound)
    }

    /// The receiving half.
    pub fn inbound(&mut self) -> &mut Inbound {
        &mut self.inbound
    }

    /// The sending half (to drain the output).
    pub fn outbound(&mut self) -> &mut Outbound<M> {
        &mut self.outbound
    }

    /// The read buffer (see [`Inbound::read_buf`]).
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.inbound.read_buf()
    }

    /// Something arrived (see [`Inbound::on_read`]).
    pub fn on_read(&mut self, now: impl FnOnce() -> Instant) {
        self.inbound.on_read(now);
    }

    /// Appends received bytes at `now` (see [`Inbound::receive`]).
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        self.inbound.receive(bytes, || now);
    }

    /// The next thing for the owner (see [`Inbound::next_event`]).
    pub fn next_event(&mut self) -> Option<SessionEvent> {
        self.inbound.next_event(&mut self.outbound)
    }

    /// Queues `message` (see [`Outbound::send`]).
    pub fn send(&mut self, message: &Message, now: impl FnOnce() -> Instant) -> Result<(), SendError> {
        self.outbound.send(message, now)
    }

    /// Starts the closing handshake with `frame` (`None`: a close without a code).
    pub fn close(&mut self, frame: Option<CloseFrame>, now: impl FnOnce() -> Instant) -> Result<(), SendError> {
        self.outbound.send(&Message::Close(frame), now)
    }

    /// Fails the session (see [`Outbound::fail`]).
    pub fn fail(&mut self, error: &ProtocolError) {
        self.outbound.fail(error);
    }

    /// The timers at `now` (see [`Inbound::on_timeout`]).
    pub fn on_timeout(&mut self, now: Instant) -> Option<Ended> {
        self.inbound.on_timeout(now, &mut self.outbound)
    }

    /// The earliest deadline: the close timer or the keepalive (`None`: nothing to wait for).
    /// Call [`on_timeout`](Self::on_timeout) when it passes.
    pub fn next_deadline(&self) -> Option<Instant> {
        let close = self.outbound.close_deadline();
        let keepalive = if self.outbound.ended().is_some() { None } else { self.inbound.keepalive_deadline() };
        match (close, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> &CloseState {
        self.outbound.state()
    }

    /// How the session ended, once it has.
    pub fn ended(&self) -> Option<&Ended> {
        self.outbound.ended()
    }
}
