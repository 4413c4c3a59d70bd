//! Regression tests for races found in review, each against a scripted raw server on
//! loopback that produces the exact byte sequence (and timing) that broke an invariant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use http::HeaderMap;
use moorline::{ConnectOptions, DownReason, Error, Event, Protocol, RetryPolicy, StreamError, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn goaway(last: u32) -> Vec<u8> {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&last.to_be_bytes());
    frame(7, 0, 0, &p)
}

async fn read_frame(s: &mut TcpStream) -> Option<(u8, u8, u32)> {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).await.ok()?;
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.ok()?;
    Some((h[3], h[4], u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff))
}

/// Accept one HTTP/2 connection: read the preface, send SETTINGS, ACK the client's, and read
/// until `headers` HEADERS frames arrived.
async fn h2_accept(l: &TcpListener, headers: usize) -> TcpStream {
    let (mut s, _) = l.accept().await.unwrap();
    let mut pre = [0u8; 24];
    s.read_exact(&mut pre).await.unwrap();
    s.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    let mut seen = 0;
    while seen < headers {
        let Some((kind, flags, _)) = read_frame(&mut s).await else { break };
        if kind == 4 && flags & 1 == 0 {
            s.write_all(&frame(4, 1, 0, &[])).await.unwrap();
        }
        if kind == 1 {
            seen += 1;
        }
    }
    s
}

fn raw_opts() -> ConnectOptions {
    ConnectOptions::default().transport(Transport::Tcp).retry(RetryPolicy::Never).keepalive(None)
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_then_immediate_close_keeps_exact_lists() {
    bounded(async {
        for _ in 0..5 {
            let (l, port) = listener().await;
            tokio::spawn(async move {
                let mut s = h2_accept(&l, 2).await;
                s.write_all(&goaway(1)).await.unwrap();
                s.shutdown().await.unwrap();
            });
            let (conn, mut ev) = moorline::open("127.0.0.1", port, raw_opts().protocols(&[Protocol::Http2])).unwrap();
            ev.await_up(T).await.unwrap();
            let a = conn.get("/a", HeaderMap::new()).await.unwrap();
            let b = conn.get("/b", HeaderMap::new()).await.unwrap();
            // The GOAWAY is handled before the close that follows it: stream 3 fails at once
            // as not processed, and the Down lists only what the server may have processed.
            let err = ev.await_response(&b, T).await.unwrap_err();
            assert!(matches!(err, Error::Stream(StreamError::GoAwayUnprocessed { last_stream_id: 1, .. })), "{err:?}");
            match next_matching(&mut ev, |e| matches!(e, Event::Down { .. })).await {
                Event::Down { reason, possibly_processed, unprocessed, .. } => {
                    assert!(matches!(reason, DownReason::GoAway { last_stream_id: 1, .. }), "{reason:?}");
                    assert_eq!(possibly_processed, vec![a]);
                    assert!(unprocessed.is_empty(), "{unprocessed:?}");
                }
                _ => unreachable!(),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_response_survives_an_immediate_close() {
    bounded(async {
        for _ in 0..5 {
            let (l, port) = listener().await;
            tokio::spawn(async move {
                let mut s = h2_accept(&l, 1).await;
                // HEADERS (:status 200, END_HEADERS), DATA "hi" (END_STREAM), GOAWAY, FIN at once.
                let mut out = frame(1, 0x4, 1, &[0x88]);
                out.extend(frame(0, 0x1, 1, b"hi"));
                out.extend(goaway(1));
                s.write_all(&out).await.unwrap();
                s.shutdown().await.unwrap();
            });
            let (conn, mut ev) = moorline::open("127.0.0.1", port, raw_opts().protocols(&[Protocol::Http2])).unwrap();
            ev.await_up(T).await.unwrap();
            let a = conn.get("/a", HeaderMap::new()).await.unwrap();
            assert_eq!(&ev.await_body(&a, T).await.unwrap().data[..], b"hi");
        }
    })
    .await;
}

#[tokio::test]
async fn an_unasked_upgrade_fails_the_stream_at_once() {
    bounded(async {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let (conn, mut ev) =
            moorline::open("127.0.0.1", port, raw_opts().retry(RetryPolicy::fixed(3, Duration::from_secs(5)))).unwrap();
        ev.await_up(T).await.unwrap();
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        let r = ev.await_response(&a, Duration::from_secs(10)).await;
        assert!(matches!(r, Err(Error::Stream(moorline::StreamError::Protocol(_)))), "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn set_owner_works_while_the_owner_is_stalled() {
    bounded(async {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            for _ in 0..200 {
                if s.write_all(b"5\r\nhello\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let (conn, old) = moorline::open("127.0.0.1", port, raw_opts().event_buffer(4)).unwrap();
        let mut old = old;
        old.await_up(T).await.unwrap();
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The old owner stopped reading long ago; another task takes over.
        let mut new = tokio::time::timeout(T, conn.set_owner()).await.expect("set_owner hung").unwrap();
        drop(old);
        // The rest of the body reaches the new owner, ending with fin.
        let mut fin = false;
        while !fin {
            match next(&mut new).await {
                Event::Data { stream, fin: f, .. } if stream == a => fin = f,
                _ => {}
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_takes_effect_under_a_fast_body() {
    bounded(async {
        let (l, port) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000000\r\n\r\n").await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).await.is_ok() {}
        });
        let (conn, mut ev) = moorline::open("127.0.0.1", port, raw_opts()).unwrap();
        ev.await_up(T).await.unwrap();
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        ev.await_response(&a, T).await.unwrap();
        for _ in 0..100 {
            ev.next().await;
        }
        conn.cancel(&a).await.unwrap();
        // What was already queued for the owner may still come, nothing more.
        let mut after = 0;
        while let Ok(Some(Event::Data { .. })) = tokio::time::timeout(Duration::from_millis(300), ev.next()).await {
            after += 1;
            assert!(after <= 300, "cancel did not take effect");
        }
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_await_body_loses_nothing() {
    bounded(async {
        let (l, port) = listener().await;
        // The rest of the body is sent when the test says so, after both awaits gave up.
        let (rest_tx, rest_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello").await.unwrap();
            let _ = rest_rx.await;
            s.write_all(b"world").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let (conn, mut ev) = moorline::open("127.0.0.1", port, raw_opts()).unwrap();
        ev.await_up(T).await.unwrap();
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        // Long enough for the head and "hello" to arrive first: the await has consumed them
        // when it times out.
        assert!(matches!(ev.await_body(&a, Duration::from_secs(1)).await, Err(Error::Timeout(_))));
        // A dropped await loses nothing either.
        let dropped = tokio::time::timeout(Duration::from_millis(50), ev.await_body(&a, T)).await;
        assert!(dropped.is_err(), "{dropped:?}");
        rest_tx.send(()).unwrap();
        assert_eq!(ev.await_response(&a, T).await.unwrap().status, http::StatusCode::OK);
        assert_eq!(&ev.await_body(&a, T).await.unwrap().data[..], b"helloworld");
    })
    .await;
}

/// HEADERS `:status 200` with END_STREAM on `stream`: a whole empty answer.
fn ok_empty(stream: u32) -> Vec<u8> {
    frame(1, 0x5, stream, &[0x88])
}

/// Issue 14, item 9: a GOAWAY whose last-stream-id leaves an older stream open. The streams
/// above it fail at once as not processed (no waiting for the old stream to end), a request
/// made meanwhile fails fast the same way, the old stream is still answered, and the next
/// connection serves new requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_fails_the_streams_above_at_once_and_the_old_stream_is_still_answered() {
    bounded(async {
        let (l, port) = listener().await;
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // Streams 1, 3, 5 arrive; GOAWAY(1) keeps stream 1 and refuses 3 and 5.
            let mut s = h2_accept(&l, 3).await;
            s.write_all(&goaway(1)).await.unwrap();
            // Stream 1 is answered only once the test has seen the others fail.
            let _ = answer_rx.await;
            s.write_all(&ok_empty(1)).await.unwrap();
            // The next connection answers its first request.
            let mut s2 = h2_accept(&l, 1).await;
            s2.write_all(&ok_empty(1)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let opts = raw_opts().protocols(&[Protocol::Http2]).retry(RetryPolicy::fixed(3, Duration::from_millis(50)));
        let (conn, mut ev) = moorline::open("127.0.0.1", port, opts).unwrap();
        ev.await_up(T).await.unwrap();
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        let b = conn.get("/b", HeaderMap::new()).await.unwrap();
        let c = conn.get("/c", HeaderMap::new()).await.unwrap();
        let unprocessed = |r: Result<moorline::Response, Error>| {
            matches!(r, Err(Error::Stream(StreamError::GoAwayUnprocessed { last_stream_id: 1, error_code: 0 })))
        };
        // The old stream is still open: these fail while it waits (before the fix: timeouts).
        let rb = ev.await_response(&b, T).await;
        assert!(unprocessed(rb.clone()), "{rb:?}");
        let rc = ev.await_response(&c, T).await;
        assert!(unprocessed(rc.clone()), "{rc:?}");
        // A request made while the old connection drains does not wait for it.
        let d = conn.get("/d", HeaderMap::new()).await.unwrap();
        let rd = ev.await_response(&d, T).await;
        assert!(unprocessed(rd.clone()), "{rd:?}");
        assert!(conn.stream_info(&a).await.unwrap().is_some(), "stream 1 is still in flight");
        answer_tx.send(()).unwrap();
        assert_eq!(ev.await_response(&a, T).await.unwrap().status, http::StatusCode::OK);
        // The drained connection ends; nothing is left in its lists.
        match next_matching(&mut ev, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { reason, possibly_processed, unprocessed, .. } => {
                assert!(matches!(reason, DownReason::GoAway { last_stream_id: 1, .. }), "{reason:?}");
                assert!(
                    possibly_processed.is_empty() && unprocessed.is_empty(),
                    "{possibly_processed:?} {unprocessed:?}"
                );
            }
            _ => unreachable!(),
        }
        ev.await_up(T).await.unwrap();
        let e = conn.get("/e", HeaderMap::new()).await.unwrap();
        assert_eq!(ev.await_response(&e, T).await.unwrap().status, http::StatusCode::OK);
    })
    .await;
}

/// Issue 14, item 10: with MAX_CONCURRENT_STREAMS = 1, the requests waiting for the one
/// stream allowed were never sent, and a lost connection lists them as not processed
/// (before the fix h2 held the second one, with its stream id, and it was listed as
/// possibly processed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_one_lists_the_waiting_requests_unprocessed() {
    bounded(async {
        let (l, port) = listener().await;
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<usize>();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut pre = [0u8; 24];
            s.read_exact(&mut pre).await.unwrap();
            // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 1.
            s.write_all(&frame(4, 0, 0, &[0, 3, 0, 0, 0, 1])).await.unwrap();
            let mut headers = 0;
            // Read on for a while after the first HEADERS: a second one would show here.
            let mut until = tokio::time::Instant::now() + Duration::from_secs(3600);
            loop {
                let next = tokio::time::timeout_at(until, read_frame(&mut s)).await;
                let Ok(Some((kind, flags, _))) = next else { break };
                if kind == 1 && headers == 0 {
                    until = tokio::time::Instant::now() + Duration::from_millis(500);
                }
                if kind == 4 && flags & 1 == 0 {
                    s.write_all(&frame(4, 1, 0, &[])).await.unwrap();
                }
                if kind == 1 {
                    headers += 1;
                }
            }
            let _ = seen_tx.send(headers);
            // Close with the first stream unanswered.
            s.shutdown().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let (conn, mut ev) = moorline::open("127.0.0.1", port, raw_opts().protocols(&[Protocol::Http2])).unwrap();
        ev.await_up(T).await.unwrap();
        let a = conn.get("/a", HeaderMap::new()).await.unwrap();
        let b = conn.get("/b", HeaderMap::new()).await.unwrap();
        let c = conn.get("/c", HeaderMap::new()).await.unwrap();
        match next_matching(&mut ev, |e| matches!(e, Event::Down { .. })).await {
            Event::Down { possibly_processed, unprocessed, .. } => {
                assert_eq!(possibly_processed, vec![a], "only the stream the server allowed was sent");
                assert_eq!(unprocessed, vec![b, c]);
            }
            _ => unreachable!(),
        }
        assert_eq!(seen_rx.await.unwrap(), 1, "the server saw one request");
    })
    .await;
}

/// Issue 14, item 10: requests issued in a burst while the server resets the connection.
/// h2 refuses a request whose connection has just failed (even after `poll_ready` said yes):
/// such a request never left and must be listed as not processed, never reported as an
/// invalid request (it came back as `InvalidRequest("connection reset")`, rarely). Every
/// request ends exactly once: answered, failed for a reason of its own, or in one of Down's
/// lists. The race is rare per request, so many connections each take a burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_a_connection_reset_are_never_invalid() {
    const ROUNDS: usize = 40;
    const BURST: usize = 300;
    tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..ROUNDS {
            let (l, port) = listener().await;
            tokio::spawn(async move {
                // Reset as soon as the first request arrives, while the others are on their way.
                let s = h2_accept(&l, 1).await;
                s.set_zero_linger().unwrap();
                drop(s);
            });
            let (conn, mut ev) = moorline::open("127.0.0.1", port, raw_opts().protocols(&[Protocol::Http2])).unwrap();
            ev.await_up(T).await.unwrap();
            let issuer = {
                let conn = conn.clone();
                tokio::spawn(async move {
                    let mut issued = Vec::new();
                    for i in 0..BURST {
                        match conn.get(&format!("/{i}"), HeaderMap::new()).await {
                            Ok(s) => issued.push(s),
                            Err(_) => break, // the worker exited
                        }
                    }
                    issued
                })
            };
            let mut ended = std::collections::HashMap::new();
            loop {
                match tokio::time::timeout(T, ev.next()).await.expect("no event in time") {
                    Some(Event::StreamError { stream, error }) => {
                        assert!(!matches!(error, StreamError::InvalidRequest(_)), "{stream:?}: {error:?}");
                        assert!(ended.insert(stream, format!("{error:?}")).is_none(), "{stream:?} ended twice");
                    }
                    Some(Event::Down { possibly_processed, unprocessed, .. }) => {
                        for s in possibly_processed.iter().chain(&unprocessed) {
                            assert!(ended.insert(*s, "down".into()).is_none(), "{s:?} ended twice");
                        }
                    }
                    Some(Event::Exit { .. }) | None => break,
                    Some(_) => {}
                }
            }
            let issued = issuer.await.unwrap();
            assert!(ended.keys().all(|s| issued.contains(s)));
        }
    })
    .await
    .expect("test exceeded its time bound");
}
