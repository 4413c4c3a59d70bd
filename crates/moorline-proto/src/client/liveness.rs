//! [`Liveness`]: is the current connection alive? Three independent timers, one connection
//! attempt at a time.
//!
//! - **Dead peer**: no frame at all (data, control, heartbeat) within
//!   [`LivenessConfig::dead_after`] → [`LivenessAction::Reconnect`] with [`Dead::NoFrame`].
//! - **Idle feed**: no data message within [`LivenessConfig::idle_after`] →
//!   [`LivenessAction::Idle`] once per silence (armed again by the next data message), or
//!   [`LivenessAction::Reconnect`] with [`Dead::IdleFeed`] when
//!   [`LivenessConfig::idle_reconnect`] is set. Control frames and heartbeats are not feed data.
//! - **Venue heartbeat**: once the venue promised a heartbeat every `interval`
//!   ([`Liveness::expect_heartbeat`], e.g. after Deribit's `public/set_heartbeat`), a heartbeat
//!   missing for `interval + heartbeat_timeout` since the last one (or since the promise) means
//!   the connection is half-open → [`LivenessAction::Reconnect`] with [`Dead::HeartbeatMissed`].
//!   Only [`Liveness::on_heartbeat`] feeds this timer: other traffic does not prove that the
//!   venue's side still runs its heartbeat. So a half-open connection is detected at most
//!   `interval + heartbeat_timeout` after the last heartbeat it delivered, every time.
//!
//! **Attempts.** [`Liveness::on_open`] starts the timers of an [`Attempt`]; every input names
//! its attempt and is ignored unless it is the current one, and every action names the attempt
//! it is about. [`Liveness::on_close`] stops all timers, so nothing fires between attempts.
//! After a [`LivenessAction::Reconnect`] the machine is spent until the next `on_open`.
//!
//! Deadlines saturate: a `Duration::MAX` setting switches that timer off.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use moorline_proto::client::Attempt;
//! use moorline_proto::client::liveness::{Dead, Liveness, LivenessAction, LivenessConfig};
//!
//! let s = Duration::from_secs;
//! let t0 = Instant::now();
//! let mut live = Liveness::new(LivenessConfig { dead_after: s(30), heartbeat_timeout: s(5), ..LivenessConfig::default() });
//! let a1 = Attempt::default().next();
//! live.on_open(a1, t0);
//! live.expect_heartbeat(a1, s(10), t0);
//! live.on_heartbeat(a1, t0 + s(9));
//! // The venue goes silent after that heartbeat: half-open at 9 + 10 + 5 s.
//! assert_eq!(live.next_deadline(), Some(t0 + s(24)));
//! assert_eq!(live.on_timeout(t0 + s(23)), None);
//! assert_eq!(
//!     live.on_timeout(t0 + s(24)),
//!     Some(LivenessAction::Reconnect { attempt: a1, reason: Dead::HeartbeatMissed { interval: s(10), last: t0 + s(9) } })
//! );
//! // A frame of that attempt arriving now changes nothing for the next one.
//! live.on_close();
//! let a2 = a1.next();
//! live.on_open(a2, t0 + s(25));
//! assert!(!live.on_frame(a1, t0 + s(26)), "stale input ignored");
//! assert_eq!(live.next_deadline(), Some(t0 + s(55)));
//! ```

use std::time::{Duration, Instant};

use super::{Attempt, after};

/// The timers' settings. `Duration::MAX` switches a timer off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// No frame at all for this long: the peer is dead (default 30 s).
    pub dead_after: Duration,
    /// No data message for this long: the feed is idle (default: off).
    pub idle_after: Duration,
    /// Whether an idle feed also means reconnect (default `false`: an event only).
    pub idle_reconnect: bool,
    /// How late the venue's heartbeat may be beyond its interval (default 5 s).
    pub heartbeat_timeout: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            dead_after: Duration::from_secs(30),
            idle_after: Duration::MAX,
            idle_reconnect: false,
            heartbeat_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the connection is considered dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    /// No frame at all since `last` (the open, or the last frame), for `dead_after`.
    NoFrame {
        /// When the last frame arrived (or the connection opened).
        last: Instant,
    },
    /// No data message since `last`, for `idle_after`, and `idle_reconnect` is set.
    IdleFeed {
        /// When the last data message arrived (or the connection opened).
        last: Instant,
    },
    /// The venue's heartbeat, promised every `interval`, is more than its timeout late.
    HeartbeatMissed {
        /// The promised interval.
        interval: Duration,
        /// The last heartbeat (or when the promise was made).
        last: Instant,
    },
}

/// What the shell must do, for the attempt named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessAction {
    /// Drop this attempt's connection and reconnect.
    Reconnect {
        /// The attempt this is about (check it is still the current one).
        attempt: Attempt,
        /// Why.
        reason: Dead,
    },
    /// The feed has been idle since `last` (no reconnect asked): tell the user. Reported
    /// once per silence.
    Idle {
        /// The attempt this is about.
        attempt: Attempt,
        /// When the last data message arrived (or the connection opened).
        last: Instant,
    },
}

/// One attempt's timers.
#[derive(Debug, Clone, Copy)]
struct Timers {
    attempt: Attempt,
    last_frame: Instant,
    last_data: Instant,
    idle_reported: bool,
    /// The promised interval and the last heartbeat (or the promise).
    heartbeat: Option<(Duration, Instant)>,
    spent: bool,
}

/// The liveness state machine (see the [module doc](self)).
#[derive(Debug, Clone)]
pub struct Liveness {
    config: LivenessConfig,
    current: Option<Timers>,
}

impl Liveness {
    /// No attempt yet: no deadline.
    pub fn new(config: LivenessConfig) -> Self {
        Self { config, current: None }
    }

    /// The settings.
    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }

    /// The attempt whose timers run, if any (and not yet spent by a reconnect).
    pub fn attempt(&self) -> Option<Attempt> {
        self.current.filter(|t| !t.spent).map(|t| t.attempt)
    }

    /// The connection of `attempt` is open at `now`: its timers start (any earlier attempt's
    /// are forgotten). The venue heartbeat is not expected until
    /// [`expect_heartbeat`](Self::expect_heartbeat).
    pub fn on_open(&mut self, attempt: Attempt, now: Instant) {
        self.current = Some(Timers {
            attempt,
            last_frame: now,
            last_data: now,
            idle_reported: false,
            heartbeat: None,
            spent: false,
        });
    }

    /// The connection is gone (whoever noticed): no timer runs until the next `on_open`.
    pub fn on_close(&mut self) {
        self.current = None;
    }

    fn live(&mut self, attempt: Attempt) -> Option<&mut Timers> {
        self.current.as_mut().filter(|t| t.attempt == attempt && !t.spent)
    }

    /// Any frame of `attempt` arrived at `now` (control frames included). Returns `false`
    /// when ignored: not the current attempt, or it is already spent.
    pub fn on_frame(&mut self, attempt: Attempt, now: Instant) -> bool {
        let Some(t) = self.live(attempt) else { return false };
        t.last_frame = t.last_frame.max(now);
        true
    }

    /// A data message of `attempt` arrived at `now` (it is a frame too: no need to call
    /// [`on_frame`](Self::on_frame) as well). Returns `false` when ignored.
    pub fn on_data(&mut self, attempt: Attempt, now: Instant) -> bool {
        let Some(t) = self.live(attempt) else { return false };
        t.last_frame = t.last_frame.max(now);
        t.last_data = t.last_data.max(now);
        t.idle_reported = false;
        true
    }

    /// The venue's heartbeat of `attempt` arrived at `now` (a frame, not feed data).
    /// Returns `false` when ignored.
    pub fn on_heartbeat(&mut self, attempt: Attempt, now: Instant) -> bool {
        let Some(t) = self.live(attempt) else { return false };
        t.last_frame = t.last_frame.max(now);
        if let Some((_, last)) = &mut t.heartbeat {
            *last = (*last).max(now);
        }
        true
    }

    /// The venue promised, at `now`, a heartbeat every `interval` on `attempt` (Deribit:
    /// `public/set_heartbeat` was answered). The first one is due by
    /// `now + interval + heartbeat_timeout`. Calling it again changes the interval and
    /// restarts the wait from `now`. Returns `false` when ignored.
    pub fn expect_heartbeat(&mut self, attempt: Attempt, interval: Duration, now: Instant) -> bool {
        let Some(t) = self.live(attempt) else { return false };
        t.heartbeat = Some((interval, now));
        true
    }

    /// The venue no longer beats (heartbeats switched off). Returns `false` when ignored.
    pub fn stop_heartbeat(&mut self, attempt: Attempt) -> bool {
        let Some(t) = self.live(attempt) else { return false };
        t.heartbeat = None;
        true
    }

    fn dead_at(&self, t: &Timers) -> Option<Instant> {
        after(t.last_frame, self.config.dead_after)
    }

    fn idle_at(&self, t: &Timers) -> Option<Instant> {
        if t.idle_reported {
            return None;
        }
        after(t.last_data, self.config.idle_after)
    }

    fn heartbeat_at(&self, t: &Timers) -> Option<Instant> {
        let (interval, last) = t.heartbeat?;
        after(last, interval.saturating_add(self.config.heartbeat_timeout))
    }

    /// When [`on_timeout`](Self::on_timeout) has something to do: the earliest timer of the
    /// current attempt (`None`: no attempt, spent, or every timer off).
    pub fn next_deadline(&self) -> Option<Instant> {
        let t = self.current.as_ref().filter(|t| !t.spent)?;
        super::earliest([self.dead_at(t), self.idle_at(t), self.heartbeat_at(t)])
    }

    /// Time has passed: the action due at `now` for the current attempt, if any. A
    /// `Reconnect` spends the attempt (no further action until the next `on_open`); an
    /// `Idle` is reported once per silence. Call again until `None` when several timers
    /// are due at once (a reconnect comes first).
    pub fn on_timeout(&mut self, now: Instant) -> Option<LivenessAction> {
        let t = *self.current.as_ref().filter(|t| !t.spent)?;
        let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
        let reason = if due(self.heartbeat_at(&t)) {
            t.heartbeat.map(|(interval, last)| Dead::HeartbeatMissed { interval, last })
        } else if due(self.dead_at(&t)) {
            Some(Dead::NoFrame { last: t.last_frame })
        } else if due(self.idle_at(&t)) && self.config.idle_reconnect {
            Some(Dead::IdleFeed { last: t.last_data })
        } else {
            None
        };
        let idle = due(self.idle_at(&t));
        let cur = self.current.as_mut()?;
        if let Some(reason) = reason {
            cur.spent = true;
            return Some(LivenessAction::Reconnect { attempt: t.attempt, reason });
        }
        if idle {
            cur.idle_reported = true;
            return Some(LivenessAction::Idle { attempt: t.attempt, last: t.last_data });
        }
        None
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
