//! Reconnection counting (issue 15): a connection that comes up and drops at once is one more
//! failure, the count resets only once a connection proves healthy (up for `healthy_after`,
//! or `mark_healthy`), and a custom policy sees the typed `Failure`. Real loopback servers;
//! assertions on the recorded `Step::Retry` attempts and delays, never on how fast things ran.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use moorline::{ConnectError, ConnectOptions, Connection, DownReason, Error, Event, ExitReason, Failure, RetryPolicy};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The `(attempt, delay)` of every `Step::Retry` recorded so far.
fn retries(rec: &Recorder) -> Vec<(u32, Duration)> {
    rec.steps()
        .iter()
        .filter_map(|i| match i.step {
            moorline::Step::Retry { attempt, delay } => Some((attempt, delay)),
            _ => None,
        })
        .collect()
}

/// `(attempt, delay)` pairs from delays in milliseconds, attempts counting from `first`.
fn expected(first: u32, delays: &[u64]) -> Vec<(u32, Duration)> {
    (first..).zip(delays.iter().map(|d| ms(*d))).collect()
}

/// A loopback server that accepts connections one after the other and closes each at once
/// (TCP is up, then FIN), except those whose 0-based index is in `hold`: those stay open
/// until the test sends on the returned sender.
async fn scripted_server(hold: &[usize]) -> (u16, mpsc::UnboundedSender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (release, mut released) = mpsc::unbounded_channel::<()>();
    let hold = hold.to_vec();
    tokio::spawn(async move {
        for i in 0.. {
            let Ok((stream, _)) = listener.accept().await else { return };
            if hold.contains(&i) {
                let _ = released.recv().await;
            }
            drop(stream);
        }
    });
    (port, release)
}

async fn exit_reason(events: &mut moorline::Events) -> ExitReason {
    match next_matching(events, |e| matches!(e, Event::Exit { .. })).await {
        Event::Exit { reason } => reason,
        _ => unreachable!(),
    }
}

/// Skip events up to the `n`-th `Up` from now.
async fn ups(events: &mut moorline::Events, n: usize) {
    for _ in 0..n {
        next_matching(events, |e| matches!(e, Event::Up { .. })).await;
    }
}

/// Wait (generously bounded) until the connection's retry count is back to zero.
async fn until_forgiven(conn: &Connection) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while conn.info().failures != 0 {
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the retry count was not reset: {:?}", conn.info()));
}

/// The defect: every connection came up, which reset the count, so a server that accepts
/// and closes at once was retried forever at the first delay. Now the delays grow per the
/// exponential policy and the worker gives up after its retries.
#[tokio::test]
async fn a_server_that_closes_at_once_gets_growing_delays_then_the_worker_gives_up() {
    bounded(async {
        let (port, _release) = scripted_server(&[]).await;
        let rec = Recorder::default();
        let o = opts(&rec).retry(RetryPolicy::exponential(5, ms(20), Duration::from_secs(1)));
        let (conn, mut events) = moorline::open("127.0.0.1", port, o).unwrap();
        // Bounded: before the fix the worker never gave up.
        let exit = tokio::time::timeout(Duration::from_secs(10), exit_reason(&mut events)).await;
        let seen = retries(&rec);
        let want = expected(1, &[20, 40, 80, 160, 320]);
        assert_eq!(seen.iter().take(8).copied().collect::<Vec<_>>(), want, "Step::Retry (attempt, delay)");
        let exit = exit.expect("the worker did not give up");
        let ExitReason::RetriesExhausted { attempts: 6, last: Failure::Down(DownReason::Closed) } = exit else {
            panic!("{exit:?}")
        };
        assert_eq!(rec.count(|s| matches!(s, moorline::Step::Up { .. })), 6, "one try and five retries, each up");
        assert_eq!(conn.info().failures, 6);
    })
    .await;
}

/// A connection that stays up for `healthy_after` resets the count: the next failure is
/// attempt 1 again, with the first delay.
#[tokio::test]
async fn a_connection_up_for_healthy_after_resets_the_count() {
    bounded(async {
        let (port, release) = scripted_server(&[3]).await;
        let rec = Recorder::default();
        // 1 s: long enough that a connection the server closes at once never lasts it, even on
        // a loaded machine; short enough to keep the test quick.
        let o = opts(&rec)
            .retry(RetryPolicy::exponential(4, ms(20), Duration::from_secs(1)))
            .healthy_after(Duration::from_secs(1));
        let (conn, mut events) = moorline::open("127.0.0.1", port, o).unwrap();
        // Three connections close at once; the fourth stays up.
        ups(&mut events, 4).await;
        until_forgiven(&conn).await;
        assert_eq!(retries(&rec), expected(1, &[20, 40, 80]));
        release.send(()).unwrap();
        let exit = exit_reason(&mut events).await;
        let ExitReason::RetriesExhausted { attempts: 5, last: Failure::Down(DownReason::Closed) } = exit else {
            panic!("{exit:?}")
        };
        let mut want = expected(1, &[20, 40, 80]);
        want.extend(expected(1, &[20, 40, 80, 160]));
        assert_eq!(retries(&rec), want);
    })
    .await;
}

/// `mark_healthy` resets the count of the connection that is up, and only then: a connection
/// that merely stays up does not (here `healthy_after` is `Duration::MAX`), and marks made
/// while nothing is up (from within the retry policy itself) are ignored.
#[tokio::test]
async fn mark_healthy_resets_the_count_of_the_connection_that_is_up() {
    bounded(async {
        let (port, release) = scripted_server(&[2, 3]).await;
        let rec = Recorder::default();
        let slot: Arc<OnceLock<Connection>> = Arc::default();
        let marker = slot.clone();
        let inner = RetryPolicy::exponential(4, ms(20), Duration::from_secs(1));
        let policy = RetryPolicy::custom(move |attempt, failure| {
            // The policy is asked while no connection is up: this mark is for none.
            if let Some(conn) = marker.get() {
                conn.mark_healthy();
            }
            inner.delay_for(attempt, failure)
        });
        let o = opts(&rec).retry(policy).healthy_after(Duration::MAX);
        let (conn, mut events) = moorline::open("127.0.0.1", port, o).unwrap();
        slot.set(conn.clone()).unwrap();
        // Two connections close at once; the third stays up a while, unmarked.
        ups(&mut events, 3).await;
        tokio::time::sleep(ms(300)).await;
        assert_eq!(conn.info().failures, 2, "being up is not enough, nor are stale marks: {:?}", conn.info());
        release.send(()).unwrap();
        // The fourth stays up and is marked healthy.
        ups(&mut events, 1).await;
        assert_eq!(retries(&rec), expected(1, &[20, 40, 80]));
        conn.mark_healthy();
        until_forgiven(&conn).await;
        release.send(()).unwrap();
        let exit = exit_reason(&mut events).await;
        assert!(matches!(exit, ExitReason::RetriesExhausted { attempts: 5, .. }), "{exit:?}");
        let mut want = expected(1, &[20, 40, 80]);
        want.extend(expected(1, &[20, 40, 80, 160]));
        assert_eq!(retries(&rec), want);
        conn.close();
    })
    .await;
}

/// A custom policy receives moorline's typed `Failure`: a lost connection as
/// `Failure::Down`, a refused port as `Failure::Connect(ConnectError::Connect)`.
#[tokio::test]
async fn a_custom_policy_sees_the_typed_failure() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else { return };
            // Nothing listens any more when the client sees the close: its retry is refused.
            drop(listener);
            drop(stream);
        });
        let seen: Arc<Mutex<Vec<(u32, Failure)>>> = Arc::default();
        let log = seen.clone();
        let policy = RetryPolicy::custom(move |attempt, failure: &Failure| {
            log.lock().unwrap().push((attempt, failure.clone()));
            match failure {
                Failure::Down(DownReason::Closed) => Some(ms(20)),
                Failure::Connect(ConnectError::Connect { .. }) => None,
                _ => Some(ms(20)),
            }
        });
        let o = opts(&Recorder::default()).retry(policy);
        let (_conn, mut events) = moorline::open("127.0.0.1", port, o).unwrap();
        let exit = exit_reason(&mut events).await;
        let ExitReason::RetriesExhausted { attempts: 2, last: Failure::Connect(ConnectError::Connect { addr, .. }) } =
            exit
        else {
            panic!("{exit:?}")
        };
        assert_eq!(addr.port(), port);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(matches!(seen[0], (1, Failure::Down(DownReason::Closed))), "{seen:?}");
        assert!(matches!(&seen[1], (2, Failure::Connect(ConnectError::Connect { addr, .. })) if addr.port() == port));
    })
    .await;
}

#[tokio::test]
async fn a_zero_healthy_after_is_refused_with_a_reason() {
    bounded(async {
        let e = moorline::open("127.0.0.1", 80, ConnectOptions::default().healthy_after(Duration::ZERO)).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidOptions(moorline::OptionsError::OutOfRange { option: "healthy_after", .. })),
            "{e:?}"
        );
        let (conn, _events) =
            moorline::open("127.0.0.1", 80, ConnectOptions::default().healthy_after(Duration::MAX)).unwrap();
        conn.close();
    })
    .await;
}

/// A retry policy sees the typed failure and can stop on a fatal one: a TLS server whose
/// certificate we cannot verify is asked once, not retried; a refused connect is retried.
#[tokio::test]
async fn a_custom_policy_stops_on_a_fatal_failure_and_retries_a_recoverable_one() {
    use moorline::{ErrorKind, TlsFailure, Transport};
    bounded(async {
        let asked: Arc<Mutex<Vec<ErrorKind>>> = Arc::default();
        let policy = |asked: Arc<Mutex<Vec<ErrorKind>>>| {
            RetryPolicy::custom(move |attempt: u32, failure: &Failure| {
                asked.lock().unwrap().push(failure.kind());
                (failure.kind() == ErrorKind::Recoverable && attempt < 2).then_some(Duration::from_millis(10))
            })
        };

        // Fatal: the server's certificate is from a CA we do not trust.
        let server = moorline_testkit::http::TestServer::builder().tls(true).start().await.unwrap();
        let o = ConnectOptions::default().transport(Transport::Tls).retry(policy(Arc::clone(&asked)));
        let (_conn, mut events) = moorline::open("127.0.0.1", server.port(), o).unwrap();
        let err = events.await_up(T).await.unwrap_err();
        let Error::Exited(Some(ExitReason::RetriesExhausted { attempts, last })) = &err else { panic!("{err:?}") };
        assert!(
            matches!(last, Failure::Connect(ConnectError::Tls { cause: TlsFailure::UnknownIssuer, .. })),
            "{last:?}"
        );
        assert_eq!((*attempts, asked.lock().unwrap().clone()), (1, vec![ErrorKind::Fatal]), "asked once, not retried");
        assert_eq!(err.kind(), ErrorKind::Fatal);

        // Recoverable: nothing listens there; retried until the policy's own bound.
        asked.lock().unwrap().clear();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let o = ConnectOptions::default().retry(policy(Arc::clone(&asked)));
        let (_conn, mut events) = moorline::open("127.0.0.1", port, o).unwrap();
        let err = events.await_up(T).await.unwrap_err();
        let Error::Exited(Some(ExitReason::RetriesExhausted { attempts, .. })) = &err else { panic!("{err:?}") };
        let asked = asked.lock().unwrap().clone();
        assert!(*attempts >= 2, "retried: {attempts}");
        assert_eq!(asked, vec![ErrorKind::Recoverable; *attempts as usize], "asked once per failure");
        assert_eq!(err.kind(), ErrorKind::Recoverable, "{err}");
    })
    .await;
}

/// An upgrade refused with 401/403/404 is fatal; with 503 or 429 it may pass later.
#[tokio::test]
async fn an_upgrade_refusal_is_fatal_or_recoverable_by_its_status() {
    use moorline::ErrorKind;
    use moorline::ws::WsOptions;
    use moorline_testkit::ws::{Fault, MockServer};
    bounded(async {
        let server = MockServer::builder().start().await.unwrap();
        for (status, kind) in [
            (401, ErrorKind::Fatal),
            (403, ErrorKind::Fatal),
            (404, ErrorKind::Fatal),
            (429, ErrorKind::Recoverable),
            (503, ErrorKind::Recoverable),
        ] {
            server.fault(Fault::RejectUpgrade(status));
            let (conn, mut events) =
                moorline::open("127.0.0.1", server.addr().port(), ConnectOptions::default()).unwrap();
            events.await_up(T).await.unwrap();
            let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
            let err = events.await_ws_upgrade(&ws, T).await.unwrap_err();
            assert_eq!(err.kind(), kind, "{status}: {err}");
            assert!(!err.is_retryable(), "{status}: the upgrade was answered, not left unprocessed");
            conn.close();
        }
    })
    .await;
}
