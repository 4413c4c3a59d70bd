//! Deribit's credit-based rate limit: pools of credits that refill continuously; every
//! request spends some, and a request that finds too few is refused with
//! `10028 too_many_requests` (which, as on Deribit, ends the session unless configured not to).
//!
//! An authenticated connection spends its account's pools, which persist across
//! reconnects; before `public/auth` a connection spends pools of its own. Subscriptions
//! (`*/subscribe`, `*/unsubscribe`) spend a pool of their own.

use std::time::Instant;

/// Rate-limit settings, after Deribit's documented defaults.
///
/// With the defaults an account (or an unauthenticated connection) may burst 100
/// non-matching requests and sustain 20 per second; matching-engine requests
/// (`private/buy`, `sell`, `edit`, `cancel`, `cancel_all*`) cost four times as much (5 per
/// second sustained). Subscribe and unsubscribe requests spend a pool of their own: a
/// burst of 10, 3.3 per second sustained.
///
/// ```
/// use moorline_testkit::deribit::RateLimit;
///
/// // Trips after two requests and never refills: handy in tests.
/// let tight = RateLimit { max_credits: 1_000, refill_per_second: 0, ..RateLimit::default() };
/// assert_eq!(tight.cost, 500);
/// assert_eq!(RateLimit::default().subscribe_cost, 3_000);
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
    /// Size of the subscribe pool (default 30 000).
    pub subscribe_max_credits: u64,
    /// Credits added back to the subscribe pool per second (default 10 000).
    pub subscribe_refill_per_second: u64,
    /// Cost of a subscribe or unsubscribe request (default 3 000).
    pub subscribe_cost: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            max_credits: 50_000,
            refill_per_second: 10_000,
            cost: 500,
            matching_engine_cost: 2_000,
            subscribe_max_credits: 30_000,
            subscribe_refill_per_second: 10_000,
            subscribe_cost: 3_000,
        }
    }
}

impl RateLimit {
    /// No limit at all.
    pub fn unlimited() -> Self {
        Self {
            max_credits: u64::MAX,
            refill_per_second: u64::MAX,
            cost: 0,
            matching_engine_cost: 0,
            subscribe_max_credits: u64::MAX,
            subscribe_refill_per_second: u64::MAX,
            subscribe_cost: 0,
        }
    }

    fn subscribe_pool(&self) -> Self {
        Self {
            max_credits: self.subscribe_max_credits,
            refill_per_second: self.subscribe_refill_per_second,
            cost: self.subscribe_cost,
            matching_engine_cost: self.subscribe_cost,
            ..*self
        }
    }
}

/// What a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    /// A non-matching-engine request.
    Plain,
    /// A matching-engine request.
    MatchingEngine,
    /// A subscribe or unsubscribe request.
    Subscribe,
}

/// The pools one account (or one unauthenticated connection) spends.
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    general: CreditPool,
    subscribe: CreditPool,
}

impl Pools {
    /// Full pools.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self { general: CreditPool::new(limit, now), subscribe: CreditPool::new(limit.subscribe_pool(), now) }
    }

    /// Spends what `cost` says from the right pool; `false` (nothing spent) when it holds too few.
    pub(crate) fn try_spend(&mut self, cost: Cost, now: Instant) -> bool {
        match cost {
            Cost::Plain => self.general.try_spend(false, now),
            Cost::MatchingEngine => self.general.try_spend(true, now),
            Cost::Subscribe => self.subscribe.try_spend(false, now),
        }
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
        let limit = RateLimit {
            max_credits: 2_000,
            refill_per_second: 1_000,
            cost: 500,
            matching_engine_cost: 1_000,
            ..RateLimit::default()
        };
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

#[cfg(test)]
mod pool_tests {
    use super::{Cost, Pools, RateLimit};
    use std::time::{Duration, Instant};

    #[test]
    fn subscribe_pool_is_separate() {
        let t0 = Instant::now();
        let mut pools = Pools::new(RateLimit::default(), t0);
        // Ten subscribes drain the subscribe pool (30 000 / 3 000) but not the general one.
        assert!((0..10).all(|_| pools.try_spend(Cost::Subscribe, t0)));
        assert!(!pools.try_spend(Cost::Subscribe, t0));
        assert!((0..100).all(|_| pools.try_spend(Cost::Plain, t0)));
        assert!(!pools.try_spend(Cost::Plain, t0));
        // 300 ms refills one subscribe.
        let t1 = t0 + Duration::from_millis(300);
        assert!(pools.try_spend(Cost::Subscribe, t1));
        assert!(!pools.try_spend(Cost::Subscribe, t1));
    }
}
