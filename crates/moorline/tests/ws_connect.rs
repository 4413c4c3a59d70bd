//! `moorline::ws::connect`: a WebSocket from a URL, HTTP/1.1 by default even where the
//! server speaks HTTP/2, HTTP/2 opt-in, and the fallback to HTTP/1.1 when HTTP/2 refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{T, bounded};
use moorline::ws::{self, Message, WsOptions};
use moorline::{
    ConnectError, ConnectOptions, Error, Failure, Protocol, RetryPolicy, StreamError, TlsFailure, TlsOptions,
};
use moorline_testkit::http::TestServer;
use moorline_testkit::ws::{Frame, Matcher, MockServer, Reply};

fn echo() -> Reply {
    Reply::with(|f| matches!(f, Frame::Text(_) | Frame::Binary(_)).then(|| f.clone()))
}

fn tls_options(ca_pem: &str) -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never).tls(TlsOptions::default().add_ca_pem(ca_pem).unwrap())
}

#[tokio::test]
async fn ws_url_opens_and_echoes_on_the_path_and_query() {
    bounded(async {
        let server = MockServer::builder().on(Matcher::any(), echo()).start().await.unwrap();
        let url = format!("ws://127.0.0.1:{}/ws/api/v2?feed=1", server.addr().port());
        let options = ConnectOptions::default().retry(RetryPolicy::Never);
        let mut s = ws::connect(&url, options, WsOptions::default().protocols(["json"]), T).await.unwrap();
        assert_eq!(s.protocol, Protocol::Http1);
        s.conn.ws_send(&s.stream, Message::text("hi")).await.unwrap();
        assert_eq!(s.events.await_ws(&s.stream, T).await.unwrap(), Message::text("hi"));
        assert_eq!(server.clients()[0].path, "/ws/api/v2?feed=1");
    })
    .await;
}

#[tokio::test]
async fn wss_offers_only_http1_by_default_even_to_an_http2_server() {
    bounded(async {
        let server = MockServer::builder().tls(true).http2(true).on(Matcher::any(), echo()).start().await.unwrap();
        let url = format!("wss://127.0.0.1:{}/feed", server.addr().port());
        let mut s = ws::connect(&url, tls_options(server.ca_pem()), WsOptions::default(), T).await.unwrap();
        assert_eq!(s.protocol, Protocol::Http1, "HTTP/2 WebSockets are opt-in");
        s.conn.ws_send(&s.stream, Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(s.events.await_ws(&s.stream, T).await.unwrap(), Message::binary(vec![1, 2, 3]));
    })
    .await;
}

#[tokio::test]
async fn http2_is_opt_in_and_then_used() {
    bounded(async {
        let server = MockServer::builder().tls(true).http2(true).on(Matcher::any(), echo()).start().await.unwrap();
        let url = format!("wss://127.0.0.1:{}/feed", server.addr().port());
        let mut s = ws::connect(&url, tls_options(server.ca_pem()), WsOptions::default().http2(true), T).await.unwrap();
        assert_eq!(s.protocol, Protocol::Http2);
        s.conn.ws_send(&s.stream, Message::text("over h2")).await.unwrap();
        assert_eq!(s.events.await_ws(&s.stream, T).await.unwrap(), Message::text("over h2"));
    })
    .await;
}

#[tokio::test]
async fn refused_http2_websocket_is_a_clear_error_or_falls_back_to_http1() {
    bounded(async {
        // An HTTP/2 server without SETTINGS_ENABLE_CONNECT_PROTOCOL (and no WebSocket at all).
        let server = TestServer::builder().tls(true).h2(true).start().await.unwrap();
        let url = format!("wss://127.0.0.1:{}/feed", server.port());
        let options = || tls_options(server.ca_pem());
        let e = ws::connect(&url, options(), WsOptions::default().http2(true), T).await.unwrap_err();
        assert!(matches!(e, Error::Stream(StreamError::Http2WebSocketUnsupported)), "{e:?}");
        assert_eq!(server.connections_accepted(), 1);
        // With the fallback, a fresh HTTP/1.1 connection tries the upgrade: this server
        // answers it with a plain HTTP response, so the handshake error comes from HTTP/1.1.
        let e =
            ws::connect(&url, options(), WsOptions::default().http2(true).fallback_http1(true), T).await.unwrap_err();
        assert!(matches!(e, Error::Stream(StreamError::WsHandshake(_))), "{e:?}");
        assert_eq!(server.connections_accepted(), 3, "one HTTP/2 attempt, then one HTTP/1.1 attempt");
    })
    .await;
}

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    for url in ["http://127.0.0.1/", "127.0.0.1:80/x", "ws://", "ws://[::1", "not a url at all"] {
        let e = ws::connect(url, ConnectOptions::default(), WsOptions::default(), T).await.unwrap_err();
        assert!(matches!(e, Error::InvalidOptions(_)), "{url}: {e:?}");
    }
    let u = ws::WsUrl::parse("ws://[::1]:9000").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.target.as_str(), u.secure), ("::1", 9000, "/", false));
}

/// What `ws::connect` gives up with under the default retry policy: a `ConnectTimeout`
/// after the whole timeout, naming the last failure (also its source).
async fn timed_out(url: &str) -> (Error, Failure) {
    let t = Duration::from_secs(3);
    let err = ws::connect(url, ConnectOptions::default(), WsOptions::default(), t).await.unwrap_err();
    let Error::ConnectTimeout { after, attempts, last: Some(last) } = &err else { panic!("{err:?}") };
    assert_eq!(*after, t, "the whole timeout, not what was left of it");
    assert!(*attempts >= 1, "{err:?}");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<Failure>());
    assert!(source.is_some(), "{err:?}");
    let last = last.clone();
    (err, last)
}

/// Issue 14, item 6: a refused port is named, not hidden behind a bare timeout.
#[tokio::test]
async fn connect_timeout_names_a_refused_port() {
    bounded(async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (err, last) = timed_out(&format!("ws://127.0.0.1:{port}/")).await;
        let Failure::Connect(ConnectError::Connect { source, .. }) = &last else { panic!("{last:?}") };
        assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().contains("1 failed attempt; last: TCP connect"), "{err}");
    })
    .await;
}

/// Issue 14, item 6: a server whose CA is not trusted (the test kit's, not added).
#[tokio::test]
async fn connect_timeout_names_an_unknown_ca() {
    bounded(async {
        let server = MockServer::builder().tls(true).on(Matcher::any(), echo()).start().await.unwrap();
        let (err, last) = timed_out(&format!("wss://127.0.0.1:{}/", server.addr().port())).await;
        assert!(
            matches!(last, Failure::Connect(ConnectError::Tls { cause: TlsFailure::UnknownIssuer, .. })),
            "{last:?}"
        );
        assert!(err.to_string().contains("unknown issuer"), "{err}");
    })
    .await;
}

/// Issue 14, item 6: `wss://` to a port that speaks plain HTTP fails in the TLS handshake.
#[tokio::test]
async fn connect_timeout_names_wss_to_a_plain_port() {
    bounded(async {
        let server = MockServer::builder().on(Matcher::any(), echo()).start().await.unwrap();
        let (err, last) = timed_out(&format!("wss://127.0.0.1:{}/", server.addr().port())).await;
        assert!(matches!(last, Failure::Connect(ConnectError::Tls { .. })), "{last:?}");
        assert!(err.to_string().contains("TLS handshake"), "{err}");
    })
    .await;
}

/// Issue 14, item 12: `Duration::MAX` means no deadline, not a panic.
#[tokio::test]
async fn connect_with_duration_max_waits_instead_of_panicking() {
    bounded(async {
        let server = MockServer::builder().on(Matcher::any(), echo()).start().await.unwrap();
        let url = format!("ws://127.0.0.1:{}/", server.addr().port());
        let options = ConnectOptions::default().retry(RetryPolicy::Never);
        let mut s = ws::connect(&url, options, WsOptions::default(), Duration::MAX).await.unwrap();
        s.conn.ws_send(&s.stream, Message::text("forever")).await.unwrap();
        assert_eq!(s.events.await_ws(&s.stream, Duration::MAX).await.unwrap(), Message::text("forever"));
    })
    .await;
}
