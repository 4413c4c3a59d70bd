//! [`Backoff`]: when to connect again. The client's reconnect loop as a state machine over
//! [`Reconnector`] (the failure count, which resets only once a connection stayed up
//! `healthy_after` or the caller vouched for it), plus what a trading client needs on top:
//!
//! - **attempts**: every connection attempt gets a new [`Attempt`] from here
//!   ([`Backoff::start`], or [`BackoffAction::Connect`] when a wait ends), the identity the
//!   per-connection machines check;
//! - **the first connect's failure is retried too**: there is no special first attempt;
//! - **fatal failures are not retried**: a classification function given by the caller
//!   ([`Backoff::classify`]; say an HTTP 401/403/404 on the upgrade, a TLS verification
//!   failure or a bad URL) stops the machine with [`Decision::GiveUp`]`{ fatal: true }`;
//! - **jitter**, with the random value passed in (see [`Jitter`] for the choice);
//! - **unlimited attempts**: a policy with `retries: `[`UNLIMITED`](crate::retry::UNLIMITED);
//! - what the `reconnecting` event says: [`Decision::Retry`] has the retry number and the delay.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use moorline_proto::client::backoff::{Backoff, BackoffAction, BackoffConfig, Decision, Failure, Jitter};
//! use moorline_proto::retry::{RetryPolicy, UNLIMITED};
//!
//! #[derive(Debug)]
//! enum Error { Refused, Unauthorized }
//! let s = Duration::from_secs;
//! let t0 = Instant::now();
//! let mut b = Backoff::new(
//!     RetryPolicy::exponential(UNLIMITED, s(1), s(30)),
//!     BackoffConfig { jitter: Jitter::None, ..BackoffConfig::default() },
//! )
//! .classify(|e: &Error| match e { Error::Unauthorized => Failure::Fatal, _ => Failure::Retryable });
//! let a1 = b.start(t0);
//! // The very first connect fails: retried.
//! assert_eq!(b.on_failure(t0, &Error::Refused, 0), Decision::Retry { retry: 1, delay: s(1), at: Some(t0 + s(1)) });
//! assert_eq!(b.next_deadline(), Some(t0 + s(1)));
//! assert_eq!(b.on_timeout(t0 + s(1)), Some(BackoffAction::Connect(a1.next())));
//! // A fatal failure is not.
//! assert_eq!(b.on_failure(t0 + s(2), &Error::Unauthorized, 0), Decision::GiveUp { failures: 2, fatal: true });
//! assert_eq!(b.next_deadline(), None);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Attempt, after};
use crate::retry::{DEFAULT_HEALTHY_AFTER, Reconnector, RetryDecision, RetryPolicy};

/// How a failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again per the policy (connect errors, timeouts, 5xx, drops).
    Retryable,
    /// Do not try again: report it (401/403/404 on the upgrade, TLS verification, bad URL).
    Fatal,
}

/// Randomisation of each delay, from a uniformly random `u64` the caller passes in.
///
/// The choice: [`Jitter::Proportional`] (the default, 20 %) only ever **shortens** a delay, by
/// up to the given share, so the policy's cap still holds and consecutive exponential delays
/// still grow (`2 × 0.8 > 1`): a server that refuses every upgrade sees the delays grow, as the
/// issue asks. [`Jitter::Full`] (uniform in `[0, delay]`, "full jitter") spreads a crowd of
/// clients best but may retry at once. [`Jitter::None`] keeps the policy's delays.
///
/// ```
/// use std::time::Duration;
/// use moorline_proto::client::backoff::Jitter;
/// let d = Duration::from_secs(10);
/// assert_eq!(Jitter::None.apply(d, 12345), d);
/// assert_eq!(Jitter::Full.apply(d, 0), Duration::ZERO);
/// assert_eq!(Jitter::Full.apply(d, u64::MAX / 2 + 1), Duration::from_secs(5));
/// assert_eq!(Jitter::Proportional { percent: 20 }.apply(d, 0), d);
/// assert_eq!(Jitter::Proportional { percent: 20 }.apply(d, u64::MAX / 2 + 1), Duration::from_secs(9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The policy's delay as it is.
    None,
    /// Uniform in `[0, delay]`.
    Full,
    /// Uniform in `[delay × (1 - percent/100), delay]` (`percent` above 100 counts as 100).
    Proportional {
        /// The largest share taken off, in percent.
        percent: u8,
    },
}

impl Default for Jitter {
    fn default() -> Self {
        Self::Proportional { percent: 20 }
    }
}

/// `d × random / 2^64`, exact for any `Duration` (no float, no overflow).
fn scale(d: Duration, random: u64) -> Duration {
    let nanos = d.as_nanos();
    let r = u128::from(random);
    let high = (nanos >> 64) * r;
    let low = ((nanos & u128::from(u64::MAX)) * r) >> 64;
    let total = high.saturating_add(low);
    let secs = u64::try_from(total / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (total % 1_000_000_000) as u32)
}

impl Jitter {
    /// The jittered delay, given a uniformly random `u64`.
    pub fn apply(self, delay: Duration, random: u64) -> Duration {
        match self {
            Self::None => delay,
            Self::Full => scale(delay, random),
            Self::Proportional { percent } => {
                let share = scale(delay, random).as_nanos() * u128::from(percent.min(100)) / 100;
                delay.saturating_sub(Duration::from_nanos(u64::try_from(share).unwrap_or(u64::MAX)))
            }
        }
    }
}

/// Settings besides the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// How long a connection must stay up before earlier failures are forgiven (default 10 s).
    pub healthy_after: Duration,
    /// Randomisation of each delay (default [`Jitter::Proportional`] 20 %).
    pub jitter: Jitter,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self { healthy_after: DEFAULT_HEALTHY_AFTER, jitter: Jitter::default() }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait `delay` (already jittered), then connect: [`Backoff::on_timeout`] says when.
    Retry {
        /// The retry number: consecutive failures not yet forgiven, 1 for the first (the
        /// `reconnecting` event's `attempt`).
        retry: u32,
        /// The delay before the next attempt.
        delay: Duration,
        /// When the next attempt is due (`None`: beyond what an `Instant` holds, never).
        at: Option<Instant>,
    },
    /// Stop: the machine accepts no more attempts except an explicit [`Backoff::start`].
    GiveUp {
        /// Consecutive failures, this one included.
        failures: u32,
        /// Whether the classification called it fatal (else the policy ran out).
        fatal: bool,
    },
}

/// What [`Backoff::on_timeout`] asks of the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffAction {
    /// The wait is over: dial the next connection, which is this attempt.
    Connect(Attempt),
    /// The current connection stayed up `healthy_after`: earlier failures were forgiven.
    Healthy,
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing started yet.
    Idle,
    /// An attempt is dialling.
    Connecting(Attempt),
    /// The attempt's connection is up.
    Up(Attempt),
    /// Waiting until the instant (`None`: forever) to start the next attempt.
    Waiting(Option<Instant>),
    /// Gave up (or [`Backoff::stop`]ped).
    Stopped,
}

type Classify<E> = Arc<dyn Fn(&E) -> Failure + Send + Sync>;

/// The reconnect state machine (see the [module doc](self)).
pub struct Backoff<E: ?Sized = dyn std::error::Error + 'static> {
    reconnector: Reconnector<E>,
    jitter: Jitter,
    classify: Option<Classify<E>>,
    phase: Phase,
    last: Attempt,
}

impl<E: ?Sized> fmt::Debug for Backoff<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("reconnector", &self.reconnector)
            .field("jitter", &self.jitter)
            .field("phase", &self.phase)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl<E: ?Sized> Backoff<E> {
    /// A machine that has not started; every failure is retryable until
    /// [`classify`](Self::classify) says otherwise.
    pub fn new(policy: RetryPolicy<E>, config: BackoffConfig) -> Self {
        Self {
            reconnector: Reconnector::new(policy).healthy_after(config.healthy_after),
            jitter: config.jitter,
            classify: None,
            phase: Phase::Idle,
            last: Attempt::default(),
        }
    }

    /// The caller's classification of failures into retryable and fatal.
    pub fn classify<F>(mut self, f: F) -> Self
    where
        F: Fn(&E) -> Failure + Send + Sync + 'static,
    {
        self.classify = Some(Arc::new(f));
        self
    }

    /// Start a new attempt now (the first connect, or the user's explicit reconnect, also
    /// after a give-up): returns its identity. The failure count is kept.
    pub fn start(&mut self, _now: Instant) -> Attempt {
        self.last = self.last.next();
        self.phase = Phase::Connecting(self.last);
        self.last
    }

    /// The current attempt's connection is up at `now` (its failures are forgiven only
    /// once it proves healthy).
    pub fn on_up(&mut self, now: Instant) {
        if let Phase::Connecting(a) = self.phase {
            self.phase = Phase::Up(a);
            self.reconnector.on_up(now);
        }
    }

    /// The caller vouches for the connection (say its subscriptions are restored): forgive
    /// earlier failures now. Returns whether there were any.
    pub fn on_healthy(&mut self) -> bool {
        self.reconnector.on_healthy()
    }

    /// The current attempt failed at `now` (a failed dial or a lost connection). `random` is
    /// a uniformly random `u64` for the jitter.
    pub fn on_failure(&mut self, now: Instant, error: &E, random: u64) -> Decision {
        let fatal = self.classify.as_ref().is_some_and(|f| f(error) == Failure::Fatal);
        if fatal {
            // Counted, for the report, but the policy is not asked.
            self.reconnector.on_time(now);
            let failures = self.reconnector.failures().saturating_add(1);
            self.phase = Phase::Stopped;
            return Decision::GiveUp { failures, fatal: true };
        }
        match self.reconnector.on_failure(now, error) {
            RetryDecision::RetryAfter(d) => {
                let delay = self.jitter.apply(d, random);
                let at = after(now, delay);
                self.phase = Phase::Waiting(at);
                Decision::Retry { retry: self.reconnector.failures(), delay, at }
            }
            RetryDecision::GiveUp => {
                self.phase = Phase::Stopped;
                Decision::GiveUp { failures: self.reconnector.failures(), fatal: false }
            }
        }
    }

    /// The user closed the client: no more attempts.
    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
    }

    /// When [`on_timeout`](Self::on_timeout) has something to do: the end of the wait, or
    /// when the connection up now will have proved healthy.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting(at) => at,
            Phase::Up(_) => self.reconnector.healthy_at(),
            _ => None,
        }
    }

    /// Time has passed: start the next attempt if the wait is over, or forgive failures if
    /// the connection proved healthy.
    pub fn on_timeout(&mut self, now: Instant) -> Option<BackoffAction> {
        match self.phase {
            Phase::Waiting(Some(at)) if at <= now => Some(BackoffAction::Connect(self.start(now))),
            Phase::Up(_) if self.reconnector.on_time(now) => Some(BackoffAction::Healthy),
            _ => None,
        }
    }

    /// Where the machine is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The latest attempt handed out (`Attempt::default()` before the first).
    pub fn attempt(&self) -> Attempt {
        self.last
    }

    /// Consecutive failures not yet forgiven.
    pub fn failures(&self) -> u32 {
        self.reconnector.failures()
    }
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
