//! WebSocket over HTTP/2 (RFC 8441) against the test kit's mock server.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{T, bounded, next_matching};
use moorline::ws::{CloseCode, Message, WsOptions};
use moorline::{
    ConnectOptions, Connection, DownReason, Error, Event, Events, Protocol, RetryPolicy, StreamError, StreamRef,
    TlsOptions, Transport,
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
