//! The test server's HTTP/1.1 side, driven by raw TCP clients.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{bounded, dechunk, h1_exchange, split_head};
use moorline_testkit::http::{Fault, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn get_hello() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(server.addr(), b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        let (head, body) = split_head(&out);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert_eq!(body, b"hello");
        assert_eq!(server.requests_seen(), 1);
        assert_eq!(server.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(
            server.addr(),
            b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nhost: x\r\n\r\nGET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
        let first = text.find("hello").unwrap();
        let no_content = text.find("HTTP/1.1 204 No Content\r\n").unwrap();
        assert!(first < no_content);
        assert!(text.ends_with("hello"));
        assert_eq!(server.requests_seen(), 3);
        assert_eq!(server.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn keep_alive_serves_sequential_requests() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        for _ in 0..2 {
            tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.ends_with(b"hello") {
                let n = tcp.read(&mut buf).await.unwrap();
                assert_ne!(n, 0);
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(server.connections_accepted(), 1);
        assert_eq!(server.open_connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn chunked_echo_streams_back() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(
            server.addr(),
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-t: 1\r\n\r\n",
        )
        .await;
        let (head, body) = split_head(&out);
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert_eq!(dechunk(&body).0, b"hello, world");
    })
    .await;
}

#[tokio::test]
async fn content_length_echo_and_expect_continue() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(
            b"PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 25];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
        tcp.write_all(b"ping").await.unwrap();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.unwrap();
        let (_, body) = split_head(&out);
        assert_eq!(dechunk(&body).0, b"ping");
    })
    .await;
}

#[tokio::test]
async fn inform_sends_103_first() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(server.addr(), b"GET /inform HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{text}"
        );
        assert!(text.ends_with("informed"));
    })
    .await;
}

#[tokio::test]
async fn trailers_follow_chunked_body() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(server.addr(), b"GET /trailers HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        let (head, body) = split_head(&out);
        assert!(head.contains("trailer: x-checksum\r\n"), "{head}");
        let (data, trailers) = dechunk(&body);
        assert_eq!(data, b"body");
        assert_eq!(trailers, "x-checksum: abc123\r\n\r\n");
    })
    .await;
}

#[tokio::test]
async fn head_and_misc_routes() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(
            server.addr(),
            b"HEAD /hello HTTP/1.1\r\nhost: x\r\n\r\nHEAD /big?bytes=999999 HTTP/1.1\r\nhost: x\r\n\r\nGET /nope HTTP/1.1\r\nhost: x\r\n\r\nGET /stream?chunks=3&size=2 HTTP/1.1\r\nhost: x\r\n\r\nGET /big?bytes=100000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        let text = String::from_utf8(out).unwrap();
        let (hello_head, rest) = text.split_at(text.find("\r\n\r\n").unwrap() + 4);
        assert!(hello_head.contains("content-length: 5\r\n"));
        assert!(rest.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 999999\r\n\r\nHTTP/1.1 404 Not Found\r\n"), "{rest}");
        assert!(text.contains("transfer-encoding: chunked\r\n\r\n2\r\nxx\r\n2\r\nxx\r\n2\r\nxx\r\n0\r\n\r\n"));
        assert!(text.ends_with(&"x".repeat(100_000)));
        assert_eq!(text.len() - text.rfind("\r\n\r\n").unwrap() - 4, 100_000);
    })
    .await;
}

#[tokio::test]
async fn close_route_sends_connection_close() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let out = h1_exchange(server.addr(), b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let (head, body) = split_head(&out);
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert_eq!(body, b"bye");
    })
    .await;
}

#[tokio::test]
async fn reset_route_resets() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /reset HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let err = tcp.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    })
    .await;
}

#[tokio::test]
async fn stall_body_sends_partial_body() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /stall-body HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"xxxxxxxxxx") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert_ne!(n, 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).contains("content-length: 100\r\n"));
        let more = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
        assert!(more.is_err(), "expected silence, got {more:?}");
    })
    .await;
}

#[tokio::test]
async fn close_all_gives_eof() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /stall HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(server.wait_for_requests(1, Duration::from_secs(5)).await);
        assert_eq!(server.open_connections(), 1);
        server.close_all();
        let mut buf = [0u8; 64];
        assert_eq!(tcp.read(&mut buf).await.unwrap(), 0);
        assert_eq!(server.open_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn reset_all_gives_connection_reset() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /stall HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(server.wait_for_requests(1, Duration::from_secs(5)).await);
        server.reset_all();
        let mut buf = [0u8; 64];
        let err = tcp.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    })
    .await;
}

#[tokio::test]
async fn garbage_status_line_fault() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        server.set_fault(Fault::GarbageStatusLine);
        let out = h1_exchange(server.addr(), b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert_eq!(out, b"HTTX/9.9 what\r\n\r\n");
        server.clear_fault();
        let out = h1_exchange(server.addr(), b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(out.ends_with(b"hello"));
    })
    .await;
}

#[tokio::test]
async fn oversized_headers_fault() {
    bounded(async {
        let server = TestServer::builder().fault(Fault::OversizedHeaders(100_000)).start().await.unwrap();
        let out = h1_exchange(server.addr(), b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        let (head, body) = split_head(&out);
        assert!(head.len() > 100_000);
        assert!(head.contains(&format!("x-oversized: {}\r\n", "a".repeat(100_000))));
        assert!(body.is_empty());
    })
    .await;
}

#[tokio::test]
async fn refuse_connections_closes_immediately() {
    bounded(async {
        let server = TestServer::builder().fault(Fault::RefuseConnections).start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(tcp.read(&mut buf).await.unwrap(), 0);
        assert_eq!(server.requests_seen(), 0);
    })
    .await;
}

#[tokio::test]
async fn reset_connections_resets_immediately() {
    bounded(async {
        let server = TestServer::builder().fault(Fault::ResetConnections).start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        let mut buf = [0u8; 64];
        let err = tcp.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    })
    .await;
}

#[tokio::test]
async fn stall_fault_reads_but_never_answers() {
    bounded(async {
        let server = TestServer::builder().fault(Fault::Stall).start().await.unwrap();
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\nGET /hello HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(server.wait_for_requests(2, Duration::from_secs(5)).await);
        let mut buf = [0u8; 64];
        let more = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
        assert!(more.is_err(), "expected silence, got {more:?}");
        drop(tcp);
        assert!(server.wait_for_connections(1, Duration::from_secs(5)).await);
    })
    .await;
}

#[tokio::test]
async fn bad_requests_get_400_and_never_panic() {
    bounded(async {
        let server = TestServer::builder().start().await.unwrap();
        let huge = format!("GET /hello HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(70_000));
        let out = h1_exchange(server.addr(), huge.as_bytes()).await;
        assert!(out.starts_with(b"HTTP/1.1 431 "), "{}", String::from_utf8_lossy(&out));
        for (garbage, expect_400) in [
            (&b"\x00\x01\x02 nonsense\r\n\r\n"[..], true),
            (b"GET /hello HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", true),
            (b"GET /stream?chunks=lots HTTP/1.1\r\nconnection: close\r\n\r\n", true),
            (b"GET /hello HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", true),
            (b"GET /hello HTTP/1.1\r\nx: \x01\r\n\r\n", true),
            // The echo head is already out when the bad chunk arrives: the connection just ends.
            (b"POST /echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", false),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00", true),
            (b"GET /hel", false),
        ] {
            let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
            tcp.write_all(garbage).await.unwrap();
            tcp.shutdown().await.unwrap();
            let mut out = Vec::new();
            let _ = tcp.read_to_end(&mut out).await;
            let text = String::from_utf8_lossy(&out);
            assert!(!expect_400 || text.starts_with("HTTP/1.1 400"), "{text}");
        }
        let out = h1_exchange(server.addr(), b"GET /hello HTTP/1.1\r\nconnection: close\r\n\r\n").await;
        assert!(out.ends_with(b"hello"));
    })
    .await;
}
