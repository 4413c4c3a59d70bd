//! [`DeribitClient`]: typed Deribit calls over a [`Client`] with the
//! [`Deribit`](crate::dialect::Deribit) dialect, and its event stream
//! ([`DeribitEvents`](super::DeribitEvents)) with book integrity, order events and
//! reconciliation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::errors::{DeribitError, ErrorClass};
use super::events::{DeribitEvent, DeribitEvents, Internal, OrderEvent, OrderSource};
use super::orders::Registry;
use super::types::{
    EditRequest, Instrument, Order, OrderBookSnapshot, OrderRequest, OrderResult, PlatformStatus, Ticker, currency_of,
};
use crate::client::{Client, SubscribeOutcome};
use crate::config::{ClientConfig, LimitMode, RateLimit};
use crate::dialect::{AuthInfo, Credentials, Deribit};
use crate::error::ClientError;
use crate::jsonrpc::RawValue;

/// Deribit's error code for "platform locked for maintenance".
const MAINTENANCE: i64 = 11051;

/// How often a call waiting for the end of maintenance asks `public/status`.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// What the façade and its event stream share.
pub(crate) struct Facade {
    pub client: Client,
    pub dialect: Deribit,
    pub registry: Mutex<Registry>,
    /// Trading is locked (maintenance), as last learned.
    pub locked: watch::Sender<bool>,
    pub internal: mpsc::Sender<Internal>,
    pub maintenance_wait: Duration,
    label_prefix: String,
    label_seq: AtomicU64,
    /// Itself, for the tasks a call spawns.
    me: Weak<Facade>,
}

impl Facade {
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A JSON-RPC call with the error mapped; a call refused because the token is gone is
    /// made again once, after the re-authentication (it was not processed).
    pub async fn call_raw(&self, method: &str, params: &Value) -> Result<Box<RawValue>, DeribitError> {
        match self.client.request(method, params).await {
            Ok(raw) => Ok(raw),
            Err(e) => {
                let e = DeribitError::from(e);
                if e.class() != ErrorClass::Reauthenticate {
                    return Err(e);
                }
                self.client.reauthenticate().await?;
                Ok(self.client.request(method, params).await?)
            }
        }
    }

    /// As [`call_raw`](Self::call_raw), read as `T`.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: &Value) -> Result<T, DeribitError> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(raw.get())
            .map_err(|e| DeribitError::Decode { method: method.to_owned(), reason: e.to_string() })
    }

    fn next_label(&self) -> String {
        let n = self.label_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.label_prefix)
    }

    /// Waits while trading is locked, asking `public/status` now and then; at most
    /// `maintenance_wait`.
    async fn await_unlocked(&self) -> Result<(), DeribitError> {
        let started = Instant::now();
        let deadline = started + self.maintenance_wait;
        let mut rx = self.locked.subscribe();
        while *rx.borrow_and_update() {
            let now = Instant::now();
            if now >= deadline {
                return Err(DeribitError::Maintenance { waited: now - started });
            }
            let wake = (now + STATUS_POLL).min(deadline);
            if tokio::time::timeout_at(wake, rx.wait_for(|locked| !*locked)).await.is_ok() {
                return Ok(());
            }
            if let Ok(status) = self.call::<PlatformStatus>("public/status", &json!({})).await {
                self.locked.send_replace(status.is_locked());
            }
        }
        Ok(())
    }

    /// `private/buy`, `sell`, `edit` or `cancel`: waits out maintenance (not for a
    /// cancel), keeps the order's label to find it again if the answer is lost (`placement`:
    /// a buy or sell), records the answer.
    async fn trade<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        label: Option<(&str, &str)>,
        placement: bool,
        order_of: impl Fn(&T) -> &Order,
    ) -> Result<T, DeribitError> {
        if method != "private/cancel" {
            self.await_unlocked().await?;
        }
        let mut again = true;
        loop {
            let error = match self.client.request(method, &params).await {
                Ok(raw) => {
                    let result: T = serde_json::from_str(raw.get())
                        .map_err(|e| DeribitError::Decode { method: method.to_owned(), reason: e.to_string() })?;
                    self.registry().observe(order_of(&result));
                    return Ok(result);
                }
                Err(e) => e,
            };
            let unknown = matches!(error, ClientError::Disconnected { sent: true } | ClientError::Timeout { .. });
            if let (true, Some((label, instrument))) = (unknown, label) {
                self.registry().outcome_unknown(label, instrument, placement);
                if matches!(error, ClientError::Timeout { .. }) {
                    // Still connected: look it up now rather than at the next reconnect.
                    if let Some(me) = self.me.upgrade() {
                        spawn_reconcile(me, Reconcile::LabelsOnly);
                    }
                }
                return Err(DeribitError::OutcomeUnknown { label: label.to_owned(), source: error });
            }
            let error = DeribitError::from(error);
            // Refused before processing: made again once, when it can succeed.
            match (again, error.code(), error.class()) {
                (true, Some(MAINTENANCE), _) => {
                    self.locked.send_replace(true);
                    self.await_unlocked().await?;
                }
                (true, _, ErrorClass::Reauthenticate) => self.client.reauthenticate().await?,
                _ => return Err(error),
            }
            again = false;
        }
    }
}

/// What a reconciliation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reconcile {
    /// After a (re)connect: platform state, open orders, orders
    /// last seen open, unknown outcomes.
    Full {
        /// The first connection (subscribe to `platform_state`).
        first: bool,
    },
    /// Only the order requests whose outcome is unknown.
    LabelsOnly,
}

/// Runs a reconciliation in a task of its own; its findings reach the event stream.
pub(crate) fn spawn_reconcile(facade: Arc<Facade>, what: Reconcile) {
    tokio::spawn(async move {
        let tx = facade.internal.clone();
        let event = match reconcile(&facade, what).await {
            Ok((open, resolved)) => DeribitEvent::Reconciled { open, resolved },
            Err(e) => DeribitEvent::ReconciliationFailed(e),
        };
        let _ = tx.send(Internal::Event(event)).await;
    });
}

async fn emit(facade: &Facade, event: DeribitEvent) -> Result<(), DeribitError> {
    facade.internal.send(Internal::Event(event)).await.map_err(|_| DeribitError::Client(ClientError::Closed))
}

async fn reconcile(facade: &Facade, what: Reconcile) -> Result<(usize, usize), DeribitError> {
    let mut open_count = 0;
    if let Reconcile::Full { first } = what {
        if first {
            let out = facade.client.subscribe(&["platform_state"]).await?;
            if !out.refused.is_empty() {
                tracing::info!(refused = ?out.refused, "platform_state not available");
            }
        }
        let status: PlatformStatus = facade.call("public/status", &json!({})).await?;
        facade.locked.send_replace(status.is_locked());
        if facade.dialect.credentials().is_some() {
            let open: Vec<Order> = facade.call("private/get_open_orders", &json!({})).await?;
            open_count = open.len();
            for order in &open {
                let new = facade.registry().observe(order);
                if new {
                    emit(facade, order_event(order.clone(), OrderSource::Reconciled)).await?;
                }
            }
            // Orders last seen open that are not any more: what became of them while away.
            let gone: Vec<String> = facade
                .registry()
                .live()
                .into_iter()
                .filter(|(id, _)| !open.iter().any(|o| &o.order_id == id))
                .map(|(id, _)| id)
                .collect();
            for id in gone {
                let order: Order = facade.call("private/get_order_state", &json!({ "order_id": id })).await?;
                let new = facade.registry().observe(&order);
                if new {
                    emit(facade, order_event(order, OrderSource::Reconciled)).await?;
                }
            }
        }
    }
    let mut resolved = 0;
    let unknown = facade.registry().unknown();
    for (label, unknown) in unknown {
        let params = json!({"currency": currency_of(&unknown.instrument_name), "label": label});
        let orders: Vec<Order> = facade.call("private/get_order_state_by_label", &params).await?;
        let mine = facade.registry().resolve(&label);
        if !mine {
            continue; // another reconciliation reported it
        }
        resolved += 1;
        if orders.is_empty() && unknown.placement {
            emit(facade, DeribitEvent::OrderNotPlaced { label }).await?;
        }
        for order in orders {
            let new = facade.registry().observe(&order);
            if new {
                emit(facade, order_event(order, OrderSource::Reconciled)).await?;
            }
        }
    }
    Ok((open_count, resolved))
}

fn order_event(order: Order, source: OrderSource) -> DeribitEvent {
    DeribitEvent::Order(OrderEvent { order, source })
}

/// The Deribit façade: typed calls over a [`Client`] speaking the
/// [`Deribit`](crate::dialect::Deribit) dialect, and, through its
/// [`DeribitEvents`], order-book integrity on `book.*` channels, typed order events and
/// reconciliation after every (re)connect. Cheap to clone.
///
/// - **Authentication** (with [`Credentials`]): on every (re)connect before private
///   subscriptions are restored, renewed with the refresh token at 80 % of its life; a call
///   refused because the token expired or was revoked (13009, 13010) is made again once
///   after the client re-authenticated.
/// - **Rate limit**: if the configuration has none, Deribit's credit model
///   ([`RateLimit::deribit`], waiting up to the request timeout): Deribit ends the session
///   when its credits run out, so the client paces itself (subscription restores included).
/// - **Orders**: every order gets a label (generated when none is given) so that an order
///   whose answer was lost ([`DeribitError::OutcomeUnknown`]) is found again; `buy`, `sell`
///   and `edit` wait while the platform is locked for maintenance (at most the request
///   timeout, asking `public/status` every second), and one refused with 11051 waits and is
///   sent again once.
///
/// ```no_run
/// # async fn demo() -> Result<(), moorline_client::deribit::DeribitError> {
/// use moorline_client::ClientConfig;
/// use moorline_client::deribit::{DeribitClient, DeribitEvent};
/// use moorline_client::deribit::types::OrderRequest;
/// use moorline_client::dialect::Credentials;
///
/// let credentials = Credentials::new("client-id", "client-secret").signed().scope("session:bot");
/// let (deribit, mut events) =
///     DeribitClient::connect("wss://test.deribit.com/ws/api/v2", ClientConfig::default(), Some(credentials))?;
/// deribit.subscribe(&["book.BTC-PERPETUAL.100ms", "user.orders.BTC-PERPETUAL.raw"]).await?;
/// let ticker = deribit.ticker("BTC-PERPETUAL").await?;
/// let bid = ticker.best_bid_price.unwrap_or(ticker.mark_price);
/// let placed = deribit.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, (bid * 0.9).round())).await?;
/// println!("order {} is {:?}", placed.order.order_id, placed.order.order_state);
/// while let Some(event) = events.recv().await {
///     match event {
///         DeribitEvent::Book { update, .. } => println!("book change {}", update.change_id),
///         DeribitEvent::BookGap { instrument, expected, got, .. } => println!("{instrument}: gap {expected:?} / {got:?}, resyncing"),
///         DeribitEvent::Order(o) => println!("order {} now {:?}", o.order.order_id, o.order.order_state),
///         other => println!("{other:?}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeribitClient {
    facade: Arc<Facade>,
}

impl std::fmt::Debug for DeribitClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeribitClient").field("client", &self.facade.client).finish_non_exhaustive()
    }
}

impl DeribitClient {
    /// Starts a client for `url` (see [`Client::connect`]); with `credentials`, every
    /// (re)connect authenticates. Returns at once; the [`DeribitEvents`] stream says when
    /// the session is up. Must be called within a tokio runtime.
    pub fn connect(
        url: &str,
        mut config: ClientConfig,
        credentials: Option<Credentials>,
    ) -> Result<(DeribitClient, DeribitEvents), ClientError> {
        if config.rate_limit.is_none() {
            config.rate_limit = Some(RateLimit::deribit(LimitMode::Wait { max_wait: config.request_timeout }));
        }
        let maintenance_wait = config.request_timeout;
        let dialect = credentials.map(Deribit::with_credentials).unwrap_or_default();
        let (client, events) = Client::connect_dyn(url, config, Arc::new(dialect.clone()))?;
        let (tx, rx) = mpsc::channel(256);
        let label_prefix = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x6d6c);
            format!("ml{:012x}", h.finish() & 0xffff_ffff_ffff)
        };
        let facade = Arc::new_cyclic(|me| Facade {
            client,
            dialect,
            registry: Mutex::new(Registry::default()),
            locked: watch::channel(false).0,
            internal: tx,
            maintenance_wait,
            label_prefix,
            label_seq: AtomicU64::new(1),
            me: me.clone(),
        });
        let events = DeribitEvents::new(events, rx, facade.clone());
        Ok((DeribitClient { facade }, events))
    }

    /// The client underneath (raw requests, statistics, state).
    pub fn client(&self) -> &Client {
        &self.facade.client
    }

    /// What the last authentication granted (scope, `sid` of a named session, lifetime).
    pub fn auth_info(&self) -> Option<AuthInfo> {
        self.facade.dialect.auth_info()
    }

    /// Whether trading is locked for maintenance, as last learned (`platform_state`,
    /// `public/status`, an 11051 answer).
    pub fn is_locked(&self) -> bool {
        *self.facade.locked.borrow()
    }

    /// Any method, its result read as `T` (errors mapped, a call refused for an expired
    /// token made again once after re-authentication).
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, DeribitError> {
        self.facade.call(method, &params).await
    }

    /// `public/get_time`: the venue's clock, ms since the epoch.
    pub async fn get_time(&self) -> Result<u64, DeribitError> {
        self.call("public/get_time", json!({})).await
    }

    /// `public/status`.
    pub async fn status(&self) -> Result<PlatformStatus, DeribitError> {
        let status: PlatformStatus = self.call("public/status", json!({})).await?;
        self.facade.locked.send_replace(status.is_locked());
        Ok(status)
    }

    /// `public/get_instruments` of `currency` (`BTC`, `ETH`, `any`...), of `kind` if given.
    pub async fn get_instruments(&self, currency: &str, kind: Option<&str>) -> Result<Vec<Instrument>, DeribitError> {
        let mut params = json!({ "currency": currency });
        if let (Some(kind), Some(map)) = (kind, params.as_object_mut()) {
            map.insert("kind".into(), json!(kind));
        }
        self.call("public/get_instruments", params).await
    }

    /// `public/ticker`.
    pub async fn ticker(&self, instrument_name: &str) -> Result<Ticker, DeribitError> {
        self.call("public/ticker", json!({ "instrument_name": instrument_name })).await
    }

    /// `public/get_order_book`, `depth` levels per side (Deribit's default if `None`).
    pub async fn get_order_book(
        &self,
        instrument_name: &str,
        depth: Option<u32>,
    ) -> Result<OrderBookSnapshot, DeribitError> {
        let mut params = json!({ "instrument_name": instrument_name });
        if let (Some(depth), Some(map)) = (depth, params.as_object_mut()) {
            map.insert("depth".into(), json!(depth));
        }
        self.call("public/get_order_book", params).await
    }

    /// Subscribes (see [`Client::subscribe`]); `book.*` channels are checked for gaps by the
    /// event stream, `user.orders.*` ones become order events.
    pub async fn subscribe(&self, channels: &[&str]) -> Result<SubscribeOutcome, DeribitError> {
        Ok(self.facade.client.subscribe(channels).await?)
    }

    /// Unsubscribes.
    pub async fn unsubscribe(&self, channels: &[&str]) -> Result<SubscribeOutcome, DeribitError> {
        Ok(self.facade.client.unsubscribe(channels).await?)
    }

    /// `private/buy`.
    pub async fn buy(&self, order: OrderRequest) -> Result<OrderResult, DeribitError> {
        self.place("private/buy", order).await
    }

    /// `private/sell`.
    pub async fn sell(&self, order: OrderRequest) -> Result<OrderResult, DeribitError> {
        self.place("private/sell", order).await
    }

    async fn place(&self, method: &str, mut order: OrderRequest) -> Result<OrderResult, DeribitError> {
        let label = match order.label.take() {
            Some(l) if !l.is_empty() => l,
            _ => self.facade.next_label(),
        };
        order.label = Some(label.clone());
        let params = serde_json::to_value(&order)
            .map_err(|e| DeribitError::Decode { method: method.to_owned(), reason: e.to_string() })?;
        let target = Some((label.as_str(), order.instrument_name.as_str()));
        self.facade.trade(method, params, target, true, |r: &OrderResult| &r.order).await
    }

    /// `private/edit`. If its answer is lost, an order this façade has seen is looked up by
    /// its label ([`DeribitError::OutcomeUnknown`], then order events), as for a buy.
    pub async fn edit(&self, edit: EditRequest) -> Result<OrderResult, DeribitError> {
        let params = serde_json::to_value(&edit)
            .map_err(|e| DeribitError::Decode { method: "private/edit".into(), reason: e.to_string() })?;
        let known = self.facade.registry().label_of(&edit.order_id);
        let target = known.as_ref().map(|(l, i)| (l.as_str(), i.as_str()));
        self.facade.trade("private/edit", params, target, false, |r: &OrderResult| &r.order).await
    }

    /// `private/cancel`: the order as cancelled. If its answer is lost, an order this
    /// façade has seen is looked up by its label, as for an edit.
    pub async fn cancel(&self, order_id: &str) -> Result<Order, DeribitError> {
        let known = self.facade.registry().label_of(order_id);
        let target = known.as_ref().map(|(l, i)| (l.as_str(), i.as_str()));
        let params = json!({ "order_id": order_id });
        self.facade.trade("private/cancel", params, target, false, |o: &Order| o).await
    }

    /// `private/cancel_all`: how many orders were cancelled.
    pub async fn cancel_all(&self) -> Result<u64, DeribitError> {
        self.call("private/cancel_all", json!({})).await
    }

    /// `private/get_open_orders`.
    pub async fn get_open_orders(&self) -> Result<Vec<Order>, DeribitError> {
        self.call("private/get_open_orders", json!({})).await
    }

    /// `private/get_open_orders_by_label`.
    pub async fn get_open_orders_by_label(&self, currency: &str, label: &str) -> Result<Vec<Order>, DeribitError> {
        self.call("private/get_open_orders_by_label", json!({ "currency": currency, "label": label })).await
    }

    /// `private/get_order_state`.
    pub async fn get_order_state(&self, order_id: &str) -> Result<Order, DeribitError> {
        self.call("private/get_order_state", json!({ "order_id": order_id })).await
    }

    /// `private/get_order_state_by_label`: every order with that label.
    pub async fn get_order_state_by_label(&self, currency: &str, label: &str) -> Result<Vec<Order>, DeribitError> {
        self.call("private/get_order_state_by_label", json!({ "currency": currency, "label": label })).await
    }

    /// `private/enable_cancel_on_disconnect` (connection scope): Deribit cancels the
    /// account's orders when this connection ends (not on logout). Asked again on every
    /// reconnect by the client itself, right after the authentication, before the
    /// subscriptions are restored and before `Reconnected` (so an order placed as soon as
    /// the session is back is covered); a refusal then ends that attempt.
    pub async fn enable_cancel_on_disconnect(&self) -> Result<(), DeribitError> {
        self.facade.dialect.set_cancel_on_disconnect(true);
        self.facade.call_raw("private/enable_cancel_on_disconnect", &json!({"scope": "connection"})).await?;
        Ok(())
    }

    /// `private/disable_cancel_on_disconnect` (connection scope).
    pub async fn disable_cancel_on_disconnect(&self) -> Result<(), DeribitError> {
        self.facade.dialect.set_cancel_on_disconnect(false);
        self.facade.call_raw("private/disable_cancel_on_disconnect", &json!({"scope": "connection"})).await?;
        Ok(())
    }

    /// Closes the client (see [`Client::close`]).
    pub async fn close(&self) -> Result<(), DeribitError> {
        Ok(self.facade.client.close().await?)
    }
}
