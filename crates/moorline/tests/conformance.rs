//! The Autobahn|Testsuite client cases, in-tree.
//!
//! The Autobahn fuzzing server is Python-2-only, so this file plays its part: a raw
//! WebSocket server on a real socket (crafted, unmasked frames written in the chopping each
//! case asks for; the client's masked frames read back and checked) against the real client
//! API, with the test body acting as Autobahn's echo client (every text or binary message
//! received is sent back). Case ids follow Autobahn's numbering (`1.1.1` ... `13.7.18`);
//! cases that are not Autobahn's carry a suffix saying what they add (`6.2.2/split@7`,
//! `7.7.x-1012`, `9.limit.frame` ...).
//!
//! For every case it checks what Autobahn checks, on both sides:
//! - on the wire: the echoes and pongs the client sends, in order; then its close frame with
//!   the right code (echoed after the server's close, or 1002/1007/1009 when it fails the
//!   connection); nothing after the close frame; and the TCP connection then closed (by the
//!   client after a failure; after a clean close, by the server first: section 7 checks that
//!   the client waits for it, RFC 6455 §7.1.1);
//! - at the owner: the messages delivered, the typed error (`StreamError::WsProtocol` with
//!   the close code) and the `Down` reason (`WsProtocol` or `WsClosed`).
//!
//! Each section runs its cases one after the other (one connection per case, as Autobahn
//! does), collects the failures and reports them all with their case ids. Every wait is
//! bounded, and so is every section.
//!
//! Differences from Autobahn, to keep the debug run short or because of what moorline is:
//! - 9.7/9.8 make 200 round trips (Autobahn: 1000); 12.x/13.x send 2 to 10 messages per case
//!   (Autobahn: 1000) of synthetic data of the same kinds as Autobahn's files (JSON, a bitmap,
//!   German prose as binary, HTML, a PDF-like mix); pauses are 100 ms (Autobahn: 1 s);
//! - 13.3/13.5/13.7 use 9-bit windows where Autobahn uses 8 (zlib cannot deflate with 8;
//!   `13.x-window8` checks what happens then), and 13.7's three offers are one (moorline makes
//!   one offer; the server takes the first, as in 13.5);
//! - 7.13.x (informational in Autobahn) expect 1002, as moorline-proto does for codes outside
//!   1000-1003, 1007-1014 and 3000-4999; 9.9.1 (commented out in Autobahn) is not here.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use moorline::ws::{CloseCode, CloseFrame, DeflateConfig, DeflateParams, Message, ProtocolError, Utf8Bytes, WsOptions};
use moorline::{ConnectOptions, Connection, DownReason, Event, Events, RetryPolicy, StreamError, StreamRef};
use moorline_proto::ws::{Decoder, EncodeOptions, Encoder, Limits, Role, accept_key, apply_mask, write_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bound of any single wait (a reply, the close frame, the end of the TCP connection).
const WAIT: Duration = Duration::from_secs(10);
/// Bound of a whole section.
const SECTION_BOUND: Duration = Duration::from_secs(240);
/// Autobahn waits a second where a pause is part of the case; a short one shows the same.
const PAUSE: Duration = Duration::from_millis(100);

const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

// ---------------------------------------------------------------------------------------
// Frames the server writes, and messages the client is expected to send or deliver.

/// One unmasked server frame; `rsv` is the three reserved bits (RSV1 = 4, RSV2 = 2, RSV3 = 1).
fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(fin, false, opcode, payload, None, &mut out);
    out[0] |= (rsv & 0x7) << 4;
    out.to_vec()
}

/// An unfragmented frame.
fn whole(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, payload)
}

/// A close frame with a code and a reason.
fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    whole(CLOSE, &payload)
}

/// A message split into frames of `size` payload bytes (one empty frame for an empty message).
fn fragmented(opcode: u8, payload: &[u8], size: usize) -> Vec<Vec<u8>> {
    if payload.is_empty() {
        return vec![whole(opcode, payload)];
    }
    let count = payload.len().div_ceil(size);
    payload
        .chunks(size)
        .enumerate()
        .map(|(i, chunk)| frame(i + 1 == count, 0, if i == 0 { opcode } else { CONT }, chunk))
        .collect()
}

fn text(payload: &[u8]) -> Message {
    Message::Text(Utf8Bytes::try_from(Bytes::copy_from_slice(payload)).expect("a text case with invalid UTF-8"))
}

fn binary(payload: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(payload))
}

fn pong(payload: &[u8]) -> Message {
    Message::Pong(Bytes::copy_from_slice(payload))
}

/// `len` bytes of `pattern` repeated.
fn repeat(pattern: &[u8], len: usize) -> Vec<u8> {
    pattern.iter().copied().cycle().take(len).collect()
}

/// A short description of a message (payloads may be megabytes).
fn describe(m: &Message) -> String {
    let (kind, bytes): (&str, &[u8]) = match m {
        Message::Text(t) => ("text", t.as_bytes()),
        Message::Binary(b) => ("binary", b),
        Message::Ping(b) => ("ping", b),
        Message::Pong(b) => ("pong", b),
        Message::Close(None) => return "close (no code)".into(),
        Message::Close(Some(c)) => return format!("close {} {:?}", c.code, c.reason.as_str()),
    };
    let head = &bytes[..bytes.len().min(24)];
    let more = if bytes.len() > head.len() { "..." } else { "" };
    format!("{kind} of {} bytes \"{}{more}\"", bytes.len(), head.escape_ascii())
}

fn describe_all(ms: &[Message]) -> String {
    let all: Vec<String> = ms.iter().take(4).map(describe).collect();
    let more = if ms.len() > 4 { format!(", ... ({} in all)", ms.len()) } else { String::new() };
    format!("[{}{more}]", all.join(", "))
}

// ---------------------------------------------------------------------------------------
// Cases.

/// What the server does, in order.
enum Act {
    /// Write these bytes in one go.
    Send(Vec<u8>),
    /// Write these bytes in chops of this size (separate writes, a short pause between
    /// small ones so that they arrive separately).
    Chop(Vec<u8>, usize),
    /// Wait.
    Pause(Duration),
    /// Wait for the client to send this message (an echo or a pong), and check its frames.
    Expect(Message, Frames),
    /// The client must fail the connection with this close code now, before anything more
    /// is sent (Autobahn's "fail fast").
    FailsFast(u16),
}

/// What the frames of an expected message must look like.
#[derive(Clone, Copy)]
enum Frames {
    Any,
    /// The first frame has RSV1 set (permessage-deflate) or not.
    Compressed(bool),
    /// Fragmented into frames of exactly this payload size (the last one shorter),
    /// continuation opcodes after the first, FIN on the last only.
    SplitInto(usize),
    /// Both: compressed, then fragmented (RSV1 on the first frame only).
    CompressedInto(usize),
}

/// How the case ends.
enum End {
    /// After the script and the expected replies, the server closes with 1000 (Autobahn's
    /// default when the case is passed); the client must answer 1000 and close cleanly.
    ServerCloses,
    /// The script contains the server's close frame (decoded: what the owner must get); the
    /// client must answer with the same code (an empty close with an empty one).
    Echoes(Option<CloseFrame>),
    /// The client must fail the connection with this close code.
    Fails(u16),
}

/// permessage-deflate for a case: the client's offer, the server's answer, what both agree.
#[derive(Clone)]
struct Deflate {
    config: DeflateConfig,
    answer: String,
    agreed: DeflateParams,
}

struct Case {
    id: String,
    options: WsOptions,
    deflate: Option<Deflate>,
    acts: Vec<Act>,
    /// What the client sends (echoes, pongs), in order, after the script and before its close
    /// frame.
    replies: Vec<Message>,
    /// The client may stop short of the replies (Autobahn's NON-STRICT or informational:
    /// a close or a failure may overtake an echo). The owner must still get every message.
    replies_may_stop: bool,
    /// The client may leave out replies (pongs to pings that arrived before its pong left:
    /// it answers only the latest, RFC 6455 §5.5.3); those it sends come in order, and the
    /// last one always comes.
    replies_may_coalesce: bool,
    end: End,
    /// Check that after a clean close the client waits for the server to close TCP first.
    check_close_order: bool,
}

#[derive(Clone, Copy)]
enum Chops {
    /// All frames in one write.
    One,
    /// One write per frame, with a pause between (Autobahn's `sync = True`).
    PerFrame,
    /// One write per octet.
    PerOctet,
}

impl Case {
    fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            options: WsOptions::default(),
            deflate: None,
            acts: Vec::new(),
            replies: Vec::new(),
            replies_may_stop: false,
            replies_may_coalesce: false,
            end: End::ServerCloses,
            check_close_order: false,
        }
    }

    fn send(mut self, bytes: Vec<u8>) -> Self {
        self.acts.push(Act::Send(bytes));
        self
    }

    fn frames(mut self, frames: &[Vec<u8>], chops: Chops) -> Self {
        match chops {
            Chops::One => self.acts.push(Act::Send(frames.concat())),
            Chops::PerOctet => self.acts.push(Act::Chop(frames.concat(), 1)),
            Chops::PerFrame => {
                for f in frames {
                    self.acts.push(Act::Send(f.clone()));
                    self.acts.push(Act::Pause(Duration::from_millis(2)));
                }
            }
        }
        self
    }

    fn chop(mut self, bytes: Vec<u8>, size: usize) -> Self {
        self.acts.push(Act::Chop(bytes, size));
        self
    }

    fn pause(mut self) -> Self {
        self.acts.push(Act::Pause(PAUSE));
        self
    }

    fn expect(mut self, message: Message, frames: Frames) -> Self {
        self.acts.push(Act::Expect(message, frames));
        self
    }

    fn fails_fast(mut self, code: u16) -> Self {
        self.acts.push(Act::FailsFast(code));
        self
    }

    fn reply(mut self, message: Message) -> Self {
        self.replies.push(message);
        self
    }

    fn replies_may_stop(mut self) -> Self {
        self.replies_may_stop = true;
        self
    }

    fn replies_may_coalesce(mut self) -> Self {
        self.replies_may_coalesce = true;
        self
    }

    fn options(mut self, options: WsOptions) -> Self {
        self.options = options;
        self
    }

    fn deflate(mut self, deflate: Deflate) -> Self {
        self.options = self.options.clone().deflate(deflate.config);
        self.deflate = Some(deflate);
        self
    }

    fn fails(mut self, code: u16) -> Self {
        self.end = End::Fails(code);
        self
    }

    /// The script ends with the server's close frame `code`/`reason`; the client echoes it.
    fn server_close(mut self, code: u16, reason: &str) -> Self {
        self.acts.push(Act::Send(close_frame(code, reason.as_bytes())));
        self.end = End::Echoes(Some(CloseFrame { code: CloseCode(code), reason: Utf8Bytes::from(reason) }));
        self
    }

    fn close_order(mut self) -> Self {
        self.check_close_order = true;
        self
    }
}

// ---------------------------------------------------------------------------------------
// The raw server side.

/// One frame the client sent, unmasked.
struct RawFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Bytes,
}

/// Why reading from the client stopped.
enum Gone {
    Eof,
    Timeout,
    Bad(String),
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::Eof => f.write_str("the TCP connection closed"),
            Gone::Timeout => f.write_str("nothing in time"),
            Gone::Bad(why) => f.write_str(why),
        }
    }
}

/// The server's end of one connection, after the handshake. A reader task drains the socket
/// all the time, so the server never blocks the client however the script writes.
struct Peer {
    wr: OwnedWriteHalf,
    rx: mpsc::UnboundedReceiver<Bytes>,
    eof: bool,
    /// Bytes received, not yet parsed into frames.
    buf: BytesMut,
    /// Whole frames (still masked) for the decoder.
    frames: BytesMut,
    decoder: Decoder,
    /// The client's close frame, once read.
    close: Option<Message>,
}

impl Peer {
    fn new(tcp: TcpStream, deflate: Option<DeflateParams>) -> Self {
        tcp.set_nodelay(true).unwrap();
        let (mut rd, wr) = tcp.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let mut chunk = BytesMut::with_capacity(64 * 1024);
                match rd.read_buf(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(chunk.freeze()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let limits = Limits { max_frame_size: 64 << 20, max_message_size: 64 << 20 };
        Self {
            wr,
            rx,
            eof: false,
            buf: BytesMut::new(),
            frames: BytesMut::new(),
            decoder: Decoder::new(Role::Server, limits, deflate),
            close: None,
        }
    }

    /// Writes `bytes`; a client that already closed is not an error here (what it sent is
    /// checked instead).
    async fn write(&mut self, bytes: &[u8]) {
        let _ = self.wr.write_all(bytes).await;
    }

    async fn write_chopped(&mut self, bytes: &[u8], size: usize) {
        let pause = bytes.len().div_ceil(size) <= 512;
        for chunk in bytes.chunks(size) {
            if self.wr.write_all(chunk).await.is_err() {
                return;
            }
            if pause {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// The next frame from the client, within `wait`.
    async fn next_frame(&mut self, wait: Duration) -> Result<RawFrame, Gone> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(frame);
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Err(Gone::Eof);
                }
                return Err(Gone::Bad(format!("the connection closed within a frame ({} bytes left)", self.buf.len())));
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Err(Gone::Timeout),
                Ok(None) => self.eof = true,
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
            }
        }
    }

    fn parse_frame(&mut self) -> Result<Option<RawFrame>, Gone> {
        let [b0, b1, ..] = self.buf[..] else { return Ok(None) };
        if b1 & 0x80 == 0 {
            return Err(Gone::Bad("the client sent an unmasked frame".into()));
        }
        let (len, at) = match b1 & 0x7f {
            126 if self.buf.len() >= 4 => (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4),
            127 if self.buf.len() >= 10 => (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()), 10),
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        let total = at + 4 + usize::try_from(len).unwrap();
        if self.buf.len() < total {
            return Ok(None);
        }
        let raw = self.buf.split_to(total);
        let key = [raw[at], raw[at + 1], raw[at + 2], raw[at + 3]];
        let mut payload = BytesMut::from(&raw[at + 4..]);
        apply_mask(&mut payload, key, 0);
        self.frames.extend_from_slice(&raw);
        Ok(Some(RawFrame { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0x0f, payload: payload.freeze() }))
    }

    /// The next message from the client (decoded by a strict server-side decoder) and its frames.
    async fn next_message(&mut self, wait: Duration) -> Result<(Message, Vec<RawFrame>), Gone> {
        let mut frames = Vec::new();
        loop {
            frames.push(self.next_frame(wait).await?);
            match self.decoder.decode(&mut self.frames) {
                Ok(Some(m)) => {
                    if matches!(m, Message::Close(_)) {
                        self.close = Some(m.clone());
                    }
                    return Ok((m, frames));
                }
                Ok(None) => {}
                Err(e) => return Err(Gone::Bad(format!("the client sent an invalid frame: {e}"))),
            }
        }
    }

    /// The client's next message must be `want`, in frames shaped as `check` says.
    async fn expect(&mut self, want: &Message, check: Frames) -> Result<(), String> {
        let (got, frames) = self
            .next_message(WAIT)
            .await
            .map_err(|e| format!("expected {} from the client, got {e}", describe(want)))?;
        if got != *want {
            return Err(format!("expected {} from the client, got {}", describe(want), describe(&got)));
        }
        check_frames(&frames, check).map_err(|e| format!("{}: {e}", describe(want)))
    }

    /// The client's close frame: already read, or the next message.
    async fn client_close(&mut self) -> Result<Message, String> {
        if let Some(close) = self.close.take() {
            return Ok(close);
        }
        match self.next_message(WAIT).await {
            Ok((m @ Message::Close(_), _)) => Ok(m),
            Ok((m, _)) => Err(format!("expected the client's close frame, got {}", describe(&m))),
            Err(e) => Err(format!("expected the client's close frame, got {e}")),
        }
    }

    /// Nothing more may come from the client: the next thing must be the end of the connection.
    async fn expect_eof(&mut self, wait: Duration) -> Result<(), String> {
        match self.next_frame(wait).await {
            Err(Gone::Eof) => Ok(()),
            Err(Gone::Timeout) => Err("the client did not close the TCP connection".into()),
            Err(e) => Err(format!("after its close frame: {e}")),
            Ok(f) => Err(format!("the client sent a frame (opcode {:#x}) after its close frame", f.opcode)),
        }
    }
}

fn check_frames(frames: &[RawFrame], check: Frames) -> Result<(), String> {
    match check {
        Frames::Any => Ok(()),
        Frames::Compressed(want) => {
            let got = frames[0].rsv & 0b100 != 0;
            if got != want {
                return Err(format!("RSV1 (compressed) is {got}, expected {want}"));
            }
            if frames.iter().skip(1).any(|f| f.rsv != 0) {
                return Err("a continuation frame has reserved bits set".into());
            }
            Ok(())
        }
        Frames::CompressedInto(size) => {
            check_frames(frames, Frames::Compressed(true))?;
            check_frames(frames, Frames::SplitInto(size))
        }
        Frames::SplitInto(size) => {
            let total: usize = frames.iter().map(|f| f.payload.len()).sum();
            let count = total.div_ceil(size).max(1);
            if frames.len() != count {
                return Err(format!("{} frames, expected {count} of at most {size} bytes", frames.len()));
            }
            for (i, f) in frames.iter().enumerate() {
                let last = i + 1 == count;
                let want_len = if last { total - size * (count - 1) } else { size };
                if f.payload.len() != want_len || f.fin != last || (i > 0 && f.opcode != CONT) {
                    return Err(format!(
                        "frame {i}: {} bytes, fin {}, opcode {:#x}; expected {want_len} bytes, fin {last}",
                        f.payload.len(),
                        f.fin,
                        f.opcode
                    ));
                }
            }
            Ok(())
        }
    }
}

/// The request head, read byte by byte (nothing past it may be consumed).
async fn read_head(tcp: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await?);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Accepts one upgrade and answers it (with the permessage-deflate answer, if any).
async fn accept(listener: TcpListener, extension: Option<String>) -> std::io::Result<(TcpStream, String)> {
    let (mut tcp, _) = listener.accept().await?;
    let head = read_head(&mut tcp).await?;
    let key = header(&head, "sec-websocket-key").unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n",
        accept_key(key)
    );
    if let Some(ext) = extension {
        answer.push_str(&format!("sec-websocket-extensions: {ext}\r\n"));
    }
    answer.push_str("\r\n");
    tcp.write_all(answer.as_bytes()).await?;
    Ok((tcp, head))
}

// ---------------------------------------------------------------------------------------
// The client side: the real API, as Autobahn's echo client.

#[derive(Default)]
struct ClientLog {
    /// Every message the owner got (the server's close frame included).
    messages: Vec<Message>,
    /// The protocol error reported to the owner.
    error: Option<ProtocolError>,
    /// Other stream errors (a refused echo after the close, for one).
    other_errors: Vec<StreamError>,
    down: Option<DownReason>,
    timed_out: bool,
}

impl ClientLog {
    fn data(&self) -> Vec<Message> {
        self.messages.iter().filter(|m| !m.is_control()).cloned().collect()
    }
}

/// Echoes every data message until the connection goes down.
async fn echo_client(conn: Connection, mut events: Events, ws: StreamRef) -> ClientLog {
    let mut log = ClientLog::default();
    loop {
        let event = match tokio::time::timeout(WAIT, events.next()).await {
            Err(_) => {
                log.timed_out = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(event)) => event,
        };
        match event {
            Event::Ws { stream, message } if stream == ws => {
                if !message.is_control() {
                    let _ = conn.ws_send(&ws, message.clone()).await;
                }
                log.messages.push(message);
            }
            Event::StreamError { error: StreamError::WsProtocol(e), .. } => log.error = Some(e),
            Event::StreamError { error, .. } => log.other_errors.push(error),
            Event::Down { reason, .. } => {
                log.down = Some(reason);
                break;
            }
            _ => {}
        }
    }
    log
}

/// Opens the client, lets the server accept it, and returns both ends once upgraded.
async fn connect(case: &Case) -> Result<(Peer, Connection, Events, StreamRef), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = tokio::spawn(accept(listener, case.deflate.as_ref().map(|d| d.answer.clone())));
    let (conn, mut events) = moorline::open("127.0.0.1", port, ConnectOptions::default().retry(RetryPolicy::Never))
        .map_err(|e| format!("open: {e}"))?;
    events.await_up(WAIT).await.map_err(|e| format!("await_up: {e}"))?;
    let ws = conn.ws_upgrade("/autobahn", case.options.clone()).await.map_err(|e| format!("ws_upgrade: {e}"))?;
    let upgraded = events.await_ws_upgrade(&ws, WAIT).await.map_err(|e| format!("await_ws_upgrade: {e}"))?;
    let (tcp, head) = tokio::time::timeout(WAIT, server)
        .await
        .map_err(|_| "the server never accepted".to_owned())?
        .unwrap()
        .map_err(|e| format!("server handshake: {e}"))?;
    if let Some(d) = &case.deflate {
        let offer = header(&head, "sec-websocket-extensions");
        if offer != Some(d.config.offer().as_str()) {
            return Err(format!("the client offered {offer:?}, expected {:?}", d.config.offer()));
        }
        if upgraded.deflate != Some(d.agreed) {
            return Err(format!("the client agreed {:?}, expected {:?}", upgraded.deflate, d.agreed));
        }
    } else if upgraded.deflate.is_some() || header(&head, "sec-websocket-extensions").is_some() {
        return Err("permessage-deflate without being asked for".into());
    }
    Ok((Peer::new(tcp, case.deflate.as_ref().map(|d| d.agreed)), conn, events, ws))
}

// ---------------------------------------------------------------------------------------
// Running a case.

async fn run_case(case: Case) -> Result<(), String> {
    let (mut peer, conn, events, ws) = connect(&case).await?;
    let client = tokio::spawn(echo_client(conn, events, ws));
    let result = drive(&case, &mut peer).await;
    if let Err(e) = result {
        client.abort();
        return Err(e);
    }
    let log = match tokio::time::timeout(WAIT, client).await {
        Ok(log) => log.unwrap(),
        Err(_) => return Err("the client did not go down".into()),
    };
    check_client(&case, &log)
}

/// The server's part: the script, the replies, the end.
async fn drive(case: &Case, peer: &mut Peer) -> Result<(), String> {
    for act in &case.acts {
        match act {
            Act::Send(bytes) => peer.write(bytes).await,
            Act::Chop(bytes, size) => peer.write_chopped(bytes, *size).await,
            Act::Pause(d) => tokio::time::sleep(*d).await,
            Act::Expect(message, frames) => peer.expect(message, *frames).await?,
            Act::FailsFast(code) => {
                let close = peer.client_close().await.map_err(|e| format!("not failed fast: {e}"))?;
                check_close(&close, Some(*code))?;
                peer.close = Some(close);
            }
        }
    }
    let mut want_from = 0;
    while case.replies_may_coalesce && want_from < case.replies.len() {
        let got = match peer.next_message(WAIT).await {
            Ok((got, _)) => got,
            Err(e) => {
                return Err(format!("reply {want_from}: expected {}, got {e}", describe(&case.replies[want_from])));
            }
        };
        match case.replies[want_from..].iter().position(|w| *w == got) {
            Some(k) => want_from += k + 1,
            None => return Err(format!("reply {want_from}: got {}, not one of those expected", describe(&got))),
        }
    }
    for (i, want) in case.replies.iter().enumerate().skip(want_from) {
        match peer.next_message(WAIT).await {
            // A close or a failure overtaking the rest of the replies (where allowed).
            Ok((Message::Close(_), _)) if case.replies_may_stop => break,
            Ok((got, _)) if got == *want => {}
            Ok((got, _)) => {
                return Err(format!("reply {i}: expected {}, got {}", describe(want), describe(&got)));
            }
            Err(e) => return Err(format!("reply {i}: expected {}, got {e}", describe(want))),
        }
    }
    match &case.end {
        End::ServerCloses => {
            peer.write(&close_frame(1000, b"")).await;
            let close = peer.client_close().await?;
            check_close(&close, Some(1000))?;
            finish_clean(case, peer).await
        }
        End::Echoes(frame) => {
            let close = peer.client_close().await?;
            check_close(&close, frame.as_ref().map(|f| f.code.0))?;
            finish_clean(case, peer).await
        }
        End::Fails(code) => {
            let close = peer.client_close().await?;
            check_close(&close, Some(*code))?;
            // The client fails the connection: it closes TCP itself, promptly.
            peer.expect_eof(WAIT).await
        }
    }
}

fn check_close(close: &Message, code: Option<u16>) -> Result<(), String> {
    let got = match close {
        Message::Close(c) => c.as_ref().map(|c| c.code.0),
        other => return Err(format!("expected a close frame, got {}", describe(other))),
    };
    if got != code {
        return Err(format!("the client's close code is {got:?}, expected {code:?}"));
    }
    Ok(())
}

/// After both close frames: the server closes TCP first, then the client must close too.
async fn finish_clean(case: &Case, peer: &mut Peer) -> Result<(), String> {
    if case.check_close_order {
        match peer.next_frame(Duration::from_millis(30)).await {
            Err(Gone::Timeout) => {}
            Err(Gone::Eof) => return Err("the client closed TCP before the server did (RFC 6455 §7.1.1)".into()),
            Err(e) => return Err(e.to_string()),
            Ok(f) => return Err(format!("the client sent a frame (opcode {:#x}) after its close frame", f.opcode)),
        }
    }
    let _ = peer.wr.shutdown().await;
    peer.expect_eof(WAIT).await
}

/// What the owner saw.
fn check_client(case: &Case, log: &ClientLog) -> Result<(), String> {
    if log.timed_out {
        return Err("the owner's event stream stalled".into());
    }
    // The data messages among the expected echoes: the owner gets each one, even where the
    // client may not manage to echo it.
    let expected = case.acts.iter().filter_map(|a| if let Act::Expect(m, _) = a { Some(m) } else { None });
    let delivered: Vec<Message> = expected.chain(&case.replies).filter(|m| !m.is_control()).cloned().collect();
    if log.data() != delivered {
        return Err(format!("the owner got {}, expected {}", describe_all(&log.data()), describe_all(&delivered)));
    }
    if !case.replies_may_stop && !log.other_errors.is_empty() {
        return Err(format!("the owner got stream errors: {:?}", log.other_errors));
    }
    match &case.end {
        End::Fails(code) => {
            match &log.error {
                Some(e) if e.close_code().0 == *code => {}
                other => return Err(format!("the owner's error is {other:?}, expected one with code {code}")),
            }
            match &log.down {
                Some(DownReason::WsProtocol(e)) if e.close_code().0 == *code => Ok(()),
                other => Err(format!("Down reason {other:?}, expected WsProtocol with code {code}")),
            }
        }
        End::ServerCloses | End::Echoes(_) => {
            let frame = match &case.end {
                End::Echoes(frame) => frame.clone(),
                _ => Some(CloseFrame { code: CloseCode(1000), reason: Utf8Bytes::default() }),
            };
            if let Some(e) = &log.error {
                return Err(format!("the owner got a protocol error: {e}"));
            }
            if log.messages.last() != Some(&Message::Close(frame.clone())) {
                return Err(format!(
                    "the owner's last message is {:?}, expected the server's close",
                    log.messages.last().map(describe)
                ));
            }
            match &log.down {
                Some(DownReason::WsClosed { close, by_us: false }) if *close == frame => Ok(()),
                other => Err(format!("Down reason {other:?}, expected WsClosed by the server with {frame:?}")),
            }
        }
    }
}

/// Runs a section's cases in order and fails with every failing case id.
async fn run_section(name: &str, cases: impl IntoIterator<Item = Case>) {
    let started = Instant::now();
    let run = async {
        let mut count = 0;
        let mut failures = Vec::new();
        for case in cases {
            count += 1;
            let id = case.id.clone();
            if let Err(e) = run_case(case).await {
                failures.push(format!("{id}: {e}"));
            }
        }
        (count, failures)
    };
    let (count, failures) =
        tokio::time::timeout(SECTION_BOUND, run).await.unwrap_or_else(|_| panic!("section {name} exceeded its bound"));
    println!("section {name}: {count} cases, {} failed, {:?}", failures.len(), started.elapsed());
    assert!(
        failures.is_empty(),
        "section {name}: {} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// 1 Framing.

fn section_1_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (sub, opcode, fill) in [(1, TEXT, b'*'), (2, BINARY, 0xfe)] {
        let message = |p: &[u8]| if opcode == TEXT { text(p) } else { binary(p) };
        for (i, len) in [0, 125, 126, 127, 128, 65535, 65536].into_iter().enumerate() {
            let payload = vec![fill; len];
            cases.push(Case::new(format!("1.{sub}.{}", i + 1)).send(whole(opcode, &payload)).reply(message(&payload)));
        }
        let payload = vec![fill; 65536];
        cases.push(Case::new(format!("1.{sub}.8")).chop(whole(opcode, &payload), 997).reply(message(&payload)));
    }
    cases
}

#[tokio::test]
async fn section_1_framing() {
    run_section("1", section_1_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 2 Pings/Pongs.

fn section_2_cases() -> Vec<Case> {
    let small_binary = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff";
    let p125 = [0xfe; 125];
    let ten: Vec<Vec<u8>> = (0..10).map(|i| whole(PING, format!("payload-{i}").as_bytes())).collect();
    let ten_pongs: Vec<Message> = (0..10).map(|i| pong(format!("payload-{i}").as_bytes())).collect();
    // Autobahn wants a pong per ping ("not required by the Spec"); we answer the latest ping
    // of those that arrive before our pong leaves (RFC 6455 §5.5.3), so that a ping flood
    // costs one pong: all ten at once get one pong, ten chopped up get up to ten.
    let mut case_2_10 = Case::new("2.10").send(ten.concat()).replies_may_coalesce();
    let mut case_2_11 = Case::new("2.11").chop(ten.concat(), 1).replies_may_coalesce();
    for p in &ten_pongs {
        case_2_10 = case_2_10.reply(p.clone());
        case_2_11 = case_2_11.reply(p.clone());
    }
    vec![
        Case::new("2.1").send(whole(PING, b"")).reply(pong(b"")),
        Case::new("2.2").send(whole(PING, b"Hello, world!")).reply(pong(b"Hello, world!")),
        Case::new("2.3").send(whole(PING, small_binary)).reply(pong(small_binary)),
        Case::new("2.4").send(whole(PING, &p125)).reply(pong(&p125)),
        Case::new("2.5").send(whole(PING, &[0xfe; 126])).fails(1002),
        Case::new("2.6").chop(whole(PING, &p125), 1).reply(pong(&p125)),
        Case::new("2.7").send(whole(PONG, b"")),
        Case::new("2.8").send(whole(PONG, b"unsolicited pong payload")),
        Case::new("2.9")
            .send([whole(PONG, b"unsolicited pong payload"), whole(PING, b"ping payload")].concat())
            .reply(pong(b"ping payload")),
        case_2_10,
        case_2_11,
    ]
}

#[tokio::test]
async fn section_2_pings_pongs() {
    run_section("2", section_2_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 3 Reserved bits.

fn section_3_cases() -> Vec<Case> {
    let hello = b"Hello, world!";
    // A valid message, the same with reserved bits set, then a ping that must not be answered.
    let after_valid = |id: &str, rsv: u8, chops: Chops| {
        Case::new(id)
            .frames(&[whole(TEXT, hello), frame(true, rsv, TEXT, hello), whole(PING, b"")], chops)
            .reply(text(hello))
            .replies_may_stop()
            .fails(1002)
    };
    vec![
        Case::new("3.1").send(frame(true, 1, TEXT, hello)).fails(1002),
        after_valid("3.2", 2, Chops::One),
        after_valid("3.3", 3, Chops::PerFrame),
        after_valid("3.4", 4, Chops::PerOctet),
        Case::new("3.5").send(frame(true, 5, BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")).fails(1002),
        Case::new("3.6").send(frame(true, 6, PING, hello)).fails(1002),
        Case::new("3.7").send(frame(true, 7, CLOSE, &1000u16.to_be_bytes())).fails(1002),
    ]
}

#[tokio::test]
async fn section_3_reserved_bits() {
    run_section("3", section_3_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 4 Opcodes.

fn section_4_cases() -> Vec<Case> {
    let hello = b"Hello, world!";
    let mut cases = Vec::new();
    for (sub, opcodes) in [(1, [3u8, 4, 5, 6, 7]), (2, [11, 12, 13, 14, 15])] {
        for (i, opcode) in opcodes.into_iter().enumerate() {
            let payload: &[u8] = if i % 2 == 1 || i == 4 { b"reserved opcode payload" } else { b"" };
            let id = format!("4.{sub}.{}", i + 1);
            cases.push(if i < 2 {
                Case::new(id).send(whole(opcode, payload)).fails(1002)
            } else {
                Case::new(id)
                    .send([whole(TEXT, hello), whole(opcode, payload), whole(PING, b"")].concat())
                    .reply(text(hello))
                    .replies_may_stop()
                    .fails(1002)
            });
        }
    }
    cases
}

#[tokio::test]
async fn section_4_opcodes() {
    run_section("4", section_4_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 5 Fragmentation.

fn section_5_cases() -> Vec<Case> {
    let f = |fin: bool, opcode: u8, payload: &str| frame(fin, 0, opcode, payload.as_bytes());
    let two = [f(false, TEXT, "fragment1"), f(true, CONT, "fragment2")];
    let with_ping = [f(false, TEXT, "fragment1"), whole(PING, b"ping payload"), f(true, CONT, "fragment2")];
    let cont_fin = [f(true, CONT, "non-continuation payload"), whole(TEXT, b"Hello, world!")];
    let cont_nofin = [f(false, CONT, "non-continuation payload"), whole(TEXT, b"Hello, world!")];
    let repeated = |first_fin: bool| {
        let once = [f(first_fin, CONT, "fragment1"), f(false, TEXT, "fragment2"), f(true, CONT, "fragment3")];
        [once.clone(), once].concat()
    };
    let fragments_with_pings = |id: &str, chops: Chops| {
        Case::new(id)
            .frames(&[f(false, TEXT, "fragment1"), f(false, CONT, "fragment2"), whole(PING, b"pongme 1!")], chops)
            .pause()
            .frames(
                &[
                    f(false, CONT, "fragment3"),
                    f(false, CONT, "fragment4"),
                    whole(PING, b"pongme 2!"),
                    f(true, CONT, "fragment5"),
                ],
                chops,
            )
            .reply(pong(b"pongme 1!"))
            .reply(pong(b"pongme 2!"))
            .reply(text(b"fragment1fragment2fragment3fragment4fragment5"))
    };
    vec![
        Case::new("5.1").frames(&[f(false, PING, "fragment1"), f(true, CONT, "fragment2")], Chops::One).fails(1002),
        Case::new("5.2").frames(&[f(false, PONG, "fragment1"), f(true, CONT, "fragment2")], Chops::One).fails(1002),
        Case::new("5.3").frames(&two, Chops::One).reply(text(b"fragment1fragment2")),
        Case::new("5.4").frames(&two, Chops::PerOctet).reply(text(b"fragment1fragment2")),
        Case::new("5.5").frames(&two, Chops::PerFrame).reply(text(b"fragment1fragment2")),
        Case::new("5.6").frames(&with_ping, Chops::One).reply(pong(b"ping payload")).reply(text(b"fragment1fragment2")),
        Case::new("5.7")
            .frames(&with_ping, Chops::PerOctet)
            .reply(pong(b"ping payload"))
            .reply(text(b"fragment1fragment2")),
        Case::new("5.8")
            .frames(&with_ping, Chops::PerFrame)
            .reply(pong(b"ping payload"))
            .reply(text(b"fragment1fragment2")),
        Case::new("5.9").frames(&cont_fin, Chops::One).fails(1002),
        Case::new("5.10").frames(&cont_fin, Chops::PerFrame).fails(1002),
        Case::new("5.11").frames(&cont_fin, Chops::PerOctet).fails(1002),
        Case::new("5.12").frames(&cont_nofin, Chops::One).fails(1002),
        Case::new("5.13").frames(&cont_nofin, Chops::PerFrame).fails(1002),
        Case::new("5.14").frames(&cont_nofin, Chops::PerOctet).fails(1002),
        Case::new("5.15")
            .frames(
                &[
                    f(false, TEXT, "fragment1"),
                    f(true, CONT, "fragment2"),
                    f(false, CONT, "fragment3"),
                    f(true, TEXT, "fragment4"),
                ],
                Chops::One,
            )
            .reply(text(b"fragment1fragment2"))
            .replies_may_stop()
            .fails(1002),
        Case::new("5.16").frames(&repeated(false), Chops::One).fails(1002),
        Case::new("5.17").frames(&repeated(true), Chops::One).fails(1002),
        Case::new("5.18").frames(&[f(false, TEXT, "fragment1"), f(true, TEXT, "fragment2")], Chops::One).fails(1002),
        fragments_with_pings("5.19", Chops::One),
        fragments_with_pings("5.20", Chops::PerFrame),
    ]
}

#[tokio::test]
async fn section_5_fragmentation() {
    run_section("5", section_5_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 6 UTF-8 handling.

const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
const HELLO_UTF8: &str = "Hello-µ@ßöäüàá-UTF-8!!";

/// Autobahn's UTF-8 test sequences (from Markus Kuhn's UTF-8-test.txt), groups 6.5 to 6.23:
/// (valid, bytes).
fn utf8_sequences() -> Vec<Vec<(bool, Vec<u8>)>> {
    let ok = |b: &[u8]| (true, b.to_vec());
    let bad = |b: &[u8]| (false, b.to_vec());
    let missing: [&[u8]; 10] = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    let mut nonchars = vec![ok(b"\xef\xbf\xbe"), ok(b"\xef\xbf\xbf")];
    for z1 in [0xf0u8, 0xf1, 0xf2, 0xf3, 0xf4] {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            // Above U+10FFFF, or overlong: not in the list.
            if (z1 == 0xf4 && z2 != 0x8f) || (z1 == 0xf0 && z2 == 0x8f) {
                continue;
            }
            for z3 in [0xbeu8, 0xbf] {
                nonchars.push((true, vec![z1, z2, 0xbf, z3]));
            }
        }
    }
    vec![
        // 6.5 Some valid UTF-8 sequences
        vec![
            ok(b"hello\x24world"),
            ok(b"hello\xc2\xa2world"),
            ok(b"hello\xe2\x82\xacworld"),
            ok(b"hello\xf0\xa4\xad\xa2world"),
            ok(KOSME),
        ],
        // 6.6 All prefixes of a valid UTF-8 string that contains multi-byte code points
        (1..=KOSME.len()).map(|i| (std::str::from_utf8(&KOSME[..i]).is_ok(), KOSME[..i].to_vec())).collect(),
        // 6.7 First possible sequence of a certain length
        vec![ok(b"\x00"), ok(b"\xc2\x80"), ok(b"\xe0\xa0\x80"), ok(b"\xf0\x90\x80\x80")],
        // 6.8 First possible sequence length 5/6 (invalid codepoints)
        vec![bad(b"\xf8\x88\x80\x80\x80"), bad(b"\xfc\x84\x80\x80\x80\x80")],
        // 6.9 Last possible sequence of a certain length
        vec![ok(b"\x7f"), ok(b"\xdf\xbf"), ok(b"\xef\xbf\xbf"), ok(b"\xf4\x8f\xbf\xbf")],
        // 6.10 Last possible sequence length 4/5/6 (invalid codepoints)
        vec![bad(b"\xf7\xbf\xbf\xbf"), bad(b"\xfb\xbf\xbf\xbf\xbf"), bad(b"\xfd\xbf\xbf\xbf\xbf\xbf")],
        // 6.11 Other boundary conditions
        vec![
            ok(b"\xed\x9f\xbf"),
            ok(b"\xee\x80\x80"),
            ok(b"\xef\xbf\xbd"),
            ok(b"\xf4\x8f\xbf\xbf"),
            bad(b"\xf4\x90\x80\x80"),
        ],
        // 6.12 Unexpected continuation bytes
        vec![
            bad(b"\x80"),
            bad(b"\xbf"),
            bad(b"\x80\xbf"),
            bad(b"\x80\xbf\x80"),
            bad(b"\x80\xbf\x80\xbf"),
            bad(b"\x80\xbf\x80\xbf\x80"),
            bad(b"\x80\xbf\x80\xbf\x80\xbf"),
            (false, (0x80..0xbf).collect()),
        ],
        // 6.13 Lonely start characters
        [(0xc0u8, 0xdfu8), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd)]
            .into_iter()
            .map(|(lo, hi)| (false, (lo..hi).flat_map(|b| [b, 0x20]).collect()))
            .collect(),
        // 6.14 Sequences with last continuation byte missing
        missing.iter().map(|m| bad(m)).collect(),
        // 6.15 Concatenation of incomplete sequences
        vec![(false, missing.concat())],
        // 6.16 Impossible bytes
        vec![bad(b"\xfe"), bad(b"\xff"), bad(b"\xfe\xfe\xff\xff")],
        // 6.17 Examples of an overlong ASCII character
        vec![
            bad(b"\xc0\xaf"),
            bad(b"\xe0\x80\xaf"),
            bad(b"\xf0\x80\x80\xaf"),
            bad(b"\xf8\x80\x80\x80\xaf"),
            bad(b"\xfc\x80\x80\x80\x80\xaf"),
        ],
        // 6.18 Maximum overlong sequences
        vec![
            bad(b"\xc1\xbf"),
            bad(b"\xe0\x9f\xbf"),
            bad(b"\xf0\x8f\xbf\xbf"),
            bad(b"\xf8\x87\xbf\xbf\xbf"),
            bad(b"\xfc\x83\xbf\xbf\xbf\xbf"),
        ],
        // 6.19 Overlong representation of the NUL character
        vec![
            bad(b"\xc0\x80"),
            bad(b"\xe0\x80\x80"),
            bad(b"\xf0\x80\x80\x80"),
            bad(b"\xf8\x80\x80\x80\x80"),
            bad(b"\xfc\x80\x80\x80\x80\x80"),
        ],
        // 6.20 Single UTF-16 surrogates
        vec![
            bad(b"\xed\xa0\x80"),
            bad(b"\xed\xad\xbf"),
            bad(b"\xed\xae\x80"),
            bad(b"\xed\xaf\xbf"),
            bad(b"\xed\xb0\x80"),
            bad(b"\xed\xbe\x80"),
            bad(b"\xed\xbf\xbf"),
        ],
        // 6.21 Paired UTF-16 surrogates
        vec![
            bad(b"\xed\xa0\x80\xed\xb0\x80"),
            bad(b"\xed\xa0\x80\xed\xbf\xbf"),
            bad(b"\xed\xad\xbf\xed\xb0\x80"),
            bad(b"\xed\xad\xbf\xed\xbf\xbf"),
            bad(b"\xed\xae\x80\xed\xb0\x80"),
            bad(b"\xed\xae\x80\xed\xbf\xbf"),
            bad(b"\xed\xaf\xbf\xed\xb0\x80"),
            bad(b"\xed\xaf\xbf\xed\xbf\xbf"),
        ],
        // 6.22 Non-character code points (valid UTF-8)
        nonchars,
        // 6.23 Unicode specials (i.e. replacement char)
        vec![
            ok(b"\xef\xbf\xb9"),
            ok(b"\xef\xbf\xba"),
            ok(b"\xef\xbf\xbb"),
            ok(b"\xef\xbf\xbc"),
            ok(b"\xef\xbf\xbd"),
            ok(b"\xef\xbf\xbe"),
            ok(b"\xef\xbf\xbf"),
        ],
    ]
}

/// A text message in frames of `size` bytes: echoed if valid, 1007 if not.
fn utf8_case(id: String, valid: bool, payload: &[u8], size: usize) -> Case {
    let case = Case::new(id).frames(&fragmented(TEXT, payload, size), Chops::One);
    if valid { case.reply(text(payload)) } else { case.fails(1007) }
}

fn section_6_cases() -> Vec<Case> {
    let hello = HELLO_UTF8.as_bytes();
    let mut cases = vec![
        Case::new("6.1.1").send(whole(TEXT, b"")).reply(text(b"")),
        Case::new("6.1.2")
            .frames(&[frame(false, 0, TEXT, b""), frame(false, 0, CONT, b""), frame(true, 0, CONT, b"")], Chops::One)
            .reply(text(b"")),
        Case::new("6.1.3")
            .frames(
                &[
                    frame(false, 0, TEXT, b""),
                    frame(false, 0, CONT, b"middle frame payload"),
                    frame(true, 0, CONT, b""),
                ],
                Chops::One,
            )
            .reply(text(b"middle frame payload")),
        Case::new("6.2.1").send(whole(TEXT, hello)).reply(text(hello)),
        Case::new("6.2.2")
            .frames(
                &[frame(false, 0, TEXT, "Hello-µ@ßöä".as_bytes()), frame(true, 0, CONT, "üàá-UTF-8!!".as_bytes())],
                Chops::One,
            )
            .reply(text(hello)),
        utf8_case("6.2.3".into(), true, hello, 1),
        utf8_case("6.2.4".into(), true, KOSME, 1),
    ];
    // Beyond Autobahn: the 6.2 text in two fragments split at every byte (on code points
    // and within them).
    for at in 1..hello.len() {
        cases.push(
            Case::new(format!("6.2.2/split@{at}"))
                .frames(&[frame(false, 0, TEXT, &hello[..at]), frame(true, 0, CONT, &hello[at..])], Chops::One)
                .reply(text(hello)),
        );
    }
    let invalid = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    cases.push(utf8_case("6.3.1".into(), false, &invalid, usize::MAX));
    cases.push(utf8_case("6.3.2".into(), false, &invalid, 1));
    // 6.4: fail fast. The invalid code point (0x110000) comes in the middle frame (6.4.1, 6.4.2)
    // or chop (6.4.3, 6.4.4); the last part is sent only after a pause.
    let p = [KOSME, b"\xf4\x90\x80\x80", b"edited"].concat();
    for (id, cuts) in [("6.4.1", [11, 15]), ("6.4.2", [12, 13])] {
        let [a, b] = cuts;
        cases.push(
            Case::new(id)
                .send(frame(false, 0, TEXT, &p[..a]))
                .pause()
                .send(frame(false, 0, CONT, &p[a..b]))
                .fails_fast(1007)
                .send(frame(true, 0, CONT, &p[b..]))
                .fails(1007),
        );
    }
    // Within one frame: the client checks the text of a frame while it arrives, so it fails
    // on the bad chop, before the rest of the frame comes (Autobahn's strict OK).
    for (id, cuts) in [("6.4.3", [11, 15]), ("6.4.4", [12, 13])] {
        let [a, b] = cuts;
        let bytes = whole(TEXT, &p);
        let header = bytes.len() - p.len();
        cases.push(
            Case::new(id)
                .send(bytes[..header + a].to_vec())
                .pause()
                .send(bytes[header + a..header + b].to_vec())
                .fails_fast(1007)
                .send(bytes[header + b..].to_vec())
                .fails(1007),
        );
    }
    for (g, group) in utf8_sequences().into_iter().enumerate() {
        for (j, (valid, bytes)) in group.into_iter().enumerate() {
            let id = format!("6.{}.{}", g + 5, j + 1);
            assert_eq!(valid, std::str::from_utf8(&bytes).is_ok(), "{id}: the table disagrees with std");
            cases.push(utf8_case(id.clone(), valid, &bytes, usize::MAX));
            // Beyond Autobahn: the same in frames of one byte.
            if bytes.len() > 1 {
                cases.push(utf8_case(format!("{id}/1-byte-frames"), valid, &bytes, 1));
            }
        }
    }
    cases
}

#[tokio::test]
async fn section_6_utf8() {
    run_section("6", section_6_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 7 Close handling.

fn section_7_cases() -> Vec<Case> {
    let hello = b"Hello World!";
    let big = repeat(b"BAsd7&jh23", 256 * 1024);
    let mut cases = vec![
        Case::new("7.1.1").send(whole(TEXT, hello)).reply(text(hello)),
        Case::new("7.1.2").send(close_frame(1000, b"")).server_close(1000, ""),
        Case::new("7.1.3").server_close(1000, "").send(whole(PING, hello)),
        Case::new("7.1.4").server_close(1000, "").send(whole(TEXT, hello)),
        Case::new("7.1.5").send(frame(false, 0, TEXT, b"fragment1")).server_close(1000, "").send(frame(
            true,
            0,
            CONT,
            b"fragment2",
        )),
        // Informational in Autobahn: the close may overtake the echoes, but the owner gets both.
        Case::new("7.1.6")
            .send([whole(TEXT, &big), whole(TEXT, hello)].concat())
            .server_close(1000, "")
            .send(whole(PING, b""))
            .reply(text(&big))
            .reply(text(hello))
            .replies_may_stop(),
        {
            let mut c = Case::new("7.3.1").send(whole(CLOSE, b""));
            c.end = End::Echoes(None);
            c
        },
        Case::new("7.3.2").send(whole(CLOSE, b"*")).fails(1002),
        Case::new("7.3.3").server_close(1000, ""),
        Case::new("7.3.4").server_close(1000, "Hello World!"),
        Case::new("7.3.5").server_close(1000, &"*".repeat(123)),
        Case::new("7.3.6").send(close_frame(1000, &[b'*'; 124])).fails(1002),
        Case::new("7.5.1").send(close_frame(1000, &[KOSME, b"\xed\xa0\x80", b"edited"].concat())).fails(1007),
    ];
    for (i, code) in
        [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999].into_iter().enumerate()
    {
        cases.push(Case::new(format!("7.7.{}", i + 1)).server_close(code, ""));
    }
    // Beyond Autobahn: registered with IANA since (RFC 6455 registry), valid as moorline-proto has it.
    for code in [1012, 1013, 1014] {
        cases.push(Case::new(format!("7.7.x-{code}")).server_close(code, ""));
    }
    for (i, code) in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999].into_iter().enumerate() {
        cases.push(Case::new(format!("7.9.{}", i + 1)).send(close_frame(code, b"")).fails(1002));
    }
    // Beyond Autobahn: 1015 (TLS failure) may not be sent either.
    cases.push(Case::new("7.9.x-1015").send(close_frame(1015, b"")).fails(1002));
    // Informational in Autobahn (1000, the code, or 1002 accepted): 1002 here, as neither is
    // a registered or private-use code.
    cases.push(Case::new("7.13.1").send(close_frame(5000, b"")).fails(1002));
    cases.push(Case::new("7.13.2").send(close_frame(65535, b"")).fails(1002));
    cases.into_iter().map(Case::close_order).collect()
}

#[tokio::test]
async fn section_7_close_handling() {
    run_section("7", section_7_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 9 Limits/performance.

/// Text payload: ASCII, so that any slice is valid UTF-8.
fn text_payload(len: usize) -> Vec<u8> {
    repeat(b"BAsd7&jh23", len)
}

fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// Frames of a message into one buffer (for fragmented megabytes: no per-frame vectors).
fn frames_into(opcode: u8, payload: &[u8], size: usize) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(payload.len() + payload.len() / size.max(1) * 14 + 14);
    let count = payload.len().div_ceil(size).max(1);
    for (i, chunk) in payload.chunks(size).enumerate() {
        write_frame(i + 1 == count, false, if i == 0 { opcode } else { CONT }, chunk, None, &mut out);
    }
    out.to_vec()
}

fn section_9_cases() -> impl Iterator<Item = Case> {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    let kinds = [(TEXT, "text"), (BINARY, "binary")];
    let payload = |opcode: u8, len: usize| if opcode == TEXT { text_payload(len) } else { binary_payload(len) };
    let message = |opcode: u8, p: &[u8]| if opcode == TEXT { text(p) } else { binary(p) };
    let mut plan: Vec<Box<dyn FnOnce() -> Case>> = Vec::new();
    // 9.1 / 9.2: one frame, increasing size.
    for (sub, (opcode, _)) in [(1, kinds[0]), (2, kinds[1])] {
        for (i, len) in [64 * KIB, 256 * KIB, MIB, 4 * MIB, 8 * MIB, 16 * MIB].into_iter().enumerate() {
            plan.push(Box::new(move || {
                let p = payload(opcode, len);
                Case::new(format!("9.{sub}.{}", i + 1)).send(whole(opcode, &p)).reply(message(opcode, &p))
            }));
        }
    }
    // 9.3 / 9.4: 4 MiB in fragments of increasing size.
    for (sub, (opcode, _)) in [(3, kinds[0]), (4, kinds[1])] {
        for (i, size) in [64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB].into_iter().enumerate() {
            plan.push(Box::new(move || {
                let p = payload(opcode, 4 * MIB);
                Case::new(format!("9.{sub}.{}", i + 1)).send(frames_into(opcode, &p, size)).reply(message(opcode, &p))
            }));
        }
    }
    // 9.5 / 9.6: 1 MiB in one frame, written in chops of increasing size.
    for (sub, (opcode, _)) in [(5, kinds[0]), (6, kinds[1])] {
        for (i, chop) in [64, 128, 256, 512, 1024, 2048].into_iter().enumerate() {
            plan.push(Box::new(move || {
                let p = payload(opcode, MIB);
                Case::new(format!("9.{sub}.{}", i + 1)).chop(whole(opcode, &p), chop).reply(message(opcode, &p))
            }));
        }
    }
    // 9.7 / 9.8: round trips of messages of increasing size (Autobahn: 1000 each; 200 here).
    for (sub, (opcode, _)) in [(7, kinds[0]), (8, kinds[1])] {
        for (i, len) in [0, 16, 64, 256, KIB, 4 * KIB].into_iter().enumerate() {
            plan.push(Box::new(move || {
                let p = payload(opcode, len);
                let mut case = Case::new(format!("9.{sub}.{}", i + 1));
                for _ in 0..200 {
                    case = case.send(whole(opcode, &p)).expect(message(opcode, &p), Frames::Any);
                }
                case
            }));
        }
    }
    // Beyond Autobahn: the configured limits, 1009 past them.
    plan.push(Box::new(|| {
        Case::new("9.limit.frame")
            .options(WsOptions::default().max_frame_size(1000))
            .send(whole(BINARY, &[1; 1001]))
            .fails(1009)
    }));
    plan.push(Box::new(|| {
        Case::new("9.limit.message")
            .options(WsOptions::default().max_message_size(1000))
            .frames(&fragmented(BINARY, &[1; 1200], 600), Chops::One)
            .fails(1009)
    }));
    plan.push(Box::new(|| {
        Case::new("9.limit.exact")
            .options(WsOptions::default().max_message_size(1000).max_frame_size(1000))
            .frames(&fragmented(TEXT, &[b'x'; 1000], 300), Chops::One)
            .reply(text(&[b'x'; 1000]))
    }));
    plan.into_iter().map(|make| make())
}

#[tokio::test]
async fn section_9_limits_performance() {
    run_section("9", section_9_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 10 Auto-fragmentation.

fn section_10_cases() -> Vec<Case> {
    let stars = vec![b'*'; 65536];
    let split = |size: usize| WsOptions::default().max_frame_payload(Some(size));
    vec![
        // The server sends 64 KiB in 1300-byte frames; the client, configured to split its
        // messages into 1300-byte frames, echoes it: 50 full frames and one of 536 bytes.
        Case::new("10.1.1")
            .options(split(1300))
            .frames(&fragmented(TEXT, &stars, 1300), Chops::One)
            .expect(text(&stars), Frames::SplitInto(1300)),
        // Beyond Autobahn: binary, a message that fits one frame, and an exact multiple.
        Case::new("10.1.1/binary")
            .options(split(1300))
            .send(whole(BINARY, &binary_payload(65536)))
            .expect(binary(&binary_payload(65536)), Frames::SplitInto(1300)),
        Case::new("10.1.1/small")
            .options(split(1300))
            .send(whole(TEXT, b"small"))
            .expect(text(b"small"), Frames::SplitInto(1300)),
        Case::new("10.1.1/exact")
            .options(split(1300))
            .send(whole(BINARY, &[7; 2600]))
            .expect(binary(&[7; 2600]), Frames::SplitInto(1300)),
        Case::new("10.1.1/deflate")
            .options(split(256))
            .deflate(deflate_default())
            .send(whole(TEXT, &text_payload(65536)))
            .expect(text(&text_payload(65536)), Frames::CompressedInto(256)),
        Case::new("10.1.1/one-byte")
            .options(split(1))
            .send(whole(TEXT, HELLO_UTF8.as_bytes()))
            .expect(text(HELLO_UTF8.as_bytes()), Frames::SplitInto(1)),
    ]
}

#[tokio::test]
async fn section_10_auto_fragmentation() {
    run_section("10", section_10_cases()).await;
}

// ---------------------------------------------------------------------------------------
// 12 / 13 permessage-deflate.

/// Autobahn's message sizes and auto-fragment sizes for 12.x.y and 13.x.y.
const DEFLATE_SIZES: [(usize, usize); 18] = [
    (16, 0),
    (64, 0),
    (256, 0),
    (1024, 0),
    (4096, 0),
    (8192, 0),
    (16384, 0),
    (32768, 0),
    (65536, 0),
    (131072, 0),
    (8192, 256),
    (16384, 256),
    (32768, 256),
    (65536, 256),
    (131072, 256),
    (131072, 1024),
    (131072, 4096),
    (131072, 32768),
];

/// Messages per case (Autobahn: 1000): enough for the compression contexts to carry over.
fn deflate_count(len: usize) -> usize {
    (16 * 1024 / len).clamp(2, 10)
}

/// A deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Stand-ins for Autobahn's test data files, same kinds: (description, is binary, data).
fn deflate_corpus() -> Vec<(&'static str, bool, Vec<u8>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let size = 256 * 1024;
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
    // Large JSON data (UTF-8, ASCII so that any slice is valid).
    let mut json = String::from("[");
    while json.len() < size {
        let (id, w, n) = (rng.below(100_000), words[rng.below(10) as usize], rng.below(10_000));
        let _ =
            write!(json, "{{\"id\":{id},\"name\":\"{w}-{n}\",\"price\":{}.{:02},\"tags\":[\"{w}\"]}},", n / 7, n % 100);
    }
    // A bitmap: smooth gradients and a little noise.
    let bitmap: Vec<u8> = (0..size).map(|i| ((i % 512) / 2 + (i / 512) / 3 + rng.below(4) as usize) as u8).collect();
    // German prose (UTF-8 with umlauts), sent as binary as Autobahn does with Faust.
    let lines = [
        "Habe nun, ach! Philosophie, ",
        "Juristerei und Medizin, ",
        "Und leider auch Theologie ",
        "Durchaus studiert, mit heißem Bemühn. ",
        "Da steh ich nun, ich armer Tor! ",
        "Und bin so klug als wie zuvor; ",
        "Heiße Magister, heiße Doktor gar ",
    ];
    let mut prose = String::new();
    while prose.len() < size {
        prose.push_str(lines[rng.below(lines.len() as u64) as usize]);
    }
    // Large HTML (UTF-8, ASCII).
    let mut html = String::from("<html><body>");
    while html.len() < size {
        let (w, n) = (words[rng.below(10) as usize], rng.below(1000));
        let _ = writeln!(html, "<div class=\"row-{n}\"><a href=\"/{w}/{n}\">{w} {n}</a><p>{w} {w} text</p></div>");
    }
    // A PDF: text streams between stretches of incompressible data.
    let mut pdf = b"%PDF-1.4\n".to_vec();
    while pdf.len() < size {
        pdf.extend_from_slice(b"1 0 obj << /Type /Page /Contents 2 0 R >> endobj\nstream\n");
        pdf.extend((0..1024).map(|_| rng.next() as u8));
        pdf.extend_from_slice(b"\nendstream\n");
    }
    vec![
        ("json", false, json.into_bytes()),
        ("bitmap", true, bitmap),
        ("prose", true, prose.into_bytes()),
        ("html", false, html.into_bytes()),
        ("pdf", true, pdf),
    ]
}

fn params(snct: bool, cnct: bool, server_bits: u8, client_bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

/// The default offer, accepted as it is (12.x and 13.1).
fn deflate_default() -> Deflate {
    Deflate {
        config: DeflateConfig::default(),
        answer: "permessage-deflate".into(),
        agreed: params(false, false, 15, 15),
    }
}

/// Autobahn's 13.x: the client asks for `server_no_context_takeover` and/or a server window;
/// the server grants them and asks the same of the client. (Autobahn uses 8 bits where 9 is
/// used here: zlib cannot deflate with an 8-bit window; see `13.x-window8`.)
fn deflate_13(no_context_takeover: bool, bits: Option<u8>) -> Deflate {
    let mut config = DeflateConfig::default().server_no_context_takeover(no_context_takeover);
    let mut answer = String::from("permessage-deflate");
    if no_context_takeover {
        answer.push_str("; server_no_context_takeover; client_no_context_takeover");
    }
    if let Some(bits) = bits {
        config = config.server_max_window_bits(Some(bits));
        let _ = write!(answer, "; server_max_window_bits={bits}; client_max_window_bits={bits}");
    }
    let bits = bits.unwrap_or(15);
    Deflate { config, answer, agreed: params(no_context_takeover, no_context_takeover, bits, bits) }
}

/// `count` messages of `len` bytes taken from `data` (cyclically, as Autobahn does), each
/// compressed by the server (fragmented if `frag` > 0) and echoed by the client, compressed
/// when it is at least the client's `compress_min_size` (64) and its window allows.
fn deflate_case(id: String, deflate: Deflate, data: &[u8], is_binary: bool, len: usize, frag: usize) -> Case {
    let options = EncodeOptions {
        max_frame_payload: (frag > 0).then_some(frag),
        compress_min_size: 0,
        ..EncodeOptions::default()
    };
    let mut encoder = Encoder::new(Role::Server, options, Some(deflate.agreed));
    let client_compresses = (9..=15).contains(&deflate.agreed.client_max_window_bits);
    let mut case = Case::new(id).deflate(deflate);
    let mut at = 0;
    for _ in 0..deflate_count(len) {
        let payload: Vec<u8> = data.iter().cycle().skip(at).take(len).copied().collect();
        at = (at + len) % data.len();
        let message = if is_binary { binary(&payload) } else { text(&payload) };
        let mut wire = BytesMut::new();
        encoder.encode(&message, &mut || [0; 4], &mut wire).unwrap();
        assert!(wire[0] & 0x40 != 0, "the server must compress");
        case = case.send(wire.to_vec()).expect(message, Frames::Compressed(client_compresses && len >= 64));
    }
    case
}

fn section_12_cases() -> impl Iterator<Item = Case> {
    let corpus = deflate_corpus();
    let mut plan: Vec<Box<dyn FnOnce() -> Case>> = Vec::new();
    // Beyond Autobahn, independent of moorline's own deflate code: RFC 7692 §7.2.3's examples.
    let hello = || text(b"Hello");
    let rfc = [
        ("12.0.1-rfc7692-7.2.3.1", vec![vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]], 1),
        (
            "12.0.2-rfc7692-7.2.3.1-fragmented",
            vec![vec![0x41, 0x03, 0xf2, 0x48, 0xcd], vec![0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]],
            1,
        ),
        (
            "12.0.3-rfc7692-7.2.3.2-context-takeover",
            vec![
                vec![0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                vec![0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00],
            ],
            2,
        ),
        (
            "12.0.4-rfc7692-7.2.3.3-stored-block",
            vec![vec![0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]],
            1,
        ),
        ("12.0.5-rfc7692-7.2.3.4-bfinal", vec![vec![0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]], 1),
    ];
    for (id, frames, count) in rfc {
        plan.push(Box::new(move || {
            let mut case = Case::new(id).deflate(deflate_default()).frames(&frames, Chops::One);
            for _ in 0..count {
                case = case.reply(hello());
            }
            case
        }));
    }
    // Beyond Autobahn: what must fail once permessage-deflate is on.
    let compressed_hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let violations: [(&str, Vec<u8>, u16); 5] = [
        (
            "12.0.6-rsv1-on-continuation",
            [frame(false, 4, TEXT, &compressed_hello[..3]), frame(true, 4, CONT, &compressed_hello[3..])].concat(),
            1002,
        ),
        ("12.0.7-rsv1-on-ping", frame(true, 4, PING, b""), 1002),
        ("12.0.8-rsv2", frame(true, 2, TEXT, b"x"), 1002),
        ("12.0.9-corrupt-data", frame(true, 4, BINARY, &[0xff, 0xff, 0xff, 0xff]), 1007),
        // "\xed\xa0\x80" (a surrogate) as a stored block: valid deflate, invalid text.
        (
            "12.0.10-inflates-to-invalid-utf8",
            frame(true, 4, TEXT, &[0x00, 0x03, 0x00, 0xfc, 0xff, 0xed, 0xa0, 0x80]),
            1007,
        ),
    ];
    for (id, bytes, code) in violations {
        plan.push(Box::new(move || Case::new(id).deflate(deflate_default()).send(bytes).fails(code)));
    }
    plan.push(Box::new(|| {
        // 4000 zero bytes: a few bytes compressed, over the limit inflated.
        let mut encoder = Encoder::new(Role::Server, EncodeOptions::default(), Some(deflate_default().agreed));
        let mut wire = BytesMut::new();
        encoder.encode(&binary(&[0; 4000]), &mut || [0; 4], &mut wire).unwrap();
        Case::new("12.0.11-inflates-past-max-message-size")
            .options(WsOptions::default().max_message_size(1000))
            .deflate(deflate_default())
            .send(wire.to_vec())
            .fails(1009)
    }));
    let corpus = std::sync::Arc::new(corpus);
    for (j, index) in (0..corpus.len()).enumerate() {
        for (i, (len, frag)) in DEFLATE_SIZES.into_iter().enumerate() {
            let corpus = corpus.clone();
            plan.push(Box::new(move || {
                let (_, is_binary, data) = &corpus[index];
                deflate_case(format!("12.{}.{}", j + 1, i + 1), deflate_default(), data, *is_binary, len, frag)
            }));
        }
    }
    plan.into_iter().map(|make| make())
}

#[tokio::test]
async fn section_12_permessage_deflate() {
    run_section("12", section_12_cases()).await;
}

fn section_13_cases() -> impl Iterator<Item = Case> {
    let json = std::sync::Arc::new(deflate_corpus().swap_remove(0).2);
    let setups = [
        deflate_13(false, None),
        deflate_13(true, None),
        deflate_13(false, Some(9)),
        deflate_13(false, Some(15)),
        deflate_13(true, Some(9)),
        deflate_13(true, Some(15)),
        // 13.7: Autobahn's client makes three offers and the server takes the first, the
        // same as 13.5; moorline makes one offer.
        deflate_13(true, Some(9)),
    ];
    let mut plan: Vec<Box<dyn FnOnce() -> Case>> = Vec::new();
    for (j, setup) in setups.into_iter().enumerate() {
        for (i, (len, frag)) in DEFLATE_SIZES.into_iter().enumerate() {
            let (json, setup) = (json.clone(), setup.clone());
            plan.push(Box::new(move || {
                deflate_case(format!("13.{}.{}", j + 1, i + 1), setup, &json, false, len, frag)
            }));
        }
    }
    // Beyond Autobahn: every window size the client may be asked for, with and without
    // context takeover, and different windows each way.
    for bits in 9..=15u8 {
        for snct in [false, true] {
            let json = json.clone();
            plan.push(Box::new(move || {
                let other = 24 - bits;
                let config = DeflateConfig::default()
                    .server_no_context_takeover(snct)
                    .server_max_window_bits(Some(bits))
                    .client_max_window_bits(Some(other.max(bits)));
                let mut answer =
                    format!("permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={other}");
                if snct {
                    answer.push_str("; server_no_context_takeover");
                }
                let deflate = Deflate { config, answer, agreed: params(snct, false, bits, other) };
                deflate_case(
                    format!("13.x-window{bits}-{other}{}", if snct { "-snct" } else { "" }),
                    deflate,
                    &json,
                    false,
                    4096,
                    0,
                )
            }));
        }
    }
    // Beyond Autobahn: the server asks for an 8-bit client window, which zlib cannot do: the
    // client sends uncompressed messages (RFC 7692 §7.1.2.2 allows it).
    let json8 = json.clone();
    plan.push(Box::new(move || {
        let deflate = Deflate {
            config: DeflateConfig::default(),
            answer: "permessage-deflate; client_max_window_bits=8".into(),
            agreed: params(false, false, 15, 8),
        };
        deflate_case("13.x-window8".into(), deflate, &json8, false, 4096, 0)
    }));
    plan.into_iter().map(|make| make())
}

#[tokio::test]
async fn section_13_permessage_deflate_parameters() {
    run_section("13", section_13_cases()).await;
}
