//! Reconnection policy: how many times to try again and how long to wait before each try.
//!
//! The model is Gun's: a number of retries (default 5) and a delay between them (default
//! 5 s), or a user function of the attempt number and the last error that decides the next
//! delay. [`Reconnector`] is the pure state machine the connection worker consults after
//! every failure; it counts consecutive failures and forgets them once a connection has
//! proved **healthy**: it stayed up for [`Reconnector::healthy_after`] (default
//! [`DEFAULT_HEALTHY_AFTER`], 10 s), or the caller vouched for it ([`Reconnector::on_healthy`]).
//! A connection that comes up and goes down again before that is one more failure, so a
//! server that accepts TCP and then closes at once, or fails every WebSocket upgrade, is
//! retried with the policy's growing delays and, for a bounded policy, given up on.
//!
//! Time is passed in (`now`), never read: the machine is deterministic.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use moorline_proto::retry::{Reconnector, RetryDecision, RetryPolicy};
//!
//! let mut r = Reconnector::new(RetryPolicy::fixed(2, Duration::from_millis(100)))
//!     .healthy_after(Duration::from_secs(10));
//! let err = std::io::Error::other("refused");
//! let t0 = Instant::now();
//! assert_eq!(r.on_failure(t0, &err), RetryDecision::RetryAfter(Duration::from_millis(100)));
//! // Up, and down again a second later: not healthy yet, so it counts.
//! r.on_up(t0);
//! assert_eq!(r.healthy_at(), Some(t0 + Duration::from_secs(10)));
//! assert_eq!(r.on_failure(t0 + Duration::from_secs(1), &err), RetryDecision::RetryAfter(Duration::from_millis(100)));
//! assert_eq!(r.on_failure(t0 + Duration::from_secs(2), &err), RetryDecision::GiveUp);
//! assert_eq!(r.failures(), 3);
//! // A connection that stays up 10 s resets the count.
//! let mut r = Reconnector::new(RetryPolicy::fixed(1, Duration::ZERO));
//! assert_eq!(r.on_failure(t0, &err), RetryDecision::RetryAfter(Duration::ZERO));
//! r.on_up(t0);
//! assert!(r.on_time(t0 + Duration::from_secs(10)));
//! assert_eq!(r.failures(), 0);
//! assert_eq!(r.on_failure(t0 + Duration::from_secs(11), &err), RetryDecision::RetryAfter(Duration::ZERO));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Gun's default number of retries.
pub const DEFAULT_RETRIES: u32 = 5;
/// Gun's default delay between retries.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long a connection must stay up before its predecessors' failures are forgiven.
pub const DEFAULT_HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// A number of retries that never runs out: [`RetryPolicy::Fixed`] and
/// [`RetryPolicy::Exponential`] with `retries: UNLIMITED` never give up (the failure count
/// saturates at `u32::MAX`, which is still within the allowance).
///
/// ```
/// use std::time::Duration;
/// use moorline_proto::retry::{RetryPolicy, UNLIMITED};
/// let p = RetryPolicy::exponential(UNLIMITED, Duration::from_secs(1), Duration::from_secs(30));
/// assert_eq!(p.delay_for(u32::MAX, &std::io::Error::other("x")), Some(Duration::from_secs(30)));
/// ```
pub const UNLIMITED: u32 = u32::MAX;

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try to connect again.
    RetryAfter(Duration),
    /// Stop trying: the worker exits and reports the last error.
    GiveUp,
}

/// A user function deciding the delay before retry number `attempt` (1-based), given the
/// error that ended the previous try. `None` means give up. `E` is the error type the
/// caller of [`Reconnector::on_failure`] reports (any `std::error::Error` by default).
pub type RetryFn<E = dyn std::error::Error + 'static> = Arc<dyn Fn(u32, &E) -> Option<Duration> + Send + Sync>;

/// How a connection retries after the peer closes, the socket fails or a connect attempt fails.
///
/// `E` is the failure the policy is shown: only [`RetryPolicy::Custom`] looks at it, so a
/// user function can tell failures apart by their type instead of their text.
pub enum RetryPolicy<E: ?Sized = dyn std::error::Error + 'static> {
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
    Custom(RetryFn<E>),
}

impl<E: ?Sized> RetryPolicy<E> {
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use moorline_proto::retry::RetryPolicy;
    /// // The function sees the caller's own error type.
    /// let p = RetryPolicy::custom(|attempt, e: &std::io::Error| {
    ///     (e.kind() == std::io::ErrorKind::ConnectionRefused && attempt <= 3).then_some(Duration::from_millis(50))
    /// });
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// assert_eq!(p.delay_for(1, &refused), Some(Duration::from_millis(50)));
    /// assert_eq!(p.delay_for(1, &std::io::Error::other("x")), None);
    /// ```
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(u32, &E) -> Option<Duration> + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    /// The delay before retry number `attempt` (1-based), or `None` to give up.
    pub fn delay_for(&self, attempt: u32, error: &E) -> Option<Duration> {
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

impl<E: ?Sized> Default for RetryPolicy<E> {
    /// Gun's defaults: 5 retries, 5 seconds apart.
    fn default() -> Self {
        Self::fixed(DEFAULT_RETRIES, DEFAULT_RETRY_DELAY)
    }
}

impl<E: ?Sized> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Never => Self::Never,
            Self::Fixed { retries, delay } => Self::Fixed { retries: *retries, delay: *delay },
            Self::Exponential { retries, base, max } => Self::Exponential { retries: *retries, base: *base, max: *max },
            Self::Custom(f) => Self::Custom(f.clone()),
        }
    }
}

impl<E: ?Sized> fmt::Debug for RetryPolicy<E> {
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

/// Where the connection is, as far as forgiving failures goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No connection is up (connecting, waiting to retry, or not started).
    Down,
    /// A connection is up since this time and has not proved healthy yet.
    Up(Instant),
    /// The current connection proved healthy: the count was reset.
    Healthy,
}

/// Counts consecutive failures and asks the policy what to do next.
///
/// **What counts.** Every failed connection attempt, and every connection lost before it
/// proved healthy, is one failure; the count goes on across such short-lived connections.
/// It resets to zero when the current connection has been up for
/// [`Reconnector::healthy_after`] ([`Reconnector::on_time`], or lazily in
/// [`Reconnector::on_failure`]) or when the caller vouches for it ([`Reconnector::on_healthy`]),
/// never merely because a connection came up.
///
/// **Attempts.** The policy is asked about attempt `n` = the count after the failure just
/// recorded: `1` for the first failure after a healthy connection (or the start), `2` for the
/// next, and so on. For a bounded policy of `r` retries, the worker gives up at the failure
/// that makes the count `r + 1`.
pub struct Reconnector<E: ?Sized = dyn std::error::Error + 'static> {
    policy: RetryPolicy<E>,
    healthy_after: Duration,
    failures: u32,
    link: Link,
}

impl<E: ?Sized> Clone for Reconnector<E> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            healthy_after: self.healthy_after,
            failures: self.failures,
            link: self.link,
        }
    }
}

impl<E: ?Sized> fmt::Debug for Reconnector<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnector")
            .field("policy", &self.policy)
            .field("healthy_after", &self.healthy_after)
            .field("failures", &self.failures)
            .field("link", &self.link)
            .finish()
    }
}

impl<E: ?Sized> Reconnector<E> {
    /// A reconnector with no failures recorded, forgiving them after
    /// [`DEFAULT_HEALTHY_AFTER`] of connection.
    pub fn new(policy: RetryPolicy<E>) -> Self {
        Self { policy, healthy_after: DEFAULT_HEALTHY_AFTER, failures: 0, link: Link::Down }
    }

    /// How long a connection must stay up for the count to reset. `Duration::ZERO` resets
    /// it as soon as a connection is up (no protection against a server that accepts and
    /// closes at once); `Duration::MAX` only on [`Reconnector::on_healthy`].
    pub fn healthy_after(mut self, after: Duration) -> Self {
        self.healthy_after = after;
        self
    }

    /// A connection came up at `now`. The count is kept until it proves healthy.
    pub fn on_up(&mut self, now: Instant) {
        self.link = Link::Up(now);
        if self.healthy_after.is_zero() {
            self.on_healthy();
        }
    }

    /// When the current connection will have stayed up long enough to reset the count, so a
    /// driver knows when to call [`Reconnector::on_time`]. `None` when there is nothing to
    /// wait for: no connection is up, it already proved healthy, there is no failure to
    /// forgive, or the time is beyond what `Instant` holds (only [`Reconnector::on_healthy`]
    /// can reset the count then).
    pub fn healthy_at(&self) -> Option<Instant> {
        match self.link {
            Link::Up(since) if self.failures > 0 => since.checked_add(self.healthy_after),
            _ => None,
        }
    }

    /// Time has passed: if the current connection has been up for the healthy time at
    /// `now`, reset the count. Returns whether the count was reset by this call.
    pub fn on_time(&mut self, now: Instant) -> bool {
        match self.link {
            Link::Up(since) if now.saturating_duration_since(since) >= self.healthy_after => self.on_healthy(),
            _ => false,
        }
    }

    /// The caller vouches for the current connection (its subscriptions are confirmed, say):
    /// reset the count now. Without a connection up this does nothing. Returns whether the
    /// count was reset by this call (`false` too when it was already zero).
    pub fn on_healthy(&mut self) -> bool {
        if !matches!(self.link, Link::Up(_)) {
            return false;
        }
        self.link = Link::Healthy;
        std::mem::take(&mut self.failures) > 0
    }

    /// Record a failure at `now` (a lost connection or a failed try) and decide what to do
    /// next. A connection lost after it stayed up the healthy time resets the count first,
    /// even if [`Reconnector::on_time`] was not called in between.
    pub fn on_failure(&mut self, now: Instant, error: &E) -> RetryDecision {
        self.on_time(now);
        self.link = Link::Down;
        self.failures = self.failures.saturating_add(1);
        match self.policy.delay_for(self.failures, error) {
            Some(d) => RetryDecision::RetryAfter(d),
            None => RetryDecision::GiveUp,
        }
    }

    /// Consecutive failures not yet forgiven: the attempt number the policy was last asked
    /// about (0 after a reset).
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn delays<E: ?Sized>(r: &mut Reconnector<E>, mut now: Instant, error: &E, n: usize) -> Vec<RetryDecision> {
        (0..n)
            .map(|_| {
                now += ms(1);
                r.on_failure(now, error)
            })
            .collect()
    }

    #[test]
    fn default_is_gun_five_times_five_seconds() {
        let mut r = Reconnector::new(RetryPolicy::default());
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(r.on_failure(t, &err()), RetryDecision::RetryAfter(Duration::from_secs(5)));
        }
        assert_eq!(r.on_failure(t, &err()), RetryDecision::GiveUp);
        assert_eq!(r.failures(), 6);
    }

    #[test]
    fn unlimited_never_gives_up_even_when_the_count_saturates() {
        let mut r = Reconnector::new(RetryPolicy::exponential(UNLIMITED, ms(1), ms(8)));
        let t = Instant::now();
        r.failures = u32::MAX - 2;
        for _ in 0..5 {
            assert_eq!(r.on_failure(t, &err()), RetryDecision::RetryAfter(ms(8)));
        }
        assert_eq!(r.failures(), u32::MAX);
        let mut f = Reconnector::new(RetryPolicy::fixed(UNLIMITED, ms(3)));
        f.failures = u32::MAX;
        assert_eq!(f.on_failure(t, &err()), RetryDecision::RetryAfter(ms(3)));
    }

    #[test]
    fn never_gives_up_at_once() {
        let mut r = Reconnector::new(RetryPolicy::Never);
        assert_eq!(r.on_failure(Instant::now(), &err()), RetryDecision::GiveUp);
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn exponential_caps_and_does_not_overflow() {
        let p = RetryPolicy::exponential(u32::MAX, ms(100), Duration::from_secs(30));
        assert_eq!(p.delay_for(1, &err()), Some(ms(100)));
        assert_eq!(p.delay_for(2, &err()), Some(ms(200)));
        assert_eq!(p.delay_for(200, &err()), Some(Duration::from_secs(30)));
        let huge = RetryPolicy::exponential(u32::MAX, Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay_for(40, &err()), Some(Duration::MAX));
    }

    #[test]
    fn custom_sees_attempt_and_error() {
        let p = RetryPolicy::custom(|attempt, e: &std::io::Error| {
            (e.to_string() == "boom" && attempt < 3).then(|| ms(u64::from(attempt)))
        });
        let mut r = Reconnector::new(p);
        let t = Instant::now();
        assert_eq!(r.on_failure(t, &err()), RetryDecision::RetryAfter(ms(1)));
        assert_eq!(r.on_failure(t, &err()), RetryDecision::RetryAfter(ms(2)));
        assert_eq!(r.on_failure(t, &err()), RetryDecision::GiveUp);
        let other = std::io::Error::other("fatal");
        let mut r2 = Reconnector::new(RetryPolicy::custom(|a, e: &std::io::Error| {
            (e.to_string() != "fatal").then(|| ms(u64::from(a)))
        }));
        assert_eq!(r2.on_failure(t, &other), RetryDecision::GiveUp);
    }

    /// The policy's function receives the caller's typed error, not a `dyn Error`.
    #[test]
    fn custom_sees_the_typed_error() {
        #[derive(Debug)]
        enum Failure {
            Refused(u16),
            Closed,
        }
        let p: RetryPolicy<Failure> = RetryPolicy::custom(|attempt, f| match f {
            Failure::Refused(port) if *port == 80 => Some(ms(u64::from(attempt) * 10)),
            Failure::Refused(_) => None,
            Failure::Closed => Some(ms(1)),
        });
        let mut r = Reconnector::new(p);
        let t = Instant::now();
        assert_eq!(r.on_failure(t, &Failure::Refused(80)), RetryDecision::RetryAfter(ms(10)));
        assert_eq!(r.on_failure(t, &Failure::Closed), RetryDecision::RetryAfter(ms(1)));
        assert_eq!(r.on_failure(t, &Failure::Refused(80)), RetryDecision::RetryAfter(ms(30)));
        assert_eq!(r.on_failure(t, &Failure::Refused(81)), RetryDecision::GiveUp);
        // The simple policies work for any error type, sized or not.
        let mut fixed: Reconnector<Failure> = Reconnector::new(RetryPolicy::fixed(1, ms(5)));
        assert_eq!(fixed.on_failure(t, &Failure::Closed), RetryDecision::RetryAfter(ms(5)));
        let mut dynamic: Reconnector = Reconnector::new(RetryPolicy::Never);
        assert_eq!(dynamic.on_failure(t, &err() as &(dyn std::error::Error + 'static)), RetryDecision::GiveUp);
    }

    /// The defect of issue 15: a server that accepts and closes at once. Each connection is
    /// up for a moment only, so the count must go on and the delays grow per the policy.
    #[test]
    fn connections_that_drop_at_once_keep_counting() {
        let mut r = Reconnector::new(RetryPolicy::exponential(4, ms(20), Duration::from_secs(1)));
        let mut now = Instant::now();
        let mut decisions = Vec::new();
        for _ in 0..5 {
            r.on_up(now);
            now += ms(1);
            decisions.push(r.on_failure(now, &err()));
            if let Some(RetryDecision::RetryAfter(d)) = decisions.last() {
                now += *d;
            }
        }
        assert_eq!(
            decisions,
            [
                RetryDecision::RetryAfter(ms(20)),
                RetryDecision::RetryAfter(ms(40)),
                RetryDecision::RetryAfter(ms(80)),
                RetryDecision::RetryAfter(ms(160)),
                RetryDecision::GiveUp,
            ]
        );
        assert_eq!(r.failures(), 5);
    }

    #[test]
    fn healthy_at_is_known_only_while_a_connection_is_up_with_failures_to_forgive() {
        let t = Instant::now();
        let mut r = Reconnector::new(RetryPolicy::fixed(5, ms(1))).healthy_after(ms(200));
        assert_eq!(r.healthy_at(), None, "nothing up");
        r.on_up(t);
        assert_eq!(r.healthy_at(), None, "nothing to forgive");
        r.on_failure(t + ms(10), &err());
        assert_eq!(r.healthy_at(), None, "down");
        r.on_up(t + ms(20));
        assert_eq!(r.healthy_at(), Some(t + ms(220)));
        assert!(!r.on_time(t + ms(219)), "one millisecond early");
        assert_eq!(r.failures(), 1);
        assert!(r.on_time(t + ms(220)));
        assert_eq!(r.failures(), 0);
        assert_eq!(r.healthy_at(), None, "healthy");
        assert!(!r.on_time(t + ms(500)), "only once");
        // Beyond what an Instant holds: no deadline, only the caller can vouch.
        let mut r = Reconnector::new(RetryPolicy::fixed(5, ms(1))).healthy_after(Duration::MAX);
        r.on_failure(t, &err());
        r.on_up(t);
        assert_eq!(r.healthy_at(), None);
        assert!(!r.on_time(t + Duration::from_secs(86_400)));
        assert!(r.on_healthy());
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn a_connection_up_long_enough_resets_the_count_even_without_a_tick() {
        let t = Instant::now();
        let mut r =
            Reconnector::new(RetryPolicy::exponential(5, ms(20), Duration::from_secs(1))).healthy_after(ms(200));
        assert_eq!(
            delays(&mut r, t, &err(), 3),
            [RetryDecision::RetryAfter(ms(20)), RetryDecision::RetryAfter(ms(40)), RetryDecision::RetryAfter(ms(80))]
        );
        r.on_up(t + ms(500));
        // Lost 199 ms after Up: still a short-lived connection.
        assert_eq!(r.on_failure(t + ms(699), &err()), RetryDecision::RetryAfter(ms(160)));
        r.on_up(t + ms(1000));
        // Lost exactly 200 ms after Up: healthy, so this failure is the first again.
        assert_eq!(r.on_failure(t + ms(1200), &err()), RetryDecision::RetryAfter(ms(20)));
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn the_caller_vouching_resets_the_count_only_while_up() {
        let t = Instant::now();
        let mut r = Reconnector::new(RetryPolicy::fixed(2, ms(1)));
        r.on_failure(t, &err());
        assert!(!r.on_healthy(), "nothing is up: nothing to vouch for");
        assert_eq!(r.failures(), 1);
        r.on_up(t);
        assert!(r.on_healthy());
        assert_eq!(r.failures(), 0);
        assert!(!r.on_healthy(), "already healthy");
        assert_eq!(r.on_failure(t + ms(1), &err()), RetryDecision::RetryAfter(ms(1)));
        assert_eq!(r.on_failure(t + ms(2), &err()), RetryDecision::RetryAfter(ms(1)));
        assert_eq!(r.on_failure(t + ms(3), &err()), RetryDecision::GiveUp);
    }

    #[test]
    fn zero_healthy_time_resets_on_up() {
        let t = Instant::now();
        let mut r = Reconnector::new(RetryPolicy::fixed(1, Duration::ZERO)).healthy_after(Duration::ZERO);
        assert_eq!(r.on_failure(t, &err()), RetryDecision::RetryAfter(Duration::ZERO));
        r.on_up(t);
        assert_eq!(r.failures(), 0);
        assert_eq!(r.on_failure(t, &err()), RetryDecision::RetryAfter(Duration::ZERO));
        assert_eq!(r.on_failure(t, &err()), RetryDecision::GiveUp);
    }

    #[test]
    fn a_clock_going_backwards_never_counts_as_healthy() {
        let t = Instant::now() + Duration::from_secs(1);
        let mut r = Reconnector::new(RetryPolicy::fixed(3, ms(1))).healthy_after(ms(200));
        r.on_failure(t, &err());
        r.on_up(t);
        assert!(!r.on_time(t - ms(500)));
        assert_eq!(r.on_failure(t - ms(500), &err()), RetryDecision::RetryAfter(ms(1)));
        assert_eq!(r.failures(), 2);
    }
}
