//! WebSocket over HTTP/1.1 against the test kit's mock server and hand-written raw servers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{T, bounded, next_matching};
use moorline::ws::{CloseCode, Message, WsOptions};
use moorline::{
    ConnectOptions, Connection, DownReason, Error, Event, Events, ExitReason, Keepalive, RetryPolicy, State,
    StreamError, StreamRef,
};
use moorline_proto::ws::{Decoder, Limits, Role, accept_key, write_frame};
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn opts() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::fixed(2, Duration::from_millis(50)))
}

async fn open_ws(port: u16, options: WsOptions) -> (Connection, Events, StreamRef) {
    let (conn, mut events) = moorline::open("127.0.0.1", port, opts()).unwrap();
    events.await_up(T).await.unwrap();
    let ws = conn.ws_upgrade("/ws?x=1", options).await.unwrap();
    events.await_ws_upgrade(&ws, T).await.unwrap();
    (conn, events, ws)
}

async fn down(events: &mut Events) -> (DownReason, Vec<StreamRef>) {
    match next_matching(events, |e| matches!(e, Event::Down { .. })).await {
        Event::Down { reason, possibly_processed, .. } => (reason, possibly_processed),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn messages_both_ways_and_pings_answered() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (conn, mut events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        assert_eq!(server.clients()[0].path, "/ws?x=1");

        conn.ws_send(&ws, Message::text("hello")).await.unwrap();
        conn.ws_send(&ws, Message::binary(vec![1u8, 2, 3])).await.unwrap();
        server.expect_received(Matcher::Exact("hello".into()), T).await.unwrap();
        server.expect_received(Matcher::predicate(|f| *f == Frame::binary(vec![1u8, 2, 3])), T).await.unwrap();

        server.inject(Frame::text("from server"));
        server.inject(Frame::binary(vec![0u8; 100_000]));
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text("from server"));
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::binary(vec![0u8; 100_000]));

        // Pings are answered without bothering the owner.
        server.inject(Frame::Ping(Bytes::from_static(b"are you there")));
        server
            .expect_received(Matcher::predicate(|f| *f == Frame::Pong(Bytes::from_static(b"are you there"))), T)
            .await
            .unwrap();
        server.inject(Frame::text("after ping"));
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text("after ping"));
    })
    .await;
}

#[tokio::test]
async fn server_close_frame_then_down_then_reconnect() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (_conn, mut events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        assert_eq!(server.fault(Fault::Close { code: 4000, reason: "maintenance".into() }), 1);
        match events.await_ws(&ws, T).await.unwrap() {
            Message::Close(Some(c)) => assert_eq!((c.code, c.reason.as_str()), (CloseCode(4000), "maintenance")),
            other => panic!("{other:?}"),
        }
        // Our answer echoes the code.
        server.expect_received(Matcher::predicate(|f| matches!(f, Frame::Close(Some((4000, _))))), T).await.unwrap();
        let (reason, listed) = down(&mut events).await;
        assert!(matches!(reason, DownReason::WsClosed { by_us: false, close: Some(_) }), "{reason:?}");
        assert_eq!(listed, [ws]);
        // The connection comes back as plain HTTP/1.1; the WebSocket is over.
        events.await_up(T).await.unwrap();
        assert!(matches!(events.await_ws(&ws, T).await, Err(Error::Down(_))));
    })
    .await;
}

/// The next `Down` or `Exit`, whichever comes first.
async fn down_or_exit(events: &mut Events) -> Event {
    next_matching(events, |e| matches!(e, Event::Down { .. } | Event::Exit { .. })).await
}

#[tokio::test]
async fn our_close_completes_the_handshake_and_ends_the_connection_without_a_reconnect() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (conn, mut events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        conn.ws_close(&ws, CloseCode::NORMAL, "done").await.unwrap();
        server
            .expect_received(Matcher::predicate(|f| matches!(f, Frame::Close(Some((1000, r))) if r == "done")), T)
            .await
            .unwrap();
        assert!(
            matches!(events.await_ws(&ws, T).await.unwrap(), Message::Close(Some(c)) if c.code == CloseCode::NORMAL)
        );
        // The owner asked for the end: no `Down` listing the (completed) stream, no reconnection.
        match down_or_exit(&mut events).await {
            Event::Exit { reason: ExitReason::WsClosed { completed: true } } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.info().state, State::Exited);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.tcp_connections_accepted(), 1);
        // Sending after the close is refused, with a reason.
        let late = conn.ws_send(&ws, Message::text("late")).await;
        assert!(matches!(late, Err(Error::Stream(StreamError::WsClosed) | Error::Exited(_))), "{late:?}");
    })
    .await;
}

#[tokio::test]
async fn reset_and_half_open_end_the_websocket_without_hanging() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (_conn, mut events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        server.fault(Fault::Reset);
        assert!(matches!(events.await_ws(&ws, T).await, Err(Error::Down(DownReason::Io(_) | DownReason::Closed))));

        // Half-open server: our close is never answered; the close timeout ends it.
        let server = MockServer::builder().start().await.unwrap();
        let options = WsOptions::default().close_timeout(Duration::from_millis(300));
        let (conn, mut events, ws) = open_ws(server.addr().port(), options).await;
        server.fault(Fault::HalfOpen);
        let started = tokio::time::Instant::now();
        conn.ws_close(&ws, CloseCode::GOING_AWAY, "bye").await.unwrap();
        // Nothing may follow our close frame: refused at once, with the reason.
        let late = conn.ws_send(&ws, Message::text("late")).await;
        assert!(matches!(late, Err(Error::Stream(StreamError::WsClosed))), "{late:?}");
        // The owner asked for the close: the connection ends all the same, without reconnecting.
        match down_or_exit(&mut events).await {
            Event::Exit { reason: ExitReason::WsClosed { completed: false } } => {}
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        // Not before the close timeout; after it, only a hang fails (CI is a loaded machine).
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(10), "{took:?}");
    })
    .await;
}

#[tokio::test]
async fn rejected_upgrade_is_a_typed_error_and_the_response_is_kept() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        server.fault(Fault::RejectUpgrade(503));
        let (conn, mut events) = moorline::open("127.0.0.1", server.addr().port(), opts()).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        match events.await_ws_upgrade(&ws, T).await {
            Err(Error::Stream(StreamError::WsHandshake(e))) => assert!(e.to_string().contains("503"), "{e}"),
            other => panic!("{other:?}"),
        }
        let response = events.await_response(&ws, T).await.unwrap();
        assert_eq!(response.status.as_u16(), 503);
    })
    .await;
}

/// A raw server: answers one upgrade correctly (or with `accept` if given), writes `bytes`,
/// then returns what the client sent back, decoded.
async fn raw_server(bytes: Vec<u8>, accept: Option<&'static str>) -> (u16, tokio::task::JoinHandle<Vec<Message>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-key: ").or_else(|| l.strip_prefix("Sec-WebSocket-Key: ")))
            .unwrap()
            .trim()
            .to_owned();
        let accept = accept.map_or_else(|| accept_key(&key), str::to_owned);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let mut received = BytesMut::new();
        // Until the client closes (a bound for one that never does).
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let n = tcp.read_buf(&mut received).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
        let mut out = Vec::new();
        while let Ok(Some(m)) = decoder.decode(&mut received) {
            out.push(m);
        }
        out
    });
    (port, task)
}

async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(true, false, 0, payload, None, &mut out);
    out[0] = b0;
    out.to_vec()
}

#[tokio::test]
async fn protocol_violations_close_with_the_right_code_and_a_typed_error() {
    bounded(async {
        let masked = {
            let mut out = BytesMut::new();
            write_frame(true, false, 1, b"hi", Some([1, 2, 3, 4]), &mut out);
            out.to_vec()
        };
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("reserved bits", frame(0xc1, b"x"), 1002),
            ("unknown opcode", frame(0x83, b""), 1002),
            ("masked server frame", masked, 1002),
            ("control over 125", frame(0x89, &[0; 126]), 1002),
            ("fragmented control", frame(0x09, b""), 1002),
            ("invalid utf-8", frame(0x81, &[0xce, 0xba, 0xff]), 1007),
            ("invalid close code", frame(0x88, &[0x03, 0xed]), 1002),
            ("continuation without start", frame(0x80, b"x"), 1002),
            ("oversized message", frame(0x82, &[0; 2000]), 1009),
        ];
        for (name, bytes, code) in cases {
            let (port, server) = raw_server(bytes, None).await;
            let options = WsOptions::default().max_message_size(1000);
            let (conn, mut events) =
                moorline::open("127.0.0.1", port, ConnectOptions::default().retry(RetryPolicy::Never)).unwrap();
            events.await_up(T).await.unwrap();
            let ws = conn.ws_upgrade("/", options).await.unwrap();
            events.await_ws_upgrade(&ws, T).await.unwrap();
            match events.await_ws(&ws, T).await {
                Err(Error::Stream(StreamError::WsProtocol(e))) => assert_eq!(e.close_code().0, code, "{name}: {e}"),
                other => panic!("{name}: {other:?}"),
            }
            let (reason, _) = down(&mut events).await;
            assert!(matches!(reason, DownReason::WsProtocol(_)), "{name}: {reason:?}");
            let sent = server.await.unwrap();
            assert!(
                matches!(sent.last(), Some(Message::Close(Some(c))) if c.code.0 == code),
                "{name}: client sent {sent:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn bad_accept_key_fails_the_upgrade() {
    bounded(async {
        let (port, _server) = raw_server(Vec::new(), Some("d3Jvbmcga2V5")).await;
        let (conn, mut events) =
            moorline::open("127.0.0.1", port, ConnectOptions::default().retry(RetryPolicy::Never)).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        match events.await_ws_upgrade(&ws, T).await {
            Err(Error::Stream(StreamError::WsHandshake(e))) => assert!(e.to_string().contains("accept"), "{e}"),
            other => panic!("{other:?}"),
        }
        let (reason, _) = down(&mut events).await;
        assert!(matches!(reason, DownReason::Protocol(_)), "{reason:?}");
    })
    .await;
}

#[tokio::test]
async fn frames_sent_with_the_101_are_not_lost() {
    bounded(async {
        let mut bytes = frame(0x81, b"first");
        bytes.extend(frame(0x82, b"second"));
        let (port, _server) = raw_server(bytes, None).await;
        let (_conn, mut events, ws) = open_ws(port, WsOptions::default()).await;
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text("first"));
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::binary(&b"second"[..]));
    })
    .await;
}

#[tokio::test]
async fn invalid_messages_are_refused_by_the_handle() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (conn, _events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        let too_long = Message::Ping(Bytes::from(vec![0; 126]));
        assert!(matches!(
            conn.ws_send(&ws, too_long).await,
            Err(Error::Stream(StreamError::WsSend(moorline_proto::ws::SendError::ControlTooLong(126))))
        ));
        assert!(conn.ws_close(&ws, CloseCode(1005), "").await.is_err());
        assert!(WsOptions::default().max_message_size(0).validate().is_err());
        assert!(conn.ws_upgrade("/", WsOptions::default().protocols(["bad token"])).await.is_err());
    })
    .await;
}

/// Messages decoded from one read reach the owner in batches; with a tiny event buffer, a
/// slow owner and a change of owner in the middle, every message still arrives once, in
/// order, split between the old owner (up to its `OwnerChanged`) and the new one.
#[tokio::test]
async fn many_small_messages_survive_backpressure_and_an_owner_change() {
    bounded(async {
        const N: usize = 5000;
        let mut bytes = Vec::new();
        for i in 0..N {
            bytes.extend(frame(0x81, format!("m{i}").as_bytes()));
        }
        let (port, _server) = raw_server(bytes, None).await;
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts().event_buffer(2)).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/ws", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..1000 {
            got.push(events.await_ws(&ws, T).await.unwrap());
            if got.len() % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await; // a slow owner
            }
        }
        let mut new_events = conn.set_owner().await.unwrap();
        // The old receiver keeps what was delivered to it, then hears of the change.
        loop {
            match tokio::time::timeout(T, events.next()).await.unwrap() {
                Some(Event::Ws { message, .. }) => got.push(message),
                Some(Event::OwnerChanged) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(events.next().await.is_none());
        while got.len() < N {
            got.push(new_events.await_ws(&ws, T).await.unwrap());
        }
        let want: Vec<Message> = (0..N).map(|i| Message::text(format!("m{i}"))).collect();
        assert_eq!(got, want);
        assert!(new_events.try_next().is_none(), "nothing more, nothing twice");
    })
    .await;
}

#[tokio::test]
async fn fed_and_sent_messages_leave_in_order_and_fed_ones_are_not_left_behind() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (conn, _events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        for i in 0..500 {
            let m = Message::text(i.to_string());
            if i % 7 == 0 { conn.ws_send(&ws, m).await.unwrap() } else { conn.ws_feed(&ws, m).await.unwrap() }
        }
        // 499 was fed, not sent: the worker writes it once this task waits.
        server.expect_received(Matcher::Exact("499".into()), T).await.unwrap();
        let texts: Vec<String> = server
            .received()
            .into_iter()
            .filter_map(|r| match r.frame {
                Frame::Text(t) => Some(t),
                _ => None,
            })
            .collect();
        let expected: Vec<String> = (0..500).map(|i: i32| i.to_string()).collect();
        assert_eq!(texts, expected);
    })
    .await;
}

/// A blocking server on its own thread (so it runs while the test's runtime thread is busy):
/// answers the upgrade, waits for the client's text frame "ready", writes `burst` text frames
/// in one write and says so on the second channel returned, then reports each text frame the
/// client sends after "ready", in order, on the first.
fn threaded_burst_server(burst: usize) -> (u16, std::sync::mpsc::Receiver<String>, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-key: ").or_else(|| l.strip_prefix("Sec-WebSocket-Key: ")))
            .unwrap()
            .trim()
            .to_owned();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
            accept_key(&key)
        )
        .into_bytes();
        tcp.write_all(&out).unwrap();
        out.clear();
        let mut frames = BytesMut::new();
        for i in 0..burst {
            write_frame(true, false, 1, format!("m{i}").as_bytes(), None, &mut frames);
        }
        let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
        let mut received = BytesMut::new();
        let mut chunk = [0u8; 4096];
        let mut burst_sent = false;
        loop {
            let Ok(n) = tcp.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            received.extend_from_slice(&chunk[..n]);
            while let Ok(Some(m)) = decoder.decode(&mut received) {
                let Message::Text(t) = m else { continue };
                if !burst_sent {
                    // The client has seen the 101: the whole burst, at once.
                    assert_eq!(&*t, "ready");
                    tcp.write_all(&frames).unwrap();
                    burst_sent = true;
                    let _ = written_tx.send(());
                } else if tx.send(t.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    (port, rx, written_rx)
}

// The owner's task works through a burst of received messages and feeds a reply to each,
// never yielding (so, on this single-threaded runtime, the connection's worker cannot run):
// the replies still reach the server during the burst, because `await_ws` writes what was
// fed as it hands out messages. Then the last reply follows once the task waits.
#[tokio::test]
async fn replies_fed_while_working_through_a_burst_leave_during_the_burst() {
    bounded(async {
        const BURST: usize = 16;
        let (port, replies, burst_written) = threaded_burst_server(BURST);
        let (conn, mut events, ws) = open_ws(port, WsOptions::default()).await;
        conn.ws_send(&ws, Message::text("ready")).await.unwrap();
        // The whole burst is in the socket (one write): the worker reads it in one go and
        // delivers it in one batch, which the first await receives.
        let deadline = tokio::time::Instant::now() + T;
        while burst_written.try_recv().is_err() {
            assert!(tokio::time::Instant::now() < deadline, "the server never sent the burst");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let first = events.await_ws(&ws, T).await.unwrap();
        assert_eq!(first, Message::text("m0"));
        conn.ws_feed(&ws, Message::text("r0")).await.unwrap();
        for i in 1..BURST {
            // The fast path: nothing in here may yield to the runtime.
            let m = events.await_ws(&ws, T).await.unwrap();
            assert_eq!(m, Message::text(format!("m{i}")));
            conn.ws_feed(&ws, Message::text(format!("r{i}"))).await.unwrap();
        }
        // Block this thread (the worker's too): what the server gets now was written by the
        // owner's own awaits.
        let mut early = Vec::new();
        // Written already, so on its way: wait generously for half of it, then take what else
        // comes while this thread stays blocked.
        while early.len() < BURST / 2
            && let Ok(r) = replies.recv_timeout(T)
        {
            early.push(r);
        }
        while let Ok(r) = replies.recv_timeout(Duration::from_millis(500)) {
            early.push(r);
        }
        assert!(early.len() >= BURST / 2, "only {early:?} left during the burst");
        assert!(early.len() < BURST, "the last reply was fed after the last await: {early:?}");
        // Once this task waits, the worker writes the rest.
        let mut all = early;
        while all.len() < BURST {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok(r) = replies.try_recv() {
                all.push(r);
            }
        }
        let expected: Vec<String> = (0..BURST).map(|i| format!("r{i}")).collect();
        assert_eq!(all, expected);
    })
    .await;
}

#[tokio::test]
async fn a_server_that_stops_reading_makes_senders_wait_and_close_frees_them() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (conn, _events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        server.fault(Fault::HalfOpen);
        let big = Message::binary(vec![7u8; 64 << 10]);
        // The kernel's buffers fill, then the outbox's 256 KiB: then a send waits (a send that
        // has not finished in 2 s is waiting, not slow).
        let mut sent = 0;
        while let Ok(r) = tokio::time::timeout(Duration::from_secs(2), conn.ws_send(&ws, big.clone())).await {
            r.unwrap();
            sent += 1;
            assert!(sent < 2000, "ws_send never waited: what is queued would grow without bound");
        }
        assert!(sent > 0);
        // A waiting sender is freed (with an error) when the connection ends.
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.ws_send(&ws, big).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        conn.close();
        let r = tokio::time::timeout(T, waiting).await.unwrap().unwrap();
        assert!(matches!(r, Err(Error::Exited(_))), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn a_server_that_reads_late_still_gets_everything_in_order() {
    bounded(async {
        // The server answers the upgrade, then reads nothing for a while: the client's
        // direct writes meet a full socket and the worker must take over the writing.
        const N: usize = 200;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let head = read_head(&mut tcp).await;
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("sec-websocket-key: ").or_else(|| l.strip_prefix("Sec-WebSocket-Key: ")))
                .unwrap()
                .trim()
                .to_owned();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                accept_key(&key)
            );
            tcp.write_all(answer.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
            let (mut buf, mut got) = (BytesMut::new(), Vec::new());
            while got.len() < N {
                assert!(tcp.read_buf(&mut buf).await.unwrap() > 0, "client closed early");
                while let Some(m) = decoder.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            got
        });
        let (conn, _events, ws) = open_ws(port, WsOptions::default()).await;
        let sender = tokio::spawn(async move {
            for i in 0..N {
                let mut payload = vec![(i % 251) as u8; 64 << 10];
                payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
                conn.ws_send(&ws, Message::binary(payload)).await.unwrap();
            }
            conn
        });
        let got = server.await.unwrap();
        let _conn = sender.await.unwrap();
        for (i, m) in got.iter().enumerate() {
            let Message::Binary(b) = m else { panic!("message {i} is {m:?}") };
            assert_eq!(b.len(), 64 << 10);
            assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), i as u64);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn senders_on_several_threads_keep_their_own_order_and_lose_nothing() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let (conn, _events, ws) = open_ws(server.addr().port(), WsOptions::default()).await;
        const TASKS: usize = 4;
        const EACH: usize = 2000;
        let senders: Vec<_> = (0..TASKS)
            .map(|t| {
                let conn = conn.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let m = Message::text(format!("{t}:{i}"));
                        // Mixed: most are fed (queued), some written at once, some big.
                        if i % 100 == 99 {
                            conn.ws_send(&ws, Message::binary(vec![t as u8; 100_000])).await.unwrap();
                        }
                        if i % 5 == 0 {
                            conn.ws_send(&ws, m).await.unwrap()
                        } else {
                            conn.ws_feed(&ws, m).await.unwrap()
                        }
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        for t in 0..TASKS {
            server.expect_received(Matcher::Exact(format!("{t}:{}", EACH - 1)), T).await.unwrap();
        }
        let mut next = [0usize; TASKS];
        let mut big = 0;
        for r in server.received() {
            match r.frame {
                Frame::Text(text) => {
                    let (t, i) = text.split_once(':').unwrap();
                    let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(i, next[t], "task {t} out of order");
                    next[t] += 1;
                }
                Frame::Binary(b) => {
                    assert_eq!(b.len(), 100_000);
                    big += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(next, [EACH; TASKS]);
        assert_eq!(big, TASKS * EACH / 100);
    })
    .await;
}

/// A send on a WebSocket that is over must say so (issue 14, item 5): after a reset, during
/// the backoff, and once a new connection is up; after the server's close.
#[tokio::test]
async fn sends_on_a_websocket_that_went_down_return_the_reason() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let port = server.addr().port();
        let is_reset = |r: &Result<(), Error>| matches!(r, Err(Error::Down(DownReason::Io(_) | DownReason::Closed)));

        // During the backoff (an hour long: the worker is certainly still in it).
        let opts = ConnectOptions::default().retry(RetryPolicy::fixed(3, Duration::from_secs(3600)));
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        server.fault(Fault::Reset);
        let seen = events.await_ws(&ws, T).await;
        assert!(matches!(seen, Err(Error::Down(DownReason::Io(_) | DownReason::Closed))), "{seen:?}");
        assert_eq!(conn.info().state, State::Reconnecting);
        let r = conn.ws_send(&ws, Message::text("during backoff")).await;
        assert!(is_reset(&r), "{r:?}");
        let r = conn.ws_feed(&ws, Message::text("fed during backoff")).await;
        assert!(is_reset(&r), "{r:?}");
        conn.close();

        // Once a new connection is up (a quick retry): the old WebSocket is still over.
        let (conn, mut events, ws) = open_ws(port, WsOptions::default()).await;
        server.fault(Fault::Reset);
        assert!(matches!(events.await_ws(&ws, T).await, Err(Error::Down(_))));
        events.await_up(T).await.unwrap();
        let r = conn.ws_send(&ws, Message::text("after reconnect")).await;
        assert!(is_reset(&r), "{r:?}");
        let r = conn.ws_feed(&ws, Message::text("fed after reconnect")).await;
        assert!(is_reset(&r), "{r:?}");

        // A new WebSocket on the new connection; the server closes it.
        let again = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&again, T).await.unwrap();
        // The first WebSocket's sends still fail while the second one is live.
        let r = conn.ws_send(&ws, Message::text("old stream")).await;
        assert!(is_reset(&r), "{r:?}");
        server.fault(Fault::Close { code: 4000, reason: "bye".into() });
        assert!(matches!(events.await_ws(&again, T).await.unwrap(), Message::Close(Some(_))));
        // (The first `Down` is still queued: the failed await left it for `next`.)
        let closed = next_matching(&mut events, |e| {
            matches!(e, Event::Down { reason: DownReason::WsClosed { by_us: false, .. }, .. })
        });
        closed.await;
        for r in [
            conn.ws_send(&again, Message::text("after close")).await,
            conn.ws_feed(&again, Message::text("fed after close")).await,
        ] {
            assert!(matches!(r, Err(Error::Stream(StreamError::WsClosed))), "{r:?}");
        }
        // None of these reached the server.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(server.received().iter().all(|r| r.frame.as_text().is_none()), "{:?}", server.received());
    })
    .await;
}

/// Keepalive (issue 14, item 7): a server that stops reading and answering is noticed.
#[tokio::test]
async fn keepalive_ends_a_websocket_whose_server_stalls_and_the_connection_comes_back() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let k = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_millis(300) };
        let (conn, mut events, ws) = open_ws(server.addr().port(), WsOptions::default().keepalive(Some(k))).await;
        server.fault(Fault::HalfOpen);
        let (reason, listed) = down(&mut events).await;
        assert!(matches!(reason, DownReason::WsKeepaliveTimeout(t) if t == k.timeout), "{reason:?}");
        assert_eq!(listed, [ws]);
        assert!(matches!(events.await_ws(&ws, T).await, Err(Error::Down(DownReason::WsKeepaliveTimeout(_)))));
        // Reconnection follows the retry policy, as for any `Down`.
        events.await_up(T).await.unwrap();
        drop(conn);
    })
    .await;
}

#[tokio::test]
async fn keepalive_pings_keep_a_quiet_but_answering_server_up() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        // A generous timeout: only the pings matter here.
        let k = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_secs(5) };
        let (conn, mut events, ws) = open_ws(server.addr().port(), WsOptions::default().keepalive(Some(k))).await;
        // Quiet for several intervals: pings go out, the server's pongs keep it alive.
        let quiet = tokio::time::timeout(Duration::from_millis(1500), events.next()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        let pings = server.received().iter().filter(|r| matches!(r.frame, Frame::Ping(_))).count();
        assert!(pings >= 2, "{pings} pings in 1.5 s");
        conn.ws_send(&ws, Message::text("still here")).await.unwrap();
        server.expect_received(Matcher::Exact("still here".into()), T).await.unwrap();
        assert_eq!(server.tcp_connections_accepted(), 1);
    })
    .await;
}

/// "Wait forever" (issue 14, item 12): `close_timeout(Duration::MAX)` must not overflow the
/// close deadline (it panicked the worker).
#[tokio::test]
async fn a_close_timeout_of_duration_max_waits_instead_of_panicking() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let options = WsOptions::default().close_timeout(Duration::MAX);
        let (conn, mut events, ws) = open_ws(server.addr().port(), options).await;
        server.fault(Fault::HalfOpen);
        conn.ws_close(&ws, CloseCode::NORMAL, "").await.unwrap();
        let nothing = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
        assert!(nothing.is_err(), "{nothing:?}");
        assert_eq!(conn.info().state, State::Up);
        conn.close();
        match next_matching(&mut events, |e| matches!(e, Event::Exit { .. })).await {
            Event::Exit { reason: ExitReason::Closed } => {}
            other => panic!("{other:?}"),
        }
    })
    .await;
}
