//! The sans-IO core: the whole simulated venue (markets, accounts, orders)
//! and every connection's session state. Text in, deliveries out; time is
//! passed in. The tokio shell ([`super::server`]) only moves bytes and timers.
//! Requests are answered in [`super::dispatch`]; subscriptions in [`super::subscribe`];
//! what tests do to the venue from outside in [`super::hooks`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::account::TradeHistory;
use super::auth::Auth;
pub(crate) use super::auth::ConnId;
use super::channel::{Channel, Kind};
use super::error::RpcError;
use super::heartbeat::{Heartbeat, HeartbeatAction};
use super::hooks::VenueHooks;
use super::instrument::{INSTRUMENTS, index_of};
use super::market::{Ids, Market};
use super::orders::UserOrder;
use super::positions::Positions;
use super::publog::PublicationLog;
use super::ratelimit::{Cost, MATCHING_ENGINE, Pools, RateLimit};
use super::rng::SplitMix64;
use super::rpc::{self, Rejected, Timing};
use super::snapshot::{BookLevel, BookSnapshot};
use super::time::Now;

/// The API version `public/test` and `public/hello` report.
pub const API_VERSION: &str = "1.2.26";

/// Close code sent when a heartbeat `test_request` went unanswered.
pub(crate) const HEARTBEAT_CLOSE_CODE: u16 = 1000;
/// Close code sent when the client sent nothing for [`Config::idle_timeout`].
pub(crate) const IDLE_CLOSE_CODE: u16 = 1000;
/// Close code sent after `10028 too_many_requests` ends the session.
pub(crate) const RATE_LIMIT_CLOSE_CODE: u16 = 1008;
/// Close code sent after `private/logout`.
pub(crate) const LOGOUT_CLOSE_CODE: u16 = 1000;
/// Largest request Deribit accepts, in bytes; bigger ones are answered
/// `-32600 request entity too large`.
pub(crate) const MAX_REQUEST: usize = 32 * 1024;
/// `change_id` advances by a random stride in `1..=MAX_CHANGE_STRIDE` (as on Deribit,
/// where ids are shared across books): a client must check `prev_change_id`, never `+1`.
const MAX_CHANGE_STRIDE: u64 = 9;

/// Something to send on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A text frame.
    Text(String),
    /// A close frame, after which the connection ends.
    Close { code: u16, reason: String },
}

/// [`Outgoing`] addressed to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) conn: ConnId,
    pub(crate) out: Outgoing,
}

/// Settings of the venue.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) seed: u64,
    pub(crate) token_lifetime: Duration,
    pub(crate) refresh_token_lifetime: Duration,
    pub(crate) min_heartbeat_interval: Duration,
    /// A connection the client sent no frame on for this long is closed (`None`: never).
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) rate_limit: RateLimit,
    /// `(client_id, client_secret)` by account index.
    pub(crate) credentials: Vec<(String, String)>,
    /// Whether `10028` ends the session (as on Deribit).
    pub(crate) end_session_on_rate_limit: bool,
    /// Keep a log of the last this many publications (`None`: no log).
    pub(crate) publication_log: Option<usize>,
}

/// Why a session ended (cancel-on-disconnect fires on all but [`Logout`](EndReason::Logout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The connection closed (either side, any way).
    Closed,
    /// A heartbeat `test_request` went unanswered.
    Heartbeat,
    /// The client sent nothing for [`Config::idle_timeout`].
    Idle,
    /// `10028` with [`Config::end_session_on_rate_limit`].
    RateLimit,
    /// `private/logout`.
    Logout,
}

/// One connection's state.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) subs: BTreeSet<Channel>,
    /// Account and access token after a successful `public/auth`.
    pub(super) auth: Option<(usize, String)>,
    pub(super) heartbeat: Heartbeat,
    /// When the client last sent a frame (or connected).
    pub(super) last_frame: Instant,
    /// Credits spent before authentication.
    pub(super) pools: Pools,
    /// Cancel-on-disconnect with scope `connection`.
    pub(super) cancel_on_disconnect: bool,
}

/// The simulated venue.
#[derive(Debug)]
pub(crate) struct Venue {
    pub(super) min_heartbeat: Duration,
    idle_timeout: Option<Duration>,
    rate_limit: RateLimit,
    end_session_on_rate_limit: bool,
    pub(super) markets: Vec<Market>,
    pub(super) rng: SplitMix64,
    change_rng: SplitMix64,
    pub(super) ids: Ids,
    pub(super) auth: Auth,
    pub(super) orders: BTreeMap<u64, UserOrder>,
    pub(super) positions: Positions,
    pub(super) trade_history: TradeHistory,
    pub(super) sessions: BTreeMap<ConnId, Session>,
    /// Rate-limit pools of authenticated accounts (they outlive connections).
    account_pools: BTreeMap<usize, Pools>,
    /// Accounts with cancel-on-disconnect of scope `account`.
    pub(super) account_cancel_on_disconnect: BTreeSet<usize>,
    pub(super) hooks: VenueHooks,
    /// Notifications produced while handling the current event.
    pub(super) pending: Vec<Delivery>,
    /// What was published, when asked for ([`Config::publication_log`]).
    pub(super) log: Option<PublicationLog>,
}

/// What `method` spends from the rate-limit pools.
fn cost_of(method: &str) -> Cost {
    match method {
        m if MATCHING_ENGINE.contains(&m) => Cost::MatchingEngine,
        "public/subscribe" | "private/subscribe" | "public/unsubscribe" | "private/unsubscribe" => Cost::Subscribe,
        _ => Cost::Plain,
    }
}

impl Venue {
    /// A venue with seeded markets.
    pub(crate) fn new(config: Config) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let mut ids = Ids::new();
        let markets = INSTRUMENTS.iter().map(|spec| Market::new(*spec, &mut rng, &mut ids)).collect();
        let auth = Auth::new(config.credentials, config.seed, config.token_lifetime, config.refresh_token_lifetime);
        Self {
            min_heartbeat: config.min_heartbeat_interval,
            idle_timeout: config.idle_timeout,
            rate_limit: config.rate_limit,
            end_session_on_rate_limit: config.end_session_on_rate_limit,
            markets,
            rng,
            change_rng: SplitMix64::fork(config.seed, 0x63_68_67),
            ids,
            auth,
            orders: BTreeMap::new(),
            positions: Positions::default(),
            trade_history: TradeHistory::default(),
            sessions: BTreeMap::new(),
            account_pools: BTreeMap::new(),
            account_cancel_on_disconnect: BTreeSet::new(),
            hooks: VenueHooks::default(),
            pending: Vec::new(),
            log: config.publication_log.map(PublicationLog::new),
        }
    }

    /// Registers connection `conn` (ids are the shell's; never reused).
    pub(crate) fn connect(&mut self, conn: ConnId, now: Now) {
        let session = Session {
            subs: BTreeSet::new(),
            auth: None,
            heartbeat: Heartbeat::default(),
            last_frame: now.instant,
            pools: Pools::new(self.rate_limit, now.instant),
            cancel_on_disconnect: false,
        };
        self.sessions.insert(conn, session);
    }

    /// The connection closed (any way): its session ends, its connection-scoped tokens die
    /// and cancel-on-disconnect fires. Returns what that sends to other connections.
    pub(crate) fn disconnect(&mut self, conn: ConnId, now: Now) -> Vec<Delivery> {
        self.end_session(conn, EndReason::Closed, now);
        std::mem::take(&mut self.pending)
    }

    /// Ends `conn`'s session (nothing if already ended), queueing what it causes in `pending`.
    pub(super) fn end_session(&mut self, conn: ConnId, reason: EndReason, now: Now) {
        let Some(session) = self.sessions.remove(&conn) else { return };
        self.auth.connection_closed(conn);
        let Some((account, _)) = session.auth else { return };
        let cancel = session.cancel_on_disconnect || self.account_cancel_on_disconnect.contains(&account);
        if cancel && reason != EndReason::Logout {
            let n = self.cancel_all(account, None, now, "cancel_on_disconnect");
            tracing::debug!(conn, account, n, ?reason, "cancel on disconnect");
        }
    }

    /// When [`on_timer`](Self::on_timer) should next run for `conn`: the heartbeat's next
    /// duty or the idle timeout, whichever comes first.
    pub(crate) fn deadline(&self, conn: ConnId) -> Option<Instant> {
        let session = self.sessions.get(&conn)?;
        let idle = self.idle_timeout.and_then(|t| session.last_frame.checked_add(t));
        match (session.heartbeat.deadline(), idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The client sent a frame on `conn` (any kind: control frames count against idleness).
    pub(crate) fn on_frame(&mut self, conn: ConnId, now: Now) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.last_frame = session.last_frame.max(now.instant);
        }
    }

    /// Timer duty for `conn`: a close if the client was idle for the idle timeout; else the
    /// heartbeat's: a `heartbeat` or `test_request`, or a close when the last `test_request`
    /// went unanswered.
    pub(crate) fn on_timer(&mut self, conn: ConnId, now: Now) -> Vec<Delivery> {
        let Some(session) = self.sessions.get_mut(&conn) else { return Vec::new() };
        let idle_at = self.idle_timeout.and_then(|t| session.last_frame.checked_add(t));
        if idle_at.is_some_and(|at| now.instant >= at) {
            tracing::debug!(conn, "no frame from the client within the idle timeout; closing");
            let close = Outgoing::Close { code: IDLE_CLOSE_CODE, reason: "idle timeout".to_owned() };
            let mut out = vec![Delivery { conn, out: close }];
            self.end_session(conn, EndReason::Idle, now);
            out.append(&mut self.pending);
            return out;
        }
        match session.heartbeat.poll(now.instant) {
            None => Vec::new(),
            Some(HeartbeatAction::SendHeartbeat) => {
                vec![Delivery { conn, out: Outgoing::Text(rpc::heartbeat("heartbeat")) }]
            }
            Some(HeartbeatAction::SendTestRequest) => {
                vec![Delivery { conn, out: Outgoing::Text(rpc::heartbeat("test_request")) }]
            }
            Some(HeartbeatAction::Close) => {
                tracing::debug!(conn, "heartbeat test_request unanswered; closing");
                let reason = "heartbeat: test_request not answered".to_owned();
                let mut out = vec![Delivery { conn, out: Outgoing::Close { code: HEARTBEAT_CLOSE_CODE, reason } }];
                self.end_session(conn, EndReason::Heartbeat, now);
                out.append(&mut self.pending);
                out
            }
        }
    }

    /// A binary frame: Deribit speaks JSON text only.
    pub(crate) fn on_binary(&mut self, conn: ConnId, now: Now) -> Vec<Delivery> {
        if !self.sessions.contains_key(&conn) {
            return Vec::new();
        }
        self.on_frame(conn, now);
        let error = RpcError::invalid_request("binary frames are not supported; send JSON-RPC as text");
        let timing = Timing { us_in: now.unix_us, us_out: now.unix_us };
        vec![Delivery { conn, out: Outgoing::Text(rpc::response(Some(&Value::Null), Err(error), timing)) }]
    }

    /// Spends the credits of a request from the account's pools (authenticated) or the
    /// connection's; `false` if too few.
    fn spend(&mut self, conn: ConnId, cost: Cost, now: Instant) -> bool {
        let Some(session) = self.sessions.get_mut(&conn) else { return false };
        match session.auth.as_ref().map(|a| a.0) {
            Some(account) => {
                let limit = self.rate_limit;
                self.account_pools.entry(account).or_insert_with(|| Pools::new(limit, now)).try_spend(cost, now)
            }
            None => session.pools.try_spend(cost, now),
        }
    }

    /// A text frame: one JSON-RPC request. The response comes first (always: the shell
    /// relies on it), then any notifications it caused (to this and other connections), then
    /// a close if the request ended the session. `us_out` reads the clock when the response
    /// is ready (for `usOut`/`usDiff`).
    pub(crate) fn on_text(
        &mut self,
        conn: ConnId,
        text: &str,
        now: Now,
        us_out: &mut dyn FnMut() -> u64,
    ) -> Vec<Delivery> {
        let Some(session) = self.sessions.get_mut(&conn) else { return Vec::new() };
        session.heartbeat.activity();
        session.last_frame = session.last_frame.max(now.instant);
        let mut end = None;
        let (id, outcome) = if text.len() > MAX_REQUEST {
            (Some(Value::Null), Err(RpcError::too_large(MAX_REQUEST)))
        } else {
            match rpc::parse_request(text) {
                Err(Rejected { id, error }) => (id, Err(error)),
                Ok(request) => {
                    let outcome = if !self.spend(conn, cost_of(&request.method), now.instant) {
                        if self.end_session_on_rate_limit {
                            end = Some(EndReason::RateLimit);
                        }
                        Err(RpcError::too_many_requests())
                    } else if let Some(error) = self.hooks.injected_failure(&request.method) {
                        Err(error)
                    } else if request.method == "private/logout" {
                        return self.logout(conn, &request, now);
                    } else {
                        self.dispatch(conn, &request, now)
                    };
                    (request.id, outcome)
                }
            }
        };
        if let Err(e) = &outcome {
            tracing::debug!(conn, error = %e, "request failed");
        }
        let timing = Timing { us_in: now.unix_us, us_out: us_out().max(now.unix_us) };
        let mut out = vec![Delivery { conn, out: Outgoing::Text(rpc::response(id.as_ref(), outcome, timing)) }];
        out.append(&mut self.pending);
        if let Some(reason) = end {
            tracing::debug!(conn, "too_many_requests: ending the session");
            let close = Outgoing::Close { code: RATE_LIMIT_CLOSE_CODE, reason: "too_many_requests".to_owned() };
            out.push(Delivery { conn, out: close });
            self.end_session(conn, reason, now);
            out.append(&mut self.pending);
        }
        out
    }

    /// `private/logout {invalidate_token}`: no response; the connection closes, tokens of
    /// the session are revoked (unless `invalidate_token` is `false`), and cancel-on-disconnect
    /// does not fire.
    fn logout(&mut self, conn: ConnId, request: &rpc::Request, now: Now) -> Vec<Delivery> {
        let p = rpc::Params(&request.params);
        let account = match self.account(conn, p, now) {
            Ok(account) => account,
            Err(error) => {
                let timing = Timing { us_in: now.unix_us, us_out: now.unix_us };
                let text = rpc::response(request.id.as_ref(), Err(error), timing);
                return vec![Delivery { conn, out: Outgoing::Text(text) }];
            }
        };
        if p.opt_bool("invalidate_token").ok().flatten().unwrap_or(true) {
            let token = self.sessions.get(&conn).and_then(|s| s.auth.as_ref().map(|a| a.1.clone()));
            let binding = token.and_then(|t| self.auth.binding(&t).cloned());
            if let Some(super::auth::Binding::Session(_)) = binding {
                self.auth.revoke(Some(account));
            }
        }
        let close = Outgoing::Close { code: LOGOUT_CLOSE_CODE, reason: "logout".to_owned() };
        let mut out = vec![Delivery { conn, out: close }];
        self.end_session(conn, EndReason::Logout, now);
        out.append(&mut self.pending);
        out
    }

    /// One step of simulated market activity on every instrument.
    pub(crate) fn step_market(&mut self, now: Now) -> Vec<Delivery> {
        for idx in 0..self.markets.len() {
            let before = self.markets[idx].levels();
            let executions = self.markets[idx].step(&mut self.rng, &mut self.ids);
            self.settle_makers(idx, &executions, None, now);
            self.publish_trades(idx, &executions, now);
            self.publish_book_change(idx, before, now);
            let data = super::payload::ticker(&self.markets[idx], now.ms());
            self.publish(Kind::Ticker, idx, None, &data);
        }
        std::mem::take(&mut self.pending)
    }

    /// The book of `instrument_name` as it stands.
    pub(crate) fn book_snapshot(&self, instrument_name: &str) -> Option<BookSnapshot> {
        let market = self.markets.get(index_of(instrument_name)?)?;
        let (bids, asks) = market.levels();
        let level = |(&p, &a): (&i64, &u64)| BookLevel { price: market.spec.price(p), amount: a as f64 };
        Some(BookSnapshot {
            instrument_name: market.spec.name.to_owned(),
            change_id: market.change_id,
            bids: bids.iter().rev().map(level).collect(),
            asks: asks.iter().map(level).collect(),
        })
    }

    /// The next `change_id` stride.
    pub(super) fn change_stride(&mut self) -> u64 {
        1 + self.change_rng.below(MAX_CHANGE_STRIDE)
    }

    /// Queues a notification of `data` to every subscriber of a `kind`
    /// channel of `instrument` (only connections of `account` when given).
    /// On `user.orders` channels other than `raw`, data is wrapped in a list.
    /// With the publication log on, each channel it went out on is recorded once, with how
    /// many connections it went to.
    pub(super) fn publish(&mut self, kind: Kind, instrument: usize, account: Option<usize>, data: &Value) {
        let mut sent: Vec<(Channel, usize)> = Vec::new();
        for (&conn, session) in &self.sessions {
            if account.is_some() && session.auth.as_ref().map(|a| a.0) != account {
                continue;
            }
            for channel in session.subs.iter().filter(|c| c.kind == kind && c.instrument == instrument) {
                let wrapped;
                let data = if kind == Kind::UserOrders && channel.interval != super::channel::Interval::Raw {
                    wrapped = serde_json::json!([data]);
                    &wrapped
                } else {
                    data
                };
                let text = rpc::notification(&channel.to_string(), data);
                self.pending.push(Delivery { conn, out: Outgoing::Text(text) });
                if self.log.is_some() {
                    match sent.iter_mut().find(|(c, _)| c == channel) {
                        Some((_, n)) => *n += 1,
                        None => sent.push((*channel, 1)),
                    }
                }
            }
        }
        if let Some(log) = &mut self.log {
            for (channel, recipients) in sent {
                log.record(channel.to_string(), recipients, false, data);
            }
        }
    }
}
