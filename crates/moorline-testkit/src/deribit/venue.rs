//! The sans-IO core: the whole simulated venue (markets, accounts, orders)
//! and every connection's session state. Text in, deliveries out; time is
//! passed in. The tokio shell ([`super::server`]) only moves bytes and timers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::auth::{Auth, Grant};
use super::book::{Levels, Owner, Side};
use super::channel::{Channel, Interval, Kind};
use super::error::RpcError;
use super::heartbeat::{Heartbeat, HeartbeatAction};
use super::instrument::{INSTRUMENTS, index_of};
use super::market::{Execution, Ids, Market};
use super::orders::UserOrder;
use super::payload;
use super::ratelimit::{CreditPool, RateLimit};
use super::rng::SplitMix64;
use super::rpc::{self, Params, Rejected, Request, Timing};
use super::snapshot::{BookLevel, BookSnapshot};
use super::time::Now;

/// The API version `public/test` and `public/hello` report.
pub const API_VERSION: &str = "1.2.26";

/// Close code sent when a heartbeat `test_request` went unanswered.
pub(crate) const HEARTBEAT_CLOSE_CODE: u16 = 1000;

/// Identifies a connection inside the venue.
pub(crate) type ConnId = u64;

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
    pub(crate) rate_limit: RateLimit,
    /// `(client_id, client_secret)` by account index.
    pub(crate) credentials: Vec<(String, String)>,
}

/// One connection's state.
#[derive(Debug)]
struct Session {
    subs: BTreeSet<Channel>,
    /// Account and access token after a successful `public/auth`.
    auth: Option<(usize, String)>,
    heartbeat: Heartbeat,
    credits: CreditPool,
}

/// The simulated venue.
#[derive(Debug)]
pub(crate) struct Venue {
    min_heartbeat: Duration,
    rate_limit: RateLimit,
    pub(super) markets: Vec<Market>,
    rng: SplitMix64,
    pub(super) ids: Ids,
    auth: Auth,
    pub(super) orders: BTreeMap<u64, UserOrder>,
    sessions: BTreeMap<ConnId, Session>,
    next_conn: ConnId,
    /// Notifications produced while handling the current event.
    pending: Vec<Delivery>,
}

/// Whether `method` goes to the matching engine (costs more rate-limit credits).
fn is_matching_engine(method: &str) -> bool {
    matches!(
        method,
        "private/buy" | "private/sell" | "private/cancel" | "private/cancel_all" | "private/cancel_all_by_instrument"
    )
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
            rate_limit: config.rate_limit,
            markets,
            rng,
            ids,
            auth,
            orders: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_conn: 1,
            pending: Vec::new(),
        }
    }

    /// Registers a new connection.
    pub(crate) fn connect(&mut self, now: Now) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let session = Session {
            subs: BTreeSet::new(),
            auth: None,
            heartbeat: Heartbeat::default(),
            credits: CreditPool::new(self.rate_limit, now.instant),
        };
        self.sessions.insert(conn, session);
        conn
    }

    /// Forgets a connection (its resting orders stay, as on Deribit without cancel-on-disconnect).
    pub(crate) fn disconnect(&mut self, conn: ConnId) {
        self.sessions.remove(&conn);
    }

    /// When [`on_timer`](Self::on_timer) should next run for `conn`.
    pub(crate) fn deadline(&self, conn: ConnId) -> Option<Instant> {
        self.sessions.get(&conn).and_then(|s| s.heartbeat.deadline())
    }

    /// Heartbeat duty for `conn`: a `test_request`, or a close when the last went unanswered.
    pub(crate) fn on_timer(&mut self, conn: ConnId, now: Now) -> Vec<Delivery> {
        let Some(session) = self.sessions.get_mut(&conn) else { return Vec::new() };
        match session.heartbeat.poll(now.instant) {
            None => Vec::new(),
            Some(HeartbeatAction::SendTestRequest) => vec![Delivery { conn, out: Outgoing::Text(rpc::test_request()) }],
            Some(HeartbeatAction::Close) => {
                tracing::debug!(conn, "heartbeat test_request unanswered; closing");
                self.sessions.remove(&conn);
                let reason = "heartbeat: test_request not answered".to_owned();
                vec![Delivery { conn, out: Outgoing::Close { code: HEARTBEAT_CLOSE_CODE, reason } }]
            }
        }
    }

    /// A binary frame: Deribit speaks JSON text only.
    pub(crate) fn on_binary(&mut self, conn: ConnId, now: Now) -> Vec<Delivery> {
        if !self.sessions.contains_key(&conn) {
            return Vec::new();
        }
        let error = RpcError::invalid_request("binary frames are not supported; send JSON-RPC as text");
        let timing = Timing { us_in: now.unix_us, us_out: now.unix_us };
        vec![Delivery { conn, out: Outgoing::Text(rpc::response(Some(&Value::Null), Err(error), timing)) }]
    }

    /// A text frame: one JSON-RPC request. The response comes first, then any
    /// notifications it caused (to this and other connections).
    pub(crate) fn on_text(&mut self, conn: ConnId, text: &str, now: Now) -> Vec<Delivery> {
        if !self.sessions.contains_key(&conn) {
            return Vec::new();
        }
        let (id, outcome) = match rpc::parse_request(text) {
            Err(Rejected { id, error }) => (id, Err(error)),
            Ok(request) => {
                let matching = is_matching_engine(&request.method);
                let allowed = self.sessions.get_mut(&conn).is_some_and(|s| s.credits.try_spend(matching, now.instant));
                let outcome =
                    if allowed { self.dispatch(conn, &request, now) } else { Err(RpcError::too_many_requests()) };
                (request.id, outcome)
            }
        };
        if let Err(e) = &outcome {
            tracing::debug!(conn, error = %e, "request failed");
        }
        let timing = Timing { us_in: now.unix_us, us_out: now.unix_us };
        let mut out = vec![Delivery { conn, out: Outgoing::Text(rpc::response(id.as_ref(), outcome, timing)) }];
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
            let data = payload::ticker(&self.markets[idx], now.ms());
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

    fn dispatch(&mut self, conn: ConnId, request: &Request, now: Now) -> Result<Value, RpcError> {
        let p = Params(&request.params);
        match request.method.as_str() {
            "public/auth" => self.authenticate(conn, p, now),
            "public/test" | "public/hello" => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.heartbeat.answered();
                }
                Ok(json!({ "version": API_VERSION }))
            }
            "public/get_time" => Ok(json!(now.ms())),
            "public/set_heartbeat" => self.set_heartbeat(conn, p, now),
            "public/disable_heartbeat" => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.heartbeat.disable();
                }
                Ok(json!("ok"))
            }
            "public/subscribe" => self.subscribe(conn, p, false, now),
            "private/subscribe" => {
                let account = self.account(conn, p, now)?;
                // Subscribing with an `access_token` parameter binds an unauthenticated
                // connection to that account, so `user.*` notifications reach it.
                if let (Some(token), Some(session)) = (p.opt_str("access_token")?, self.sessions.get_mut(&conn)) {
                    session.auth.get_or_insert_with(|| (account, token.to_owned()));
                }
                self.subscribe(conn, p, true, now)
            }
            "public/unsubscribe" => self.unsubscribe(conn, p),
            "private/unsubscribe" => {
                self.account(conn, p, now)?;
                self.unsubscribe(conn, p)
            }
            "public/unsubscribe_all" => self.unsubscribe_all(conn),
            "private/unsubscribe_all" => {
                self.account(conn, p, now)?;
                self.unsubscribe_all(conn)
            }
            "public/get_instruments" => instruments(p),
            "public/ticker" => {
                let idx = instrument_param(p)?;
                Ok(payload::ticker(&self.markets[idx], now.ms()))
            }
            "public/get_order_book" => {
                let idx = instrument_param(p)?;
                let depth = match p.opt_f64("depth")? {
                    None => 20,
                    Some(d) if (1.0..=10_000.0).contains(&d) => d as usize,
                    Some(_) => return Err(RpcError::invalid_params("depth", "must be between 1 and 10000")),
                };
                Ok(payload::order_book(&self.markets[idx], depth, now.ms()))
            }
            "private/buy" => {
                let account = self.account(conn, p, now)?;
                self.place(account, Side::Buy, p, now)
            }
            "private/sell" => {
                let account = self.account(conn, p, now)?;
                self.place(account, Side::Sell, p, now)
            }
            "private/cancel" => {
                let account = self.account(conn, p, now)?;
                self.cancel(account, p, now)
            }
            "private/cancel_all" => {
                let account = self.account(conn, p, now)?;
                Ok(json!(self.cancel_all(account, None, now)))
            }
            "private/cancel_all_by_instrument" => {
                let account = self.account(conn, p, now)?;
                let idx = instrument_param(p)?;
                Ok(json!(self.cancel_all(account, Some(idx), now)))
            }
            "private/get_open_orders_by_instrument" => {
                let account = self.account(conn, p, now)?;
                let idx = instrument_param(p)?;
                Ok(self.open_orders(account, Some(idx)))
            }
            "private/get_open_orders" => {
                let account = self.account(conn, p, now)?;
                Ok(self.open_orders(account, None))
            }
            "private/get_order_state" => {
                let account = self.account(conn, p, now)?;
                self.order_state(account, p)
            }
            _ => Err(RpcError::method_not_found()),
        }
    }

    /// The account a private call acts for: the `access_token` parameter if
    /// given, else the connection's authentication. `13009` unless valid and unexpired.
    fn account(&self, conn: ConnId, p: Params<'_>, now: Now) -> Result<usize, RpcError> {
        if let Some(token) = p.opt_str("access_token")? {
            return self.auth.check(token, now.instant);
        }
        match self.sessions.get(&conn).and_then(|s| s.auth.as_ref()) {
            Some((_, token)) => self.auth.check(token, now.instant),
            None => Err(RpcError::unauthorized("not authenticated")),
        }
    }

    fn authenticate(&mut self, conn: ConnId, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let grant: Grant = match p.str("grant_type")? {
            "client_credentials" => {
                let (id, secret) = (p.str("client_id")?, p.str("client_secret")?);
                self.auth.client_credentials(id, secret, now.instant, now.ms())?
            }
            "refresh_token" => self.auth.refresh(p.str("refresh_token")?, now.instant, now.ms())?,
            _ => return Err(RpcError::invalid_params("grant_type", "supported: client_credentials, refresh_token")),
        };
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.auth = Some((grant.account, grant.access_token.clone()));
        }
        tracing::debug!(conn, account = grant.account, "authenticated");
        Ok(json!({
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": grant.expires_in,
            "scope": "connection mainaccount",
            "token_type": "bearer",
            "enabled_features": [],
        }))
    }

    fn set_heartbeat(&mut self, conn: ConnId, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let secs = p.f64("interval")?;
        let min = self.min_heartbeat;
        let interval = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| *d >= min && *d > Duration::ZERO)
            .ok_or_else(|| RpcError::invalid_params("interval", format!("must be at least {}", min.as_secs_f64())))?;
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.heartbeat.enable(interval, now.instant);
        }
        Ok(json!("ok"))
    }

    fn subscribe(&mut self, conn: ConnId, p: Params<'_>, private: bool, now: Now) -> Result<Value, RpcError> {
        let names = p.str_list("channels")?;
        let Some(session) = self.sessions.get_mut(&conn) else { return Ok(json!([])) };
        let mut subscribed: Vec<&str> = Vec::new();
        let mut added = Vec::new();
        for name in names {
            // Unknown channels, and private ones via public/subscribe, are left out (as on Deribit).
            let Some(channel) = Channel::parse(name).filter(|c| private || !c.is_private()) else { continue };
            if session.subs.insert(channel) {
                added.push(channel);
            }
            if !subscribed.contains(&name) {
                subscribed.push(name);
            }
        }
        for channel in added.into_iter().filter(|c| c.kind == Kind::Book) {
            let data = payload::book_snapshot(&self.markets[channel.instrument], now.ms());
            let text = rpc::notification(&channel.to_string(), &data);
            self.pending.push(Delivery { conn, out: Outgoing::Text(text) });
        }
        Ok(json!(subscribed))
    }

    fn unsubscribe(&mut self, conn: ConnId, p: Params<'_>) -> Result<Value, RpcError> {
        let names = p.str_list("channels")?;
        let Some(session) = self.sessions.get_mut(&conn) else { return Ok(json!([])) };
        let mut removed: Vec<&str> = Vec::new();
        for name in names {
            let Some(channel) = Channel::parse(name) else { continue };
            session.subs.remove(&channel);
            if !removed.contains(&name) {
                removed.push(name);
            }
        }
        Ok(json!(removed))
    }

    fn unsubscribe_all(&mut self, conn: ConnId) -> Result<Value, RpcError> {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.subs.clear();
        }
        Ok(json!("ok"))
    }

    /// Queues a notification of `data` to every subscriber of a `kind`
    /// channel of `instrument` (only connections of `account` when given).
    /// On `user.orders` channels other than `raw`, data is wrapped in a list.
    pub(super) fn publish(&mut self, kind: Kind, instrument: usize, account: Option<usize>, data: &Value) {
        for (&conn, session) in &self.sessions {
            if account.is_some() && session.auth.as_ref().map(|a| a.0) != account {
                continue;
            }
            for channel in session.subs.iter().filter(|c| c.kind == kind && c.instrument == instrument) {
                let wrapped;
                let data = if kind == Kind::UserOrders && channel.interval != Interval::Raw {
                    wrapped = json!([data]);
                    &wrapped
                } else {
                    data
                };
                let text = rpc::notification(&channel.to_string(), data);
                self.pending.push(Delivery { conn, out: Outgoing::Text(text) });
            }
        }
    }

    /// Publishes a `book` change turning `before` into the current book (nothing if equal).
    pub(super) fn publish_book_change(&mut self, idx: usize, before: (Levels, Levels), now: Now) {
        let market = &mut self.markets[idx];
        let (bids, asks) = market.levels();
        let bid_changes = payload::level_diff(&market.spec, &before.0, &bids, true);
        let ask_changes = payload::level_diff(&market.spec, &before.1, &asks, false);
        if bid_changes.is_empty() && ask_changes.is_empty() {
            return;
        }
        let prev = market.change_id;
        market.change_id += 1;
        let data = payload::book_change(market, prev, bid_changes, ask_changes, now.ms());
        self.publish(Kind::Book, idx, None, &data);
    }

    /// Publishes `executions` on the public `trades` channel.
    pub(super) fn publish_trades(&mut self, idx: usize, executions: &[Execution], now: Now) {
        if executions.is_empty() {
            return;
        }
        let spec = self.markets[idx].spec;
        let trades: Vec<Value> = executions.iter().map(|e| payload::public_trade(&spec, &e.trade, now.ms())).collect();
        self.publish(Kind::Trades, idx, None, &Value::Array(trades));
    }

    /// Applies fills to accounts' resting (maker) orders and notifies their
    /// owners (`user.orders`, `user.trades`). `taker` is the account whose
    /// order took the liquidity, if any (for `self_trade`).
    pub(super) fn settle_makers(&mut self, idx: usize, executions: &[Execution], taker: Option<usize>, now: Now) {
        for e in executions {
            let Owner::Account(account) = e.fill.maker_owner else { continue };
            let Some(order) = self.orders.get_mut(&e.fill.maker_id) else { continue };
            order.fill(e.fill.price, e.fill.amount, now.ms());
            let trade = payload::user_trade(order, &e.trade, true, taker == Some(account), now.ms());
            let order = order.to_json();
            self.publish(Kind::UserOrders, idx, Some(account), &order);
            self.publish(Kind::UserTrades, idx, Some(account), &json!([trade]));
        }
    }
}

/// `instrument_name` parameter as an index into [`INSTRUMENTS`].
pub(super) fn instrument_param(p: Params<'_>) -> Result<usize, RpcError> {
    let name = p.str("instrument_name")?;
    index_of(name).ok_or_else(|| RpcError::invalid_params("instrument_name", format!("unknown instrument {name:?}")))
}

/// `public/get_instruments`.
fn instruments(p: Params<'_>) -> Result<Value, RpcError> {
    let currency = p.str("currency")?;
    if !matches!(currency, "BTC" | "ETH" | "USDC" | "USDT" | "EURR" | "any") {
        return Err(RpcError::invalid_params("currency", "unknown currency"));
    }
    let kind_ok = p.opt_str("kind")?.is_none_or(|k| k == "future");
    let expired = p.opt_bool("expired")?.unwrap_or(false);
    let list: Vec<Value> = INSTRUMENTS
        .iter()
        .filter(|i| kind_ok && !expired && (currency == "any" || currency == i.currency))
        .map(payload::instrument)
        .collect();
    Ok(Value::Array(list))
}
