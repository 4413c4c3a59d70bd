//! The trading client's time-driven logic, sans-IO: one state machine per concern, time
//! and events in, actions, events and the next deadline out.
//!
//! | machine | job |
//! |---|---|
//! | [`liveness::Liveness`] | dead peer, idle feed and the venue's heartbeat, per connection attempt |
//! | [`backoff::Backoff`] | when to connect again (jitter, fatal failures, the healthy reset); hands out [`Attempt`]s |
//! | [`subscriptions::Subscriptions`] | the desired channels, what the venue confirmed, batched restore plans |
//! | [`pending::Pending`] | requests waiting for their response: ids, deadlines, failure on disconnect |
//! | [`ratelimit::RateLimiter`] | credit pools (token buckets) with a cost per request; Deribit's preset |
//! | [`stats::Histogram`], [`stats::ClientStats`] | round-trip quantiles in bounded memory, counters |
//!
//! **Rules shared by every machine.** No IO, no runtime, no clock, no randomness: each input
//! takes `now: Instant` where time matters, and a random value where jitter is wanted. Every
//! machine with timers has `next_deadline() -> Option<Instant>` (`None`: nothing to wait for)
//! and saturates: a `Duration::MAX` setting means "never" and never panics. Every buffer has a
//! ceiling, and a call past it is refused with a typed error.
//!
//! **Attempts.** Each connection attempt has an [`Attempt`] (a generation number handed out
//! by [`backoff::Backoff`]). The machines that live per connection ([`liveness::Liveness`],
//! [`subscriptions::Subscriptions`]) take it in their inputs and put it in their outputs; an
//! input naming an older attempt is ignored, so a timer, frame or reply of an old connection
//! can never act on a later one. Request ids ([`pending::Pending`]) are monotonic across
//! attempts for the same reason.
//!
//! **How a shell drives them.** One task per client owns the socket and every machine, and
//! runs one loop: `select!` on the socket, the user's commands, and
//! `sleep_until(earliest(next_deadline() of each machine))`; after any of the three it feeds
//! the machines (`on_frame`, `on_timeout`, `expire`, ...) and carries out what they return.
//! Recompute the deadline on every turn of the loop: a sleep computed earlier may belong to an
//! older attempt, and feeding the machines a time at which nothing is due does nothing.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use moorline_proto::client::{earliest, Attempt};
//! use moorline_proto::client::backoff::{Backoff, BackoffAction, BackoffConfig, Decision};
//! use moorline_proto::client::liveness::{Liveness, LivenessAction, LivenessConfig};
//! use moorline_proto::client::pending::{Pending, PendingLimits, RequestOptions};
//! use moorline_proto::client::subscriptions::{Reply, SubEvent, Subscriptions, SubscriptionsConfig};
//! use moorline_proto::retry::RetryPolicy;
//!
//! let t0 = Instant::now();
//! let s = Duration::from_secs;
//! let mut backoff: Backoff<std::io::Error> =
//!     Backoff::new(RetryPolicy::exponential(u32::MAX, s(1), s(30)), BackoffConfig::default());
//! let mut live = Liveness::new(LivenessConfig { dead_after: s(10), ..LivenessConfig::default() });
//! let mut subs: Subscriptions<String, &'static str> = Subscriptions::new(SubscriptionsConfig::default());
//! let mut pending: Pending<&'static str> = Pending::new(PendingLimits::default());
//!
//! // The user subscribes before anything is connected: it joins the first restore.
//! subs.subscribe("trades.BTC-PERPETUAL.raw".to_string(), Some("waiter-1")).unwrap();
//!
//! // Connect: the shell dials; the socket comes up.
//! let attempt: Attempt = backoff.start(t0);
//! backoff.on_up(t0);
//! live.on_open(attempt, t0);
//! subs.on_connected(attempt);
//! // (Deribit: set_heartbeat and auth go first, through `pending`; then the restore.)
//! let batch = subs.next_request().unwrap();
//! let id = pending.insert(t0, RequestOptions::new(s(5), 120), "subscribe").unwrap();
//! // ... the shell encodes `batch.channels` as request `id` and sends it ...
//!
//! // The loop's sleep: the earliest of every machine's deadline.
//! let wake = earliest([live.next_deadline(), backoff.next_deadline(), pending.next_deadline()]);
//! assert_eq!(wake, Some(t0 + s(5)), "the request's deadline comes first");
//!
//! // The reply arrives at t0 + 1 s: the request completes, the venue confirmed the channel.
//! let t1 = t0 + s(1);
//! live.on_data(attempt, t1);
//! assert_eq!(pending.complete(id), Some("subscribe"));
//! subs.on_reply(attempt, batch.id, Reply::Confirmed(vec!["trades.BTC-PERPETUAL.raw".to_string()]));
//! assert!(matches!(subs.poll_event(), Some(SubEvent::Resolved { waiter: "waiter-1", .. })));
//! assert!(matches!(subs.poll_event(), Some(SubEvent::Restored { .. })));
//!
//! // Silence: the dead-peer timer fires for this attempt, the shell drops the socket.
//! let t2 = live.next_deadline().unwrap();
//! assert_eq!(t2, t1 + s(10));
//! let Some(LivenessAction::Reconnect { attempt: dead, .. }) = live.on_timeout(t2) else { panic!() };
//! assert_eq!(dead, attempt);
//! live.on_close();
//! subs.on_disconnect();
//! let failed = pending.on_disconnect();
//! assert!(failed.failed.is_empty());
//! let Decision::Retry { delay, .. } = backoff.on_failure(t2, &std::io::Error::other("dead peer"), 0) else { panic!() };
//! // After the delay the backoff hands out the next attempt.
//! assert_eq!(backoff.on_timeout(t2 + delay), Some(BackoffAction::Connect(attempt.next())));
//! ```

use std::time::{Duration, Instant};

pub mod backoff;
pub mod liveness;
pub mod pending;
pub mod ratelimit;
pub mod stats;
pub mod subscriptions;

/// The identity of one connection attempt: a generation number, larger for every new attempt.
///
/// Inputs and outputs of the per-connection machines carry it, so that anything left over
/// from an older attempt (a timer, a frame read before the close, a reply) is recognised and
/// ignored instead of acting on the current connection.
///
/// ```
/// use moorline_proto::client::Attempt;
/// let first = Attempt::default().next();
/// assert!(first.next() > first);
/// assert_eq!(first.get(), 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(u64);

impl Attempt {
    /// The attempt after this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The generation number (0 is "none yet", the first attempt is 1).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {}", self.0)
    }
}

/// The earliest of several deadlines (`None` ones ignored; `None` if all are).
///
/// ```
/// use std::time::{Duration, Instant};
/// use moorline_proto::client::earliest;
/// let t = Instant::now();
/// assert_eq!(earliest([None, Some(t + Duration::from_secs(2)), Some(t)]), Some(t));
/// assert_eq!(earliest([None, None]), None);
/// ```
pub fn earliest<I: IntoIterator<Item = Option<Instant>>>(deadlines: I) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

/// `at + d`, or `None` ("never") when that is beyond what an `Instant` holds: how every
/// machine here turns a configured duration into a deadline without panicking.
pub(crate) fn after(at: Instant, d: Duration) -> Option<Instant> {
    at.checked_add(d)
}
