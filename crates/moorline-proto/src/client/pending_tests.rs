#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn opts(timeout_ms: u64) -> RequestOptions {
    RequestOptions::new(ms(timeout_ms), 10)
}

#[test]
fn ids_are_monotonic_across_reconnects_and_late_responses_match_nothing() {
    let t0 = Instant::now();
    let mut p: Pending<u32> = Pending::new(PendingLimits::default());
    let a = p.insert(t0, opts(1_000), 1).unwrap();
    let b = p.insert(t0, opts(1_000), 2).unwrap();
    assert!(b > a);
    let gone = p.on_disconnect();
    assert_eq!(gone.failed, vec![(a, 1), (b, 2)]);
    assert_eq!(gone.kept, 0);
    // The new connection's first request gets a fresh id; the old connection's late
    // responses (ids a and b) find nothing.
    let c = p.insert(t0 + ms(10), opts(1_000), 3).unwrap();
    assert!(c > b);
    assert_eq!(p.complete(a), None);
    assert_eq!(p.complete(b), None);
    assert_eq!(p.complete(c), Some(3));
    assert!(p.is_empty());
    assert_eq!(p.bytes(), 0);
}

#[test]
fn deadlines_expire_in_order_and_completion_cancels_them() {
    let t0 = Instant::now();
    let mut p: Pending<&str> = Pending::new(PendingLimits::default());
    let slow = p.insert(t0, opts(300), "slow").unwrap();
    let fast = p.insert(t0, opts(100), "fast").unwrap();
    let mid = p.insert(t0, opts(200), "mid").unwrap();
    let never = p.insert(t0, RequestOptions::new(Duration::MAX, 1), "never").unwrap();
    assert_eq!(p.next_deadline(), Some(t0 + ms(100)));
    assert_eq!(p.complete(fast), Some("fast"));
    assert_eq!(p.next_deadline(), Some(t0 + ms(200)));
    assert!(p.expire(t0 + ms(199)).is_empty());
    assert_eq!(p.expire(t0 + ms(1_000)), vec![(mid, "mid"), (slow, "slow")]);
    assert_eq!(p.next_deadline(), None, "the one without a deadline never expires");
    assert_eq!(p.get(never), Some(&"never"));
    assert_eq!(p.complete(slow), None, "expired: completed at most once");
}

#[test]
fn a_disconnect_fails_all_at_once_but_keeps_resendable_ones_under_new_ids() {
    let t0 = Instant::now();
    let mut p: Pending<&str> = Pending::new(PendingLimits::default());
    let a = p.insert(t0, opts(1_000), "buy").unwrap();
    let b = p.insert(t0, opts(500).resend(true), "get_positions").unwrap();
    let c = p.insert(t0, opts(2_000).resend(true), "get_time").unwrap();
    let gone = p.on_disconnect();
    assert_eq!(gone.failed, vec![(a, "buy")]);
    assert_eq!(gone.kept, 2);
    assert_eq!(p.next_deadline(), Some(t0 + ms(500)), "kept ones keep their deadline");
    // A late answer to b arriving before the restore still completes it: it is the same request.
    // After the restore, they move to new ids.
    let resent = p.take_resends();
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[0].old, b);
    assert_eq!(resent[1].old, c);
    assert!(resent[0].new > c && resent[1].new > resent[0].new);
    assert_eq!(p.get(resent[0].new), Some(&"get_positions"));
    assert_eq!(p.complete(b), None, "old id forgotten");
    assert!(p.take_resends().is_empty(), "handed out once");
    assert_eq!(p.expire(t0 + ms(500)), vec![(resent[0].new, "get_positions")]);
    assert_eq!(p.complete(resent[1].new), Some("get_time"));
    assert_eq!(p.bytes(), 0);
}

#[test]
fn a_resendable_request_still_expires_while_disconnected() {
    let t0 = Instant::now();
    let mut p: Pending<&str> = Pending::new(PendingLimits::default());
    let a = p.insert(t0, opts(100).resend(true), "x").unwrap();
    p.on_disconnect();
    assert_eq!(p.expire(t0 + ms(100)), vec![(a, "x")]);
    assert!(p.take_resends().is_empty());
}

#[test]
fn a_flood_of_requests_is_refused_past_the_count_and_the_bytes() {
    let t0 = Instant::now();
    let mut p: Pending<u64> = Pending::new(PendingLimits { max_requests: 100, max_bytes: 1_000 });
    let mut accepted = 0;
    let mut refused_bytes = 0;
    for i in 0..10_000u64 {
        match p.insert(t0, RequestOptions::new(ms(1_000), 7), i) {
            Ok(_) => accepted += 1,
            Err(PendingError::TooMany { limit }) => assert_eq!(limit, 100),
            Err(PendingError::TooManyBytes { .. }) => refused_bytes += 1,
        }
        assert!(p.len() <= 100 && p.bytes() <= 1_000);
    }
    assert_eq!(accepted, 100);
    assert_eq!(refused_bytes, 0);
    let mut q: Pending<u64> = Pending::new(PendingLimits { max_requests: 100, max_bytes: 1_000 });
    q.insert(t0, RequestOptions::new(ms(1), 600), 0).unwrap();
    let err = q.insert(t0, RequestOptions::new(ms(1), 401), 1).unwrap_err();
    assert_eq!(err, PendingError::TooManyBytes { limit: 1_000, pending: 600, requested: 401 });
    assert_eq!(err.to_string(), "pending requests would hold 1001 bytes, over the limit of 1000");
    assert!(q.insert(t0, RequestOptions::new(ms(1), 400), 1).is_ok(), "exactly at the limit");
    assert_eq!(q.fail_all().len(), 2);
    assert_eq!((q.len(), q.bytes(), q.next_deadline()), (0, 0, None));
}
