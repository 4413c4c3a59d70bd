//! WebSocket over HTTP/2 (RFC 8441) against the test kit's mock server.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{T, bounded, next_matching};
use moorline::ws::{CloseCode, Message, WsOptions};
use moorline::{
    ConnectOptions, Connection, DownReason, Error, Event, Events, Keepalive, Protocol, RetryPolicy, StreamError,
    StreamRef, TlsOptions, Transport,
};
use moorline_testkit::http::TestServer;
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer};

async fn h2c(server: &MockServer) -> (Connection, Events) {
    let opts = ConnectOptions::default().protocols(&[Protocol::Http2]).retry(RetryPolicy::Never);
    let (conn, mut events) = moorline::open("127.0.0.1", server.addr().port(), opts).unwrap();
    assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
    (conn, events)
}

/// Two WebSockets, on `/a` and `/b`, upgraded on the same connection.
async fn upgrade_two(conn: &Connection, events: &mut Events) -> (StreamRef, StreamRef) {
    let a = conn.ws_upgrade("/a", WsOptions::default()).await.unwrap();
    let b = conn.ws_upgrade("/b", WsOptions::default()).await.unwrap();
    events.await_ws_upgrade(&a, T).await.unwrap();
    events.await_ws_upgrade(&b, T).await.unwrap();
    (a, b)
}

#[tokio::test]
async fn several_websockets_share_one_connection() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) = h2c(&server).await;
        let (a, b) = upgrade_two(&conn, &mut events).await;
        assert_eq!(server.tcp_connections_accepted(), 1);
        // The server lists a session once its task runs, which may be just after we saw the upgrade.
        assert!(server.wait_for_open_connections(2, T).await);
        let clients = server.clients();
        assert_eq!(clients.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);

        conn.ws_send(&a, Message::text("on a")).await.unwrap();
        conn.ws_send(&b, Message::text("on b")).await.unwrap();
        let got = server.expect_received(Matcher::Exact("on b".into()), T).await.unwrap();
        assert_eq!(got.client, clients[1].id);
        server.expect_received(Matcher::Exact("on a".into()), T).await.unwrap();

        server.inject_to(clients[0].id, Frame::text("to a"));
        server.inject_to(clients[1].id, Frame::binary(vec![5u8; 50_000]));
        assert_eq!(events.await_ws(&b, T).await.unwrap(), Message::binary(vec![5u8; 50_000]));
        assert_eq!(events.await_ws(&a, T).await.unwrap(), Message::text("to a"));

        // An ordinary request on the same connection still works.
        let s = conn.get("/", http::HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_response(&s, T).await.unwrap().status.as_u16(), 400);

        // The server closes one WebSocket; the other and the connection go on.
        server.fault_to(clients[0].id, Fault::Close { code: 4001, reason: "a done".into() });
        assert!(matches!(events.await_ws(&a, T).await.unwrap(), Message::Close(Some(c)) if c.code == CloseCode(4001)));
        assert!(matches!(events.await_ws(&a, T).await, Err(Error::Stream(StreamError::WsClosed))));
        conn.ws_send(&b, Message::text("b still")).await.unwrap();
        server.expect_received(Matcher::Exact("b still".into()), T).await.unwrap();
        assert_eq!(conn.info().state, moorline::State::Up);
    })
    .await;
}

#[tokio::test]
async fn our_close_ends_the_stream_not_the_connection() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) = h2c(&server).await;
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        conn.ws_close(&ws, CloseCode::NORMAL, "bye").await.unwrap();
        assert!(
            matches!(events.await_ws(&ws, T).await.unwrap(), Message::Close(Some(c)) if c.code == CloseCode::NORMAL)
        );
        assert!(server.wait_for_open_connections(0, T).await);
        // A new WebSocket on the same connection.
        let again = conn.ws_upgrade("/again", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&again, T).await.unwrap();
        assert_eq!(server.tcp_connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn tls_alpn_h2_and_goaway_keeps_open_websockets() {
    bounded(async {
        let server = MockServer::builder().tls(true).http2(true).start().await.unwrap();
        let opts = ConnectOptions::default()
            .transport(Transport::Tls)
            .protocols(&[Protocol::Http2])
            .tls(TlsOptions::default().add_ca_pem(server.ca_pem()).unwrap())
            .retry(RetryPolicy::Never);
        let (conn, mut events) = moorline::open("127.0.0.1", server.addr().port(), opts).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        assert_eq!(server.fault(Fault::GoAway), 1);
        // Once the client has seen the GOAWAY, a new request fails at once as not processed:
        // probe until one does (one made earlier is answered by the server, 400).
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let probe = conn.get("/probe", moorline::http::HeaderMap::new()).await.unwrap();
            match events.await_response(&probe, T).await {
                Err(Error::Stream(StreamError::GoAwayUnprocessed { .. })) => break,
                other => assert!(tokio::time::Instant::now() < deadline, "GOAWAY never seen: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The open WebSocket keeps working after GOAWAY.
        conn.ws_send(&ws, Message::text("still here")).await.unwrap();
        server.expect_received(Matcher::Exact("still here".into()), T).await.unwrap();
        server.inject(Frame::text("news"));
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text("news"));
    })
    .await;
}

#[tokio::test]
async fn connection_loss_lists_every_websocket() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) = h2c(&server).await;
        let (a, b) = upgrade_two(&conn, &mut events).await;
        server.fault(Fault::Reset);
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { possibly_processed, reason, .. } => {
                assert_eq!(possibly_processed, [a, b], "{reason:?}");
                assert!(matches!(reason, DownReason::Io(_) | DownReason::Closed), "{reason:?}");
            }
            _ => unreachable!(),
        }
        assert!(matches!(events.await_ws(&a, T).await, Err(Error::Down(_))));
    })
    .await;
}

#[tokio::test]
async fn server_without_extended_connect_is_a_clear_error() {
    bounded(async {
        let server = TestServer::builder().h2(true).start().await.unwrap();
        let opts = ConnectOptions::default().protocols(&[Protocol::Http2]).retry(RetryPolicy::Never);
        let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        assert!(matches!(
            events.await_ws_upgrade(&ws, T).await,
            Err(Error::Stream(StreamError::Http2WebSocketUnsupported))
        ));
    })
    .await;
}

#[tokio::test]
async fn rejected_extended_connect_is_a_handshake_error() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        server.fault(Fault::RejectUpgrade(403));
        let (conn, mut events) = h2c(&server).await;
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        match events.await_ws_upgrade(&ws, T).await {
            Err(Error::Stream(StreamError::WsHandshake(e))) => assert!(e.to_string().contains("403"), "{e}"),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

fn h2c_retrying(delay: Duration) -> ConnectOptions {
    ConnectOptions::default().protocols(&[Protocol::Http2]).retry(RetryPolicy::fixed(3, delay))
}

/// A send on a WebSocket that is over must say so (issue 14, item 5): after the server
/// closed it (the connection stays up), after the connection went down, during the backoff
/// and once a new connection is up; after a cancel.
#[tokio::test]
async fn sends_on_a_websocket_that_ended_return_how_it_ended() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let port = server.addr().port();
        let is_reset = |r: &Result<(), Error>| matches!(r, Err(Error::Down(DownReason::Io(_) | DownReason::Closed)));

        // A backoff an hour long: the worker is certainly still in it when we send.
        let (conn, mut events) = moorline::open("127.0.0.1", port, h2c_retrying(Duration::from_secs(3600))).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let (a, b) = upgrade_two(&conn, &mut events).await;
        // The server lists a session once its task runs, which may be just after we saw the upgrade.
        assert!(server.wait_for_open_connections(2, T).await);
        let clients = server.clients();
        server.fault_to(clients[0].id, Fault::Close { code: 4001, reason: "a done".into() });
        assert!(matches!(events.await_ws(&a, T).await.unwrap(), Message::Close(Some(c)) if c.code == CloseCode(4001)));
        for r in [conn.ws_send(&a, Message::text("late a")).await, conn.ws_feed(&a, Message::text("late a")).await] {
            assert!(matches!(r, Err(Error::Stream(StreamError::WsClosed))), "{r:?}");
        }
        conn.ws_send(&b, Message::text("b still")).await.unwrap();
        server.expect_received(Matcher::Exact("b still".into()), T).await.unwrap();
        server.fault(Fault::Reset);
        let seen = events.await_ws(&b, T).await;
        assert!(matches!(seen, Err(Error::Down(DownReason::Io(_) | DownReason::Closed))), "{seen:?}");
        assert_eq!(conn.info().state, moorline::State::Reconnecting);
        for r in [conn.ws_send(&b, Message::text("backoff")).await, conn.ws_feed(&b, Message::text("backoff")).await] {
            assert!(is_reset(&r), "{r:?}");
        }
        let r = conn.ws_send(&a, Message::text("backoff")).await;
        assert!(matches!(r, Err(Error::Stream(StreamError::WsClosed))), "{r:?}");
        conn.close();

        // Once a new connection is up (a quick retry).
        let (conn, mut events) = moorline::open("127.0.0.1", port, h2c_retrying(Duration::from_millis(50))).unwrap();
        events.await_up(T).await.unwrap();
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        server.fault(Fault::Reset);
        assert!(matches!(events.await_ws(&ws, T).await, Err(Error::Down(_))));
        events.await_up(T).await.unwrap();
        for r in
            [conn.ws_send(&ws, Message::text("new conn")).await, conn.ws_feed(&ws, Message::text("new conn")).await]
        {
            assert!(is_reset(&r), "{r:?}");
        }
        // A WebSocket the owner cancelled takes no more messages either.
        let c = conn.ws_upgrade("/c", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&c, T).await.unwrap();
        conn.cancel(&c).await.unwrap();
        // The cancel goes through the worker: wait for it to be taken.
        let gone = async {
            while conn.stream_info(&c).await.unwrap().is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(T, gone).await.unwrap();
        let r = conn.ws_send(&c, Message::text("cancelled")).await;
        assert!(matches!(r, Err(Error::Stream(StreamError::WsClosed))), "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let texts: Vec<_> = server.received().iter().filter_map(|r| r.frame.as_text().map(str::to_owned)).collect();
        assert_eq!(texts, ["b still"]);
    })
    .await;
}

/// Keepalive (issue 14, item 7) over HTTP/2: a server that stops reading and answering takes
/// the connection down, even with the HTTP/2 PING keepalive off.
#[tokio::test]
async fn keepalive_ends_a_websocket_whose_server_stalls() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let opts = h2c_retrying(Duration::from_millis(50)).keepalive(None);
        let (conn, mut events) = moorline::open("127.0.0.1", server.addr().port(), opts).unwrap();
        events.await_up(T).await.unwrap();
        let k = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_millis(300) };
        let ws = conn.ws_upgrade("/", WsOptions::default().keepalive(Some(k))).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        server.fault(Fault::HalfOpen);
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { reason, possibly_processed, .. } => {
                assert!(matches!(reason, DownReason::WsKeepaliveTimeout(t) if t == k.timeout), "{reason:?}");
                assert_eq!(possibly_processed, [ws]);
            }
            _ => unreachable!(),
        }
        let r = conn.ws_send(&ws, Message::text("late")).await;
        assert!(matches!(r, Err(Error::Down(DownReason::WsKeepaliveTimeout(_)))), "{r:?}");
        events.await_up(T).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn keepalive_pings_keep_a_quiet_but_answering_server_up() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) = h2c(&server).await;
        // A generous timeout: only the pings matter here.
        let k = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_secs(5) };
        let ws = conn.ws_upgrade("/", WsOptions::default().keepalive(Some(k))).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(1500), events.next()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        let pings = server.received().iter().filter(|r| matches!(r.frame, Frame::Ping(_))).count();
        assert!(pings >= 2, "{pings} pings in 1.5 s");
        conn.ws_send(&ws, Message::text("still here")).await.unwrap();
        server.expect_received(Matcher::Exact("still here".into()), T).await.unwrap();
    })
    .await;
}

/// "Wait forever" (issue 14, item 12): `close_timeout(Duration::MAX)` must not overflow the
/// close deadline (it panicked the stream task, hence the worker).
#[tokio::test]
async fn a_close_timeout_of_duration_max_waits_instead_of_panicking() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) = h2c(&server).await;
        let ws = conn.ws_upgrade("/", WsOptions::default().close_timeout(Duration::MAX)).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        server.fault(Fault::HalfOpen);
        conn.ws_close(&ws, CloseCode::NORMAL, "").await.unwrap();
        let nothing = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
        assert!(nothing.is_err(), "{nothing:?}");
        assert_eq!(conn.info().state, moorline::State::Up);
        conn.close();
        match next_matching(&mut events, |e| matches!(e, Event::Exit { .. })).await {
            Event::Exit { reason: moorline::ExitReason::Closed } => {}
            other => panic!("{other:?}"),
        }
    })
    .await;
}

/// An HTTP/2 server for the stall test: one connection; an extended CONNECT to `/stuck` is
/// answered `200` and never read (its 16 KiB stream window closes); one to `/other` is
/// answered `200`, sent "hello", and read (the bytes go to `got`); a GET is answered `200`.
async fn stall_server(got: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>) -> u16 {
    use std::future::poll_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::Builder::new()
            .enable_connect_protocol()
            .initial_window_size(16 << 10)
            .initial_connection_window_size(1 << 20)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        let mut unread = Vec::new();
        while let Some(Ok((request, mut respond))) = conn.accept().await {
            let path = request.uri().path().to_owned();
            let body = request.into_body();
            match path.as_str() {
                "/stuck" => {
                    let send = respond.send_response(http::Response::new(()), false).unwrap();
                    unread.push((body, send));
                }
                "/other" => {
                    let mut send = respond.send_response(http::Response::new(()), false).unwrap();
                    let mut hello = bytes::BytesMut::new();
                    moorline_proto::ws::write_frame(true, false, 0x1, b"hello", None, &mut hello);
                    send.send_data(hello.freeze(), false).unwrap();
                    let got = got.clone();
                    tokio::spawn(async move {
                        let mut body = body;
                        let _keep = send;
                        while let Some(Ok(data)) = poll_fn(|cx| body.poll_data(cx)).await {
                            let _ = body.flow_control().release_capacity(data.len());
                            let _ = got.send(data);
                        }
                    });
                }
                _ => {
                    let _ = respond.send_response(http::Response::new(()), true);
                }
            }
        }
    });
    port
}

/// A server that stops reading one HTTP/2 WebSocket stalls only that WebSocket's senders:
/// they wait once its outbox (256 KiB) is full, while the connection's worker goes on with
/// everything else (requests, other WebSockets, their messages both ways). Before, sends went
/// through the worker into a 64-message channel per stream, and a full channel stopped the
/// whole connection.
#[tokio::test]
async fn a_websocket_whose_server_does_not_read_stalls_only_its_own_senders_over_http2() {
    bounded(async {
        let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        let port = stall_server(got_tx).await;
        let opts = ConnectOptions::default().protocols(&[Protocol::Http2]).retry(RetryPolicy::Never);
        let (conn, mut events) = moorline::open("127.0.0.1", port, opts).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let stuck = conn.ws_upgrade("/stuck", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&stuck, T).await.unwrap();

        // Far more than the outbox and the old channel (64) together: the sender waits.
        let sender = {
            let conn = conn.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    conn.ws_send(&stuck, Message::binary(vec![1u8; 64 << 10])).await.unwrap();
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!sender.is_finished(), "the sends never waited");

        // The rest of the connection goes on.
        let get = conn.get("/", http::HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_response(&get, T).await.unwrap().status.as_u16(), 200);
        let other = conn.ws_upgrade("/other", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&other, T).await.unwrap();
        assert_eq!(events.await_ws(&other, T).await.unwrap(), Message::text("hello"));
        conn.ws_send(&other, Message::text("on other")).await.unwrap();
        let mut wire = bytes::BytesMut::new();
        let mut decoder = moorline_proto::ws::Decoder::new(
            moorline_proto::ws::Role::Server,
            moorline_proto::ws::Limits::default(),
            None,
        );
        let message = tokio::time::timeout(T, async {
            loop {
                if let Some(m) = decoder.decode(&mut wire).unwrap() {
                    break m;
                }
                wire.extend_from_slice(&got.recv().await.unwrap());
            }
        })
        .await
        .unwrap();
        assert_eq!(message, Message::text("on other"));
        assert!(!sender.is_finished(), "the stuck WebSocket's sender still waits");
        sender.abort();
    })
    .await;
}

/// Over HTTP/2 too, a send after our close frame is refused to the caller at once (the
/// caller encodes into the stream's outbox, which knows the close state), not `Ok` followed
/// by an event.
#[tokio::test]
async fn a_send_after_our_close_is_refused_at_once_over_http2() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) = h2c(&server).await;
        let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        assert!(server.wait_for_open_connections(1, T).await);
        // The server stops writing: our close frame stays unanswered.
        assert_eq!(server.fault(Fault::StallAfter(0)), 1);
        conn.ws_close(&ws, CloseCode::NORMAL, "bye").await.unwrap();
        assert!(matches!(conn.ws_send(&ws, Message::text("late")).await, Err(Error::Stream(StreamError::WsClosed))));
        assert!(matches!(conn.ws_send(&ws, Message::text("later")).await, Err(Error::Stream(StreamError::WsClosed))));
        server.expect_received(Matcher::Exact("late".into()), Duration::from_millis(300)).await.unwrap_err();
    })
    .await;
}

/// Many small messages written at once reach the owner in batches (one delivery for up to 32
/// decoded together); the order holds across batches and against the close frame behind them,
/// and the owner's byte budget still counts every message of a batch.
#[tokio::test]
async fn a_burst_over_http2_arrives_whole_and_in_order_then_the_close() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let opts = ConnectOptions::default()
            .protocols(&[Protocol::Http2])
            .retry(RetryPolicy::Never)
            .event_buffer_bytes(4 * 1024);
        let (conn, mut events) = moorline::open("127.0.0.1", server.addr().port(), opts).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let ws = conn.ws_upgrade("/burst", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&ws, T).await.unwrap();
        assert!(server.wait_for_open_connections(1, T).await);
        let id = server.clients()[0].id;
        const N: usize = 2_000;
        for i in 0..N {
            server.inject_to(id, Frame::text(format!("m{i:05}")));
        }
        server.fault_to(id, Fault::Close { code: 4002, reason: "burst done".into() });
        // The owner reads late: the 4 KiB budget (about 600 of these messages) held the rest.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..N {
            assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text(format!("m{i:05}")), "message {i}");
        }
        assert!(matches!(events.await_ws(&ws, T).await.unwrap(), Message::Close(Some(c)) if c.code == CloseCode(4002)));
    })
    .await;
}
