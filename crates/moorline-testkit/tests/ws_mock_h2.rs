//! The WebSocket mock server over HTTP/2 (RFC 8441), driven by an `h2` client
//! doing extended CONNECT and a tungstenite WebSocket over the stream.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use h2::client::SendRequest;
use h2::ext::Protocol;
use http::{Method, Request, StatusCode};
use moorline_testkit::ws::{Fault, Frame, H2Stream, Matcher, MockServer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

const WAIT: Duration = Duration::from_secs(3);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("test timed out")
}

/// An HTTP/2 client connection over `io`, once the server's SETTINGS (with
/// ENABLE_CONNECT_PROTOCOL) have arrived.
async fn h2_client<T>(io: T) -> SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !client.is_extended_connect_protocol_enabled() {
        assert!(tokio::time::Instant::now() < deadline, "server never enabled extended CONNECT");
        tokio::time::sleep(Duration::from_millis(5)).await;
        client = client.ready().await.unwrap();
    }
    client
}

/// Sends an extended CONNECT for `path`; the response status and, on 200, the stream.
async fn extended_connect(
    client: &mut SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
) -> Result<(StatusCode, Option<H2Stream>), h2::Error> {
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .extension(Protocol::from_static("websocket"))
        .body(())
        .unwrap();
    let (response, send) = client.clone().ready().await?.send_request(request, false)?;
    let response = response.await?;
    let status = response.status();
    let stream = (status == StatusCode::OK).then(|| H2Stream::new(send, response.into_body()));
    Ok((status, stream))
}

async fn websocket(client: &mut SendRequest<Bytes>, addr: SocketAddr, path: &str) -> WebSocketStream<H2Stream> {
    let (status, stream) = extended_connect(client, addr, path).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    WebSocketStream::from_raw_socket(stream.unwrap(), Role::Client, None).await
}

async fn next(ws: &mut WebSocketStream<H2Stream>) -> Message {
    tokio::time::timeout(WAIT, ws.next()).await.expect("no message").expect("stream ended").unwrap()
}

#[tokio::test]
async fn sessions_multiplexed_on_one_cleartext_connection() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let mut client = h2_client(TcpStream::connect(server.addr()).await.unwrap()).await;
        let mut a = websocket(&mut client, server.addr(), "/a?x=1").await;
        let mut b = websocket(&mut client, server.addr(), "/b").await;
        assert!(server.wait_for_connections(2, WAIT).await);
        assert_eq!(server.tcp_connections_accepted(), 1);
        let clients = server.clients();
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].path, "/a?x=1");
        assert_eq!(clients[1].path, "/b");
        assert_ne!(clients[0].id, clients[1].id);

        a.send(Message::text("from a")).await.unwrap();
        b.send(Message::text("from b")).await.unwrap();
        let got = server.expect_received(Matcher::Exact("from b".into()), WAIT).await.unwrap();
        assert_eq!(got.client, clients[1].id);
        server.expect_received(Matcher::Exact("from a".into()), WAIT).await.unwrap();

        assert_eq!(server.inject(Frame::text("all")), 2);
        assert_eq!(next(&mut a).await, Message::text("all"));
        assert_eq!(next(&mut b).await, Message::text("all"));
        assert!(server.inject_to(clients[0].id, Frame::binary(vec![1, 2, 3])));
        assert_eq!(next(&mut a).await, Message::binary(vec![1, 2, 3]));

        // A close frame to one session leaves the other running.
        assert!(server.fault_to(clients[1].id, Fault::Close { code: 1001, reason: "bye".into() }));
        assert!(matches!(next(&mut b).await, Message::Close(Some(c)) if u16::from(c.code) == 1001));
        assert!(server.inject_to(clients[0].id, Frame::text("still")));
        assert_eq!(next(&mut a).await, Message::text("still"));
    })
    .await;
}

#[tokio::test]
async fn tls_with_alpn_h2_and_http1_on_the_same_server() {
    bounded(async {
        let server = MockServer::builder().tls(true).http2(true).start().await.unwrap();
        let config = Arc::new(server.client_tls_config_with_alpn(&["h2"]).unwrap());
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
        let mut client = h2_client(tls).await;
        let mut ws = websocket(&mut client, server.addr(), "/tls").await;
        ws.send(Message::text("over h2")).await.unwrap();
        server.expect_received(Matcher::Exact("over h2".into()), WAIT).await.unwrap();

        // An HTTP/1.1 client on the same server still upgrades.
        let config = Arc::new(server.client_tls_config().unwrap());
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut h1, _) = tokio_tungstenite::client_async(server.url(), tls).await.unwrap();
        assert!(server.wait_for_connections(2, WAIT).await);
        assert_eq!(server.inject(Frame::text("both")), 2);
        assert_eq!(next(&mut ws).await, Message::text("both"));
        assert_eq!(h1.next().await.unwrap().unwrap(), Message::text("both"));
    })
    .await;
}

#[tokio::test]
async fn goaway_refuses_new_sessions_and_lets_open_ones_run() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        // An HTTP/1.1 client is not affected by GOAWAY and not counted.
        let (mut h1, _) = tokio_tungstenite::connect_async(server.url()).await.unwrap();
        let mut client = h2_client(TcpStream::connect(server.addr()).await.unwrap()).await;
        let mut ws = websocket(&mut client, server.addr(), "/").await;
        assert!(server.wait_for_connections(2, WAIT).await);

        assert_eq!(server.fault(Fault::GoAway), 1);
        // New streams on that connection fail once the GOAWAY has arrived.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match extended_connect(&mut client, server.addr(), "/late").await {
                Err(e) => {
                    assert!(e.is_go_away() || e.reason().is_some(), "unexpected error: {e}");
                    break;
                }
                Ok((status, _)) => {
                    assert!(tokio::time::Instant::now() < deadline, "GOAWAY never arrived ({status})");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        // The open session still works both ways.
        ws.send(Message::text("after goaway")).await.unwrap();
        server.expect_received(Matcher::Exact("after goaway".into()), WAIT).await.unwrap();
        assert!(server.inject(Frame::text("late news")) >= 2);
        assert_eq!(next(&mut ws).await, Message::text("late news"));
        assert_eq!(h1.next().await.unwrap().unwrap(), Message::text("late news"));
    })
    .await;
}

#[tokio::test]
async fn reset_of_a_session_resets_its_connection() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let mut client = h2_client(TcpStream::connect(server.addr()).await.unwrap()).await;
        let mut a = websocket(&mut client, server.addr(), "/a").await;
        let mut b = websocket(&mut client, server.addr(), "/b").await;
        assert!(server.wait_for_open_connections(2, WAIT).await);
        let first = server.clients()[0].id;
        assert!(server.fault_to(first, Fault::Reset));
        for ws in [&mut a, &mut b] {
            let end = tokio::time::timeout(WAIT, ws.next()).await.expect("no end seen");
            assert!(matches!(end, None | Some(Err(_))), "{end:?}");
        }
        assert!(server.wait_for_open_connections(0, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn rejected_and_malformed_extended_connects_get_a_status() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let mut client = h2_client(TcpStream::connect(server.addr()).await.unwrap()).await;
        server.fault(Fault::RejectUpgrade(503));
        let (status, stream) = extended_connect(&mut client, server.addr(), "/").await.unwrap();
        assert_eq!((status, stream.is_none()), (StatusCode::SERVICE_UNAVAILABLE, true));
        server.clear_faults();
        // A plain GET is not a WebSocket.
        let request = Request::builder().uri(format!("http://{}/", server.addr())).body(()).unwrap();
        let (response, _) = client.clone().ready().await.unwrap().send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(server.connections_accepted(), 0);
        let _ws = websocket(&mut client, server.addr(), "/ok").await;
        assert!(server.wait_for_connections(1, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn shutdown_sends_going_away_to_every_session_and_goaway() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let addr = server.addr();
        let mut client = h2_client(TcpStream::connect(addr).await.unwrap()).await;
        let mut a = websocket(&mut client, addr, "/a").await;
        let mut b = websocket(&mut client, addr, "/b").await;
        assert!(server.wait_for_open_connections(2, WAIT).await);
        let shutdown = tokio::spawn(server.shutdown());
        for ws in [&mut a, &mut b] {
            match next(ws).await {
                Message::Close(Some(c)) => assert_eq!(u16::from(c.code), 1001, "{c:?}"),
                other => panic!("expected close 1001, got {other:?}"),
            }
        }
        shutdown.await.unwrap();
        // GOAWAY: no new session on the connection.
        assert!(extended_connect(&mut client, addr, "/c").await.is_err(), "a new stream after shutdown");
    })
    .await;
}

#[tokio::test]
async fn session_violations_are_closed_with_their_code() {
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame as RawFrame, coding::Data, coding::OpCode};
    bounded(async {
        let server = MockServer::builder().http2(true).max_message_size(100).start().await.unwrap();
        let mut client = h2_client(TcpStream::connect(server.addr()).await.unwrap()).await;
        let mut ws = websocket(&mut client, server.addr(), "/big").await;
        ws.send(Message::binary(vec![0u8; 101])).await.unwrap();
        match next(&mut ws).await {
            Message::Close(Some(c)) => assert_eq!(u16::from(c.code), 1009, "{c:?}"),
            other => panic!("expected close 1009, got {other:?}"),
        }
        let mut ws = websocket(&mut client, server.addr(), "/utf8").await;
        ws.send(Message::Frame(RawFrame::message(vec![0xFFu8, 0xFE], OpCode::Data(Data::Text), true))).await.unwrap();
        match next(&mut ws).await {
            Message::Close(Some(c)) => assert_eq!(u16::from(c.code), 1007, "{c:?}"),
            other => panic!("expected close 1007, got {other:?}"),
        }
    })
    .await;
}

/// A client that has its 200 finds its session in `clients()` at once: the server lists a
/// session before it answers (it used to list it from the session's task, after the 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_listed_before_its_200() {
    bounded(async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let mut client = h2_client(TcpStream::connect(server.addr()).await.unwrap()).await;
        for n in 1..=20 {
            let (status, _stream) = extended_connect(&mut client, server.addr(), &format!("/s{n}")).await.unwrap();
            assert_eq!(status, StatusCode::OK);
            let clients = server.clients();
            assert!(clients.iter().any(|c| c.path == format!("/s{n}")), "session {n} not listed: {clients:?}");
        }
    })
    .await;
}
