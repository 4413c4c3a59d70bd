//! Memory ceilings of a WebSocket under a hostile server, measured with a counting allocator:
//! a server that floods pings and never reads (the client keeps at most one pong waiting),
//! and a server that keeps sending while it reads nothing of ours (past the outbox's
//! high-water mark the client stops reading, over HTTP/1.1 and HTTP/2), and a server that
//! sends tiny messages, one HTTP/2 DATA frame each, to an owner that does not read.
//!
//! The servers are raw loopback servers written here (HTTP/1.1: the upgrade by hand; HTTP/2:
//! the `h2` crate with extended CONNECT), so that they can stop reading for good.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

#[global_allocator]
static HEAP: common::heap::Counting = common::heap::Counting;

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::heap;
use moorline::ws::{Message, WsOptions};
use moorline::{ConnectOptions, Connection, Events, Protocol, RetryPolicy, StreamRef};
use moorline_proto::ws::{accept_key, write_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const T: Duration = Duration::from_secs(5);
/// Bound of each scenario (debug builds on a loaded 2-core machine decode slowly).
const BOUND: Duration = Duration::from_secs(120);

/// Pings the flooding servers send: 32 MiB of 125-byte pings (about 264 000 of them).
const PING_FLOOD: usize = 32 << 20;
/// The most the client's heap may grow while a server floods [`PING_FLOOD`] of pings and
/// reads nothing (README, "WebSocket"): one waiting pong, the read buffer, and over HTTP/2
/// the stream's receive window (256 KiB by default) and h2's frame buffers. Before the fix,
/// one pong per ping was queued: about 34 MiB for this flood.
const PING_FLOOD_CEILING: usize = 1 << 20;

/// How long a server that reads nothing keeps sending in the pause scenario.
const SEND_FOR: Duration = Duration::from_secs(4);
/// The most that server may get through to a client whose outbox is full: what the kernel's
/// socket buffers on loopback hold (a few MiB), plus over HTTP/2 the stream window. Before
/// the fix the client read on, as fast as it decodes.
const PAUSED_CEILING: usize = 32 << 20;

fn opts() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never)
}

async fn open_ws(port: u16, protocol: Protocol) -> (Connection, Events, StreamRef) {
    let (conn, mut events) = moorline::open("127.0.0.1", port, opts().protocols(&[protocol])).unwrap();
    assert_eq!(events.await_up(T).await.unwrap(), protocol);
    let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
    events.await_ws_upgrade(&ws, T).await.unwrap();
    (conn, events, ws)
}

/// Whole server frames: `count` frames of `opcode` with `payload`.
fn frames(opcode: u8, payload: &[u8], count: usize) -> Bytes {
    let mut out = BytesMut::new();
    for _ in 0..count {
        write_frame(true, false, opcode, payload, None, &mut out);
    }
    out.freeze()
}

/// 64 KiB or so of 125-byte pings.
fn ping_chunk() -> Bytes {
    frames(0x9, &[b'p'; 125], 64 * 1024 / 127)
}

/// What a server sends: `chunk` over and over, from `start` on, until `total` bytes or
/// `for_at_most`, then `last`. `sent` counts the bytes the transport took.
struct Script {
    chunk: Bytes,
    total: usize,
    for_at_most: Duration,
    last: Bytes,
    sent: Arc<AtomicUsize>,
}

/// Accepts one HTTP/1.1 upgrade, then (after `start`) writes its script and reads nothing
/// ever again. The socket stays open until the returned sender is dropped or fired.
async fn h1_server(script: Script, start: oneshot::Receiver<()>) -> (u16, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        upgrade(&mut tcp).await;
        let _ = start.await;
        let deadline = tokio::time::Instant::now() + script.for_at_most;
        let sent = script.sent.clone();
        let _ = tokio::time::timeout_at(deadline, async {
            while sent.load(Ordering::Relaxed) < script.total {
                tcp.write_all(&script.chunk).await.unwrap();
                sent.fetch_add(script.chunk.len(), Ordering::Relaxed);
            }
        })
        .await;
        let _ = tokio::time::timeout(T, tcp.write_all(&script.last)).await;
        let _ = stop.await;
        drop(tcp);
    });
    (port, stop_tx)
}

async fn upgrade(tcp: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "client closed during the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let key = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        accept_key(&key)
    );
    tcp.write_all(answer.as_bytes()).await.unwrap();
}

/// Accepts one HTTP/2 connection and one extended CONNECT (RFC 8441), answers `200`, then
/// (after `start`) sends its script under flow control and never reads the stream.
async fn h2_server(script: Script, start: oneshot::Receiver<()>) -> (u16, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // A small stream window (what the client may send unread) and a large connection
        // window: h2 allows unread small DATA frames (the client's pongs) up to half the
        // connection window before it calls the peer abusive.
        let mut conn = h2::server::Builder::new()
            .enable_connect_protocol()
            .initial_window_size(16 << 10)
            .initial_connection_window_size(1 << 20)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        let (request, mut respond) = conn.accept().await.unwrap().unwrap();
        // Never read: the client's window for this stream closes once it is used up.
        let _unread = request.into_body();
        let driver = tokio::spawn(async move { while let Some(Ok(_)) = conn.accept().await {} });
        let mut send = respond.send_response(http::Response::new(()), false).unwrap();
        let _ = start.await;
        let deadline = tokio::time::Instant::now() + script.for_at_most;
        let sent = script.sent.clone();
        let mut at = 0;
        let _ = tokio::time::timeout_at(deadline, async {
            while sent.load(Ordering::Relaxed) < script.total {
                let chunk = script.chunk.slice(at..);
                send.reserve_capacity(chunk.len());
                let granted = poll_fn(|cx| send.poll_capacity(cx)).await.unwrap().unwrap();
                let n = granted.min(chunk.len());
                send.send_data(chunk.slice(..n), false).unwrap();
                sent.fetch_add(n, Ordering::Relaxed);
                at = (at + n) % script.chunk.len();
            }
        })
        .await;
        // The script's chunks are whole frames: finish the one under way, then the last.
        if at > 0 {
            let _ = send.send_data(script.chunk.slice(at..), false);
        }
        let _ = send.send_data(script.last, false);
        let _ = stop.await;
        driver.abort();
    });
    (port, stop_tx)
}

/// A server floods pings and never reads: the client's heap grows by at most the ceiling.
async fn ping_flood(protocol: Protocol) {
    let _serial = heap::serial().await;
    let sent = Arc::new(AtomicUsize::new(0));
    let script = Script {
        chunk: ping_chunk(),
        total: PING_FLOOD,
        for_at_most: BOUND,
        last: frames(0x1, b"done", 1),
        sent: sent.clone(),
    };
    let (start_tx, start) = oneshot::channel();
    let (port, _stop) = match protocol {
        Protocol::Http1 => h1_server(script, start).await,
        Protocol::Http2 => h2_server(script, start).await,
    };
    let (_conn, mut events, ws) = open_ws(port, protocol).await;
    let base = heap::live();
    heap::reset_peak();
    start_tx.send(()).unwrap();
    let last = events.await_ws(&ws, BOUND).await.unwrap();
    assert_eq!(last, Message::text("done"));
    let grew = heap::peak().saturating_sub(base);
    assert!(sent.load(Ordering::Relaxed) >= PING_FLOOD);
    eprintln!("{protocol}: {} MiB of pings, heap grew by {grew} bytes", PING_FLOOD >> 20);
    assert!(grew <= PING_FLOOD_CEILING, "{protocol}: the heap grew by {grew} bytes (ceiling {PING_FLOOD_CEILING})");
}

#[tokio::test]
async fn a_ping_flood_from_a_server_that_never_reads_is_bounded_over_http1() {
    tokio::time::timeout(BOUND, ping_flood(Protocol::Http1)).await.unwrap();
}

#[tokio::test]
async fn a_ping_flood_from_a_server_that_never_reads_is_bounded_over_http2() {
    tokio::time::timeout(BOUND, ping_flood(Protocol::Http2)).await.unwrap();
}

/// A server reads nothing of ours until the client's outbox is full, then sends for a
/// while: the client must have stopped reading, so the server gets little through.
async fn paused_while_full(protocol: Protocol) {
    let _serial = heap::serial().await;
    let sent = Arc::new(AtomicUsize::new(0));
    let script = Script {
        chunk: frames(0x2, &[7u8; 64 << 10], 1),
        total: 512 << 20,
        for_at_most: SEND_FOR,
        last: Bytes::new(),
        sent: sent.clone(),
    };
    let (start_tx, start) = oneshot::channel();
    let (port, _stop) = match protocol {
        Protocol::Http1 => h1_server(script, start).await,
        Protocol::Http2 => h2_server(script, start).await,
    };
    let (conn, mut events, ws) = open_ws(port, protocol).await;
    let big = Message::binary(vec![1u8; 64 << 10]);
    // Over HTTP/1.1 the kernel's buffers fill, over HTTP/2 the server's window (16 KiB);
    // then the outbox (256 KiB): a send then waits, over both alike.
    let mut n = 0;
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(500), conn.ws_send(&ws, big.clone())).await {
        r.unwrap();
        n += 1;
        assert!(n < 2000, "ws_send never waited");
    }
    // The owner takes everything that arrives: only the full outbox may stop the reading.
    let owner = tokio::spawn(async move {
        let mut got = 0usize;
        while let Some(_ev) = events.next().await {
            got += 1;
        }
        got
    });
    start_tx.send(()).unwrap();
    tokio::time::sleep(SEND_FOR + Duration::from_millis(500)).await;
    let through = sent.load(Ordering::Relaxed);
    eprintln!("{protocol}: the server got {through} bytes through in {SEND_FOR:?}");
    assert!(through <= PAUSED_CEILING, "{protocol}: the client read {through} bytes while its outbox was full");
    conn.close();
    tokio::time::timeout(T, owner).await.unwrap().unwrap();
}

#[tokio::test]
async fn reading_stops_while_the_outbox_is_full_over_http1() {
    tokio::time::timeout(BOUND, paused_while_full(Protocol::Http1)).await.unwrap();
}

#[tokio::test]
async fn reading_stops_while_the_outbox_is_full_over_http2() {
    tokio::time::timeout(BOUND, paused_while_full(Protocol::Http2)).await.unwrap();
}

/// Messages the tiny-frame server sends, one DATA frame each (7 bytes: 9 with the WebSocket
/// header).
const TINY: usize = 100_000;
/// The most the client's heap may grow while [`TINY`] such messages wait for an owner that
/// does not read: the stream window held in one buffer (256 KiB, in a buffer of up to twice
/// that), the events queued for the owner (256 deliveries of up to 32 messages: some
/// 800 KB of these), and the frames h2 may hold unread before the stream task takes them
/// (`small_frame_budget`, 4 MiB of overhead: at most some 17,000 of these frames, 2.5 MB).
/// Measured: 1.2 MB.
const TINY_CEILING: usize = 6 << 20;

/// What the tiny-frame server sends: `count` pieces, `0000000`, `0000001`..., each 7 bytes
/// but every 500th (from the 250th), 300 bytes (`0000250` and dots), then `done`.
fn pieces(count: usize) -> impl Iterator<Item = String> {
    (0..count)
        .map(|i| if i % 500 == 250 { format!("{:.<300}", format!("{i:07}")) } else { format!("{i:07}") })
        .chain(std::iter::once("done".to_owned()))
}

/// One HTTP/2 frame: its header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The send windows a hand-written HTTP/2 server keeps from the client's frames.
#[derive(Default)]
struct Windows {
    connection: i64,
    stream: i64,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE, once known.
    initial: Option<i64>,
    /// Our answer's HEADERS may go (the client's extended CONNECT came).
    connect: bool,
}

/// Accepts one HTTP/2 connection, written by hand so that each message goes in a DATA frame
/// of its own and the server itself holds nothing (the heap the test counts is the
/// client's): SETTINGS with extended CONNECT, `200` to the client's request on stream 1,
/// then (after `start`) `count` [`pieces`] and `done`, within the
/// client's flow-control windows (read from its SETTINGS and WINDOW_UPDATEs). `ws`: each
/// piece a WebSocket text message (the request was an extended CONNECT), otherwise a piece
/// of a response body, ended by an empty DATA frame with END_STREAM.
async fn h2_tiny_server(start: oneshot::Receiver<()>, ws: bool, count: usize) -> (u16, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut rd, mut wr) = tcp.into_split();
        let windows = Arc::new((
            std::sync::Mutex::new(Windows { connection: 65_535, ..Windows::default() }),
            tokio::sync::Notify::new(),
        ));
        // SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441).
        wr.write_all(&h2_frame(0x4, 0, 0, &[0, 8, 0, 0, 0, 1])).await.unwrap();
        let reader = tokio::spawn({
            let windows = windows.clone();
            async move {
                let mut preface = [0u8; 24];
                rd.read_exact(&mut preface).await.unwrap();
                loop {
                    let mut head = [0u8; 9];
                    if rd.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let (kind, flags) = (head[3], head[4]);
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    let mut payload = vec![0u8; len];
                    rd.read_exact(&mut payload).await.unwrap();
                    let (lock, changed) = &*windows;
                    let mut w = lock.lock().unwrap();
                    match kind {
                        0x4 if flags & 1 == 0 => {
                            for setting in payload.chunks_exact(6) {
                                if setting[..2] == [0, 4] {
                                    let v =
                                        i64::from(u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
                                    if w.connect {
                                        w.stream += v - w.initial.unwrap_or(65_535);
                                    }
                                    w.initial = Some(v);
                                }
                            }
                        }
                        0x8 => {
                            let v = i64::from(
                                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
                            );
                            if stream == 0 { w.connection += v } else { w.stream += v }
                        }
                        0x1 if stream == 1 => {
                            w.connect = true;
                            w.stream += w.initial.unwrap_or(65_535);
                        }
                        _ => {}
                    }
                    drop(w);
                    changed.notify_one();
                }
            }
        });
        // Our SETTINGS ACK for the client's, then the answer, once its CONNECT came.
        wr.write_all(&h2_frame(0x4, 1, 0, &[])).await.unwrap();
        let (lock, changed) = &*windows;
        while !lock.lock().unwrap().connect {
            changed.notified().await;
        }
        wr.write_all(&h2_frame(0x1, 0x4, 1, &[0x88])).await.unwrap();
        let _ = start.await;
        let texts = pieces(count);
        for text in texts {
            let piece = if ws { frames(0x1, text.as_bytes(), 1) } else { Bytes::from(text) };
            let n = piece.len() as i64;
            loop {
                let notified = changed.notified();
                {
                    let mut w = lock.lock().unwrap();
                    if w.connection >= n && w.stream >= n {
                        w.connection -= n;
                        w.stream -= n;
                        break;
                    }
                }
                notified.await;
            }
            if wr.write_all(&h2_frame(0x0, 0, 1, &piece)).await.is_err() {
                return; // the client went away: the test says why
            }
        }
        if !ws {
            let _ = wr.write_all(&h2_frame(0x0, 0x1, 1, &[])).await;
        }
        let _ = stop.await;
        reader.abort();
    });
    (port, stop_tx)
}

/// h2 ends a connection whose small DATA frames pile up unread (`ENHANCE_YOUR_CALM`): the
/// client takes every frame as it comes even while its owner does not read, holding the
/// bytes within the stream window, so the connection stays up, nothing is lost, and the
/// heap stays bounded.
#[tokio::test]
async fn tiny_frames_to_an_owner_that_does_not_read_keep_the_connection_over_http2() {
    tokio::time::timeout(BOUND, async {
        let _serial = heap::serial().await;
        let (start_tx, start) = oneshot::channel();
        let (port, _stop) = h2_tiny_server(start, true, TINY).await;
        let (_conn, mut events, ws) = open_ws(port, Protocol::Http2).await;
        let base = heap::live();
        heap::reset_peak();
        start_tx.send(()).unwrap();
        // The owner reads nothing for a while: the window fills, the frames come on.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for (i, want) in pieces(TINY).enumerate() {
            match events.next().await.unwrap() {
                moorline::Event::Ws { message, .. } => assert_eq!(message, Message::text(want)),
                other => panic!("message {i}: {other:?}"),
            }
        }
        let _ = ws;
        let grew = heap::peak().saturating_sub(base);
        eprintln!("{TINY} tiny messages, one frame each, owner asleep: heap grew by {grew} bytes");
        assert!(grew <= TINY_CEILING, "the heap grew by {grew} bytes (ceiling {TINY_CEILING})");
    })
    .await
    .unwrap();
}

/// A response body's `Data` events up to the one with `fin`: the bytes and how many chunks.
async fn read_body(events: &mut Events) -> (Vec<u8>, usize) {
    let (mut body, mut chunks) = (Vec::new(), 0);
    loop {
        match tokio::time::timeout(T, events.next()).await.unwrap().unwrap() {
            moorline::Event::Data { data, fin, .. } => {
                body.extend_from_slice(&data);
                chunks += 1;
                if fin {
                    return (body, chunks);
                }
            }
            other => panic!("after {} bytes: {other:?}", body.len()),
        }
    }
}

/// The same for a response body: the owner gets it all, in order, in fewer and larger
/// chunks (what came while one waited goes next, as one).
#[tokio::test]
async fn a_body_of_tiny_frames_to_an_owner_that_does_not_read_keeps_the_connection_over_http2() {
    tokio::time::timeout(BOUND, async {
        let _serial = heap::serial().await;
        let (start_tx, start) = oneshot::channel();
        let (port, _stop) = h2_tiny_server(start, false, TINY).await;
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts().protocols(&[Protocol::Http2])).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let get = conn.get("/", http::HeaderMap::new()).await.unwrap();
        let base = heap::live();
        heap::reset_peak();
        start_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(events.await_response(&get, T).await.unwrap().status.as_u16(), 200);
        let (body, chunks) = read_body(&mut events).await;
        let want: Vec<u8> = pieces(TINY).collect::<String>().into();
        assert!(body == want, "{} bytes, {} expected", body.len(), want.len());
        assert!(chunks < TINY, "{chunks} chunks: none was joined");
        let grew = heap::peak().saturating_sub(base);
        eprintln!("{TINY} tiny body pieces, one frame each, owner asleep: {chunks} chunks, heap grew by {grew} bytes");
        assert!(grew <= TINY_CEILING, "the heap grew by {grew} bytes (ceiling {TINY_CEILING})");
    })
    .await
    .unwrap();
}

/// A whole body (under the stream window) and its end arrive while the owner sleeps and the
/// stream task waits to deliver (a queue of 16 deliveries): what it holds then is several
/// chunks (the 300-byte pieces are kept apart) and the end, and the owner gets every byte,
/// with `fin` on the last chunk only.
#[tokio::test]
async fn a_body_that_ends_while_held_is_delivered_whole_over_http2() {
    tokio::time::timeout(BOUND, async {
        let (start_tx, start) = oneshot::channel();
        let (port, _stop) = h2_tiny_server(start, false, 20_000).await;
        let opts = opts().protocols(&[Protocol::Http2]).event_buffer(16);
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let get = conn.get("/", http::HeaderMap::new()).await.unwrap();
        start_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(events.await_response(&get, T).await.unwrap().status.as_u16(), 200);
        let (body, _) = read_body(&mut events).await;
        let want: Vec<u8> = pieces(20_000).collect::<String>().into();
        assert!(body == want, "{} bytes, {} expected", body.len(), want.len());
    })
    .await
    .unwrap();
}
