//! The connection's timers on tokio's paused clock: retry delays, the lookup timeout, the
//! awaits' timeouts, and awaits ended at once by `close()`.
//!
//! No socket is involved: host names go to a resolver of the test's own that fails at once
//! or never answers. So every task only ever waits on a timer, the paused clock jumps straight
//! to the next one, and the times below are exact, however loaded the machine. (Tests over
//! real sockets, in `lifecycle.rs`, assert only lower bounds and bounds only a hang breaks.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bounded;
use http::HeaderMap;
use moorline::{
    ConnectError, ConnectOptions, Error, Event, ExitReason, Failure, RetryPolicy, State, Step, StreamError,
};
use tokio::time::Instant;

/// Steps with the (paused) tokio clock's time they happened at.
#[derive(Clone, Default)]
struct Clocked(Arc<Mutex<Vec<(Instant, Step)>>>);

impl Clocked {
    /// When each matching step happened, as offsets from `start`.
    fn offsets(&self, start: Instant, f: impl Fn(&Step) -> bool) -> Vec<Duration> {
        self.0.lock().unwrap().iter().filter(|(_, s)| f(s)).map(|(at, _)| *at - start).collect()
    }

    fn retries(&self) -> Vec<(u32, Duration)> {
        let steps = self.0.lock().unwrap();
        steps
            .iter()
            .filter_map(|(_, s)| match s {
                Step::Retry { attempt, delay } => Some((*attempt, *delay)),
                _ => None,
            })
            .collect()
    }
}

/// Options whose lookups fail at once (no socket is ever opened), with `clocked` hooked in.
fn failing(clocked: &Clocked) -> ConnectOptions {
    let c = clocked.clone();
    ConnectOptions::default()
        .resolver(|_, _| Box::pin(async { Err(std::io::Error::other("no such host")) }))
        .hook(move |i: &moorline::Instrument| c.0.lock().unwrap().push((Instant::now(), i.step.clone())))
}

/// Options whose lookups never answer (and whose lookup timeout, a year, does not end them).
fn hanging() -> ConnectOptions {
    ConnectOptions::default()
        .lookup_timeout(Duration::from_secs(365 * 86_400))
        .resolver(|_, _| Box::pin(std::future::pending()))
}

fn lookup_starts(c: &Clocked, start: Instant) -> Vec<Duration> {
    c.offsets(start, |s| matches!(s, Step::LookupStart { .. }))
}

async fn exit_reason(events: &mut moorline::Events) -> ExitReason {
    loop {
        match events.next().await.expect("the stream ended without Exit") {
            Event::Exit { reason } => return reason,
            _ => continue,
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_fixed_policy_retries_exactly_its_delay_apart_then_gives_up() {
    bounded(async {
        let c = Clocked::default();
        let start = Instant::now();
        let (_conn, mut events) =
            moorline::open("exchange.test", 80, failing(&c).retry(RetryPolicy::fixed(3, ms(150)))).unwrap();
        let reason = exit_reason(&mut events).await;
        let ExitReason::RetriesExhausted { attempts: 4, last: Failure::Connect(ConnectError::Lookup { .. }) } = reason
        else {
            panic!("{reason:?}")
        };
        assert_eq!(lookup_starts(&c, start), [ms(0), ms(150), ms(300), ms(450)]);
        assert_eq!(c.retries(), [(1, ms(150)), (2, ms(150)), (3, ms(150))]);
        // The exit follows the last failure at once.
        assert_eq!(Instant::now() - start, ms(450));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_exponential_policy_doubles_up_to_its_cap() {
    bounded(async {
        let c = Clocked::default();
        let start = Instant::now();
        let policy = RetryPolicy::exponential(4, ms(100), ms(300));
        let (_conn, mut events) = moorline::open("exchange.test", 80, failing(&c).retry(policy)).unwrap();
        assert!(matches!(exit_reason(&mut events).await, ExitReason::RetriesExhausted { attempts: 5, .. }));
        assert_eq!(lookup_starts(&c, start), [ms(0), ms(100), ms(300), ms(600), ms(900)]);
        assert_eq!(c.retries(), [(1, ms(100)), (2, ms(200)), (3, ms(300)), (4, ms(300))]);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_custom_policy_sets_each_delay() {
    bounded(async {
        let c = Clocked::default();
        let start = Instant::now();
        let policy = RetryPolicy::custom(|attempt, _err| (attempt <= 2).then(|| ms(100 * u64::from(attempt))));
        let (_conn, mut events) = moorline::open("exchange.test", 80, failing(&c).retry(policy)).unwrap();
        assert!(matches!(exit_reason(&mut events).await, ExitReason::RetriesExhausted { attempts: 3, .. }));
        assert_eq!(lookup_starts(&c, start), [ms(0), ms(100), ms(300)]);
    })
    .await;
}

/// `await_up` ends exactly at its timeout and tells how many attempts failed meanwhile.
#[tokio::test(start_paused = true)]
async fn await_up_times_out_exactly_with_the_failures_so_far() {
    bounded(async {
        let c = Clocked::default();
        let (_conn, mut events) =
            moorline::open("exchange.test", 80, failing(&c).retry(RetryPolicy::fixed(100, Duration::from_secs(1))))
                .unwrap();
        let start = Instant::now();
        let t = ms(2500);
        let err = events.await_up(t).await.unwrap_err();
        assert_eq!(Instant::now() - start, t);
        // Tries at 0, 1 and 2 s have failed.
        let Error::ConnectTimeout { after, attempts: 3, last: Some(Failure::Connect(ConnectError::Lookup { .. })) } =
            err
        else {
            panic!("{err:?}")
        };
        assert_eq!(after, t);

        // While the first attempt still runs, nothing has failed yet.
        let (_conn, mut events) = moorline::open("exchange.test", 80, hanging()).unwrap();
        let start = Instant::now();
        let err = events.await_up(Duration::from_secs(3)).await.unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        assert!(matches!(err, Error::ConnectTimeout { attempts: 0, last: None, .. }), "{err:?}");
        assert!(err.to_string().contains("no attempt has failed yet"), "{err}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_lookup_timeout_ends_the_attempt_exactly() {
    bounded(async {
        let start = Instant::now();
        let o = hanging().lookup_timeout(Duration::from_secs(2)).retry(RetryPolicy::Never);
        let (_conn, mut events) = moorline::open("exchange.test", 80, o).unwrap();
        let reason = exit_reason(&mut events).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        let ExitReason::RetriesExhausted {
            last: Failure::Connect(ConnectError::LookupTimeout { timeout, .. }), ..
        } = reason
        else {
            panic!("{reason:?}")
        };
        assert_eq!(timeout, Duration::from_secs(2));
    })
    .await;
}

/// Requests made while connecting wait for the connection; their awaits end at their own
/// timeout, not a moment later, and lose nothing.
#[tokio::test(start_paused = true)]
async fn await_response_and_await_body_time_out_exactly() {
    bounded(async {
        let (conn, mut events) = moorline::open("exchange.test", 80, hanging()).unwrap();
        let s = conn.get("/", HeaderMap::new()).await.unwrap();
        for t in [ms(1), ms(1500), Duration::from_secs(7)] {
            let start = Instant::now();
            assert!(matches!(events.await_response(&s, t).await, Err(Error::Timeout(d)) if d == t));
            assert_eq!(Instant::now() - start, t);
            let start = Instant::now();
            assert!(matches!(events.await_body(&s, t).await, Err(Error::Timeout(d)) if d == t));
            assert_eq!(Instant::now() - start, t);
        }
        assert_eq!(conn.info().state, State::Connecting);
        assert!(events.try_next().is_none(), "nothing arrived, nothing was made up");
    })
    .await;
}

/// `Duration::MAX` means "wait for ever": the await is still waiting after a virtual week.
#[tokio::test(start_paused = true)]
async fn duration_max_waits_for_ever() {
    let month = Duration::from_secs(30 * 86_400);
    let test = async {
        let (conn, mut events) = moorline::open("exchange.test", 80, hanging()).unwrap();
        let s = conn.get("/", HeaderMap::new()).await.unwrap();
        let week = Duration::from_secs(7 * 86_400);
        assert!(tokio::time::timeout(week, events.await_response(&s, Duration::MAX)).await.is_err());
        assert!(tokio::time::timeout(week, events.await_up(Duration::MAX)).await.is_err());
    };
    tokio::time::timeout(month, test).await.expect("test exceeded its time bound");
}

/// `close()` ends every kind of await at once: no time passes between the close and the
/// await's end.
#[tokio::test(start_paused = true)]
async fn close_ends_a_waiting_await_at_once() {
    bounded(async {
        for which in ["await_up", "await_response", "await_body"] {
            let (conn, mut events) = moorline::open("exchange.test", 80, hanging()).unwrap();
            let s = conn.get("/", HeaderMap::new()).await.unwrap();
            let closer = conn.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ms(100)).await;
                closer.close();
            });
            let start = Instant::now();
            let t = Duration::from_secs(20);
            let err = match which {
                "await_up" => events.await_up(t).await.map(|_| ()),
                "await_response" => events.await_response(&s, t).await.map(|_| ()),
                _ => events.await_body(&s, t).await.map(|_| ()),
            }
            .unwrap_err();
            assert!(matches!(err, Error::Exited(Some(ExitReason::Closed))), "{which}: {err:?}");
            assert_eq!(Instant::now() - start, ms(100), "{which}");
            assert_eq!(conn.info().state, State::Exited);
        }
    })
    .await;
}

/// During the backoff nothing is connected: a request fails at once, and the next attempt
/// still comes at its time.
#[tokio::test(start_paused = true)]
async fn requests_during_the_backoff_fail_at_once() {
    bounded(async {
        let c = Clocked::default();
        let start = Instant::now();
        let (conn, mut events) =
            moorline::open("exchange.test", 80, failing(&c).retry(RetryPolicy::fixed(1, Duration::from_secs(10))))
                .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(conn.info().state, State::Reconnecting);
        let s = conn.get("/", HeaderMap::new()).await.unwrap();
        let asked = Instant::now();
        let err = events.await_response(&s, Duration::from_secs(20)).await.unwrap_err();
        assert!(matches!(err, Error::Stream(StreamError::NotConnected)), "{err:?}");
        assert_eq!(Instant::now(), asked);
        assert!(matches!(exit_reason(&mut events).await, ExitReason::RetriesExhausted { attempts: 2, .. }));
        assert_eq!(lookup_starts(&c, start), [ms(0), Duration::from_secs(10)]);
    })
    .await;
}
