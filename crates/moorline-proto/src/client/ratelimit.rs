//! [`RateLimiter`]: token buckets ("credit pools") with a cost per request.
//!
//! Each [`Pool`] holds up to `capacity` credits and refills continuously at
//! `refill_per_second`; a request spends its cost from one pool. The arithmetic is exact
//! (integer nano-credits, no float drift) and saturating: a pool of `u64::MAX` credits, a
//! refill of 0 or `u64::MAX`, or a clock going backwards never panic.
//!
//! [`RateLimiter::acquire`] answers per the configured [`Mode`]:
//! - [`Acquire::Ready`]: the credits are spent, send now;
//! - [`Acquire::Wait`]`(until)` (mode [`Mode::Wait`]): the credits are **reserved** (the pool
//!   goes into debt), send at `until` without asking again; later requests queue behind it, so
//!   the order holds. A wait longer than `max_wait` is refused instead, which bounds the queue a
//!   shell keeps for the waiting requests by time (and so by count: `max_wait × rate`);
//! - [`Acquire::Refused`] (mode [`Mode::Refuse`], or past `max_wait`, or a cost larger than the
//!   pool): nothing spent; the [`Refusal`] says when the credits would be there.
//!
//! Pressure is counted in [`RateStats`] (granted, waits, refusals, total and longest wait).
//!
//! **Deribit's preset** ([`RateLimiter::deribit`], [`DeribitLimits`]), after Deribit's
//! published defaults (its "Rate Limits" article) and NautilusTrader's adapter constants:
//! non-matching-engine requests cost 500 credits from a pool of 50,000 refilled at 10,000/s (20
//! requests/s sustained, bursts of 100); matching-engine requests ([`DERIBIT_MATCHING_ENGINE`]:
//! buy, sell, edit, cancel...) have their own pool, tiered by trading volume: the preset takes
//! the lowest tier as NautilusTrader does, 5 requests/s with bursts of 20; `public/subscribe`
//! and `private/subscribe` (and their unsubscribes) cost 3,000 from a pool of 30,000 refilled at 10,000/s (about 3.3/s,
//! bursts of 10). A venue that runs dry answers `10028 too_many_requests` and may close the
//! session, which is what this limiter keeps a client from provoking. Real limits depend on the
//! account: adjust [`DeribitLimits`] (`private/get_account_summary` tells them).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use moorline_proto::client::ratelimit::{Acquire, DeribitLimits, Mode, RateLimiter};
//!
//! let t0 = Instant::now();
//! let (mut rl, pools) = RateLimiter::deribit(DeribitLimits::default(), Mode::Refuse);
//! let (pool, cost) = pools.classify("public/get_time");
//! for _ in 0..100 {
//!     assert_eq!(rl.acquire(t0, pool, cost), Acquire::Ready);
//! }
//! // The 101st in the same instant: refused, with when it would fit (500 credits at 10,000/s).
//! let Acquire::Refused(r) = rl.acquire(t0, pool, cost) else { panic!() };
//! assert_eq!(r.retry_at(), Some(t0 + Duration::from_millis(50)));
//! // The matching engine has its own pool, still full.
//! let (me, me_cost) = pools.classify("private/buy");
//! assert_eq!(rl.acquire(t0, me, me_cost), Acquire::Ready);
//! assert_eq!(rl.stats().refusals, 1);
//! ```

use std::time::{Duration, Instant};

use super::after;

const NANOS: i128 = 1_000_000_000;

/// One credit pool's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// A name for logs and statistics.
    pub name: &'static str,
    /// Most credits held (and what a new pool starts with).
    pub capacity: u64,
    /// Credits added back per second.
    pub refill_per_second: u64,
}

/// What to do when a pool is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reserve the credits and tell the caller when to send, up to `max_wait` ahead;
    /// refuse beyond it.
    Wait {
        /// The longest wait granted.
        max_wait: Duration,
    },
    /// Refuse at once.
    Refuse,
}

/// Names a pool of a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(usize);

/// Why a request was refused (nothing was spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The pool is short; the credits would be there at `retry_at` (`None`: never, the pool
    /// does not refill).
    #[error("rate limit: the {pool} pool is short of credits")]
    Empty {
        /// The pool's name.
        pool: &'static str,
        /// When the credits would be there.
        retry_at: Option<Instant>,
    },
    /// The wait would be longer than the mode's `max_wait`.
    #[error("rate limit: the {pool} pool would make this request wait longer than {max_wait:?}")]
    WaitTooLong {
        /// The pool's name.
        pool: &'static str,
        /// The limit.
        max_wait: Duration,
        /// When the credits would be there (`None`: never).
        retry_at: Option<Instant>,
    },
    /// The request costs more than the pool can ever hold.
    #[error("rate limit: a request costing {cost} credits can never fit the {pool} pool of {capacity}")]
    TooCostly {
        /// The pool's name.
        pool: &'static str,
        /// The request's cost.
        cost: u64,
        /// The pool's capacity.
        capacity: u64,
    },
    /// No such pool in this limiter.
    #[error("rate limit: no such pool")]
    UnknownPool,
}

impl Refusal {
    /// When trying again could succeed, if ever.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Self::Empty { retry_at, .. } | Self::WaitTooLong { retry_at, .. } => *retry_at,
            Self::TooCostly { .. } | Self::UnknownPool => None,
        }
    }
}

/// The answer to [`RateLimiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Spent: send now.
    Ready,
    /// Reserved: send at this instant (do not call `acquire` again for it).
    Wait(Instant),
    /// Refused: nothing spent.
    Refused(Refusal),
}

/// Pressure statistics, over all pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateStats {
    /// Requests granted at once.
    pub granted: u64,
    /// Requests granted after a wait.
    pub waits: u64,
    /// Requests refused.
    pub refusals: u64,
    /// The waits added up.
    pub total_wait: Duration,
    /// The longest wait granted.
    pub longest_wait: Duration,
}

#[derive(Debug, Clone)]
struct Bucket {
    pool: Pool,
    /// Credits × 10^9; negative while waits are reserved.
    nanos: i128,
    last: Option<Instant>,
}

impl Bucket {
    fn cap(&self) -> i128 {
        i128::from(self.pool.capacity) * NANOS
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        let elapsed = now.duration_since(last).as_nanos();
        let added = elapsed.checked_mul(u128::from(self.pool.refill_per_second));
        let added = added.and_then(|a| i128::try_from(a).ok()).unwrap_or(i128::MAX);
        self.nanos = self.nanos.saturating_add(added).min(self.cap());
        self.last = Some(now);
    }

    /// How long until `need` nano-credits are there (`None`: never).
    fn wait_for(&self, need: i128) -> Option<Duration> {
        let short = need - self.nanos;
        if short <= 0 {
            return Some(Duration::ZERO);
        }
        let rate = i128::from(self.pool.refill_per_second);
        if rate == 0 {
            return None;
        }
        // Ceiling: the credits are all there at the end of the wait.
        let ns = (short + rate - 1) / rate;
        u64::try_from(ns).ok().map(Duration::from_nanos)
    }
}

/// The limiter: a few pools, one mode, shared statistics (see the [module doc](self)).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    buckets: Vec<Bucket>,
    mode: Mode,
    stats: RateStats,
}

impl RateLimiter {
    /// A limiter with no pool yet.
    pub fn new(mode: Mode) -> Self {
        Self { buckets: Vec::new(), mode, stats: RateStats::default() }
    }

    /// Adds a pool, full, and names it.
    pub fn add_pool(&mut self, pool: Pool) -> PoolId {
        self.buckets.push(Bucket { pool, nanos: i128::from(pool.capacity) * NANOS, last: None });
        PoolId(self.buckets.len() - 1)
    }

    /// Spend `cost` credits of `pool` at `now`, per the mode (see [`Acquire`]).
    pub fn acquire(&mut self, now: Instant, pool: PoolId, cost: u64) -> Acquire {
        let mode = self.mode;
        let Some(b) = self.buckets.get_mut(pool.0) else {
            self.stats.refusals += 1;
            return Acquire::Refused(Refusal::UnknownPool);
        };
        b.refill(now);
        if cost > b.pool.capacity {
            self.stats.refusals += 1;
            return Acquire::Refused(Refusal::TooCostly { pool: b.pool.name, cost, capacity: b.pool.capacity });
        }
        let need = i128::from(cost) * NANOS;
        let wait = b.wait_for(need);
        if wait == Some(Duration::ZERO) {
            b.nanos -= need;
            self.stats.granted += 1;
            return Acquire::Ready;
        }
        let retry_at = wait.and_then(|w| after(now, w));
        match (mode, wait, retry_at) {
            (Mode::Wait { max_wait }, Some(w), Some(at)) if w <= max_wait => {
                b.nanos -= need;
                self.stats.waits += 1;
                self.stats.total_wait = self.stats.total_wait.saturating_add(w);
                self.stats.longest_wait = self.stats.longest_wait.max(w);
                Acquire::Wait(at)
            }
            (Mode::Wait { max_wait }, _, _) => {
                self.stats.refusals += 1;
                Acquire::Refused(Refusal::WaitTooLong { pool: b.pool.name, max_wait, retry_at })
            }
            (Mode::Refuse, _, _) => {
                self.stats.refusals += 1;
                Acquire::Refused(Refusal::Empty { pool: b.pool.name, retry_at })
            }
        }
    }

    /// Spend `cost` credits of `pool` at `now` whatever the pool holds, into debt if need be
    /// (the requests after it then wait longer): for a request that must go at once (a
    /// heartbeat answer, a session step) but that the venue charges all the same. Counted
    /// as granted.
    pub fn charge(&mut self, now: Instant, pool: PoolId, cost: u64) {
        if let Some(b) = self.buckets.get_mut(pool.0) {
            b.refill(now);
            b.nanos = b.nanos.saturating_sub(i128::from(cost) * NANOS);
            self.stats.granted += 1;
        }
    }

    /// Give back `cost` credits of a request granted but not sent after all (a waiting
    /// request whose caller gave up). Never beyond the capacity.
    pub fn refund(&mut self, pool: PoolId, cost: u64) {
        if let Some(b) = self.buckets.get_mut(pool.0) {
            b.nanos = b.nanos.saturating_add(i128::from(cost) * NANOS).min(b.cap());
        }
    }

    /// Whole credits available in `pool` at `now` (0 while in debt).
    pub fn available(&mut self, now: Instant, pool: PoolId) -> u64 {
        let Some(b) = self.buckets.get_mut(pool.0) else { return 0 };
        b.refill(now);
        u64::try_from((b.nanos / NANOS).max(0)).unwrap_or(u64::MAX)
    }

    /// A pool's settings.
    pub fn pool(&self, pool: PoolId) -> Option<&Pool> {
        self.buckets.get(pool.0).map(|b| &b.pool)
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Pressure so far.
    pub fn stats(&self) -> &RateStats {
        &self.stats
    }
}

/// Deribit's matching-engine methods (their own pool); every other method is
/// non-matching, except the subscribe methods ([`DERIBIT_SUBSCRIBE`]).
pub const DERIBIT_MATCHING_ENGINE: &[&str] = &[
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

/// Deribit's subscribe methods, and their unsubscribes (their own pool).
pub const DERIBIT_SUBSCRIBE: &[&str] =
    &["public/subscribe", "private/subscribe", "public/unsubscribe", "private/unsubscribe"];

/// Deribit's pools and costs (defaults: see the [module doc](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeribitLimits {
    /// Non-matching-engine requests' pool (50,000 credits, 10,000/s).
    pub non_matching: Pool,
    /// What one non-matching request costs (500).
    pub non_matching_cost: u64,
    /// Matching-engine requests' pool (the lowest tier: 20 credits, 5/s).
    pub matching: Pool,
    /// What one matching-engine request costs (1).
    pub matching_cost: u64,
    /// Subscribe requests' pool (30,000 credits, 10,000/s).
    pub subscribe: Pool,
    /// What one subscribe request costs (3,000).
    pub subscribe_cost: u64,
}

impl Default for DeribitLimits {
    fn default() -> Self {
        Self {
            non_matching: Pool { name: "deribit non-matching", capacity: 50_000, refill_per_second: 10_000 },
            non_matching_cost: 500,
            matching: Pool { name: "deribit matching engine", capacity: 20, refill_per_second: 5 },
            matching_cost: 1,
            subscribe: Pool { name: "deribit subscribe", capacity: 30_000, refill_per_second: 10_000 },
            subscribe_cost: 3_000,
        }
    }
}

/// The pools of a Deribit limiter, and which one a method draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeribitPools {
    /// Non-matching-engine requests.
    pub non_matching: PoolId,
    /// Matching-engine requests.
    pub matching: PoolId,
    /// Subscribe requests.
    pub subscribe: PoolId,
    limits: DeribitLimits,
}

impl DeribitPools {
    /// The pool and the cost of a request to `method` (with or without a leading `/`).
    pub fn classify(&self, method: &str) -> (PoolId, u64) {
        let m = method.strip_prefix('/').unwrap_or(method);
        if DERIBIT_MATCHING_ENGINE.contains(&m) {
            (self.matching, self.limits.matching_cost)
        } else if DERIBIT_SUBSCRIBE.contains(&m) {
            (self.subscribe, self.limits.subscribe_cost)
        } else {
            (self.non_matching, self.limits.non_matching_cost)
        }
    }
}

impl RateLimiter {
    /// Deribit's credit model (see the [module doc](self)).
    pub fn deribit(limits: DeribitLimits, mode: Mode) -> (Self, DeribitPools) {
        let mut rl = Self::new(mode);
        let pools = DeribitPools {
            non_matching: rl.add_pool(limits.non_matching),
            matching: rl.add_pool(limits.matching),
            subscribe: rl.add_pool(limits.subscribe),
            limits,
        };
        (rl, pools)
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
