//! Reconnection policy: how many times to try again and how long to wait before each try.
//!
//! The model is Gun's: a number of retries (default 5) and a delay between them (default
//! 5 s), or a user function of the attempt number and the last error that decides the next
//! delay. [`Reconnector`] is the pure state machine the connection worker consults after
//! every failure; it counts consecutive failures and forgets them once a connection is up.
//!
//! ```
//! use std::time::Duration;
//! use moorline_proto::retry::{Reconnector, RetryDecision, RetryPolicy};
//!
//! let mut r = Reconnector::new(RetryPolicy::fixed(2, Duration::from_millis(100)));
//! let err = std::io::Error::other("refused");
//! assert_eq!(r.on_failure(&err), RetryDecision::RetryAfter(Duration::from_millis(100)));
//! assert_eq!(r.on_failure(&err), RetryDecision::RetryAfter(Duration::from_millis(100)));
//! assert_eq!(r.on_failure(&err), RetryDecision::GiveUp);
//! r.on_up(); // a successful connection resets the count
//! assert_eq!(r.on_failure(&err), RetryDecision::RetryAfter(Duration::from_millis(100)));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Gun's default number of retries.
pub const DEFAULT_RETRIES: u32 = 5;
/// Gun's default delay between retries.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try to connect again.
    RetryAfter(Duration),
    /// Stop trying: the worker exits and reports the last error.
    GiveUp,
}

/// A user function deciding the delay before retry number `attempt` (1-based), given the
/// error that ended the previous try. `None` means give up.
pub type RetryFn = Arc<dyn Fn(u32, &(dyn std::error::Error + 'static)) -> Option<Duration> + Send + Sync>;

/// How a connection retries after the peer closes, the socket fails or a connect attempt fails.
#[derive(Clone)]
pub enum RetryPolicy {
    /// Never reconnect: the first failure ends the worker.
    Never,
    /// Up to `retries` tries, each after the same `delay`.
    Fixed {
        /// Number of tries after a failure before giving up.
        retries: u32,
        /// Delay before each try.
        delay: Duration,
    },
    /// Up to `retries` tries; the delay doubles from `base` on every try, capped at `max`.
    Exponential {
        /// Number of tries after a failure before giving up.
        retries: u32,
        /// Delay before the first try.
        base: Duration,
        /// Largest delay.
        max: Duration,
    },
    /// A user function decides each delay (see [`RetryFn`]).
    Custom(RetryFn),
}

impl RetryPolicy {
    /// Fixed delay between a bounded number of tries.
    pub fn fixed(retries: u32, delay: Duration) -> Self {
        Self::Fixed { retries, delay }
    }

    /// Exponential backoff: `base × 2^(attempt-1)`, capped at `max`, at most `retries` tries.
    ///
    /// ```
    /// use std::time::Duration;
    /// use moorline_proto::retry::RetryPolicy;
    /// let p = RetryPolicy::exponential(10, Duration::from_secs(1), Duration::from_secs(30));
    /// let e = std::io::Error::other("x");
    /// assert_eq!(p.delay_for(1, &e), Some(Duration::from_secs(1)));
    /// assert_eq!(p.delay_for(3, &e), Some(Duration::from_secs(4)));
    /// assert_eq!(p.delay_for(9, &e), Some(Duration::from_secs(30)));
    /// assert_eq!(p.delay_for(11, &e), None);
    /// ```
    pub fn exponential(retries: u32, base: Duration, max: Duration) -> Self {
        Self::Exponential { retries, base, max }
    }

    /// A policy decided by a user function of the attempt number and the last error.
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(u32, &(dyn std::error::Error + 'static)) -> Option<Duration> + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    /// The delay before retry number `attempt` (1-based), or `None` to give up.
    pub fn delay_for(&self, attempt: u32, error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
        match self {
            Self::Never => None,
            Self::Fixed { retries, delay } => (attempt <= *retries).then_some(*delay),
            Self::Exponential { retries, base, max } => {
                if attempt > *retries {
                    return None;
                }
                let shift = attempt.saturating_sub(1).min(31);
                let factor = 1u32 << shift;
                Some(base.saturating_mul(factor).min(*max))
            }
            Self::Custom(f) => f(attempt, error),
        }
    }
}

impl Default for RetryPolicy {
    /// Gun's defaults: 5 retries, 5 seconds apart.
    fn default() -> Self {
        Self::fixed(DEFAULT_RETRIES, DEFAULT_RETRY_DELAY)
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never => f.write_str("Never"),
            Self::Fixed { retries, delay } => {
                f.debug_struct("Fixed").field("retries", retries).field("delay", delay).finish()
            }
            Self::Exponential { retries, base, max } => {
                f.debug_struct("Exponential").field("retries", retries).field("base", base).field("max", max).finish()
            }
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Counts consecutive failures and asks the policy what to do next.
#[derive(Debug, Clone)]
pub struct Reconnector {
    policy: RetryPolicy,
    failures: u32,
}

impl Reconnector {
    /// A reconnector with no failures recorded.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, failures: 0 }
    }

    /// A connection came up: the next failure starts counting from one again.
    pub fn on_up(&mut self) {
        self.failures = 0;
    }

    /// Record a failure (a lost connection or a failed try) and decide what to do next.
    pub fn on_failure(&mut self, error: &(dyn std::error::Error + 'static)) -> RetryDecision {
        self.failures = self.failures.saturating_add(1);
        match self.policy.delay_for(self.failures, error) {
            Some(d) => RetryDecision::RetryAfter(d),
            None => RetryDecision::GiveUp,
        }
    }

    /// Consecutive failures since the last successful connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> std::io::Error {
        std::io::Error::other("boom")
    }

    #[test]
    fn default_is_gun_five_times_five_seconds() {
        let mut r = Reconnector::new(RetryPolicy::default());
        for _ in 0..5 {
            assert_eq!(r.on_failure(&err()), RetryDecision::RetryAfter(Duration::from_secs(5)));
        }
        assert_eq!(r.on_failure(&err()), RetryDecision::GiveUp);
        assert_eq!(r.failures(), 6);
    }

    #[test]
    fn never_gives_up_at_once() {
        let mut r = Reconnector::new(RetryPolicy::Never);
        assert_eq!(r.on_failure(&err()), RetryDecision::GiveUp);
    }

    #[test]
    fn exponential_caps_and_does_not_overflow() {
        let p = RetryPolicy::exponential(u32::MAX, Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(p.delay_for(1, &err()), Some(Duration::from_millis(100)));
        assert_eq!(p.delay_for(2, &err()), Some(Duration::from_millis(200)));
        assert_eq!(p.delay_for(200, &err()), Some(Duration::from_secs(30)));
        let huge = RetryPolicy::exponential(u32::MAX, Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay_for(40, &err()), Some(Duration::MAX));
    }

    #[test]
    fn custom_sees_attempt_and_error() {
        let p = RetryPolicy::custom(|attempt, e| {
            (e.to_string() == "boom" && attempt < 3).then(|| Duration::from_millis(u64::from(attempt)))
        });
        let mut r = Reconnector::new(p);
        assert_eq!(r.on_failure(&err()), RetryDecision::RetryAfter(Duration::from_millis(1)));
        assert_eq!(r.on_failure(&err()), RetryDecision::RetryAfter(Duration::from_millis(2)));
        assert_eq!(r.on_failure(&err()), RetryDecision::GiveUp);
        let other = std::io::Error::other("fatal");
        let mut r2 = Reconnector::new(RetryPolicy::custom(|a, e| {
            (e.to_string() != "fatal").then(|| Duration::from_millis(u64::from(a)))
        }));
        assert_eq!(r2.on_failure(&other), RetryDecision::GiveUp);
    }

    #[test]
    fn up_resets_the_count() {
        let mut r = Reconnector::new(RetryPolicy::fixed(1, Duration::ZERO));
        assert_eq!(r.on_failure(&err()), RetryDecision::RetryAfter(Duration::ZERO));
        r.on_up();
        assert_eq!(r.on_failure(&err()), RetryDecision::RetryAfter(Duration::ZERO));
        assert_eq!(r.on_failure(&err()), RetryDecision::GiveUp);
    }
}
