//! [`ClientConfig`] and its builder: every option of the trading client, with its default (a
//! `DEFAULT_*` constant, also in the README's options table) and the rule it must follow. A
//! rejected option is a [`ConfigError`] naming the option, the value and the limit.
//!
//! ```
//! use std::time::Duration;
//! use moorline_client::config::{ClientConfig, ConfigError, Overflow};
//!
//! let config = ClientConfig::builder()
//!     .header("user-agent", "my-bot/1.0")
//!     .request_timeout(Duration::from_secs(5))
//!     .incoming_buffer(1 << 20, Overflow::DropOldest)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.request_timeout, Duration::from_secs(5));
//!
//! let e = ClientConfig::builder().request_timeout(Duration::ZERO).build().unwrap_err();
//! assert!(matches!(e, ConfigError::NotPositive { option: "request_timeout" }));
//! assert_eq!(e.to_string(), "request_timeout must be positive (got 0s)");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moorline::TlsOptions;
use moorline::http::{HeaderMap, HeaderName, HeaderValue};

use crate::record::Recorder;

/// Default TCP connect timeout, per address.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default TLS handshake timeout.
pub const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Default WebSocket handshake timeout: from the connection being up to the upgrade's answer.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first retry delay.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
/// Default longest retry delay.
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(30);
/// Default jitter: each delay is drawn from 80 % to 100 % of the computed one.
pub const DEFAULT_JITTER: Jitter = Jitter::Proportional(0.2);
/// Default time a connection must stay up (and restored) before the failure count resets.
pub const DEFAULT_HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Default WebSocket ping after this much silence, so a quiet but live venue answers.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
/// Default dead-peer limit: no frame at all for this long means the connection is dead.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(30);
/// Default venue heartbeat interval asked for by dialects that have one (Deribit's `set_heartbeat`).
pub const DEFAULT_VENUE_HEARTBEAT: Duration = Duration::from_secs(30);
/// Default time past a missed venue heartbeat before the connection counts as half-open.
pub const DEFAULT_HEARTBEAT_GRACE: Duration = Duration::from_secs(5);
/// Default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest incoming message (smaller than moorline's 64 MiB: it bounds the memory a
/// venue can make a client hold).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// Default byte ceiling of the user's incoming queue.
pub const DEFAULT_INCOMING_BUFFER_BYTES: usize = 8 << 20;
/// Default overflow policy of the incoming queue.
pub const DEFAULT_OVERFLOW: Overflow = Overflow::Backpressure;
/// Longest timeout any option accepts: nothing waits longer than a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Smallest incoming buffer accepted.
pub const MIN_INCOMING_BUFFER_BYTES: usize = 4 << 10;
/// Largest incoming buffer accepted.
pub const MAX_INCOMING_BUFFER_BYTES: usize = 1 << 30;
/// Largest message size accepted (moorline's own ceiling is the memory you give it).
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 1 << 30;
/// Largest byte bound of the queue of sends made while disconnected.
pub const MAX_OFFLINE_QUEUE_BYTES: usize = 64 << 20;

/// How many reconnection attempts the client makes before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    /// At most this many consecutive failures are retried (0: never retry; the first
    /// connect's failure counts too).
    Limited(u32),
    /// Retry for ever (fatal failures still stop the client).
    Unlimited,
}

/// Randomisation of each retry delay, so that many clients do not reconnect in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// The computed delay exactly.
    None,
    /// "Full jitter": uniformly between zero and the computed delay.
    Full,
    /// Uniformly between `(1 - f) × delay` and `delay`, `f` in `(0, 1]`.
    Proportional(f64),
}

/// The reconnection policy: capped exponential backoff with jitter.
///
/// The n-th consecutive failure waits `min(cap, base × 2^(n-1))`, jittered. Failures are
/// counted until a connection has been up (and its session restored) for `healthy_after`:
/// a venue that accepts and drops at once gets growing delays, not a tight loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// How many consecutive failures are retried.
    pub attempts: Attempts,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// Randomisation of each delay.
    pub jitter: Jitter,
    /// How long a connection must stay healthy before the failure count resets.
    pub healthy_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: Attempts::Unlimited,
            base: DEFAULT_RETRY_BASE,
            cap: DEFAULT_RETRY_CAP,
            jitter: DEFAULT_JITTER,
            healthy_after: DEFAULT_HEALTHY_AFTER,
        }
    }
}

/// Liveness: how the client tells a live connection from a dead or silent one.
///
/// Three checks, each per connection attempt: the dead-peer timer (no frame at all for
/// `dead_after`, pings sent after `ping_interval` of silence included: reconnect), the idle
/// feed timer (no data message for `idle_after`: a [`ClientEvent::Idle`](crate::ClientEvent::Idle),
/// and a reconnect if `idle_reconnect`), and the venue's own heartbeat (dialects that have one,
/// [`Dialect::venue_heartbeat`](crate::Dialect::venue_heartbeat), such as Deribit, ask for one
/// every `venue_heartbeat`; one missing for longer than `venue_heartbeat + heartbeat_grace`
/// means the connection is half-open: reconnect; other dialects ignore the option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// A WebSocket ping after this much silence (`None`: no pings).
    pub ping_interval: Option<Duration>,
    /// No frame at all for this long: the peer is dead.
    pub dead_after: Duration,
    /// No data message for this long: the feed is idle (`None`: not watched).
    pub idle_after: Option<Duration>,
    /// Whether an idle feed also reconnects.
    pub idle_reconnect: bool,
    /// The heartbeat interval asked of the venue (`None`: none asked).
    pub venue_heartbeat: Option<Duration>,
    /// How late a venue heartbeat may be before the connection counts as half-open.
    pub heartbeat_grace: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            dead_after: DEFAULT_DEAD_AFTER,
            idle_after: None,
            idle_reconnect: false,
            venue_heartbeat: Some(DEFAULT_VENUE_HEARTBEAT),
            heartbeat_grace: DEFAULT_HEARTBEAT_GRACE,
        }
    }
}

/// What a slow consumer of the incoming queue does to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Stop reading the socket until the queue has room: the venue is slowed (TCP), nothing
    /// is lost. Heartbeats and control traffic are still answered from what was read.
    Backpressure,
    /// Drop the oldest queued data messages to make room, counting them (statistics and a
    /// [`ClientEvent::Error`](crate::ClientEvent::Error) with the count): never silent.
    DropOldest,
}

/// What a send made while the client is disconnected does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineSends {
    /// Fail at once with [`ClientError::Disconnected`](crate::ClientError::Disconnected).
    Fail,
    /// Queue it, sent in order after the session is restored; a message still queued after
    /// `deadline` fails with a timeout, and past `max_bytes` queued new sends fail at once.
    Queue {
        /// How long a queued send may wait for the connection.
        deadline: Duration,
        /// Bytes of queued messages at most.
        max_bytes: usize,
    },
}

/// What happens to a request the rate limiter has no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMode {
    /// Fail at once with [`ClientError::RateLimited`](crate::ClientError::RateLimited)
    /// (saying when there will be room).
    Refuse,
    /// Wait for room, up to `max_wait`, then fail as `Refuse` does.
    Wait {
        /// Longest wait.
        max_wait: Duration,
    },
}

/// One credit pool of a rate limit (a token bucket).
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Its name, for statistics and errors (`"non_matching"`, `"subscribe"`...).
    pub name: &'static str,
    /// Credits when full (the burst).
    pub capacity: u64,
    /// Credits added per second.
    pub refill_per_sec: u64,
}

/// What one request costs: `credits` from pool number `pool` of [`RateLimit::pools`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Index of the pool in [`RateLimit::pools`].
    pub pool: usize,
    /// Credits taken.
    pub credits: u64,
}

/// The cost model: a request's method to its cost (`None`: free).
pub type CostFn = Arc<dyn Fn(&str) -> Option<Cost> + Send + Sync>;

/// A client-side rate limit, so the venue never has to refuse (Deribit closes the session
/// when its credits run out): token buckets with a cost per request.
#[derive(Clone)]
pub struct RateLimit {
    /// The credit pools.
    pub pools: Vec<Pool>,
    /// Which pool a method draws from, and how much.
    pub cost: CostFn,
    /// Refuse or wait when a pool is empty.
    pub mode: LimitMode,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").field("pools", &self.pools).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl RateLimit {
    /// One bucket of `capacity` requests refilled at `per_sec` requests a second; every
    /// request costs 1.
    pub fn per_second(per_sec: u64, capacity: u64, mode: LimitMode) -> Self {
        Self {
            pools: vec![Pool { name: "requests", capacity, refill_per_sec: per_sec }],
            cost: Arc::new(|_| Some(Cost { pool: 0, credits: 1 })),
            mode,
        }
    }

    /// Deribit's default credit model (docs.deribit.com, "Rate Limits"; tiers raise it), as
    /// the test kit's simulator charges it: non-matching-engine requests cost 500 credits
    /// from a pool of 50 000 refilled at 10 000 a second (20 a second, bursts of 100), the
    /// heartbeat answer `public/test` and the session's own requests (`public/auth`,
    /// `public/set_heartbeat`) included; matching-engine requests
    /// ([`DERIBIT_MATCHING_ENGINE`](moorline_proto::client::ratelimit::DERIBIT_MATCHING_ENGINE):
    /// `private/buy`, `sell`, `edit`, `cancel*`, `close_position`...) spend a pool of their own,
    /// 1 from 20 refilled at 5 a second (the lowest volume tier); `public/subscribe`,
    /// `private/subscribe` and their unsubscribes cost 3 000 from a pool of 30 000 refilled at
    /// 10 000 a second (about 3.3 a second, bursts of 10). Requests that must go at once
    /// (heartbeat answers, the session's handshake and authentication) are not held back but
    /// their credits are spent all the same, so what follows them waits its turn.
    ///
    /// Each pool keeps a little headroom below the venue's (250 ms of refill for the
    /// non-matching credits, one request for the other two): the venue sees each request a
    /// network latency later, and a latency that varies (a burst queued behind itself, then
    /// one request alone) would otherwise let a paced request reach the venue's bucket a
    /// moment before its credit did: 10028, and the session ends.
    pub fn deribit(mode: LimitMode) -> Self {
        use moorline_proto::client::ratelimit::{DERIBIT_MATCHING_ENGINE, DERIBIT_SUBSCRIBE};
        let pools = vec![
            Pool { name: "non_matching", capacity: 50_000 - 2_500, refill_per_sec: 10_000 },
            Pool { name: "subscribe", capacity: 30_000 - 3_000, refill_per_sec: 10_000 },
            Pool { name: "matching", capacity: 20 - 1, refill_per_sec: 5 },
        ];
        let cost = Arc::new(|method: &str| {
            let m = method.strip_prefix('/').unwrap_or(method);
            Some(if DERIBIT_SUBSCRIBE.contains(&m) {
                Cost { pool: 1, credits: 3_000 }
            } else if DERIBIT_MATCHING_ENGINE.contains(&m) || m.starts_with("private/cancel") {
                Cost { pool: 2, credits: 1 }
            } else {
                Cost { pool: 0, credits: 500 }
            })
        });
        Self { pools, cost, mode }
    }
}

/// Every option of a client. Build one with [`ClientConfig::builder`] (which validates), or
/// start from [`ClientConfig::default`] and check it with [`ClientConfig::validate`]
/// (`Client::connect` validates too).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Extra upgrade request headers, sent again on every reconnect.
    pub headers: HeaderMap,
    /// TCP connect timeout, per address.
    pub connect_timeout: Duration,
    /// TLS handshake timeout.
    pub tls_timeout: Duration,
    /// WebSocket handshake timeout (connection up to the upgrade's answer).
    pub handshake_timeout: Duration,
    /// TLS settings (trusted CAs, client certificate, SNI), moorline's own.
    pub tls: TlsOptions,
    /// Reconnection policy.
    pub retry: RetryConfig,
    /// Liveness checks.
    pub liveness: LivenessConfig,
    /// Whether subscriptions are restored after a reconnect.
    pub restore_subscriptions: bool,
    /// Deadline of each request.
    pub request_timeout: Duration,
    /// Largest incoming message.
    pub max_message_size: usize,
    /// Client-side rate limit (`None`: none).
    pub rate_limit: Option<RateLimit>,
    /// Offer HTTP/2 and run the WebSocket over it (RFC 8441) where the venue allows.
    pub http2: bool,
    /// Byte ceiling of the user's incoming queue.
    pub incoming_buffer_bytes: usize,
    /// What a full incoming queue does.
    pub overflow: Overflow,
    /// What sends while disconnected do.
    pub offline_sends: OfflineSends,
    /// Where every frame in and out is recorded (`None`: nowhere). The recorder's writer
    /// thread does the IO; the client only queues (see [`Recorder`]).
    pub record: Option<Arc<Recorder>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            headers: HeaderMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_timeout: DEFAULT_TLS_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            tls: TlsOptions::default(),
            retry: RetryConfig::default(),
            liveness: LivenessConfig::default(),
            restore_subscriptions: true,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            rate_limit: None,
            http2: false,
            incoming_buffer_bytes: DEFAULT_INCOMING_BUFFER_BYTES,
            overflow: DEFAULT_OVERFLOW,
            offline_sends: OfflineSends::Fail,
            record: None,
        }
    }
}

/// A rejected option: which one, its value, and the rule it broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{option} must be positive (got 0s)")]
    NotPositive {
        /// The option.
        option: &'static str,
    },
    /// A timeout longer than [`MAX_TIMEOUT`] (nothing may wait for ever).
    #[error("{option} is {value:?}, longer than the limit of {max:?}")]
    TooLong {
        /// The option.
        option: &'static str,
        /// Its value.
        value: Duration,
        /// The limit.
        max: Duration,
    },
    /// A size outside its allowed range.
    #[error("{option} is {value} bytes, outside the allowed {min}..={max} bytes")]
    SizeOutOfRange {
        /// The option.
        option: &'static str,
        /// Its value.
        value: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The retry cap is below the first delay.
    #[error("retry cap {cap:?} is below the retry base delay {base:?}: the cap must be at least the base")]
    RetryCapBelowBase {
        /// The first delay.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
    /// A proportional jitter outside `(0, 1]` (or not a number).
    #[error("jitter fraction {value} is outside (0, 1]")]
    JitterOutOfRange {
        /// The fraction given.
        value: f64,
    },
    /// The dead-peer limit does not leave a pinged peer time to answer.
    #[error(
        "liveness dead_after {dead_after:?} must be longer than ping_interval {ping_interval:?}: a quiet live venue would be declared dead before it is pinged"
    )]
    DeadBeforePing {
        /// The dead-peer limit.
        dead_after: Duration,
        /// The ping interval.
        ping_interval: Duration,
    },
    /// Idle reconnection asked for without an idle limit.
    #[error("liveness idle_reconnect is on but idle_after is not set: set idle_after, or turn idle_reconnect off")]
    IdleReconnectWithoutIdle,
    /// The venue heartbeat interval is outside what the dialect's venue accepts.
    #[error("venue_heartbeat {value:?} is outside what {dialect} accepts ({min:?}..={max:?})")]
    HeartbeatOutOfRange {
        /// The dialect.
        dialect: String,
        /// The interval asked.
        value: Duration,
        /// Smallest the venue accepts.
        min: Duration,
        /// Largest the venue accepts.
        max: Duration,
    },
    /// A header name or value is not valid HTTP.
    #[error("header {name:?}: {reason}")]
    Header {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A header the WebSocket handshake sets itself.
    #[error("header {name:?} is set by the WebSocket handshake itself and may not be given")]
    ReservedHeader {
        /// The name given.
        name: String,
    },
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("{reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong (moorline's explanation, naming the URL).
        reason: String,
    },
    /// A rate limit without pools, or with an empty or never-refilled pool.
    #[error("rate_limit pool {pool:?}: {rule}")]
    RateLimit {
        /// The pool's name (`""` when there is none).
        pool: &'static str,
        /// The rule it broke.
        rule: &'static str,
    },
    /// The rate-limit cost model names a pool that does not exist, or costs more than a pool holds.
    #[error("rate_limit cost of {method:?}: {reason}")]
    RateLimitCost {
        /// The method priced.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// The dialect refuses the configuration for another reason.
    #[error("dialect {dialect}: {reason}")]
    Dialect {
        /// The dialect.
        dialect: String,
        /// Its reason.
        reason: String,
    },
}

impl ClientConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder { config: ClientConfig::default(), header_error: None }
    }

    /// Checks every rule; the first one broken is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (option, value) in [
            ("connect_timeout", self.connect_timeout),
            ("tls_timeout", self.tls_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("request_timeout", self.request_timeout),
            ("retry.healthy_after", self.retry.healthy_after),
            ("liveness.dead_after", self.liveness.dead_after),
        ] {
            timeout(option, value)?;
        }
        for (option, value) in [
            ("liveness.ping_interval", self.liveness.ping_interval),
            ("liveness.idle_after", self.liveness.idle_after),
            ("liveness.venue_heartbeat", self.liveness.venue_heartbeat),
        ] {
            if let Some(value) = value {
                timeout(option, value)?;
            }
        }
        // Zero grace is allowed: a venue heartbeat must then arrive exactly on time.
        if self.liveness.heartbeat_grace > MAX_TIMEOUT {
            return Err(ConfigError::TooLong {
                option: "liveness.heartbeat_grace",
                value: self.liveness.heartbeat_grace,
                max: MAX_TIMEOUT,
            });
        }
        timeout("retry.base", self.retry.base)?;
        timeout("retry.cap", self.retry.cap)?;
        if self.retry.cap < self.retry.base {
            return Err(ConfigError::RetryCapBelowBase { base: self.retry.base, cap: self.retry.cap });
        }
        if let Jitter::Proportional(f) = self.retry.jitter
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(ConfigError::JitterOutOfRange { value: f });
        }
        if let Some(ping) = self.liveness.ping_interval
            && self.liveness.dead_after <= ping
        {
            return Err(ConfigError::DeadBeforePing { dead_after: self.liveness.dead_after, ping_interval: ping });
        }
        if self.liveness.idle_reconnect && self.liveness.idle_after.is_none() {
            return Err(ConfigError::IdleReconnectWithoutIdle);
        }
        size("max_message_size", self.max_message_size, 1, MAX_MESSAGE_SIZE_LIMIT)?;
        size(
            "incoming_buffer_bytes",
            self.incoming_buffer_bytes,
            MIN_INCOMING_BUFFER_BYTES,
            MAX_INCOMING_BUFFER_BYTES,
        )?;
        if let OfflineSends::Queue { deadline, max_bytes } = self.offline_sends {
            timeout("offline_sends.deadline", deadline)?;
            size("offline_sends.max_bytes", max_bytes, 1, MAX_OFFLINE_QUEUE_BYTES)?;
        }
        if let Some(limit) = &self.rate_limit {
            validate_rate_limit(limit)?;
        }
        Ok(())
    }
}

fn timeout(option: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::NotPositive { option });
    }
    if value > MAX_TIMEOUT {
        return Err(ConfigError::TooLong { option, value, max: MAX_TIMEOUT });
    }
    Ok(())
}

fn size(option: &'static str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) { Ok(()) } else { Err(ConfigError::SizeOutOfRange { option, value, min, max }) }
}

fn validate_rate_limit(limit: &RateLimit) -> Result<(), ConfigError> {
    if limit.pools.is_empty() {
        return Err(ConfigError::RateLimit { pool: "", rule: "a rate limit needs at least one pool" });
    }
    for pool in &limit.pools {
        if pool.capacity == 0 {
            return Err(ConfigError::RateLimit { pool: pool.name, rule: "capacity must be positive" });
        }
        if pool.refill_per_sec == 0 {
            return Err(ConfigError::RateLimit { pool: pool.name, rule: "refill_per_sec must be positive" });
        }
    }
    if let LimitMode::Wait { max_wait } = limit.mode {
        timeout("rate_limit.max_wait", max_wait)?;
    }
    Ok(())
}

/// Checks the cost of one method against the pools: the client calls it for every method it
/// prices, so a cost model that names a missing pool, or asks more than a pool can ever hold,
/// is an explained error instead of a request that waits for ever.
pub fn check_cost(limit: &RateLimit, method: &str) -> Result<Option<Cost>, ConfigError> {
    let Some(cost) = (limit.cost)(method) else { return Ok(None) };
    let Some(pool) = limit.pools.get(cost.pool) else {
        return Err(ConfigError::RateLimitCost {
            method: method.to_owned(),
            reason: format!("pool {} does not exist ({} pools)", cost.pool, limit.pools.len()),
        });
    };
    if cost.credits > pool.capacity {
        return Err(ConfigError::RateLimitCost {
            method: method.to_owned(),
            reason: format!(
                "{} credits is more than pool {:?} ever holds ({})",
                cost.credits, pool.name, pool.capacity
            ),
        });
    }
    Ok(Some(cost))
}

/// Builds a [`ClientConfig`]; [`build`](Self::build) validates every option.
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder {
    config: ClientConfig,
    header_error: Option<ConfigError>,
}

/// Headers the WebSocket handshake writes itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "content-length",
    "transfer-encoding",
];

impl ClientConfigBuilder {
    /// Adds an upgrade request header (also sent on every reconnect). An invalid or
    /// handshake-owned one is reported by [`build`](Self::build).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if self.header_error.is_some() {
            return self;
        }
        let bad = |reason: String| ConfigError::Header { name: name.to_owned(), reason };
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Err(e), _) => self.header_error = Some(bad(format!("invalid name: {e}"))),
            (_, Err(e)) => self.header_error = Some(bad(format!("invalid value: {e}"))),
            (Ok(n), Ok(_)) if RESERVED_HEADERS.contains(&n.as_str()) => {
                self.header_error = Some(ConfigError::ReservedHeader { name: name.to_owned() });
            }
            (Ok(n), Ok(v)) => {
                self.config.headers.append(n, v);
            }
        }
        self
    }

    /// TCP connect timeout, per address (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// TLS handshake timeout (default [`DEFAULT_TLS_TIMEOUT`]).
    pub fn tls_timeout(mut self, d: Duration) -> Self {
        self.config.tls_timeout = d;
        self
    }

    /// WebSocket handshake timeout (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.config.handshake_timeout = d;
        self
    }

    /// TLS settings (moorline's [`TlsOptions`]: trusted CAs, client certificate, SNI).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.config.tls = tls;
        self
    }

    /// The whole reconnection policy.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// How many consecutive failures are retried (default unlimited).
    pub fn attempts(mut self, attempts: Attempts) -> Self {
        self.config.retry.attempts = attempts;
        self
    }

    /// Backoff: first delay and cap (defaults [`DEFAULT_RETRY_BASE`], [`DEFAULT_RETRY_CAP`]).
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.config.retry.base = base;
        self.config.retry.cap = cap;
        self
    }

    /// Jitter of each delay (default [`DEFAULT_JITTER`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config.retry.jitter = jitter;
        self
    }

    /// How long a connection must be healthy before failures are forgiven (default
    /// [`DEFAULT_HEALTHY_AFTER`]).
    pub fn healthy_after(mut self, d: Duration) -> Self {
        self.config.retry.healthy_after = d;
        self
    }

    /// The whole liveness configuration.
    pub fn liveness(mut self, liveness: LivenessConfig) -> Self {
        self.config.liveness = liveness;
        self
    }

    /// Ping after this much silence, dead after `dead_after` without any frame (defaults
    /// [`DEFAULT_PING_INTERVAL`], [`DEFAULT_DEAD_AFTER`]).
    pub fn dead_after(mut self, ping_interval: Option<Duration>, dead_after: Duration) -> Self {
        self.config.liveness.ping_interval = ping_interval;
        self.config.liveness.dead_after = dead_after;
        self
    }

    /// The idle feed limit (default none) and whether reaching it reconnects.
    pub fn idle_after(mut self, idle_after: Option<Duration>, reconnect: bool) -> Self {
        self.config.liveness.idle_after = idle_after;
        self.config.liveness.idle_reconnect = reconnect;
        self
    }

    /// The heartbeat interval asked of the venue (default [`DEFAULT_VENUE_HEARTBEAT`]; `None`:
    /// none) and its grace (default [`DEFAULT_HEARTBEAT_GRACE`]).
    pub fn venue_heartbeat(mut self, interval: Option<Duration>, grace: Duration) -> Self {
        self.config.liveness.venue_heartbeat = interval;
        self.config.liveness.heartbeat_grace = grace;
        self
    }

    /// Whether subscriptions are restored after a reconnect (default on).
    pub fn restore_subscriptions(mut self, on: bool) -> Self {
        self.config.restore_subscriptions = on;
        self
    }

    /// Deadline of each request (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout = d;
        self
    }

    /// Largest incoming message (default [`DEFAULT_MAX_MESSAGE_SIZE`]).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Client-side rate limit (default none).
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.config.rate_limit = limit;
        self
    }

    /// Offer HTTP/2 (RFC 8441) (default off: proxies and CDNs break it).
    pub fn http2(mut self, on: bool) -> Self {
        self.config.http2 = on;
        self
    }

    /// The incoming queue's byte ceiling and overflow policy (defaults
    /// [`DEFAULT_INCOMING_BUFFER_BYTES`], [`DEFAULT_OVERFLOW`]).
    pub fn incoming_buffer(mut self, bytes: usize, overflow: Overflow) -> Self {
        self.config.incoming_buffer_bytes = bytes;
        self.config.overflow = overflow;
        self
    }

    /// What sends while disconnected do (default [`OfflineSends::Fail`]).
    pub fn offline_sends(mut self, policy: OfflineSends) -> Self {
        self.config.offline_sends = policy;
        self
    }

    /// Records every frame in and out (text, binary, pings, pongs, closes; across
    /// reconnects) to `recorder`, off the hot path: a frame is queued for its writer thread,
    /// or dropped and counted when the writer is behind. Secrets are redacted per the
    /// recorder's [`RecordOptions`](crate::record::RecordOptions).
    pub fn record(mut self, recorder: Arc<Recorder>) -> Self {
        self.config.record = Some(recorder);
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<ClientConfig, ConfigError> {
        if let Some(e) = self.header_error {
            return Err(e);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(b: ClientConfigBuilder) -> ConfigError {
        b.build().unwrap_err()
    }

    #[test]
    fn defaults_are_valid_and_match_the_constants() {
        let c = ClientConfig::builder().build().unwrap();
        assert_eq!(c.retry.attempts, Attempts::Unlimited);
        assert_eq!((c.retry.base, c.retry.cap), (DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP));
        assert_eq!(c.liveness.dead_after, DEFAULT_DEAD_AFTER);
        assert_eq!(c.liveness.venue_heartbeat, Some(DEFAULT_VENUE_HEARTBEAT));
        assert!(c.restore_subscriptions && !c.http2);
        assert_eq!((c.incoming_buffer_bytes, c.overflow), (DEFAULT_INCOMING_BUFFER_BYTES, Overflow::Backpressure));
        assert_eq!(c.offline_sends, OfflineSends::Fail);
        ClientConfig::default().validate().unwrap();
    }

    #[test]
    fn every_timeout_must_be_positive_and_bounded() {
        type Set = fn(ClientConfigBuilder, Duration) -> ClientConfigBuilder;
        let cases: [(&str, Set); 7] = [
            ("connect_timeout", |b, d| b.connect_timeout(d)),
            ("tls_timeout", |b, d| b.tls_timeout(d)),
            ("handshake_timeout", |b, d| b.handshake_timeout(d)),
            ("request_timeout", |b, d| b.request_timeout(d)),
            ("retry.healthy_after", |b, d| b.healthy_after(d)),
            ("liveness.idle_after", |b, d| b.idle_after(Some(d), false)),
            ("liveness.venue_heartbeat", |b, d| b.venue_heartbeat(Some(d), Duration::ZERO)),
        ];
        for (name, set) in cases {
            let e = err(set(ClientConfig::builder(), Duration::ZERO));
            assert_eq!(e, ConfigError::NotPositive { option: name });
            assert!(e.to_string().starts_with(name), "{e}");
            let e = err(set(ClientConfig::builder(), Duration::MAX));
            assert_eq!(e, ConfigError::TooLong { option: name, value: Duration::MAX, max: MAX_TIMEOUT }, "{name}");
            assert!(e.to_string().contains("longer than the limit of 86400s"), "{e}");
        }
    }

    #[test]
    fn retry_rules() {
        let s = Duration::from_secs;
        let e = err(ClientConfig::builder().backoff(s(10), s(1)));
        assert_eq!(e, ConfigError::RetryCapBelowBase { base: s(10), cap: s(1) });
        assert_eq!(e.to_string(), "retry cap 1s is below the retry base delay 10s: the cap must be at least the base");
        assert_eq!(
            err(ClientConfig::builder().backoff(Duration::ZERO, s(1))),
            ConfigError::NotPositive { option: "retry.base" }
        );
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let e = err(ClientConfig::builder().jitter(Jitter::Proportional(bad)));
            assert!(matches!(e, ConfigError::JitterOutOfRange { .. }), "{bad}: {e}");
        }
        assert_eq!(
            err(ClientConfig::builder().jitter(Jitter::Proportional(2.0))).to_string(),
            "jitter fraction 2 is outside (0, 1]"
        );
        // Zero attempts (never retry) and unlimited are both fine.
        ClientConfig::builder().attempts(Attempts::Limited(0)).jitter(Jitter::Full).build().unwrap();
        ClientConfig::builder().backoff(s(1), s(1)).jitter(Jitter::Proportional(1.0)).build().unwrap();
    }

    #[test]
    fn liveness_rules() {
        let s = Duration::from_secs;
        let e = err(ClientConfig::builder().dead_after(Some(s(30)), s(30)));
        assert_eq!(e, ConfigError::DeadBeforePing { dead_after: s(30), ping_interval: s(30) });
        assert!(e.to_string().contains("dead_after 30s must be longer than ping_interval 30s"), "{e}");
        ClientConfig::builder().dead_after(None, s(5)).build().unwrap();
        let e = err(ClientConfig::builder().idle_after(None, true));
        assert_eq!(e, ConfigError::IdleReconnectWithoutIdle);
        assert!(e.to_string().contains("idle_reconnect is on but idle_after is not set"));
        ClientConfig::builder().idle_after(Some(s(60)), true).build().unwrap();
        let e = err(ClientConfig::builder().venue_heartbeat(Some(s(10)), Duration::MAX));
        assert!(matches!(e, ConfigError::TooLong { option: "liveness.heartbeat_grace", .. }), "{e}");
    }

    #[test]
    fn sizes_are_bounded_both_ways() {
        let e = err(ClientConfig::builder().incoming_buffer(100, Overflow::DropOldest));
        assert_eq!(
            e,
            ConfigError::SizeOutOfRange {
                option: "incoming_buffer_bytes",
                value: 100,
                min: MIN_INCOMING_BUFFER_BYTES,
                max: MAX_INCOMING_BUFFER_BYTES
            }
        );
        assert_eq!(e.to_string(), "incoming_buffer_bytes is 100 bytes, outside the allowed 4096..=1073741824 bytes");
        assert!(matches!(
            err(ClientConfig::builder().max_message_size(0)),
            ConfigError::SizeOutOfRange { option: "max_message_size", .. }
        ));
        let q =
            |deadline, max_bytes| ClientConfig::builder().offline_sends(OfflineSends::Queue { deadline, max_bytes });
        assert_eq!(err(q(Duration::ZERO, 10)), ConfigError::NotPositive { option: "offline_sends.deadline" });
        assert!(matches!(
            err(q(Duration::from_secs(1), 0)),
            ConfigError::SizeOutOfRange { option: "offline_sends.max_bytes", .. }
        ));
        assert!(matches!(err(q(Duration::from_secs(1), usize::MAX)), ConfigError::SizeOutOfRange { .. }));
        q(Duration::from_secs(1), 1 << 20).build().unwrap();
    }

    #[test]
    fn headers_are_checked_and_handshake_ones_refused() {
        let c = ClientConfig::builder()
            .header("Authorization", "Bearer x")
            .header("x-a", "1")
            .header("x-a", "2")
            .build()
            .unwrap();
        assert_eq!(c.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(c.headers["authorization"], "Bearer x");
        let e = err(ClientConfig::builder().header("bad name", "v"));
        assert!(
            matches!(&e, ConfigError::Header { name, reason } if name == "bad name" && reason.starts_with("invalid name")),
            "{e}"
        );
        let e = err(ClientConfig::builder().header("x-ok", "line\nbreak"));
        assert!(e.to_string().starts_with("header \"x-ok\": invalid value"), "{e}");
        let e = err(ClientConfig::builder().header("Sec-WebSocket-Key", "abc"));
        assert_eq!(e, ConfigError::ReservedHeader { name: "Sec-WebSocket-Key".into() });
        // The first bad header is the one reported, even if a later option is fine.
        let e = err(ClientConfig::builder().header("a b", "1").header("Host", "x"));
        assert!(matches!(e, ConfigError::Header { .. }));
    }

    #[test]
    fn rate_limits_are_checked() {
        let mut bad = RateLimit::per_second(0, 10, LimitMode::Refuse);
        let e = err(ClientConfig::builder().rate_limit(Some(bad.clone())));
        assert_eq!(e.to_string(), "rate_limit pool \"requests\": refill_per_sec must be positive");
        bad.pools.clear();
        assert!(matches!(err(ClientConfig::builder().rate_limit(Some(bad))), ConfigError::RateLimit { pool: "", .. }));
        let e =
            err(ClientConfig::builder()
                .rate_limit(Some(RateLimit::deribit(LimitMode::Wait { max_wait: Duration::ZERO }))));
        assert_eq!(e, ConfigError::NotPositive { option: "rate_limit.max_wait" });
        let deribit = RateLimit::deribit(LimitMode::Refuse);
        ClientConfig::builder().rate_limit(Some(deribit.clone())).build().unwrap();
        assert_eq!(check_cost(&deribit, "public/subscribe").unwrap(), Some(Cost { pool: 1, credits: 3_000 }));
        assert_eq!(check_cost(&deribit, "private/cancel_all").unwrap(), Some(Cost { pool: 2, credits: 1 }));
        assert_eq!(check_cost(&deribit, "public/get_instruments").unwrap(), Some(Cost { pool: 0, credits: 500 }));
        assert_eq!(check_cost(&deribit, "public/test").unwrap(), Some(Cost { pool: 0, credits: 500 }));
        assert_eq!(check_cost(&deribit, "private/edit").unwrap(), Some(Cost { pool: 2, credits: 1 }));
        assert_eq!(check_cost(&deribit, "private/unsubscribe").unwrap(), Some(Cost { pool: 1, credits: 3_000 }));
        let mut broken = RateLimit::per_second(1, 1, LimitMode::Refuse);
        broken.cost = Arc::new(|m| Some(Cost { pool: usize::from(m == "x"), credits: 2 }));
        let e = check_cost(&broken, "x").unwrap_err();
        assert_eq!(e.to_string(), "rate_limit cost of \"x\": pool 1 does not exist (1 pools)");
        let e = check_cost(&broken, "y").unwrap_err();
        assert!(e.to_string().contains("2 credits is more than pool \"requests\" ever holds (1)"), "{e}");
    }
}
