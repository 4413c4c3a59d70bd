//! HTTP/2 over real loopback servers (prior knowledge and TLS+ALPN): multiplexing, 1xx,
//! trailers, push, REFUSED_STREAM, GOAWAY's Down lists, keepalive and bad frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::{HeaderMap, Method, StatusCode};
use moorline::{DownReason, Error, Event, Http2Options, Protocol, RetryPolicy, StreamError};
use moorline_testkit::http::{Fault, TestServer};

fn h2_opts(rec: &Recorder) -> moorline::ConnectOptions {
    opts(rec).protocols(&[Protocol::Http2])
}

#[tokio::test]
async fn prior_knowledge_multiplexes_streams() {
    bounded(async {
        let server = plain_server(true).await;
        let (conn, mut events, p) = connect(&server, h2_opts(&Recorder::default())).await;
        assert_eq!(p, Protocol::Http2);
        // A stream the server never answers does not hold up the fast ones behind it.
        let slow = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let mut fast = Vec::new();
        for _ in 0..10 {
            fast.push(conn.get("/hello", HeaderMap::new()).await.unwrap());
        }
        for s in &fast {
            assert_eq!(&events.await_body(s, T).await.unwrap().data[..], b"hello");
        }
        assert!(conn.stream_info(&slow).await.unwrap().is_some(), "slow stream still in flight");
        assert_eq!(server.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn tls_alpn_chooses_h2_and_http1() {
    bounded(async {
        let server = tls_server(true).await;
        let rec = Recorder::default();
        let (conn, mut events, p) = connect(&server, tls_opts(&rec, &server)).await;
        assert_eq!(p, Protocol::Http2);
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
        assert_eq!(rec.count(|s| matches!(s, moorline::Step::TlsEnd { result: Ok(Some(p)) } if p == b"h2")), 1);

        let server1 = tls_server(false).await;
        let (conn, mut events, p) = connect(&server1, tls_opts(&rec, &server1)).await;
        assert_eq!(p, Protocol::Http1);
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
    })
    .await;
}

#[tokio::test]
async fn informational_trailers_and_echo() {
    bounded(async {
        let server = plain_server(true).await;
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default())).await;
        let s = conn.get("/inform", HeaderMap::new()).await.unwrap();
        let r = events.await_response(&s, T).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.informs.first().map(|i| i.0.as_u16()), Some(103));
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"informed");

        let s = conn.get("/trailers", HeaderMap::new()).await.unwrap();
        let b = events.await_body(&s, T).await.unwrap();
        assert_eq!(&b.data[..], b"body");
        assert_eq!(b.trailers.unwrap().get("x-checksum").unwrap(), "abc123");

        let big = vec![7u8; 1 << 20];
        let (s, body) = conn.headers(Method::POST, "/echo", HeaderMap::new()).await.unwrap();
        body.send(big.clone()).await.unwrap();
        body.finish("end").await.unwrap();
        let b = events.await_body(&s, Duration::from_secs(10)).await.unwrap();
        assert_eq!(b.data.len(), big.len() + 3);
    })
    .await;
}

#[tokio::test]
async fn server_push_is_delivered() {
    bounded(async {
        let server = TestServer::builder().h2(true).enable_push(true).start().await.unwrap();
        let opts = h2_opts(&Recorder::default()).http2(Http2Options { enable_push: true, ..Http2Options::default() });
        let (conn, mut events, _) = connect(&server, opts).await;
        let s = conn.get("/push", HeaderMap::new()).await.unwrap();
        let pushed = match next_matching(&mut events, |e| matches!(e, Event::Push { .. })).await {
            Event::Push { stream, pushed, method, uri, .. } => {
                assert_eq!(stream, s);
                assert_eq!(method, Method::GET);
                assert_eq!(uri.path(), "/pushed");
                pushed
            }
            _ => unreachable!(),
        };
        assert_eq!(&events.await_body(&pushed, T).await.unwrap().data[..], b"pushed");
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"push");
    })
    .await;
}

#[tokio::test]
async fn refused_stream_is_a_retry_safe_stream_error() {
    bounded(async {
        let server = TestServer::builder().h2(true).fault(Fault::RefuseStreams).start().await.unwrap();
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default())).await;
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let err = events.await_response(&s, T).await.unwrap_err();
        assert!(matches!(err, Error::Stream(StreamError::Refused)), "{err:?}");
        // The connection stays up.
        server.clear_fault();
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
    })
    .await;
}

#[tokio::test]
async fn goaway_splits_down_lists_by_last_stream_id() {
    bounded(async {
        // The server reads three HEADERS (streams 1, 3, 5), then GOAWAY(last_stream_id = 3).
        let server = TestServer::builder()
            .h2(true)
            .fault(Fault::GoAwayAfter { streams: 3, last_stream_id: 3 })
            .start()
            .await
            .unwrap();
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default()).retry(RetryPolicy::Never)).await;
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        let b = conn.get("/b", HeaderMap::new()).await.unwrap();
        let c = conn.get("/c", HeaderMap::new()).await.unwrap();
        // Stream 5, above the last-stream-id, fails at once as not processed...
        let err = events.await_response(&c, T).await.unwrap_err();
        assert!(
            matches!(err, Error::Stream(StreamError::GoAwayUnprocessed { last_stream_id: 3, error_code: 0 })),
            "{err:?}"
        );
        // ...and the streams the server may have processed end with the connection.
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { protocol, reason, possibly_processed, unprocessed } => {
                assert_eq!(protocol, Protocol::Http2);
                assert!(matches!(reason, DownReason::GoAway { last_stream_id: 3, error_code: 0 }), "{reason:?}");
                assert_eq!(possibly_processed, vec![a, b]);
                assert!(unprocessed.is_empty(), "{unprocessed:?}");
            }
            _ => unreachable!(),
        }
    })
    .await;
}

#[tokio::test]
async fn connection_loss_marks_open_streams_possibly_processed() {
    bounded(async {
        let server = plain_server(true).await;
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default())).await;
        let a = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let b = conn.get("/stall", HeaderMap::new()).await.unwrap();
        assert!(server.wait_for_requests(2, T).await);
        server.reset_all();
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { possibly_processed, unprocessed, .. } => {
                assert_eq!(possibly_processed, vec![a, b]);
                assert!(unprocessed.is_empty());
            }
            _ => unreachable!(),
        }
        // Reconnects and works.
        events.await_up(T).await.unwrap();
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_h2() {
    bounded(async {
        let server = plain_server(true).await;
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default())).await;
        let s = conn.get("/slow?delay_ms=200", HeaderMap::new()).await.unwrap();
        assert!(server.wait_for_requests(1, T).await);
        conn.shutdown().await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"slow");
        let ev = next_matching(&mut events, |e| matches!(e, Event::Exit { .. })).await;
        assert!(matches!(ev, Event::Exit { reason: moorline::ExitReason::Shutdown }), "{ev:?}");
    })
    .await;
}

#[tokio::test]
async fn invalid_frames_are_a_protocol_error() {
    bounded(async {
        let server = TestServer::builder().h2(true).fault(Fault::InvalidH2Frames).start().await.unwrap();
        let (_conn, mut events) =
            moorline::open("127.0.0.1", server.port(), h2_opts(&Recorder::default()).retry(RetryPolicy::Never))
                .unwrap();
        // Up may or may not be seen before the frames arrive; the Down must name a protocol error.
        let ev = next_matching(&mut events, |e| matches!(e, Event::Down { .. } | Event::Exit { .. })).await;
        // The bad frame may arrive with the server's SETTINGS (a failed handshake) or after
        // `Up` (a Down): a typed protocol error either way.
        match ev {
            // PROTOCOL_ERROR is HTTP/2 error code 1.
            Event::Down {
                reason: DownReason::Protocol(moorline::ProtocolFailure::Http2(moorline::Http2Failure { code, .. })),
                ..
            } => assert_eq!(code, Some(1)),
            Event::Exit {
                reason:
                    moorline::ExitReason::RetriesExhausted {
                        last:
                            moorline::Failure::Connect(moorline::ConnectError::Http2Handshake(
                                moorline::Http2HandshakeFailure::Http2(moorline::Http2Failure { code, .. }),
                            )),
                        ..
                    },
            } => assert_eq!(code, Some(1)),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn keepalive_detects_a_silent_server() {
    bounded(async {
        let server = plain_server(true).await;
        // A timeout no loaded machine misses (client and server share this test's thread).
        let ka = moorline::Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_secs(2) };
        let opts = h2_opts(&Recorder::default()).keepalive(Some(ka)).retry(RetryPolicy::Never);
        let (conn, mut events, _) = connect(&server, opts).await;
        // Healthy pings for longer than a ping and its timeout (unanswered, they would have
        // taken the connection down by now), then the peer goes silent without closing.
        tokio::time::sleep(ka.interval + ka.timeout + Duration::from_millis(300)).await;
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
        server.freeze_all();
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let err = events.await_response(&s, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(err, Error::Down(DownReason::KeepaliveTimeout(_))), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn cancel_resets_only_that_stream() {
    bounded(async {
        let server = plain_server(true).await;
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default())).await;
        let s = conn.get("/stream?chunks=50&size=100&delay_ms=20", HeaderMap::new()).await.unwrap();
        events.await_response(&s, T).await.unwrap();
        conn.cancel(&s).await.unwrap();
        assert!(conn.stream_info(&s).await.unwrap().is_none());
        let s2 = conn.get("/hello", HeaderMap::new()).await.unwrap();
        loop {
            let ev = next(&mut events).await;
            if let Event::Data { stream, fin: true, .. } = ev
                && stream == s2
            {
                break;
            }
        }
        // No event of the cancelled stream arrives later either.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Some(ev) = events.try_next() {
            assert_ne!(ev.stream(), Some(s), "cancelled stream leaked {ev:?}");
        }
        assert_eq!(server.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_slow_owner_bounds_what_is_buffered_h2() {
    bounded(async {
        let server = plain_server(true).await;
        let (conn, mut events, _) = connect(&server, h2_opts(&Recorder::default()).event_buffer(4)).await;
        let s = conn.get("/big?bytes=67108864", HeaderMap::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut ready = 0;
        while events.try_next().is_some() {
            ready += 1;
        }
        assert!(ready <= 5, "{ready} events were buffered for a stalled owner");
        // The rest still arrives, all of it, in order.
        let body = events.await_body(&s, Duration::from_secs(20)).await.unwrap();
        assert!(body.data.len() > 60 * 1024 * 1024, "{}", body.data.len());
    })
    .await;
}

#[tokio::test]
async fn up_waits_for_the_servers_settings() {
    bounded(async {
        // A peer that accepts TCP but never speaks HTTP/2 is not `Up`.
        let server = TestServer::builder().h2(true).fault(Fault::HalfOpen).start().await.unwrap();
        let o = h2_opts(&Recorder::default()).retry(RetryPolicy::Never).connect_timeout(Duration::from_millis(300));
        let (_c, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        let err = events.await_up(T).await.unwrap_err();
        let Error::Exited(Some(moorline::ExitReason::RetriesExhausted { last, .. })) = &err else { panic!("{err:?}") };
        assert!(last.to_string().contains("SETTINGS"), "{last}");
    })
    .await;
}
