//! HTTP/1.1 over real loopback servers: every event kind, streaming, pipelining, Down lists,
//! graceful shutdown and bad servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Method, StatusCode};
use moorline::{DownReason, Error, Event, Http1Options, Protocol, RetryPolicy, StreamState};
use moorline_testkit::http::{Fault, TestServer};

/// Waits (polling, bounded by `T`) until `stream` is in `state`, as `stream_info` reports it.
async fn state_becomes(conn: &moorline::Connection, stream: &moorline::StreamRef, state: StreamState) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let now = conn.stream_info(stream).await.unwrap().map(|i| i.state);
        if now == Some(state) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stream:?} is {now:?}, never {state:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn get_response_and_body() {
    bounded(async {
        let server = plain_server(false).await;
        let rec = Recorder::default();
        let (conn, mut events, p) = connect(&server, opts(&rec)).await;
        assert_eq!(p, Protocol::Http1);
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let r = events.await_response(&s, T).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.fin);
        let body = events.await_body(&s, T).await.unwrap();
        assert_eq!(&body.data[..], b"hello");
        assert!(body.trailers.is_none());
        // Instrumentation saw every step, in order.
        let kinds: Vec<&'static str> = rec
            .steps()
            .iter()
            .map(|i| match i.step {
                moorline::Step::LookupStart { .. } => "lookup",
                moorline::Step::ConnectEnd { .. } => "connect",
                moorline::Step::Up { .. } => "up",
                moorline::Step::RequestStart { .. } => "req",
                moorline::Step::ResponseHeaders { .. } => "resp",
                moorline::Step::ResponseEnd { .. } => "end",
                _ => "",
            })
            .filter(|k| !k.is_empty())
            .collect();
        assert_eq!(kinds, ["lookup", "connect", "up", "req", "resp", "end"]);
        let info = conn.info();
        assert_eq!(info.state, moorline::State::Up);
        assert_eq!(info.protocol, Some(Protocol::Http1));
        assert_eq!(info.connects, 1);
    })
    .await;
}

#[tokio::test]
async fn events_in_order_for_a_streamed_response() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/stream?chunks=5&size=1000&delay_ms=10", HeaderMap::new()).await.unwrap();
        let mut total = 0;
        let mut saw_head = false;
        loop {
            match next(&mut events).await {
                Event::Response { stream, status, fin, .. } => {
                    assert_eq!(stream, s);
                    assert_eq!(status, StatusCode::OK);
                    assert!(!fin);
                    saw_head = true;
                }
                Event::Data { stream, data, fin } => {
                    assert!(saw_head);
                    assert_eq!(stream, s);
                    total += data.len();
                    if fin {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(total, 5000);
    })
    .await;
}

#[tokio::test]
async fn informational_then_final() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/inform", HeaderMap::new()).await.unwrap();
        match next(&mut events).await {
            Event::Inform { stream, status, headers } => {
                assert_eq!(stream, s);
                assert_eq!(status.as_u16(), 103);
                assert!(headers.contains_key("link"));
            }
            other => panic!("expected Inform, got {other:?}"),
        }
        let s2 = conn.get("/inform", HeaderMap::new()).await.unwrap();
        events.await_body(&s, T).await.unwrap();
        let r = events.await_response(&s2, T).await.unwrap();
        assert_eq!(r.informs.len(), 1);
        assert_eq!(r.informs[0].0.as_u16(), 103);
        assert_eq!(&events.await_body(&s2, T).await.unwrap().data[..], b"informed");
    })
    .await;
}

#[tokio::test]
async fn trailers_end_the_stream() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/trailers", HeaderMap::new()).await.unwrap();
        let body = events.await_body(&s, T).await.unwrap();
        assert_eq!(&body.data[..], b"body");
        assert_eq!(body.trailers.unwrap().get("x-checksum").unwrap(), "abc123");
    })
    .await;
}

#[tokio::test]
async fn head_and_no_body_statuses_complete_at_the_head() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.request(Method::HEAD, "/hello", HeaderMap::new(), Bytes::new()).await.unwrap();
        assert!(events.await_response(&s, T).await.unwrap().fin);
        let s = conn.get("/status/204", HeaderMap::new()).await.unwrap();
        let r = events.await_response(&s, T).await.unwrap();
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.fin);
        // The connection is still good afterwards.
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
        assert_eq!(server.connections_accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn streamed_request_body_is_echoed() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let (s, body) = conn.headers(Method::POST, "/echo", HeaderMap::new()).await.unwrap();
        assert_eq!(body.stream(), s);
        body.send("hello ").await.unwrap();
        body.send(Bytes::from_static(b"streamed ")).await.unwrap();
        body.finish("world").await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello streamed world");
        let s = conn.request(Method::PUT, "/echo", HeaderMap::new(), "full").await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"full");
    })
    .await;
}

#[tokio::test]
async fn down_lists_written_and_queued_requests() {
    bounded(async {
        let server = plain_server(false).await;
        let rec = Recorder::default();
        let (conn, mut events, _) = connect(&server, opts(&rec).retry(RetryPolicy::Never)).await;
        // The first stalls on the server; the two behind it are queued, never written.
        let a = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let b = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let c = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert!(server.wait_for_requests(1, T).await);
        // stream_info sees the states (the server may have read `a` before the worker marks it sent).
        state_becomes(&conn, &a, StreamState::AwaitingResponse).await;
        assert_eq!(conn.stream_info(&b).await.unwrap().unwrap().state, StreamState::Queued);
        server.close_all();
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { protocol, reason, possibly_processed, unprocessed } => {
                assert_eq!(protocol, Protocol::Http1);
                assert!(matches!(reason, DownReason::Closed), "{reason:?}");
                assert_eq!(possibly_processed, vec![a]);
                assert_eq!(unprocessed, vec![b, c]);
            }
            _ => unreachable!(),
        }
        // The waits on those streams fail at once.
        assert!(matches!(events.await_response(&a, T).await, Err(Error::Down(DownReason::Closed))));
        assert!(matches!(events.await_body(&c, T).await, Err(Error::Down(_))));
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_are_possibly_processed() {
    bounded(async {
        let server = plain_server(false).await;
        let opts = opts(&Recorder::default())
            .retry(RetryPolicy::Never)
            .http1(Http1Options { pipeline: 2, ..Http1Options::default() });
        let (conn, mut events, _) = connect(&server, opts).await;
        let a = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let b = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let c = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert!(server.wait_for_requests(1, T).await);
        // `b` goes out behind `a` (pipelined); `c` waits.
        state_becomes(&conn, &b, StreamState::AwaitingResponse).await;
        server.reset_all();
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { reason, possibly_processed, unprocessed, .. } => {
                assert!(matches!(reason, DownReason::Io(_) | DownReason::Closed), "{reason:?}");
                assert_eq!(possibly_processed, vec![a, b]);
                assert_eq!(unprocessed, vec![c]);
            }
            _ => unreachable!(),
        }
    })
    .await;
}

#[tokio::test]
async fn reconnects_after_server_close_and_serves_again() {
    bounded(async {
        let server = plain_server(false).await;
        let rec = Recorder::default();
        let (conn, mut events, _) = connect(&server, opts(&rec)).await;
        server.close_all();
        assert!(matches!(next(&mut events).await, Event::Down { .. }));
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http1);
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
        assert_eq!(conn.info().connects, 2);
        assert_eq!(server.connections_accepted(), 2);
    })
    .await;
}

#[tokio::test]
async fn server_connection_close_then_reconnect() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/close", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"bye");
        match next(&mut events).await {
            Event::Down { reason, possibly_processed, unprocessed, .. } => {
                assert!(matches!(reason, DownReason::ServerRequestedClose | DownReason::Closed), "{reason:?}");
                assert!(possibly_processed.is_empty() && unprocessed.is_empty());
            }
            other => panic!("expected Down, got {other:?}"),
        }
        events.await_up(T).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_streams_in_flight() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/slow?delay_ms=200", HeaderMap::new()).await.unwrap();
        assert!(server.wait_for_requests(1, T).await);
        conn.shutdown().await.unwrap();
        let refused = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let mut got_body = false;
        let mut got_refusal = false;
        loop {
            match next(&mut events).await {
                Event::Data { stream, fin: true, .. } if stream == s => got_body = true,
                Event::StreamError { stream, error: moorline::StreamError::ShuttingDown } if stream == refused => {
                    got_refusal = true
                }
                Event::Exit { reason } => {
                    assert!(matches!(reason, moorline::ExitReason::Shutdown), "{reason:?}");
                    break;
                }
                _ => {}
            }
        }
        assert!(got_body, "the in-flight response was delivered before the close");
        assert!(got_refusal, "a request after shutdown was refused");
        assert!(events.next().await.is_none());
        assert_eq!(conn.info().state, moorline::State::Exited);
    })
    .await;
}

#[tokio::test]
async fn cancel_discards_the_response_and_keeps_the_connection() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/slow?delay_ms=100", HeaderMap::new()).await.unwrap();
        conn.cancel(&s).await.unwrap();
        let s2 = conn.get("/hello", HeaderMap::new()).await.unwrap();
        // Only the second stream's events arrive.
        loop {
            let ev = next(&mut events).await;
            assert_ne!(ev.stream(), Some(s), "cancelled stream leaked {ev:?}");
            if let Event::Data { stream, fin: true, .. } = ev {
                assert_eq!(stream, s2);
                break;
            }
        }
        assert_eq!(server.connections_accepted(), 1);
    })
    .await;
}

async fn down_reason_against(fault: Fault) -> DownReason {
    let server = TestServer::builder().fault(fault).start().await.unwrap();
    let (conn, mut events, _) = connect(&server, opts(&Recorder::default()).retry(RetryPolicy::Never)).await;
    let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
    let err = events.await_response(&s, T).await.unwrap_err();
    let Error::Down(reason) = err else { panic!("expected Down, got {err:?}") };
    // And the worker exits with that reason as the last failure.
    match next_matching(&mut events, |e| matches!(e, Event::Exit { .. })).await {
        Event::Exit { reason: moorline::ExitReason::RetriesExhausted { attempts: 1, .. } } => {}
        other => panic!("unexpected {other:?}"),
    }
    reason
}

#[tokio::test]
async fn garbage_status_line_is_a_typed_protocol_error() {
    bounded(async {
        let reason = down_reason_against(Fault::GarbageStatusLine).await;
        let DownReason::Protocol(moorline::ProtocolFailure::Http1(e)) = reason else { panic!("{reason:?}") };
        assert!(matches!(e, moorline_proto::http1::DecodeError::InvalidStatusLine { .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    bounded(async {
        let reason = down_reason_against(Fault::OversizedHeaders(200 * 1024)).await;
        let DownReason::Protocol(moorline::ProtocolFailure::Http1(e)) = reason else { panic!("{reason:?}") };
        assert!(matches!(e, moorline_proto::http1::DecodeError::HeadTooLarge { .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn invalid_request_is_a_stream_error_not_a_crash() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/has space", HeaderMap::new()).await.unwrap();
        let err = events.await_response(&s, T).await.unwrap_err();
        assert!(matches!(err, Error::Stream(moorline::StreamError::InvalidRequest(_))), "{err:?}");
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
    })
    .await;
}

#[tokio::test]
async fn a_slow_owner_bounds_what_is_buffered() {
    bounded(async {
        let server = plain_server(false).await;
        let opts = opts(&Recorder::default()).event_buffer(4);
        let (conn, mut events, _) = connect(&server, opts).await;
        let s = conn.get("/big?bytes=67108864", HeaderMap::new()).await.unwrap();
        // The owner does not read for a while: the worker must stop reading the socket.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut ready = 0;
        while events.try_next().is_some() {
            ready += 1;
        }
        assert!(ready <= 5, "{ready} events were buffered for a stalled owner");
        // Then everything arrives.
        let body = events.await_body(&s, Duration::from_secs(20)).await.unwrap();
        assert!(body.data.len() + 4 * 65536 >= 67108864);
    })
    .await;
}

#[tokio::test]
async fn cancelling_mid_upload_drops_the_connection_but_not_into_the_lists() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let (s, body) = conn.headers(Method::POST, "/echo", HeaderMap::new()).await.unwrap();
        body.send("half of it").await.unwrap();
        let queued = conn.get("/hello", HeaderMap::new()).await.unwrap();
        conn.cancel(&s).await.unwrap();
        match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { reason, possibly_processed, unprocessed, .. } => {
                assert!(matches!(reason, DownReason::CancelledMidRequest), "{reason:?}");
                assert!(!possibly_processed.contains(&s) && !unprocessed.contains(&s));
                assert_eq!(unprocessed, vec![queued]);
            }
            _ => unreachable!(),
        }
        assert!(body.send("more").await.is_err(), "the body of a cancelled stream takes no more data");
        events.await_up(T).await.unwrap();
    })
    .await;
}
