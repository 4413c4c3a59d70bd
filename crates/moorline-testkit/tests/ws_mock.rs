//! The WebSocket mock server, driven by tungstenite clients and raw TCP clients.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod raw_ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer, Recording, Reply};
use regex::Regex;
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(3);
/// How long "nothing happens" is observed.
const QUIET: Duration = Duration::from_millis(300);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("test timed out")
}

async fn connect(server: &MockServer, path: &str) -> Client {
    let url = format!("{}{}", server.url(), path.trim_start_matches('/'));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next data or close message (pings are answered by tungstenite and skipped).
async fn next(client: &mut Client) -> Message {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await.expect("no message").expect("stream ended").unwrap() {
            Message::Pong(_) => {}
            other => return other,
        }
    }
}

/// Upgrades a raw TCP connection by hand and returns it positioned after the `101` head.
async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// A masked client text frame (payload < 126 bytes).
fn masked_text(text: &str) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![0x81, 0x80 | text.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Asserts that nothing (no byte, no EOF, no error) arrives for [`QUIET`].
async fn assert_silent(tcp: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(QUIET, tcp.read(&mut buf)).await;
    assert!(got.is_err(), "expected silence, got {got:?}");
}

#[tokio::test]
async fn matchers_succeed_and_fail_with_a_listing() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut client = connect(&server, "/ws/v2?x=1").await;
        assert!(server.wait_for_connections(1, WAIT).await);
        let info = &server.clients()[0];
        assert_eq!(info.path, "/ws/v2?x=1");
        assert_eq!(info.header("upgrade"), Some("websocket"));

        let sub = r#"{"jsonrpc":"2.0","id":7,"method":"public/subscribe","params":{"channels":["book.BTC","trades"]}}"#;
        client.send(Message::text(sub)).await.unwrap();
        client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();

        let got = server.expect_received(Matcher::Exact(sub.to_owned()), WAIT).await.unwrap();
        assert_eq!(got.client, info.id);
        server.expect_received(Matcher::Regex(Regex::new(r#""id":\d+"#).unwrap()), WAIT).await.unwrap();
        server
            .expect_received(Matcher::JsonSubset(json!({"params": {"channels": ["book.BTC"]}, "id": 7})), WAIT)
            .await
            .unwrap();
        let bin = server.expect_received(Matcher::predicate(|f| matches!(f, Frame::Binary(_))), WAIT).await.unwrap();
        assert_eq!(bin.frame, Frame::binary(vec![1u8, 2, 3]));

        // Non-matching expectations fail, and the error lists what was received.
        let err = server
            .expect_received(Matcher::JsonSubset(json!({"params": {"channels": ["trades"]}})), QUIET)
            .await
            .unwrap_err();
        assert_eq!(err.received.len(), 2);
        let text = err.to_string();
        assert!(text.contains("no received frame matched JsonSubset"), "{text}");
        assert!(text.contains("public/subscribe"), "{text}");
        assert!(text.contains("binary (3 bytes)"), "{text}");
        assert!(server.expect_received(Matcher::Exact("nope".into()), QUIET).await.is_err());
        assert!(server.expect_received(Matcher::Regex(Regex::new("^x").unwrap()), QUIET).await.is_err());

        server.clear_received();
        let err = server.expect_received(Matcher::any(), Duration::from_millis(50)).await.unwrap_err();
        assert!(err.to_string().contains("nothing was received"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn inject_to_all_and_to_one() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut a = connect(&server, "/").await;
        let mut b = connect(&server, "/").await;
        assert!(server.wait_for_connections(2, WAIT).await);
        assert_eq!(server.open_connections(), 2);
        assert_eq!(server.inject(Frame::text("all")), 2);
        assert_eq!(next(&mut a).await, Message::text("all"));
        assert_eq!(next(&mut b).await, Message::text("all"));

        let first = server.clients()[0].id;
        assert!(server.inject_to(first, Frame::binary(vec![9u8, 9])));
        assert!(server.inject_to(first, Frame::Ping(vec![1u8].into())));
        assert!(server.inject_to(first, Frame::close(4001, "only you")));
        assert_eq!(next(&mut a).await, Message::binary(vec![9u8, 9]));
        assert_eq!(next(&mut a).await, Message::Ping(vec![1u8].into()));
        match next(&mut a).await {
            Message::Close(Some(c)) => assert_eq!((c.code, c.reason.as_str()), (CloseCode::from(4001), "only you")),
            other => panic!("{other:?}"),
        }
        // Polling lets tungstenite answer the close; the server then closes the connection.
        assert!(tokio::time::timeout(WAIT, a.next()).await.unwrap().is_none());
        // The ping was answered by the client's library and recorded.
        server
            .expect_received(Matcher::predicate(|f| matches!(f, Frame::Pong(p) if p[..] == [1])), WAIT)
            .await
            .unwrap();
        assert!(tokio::time::timeout(QUIET, b.next()).await.is_err(), "b got a message meant for a");
        assert!(server.wait_for_open_connections(1, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn scripted_replies_answer() {
    bounded(async {
        let server = MockServer::builder()
            .on(Matcher::Exact("ping".into()), Reply::message(Frame::text("pong")))
            .start()
            .await
            .unwrap();
        server.on(Matcher::JsonSubset(json!({"method": "public/subscribe"})), Reply::json_rpc_result(json!(["book"])));
        server.on(
            Matcher::Regex(Regex::new("^echo ").unwrap()),
            Reply::with(|f| f.as_text().map(|t| Frame::text(t.to_uppercase()))),
        );
        let mut client = connect(&server, "/").await;
        client.send(Message::text("ping")).await.unwrap();
        assert_eq!(next(&mut client).await, Message::text("pong"));
        client.send(Message::text(r#"{"jsonrpc":"2.0","id":42,"method":"public/subscribe"}"#)).await.unwrap();
        let answer: serde_json::Value = serde_json::from_str(next(&mut client).await.to_text().unwrap()).unwrap();
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 42, "result": ["book"]}));
        client.send(Message::text("echo me")).await.unwrap();
        assert_eq!(next(&mut client).await, Message::text("ECHO ME"));
        client.send(Message::text("unmatched")).await.unwrap();
        assert!(tokio::time::timeout(QUIET, client.next()).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn tls_server_with_generated_ca() {
    bounded(async {
        let server = MockServer::builder().tls(true).start().await.unwrap();
        assert!(server.url().starts_with("wss://127.0.0.1:"));
        assert!(server.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let config = Arc::new(server.client_tls_config().unwrap());
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut client, _) = tokio_tungstenite::client_async(server.url(), tls).await.unwrap();
        client.send(Message::text("over tls")).await.unwrap();
        server.expect_received(Matcher::Exact("over tls".into()), WAIT).await.unwrap();
        server.inject(Frame::text("back"));
        assert_eq!(client.next().await.unwrap().unwrap(), Message::text("back"));
    })
    .await;
}

#[tokio::test]
async fn fault_close_frame() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut client = connect(&server, "/").await;
        assert!(server.wait_for_connections(1, WAIT).await);
        assert_eq!(server.fault(Fault::Close { code: 4000, reason: "maintenance".into() }), 1);
        match next(&mut client).await {
            Message::Close(Some(c)) => assert_eq!((c.code, c.reason.as_str()), (CloseCode::from(4000), "maintenance")),
            other => panic!("{other:?}"),
        }
        // tungstenite answers the close; the server then closes the connection.
        assert!(tokio::time::timeout(WAIT, client.next()).await.unwrap().is_none());
        assert!(server.wait_for_open_connections(0, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn fault_fin_without_close_frame() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut tcp = raw_upgrade(server.addr()).await;
        assert!(server.wait_for_connections(1, WAIT).await);
        assert_eq!(server.fault(Fault::Fin), 1);
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty(), "bytes before EOF: {rest:?}");
        assert_eq!(server.open_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn fault_reset_one_client_only() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut tcp = raw_upgrade(server.addr()).await;
        let mut other = connect(&server, "/").await;
        assert!(server.wait_for_connections(2, WAIT).await);
        let first = server.clients()[0].id;
        assert!(server.fault_to(first, Fault::Reset));
        let mut buf = [0u8; 16];
        let err = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(!server.fault_to(first, Fault::Reset), "client is gone");
        server.inject(Frame::text("still here"));
        assert_eq!(next(&mut other).await, Message::text("still here"));
    })
    .await;
}

#[tokio::test]
async fn fault_half_open() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut tcp = raw_upgrade(server.addr()).await;
        assert!(server.wait_for_connections(1, WAIT).await);
        tcp.write_all(&masked_text("before")).await.unwrap();
        server.expect_received(Matcher::Exact("before".into()), WAIT).await.unwrap();
        assert_eq!(server.fault(Fault::HalfOpen), 1);
        assert_eq!(server.inject(Frame::text("lost")), 0);
        // Writes still succeed (the socket is open) but are never read; nothing arrives, not even EOF.
        tcp.write_all(&masked_text("after")).await.unwrap();
        assert_silent(&mut tcp).await;
        assert!(server.expect_received(Matcher::Exact("after".into()), Duration::from_millis(50)).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn fault_stall_after_n_bytes_keeps_reading() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut tcp = raw_upgrade(server.addr()).await;
        assert!(server.wait_for_connections(1, WAIT).await);
        server.inject(Frame::text("ok"));
        let mut first = [0u8; 4];
        tcp.read_exact(&mut first).await.unwrap();
        assert_eq!(first, [0x81, 2, b'o', b'k']);
        assert_eq!(server.fault(Fault::StallAfter(5)), 1);
        server.inject(Frame::text("hello world"));
        let mut got = [0u8; 5];
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x81\x0bhel");
        assert_silent(&mut tcp).await;
        // Reading goes on while writing is stalled.
        tcp.write_all(&masked_text("still reading")).await.unwrap();
        server.expect_received(Matcher::Exact("still reading".into()), WAIT).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn fault_partial_frame_then_silence() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut tcp = raw_upgrade(server.addr()).await;
        assert!(server.wait_for_connections(1, WAIT).await);
        server.fault(Fault::PartialFrame { frame: Frame::text("partial payload"), bytes: 4 });
        let mut got = [0u8; 4];
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x81\x0fpa");
        assert_silent(&mut tcp).await;
    })
    .await;
}

#[tokio::test]
async fn fault_slow_drip() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut tcp = raw_upgrade(server.addr()).await;
        assert!(server.wait_for_connections(1, WAIT).await);
        let delay = Duration::from_millis(25);
        server.fault(Fault::SlowDrip(delay));
        let start = tokio::time::Instant::now();
        server.inject(Frame::text("drip-drop"));
        let mut got = Vec::new();
        let mut reads = 0;
        while got.len() < 11 {
            let mut buf = [0u8; 64];
            let n = tcp.read(&mut buf).await.unwrap();
            assert_eq!(n, 1, "bytes arrive one at a time");
            got.extend_from_slice(&buf[..n]);
            reads += 1;
        }
        assert_eq!(got, b"\x81\x09drip-drop");
        assert_eq!(reads, 11);
        let elapsed = start.elapsed();
        assert!(elapsed >= delay * 10, "11 bytes in {elapsed:?}");
    })
    .await;
}

#[tokio::test]
async fn fault_refuse_connections_for_a_while() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let refuse = Duration::from_millis(400);
        assert_eq!(server.fault(Fault::RefuseConnections(refuse)), 0);
        let start = tokio::time::Instant::now();
        // The accept task closes the listener right away; connections racing it may
        // still be accepted (or reset from the backlog), then attempts are refused.
        loop {
            match TcpStream::connect(server.addr()).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        loop {
            if let Ok(tcp) = TcpStream::connect(server.addr()).await {
                drop(tcp);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(start.elapsed() >= refuse - Duration::from_millis(20), "{:?}", start.elapsed());
        let _client = connect(&server, "/").await;
        assert!(server.wait_for_connections(1, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn fault_reject_upgrade_with_status() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        server.fault(Fault::RejectUpgrade(503));
        match tokio_tungstenite::connect_async(server.url()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 503),
            other => panic!("expected HTTP 503, got {:?}", other.map(|_| ())),
        }
        assert_eq!(server.tcp_connections_accepted(), 1);
        assert_eq!(server.connections_accepted(), 0);
        server.clear_faults();
        let _client = connect(&server, "/").await;
        assert!(server.wait_for_connections(1, WAIT).await);
    })
    .await;
}

const SESSION: &str = r#"
{"ts": 0,   "dir": "out", "type": "text",   "data": "{\"method\":\"subscribe\"}"}
{"ts": 20,  "dir": "in",  "type": "text",   "data": "first"}
{"ts": 220, "dir": "in",  "type": "binary", "data": "AAECAw=="}
{"ts": 300, "dir": "out", "type": "text",   "data": "ignored"}
{"ts": 420, "dir": "in",  "type": "text",   "data": "third"}
"#;

/// Receives the three session messages; returns their arrival times relative to `start`.
async fn receive_session(client: &mut Client, start: tokio::time::Instant) -> Vec<Duration> {
    let mut times = Vec::new();
    for expected in [Message::text("first"), Message::binary(vec![0u8, 1, 2, 3]), Message::text("third")] {
        assert_eq!(next(client).await, expected);
        times.push(start.elapsed());
    }
    times
}

#[tokio::test]
async fn jsonl_replay_plays_in_messages_in_order_with_timing() {
    bounded(async {
        let recording = Recording::from_jsonl(SESSION).unwrap();
        assert_eq!(recording.len(), 3);
        let server = MockServer::builder().replay_on_connect(recording.clone(), 1.0).start().await.unwrap();
        let start = tokio::time::Instant::now();
        let mut client = connect(&server, "/").await;
        // Each message no earlier than its time (later only as the machine is loaded: the
        // schedule itself is checked exactly by the unit tests of `replay.rs`).
        let times = receive_session(&mut client, start).await;
        for (got, want) in times.iter().zip([20u64, 220, 420]) {
            let want = Duration::from_millis(want);
            assert!(*got + Duration::from_millis(5) >= want, "{times:?}");
        }

        // Replay on demand, half as fast: later times than the recording's show the speed is
        // applied (a lower bound, which a loaded machine cannot break).
        let id = server.clients()[0].id;
        let start = tokio::time::Instant::now();
        assert!(server.replay_to(id, &recording, 0.5));
        let times = receive_session(&mut client, start).await;
        for (got, want) in times.iter().zip([40u64, 440, 840]) {
            let want = Duration::from_millis(want);
            assert!(*got + Duration::from_millis(5) >= want, "{times:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn client_violations_are_closed_with_their_code() {
    bounded(async {
        let server = MockServer::builder().max_message_size(1024).start().await.unwrap();
        let cases: [(&str, Vec<u8>, u16); 6] = [
            ("reserved bit without an extension", raw_ws::client_frame(0xC1, b"hi"), 1002),
            ("unknown opcode", raw_ws::client_frame(0x83, b"hi"), 1002),
            ("continuation without a start", raw_ws::client_frame(0x80, b"hi"), 1002),
            ("invalid UTF-8 in a text message", raw_ws::client_frame(0x81, &[b'a', 0xFF, 0xFE]), 1007),
            ("a frame over the limit (from its header)", raw_ws::client_header(0x82, 2000), 1009),
            (
                "a message over the limit in two frames",
                {
                    let mut bytes = raw_ws::client_frame(0x02, &[7; 600]);
                    bytes.extend(raw_ws::client_frame(0x80, &[7; 600]));
                    bytes
                },
                1009,
            ),
        ];
        for (what, bytes, code) in cases {
            let mut tcp = raw_ws::upgrade(server.addr(), "/violations").await;
            tcp.write_all(&bytes).await.unwrap();
            assert_eq!(raw_ws::close_code(&mut tcp).await, Ok(Some(code)), "{what}");
            raw_ws::assert_ends(&mut tcp).await;
        }
        // A message at the limit is fine.
        let mut tcp = raw_ws::upgrade(server.addr(), "/fine").await;
        tcp.write_all(&raw_ws::client_frame(0x82, &[1; 1024])).await.unwrap();
        let got = server.expect_received(Matcher::any(), WAIT).await.unwrap();
        assert_eq!(got.frame, Frame::binary(vec![1u8; 1024]));
    })
    .await;
}

#[tokio::test]
async fn shutdown_sends_going_away_to_every_client() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut a = connect(&server, "/a").await;
        let mut b = connect(&server, "/b").await;
        assert!(server.wait_for_open_connections(2, WAIT).await);
        assert_eq!(server.inject(Frame::text("last words")), 2);
        let addr = server.addr();
        let shutdown = tokio::spawn(server.shutdown());
        for client in [&mut a, &mut b] {
            // What was already queued, then the close frame (tungstenite answers it).
            assert_eq!(next(client).await, Message::text("last words"));
            match next(client).await {
                Message::Close(Some(c)) => assert_eq!(c.code, CloseCode::Away, "{c:?}"),
                other => panic!("expected close 1001, got {other:?}"),
            }
        }
        shutdown.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
    })
    .await;
}

#[tokio::test]
async fn on_received_sees_every_frame_before_it_is_logged() {
    bounded(async {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hook_seen = Arc::clone(&seen);
        let server = MockServer::builder()
            .on_received(move |r| hook_seen.lock().unwrap().push((r.client, r.frame.clone())))
            .start()
            .await
            .unwrap();
        let mut client = connect(&server, "/").await;
        client.send(Message::text("one")).await.unwrap();
        client.send(Message::binary(vec![2u8])).await.unwrap();
        server.expect_received(Matcher::predicate(|f| matches!(f, Frame::Binary(_))), WAIT).await.unwrap();
        let id = server.clients()[0].id;
        assert_eq!(*seen.lock().unwrap(), vec![(id, Frame::text("one")), (id, Frame::binary(vec![2u8]))]);
    })
    .await;
}

/// A client that has its 101 finds itself in `clients()` at once: the server lists a client
/// before it writes the 101 (it used to list it after the handshake's write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_listed_before_its_101() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        let mut held = Vec::new();
        for n in 1..=20 {
            let client = connect(&server, &format!("/c{n}")).await;
            let clients = server.clients();
            assert!(clients.iter().any(|c| c.path == format!("/c{n}")), "client {n} not listed: {clients:?}");
            held.push(client);
        }
    })
    .await;
}
