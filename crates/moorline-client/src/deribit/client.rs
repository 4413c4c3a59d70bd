//! [`DeribitClient`]: typed Deribit calls over a [`Client`] with the
//! [`Deribit`](crate::dialect::Deribit) dialect, and its event stream
//! ([`DeribitEvents`](super::DeribitEvents)) with book integrity, order events and
//! reconciliation.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::errors::DeribitError;
use super::events::DeribitEvents;
use super::facade::Facade;
use super::orders::Registry;
use super::types::{
    EditRequest, Instrument, Order, OrderBookSnapshot, OrderRequest, OrderResult, PlatformStatus, Ticker,
};
use crate::client::{Client, SubscribeOutcome};
use crate::config::{ClientConfig, LimitMode, RateLimit};
use crate::dialect::{AuthInfo, Credentials, Deribit};
use crate::error::ClientError;

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
