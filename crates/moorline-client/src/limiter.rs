//! The client's rate limiter: `moorline_proto`'s credit pools with the configured cost of
//! each method ([`RateLimit`](crate::config::RateLimit)), and a refusal as the user's error.

use std::time::Duration;

use moorline_proto::client::ratelimit::{Acquire, Mode, PoolId, RateLimiter, Refusal};

use crate::config::{CostFn, LimitMode};
use crate::error::ClientError;

/// The rate limiter with its pools and cost model.
pub(crate) struct Limiter {
    pub rl: RateLimiter,
    pub pools: Vec<(PoolId, &'static str)>,
    pub cost: CostFn,
}

impl Limiter {
    pub fn new(limit: &crate::config::RateLimit) -> Self {
        let mode = match limit.mode {
            LimitMode::Refuse => Mode::Refuse,
            LimitMode::Wait { max_wait } => Mode::Wait { max_wait },
        };
        let mut rl = RateLimiter::new(mode);
        let pools = limit
            .pools
            .iter()
            .map(|p| {
                let pool = moorline_proto::client::ratelimit::Pool {
                    name: p.name,
                    capacity: p.capacity,
                    refill_per_second: p.refill_per_sec,
                };
                (rl.add_pool(pool), p.name)
            })
            .collect();
        Self { rl, pools, cost: limit.cost.clone() }
    }

    /// Spends the method's cost now (see [`Acquire`]); a free method is `Ready`.
    pub fn acquire(&mut self, now: std::time::Instant, method: &str) -> Acquire {
        let Some(cost) = (self.cost)(method) else { return Acquire::Ready };
        let Some((pool, _)) = self.pools.get(cost.pool) else { return Acquire::Refused(Refusal::UnknownPool) };
        self.rl.acquire(now, *pool, cost.credits)
    }
}

impl Limiter {
    /// Spends the method's cost now whatever the pool holds (into debt if need be): for a
    /// request that goes at once (a heartbeat answer, a session step) but that the venue
    /// charges all the same.
    pub fn charge(&mut self, now: std::time::Instant, method: &str) {
        let Some(cost) = (self.cost)(method) else { return };
        if let Some((pool, _)) = self.pools.get(cost.pool) {
            self.rl.charge(now, *pool, cost.credits);
        }
    }
}

/// A refusal as the user's error.
pub(crate) fn rate_limited(refusal: &Refusal, now: std::time::Instant) -> ClientError {
    let pool = match refusal {
        Refusal::Empty { pool, .. } | Refusal::WaitTooLong { pool, .. } | Refusal::TooCostly { pool, .. } => pool,
        _ => &"unknown",
    };
    let retry_after = refusal.retry_at().map(|at| at.saturating_duration_since(now)).unwrap_or(Duration::MAX);
    ClientError::RateLimited { pool, retry_after }
}

/// A rate limiter refusal that no wait can cure, as the refusal of a request (JSON-RPC code
/// -32000, the refusal's explanation as the message): what a request or a restore step the
/// limiter refused answers with.
pub(crate) fn rate_limit_refusal(r: &Refusal) -> crate::jsonrpc::RpcError {
    crate::jsonrpc::RpcError { code: -32000, message: r.to_string(), data: None }
}
