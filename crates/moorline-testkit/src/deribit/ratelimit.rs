//! Deribit's credit-based rate limit: pools of credits that refill continuously; every
//! request spends some, and a request that finds too few is refused with
//! `10028 too_many_requests` (which, as on Deribit, ends the session unless configured not to).
//!
//! An authenticated connection spends its account's pools, which persist across
//! reconnects; before `public/auth` a connection spends pools of its own. As Deribit
//! documents it ("Rate Limits"), matching-engine requests ([`MATCHING_ENGINE`]: buy, sell,
//! edit, cancel...) have a pool of their own (tiered by trading volume; the default is the
//! lowest tier: bursts of 20, 5 a second), apart from the non-matching credits (500 a
//! request from 50 000, refilled at 10 000 a second), which every other request spends,
//! `public/test` and the heartbeat answers included. Subscriptions (`*/subscribe`,
//! `*/unsubscribe`) spend a pool of their own.

use std::time::Instant;

/// Rate-limit settings, after Deribit's documented defaults.
///
/// With the defaults an account (or an unauthenticated connection) may burst 100
/// non-matching requests and sustain 20 per second; matching-engine requests
/// ([`MATCHING_ENGINE`]) spend a pool of their own: a burst of 20, 5 per second sustained
/// (Deribit's lowest volume tier). Subscribe and unsubscribe requests spend a third pool: a
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
    /// Cost of a matching-engine request, from the matching-engine pool (default 1 000).
    pub matching_engine_cost: u64,
    /// Size of the matching-engine pool (default 20 000: a burst of 20).
    pub matching_engine_max_credits: u64,
    /// Credits added back to the matching-engine pool per second (default 5 000: 5 a second).
    pub matching_engine_refill_per_second: u64,
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
            matching_engine_cost: 1_000,
            matching_engine_max_credits: 20_000,
            matching_engine_refill_per_second: 5_000,
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
            matching_engine_max_credits: u64::MAX,
            matching_engine_refill_per_second: u64::MAX,
            subscribe_max_credits: u64::MAX,
            subscribe_refill_per_second: u64::MAX,
            subscribe_cost: 0,
        }
    }

    fn matching_engine_pool(&self) -> Self {
        Self {
            max_credits: self.matching_engine_max_credits,
            refill_per_second: self.matching_engine_refill_per_second,
            cost: self.matching_engine_cost,
            ..*self
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

/// Deribit's matching-engine methods (its "Rate Limits" article lists them); every other
/// method spends the non-matching credits, except subscribe and unsubscribe.
pub const MATCHING_ENGINE: &[&str] = &[
    "private/buy",
    "private/sell",
    "private/edit",
    "private/edit_by_label",
    "private/cancel",
    "private/cancel_by_label",
    "private/cancel_all",
    "private/cancel_all_by_instrument",
    "private/cancel_all_by_currency",
    "private/cancel_all_by_kind_or_type",
    "private/close_position",
    "private/verify_block_trade",
    "private/execute_block_trade",
];

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
    matching_engine: CreditPool,
    subscribe: CreditPool,
}

impl Pools {
    /// Full pools.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            general: CreditPool::new(limit, now),
            matching_engine: CreditPool::new(limit.matching_engine_pool(), now),
            subscribe: CreditPool::new(limit.subscribe_pool(), now),
        }
    }

    /// Spends what `cost` says from the right pool; `false` (nothing spent) when it holds too few.
    pub(crate) fn try_spend(&mut self, cost: Cost, now: Instant) -> bool {
        match cost {
            Cost::Plain => self.general.try_spend(now),
            Cost::MatchingEngine => self.matching_engine.try_spend(now),
            Cost::Subscribe => self.subscribe.try_spend(now),
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

    /// Spends the cost of one request; `false` (and nothing spent) when the pool holds too
    /// few credits.
    pub(crate) fn try_spend(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let max = self.limit.max_credits as f64;
        self.credits = (self.credits + elapsed * self.limit.refill_per_second as f64).min(max);
        let cost = self.limit.cost as f64;
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
        let limit = RateLimit { max_credits: 2_000, refill_per_second: 1_000, cost: 500, ..RateLimit::default() };
        let mut pool = CreditPool::new(limit, t0);
        assert!((0..4).all(|_| pool.try_spend(t0)));
        assert!(!pool.try_spend(t0));
        // Half a second refills one request's worth.
        let t1 = t0 + Duration::from_millis(500);
        assert!(pool.try_spend(t1));
        assert!(!pool.try_spend(t1));
        // Never above the pool size.
        let t2 = t1 + Duration::from_secs(100);
        assert!((0..4).all(|_| pool.try_spend(t2)));
        assert!(!pool.try_spend(t2));
    }

    #[test]
    fn unlimited_never_trips() {
        let t0 = Instant::now();
        let mut pool = CreditPool::new(RateLimit::unlimited(), t0);
        assert!((0..10_000).all(|_| pool.try_spend(t0)));
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

    #[test]
    fn matching_engine_pool_is_separate_bursts_20_refills_5_per_second() {
        let t0 = Instant::now();
        let mut pools = Pools::new(RateLimit::default(), t0);
        assert!((0..20).all(|_| pools.try_spend(Cost::MatchingEngine, t0)));
        assert!(!pools.try_spend(Cost::MatchingEngine, t0));
        // The non-matching credits are all still there.
        assert!((0..100).all(|_| pools.try_spend(Cost::Plain, t0)));
        assert!(!pools.try_spend(Cost::Plain, t0));
        // 200 ms refills one order.
        let t1 = t0 + Duration::from_millis(200);
        assert!(pools.try_spend(Cost::MatchingEngine, t1));
        assert!(!pools.try_spend(Cost::MatchingEngine, t1));
    }
}
