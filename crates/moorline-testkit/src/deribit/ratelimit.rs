//! Deribit's credit-based rate limit: each connection has a pool of credits
//! that refills continuously; every request spends some, and a request that
//! finds too few is refused with `10028 too_many_requests`.

use std::time::Instant;

/// Rate-limit settings (per connection), after Deribit's documented defaults.
///
/// With the defaults a connection may burst 100 non-matching requests and
/// sustain 20 per second; matching-engine requests (`private/buy`, `sell`,
/// `cancel`, `cancel_all*`) cost four times as much (5 per second sustained).
///
/// ```
/// use moorline_testkit::deribit::RateLimit;
///
/// // Trips after two requests and never refills: handy in tests.
/// let tight = RateLimit { max_credits: 1_000, refill_per_second: 0, ..RateLimit::default() };
/// assert_eq!(tight.cost, 500);
/// assert!(RateLimit::unlimited().max_credits > 1_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Pool size, and the credits a new connection starts with (default 50 000).
    pub max_credits: u64,
    /// Credits added back per second (default 10 000).
    pub refill_per_second: u64,
    /// Cost of a non-matching-engine request (default 500).
    pub cost: u64,
    /// Cost of a matching-engine request (default 2 000).
    pub matching_engine_cost: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { max_credits: 50_000, refill_per_second: 10_000, cost: 500, matching_engine_cost: 2_000 }
    }
}

impl RateLimit {
    /// No limit at all.
    pub fn unlimited() -> Self {
        Self { max_credits: u64::MAX, refill_per_second: u64::MAX, cost: 0, matching_engine_cost: 0 }
    }
}

/// One connection's credit pool.
#[derive(Debug, Clone)]
pub(crate) struct CreditPool {
    limit: RateLimit,
    credits: f64,
    last: Instant,
}

impl CreditPool {
    /// A full pool.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self { limit, credits: limit.max_credits as f64, last: now }
    }

    /// Spends the cost of one request (matching-engine or not); `false` (and
    /// nothing spent) when the pool holds too few credits.
    pub(crate) fn try_spend(&mut self, matching_engine: bool, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let max = self.limit.max_credits as f64;
        self.credits = (self.credits + elapsed * self.limit.refill_per_second as f64).min(max);
        let cost = if matching_engine { self.limit.matching_engine_cost } else { self.limit.cost } as f64;
        if self.credits < cost {
            return false;
        }
        self.credits -= cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{CreditPool, RateLimit};
    use std::time::{Duration, Instant};

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let limit = RateLimit { max_credits: 2_000, refill_per_second: 1_000, cost: 500, matching_engine_cost: 1_000 };
        let mut pool = CreditPool::new(limit, t0);
        assert!((0..4).all(|_| pool.try_spend(false, t0)));
        assert!(!pool.try_spend(false, t0));
        // Half a second refills one request's worth.
        let t1 = t0 + Duration::from_millis(500);
        assert!(pool.try_spend(false, t1));
        assert!(!pool.try_spend(false, t1));
        // Never above the pool size.
        let t2 = t1 + Duration::from_secs(100);
        assert!(pool.try_spend(true, t2) && pool.try_spend(true, t2));
        assert!(!pool.try_spend(false, t2));
    }

    #[test]
    fn unlimited_never_trips() {
        let t0 = Instant::now();
        let mut pool = CreditPool::new(RateLimit::unlimited(), t0);
        assert!((0..10_000).all(|_| pool.try_spend(true, t0)));
    }
}
