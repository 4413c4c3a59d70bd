//! The connection's life: retries measured from timestamps, exits, awaits that cannot hang,
//! ownership transfer, TLS failures, option checks and panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::*;
use http::HeaderMap;
use moorline::{
    ConnectError, ConnectOptions, DownReason, Error, Event, ExitReason, Failure, RetryPolicy, Step, TlsFailure,
    TlsOptions, Transport,
};
use moorline_testkit::http::{Fault, TestServer, unrelated_ca_pem};

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

fn connect_starts(rec: &Recorder) -> Vec<Instant> {
    rec.steps().iter().filter(|i| matches!(i.step, Step::ConnectStart { .. })).map(|i| i.at).collect()
}

/// A bound on a real delay that only a hang breaks (CI is a loaded 2-core machine), below the
/// default retry policy's 5 s. Exact delays are checked on tokio's paused clock in `timing.rs`.
const SLACK: Duration = Duration::from_secs(4);

/// Polls `fut` once and checks that it is still waiting: what the test does next then
/// happens while it waits, with no sleep guessing when the wait has started.
async fn waiting<F: Future + Unpin>(fut: &mut F) {
    std::future::poll_fn(|cx| {
        assert!(Pin::new(&mut *fut).poll(cx).is_pending(), "the wait ended before the test acted");
        Poll::Ready(())
    })
    .await;
}

/// Waits (polling, bounded by `T`) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn exit_reason(events: &mut moorline::Events) -> ExitReason {
    match next_matching(events, |e| matches!(e, Event::Exit { .. })).await {
        Event::Exit { reason } => reason,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn retries_count_and_delay_then_exit() {
    bounded(async {
        let rec = Recorder::default();
        let delay = Duration::from_millis(150);
        let opts = opts(&rec).retry(RetryPolicy::fixed(3, delay));
        let (_conn, mut events) = moorline::open("127.0.0.1", closed_port(), opts).unwrap();
        let err = events.await_up(T).await.unwrap_err();
        let Error::Exited(Some(ExitReason::RetriesExhausted { attempts, last })) = err else { panic!("{err:?}") };
        assert_eq!(attempts, 4, "one try and three retries");
        assert!(matches!(last, Failure::Connect(ConnectError::Connect { .. })), "{last:?}");
        let starts = connect_starts(&rec);
        assert_eq!(starts.len(), 4);
        for gap in starts.windows(2).map(|w| w[1] - w[0]) {
            assert!(gap >= delay, "retried after {gap:?}, before the {delay:?} delay");
            assert!(gap < delay + SLACK, "retried after {gap:?}, far past {delay:?}");
        }
        assert_eq!(rec.count(|s| matches!(s, Step::Retry { .. })), 3);
    })
    .await;
}

#[tokio::test]
async fn custom_retry_function_sets_each_delay() {
    bounded(async {
        let rec = Recorder::default();
        let policy = RetryPolicy::custom(|attempt, _err| {
            (attempt <= 2).then(|| Duration::from_millis(100 * u64::from(attempt)))
        });
        let (_conn, mut events) = moorline::open("127.0.0.1", closed_port(), opts(&rec).retry(policy)).unwrap();
        assert!(matches!(exit_reason(&mut events).await, ExitReason::RetriesExhausted { attempts: 3, .. }));
        let starts = connect_starts(&rec);
        assert_eq!(starts.len(), 3);
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        // At least the delays asked for, and far below the default policy's 5 s (exact on the
        // paused clock: timing.rs).
        assert!(gaps[0] >= Duration::from_millis(100) && gaps[0] < Duration::from_millis(100) + SLACK, "{gaps:?}");
        assert!(gaps[1] >= Duration::from_millis(200) && gaps[1] < Duration::from_millis(200) + SLACK, "{gaps:?}");
    })
    .await;
}

#[tokio::test]
async fn reconnect_waits_the_delay_after_down_then_up_again() {
    bounded(async {
        let server = plain_server(false).await;
        let rec = Recorder::default();
        let delay = Duration::from_millis(200);
        let (_conn, mut events, _) = connect(&server, opts(&rec).retry(RetryPolicy::fixed(2, delay))).await;
        server.close_all();
        let down_at = Instant::now();
        assert!(matches!(next(&mut events).await, Event::Down { .. }));
        events.await_up(T).await.unwrap();
        let starts = connect_starts(&rec);
        assert_eq!(starts.len(), 2);
        let gap = starts[1].saturating_duration_since(down_at);
        assert!(gap + Duration::from_millis(20) >= delay, "reconnected after {gap:?}");
        assert!(gap < delay + SLACK, "reconnected after {gap:?}");
    })
    .await;
}

#[tokio::test]
async fn exit_after_the_server_goes_away_for_good() {
    bounded(async {
        let server = plain_server(false).await;
        let port = server.port();
        let rec = Recorder::default();
        let (conn, mut events, _) =
            connect(&server, opts(&rec).retry(RetryPolicy::fixed(2, Duration::from_millis(30)))).await;
        drop(server);
        assert!(matches!(next(&mut events).await, Event::Down { .. }));
        let reason = exit_reason(&mut events).await;
        let ExitReason::RetriesExhausted { attempts: 3, last: Failure::Connect(ConnectError::Connect { addr, .. }) } =
            reason
        else {
            panic!("{reason:?}")
        };
        assert_eq!(addr.port(), port);
        assert!(events.next().await.is_none(), "nothing after Exit");
        assert!(matches!(conn.get("/", HeaderMap::new()).await, Err(Error::Exited(Some(_)))));
    })
    .await;
}

#[tokio::test]
async fn awaits_return_at_once_when_the_worker_is_closed() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let started = Instant::now();
        let err = {
            let mut wait = std::pin::pin!(events.await_response(&s, Duration::from_secs(20)));
            waiting(&mut wait).await;
            conn.close();
            wait.await.unwrap_err()
        };
        // Not its 20 s timeout (that would be `Timeout`): the close ended the wait.
        assert!(matches!(err, Error::Exited(Some(ExitReason::Closed))), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Every later await fails at once too.
        assert!(matches!(events.await_body(&s, Duration::from_secs(20)).await, Err(Error::Exited(_))));
        assert!(matches!(events.await_up(Duration::from_secs(20)).await, Err(Error::Exited(_))));
        assert!(matches!(conn.get("/", HeaderMap::new()).await, Err(Error::Exited(_))));
    })
    .await;
}

#[tokio::test]
async fn await_body_returns_when_closed_mid_body() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/stall-body", HeaderMap::new()).await.unwrap();
        events.await_response(&s, T).await.unwrap();
        let started = Instant::now();
        let err = {
            let mut wait = std::pin::pin!(events.await_body(&s, Duration::from_secs(20)));
            waiting(&mut wait).await;
            conn.close();
            wait.await.unwrap_err()
        };
        assert!(matches!(err, Error::Exited(Some(ExitReason::Closed))), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    })
    .await;
}

#[tokio::test]
async fn awaits_time_out_on_a_stalled_server() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let t = Duration::from_millis(200);
        let started = Instant::now();
        assert!(matches!(events.await_response(&s, t).await, Err(Error::Timeout(d)) if d == t));
        // Not before the timeout; how close after it is checked on the paused clock (timing.rs).
        assert!(started.elapsed() >= t && started.elapsed() < t + SLACK, "{:?}", started.elapsed());
        let s = conn.get("/stall-body", HeaderMap::new()).await.unwrap();
        assert!(matches!(events.await_body(&s, t).await, Err(Error::Timeout(_))));
        // await_up on a stalled TLS server: the handshake timeout ends the attempt.
        let silent = TestServer::builder().tls(true).fault(Fault::SilentTls).start().await.unwrap();
        let o = tls_opts(&Recorder::default(), &silent)
            .retry(RetryPolicy::Never)
            .tls_handshake_timeout(Duration::from_millis(200));
        let (_c, mut ev) = moorline::open("127.0.0.1", silent.port(), o).unwrap();
        let err = ev.await_up(T).await.unwrap_err();
        let Error::Exited(Some(ExitReason::RetriesExhausted { last, .. })) = err else { panic!("{err:?}") };
        assert!(matches!(last, Failure::Connect(ConnectError::TlsHandshakeTimeout { .. })), "{last:?}");
    })
    .await;
}

#[tokio::test]
async fn set_owner_mid_stream_moves_the_rest() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut old, _) = connect(&server, opts(&Recorder::default())).await;
        let s = conn.get("/stream?chunks=10&size=100&delay_ms=30", HeaderMap::new()).await.unwrap();
        let mut old_bytes = 0;
        loop {
            if let Event::Data { data, .. } = next(&mut old).await {
                old_bytes += data.len();
                break;
            }
        }
        let mut new = conn.set_owner().await.unwrap();
        // The old owner drains what was queued for it, then gets the notice and its end.
        let mut finished_on_old = false;
        loop {
            match tokio::time::timeout(T, old.next()).await.unwrap() {
                Some(Event::Data { data, fin, .. }) => {
                    old_bytes += data.len();
                    finished_on_old |= fin;
                }
                Some(Event::OwnerChanged) => break,
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("ended without OwnerChanged"),
            }
        }
        assert!(old.next().await.is_none());
        assert!(matches!(old.await_response(&s, T).await, Err(Error::OwnershipMoved)));
        let rest = if finished_on_old { 0 } else { new.await_body(&s, T).await.unwrap().data.len() };
        assert_eq!(old_bytes + rest, 1000);
        // The new owner gets everything from now on.
        let s2 = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&new.await_body(&s2, T).await.unwrap().data[..], b"hello");
    })
    .await;
}

#[tokio::test]
async fn tls_verification_failure_names_the_cause() {
    bounded(async {
        let server = tls_server(true).await;
        let wrong = TlsOptions::default().add_ca_pem(&unrelated_ca_pem().unwrap()).unwrap();
        let o = opts(&Recorder::default()).transport(Transport::Tls).tls(wrong).retry(RetryPolicy::Never);
        let (_c, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        let err = events.await_up(T).await.unwrap_err();
        let Error::Exited(Some(ExitReason::RetriesExhausted { last, .. })) = &err else { panic!("{err:?}") };
        assert!(
            matches!(last, Failure::Connect(ConnectError::Tls { cause: TlsFailure::UnknownIssuer, .. })),
            "{last:?}"
        );
        assert!(err.to_string().contains("not signed by a trusted CA"), "{err}");

        let right_ca_wrong_name =
            TlsOptions::default().add_ca_pem(server.ca_pem()).unwrap().server_name("not-this-host.example");
        let o = opts(&Recorder::default()).transport(Transport::Tls).tls(right_ca_wrong_name).retry(RetryPolicy::Never);
        let (_c, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        let reason = exit_reason(&mut events).await;
        assert!(
            matches!(
                reason,
                ExitReason::RetriesExhausted {
                    last: Failure::Connect(ConnectError::Tls { cause: TlsFailure::NameMismatch, .. }),
                    ..
                }
            ),
            "{reason:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn dropping_the_owner_or_every_handle_ends_the_worker() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, events, _) = connect(&server, opts(&Recorder::default())).await;
        drop(events);
        let deadline = Instant::now() + T;
        while conn.info().exit.is_none() {
            assert!(Instant::now() < deadline, "worker kept running without an owner");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(matches!(conn.info().exit, Some(ExitReason::OwnerGone)));

        let (conn, mut events, _) = connect(&server, opts(&Recorder::default())).await;
        drop(conn);
        assert!(matches!(exit_reason(&mut events).await, ExitReason::HandlesDropped));
        assert!(server.wait_for_connections(2, T).await);
    })
    .await;
}

#[tokio::test]
async fn foreign_stream_refs_are_refused() {
    bounded(async {
        let server = plain_server(false).await;
        let (a, mut ea, _) = connect(&server, opts(&Recorder::default())).await;
        let (b, _eb, _) = connect(&server, opts(&Recorder::default())).await;
        let sb = b.get("/hello", HeaderMap::new()).await.unwrap();
        assert_ne!(sb.connection_id(), a.id());
        assert!(matches!(ea.await_response(&sb, T).await, Err(Error::ForeignStream(s)) if s == sb));
        assert!(matches!(a.cancel(&sb).await, Err(Error::ForeignStream(_))));
        assert!(matches!(a.stream_info(&sb).await, Err(Error::ForeignStream(_))));
    })
    .await;
}

#[tokio::test]
async fn a_panicking_worker_still_tells_the_owner() {
    bounded(async {
        let server = plain_server(false).await;
        let opts = ConnectOptions::default().hook(|i: &moorline::Instrument| {
            if matches!(i.step, Step::RequestStart { .. }) {
                panic!("hook exploded");
            }
        });
        let (conn, mut events, _) = connect(&server, opts).await;
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let err = events.await_response(&s, T).await.unwrap_err();
        assert!(matches!(&err, Error::Exited(Some(ExitReason::Panicked(m))) if m.contains("hook exploded")), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn requests_while_reconnecting_fail_at_once() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events, _) =
            // A backoff far longer than the test: the request below is surely made during it.
            connect(&server, opts(&Recorder::default()).retry(RetryPolicy::fixed(1, Duration::from_secs(600)))).await;
        server.close_all();
        assert!(matches!(next(&mut events).await, Event::Down { reason: DownReason::Closed, .. }));
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let err = events.await_response(&s, T).await.unwrap_err();
        assert!(matches!(err, Error::Stream(moorline::StreamError::NotConnected)), "{err:?}");
        assert_eq!(conn.info().state, moorline::State::Reconnecting);
    })
    .await;
}

#[tokio::test]
async fn bad_options_are_refused_with_a_reason() {
    bounded(async {
        let e = moorline::open("127.0.0.1", 80, ConnectOptions::default().event_buffer(0)).unwrap_err();
        assert!(e.to_string().contains("event_buffer"), "{e}");
        let e = moorline::open("127.0.0.1", 80, ConnectOptions::default().protocols(&[])).unwrap_err();
        assert!(matches!(e, Error::InvalidOptions(_)));
        let e = moorline::open("127.0.0.1", 0, ConnectOptions::default()).unwrap_err();
        assert!(matches!(e, Error::InvalidOptions(_)));
        let e = moorline::open("", 80, ConnectOptions::default()).unwrap_err();
        assert!(matches!(e, Error::InvalidOptions(_)));
        let e = TlsOptions::default().add_ca_pem("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
        assert!(e.is_err());
        let e =
            moorline::open("127.0.0.1", 443, ConnectOptions::default().tls(TlsOptions::default().webpki_roots(false)))
                .unwrap_err();
        assert!(e.to_string().contains("no trusted root"), "{e}");
    })
    .await;
}

#[test]
fn open_outside_a_runtime_is_an_error() {
    let e = moorline::open("127.0.0.1", 80, ConnectOptions::default()).unwrap_err();
    assert!(matches!(e, Error::NoRuntime));
}

#[tokio::test]
async fn await_up_returns_at_once_when_closed_while_connecting() {
    bounded(async {
        let silent = TestServer::builder().tls(true).fault(Fault::SilentTls).start().await.unwrap();
        let o = tls_opts(&Recorder::default(), &silent).tls_handshake_timeout(Duration::from_secs(20));
        let (conn, mut events) = moorline::open("127.0.0.1", silent.port(), o).unwrap();
        let started = Instant::now();
        let err = {
            let mut wait = std::pin::pin!(events.await_up(Duration::from_secs(20)));
            waiting(&mut wait).await;
            conn.close();
            wait.await.unwrap_err()
        };
        // Not the 20 s timeout (that would be `ConnectTimeout`): the close ended the wait.
        assert!(matches!(err, Error::Exited(Some(ExitReason::Closed))), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(conn.info().state, moorline::State::Exited);
    })
    .await;
}

#[tokio::test]
async fn connect_timeout_ends_the_attempt() {
    bounded(async {
        // A listener that never accepts, with its backlog filled: further SYNs go unanswered.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => fillers.push(s),
                _ => break,
            }
        }
        let rec = Recorder::default();
        let o = opts(&rec).retry(RetryPolicy::Never).connect_timeout(Duration::from_millis(300));
        let (_c, mut events) = moorline::open("127.0.0.1", addr.port(), o).unwrap();
        let started = Instant::now();
        let reason = exit_reason(&mut events).await;
        assert!(
            matches!(
                reason,
                ExitReason::RetriesExhausted { last: Failure::Connect(ConnectError::ConnectTimeout { .. }), .. }
            ),
            "{reason:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(listener);
    })
    .await;
}

#[tokio::test]
async fn client_certificate_is_presented_when_configured() {
    bounded(async {
        let server = TestServer::builder().tls(true).h2(true).require_client_cert(true).start().await.unwrap();
        // Without a certificate the server refuses the handshake.
        let o = tls_opts(&Recorder::default(), &server).retry(RetryPolicy::Never);
        let (_c, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        // A TLS 1.3 client learns of the refusal after its handshake, from the server's alert on
        // the first read; HTTP/2 waits for the server's SETTINGS before `Up`, so this is a
        // failed attempt with a TLS cause, never an `Up`.
        let reason = exit_reason(&mut events).await;
        assert!(
            matches!(
                &reason,
                ExitReason::RetriesExhausted {
                    last: Failure::Connect(ConnectError::Tls { cause: TlsFailure::Alert(a), .. }),
                    ..
                } if *a == rustls::AlertDescription::CertificateRequired
            ),
            "{reason:?}"
        );

        let tls = TlsOptions::default()
            .add_ca_pem(server.ca_pem())
            .unwrap()
            .client_cert_pem(server.client_cert_pem(), server.client_key_pem())
            .unwrap();
        let o = opts(&Recorder::default()).transport(Transport::Tls).tls(tls);
        let (conn, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        events.await_up(T).await.unwrap();
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        assert_eq!(&events.await_body(&s, T).await.unwrap().data[..], b"hello");
        let bad = TlsOptions::default().client_cert_pem("nope", "nope");
        assert!(bad.is_err());
    })
    .await;
}

#[tokio::test]
async fn custom_resolver_and_lookup_failures() {
    bounded(async {
        let server = tls_server(false).await;
        let addr = server.addr();
        // A name only our resolver knows; the certificate is checked against `localhost`.
        let o = tls_opts(&Recorder::default(), &server)
            .tls(TlsOptions::default().add_ca_pem(server.ca_pem()).unwrap().server_name("localhost"))
            .resolver(move |host, _port| {
                Box::pin(async move {
                    if host == "exchange.test" { Ok(vec![addr]) } else { Err(std::io::Error::other("unknown host")) }
                })
            });
        let (conn, mut events) = moorline::open("exchange.test", 7000, o).unwrap();
        events.await_up(T).await.unwrap();
        assert_eq!(conn.info().peer, Some(addr));

        let slow = opts(&Recorder::default())
            .retry(RetryPolicy::Never)
            .lookup_timeout(Duration::from_millis(100))
            .resolver(|_, _| {
                // A resolver that never answers.
                Box::pin(std::future::pending())
            });
        let (_c, mut events) = moorline::open("slow.test", 80, slow).unwrap();
        let reason = exit_reason(&mut events).await;
        assert!(
            matches!(
                reason,
                ExitReason::RetriesExhausted { last: Failure::Connect(ConnectError::LookupTimeout { .. }), .. }
            ),
            "{reason:?}"
        );
        let empty =
            opts(&Recorder::default()).retry(RetryPolicy::Never).resolver(|_, _| Box::pin(async { Ok(vec![]) }));
        let (_c, mut events) = moorline::open("empty.test", 80, empty).unwrap();
        let reason = exit_reason(&mut events).await;
        assert!(
            matches!(
                reason,
                ExitReason::RetriesExhausted { last: Failure::Connect(ConnectError::NoAddress { .. }), .. }
            ),
            "{reason:?}"
        );
        let failing = opts(&Recorder::default())
            .retry(RetryPolicy::Never)
            .resolver(|_, _| Box::pin(async { Err(std::io::Error::other("SERVFAIL")) }));
        let (_c, mut events) = moorline::open("fail.test", 80, failing).unwrap();
        let reason = exit_reason(&mut events).await;
        assert!(reason.to_string().contains("SERVFAIL"), "{reason}");
    })
    .await;
}

#[tokio::test]
async fn a_panic_in_an_http2_stream_task_is_reported_not_stuck() {
    bounded(async {
        let server = plain_server(true).await;
        // ResponseHeaders is emitted from the stream's own task on HTTP/2.
        let opts =
            ConnectOptions::default().protocols(&[moorline::Protocol::Http2]).hook(|i: &moorline::Instrument| {
                if matches!(i.step, Step::ResponseHeaders { .. }) {
                    panic!("stream hook exploded");
                }
            });
        let (conn, mut events, _) = connect(&server, opts).await;
        let s = conn.get("/hello", HeaderMap::new()).await.unwrap();
        let err = events.await_body(&s, T).await.unwrap_err();
        assert!(
            matches!(&err, Error::Exited(Some(ExitReason::Panicked(m))) if m.contains("stream hook exploded")),
            "{err:?}"
        );
    })
    .await;
}

/// The `ConnectTimeout` an `await_up` gets, with its last failure (which is also its source).
fn connect_timeout(err: &Error, after: Duration) -> &Failure {
    let Error::ConnectTimeout { after: a, attempts, last: Some(last) } = err else { panic!("{err:?}") };
    assert_eq!(*a, after);
    assert!(*attempts >= 1, "{err:?}");
    let source = std::error::Error::source(err).and_then(|s| s.downcast_ref::<Failure>());
    assert!(source.is_some(), "the source is the typed failure: {err:?}");
    assert!(err.to_string().contains("failed attempt"), "{err}");
    last
}

/// Issue 14, item 6: with the default retry policy (retries 5 s apart) the timeout ends the
/// wait, and it says why the attempts failed: here a refused port.
#[tokio::test]
async fn await_up_timeout_names_a_refused_port() {
    bounded(async {
        let (_c, mut events) = moorline::open("127.0.0.1", closed_port(), ConnectOptions::default()).unwrap();
        let t = Duration::from_secs(3);
        let err = events.await_up(t).await.unwrap_err();
        let last = connect_timeout(&err, t);
        let Failure::Connect(ConnectError::Connect { source, .. }) = last else { panic!("{last:?}") };
        assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().contains(&source.to_string()), "{err}");
    })
    .await;
}

/// Issue 14, item 6: an unknown CA, with the default retry policy.
#[tokio::test]
async fn await_up_timeout_names_an_unknown_ca() {
    bounded(async {
        let server = tls_server(false).await;
        let o = ConnectOptions::default().transport(Transport::Tls);
        let (_c, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        let t = Duration::from_secs(3);
        let err = events.await_up(t).await.unwrap_err();
        let last = connect_timeout(&err, t);
        assert!(
            matches!(last, Failure::Connect(ConnectError::Tls { cause: TlsFailure::UnknownIssuer, .. })),
            "{last:?}"
        );
        assert!(err.to_string().contains("unknown issuer"), "{err}");
    })
    .await;
}

/// The `Info` snapshot carries the last failure too, and `Up` clears it. The failure count
/// stays until the connection proves healthy (issue 15): here the caller vouches for it.
#[tokio::test]
async fn info_tells_the_last_failure_until_up() {
    bounded(async {
        let port = closed_port();
        let o = ConnectOptions::default().retry(RetryPolicy::fixed(100, Duration::from_millis(100)));
        let (conn, mut events) = moorline::open("127.0.0.1", port, o).unwrap();
        until("a failed attempt", || conn.info().failures >= 1).await;
        let err = events.await_up(Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, Error::ConnectTimeout { last: Some(_), .. }), "{err:?}");
        let info = conn.info();
        assert!(info.failures >= 1);
        assert!(matches!(info.last_failure, Some(Failure::Connect(ConnectError::Connect { .. }))), "{info:?}");
        // The port listens again: the next retry comes up (HTTP/1.1 over TCP is up once connected).
        let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        events.await_up(T).await.unwrap();
        let info = conn.info();
        assert!(info.failures >= 1, "an Up alone does not forgive the failures: {info:?}");
        assert!(info.last_failure.is_none(), "{info:?}");
        conn.mark_healthy();
        tokio::time::timeout(T, async {
            while conn.info().failures != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("mark_healthy did not reset the count: {:?}", conn.info()));
    })
    .await;
}

/// Issue 14, item 12: "wait forever" timeouts neither panic nor end the wait early.
#[tokio::test]
async fn duration_max_waits_instead_of_panicking() {
    bounded(async {
        let server = plain_server(false).await;
        let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts(&Recorder::default())).unwrap();
        // Nothing has arrived yet (the worker has not run): the await has to block.
        events.await_up(Duration::MAX).await.unwrap();
        let s = conn.get("/slow?delay_ms=100", HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_response(&s, Duration::MAX).await.unwrap().status, http::StatusCode::OK);
        let s = conn.get("/stream?chunks=3&size=4&delay_ms=50", HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_body(&s, Duration::MAX).await.unwrap().data.len(), 12);
        // A stalled stream: the wait goes on (until the test gives up on it).
        let s = conn.get("/stall", HeaderMap::new()).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), events.await_response(&s, Duration::MAX)).await;
        assert!(waited.is_err(), "{waited:?}");
    })
    .await;
}

/// Issue 14, item 12: an event buffer too large for the owner channel is refused with a
/// reason instead of panicking in `open`.
#[tokio::test]
async fn an_event_buffer_beyond_the_maximum_is_refused() {
    bounded(async {
        for n in [usize::MAX, (1 << 20) + 1] {
            let e = moorline::open("127.0.0.1", 80, ConnectOptions::default().event_buffer(n)).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidOptions(moorline::OptionsError::OutOfRange { option: "event_buffer", .. })),
                "{e:?}"
            );
        }
        let (conn, _events) = moorline::open("127.0.0.1", 80, ConnectOptions::default().event_buffer(1 << 20)).unwrap();
        conn.close();
    })
    .await;
}
