//! The test server's HTTP/2 side (and TLS), driven by `h2::client` and raw frames.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, frame, h2_client, h2_get, read_frame, tls_connect};
use h2::Reason;
use moorline_testkit::http::{Fault, TestServer, unrelated_ca_pem};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn plain_h2(server: &TestServer) -> h2::client::SendRequest<Bytes> {
    h2_client(TcpStream::connect(server.addr()).await.unwrap()).await
}

#[tokio::test]
async fn prior_knowledge_hello_and_trailers() {
    bounded(async {
        let server = TestServer::builder().h2(true).start().await.unwrap();
        let mut client = plain_h2(&server).await;
        let (status, body, _) = h2_get(&mut client, "localhost", "/hello").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"hello");
        let (status, body, trailers) = h2_get(&mut client, "localhost", "/trailers").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"body");
        assert_eq!(trailers.unwrap()["x-checksum"], "abc123");
        let (status, body, _) = h2_get(&mut client, "localhost", "/status/418").await.unwrap();
        assert_eq!((status.as_u16(), body.len()), (418, 0));
        let (status, _, _) = h2_get(&mut client, "localhost", "/nowhere").await.unwrap();
        assert_eq!(status, 404);
        assert_eq!(server.requests_seen(), 4);
        assert_eq!(server.connections_accepted(), 1);
        // HTTP/1.1 still works on the same plain port.
        let out = common::h1_exchange(server.addr(), b"GET /hello HTTP/1.1\r\nconnection: close\r\n\r\n").await;
        assert!(out.ends_with(b"hello"));
    })
    .await;
}

#[tokio::test]
async fn tls_alpn_h2_hello_trailers_inform_echo() {
    bounded(async {
        let server = TestServer::builder().tls(true).h2(true).start().await.unwrap();
        let tls = tls_connect(&server, &["h2", "http/1.1"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut client = h2_client(tls).await;
        let (status, body, _) = h2_get(&mut client, "localhost", "/hello").await.unwrap();
        assert_eq!((status.as_u16(), body.as_slice()), (200, &b"hello"[..]));
        let (_, body, trailers) = h2_get(&mut client, "localhost", "/trailers").await.unwrap();
        assert_eq!(body, b"body");
        assert_eq!(trailers.unwrap()["x-checksum"], "abc123");

        // 103 Early Hints through h2's informational support.
        let request = http::Request::get("https://localhost/inform").body(()).unwrap();
        let (mut response, _) = client.clone().ready().await.unwrap().send_request(request, true).unwrap();
        let hint = poll_fn(|cx| response.poll_informational(cx)).await.unwrap().unwrap();
        assert_eq!(hint.status(), 103);
        assert_eq!(hint.headers()["link"], "</style.css>; rel=preload");
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);

        // Streaming echo with flow control.
        let request = http::Request::post("https://localhost/echo").body(()).unwrap();
        let (response, mut upload) = client.clone().ready().await.unwrap().send_request(request, false).unwrap();
        let payload = Bytes::from(vec![b'e'; 200_000]);
        let sender = tokio::spawn(async move {
            let mut rest = payload;
            while !rest.is_empty() {
                upload.reserve_capacity(rest.len());
                let cap = poll_fn(|cx| upload.poll_capacity(cx)).await.unwrap().unwrap();
                let piece = rest.split_to(cap.min(rest.len()));
                upload.send_data(piece, false).unwrap();
            }
            upload.send_data(Bytes::new(), true).unwrap();
        });
        let mut body = response.await.unwrap().into_body();
        let mut echoed = 0;
        while let Some(piece) = body.data().await {
            let piece = piece.unwrap();
            echoed += piece.len();
            body.flow_control().release_capacity(piece.len()).unwrap();
        }
        sender.await.unwrap();
        assert_eq!(echoed, 200_000);
    })
    .await;
}

#[tokio::test]
async fn tls_without_h2_negotiates_http1() {
    bounded(async {
        let server = TestServer::builder().tls(true).start().await.unwrap();
        let mut tls = tls_connect(&server, &["h2", "http/1.1"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.unwrap();
        assert!(out.ends_with(b"hello"));
    })
    .await;
}

#[tokio::test]
async fn tls_verification_against_unrelated_ca_fails() {
    bounded(async {
        let server = TestServer::builder().tls(true).h2(true).start().await.unwrap();
        let pem = unrelated_ca_pem().unwrap();
        let wrong = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(wrong).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let err = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).unwrap();
        assert!(
            matches!(inner, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
            "{inner:?}"
        );
        // The right CA works, also by IP address.
        let config = server.client_tls_config(&[]).unwrap();
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        assert!(server.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    })
    .await;
}

#[tokio::test]
async fn refuse_streams_yields_refused_stream() {
    bounded(async {
        let server = TestServer::builder().h2(true).start().await.unwrap();
        let mut client = plain_h2(&server).await;
        server.set_fault(Fault::RefuseStreams);
        let err = h2_get(&mut client, "localhost", "/hello").await.unwrap_err();
        assert_eq!(err.reason(), Some(Reason::REFUSED_STREAM), "{err:?}");
        server.clear_fault();
        let (status, _, _) = h2_get(&mut client, "localhost", "/hello").await.unwrap();
        assert_eq!(status, 200);
    })
    .await;
}

#[tokio::test]
async fn go_away_after_sends_goaway_with_last_stream_id() {
    bounded(async {
        let server = TestServer::builder()
            .h2(true)
            .fault(Fault::GoAwayAfter { streams: 2, last_stream_id: 1 })
            .start()
            .await
            .unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        // Minimal header blocks (:method GET, :scheme http, :path /), END_STREAM|END_HEADERS.
        out.extend(frame(0x1, 0x5, 1, &[0x82, 0x86, 0x84]));
        out.extend(frame(0x1, 0x5, 3, &[0x82, 0x86, 0x84]));
        out.extend(frame(0x6, 0, 0, b"12345678"));
        tcp.write_all(&out).await.unwrap();
        let mut saw_settings_ack = false;
        let goaway = loop {
            let (kind, flags, stream, payload) = read_frame(&mut tcp).await.expect("EOF before GOAWAY");
            match kind {
                0x4 if flags & 1 == 1 => saw_settings_ack = true,
                0x7 => break (stream, payload),
                _ => {}
            }
        };
        assert!(saw_settings_ack);
        assert_eq!(goaway.0, 0);
        let last = u32::from_be_bytes(goaway.1[..4].try_into().unwrap()) & 0x7fff_ffff;
        let code = u32::from_be_bytes(goaway.1[4..8].try_into().unwrap());
        assert_eq!((last, code), (1, 0));
        // The connection is closed shortly after.
        let started = tokio::time::Instant::now();
        while read_frame(&mut tcp).await.is_some() {}
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(server.requests_seen(), 2);
    })
    .await;
}

#[tokio::test]
async fn invalid_h2_frames_break_the_h2_client() {
    bounded(async {
        let server = TestServer::builder().h2(true).fault(Fault::InvalidH2Frames).start().await.unwrap();
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(conn);
        let request = http::Request::get("http://localhost/hello").body(()).unwrap();
        if let Ok((response, _)) = client.send_request(request, true) {
            assert!(response.await.is_err());
        }
        let err = driver.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), Some(Reason::PROTOCOL_ERROR), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn close_route_sends_goaway() {
    bounded(async {
        let server = TestServer::builder().h2(true).start().await.unwrap();
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(conn);
        let (status, body, _) = h2_get(&mut client, "localhost", "/close").await.unwrap();
        assert_eq!((status.as_u16(), body.as_slice()), (200, &b"bye"[..]));
        drop(client);
        // The server's GOAWAY ends the connection cleanly.
        driver.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn push_promise_for_pushed() {
    bounded(async {
        let server = TestServer::builder().h2(true).start().await.unwrap();
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let (client, conn) = h2::client::Builder::new().enable_push(true).handshake::<_, Bytes>(tcp).await.unwrap();
        tokio::spawn(conn);
        let request = http::Request::get("http://localhost/push").body(()).unwrap();
        let (mut response, _) = client.ready().await.unwrap().send_request(request, true).unwrap();
        let mut pushes = response.push_promises();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        let promise = pushes.push_promise().await.unwrap().unwrap();
        let (request, pushed) = promise.into_parts();
        assert_eq!(request.uri().path(), "/pushed");
        let mut body = pushed.await.unwrap().into_body();
        let mut data = Vec::new();
        while let Some(piece) = body.data().await {
            data.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(data, b"pushed");
    })
    .await;
}

#[tokio::test]
async fn stall_and_reset_and_big_over_h2() {
    bounded(async {
        let server = TestServer::builder().h2(true).start().await.unwrap();
        let mut client = plain_h2(&server).await;
        // /big respects flow control (the client releases capacity as it reads).
        let (status, body, _) = h2_get(&mut client, "localhost", "/big?bytes=300000").await.unwrap();
        assert_eq!((status.as_u16(), body.len()), (200, 300_000));
        // /stall never answers.
        let stalled =
            tokio::time::timeout(Duration::from_millis(200), h2_get(&mut client, "localhost", "/stall")).await;
        assert!(stalled.is_err());
        // /reset kills the TCP connection.
        let err = h2_get(&mut client, "localhost", "/reset").await.unwrap_err();
        assert!(err.is_io() || err.is_go_away() || err.reason().is_some(), "{err:?}");
        // Fault::Stall: preface + settings done, requests counted, no answer.
        server.set_fault(Fault::Stall);
        let mut client = plain_h2(&server).await;
        let before = server.requests_seen();
        let stalled =
            tokio::time::timeout(Duration::from_millis(200), h2_get(&mut client, "localhost", "/hello")).await;
        assert!(stalled.is_err());
        assert!(server.wait_for_requests(before + 1, Duration::from_secs(5)).await, "the request was not counted");
    })
    .await;
}

#[tokio::test]
async fn silent_tls_never_handshakes() {
    bounded(async {
        let server = TestServer::builder().tls(true).h2(true).fault(Fault::SilentTls).start().await.unwrap();
        let config = server.client_tls_config(&["h2"]).unwrap();
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let handshake =
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp);
        assert!(tokio::time::timeout(Duration::from_millis(300), handshake).await.is_err());
        assert!(server.wait_for_connections(1, Duration::from_secs(5)).await);
        assert_eq!(server.open_connections(), 1);
        server.close_all();
        assert_eq!(server.open_connections(), 0);
    })
    .await;
}
