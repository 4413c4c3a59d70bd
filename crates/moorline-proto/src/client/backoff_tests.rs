#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use super::*;
use crate::retry::UNLIMITED;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn err() -> std::io::Error {
    std::io::Error::other("refused")
}

fn plain(policy: RetryPolicy<std::io::Error>) -> Backoff<std::io::Error> {
    Backoff::new(policy, BackoffConfig { jitter: Jitter::None, healthy_after: ms(1_000) })
}

#[test]
fn the_first_connects_failure_is_retried_and_delays_grow() {
    let t0 = Instant::now();
    let mut b = plain(RetryPolicy::exponential(3, ms(100), ms(250)));
    assert_eq!(b.phase(), Phase::Idle);
    assert_eq!(b.next_deadline(), None);
    let mut now = t0;
    let mut attempt = b.start(now);
    assert_eq!(attempt.get(), 1);
    let mut seen = Vec::new();
    loop {
        match b.on_failure(now, &err(), 0) {
            Decision::Retry { retry, delay, at } => {
                seen.push((retry, delay));
                assert_eq!(at, Some(now + delay));
                assert_eq!(b.on_timeout(now + delay - ms(1)), None, "not before the delay");
                now += delay;
                let Some(BackoffAction::Connect(next)) = b.on_timeout(now) else { panic!("due") };
                assert!(next > attempt);
                attempt = next;
            }
            Decision::GiveUp { failures, fatal } => {
                assert_eq!((failures, fatal), (4, false));
                break;
            }
        }
    }
    assert_eq!(seen, [(1, ms(100)), (2, ms(200)), (3, ms(250))]);
    assert_eq!(b.phase(), Phase::Stopped);
    assert_eq!(b.next_deadline(), None);
    // The user's explicit reconnect still starts an attempt.
    assert_eq!(b.start(now), attempt.next());
}

/// A server that accepts and then refuses every upgrade: each connection is up for a
/// moment only, so the count goes on, and with the default (proportional) jitter the delays
/// still grow, whatever the random values.
#[test]
fn connections_dropped_at_once_get_growing_jittered_delays() {
    let t0 = Instant::now();
    let mut b: Backoff<std::io::Error> =
        Backoff::new(RetryPolicy::exponential(UNLIMITED, ms(100), ms(60_000)), BackoffConfig::default());
    let randoms = [u64::MAX, 0, u64::MAX / 3, u64::MAX, 7, u64::MAX - 1, 1 << 63, u64::MAX];
    let mut now = t0;
    b.start(now);
    let mut last = Duration::ZERO;
    for (i, r) in randoms.into_iter().enumerate() {
        b.on_up(now);
        now += ms(5);
        let Decision::Retry { retry, delay, .. } = b.on_failure(now, &err(), r) else { panic!("unlimited") };
        assert_eq!(retry as usize, i + 1);
        assert!(delay > last, "retry {retry}: {delay:?} after {last:?}");
        last = delay;
        now += delay;
        assert!(matches!(b.on_timeout(now), Some(BackoffAction::Connect(_))));
    }
}

#[test]
fn a_healthy_connection_forgives_earlier_failures() {
    let t0 = Instant::now();
    let mut b = plain(RetryPolicy::exponential(5, ms(100), ms(10_000)));
    b.start(t0);
    b.on_failure(t0, &err(), 0);
    b.on_timeout(t0 + ms(100));
    b.on_failure(t0 + ms(100), &err(), 0);
    assert_eq!(b.failures(), 2);
    b.on_timeout(t0 + ms(300));
    b.on_up(t0 + ms(300));
    assert_eq!(b.next_deadline(), Some(t0 + ms(1_300)), "healthy_after from the up");
    assert_eq!(b.on_timeout(t0 + ms(1_299)), None);
    assert_eq!(b.on_timeout(t0 + ms(1_300)), Some(BackoffAction::Healthy));
    assert_eq!(b.failures(), 0);
    assert_eq!(b.next_deadline(), None);
    assert_eq!(
        b.on_failure(t0 + ms(5_000), &err(), 0),
        Decision::Retry { retry: 1, delay: ms(100), at: Some(t0 + ms(5_100)) }
    );
    // Vouching works too.
    b.on_timeout(t0 + ms(5_100));
    b.on_up(t0 + ms(5_100));
    assert!(b.on_healthy());
    assert_eq!(b.failures(), 0);
}

#[test]
fn fatal_failures_are_not_retried() {
    let t0 = Instant::now();
    let mut b = plain(RetryPolicy::fixed(UNLIMITED, ms(10))).classify(|e: &std::io::Error| {
        if e.kind() == std::io::ErrorKind::PermissionDenied { Failure::Fatal } else { Failure::Retryable }
    });
    b.start(t0);
    assert!(matches!(b.on_failure(t0, &err(), 0), Decision::Retry { retry: 1, .. }));
    b.on_timeout(t0 + ms(10));
    let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    assert_eq!(b.on_failure(t0 + ms(10), &denied, 0), Decision::GiveUp { failures: 2, fatal: true });
    assert_eq!(b.phase(), Phase::Stopped);
    assert_eq!(b.on_timeout(t0 + ms(1_000_000)), None);
}

#[test]
fn unlimited_retries_never_give_up() {
    let t0 = Instant::now();
    let mut b = plain(RetryPolicy::exponential(UNLIMITED, ms(1), ms(50)));
    b.start(t0);
    for i in 0..10_000u32 {
        match b.on_failure(t0, &err(), 0) {
            Decision::Retry { retry, delay, .. } => {
                assert_eq!(retry, i + 1);
                assert!(delay <= ms(50));
            }
            d => panic!("gave up: {d:?}"),
        }
    }
}

#[test]
fn jitter_stays_in_its_range_and_never_panics() {
    let d = ms(1_000);
    let mut x = 1u64;
    for _ in 0..10_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let full = Jitter::Full.apply(d, x);
        assert!(full <= d);
        let prop = Jitter::Proportional { percent: 20 }.apply(d, x);
        assert!(prop >= ms(800) && prop <= d, "{prop:?}");
        assert!(Jitter::Proportional { percent: 255 }.apply(d, x) <= d);
    }
    assert!(Jitter::Full.apply(Duration::MAX, u64::MAX) <= Duration::MAX);
    assert!(Jitter::Full.apply(Duration::MAX, u64::MAX) > Duration::MAX / 2);
    assert_eq!(Jitter::Proportional { percent: 100 }.apply(Duration::MAX, 0), Duration::MAX);
    let _ = Jitter::Proportional { percent: 100 }.apply(Duration::MAX, u64::MAX);
}

#[test]
fn a_delay_beyond_any_instant_means_wait_forever() {
    let t0 = Instant::now();
    let mut b = plain(RetryPolicy::fixed(1, Duration::MAX));
    b.start(t0);
    assert_eq!(b.on_failure(t0, &err(), 0), Decision::Retry { retry: 1, delay: Duration::MAX, at: None });
    assert_eq!(b.phase(), Phase::Waiting(None));
    assert_eq!(b.next_deadline(), None);
    assert_eq!(b.on_timeout(t0 + ms(u64::from(u32::MAX))), None);
}

#[test]
fn attempts_are_monotonic_across_everything() {
    let t0 = Instant::now();
    let mut b = plain(RetryPolicy::fixed(UNLIMITED, ms(1)));
    let mut seen = vec![b.start(t0)];
    for i in 1..50u64 {
        let now = t0 + ms(i * 10);
        b.on_up(now);
        b.on_failure(now, &err(), 0);
        let Some(BackoffAction::Connect(a)) = b.on_timeout(now + ms(1)) else { panic!() };
        seen.push(a);
        if i % 7 == 0 {
            seen.push(b.start(now + ms(2)));
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(b.attempt(), *seen.last().unwrap());
}
