//! Round-trip statistics in bounded memory ([`Histogram`]) and the client's counters
//! ([`ClientStats`]).
//!
//! **Why our own histogram, not the `hdrhistogram` crate.** Memory per client matters (the
//! issue benchmarks 10,000 idle clients with heartbeats, each keeping two histograms), and we
//! need quantiles only: no serialisation, merging or iteration API. This one is log-bucketed
//! with 16 sub-buckets per power of two over microseconds (1 µs to 2^36 µs ≈ 19 h, values
//! beyond are clamped and counted in the top bucket): 528 `u32` counters, **2,112 bytes**,
//! allocated on the first sample (an idle client that never measured pays nothing), with a
//! relative error of at most 1/16 (6.25 %) on any quantile, exact `min`, `max` and `last`.
//! Recording is O(1) (a leading-zeros count and an index). `hdrhistogram` with 2 significant
//! digits over the same range keeps about 3,800 counters (30 KiB as `u64`, 15 KiB as `u32`)
//! from the start, and pulls in its serialisation dependencies by default.
//!
//! ```
//! use std::time::Duration;
//! use moorline_proto::client::stats::Histogram;
//!
//! let mut h = Histogram::new();
//! for us in 1..=1000u64 {
//!     h.record(Duration::from_micros(us));
//! }
//! let s = h.summary();
//! assert_eq!(s.count, 1000);
//! assert_eq!(s.last, Some(Duration::from_micros(1000)));
//! let p50 = s.p50.unwrap().as_micros() as f64;
//! assert!((p50 - 500.0).abs() / 500.0 <= 1.0 / 16.0);
//! assert_eq!(s.max, Some(Duration::from_micros(1000)));
//! ```

use std::time::Duration;

/// Linear buckets below this many microseconds, then `SUB` buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped below 2^TOP_EXP µs.
const TOP_EXP: u32 = 36;
/// 16 linear buckets + 16 per octave from 2^4 to 2^35.
const BUCKETS: usize = (SUB + (TOP_EXP - SUB_BITS) as u64 * SUB) as usize;
const MAX_US: u64 = (1 << TOP_EXP) - 1;

fn bucket_of(us: u64) -> usize {
    let v = us.min(MAX_US);
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// The smallest and largest microsecond value of a bucket.
fn bounds_of(bucket: usize) -> (u64, u64) {
    let b = bucket as u64;
    if b < SUB {
        return (b, b);
    }
    let exp = (b - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (b - SUB) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    let low = (1u64 << exp) + sub * width;
    (low, low + width - 1)
}

/// A latency histogram (see the [module doc](self)).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Option<Box<[u32; BUCKETS]>>,
    count: u64,
    sum_us: u128,
    min: Option<Duration>,
    max: Option<Duration>,
    last: Option<Duration>,
}

/// A histogram's summary: quantiles are `None` before the first sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// The most recent sample.
    pub last: Option<Duration>,
    /// The smallest sample.
    pub min: Option<Duration>,
    /// The largest sample.
    pub max: Option<Duration>,
    /// The mean.
    pub mean: Option<Duration>,
    /// The median.
    pub p50: Option<Duration>,
    /// The 99th percentile.
    pub p99: Option<Duration>,
    /// The 99.9th percentile.
    pub p999: Option<Duration>,
}

impl Histogram {
    /// An empty histogram (no memory for buckets until the first sample).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one round trip.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let c = &mut counts[bucket_of(us)];
        *c = c.saturating_add(1);
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(u128::from(us));
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
        self.last = Some(d);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0.0 to 1.0, clamped): the bucket's midpoint, within
    /// `[min, max]`; `None` before the first sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts = self.counts.as_ref()?;
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (lo, hi) = bounds_of(i);
                let mid = Duration::from_micros(lo + (hi - lo) / 2);
                let (min, max) = (self.min.unwrap_or(mid), self.max.unwrap_or(mid));
                return Some(mid.clamp(min.min(max), max));
            }
        }
        self.max
    }

    /// Count, last, min, max, mean, p50, p99, p99.9.
    pub fn summary(&self) -> Summary {
        let mean = (self.count > 0).then(|| {
            let us = self.sum_us / u128::from(self.count);
            Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
        });
        Summary {
            count: self.count,
            last: self.last,
            min: self.min,
            max: self.max,
            mean,
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
        }
    }

    /// Forget every sample (and free the buckets).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Bytes this histogram holds beyond its own size (0 or the fixed bucket array).
    pub fn heap_bytes(&self) -> usize {
        if self.counts.is_some() { BUCKETS * std::mem::size_of::<u32>() } else { 0 }
    }
}

/// The client's health and statistics: round trips and counters.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Request round trips (sent to response).
    pub request_rtt: Histogram,
    /// Heartbeat round trips (our ping or test request to its answer).
    pub heartbeat_rtt: Histogram,
    /// Connections lost and started again.
    pub reconnects: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Bytes received in messages.
    pub bytes_in: u64,
    /// Bytes sent in messages.
    pub bytes_out: u64,
    /// Messages dropped (the incoming buffer's drop-oldest policy), never silently.
    pub drops: u64,
}

impl ClientStats {
    /// A message of `bytes` bytes arrived.
    pub fn on_message_in(&mut self, bytes: usize) {
        self.messages_in = self.messages_in.saturating_add(1);
        self.bytes_in = self.bytes_in.saturating_add(bytes as u64);
    }

    /// A message of `bytes` bytes was sent.
    pub fn on_message_out(&mut self, bytes: usize) {
        self.messages_out = self.messages_out.saturating_add(1);
        self.bytes_out = self.bytes_out.saturating_add(bytes as u64);
    }

    /// `n` messages were dropped.
    pub fn on_drop(&mut self, n: u64) {
        self.drops = self.drops.saturating_add(n);
    }

    /// A reconnect began.
    pub fn on_reconnect(&mut self) {
        self.reconnects = self.reconnects.saturating_add(1);
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
