//! Memory a server can make the client hold while its owner is behind, measured with a
//! counting allocator (issue 14, items 1, 3 and 4), and queries answered while the owner is
//! behind (item 11).
//!
//! Every scenario runs against a real server on 127.0.0.1 (raw sockets written here, or the
//! test kit's), one at a time (`heap::serial`): the heap counters are process-wide. A
//! measurement is the peak of live heap bytes (client and server of the test together) over
//! the flood, above what was live when it started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use moorline::ws::{DeflateConfig, DeflateParams, Message, WsOptions};
use moorline::{ConnectOptions, Error, Event, Protocol, RetryPolicy, StreamError, StreamState};
use moorline_proto::ws::{EncodeOptions, Encoder, Role, accept_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use common::{T, bounded, heap};

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
/// `ConnectOptions::event_buffer_bytes` by default.
const DEFAULT_BUDGET: usize = 4 * MIB;

fn options() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never)
}

/// Reads a request head (up to the blank line) byte by byte.
async fn read_head(sock: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(sock.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

/// Accepts one connection and answers its WebSocket upgrade with a `101`.
async fn accept_ws(listener: &TcpListener, extensions: Option<&str>) -> TcpStream {
    let (mut sock, _) = listener.accept().await.unwrap();
    let head = read_head(&mut sock).await;
    let key = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap();
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n",
        accept_key(&key)
    );
    if let Some(e) = extensions {
        response.push_str(&format!("sec-websocket-extensions: {e}\r\n"));
    }
    response.push_str("\r\n");
    sock.write_all(response.as_bytes()).await.unwrap();
    sock
}

/// Reads and drops whatever the client sends until it closes.
async fn drain(mut sock: impl tokio::io::AsyncRead + Unpin) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = sock.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// Waits until the server wrote `total` bytes or made no progress for a second (it is blocked:
/// the client stopped reading).
async fn until_stalled(progress: &AtomicUsize, total: usize) {
    let mut last = usize::MAX;
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = progress.load(Ordering::Relaxed);
        if now >= total {
            return;
        }
        still = if now == last { still + 1 } else { 0 };
        if still >= 4 {
            return;
        }
        last = now;
    }
}

/// Starts a peak measurement; returns what is live now.
fn measure() -> usize {
    let base = heap::live();
    heap::reset_peak();
    base
}

fn grown_since(base: usize) -> usize {
    heap::peak().saturating_sub(base)
}

/// Item 1: an owner that does not read, a server that floods 1 MiB WebSocket messages. What
/// waits for the owner is bounded by the byte budget (plus one message), not by the number of
/// deliveries; once the owner reads, every message arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_flood_of_large_messages_stays_under_the_byte_budget() {
    let _serial = heap::serial().await;
    bounded(async {
        const N: usize = 64;
        const SIZE: usize = MIB;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let filler = vec![0xa5u8; SIZE - 8];
        let progress = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let written = progress.clone();
        let server = tokio::spawn(async move {
            let mut sock = accept_ws(&listener, None).await;
            let _ = go_rx.await;
            for i in 0..N {
                let mut head = [0u8; 18];
                head[0] = 0x82;
                head[1] = 127;
                head[2..10].copy_from_slice(&(SIZE as u64).to_be_bytes());
                head[10..18].copy_from_slice(&(i as u64).to_be_bytes());
                if sock.write_all(&head).await.is_err() || sock.write_all(&filler).await.is_err() {
                    return;
                }
                written.fetch_add(SIZE, Ordering::Relaxed);
            }
            drain(sock).await;
        });

        let (conn, mut events) = moorline::open("127.0.0.1", port, options()).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();

        let base = measure();
        go_tx.send(()).unwrap();
        until_stalled(&progress, N * SIZE).await;
        let grown = grown_since(base);
        // The budget, one delivery past it, and the message being read (its buffer may
        // double while it grows).
        let ceiling = DEFAULT_BUDGET + 3 * SIZE + MIB;
        println!("WebSocket flood: heap grew by {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        assert!(
            grown <= ceiling,
            "the client took in {} KiB for an owner that does not read (ceiling {} KiB)",
            grown / KIB,
            ceiling / KIB
        );
        assert!(progress.load(Ordering::Relaxed) < N * SIZE, "the server was never slowed down");

        // Nothing lost: every message, in order.
        for i in 0..N {
            match events.await_ws(&ws, T).await.unwrap() {
                Message::Binary(b) => {
                    assert_eq!(b.len(), SIZE);
                    assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), i as u64);
                }
                other => panic!("message {i}: {other:?}"),
            }
        }
        drop((conn, events));
        server.abort();
    })
    .await;
}

/// Item 1 for HTTP/1.1 bodies: a chunked body flood is held to the budget too, and arrives
/// whole once the owner reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_body_flood_stays_under_the_byte_budget() {
    let _serial = heap::serial().await;
    bounded(async {
        const CHUNK: usize = 64 * KIB;
        const CHUNKS: usize = 256; // 16 MiB
        const BUDGET: usize = 256 * KIB;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let chunks: Vec<Vec<u8>> = (0..251u8).map(|b| vec![b; CHUNK]).collect();
        let progress = Arc::new(AtomicUsize::new(0));
        let written = progress.clone();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_head(&mut sock).await;
            sock.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            let _ = go_rx.await;
            for k in 0..CHUNKS {
                let size = format!("{CHUNK:x}\r\n");
                let ok = sock.write_all(size.as_bytes()).await.is_ok()
                    && sock.write_all(&chunks[k % 251]).await.is_ok()
                    && sock.write_all(b"\r\n").await.is_ok();
                if !ok {
                    return;
                }
                written.fetch_add(CHUNK, Ordering::Relaxed);
            }
            let _ = sock.write_all(b"0\r\n\r\n").await;
            drain(sock).await;
        });

        let opts = options().event_buffer_bytes(BUDGET);
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts).unwrap();
        events.await_up(T).await.unwrap();
        let s = conn.get("/flood", http::HeaderMap::new()).await.unwrap();
        let response = events.await_response(&s, T).await.unwrap();
        assert_eq!(response.status, 200);

        let base = measure();
        go_tx.send(()).unwrap();
        until_stalled(&progress, CHUNKS * CHUNK).await;
        let grown = grown_since(base);
        // The budget, one chunk past it (at most one read), the read buffer, and slack.
        let ceiling = BUDGET + 2 * CHUNK + 512 * KIB;
        println!("HTTP/1.1 body flood: heap grew by {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        assert!(grown <= ceiling, "the client took in {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        assert!(progress.load(Ordering::Relaxed) < CHUNKS * CHUNK, "the server was never slowed down");

        // The whole body arrives, in order.
        let mut offset = 0;
        loop {
            match common::next(&mut events).await {
                Event::Data { stream, data, fin } => {
                    assert_eq!(stream, s);
                    for (i, byte) in data.iter().enumerate() {
                        let expected = (((offset + i) / CHUNK) % 251) as u8;
                        if *byte != expected {
                            panic!("byte {} is {byte}, expected {expected}", offset + i);
                        }
                    }
                    offset += data.len();
                    if fin {
                        break;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(offset, CHUNKS * CHUNK);
        drop((conn, events));
        server.abort();
    })
    .await;
}

/// Item 1 over HTTP/2: stream tasks take room in the budget before they hand a chunk over
/// and release its flow-control capacity, so a body flood stops at the budget plus the
/// windows (the server cannot send past them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_body_flood_stays_under_the_byte_budget() {
    let _serial = heap::serial().await;
    bounded(async {
        const BODY: usize = 64 * MIB;
        const BUDGET: usize = 256 * KIB;
        let server = common::plain_server(true).await;
        let opts = options().protocols(&[Protocol::Http2]).event_buffer_bytes(BUDGET);
        let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts).unwrap();
        events.await_up(T).await.unwrap();
        let base = measure();
        let s = conn.get(&format!("/big?bytes={BODY}"), http::HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_response(&s, T).await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let grown = grown_since(base);
        // The budget, one chunk past it, and at most the connection window (1 MiB) received
        // but not released, in h2's buffers; slack for the test server's own.
        let ceiling = BUDGET + 2 * MIB;
        println!("HTTP/2 body flood: heap grew by {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        assert!(grown <= ceiling, "the client took in {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        let mut got = 0;
        loop {
            match common::next(&mut events).await {
                Event::Data { data, fin, .. } => {
                    assert!(data.iter().all(|b| *b == b'x'));
                    got += data.len();
                    if fin {
                        break;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, BODY);
    })
    .await;
}

/// Item 1 for WebSockets over HTTP/2 (RFC 8441): the stream task waits for room before it
/// hands a message over (meanwhile it takes DATA only into its hold, releasing no capacity).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_over_http2_flood_stays_under_the_byte_budget() {
    let _serial = heap::serial().await;
    bounded(async {
        const N: usize = 24;
        const SIZE: usize = MIB;
        let server = moorline_testkit::ws::MockServer::builder().http2(true).start().await.unwrap();
        let opts = options().protocols(&[Protocol::Http2]);
        let (conn, mut events) = moorline::open("127.0.0.1", server.addr().port(), opts).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/flood", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        // The server lists a session once its task runs, which may be just after we saw the upgrade.
        assert!(server.wait_for_open_connections(1, T).await);
        let client = server.clients()[0].id;
        let payload = bytes::Bytes::from(vec![3u8; SIZE]);
        let base = measure();
        for _ in 0..N {
            assert!(server.inject_to(client, moorline_testkit::ws::Frame::binary(payload.clone())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let grown = grown_since(base);
        // The budget, one message past it, the message being read, the windows, and the test
        // server's own buffers (it encodes what it sends).
        let ceiling = DEFAULT_BUDGET + 6 * SIZE;
        println!("WebSocket over HTTP/2 flood: heap grew by {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        assert!(grown <= ceiling, "the client took in {} KiB (ceiling {} KiB)", grown / KIB, ceiling / KIB);
        for _ in 0..N {
            assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::Binary(payload.clone()));
        }
    })
    .await;
}

/// Item 3 over HTTP/1.1: a server that answers with `103` responses without end. The decoder
/// refuses them past the head limit (64 KiB by default) with a typed error; the await fails
/// with it at once, and memory stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_informational_flood_is_refused_within_bounded_memory() {
    let _serial = heap::serial().await;
    bounded(async {
        const FLOOD: usize = 16 * MIB;
        let hint: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n";
        let block: Vec<u8> = hint.repeat(MIB / hint.len());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_head(&mut sock).await;
            let _ = go_rx.await;
            let mut sent = 0;
            while sent < FLOOD {
                if sock.write_all(&block).await.is_err() {
                    return;
                }
                sent += block.len();
            }
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            drain(sock).await;
        });

        let (conn, mut events) = moorline::open("127.0.0.1", port, options()).unwrap();
        events.await_up(T).await.unwrap();
        let s = conn.get("/", http::HeaderMap::new()).await.unwrap();
        let base = measure();
        go_tx.send(()).unwrap();
        let result = events.await_response(&s, Duration::from_secs(20)).await;
        let grown = grown_since(base);
        println!("HTTP/1.1 1xx flood: heap grew by {} KiB", grown / KIB);
        assert!(grown <= 4 * MIB, "a 1xx flood grew the heap by {} KiB", grown / KIB);
        match result {
            Err(Error::Down(reason)) => assert!(reason.to_string().contains("1xx"), "{reason}"),
            other => panic!("expected the connection to go down on the 1xx flood, got {other:?}"),
        }
        drop((conn, events));
        server.abort();
    })
    .await;
}

/// Writes one HTTP/2 frame.
async fn write_frame(
    sock: &mut (impl tokio::io::AsyncWrite + Unpin),
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) {
    let mut head = [0u8; 9];
    head[..3].copy_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    head[3] = kind;
    head[4] = flags;
    head[5..].copy_from_slice(&stream.to_be_bytes());
    sock.write_all(&head).await.unwrap();
    sock.write_all(payload).await.unwrap();
}

/// Reads one HTTP/2 frame: (type, flags, stream).
async fn read_frame(sock: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, u8, u32) {
    let mut head = [0u8; 9];
    sock.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    sock.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff)
}

/// Item 3 over HTTP/2: h2 keeps every 1xx HEADERS frame of a stream until it is polled
/// (HEADERS are not flow-controlled). The stream task drains them as they come and fails the
/// stream past the limit (the h2 header list limit, 64 KiB by default, for all its 1xx).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_informational_flood_is_refused_within_bounded_memory() {
    let _serial = heap::serial().await;
    bounded(async {
        const FLOOD: usize = 4 * MIB;
        // HEADERS, END_HEADERS, stream 1: `:status: 103` as a literal with the static name 8.
        let one: [u8; 14] = [0, 0, 5, 1, 4, 0, 0, 0, 1, 0x08, 0x03, b'1', b'0', b'3'];
        let block: Vec<u8> = one.repeat(64 * KIB / one.len());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (mut rd, mut wr) = sock.into_split();
            let mut preface = [0u8; 24];
            rd.read_exact(&mut preface).await.unwrap();
            write_frame(&mut wr, 4, 0, 0, &[]).await; // our SETTINGS
            // Their SETTINGS (acknowledged), then frames until the request's HEADERS.
            loop {
                let (kind, flags, stream) = read_frame(&mut rd).await;
                if kind == 4 && flags & 1 == 0 {
                    write_frame(&mut wr, 4, 1, 0, &[]).await;
                }
                if kind == 1 && stream == 1 {
                    break;
                }
            }
            tokio::spawn(drain(rd));
            let _ = go_rx.await;
            let mut sent = 0;
            while sent < FLOOD {
                if wr.write_all(&block).await.is_err() {
                    return;
                }
                sent += block.len();
            }
            // `:status: 200` (static index 8), END_STREAM.
            let _ = wr.write_all(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });

        let opts = options().protocols(&[Protocol::Http2]);
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let s = conn.get("/", http::HeaderMap::new()).await.unwrap();
        // Let the request reach the server before the measurement starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base = measure();
        go_tx.send(()).unwrap();
        let result = events.await_response(&s, Duration::from_secs(20)).await;
        let grown = grown_since(base);
        println!("HTTP/2 1xx flood: heap grew by {} KiB", grown / KIB);
        assert!(grown <= 4 * MIB, "a 1xx flood grew the heap by {} KiB", grown / KIB);
        match result {
            Err(Error::Stream(StreamError::Protocol(moorline::ProtocolFailure::InformationalTooLarge { .. }))) => {}
            other => panic!("expected the stream to fail on the 1xx flood, got {other:?}"),
        }
        drop((conn, events));
        server.abort();
    })
    .await;
}

/// Item 4 over a real socket: a permessage-deflate bomb is refused with 1009 while inflating,
/// and the inflated buffer never grows past the message limit (it reached twice the limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_bomb_costs_at_most_the_message_limit() {
    let _serial = heap::serial().await;
    bounded(async {
        const LIMIT: usize = 8 * MIB;
        let params = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        // 64 MiB of zeros: well under 1 MiB on the wire.
        let mut bomb = BytesMut::new();
        {
            let level9 = EncodeOptions { compression_level: 9, ..EncodeOptions::default() };
            let mut encoder = Encoder::new(Role::Server, level9, Some(params));
            encoder.encode(&Message::binary(vec![0u8; 64 * MIB]), &mut || [0; 4], &mut bomb).unwrap();
        }
        assert!(bomb.len() < MIB, "{}", bomb.len());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let mut sock = accept_ws(&listener, Some("permessage-deflate")).await;
            let _ = go_rx.await;
            let _ = sock.write_all(&bomb).await;
            drain(sock).await;
        });

        let (conn, mut events) = moorline::open("127.0.0.1", port, options()).unwrap();
        events.await_up(T).await.unwrap();
        let ws_options = WsOptions::default().deflate(DeflateConfig::default()).max_message_size(LIMIT);
        let ws = conn.ws_upgrade("/", ws_options).await.unwrap();
        let upgraded = events.await_ws_upgrade(&ws, T).await.unwrap();
        assert!(upgraded.deflate.is_some());
        let base = measure();
        go_tx.send(()).unwrap();
        let result = events.await_ws(&ws, T).await;
        let grown = grown_since(base);
        println!("deflate bomb: heap grew by {} KiB (limit {} KiB)", grown / KIB, LIMIT / KIB);
        match result {
            Err(Error::Stream(StreamError::WsProtocol(e))) => assert_eq!(e.close_code().0, 1009, "{e}"),
            other => panic!("expected the bomb to be refused, got {other:?}"),
        }
        assert!(grown <= LIMIT + MIB, "a deflate bomb cost {} KiB for a {} KiB limit", grown / KIB, LIMIT / KIB);
        drop((conn, events));
        server.abort();
    })
    .await;
}

/// Item 11: the owner is behind (it does not read a large body) and asks `stream_info`
/// between events; the answer comes although the worker waits for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_info_answers_while_the_owner_is_behind() {
    let _serial = heap::serial().await;
    bounded(async {
        const BODY: usize = 32 * MIB;
        for h2 in [false, true] {
            let server = common::plain_server(h2).await;
            let opts = if h2 { options().protocols(&[Protocol::Http2]) } else { options() };
            let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts).unwrap();
            events.await_up(T).await.unwrap();
            let s = conn.get(&format!("/big?bytes={BODY}"), http::HeaderMap::new()).await.unwrap();
            let response = events.await_response(&s, T).await.unwrap();
            assert_eq!(response.status, 200);
            // The owner reads nothing for a while: the worker fills what waits for it, then waits.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let info = tokio::time::timeout(T, conn.stream_info(&s))
                .await
                .unwrap_or_else(|_| panic!("h2={h2}: stream_info got no answer while the owner is behind"))
                .unwrap()
                .expect("the stream is in flight");
            assert_eq!(info.state, StreamState::Receiving, "h2={h2}");
            // A stream that does not exist is answered too.
            let other = conn.get("/hello", http::HeaderMap::new()).await.unwrap();
            conn.cancel(&other).await.unwrap();
            let none = tokio::time::timeout(T, conn.stream_info(&other)).await.expect("no answer").unwrap();
            assert!(none.is_none(), "h2={h2}: {none:?}");
            // Then the whole body arrives.
            let mut got = 0;
            loop {
                match common::next(&mut events).await {
                    Event::Data { stream, data, fin } if stream == s => {
                        got += data.len();
                        if fin {
                            break;
                        }
                    }
                    // The cancelled request may have been answered before the cancel took effect.
                    Event::StreamError { stream, .. } | Event::Response { stream, .. } | Event::Data { stream, .. }
                        if stream == other => {}
                    other => panic!("h2={h2}: {other:?}"),
                }
            }
            assert_eq!(got, BODY, "h2={h2}");
            // Over HTTP/2 the stream task reports its end just after its last event.
            tokio::time::timeout(T, async {
                while conn.stream_info(&s).await.unwrap().is_some() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("h2={h2}: the stream is still listed after its end"));
        }
    })
    .await;
}

/// Item 11 on a WebSocket over HTTP/1.1: the connection is the WebSocket, the owner is behind
/// on a flood of messages, and `stream_info` is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_info_answers_on_a_websocket_whose_owner_is_behind() {
    let _serial = heap::serial().await;
    bounded(async {
        const N: usize = 32;
        const SIZE: usize = MIB;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut sock = accept_ws(&listener, None).await;
            let payload = vec![7u8; SIZE];
            for _ in 0..N {
                let mut head = [0u8; 10];
                head[0] = 0x82;
                head[1] = 127;
                head[2..10].copy_from_slice(&(SIZE as u64).to_be_bytes());
                if sock.write_all(&head).await.is_err() || sock.write_all(&payload).await.is_err() {
                    return;
                }
            }
            drain(sock).await;
        });
        // One delivery of room: the worker waits as soon as the owner is one message behind.
        let (conn, mut events) = moorline::open("127.0.0.1", port, options().event_buffer(1)).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let info = tokio::time::timeout(T, conn.stream_info(&ws))
            .await
            .expect("stream_info got no answer while the owner is behind")
            .unwrap()
            .expect("the WebSocket is open");
        assert_eq!(info.state, StreamState::WebSocket);
        for _ in 0..N {
            assert!(matches!(events.await_ws(&ws, T).await.unwrap(), Message::Binary(b) if b.len() == SIZE));
        }
        drop((conn, events));
        server.abort();
    })
    .await;
}

/// What an await takes for its caller (the chunks of the body it collects) no longer counts:
/// a body larger than the whole budget is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_body_collects_a_body_larger_than_the_budget() {
    let _serial = heap::serial().await;
    bounded(async {
        const BODY: usize = 8 * MIB;
        for h2 in [false, true] {
            let server = common::plain_server(h2).await;
            let opts = if h2 { options().protocols(&[Protocol::Http2]) } else { options() };
            let (conn, mut events) =
                moorline::open("127.0.0.1", server.port(), opts.event_buffer_bytes(64 * KIB)).unwrap();
            events.await_up(T).await.unwrap();
            let s = conn.get(&format!("/big?bytes={BODY}"), http::HeaderMap::new()).await.unwrap();
            let body = events.await_body(&s, T).await.unwrap();
            assert_eq!(body.data.len(), BODY, "h2={h2}");
        }
    })
    .await;
}

/// An await whose stream is stuck behind events it set aside (they fill the budget, so the
/// connection waits for the owner) fails at once with `Backlog`, not after its timeout; the
/// events set aside are all still there for `next`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_await_behind_a_full_budget_fails_with_backlog() {
    let _serial = heap::serial().await;
    bounded(async {
        const BODY: usize = 4 * MIB;
        const BUDGET: usize = 256 * KIB;
        let server = common::plain_server(true).await;
        let opts = options().protocols(&[Protocol::Http2]).event_buffer_bytes(BUDGET);
        let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts).unwrap();
        events.await_up(T).await.unwrap();
        let a = conn.get(&format!("/big?bytes={BODY}"), http::HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_response(&a, T).await.unwrap().status, 200);
        // Let a's chunks fill the budget, then wait for another stream's body.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = conn.get("/stall", http::HeaderMap::new()).await.unwrap();
        let started = std::time::Instant::now();
        let waited = events.await_body(&b, Duration::from_secs(20)).await;
        assert!(matches!(waited, Err(Error::Backlog(_))), "{waited:?}");
        assert!(started.elapsed() < Duration::from_secs(15), "Backlog came only after {:?}", started.elapsed());
        // Nothing was lost: a's whole body, in order, with next().
        let mut got = 0;
        while got < BODY {
            match common::next(&mut events).await {
                Event::Data { stream, data, .. } if stream == a => got += data.len(),
                Event::Response { stream, .. } if stream == b => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, BODY);
    })
    .await;
}

/// Issue 16: an idle WebSocket holds little. The read buffer starts at 4 KiB and grows only
/// when reads fill it (it used to reserve 64 KiB per connection from the start: about 94 KB of
/// heap per idle connection). 100 idle connections to a server that holds its sockets and
/// nothing else; the heap they add, server side included, is at most 48 KiB per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websockets_hold_a_small_read_buffer() {
    const N: usize = 100;
    const CEILING: usize = 48 << 10;
    let _serial = heap::serial().await;
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::with_capacity(N);
            for _ in 0..N {
                held.push(accept_ws(&listener, None).await);
            }
            // Hold every socket, read nothing (the clients send nothing while idle).
            std::future::pending::<()>().await;
            drop(held);
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let base = heap::live();
        let mut sessions = Vec::with_capacity(N);
        for _ in 0..N {
            let url = format!("ws://127.0.0.1:{port}/");
            sessions
                .push(moorline::ws::connect(&url, ConnectOptions::default(), WsOptions::default(), T).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let per = heap::live().saturating_sub(base) / N;
        assert!(per <= CEILING, "{per} bytes of heap per idle WebSocket (ceiling {CEILING})");
        drop(sessions);
        server.abort();
    })
    .await;
}
