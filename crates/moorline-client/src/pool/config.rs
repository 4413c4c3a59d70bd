//! [`PoolConfig`]: the pool's options and their defaults (the README's pool options table).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::dedup::MAX_MEMBERS;
use super::error::PoolError;
use super::sequence::SequenceExtractor;
use crate::config::{MAX_INCOMING_BUFFER_BYTES, MAX_TIMEOUT, MIN_INCOMING_BUFFER_BYTES, Overflow};

/// Default [`PoolConfig::channels_per_connection`].
pub const DEFAULT_CHANNELS_PER_CONNECTION: usize = 500;
/// Default [`PoolConfig::event_buffer_bytes`].
pub const DEFAULT_EVENT_BUFFER_BYTES: usize = 8 << 20;
/// Default [`PoolConfig::overflow`].
pub const DEFAULT_OVERFLOW: Overflow = Overflow::Backpressure;
/// Default [`PoolConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`PoolConfig::attempt_timeout`].
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`PoolConfig::error_window`].
pub const DEFAULT_ERROR_WINDOW: Duration = Duration::from_secs(30);
/// Default [`PoolConfig::latency_tolerance`].
pub const DEFAULT_LATENCY_TOLERANCE: Duration = Duration::from_millis(2);
/// Default [`PoolConfig::dedup_ranges`].
pub const DEFAULT_DEDUP_RANGES: usize = 16;
/// Default [`PoolConfig::unkeyed_window`].
pub const DEFAULT_UNKEYED_WINDOW: usize = 1024;
/// Largest [`PoolConfig::channels_per_connection`].
pub const MAX_CHANNELS_PER_CONNECTION: usize = 100_000;
/// Largest [`PoolConfig::dedup_ranges`].
pub const MAX_DEDUP_RANGES: usize = 4096;
/// Largest [`PoolConfig::unkeyed_window`].
pub const MAX_UNKEYED_WINDOW: usize = 1 << 16;

/// How the pool uses its members.
#[derive(Clone)]
pub enum Mode {
    /// Each channel on one member (sharded under the per-connection limit); each request on
    /// the healthiest member.
    Sharded,
    /// Every channel on every member, each data message delivered once, deduplicated by
    /// `(channel, key)` with the key from this extractor; requests as in `Sharded`.
    Redundant(Arc<dyn SequenceExtractor>),
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Sharded => "Sharded",
            Mode::Redundant(_) => "Redundant",
        })
    }
}

/// Every option of a pool; see the README's pool options table. Start from
/// [`PoolConfig::sharded`] or [`PoolConfig::redundant`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use moorline_client::config::Overflow;
/// use moorline_client::pool::{DeribitSequence, PoolConfig};
///
/// let config = PoolConfig::redundant(DeribitSequence)
///     .channels_per_connection(200)
///     .event_buffer(4 << 20, Overflow::DropOldest)
///     .request_timeout(Duration::from_secs(5), Duration::from_secs(2));
/// config.validate().expect("valid");
/// assert!(PoolConfig::sharded().channels_per_connection(0).validate().is_err());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Sharded or redundant.
    pub mode: Mode,
    /// Channels one member may hold: the pool holds `members ×` this in sharded mode, this in
    /// redundant mode.
    pub channels_per_connection: usize,
    /// The merged event queue's ceiling in bytes (counted as the client counts its own).
    pub event_buffer_bytes: usize,
    /// What a full merged queue does.
    pub overflow: Overflow,
    /// Deadline of a whole pool request, every member tried included.
    pub request_timeout: Duration,
    /// Deadline of one member's attempt (then the next member, for a request that may fail over).
    pub attempt_timeout: Duration,
    /// How long a member's error counts against its health.
    pub error_window: Duration,
    /// Request p99 latencies closer than this rank the same.
    pub latency_tolerance: Duration,
    /// Redundant mode: ranges of keys of ended sessions kept per channel, besides each
    /// member's own (see [`Dedup`](super::Dedup)).
    pub dedup_ranges: usize,
    /// Redundant mode: unkeyed messages remembered (by hash).
    pub unkeyed_window: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Sharded,
            channels_per_connection: DEFAULT_CHANNELS_PER_CONNECTION,
            event_buffer_bytes: DEFAULT_EVENT_BUFFER_BYTES,
            overflow: DEFAULT_OVERFLOW,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            error_window: DEFAULT_ERROR_WINDOW,
            latency_tolerance: DEFAULT_LATENCY_TOLERANCE,
            dedup_ranges: DEFAULT_DEDUP_RANGES,
            unkeyed_window: DEFAULT_UNKEYED_WINDOW,
        }
    }
}

impl PoolConfig {
    /// Sharded mode with the defaults.
    pub fn sharded() -> Self {
        Self::default()
    }

    /// Redundant mode, deduplicating by the keys `extractor` reads, with the defaults.
    pub fn redundant(extractor: impl SequenceExtractor) -> Self {
        Self { mode: Mode::Redundant(Arc::new(extractor)), ..Self::default() }
    }

    /// Sets [`channels_per_connection`](Self::channels_per_connection).
    pub fn channels_per_connection(mut self, n: usize) -> Self {
        self.channels_per_connection = n;
        self
    }

    /// Sets [`event_buffer_bytes`](Self::event_buffer_bytes) and [`overflow`](Self::overflow).
    pub fn event_buffer(mut self, bytes: usize, overflow: Overflow) -> Self {
        self.event_buffer_bytes = bytes;
        self.overflow = overflow;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout) and [`attempt_timeout`](Self::attempt_timeout).
    pub fn request_timeout(mut self, request: Duration, attempt: Duration) -> Self {
        self.request_timeout = request;
        self.attempt_timeout = attempt;
        self
    }

    /// Sets [`error_window`](Self::error_window) and [`latency_tolerance`](Self::latency_tolerance).
    pub fn health(mut self, error_window: Duration, latency_tolerance: Duration) -> Self {
        self.error_window = error_window;
        self.latency_tolerance = latency_tolerance;
        self
    }

    /// Sets [`dedup_ranges`](Self::dedup_ranges) and [`unkeyed_window`](Self::unkeyed_window).
    pub fn dedup(mut self, ranges: usize, unkeyed_window: usize) -> Self {
        self.dedup_ranges = ranges;
        self.unkeyed_window = unkeyed_window;
        self
    }

    /// Checks every option; the error names the option, its value and the rule.
    pub fn validate(&self) -> Result<(), PoolError> {
        let bad =
            |option: &'static str, value: String, rule: &'static str| Err(PoolError::Config { option, value, rule });
        if !(1..=MAX_CHANNELS_PER_CONNECTION).contains(&self.channels_per_connection) {
            return bad("channels_per_connection", self.channels_per_connection.to_string(), "1..=100 000");
        }
        if !(MIN_INCOMING_BUFFER_BYTES..=MAX_INCOMING_BUFFER_BYTES).contains(&self.event_buffer_bytes) {
            return bad("event_buffer_bytes", self.event_buffer_bytes.to_string(), "4 KiB..=1 GiB");
        }
        for (option, value) in [
            ("request_timeout", self.request_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("error_window", self.error_window),
        ] {
            if value.is_zero() || value > MAX_TIMEOUT {
                return bad(option, format!("{value:?}"), "> 0, <= 24 h");
            }
        }
        if self.latency_tolerance > MAX_TIMEOUT {
            return bad("latency_tolerance", format!("{:?}", self.latency_tolerance), "<= 24 h");
        }
        if !(1..=MAX_DEDUP_RANGES).contains(&self.dedup_ranges) {
            return bad("dedup_ranges", self.dedup_ranges.to_string(), "1..=4 096");
        }
        if !(1..=MAX_UNKEYED_WINDOW).contains(&self.unkeyed_window) {
            return bad("unkeyed_window", self.unkeyed_window.to_string(), "1..=65 536");
        }
        Ok(())
    }

    /// Checks `members` against the mode: 1 to 64 members (redundant mode: 2 to 64; one is no
    /// redundancy).
    pub(crate) fn check_members(&self, members: usize) -> Result<(), PoolError> {
        let min = if matches!(self.mode, Mode::Redundant(_)) { 2 } else { 1 };
        if !(min..=MAX_MEMBERS).contains(&members) {
            return Err(PoolError::Config {
                option: "members",
                value: members.to_string(),
                rule: if min == 2 { "2..=64 in redundant mode" } else { "1..=64" },
            });
        }
        Ok(())
    }
}
