#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::*;

#[test]
fn buckets_cover_every_value_in_order_without_gaps() {
    let mut prev_hi = None;
    for b in 0..BUCKETS {
        let (lo, hi) = bounds_of(b);
        assert!(lo <= hi);
        if let Some(p) = prev_hi {
            assert_eq!(lo, p + 1, "bucket {b}");
        }
        assert_eq!(bucket_of(lo), b);
        assert_eq!(bucket_of(hi), b);
        // Relative width at most 1/16.
        assert!((hi - lo) as f64 <= lo.max(1) as f64 / 16.0 + 1.0, "bucket {b}");
        prev_hi = Some(hi);
    }
    assert_eq!(prev_hi, Some(MAX_US));
    assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    assert_eq!(BUCKETS * 4, 2_112);
}

#[test]
fn quantiles_are_within_the_relative_error() {
    // A skewed distribution: 99 % fast, 1 % slow, a few very slow.
    let mut h = Histogram::new();
    assert_eq!(h.summary(), Summary::default());
    assert_eq!(h.heap_bytes(), 0, "nothing allocated before the first sample");
    let mut values = Vec::new();
    let mut x = 12345u64;
    for i in 0..100_000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let us = match i % 1000 {
            0 => 2_000_000 + (x >> 40) % 1_000_000,
            1..=10 => 10_000 + (x >> 40) % 5_000,
            _ => 50 + (x >> 40) % 100,
        };
        values.push(us);
        h.record(Duration::from_micros(us));
    }
    values.sort_unstable();
    for q in [0.5, 0.99, 0.999, 1.0] {
        let exact = values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1] as f64;
        let got = h.quantile(q).unwrap().as_micros() as f64;
        assert!((got - exact).abs() <= exact / 16.0 + 1.0, "q {q}: {got} vs {exact}");
    }
    let s = h.summary();
    assert_eq!(s.count, 100_000);
    assert_eq!(s.max, Some(Duration::from_micros(*values.last().unwrap())));
    assert_eq!(s.min, Some(Duration::from_micros(values[0])));
    assert_eq!(h.heap_bytes(), 2_112);
}

#[test]
fn extremes_are_clamped_not_lost() {
    let mut h = Histogram::new();
    h.record(Duration::ZERO);
    h.record(Duration::MAX);
    h.record(Duration::from_nanos(10));
    let s = h.summary();
    assert_eq!(s.count, 3);
    assert_eq!(s.max, Some(Duration::MAX));
    assert_eq!(s.last, Some(Duration::from_nanos(10)));
    assert_eq!(h.quantile(0.0), Some(Duration::ZERO));
    assert!(h.quantile(1.0).unwrap() >= Duration::from_secs(60 * 60 * 18), "top bucket");
    assert!(h.quantile(f64::NAN).is_some());
    h.clear();
    assert_eq!(h.count(), 0);
    assert_eq!(h.heap_bytes(), 0);
}

#[test]
fn counters_saturate() {
    let mut s = ClientStats { messages_in: u64::MAX, ..ClientStats::default() };
    s.on_message_in(10);
    s.on_message_out(5);
    s.on_drop(2);
    s.on_reconnect();
    assert_eq!(
        (s.messages_in, s.bytes_in, s.messages_out, s.bytes_out, s.drops, s.reconnects),
        (u64::MAX, 10, 1, 5, 2, 1)
    );
}
