//! The retry classification of real failed connection attempts, over loopback: the test kit's
//! WebSocket server answering the upgrade with a status, a TLS server whose issuer is not
//! trusted, refused ports, servers that drop or never answer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::time::Duration;

use moorline::{ConnectError, Error, ExitReason, Failure, TlsFailure, TlsOptions};
use moorline_client::connect::{check_url, connect_once};
use moorline_client::{ClientConfig, ConfigError, ErrorKind, classify_connect_error};
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer, Reply};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

fn config() -> ClientConfig {
    ClientConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .tls_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn attempt(url: &str, config: &ClientConfig) -> Error {
    match connect_once(url, config).await {
        Ok(s) => panic!("connected to {url} over {:?}", s.protocol),
        Err(e) => e,
    }
}

#[tokio::test]
async fn upgrade_answered_401_403_404_is_fatal_5xx_and_429_are_retried() {
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        for (status, kind) in [
            (401, ErrorKind::Fatal),
            (403, ErrorKind::Fatal),
            (404, ErrorKind::Fatal),
            (500, ErrorKind::Recoverable),
            (503, ErrorKind::Recoverable),
            (429, ErrorKind::Recoverable),
        ] {
            server.clear_faults();
            server.fault(Fault::RejectUpgrade(status));
            let e = attempt(&server.url(), &config()).await;
            assert!(e.to_string().contains(&status.to_string()), "{status}: {e}");
            assert_eq!(classify_connect_error(&e), kind, "{status}: {e:?}");
        }
        // And once the server accepts again, the same configuration connects.
        server.clear_faults();
        let s = connect_once(&server.url(), &config()).await.unwrap();
        s.conn.close();
    })
    .await;
}

#[tokio::test]
async fn an_unknown_certificate_issuer_is_fatal_and_said_so() {
    bounded(async {
        let server = MockServer::builder().tls(true).start().await.unwrap();
        let e = attempt(&server.url(), &config()).await;
        assert_eq!(classify_connect_error(&e), ErrorKind::Fatal, "{e:?}");
        let tls_cause = match &e {
            Error::Exited(Some(ExitReason::RetriesExhausted {
                last: Failure::Connect(ConnectError::Tls { cause, .. }),
                ..
            })) => cause.clone(),
            Error::ConnectTimeout { last: Some(Failure::Connect(ConnectError::Tls { cause, .. })), .. } => {
                cause.clone()
            }
            other => panic!("{other:?}"),
        };
        assert!(matches!(tls_cause, TlsFailure::UnknownIssuer), "{tls_cause:?}");
        assert!(e.to_string().contains("unknown issuer"), "{e}");
        assert_eq!(server.connections_accepted(), 0, "no upgrade was attempted");

        // Trusting the test kit's CA, the same server connects, and the configured headers
        // are on the upgrade request.
        let trusted = ClientConfig::builder()
            .tls(TlsOptions::default().add_ca_pem(server.ca_pem()).unwrap())
            .header("x-api-key", "k-1")
            .build()
            .unwrap();
        let s = connect_once(&server.url(), &trusted).await.unwrap();
        assert!(server.wait_for_connections(1, Duration::from_secs(5)).await);
        assert_eq!(server.clients()[0].header("x-api-key"), Some("k-1"));
        s.conn.close();
    })
    .await;
}

#[tokio::test]
async fn a_refused_port_is_retried() {
    bounded(async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = attempt(&format!("ws://127.0.0.1:{port}/"), &config()).await;
        assert_eq!(classify_connect_error(&e), ErrorKind::Recoverable, "{e:?}");
        assert!(e.to_string().contains("TCP connect"), "{e}");
    })
    .await;
}

/// A server that accepts TCP, reads the upgrade request, and closes: a drop during the
/// attempt, retried.
#[tokio::test]
async fn a_drop_during_the_upgrade_is_retried() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        });
        let e = attempt(&format!("ws://127.0.0.1:{port}/"), &config()).await;
        assert_eq!(classify_connect_error(&e), ErrorKind::Recoverable, "{e:?}");
        server.await.unwrap();
    })
    .await;
}

/// A server that accepts and never answers the upgrade: the handshake timeout ends the
/// attempt (paused clock: no real waiting), and a timeout is retried.
#[tokio::test(start_paused = true)]
async fn an_unanswered_upgrade_times_out_and_is_retried() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // Hold the socket open without answering.
            std::future::pending::<()>().await;
            drop(socket);
        });
        let config = ClientConfig::builder().handshake_timeout(Duration::from_secs(2)).build().unwrap();
        let e = attempt(&format!("ws://127.0.0.1:{port}/"), &config).await;
        assert!(matches!(e, Error::Timeout(_) | Error::ConnectTimeout { .. }), "{e:?}");
        assert_eq!(classify_connect_error(&e), ErrorKind::Recoverable, "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn a_bad_url_is_a_config_error_and_fatal() {
    bounded(async {
        assert!(matches!(check_url("https://venue.example/ws"), Err(ConfigError::Url { .. })));
        let e = attempt("https://venue.example/ws", &config()).await;
        assert!(matches!(e, Error::InvalidOptions(_)), "{e:?}");
        assert_eq!(classify_connect_error(&e), ErrorKind::Fatal);
    })
    .await;
}

/// An attempt that succeeds gives a WebSocket that works, over HTTP/1.1 by default and over
/// HTTP/2 when opted in.
#[tokio::test]
async fn a_successful_attempt_echoes_over_http1_and_opt_in_http2() {
    bounded(async {
        let echo = Reply::with(|f| matches!(f, Frame::Text(_)).then(|| f.clone()));
        let server = MockServer::builder().tls(true).http2(true).on(Matcher::any(), echo).start().await.unwrap();
        for http2 in [false, true] {
            let config = ClientConfig::builder()
                .tls(TlsOptions::default().add_ca_pem(server.ca_pem()).unwrap())
                .http2(http2)
                .build()
                .unwrap();
            let mut s = connect_once(&server.url(), &config).await.unwrap();
            assert_eq!(s.protocol, if http2 { moorline::Protocol::Http2 } else { moorline::Protocol::Http1 });
            s.conn.ws_send(&s.stream, moorline::ws::Message::text("ping?")).await.unwrap();
            let back = s.events.await_ws(&s.stream, Duration::from_secs(5)).await.unwrap();
            assert_eq!(back, moorline::ws::Message::text("ping?"));
            s.conn.close();
        }
    })
    .await;
}
