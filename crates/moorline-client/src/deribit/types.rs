//! Typed requests and answers of the Deribit methods the façade
//! ([`DeribitClient`](super::DeribitClient)) calls, as Deribit documents them (docs.deribit.com).
//!
//! Reading is lenient where Deribit is: members the types do not name are skipped, optional
//! ones default, and a price may be a number or (older API versions, market orders) a
//! string such as `"market_price"` (read as `None`).

use serde::{Deserialize, Deserializer, Serialize};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// An order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Resting on the book.
    Open,
    /// Completely filled.
    Filled,
    /// Rejected.
    Rejected,
    /// Cancelled (by the user, cancel-on-disconnect, the venue...: see `cancel_reason`).
    Cancelled,
    /// A trigger order waiting for its trigger.
    Untriggered,
    /// A trigger order that fired.
    Triggered,
    /// A state this version does not know.
    #[serde(other)]
    Other,
}

impl OrderState {
    /// Whether the order can still change (open or waiting for a trigger).
    pub fn is_live(self) -> bool {
        matches!(self, OrderState::Open | OrderState::Untriggered | OrderState::Triggered)
    }
}

/// An order, as `private/buy`, `get_order_state`, `get_open_orders` and `user.orders` give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Deribit's id.
    pub order_id: String,
    /// Its state.
    pub order_state: OrderState,
    /// The instrument.
    pub instrument_name: String,
    /// Buy or sell.
    pub direction: Direction,
    /// `limit`, `market`, `stop_limit`...
    #[serde(default)]
    pub order_type: String,
    /// The limit price (`None`: a market order whose price Deribit gives as text).
    #[serde(default, deserialize_with = "lenient_price")]
    pub price: Option<f64>,
    /// The amount (USD for inverse perpetuals, the base currency otherwise).
    pub amount: f64,
    /// What is filled.
    #[serde(default)]
    pub filled_amount: f64,
    /// Average fill price.
    #[serde(default, deserialize_with = "lenient_price")]
    pub average_price: Option<f64>,
    /// The user's label (the façade sets one on every order).
    #[serde(default)]
    pub label: String,
    /// `good_til_cancelled`, `immediate_or_cancel`...
    #[serde(default)]
    pub time_in_force: String,
    /// Post-only.
    #[serde(default)]
    pub post_only: bool,
    /// Reduce-only.
    #[serde(default)]
    pub reduce_only: bool,
    /// Created (ms since the epoch).
    #[serde(default)]
    pub creation_timestamp: u64,
    /// Last changed (ms since the epoch).
    #[serde(default)]
    pub last_update_timestamp: u64,
    /// Why it was cancelled (`user_request`, `cancel_on_disconnect`...).
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// Whether it was edited.
    #[serde(default)]
    pub replaced: bool,
}

/// One of the account's trades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// The trade's id.
    pub trade_id: String,
    /// The order it filled.
    #[serde(default)]
    pub order_id: Option<String>,
    /// The instrument.
    pub instrument_name: String,
    /// Price.
    pub price: f64,
    /// Amount.
    pub amount: f64,
    /// The order's direction.
    pub direction: Direction,
    /// When (ms since the epoch).
    #[serde(default)]
    pub timestamp: u64,
    /// The instrument's trade sequence number.
    #[serde(default)]
    pub trade_seq: u64,
    /// `M` (maker) or `T` (taker).
    #[serde(default)]
    pub liquidity: Option<String>,
    /// The order's label.
    #[serde(default)]
    pub label: Option<String>,
    /// The fee.
    #[serde(default)]
    pub fee: Option<f64>,
}

/// What `private/buy`, `sell` and `edit` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderResult {
    /// The order after the request.
    pub order: Order,
    /// The trades it made at once.
    #[serde(default)]
    pub trades: Vec<Trade>,
}

/// An instrument (`public/get_instruments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    /// Its name (`BTC-PERPETUAL`).
    pub instrument_name: String,
    /// `future`, `option`, `spot`...
    pub kind: String,
    /// Base currency.
    pub base_currency: String,
    /// Quote currency.
    #[serde(default)]
    pub quote_currency: String,
    /// Settlement currency.
    #[serde(default)]
    pub settlement_currency: Option<String>,
    /// Price step.
    pub tick_size: f64,
    /// Contract size.
    pub contract_size: f64,
    /// Smallest order amount.
    pub min_trade_amount: f64,
    /// Trading open.
    #[serde(default)]
    pub is_active: bool,
    /// `perpetual`, `month`...
    #[serde(default)]
    pub settlement_period: Option<String>,
    /// Expiry (ms since the epoch).
    #[serde(default)]
    pub expiration_timestamp: u64,
}

/// A ticker (`public/ticker`, `ticker.*` channels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticker {
    /// The instrument.
    pub instrument_name: String,
    /// When (ms since the epoch).
    pub timestamp: u64,
    /// `open`, `closed`.
    #[serde(default)]
    pub state: String,
    /// Best bid (`None`: no bid).
    #[serde(default, deserialize_with = "lenient_price")]
    pub best_bid_price: Option<f64>,
    /// Amount at the best bid.
    #[serde(default)]
    pub best_bid_amount: f64,
    /// Best ask (`None`: no ask).
    #[serde(default, deserialize_with = "lenient_price")]
    pub best_ask_price: Option<f64>,
    /// Amount at the best ask.
    #[serde(default)]
    pub best_ask_amount: f64,
    /// Last trade price.
    #[serde(default, deserialize_with = "lenient_price")]
    pub last_price: Option<f64>,
    /// Mark price.
    pub mark_price: f64,
    /// Index price.
    #[serde(default)]
    pub index_price: f64,
    /// Lowest price a sell order may have now.
    #[serde(default, deserialize_with = "lenient_price")]
    pub min_price: Option<f64>,
    /// Highest price a buy order may have now.
    #[serde(default, deserialize_with = "lenient_price")]
    pub max_price: Option<f64>,
    /// Open interest.
    #[serde(default)]
    pub open_interest: f64,
}

/// An order book (`public/get_order_book`): `[price, amount]` per level, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderBookSnapshot {
    /// The instrument.
    pub instrument_name: String,
    /// When (ms since the epoch).
    pub timestamp: u64,
    /// The book's `change_id` (the `book.*` channel's).
    #[serde(default)]
    pub change_id: u64,
    /// Bids, best (highest) first.
    pub bids: Vec<(f64, f64)>,
    /// Asks, best (lowest) first.
    pub asks: Vec<(f64, f64)>,
    /// Mark price.
    #[serde(default)]
    pub mark_price: f64,
}

/// `public/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformStatus {
    /// `"true"`, `"false"` or `"partial"` (Deribit's strings).
    pub locked: String,
    /// The indices whose instruments are locked.
    #[serde(default)]
    pub locked_indices: Vec<String>,
}

impl PlatformStatus {
    /// Whether trading is locked (fully or partly).
    pub fn is_locked(&self) -> bool {
        self.locked != "false"
    }
}

/// A new order (`private/buy` or `private/sell`).
///
/// ```
/// use moorline_client::deribit::types::OrderRequest;
///
/// let order = OrderRequest::limit("BTC-PERPETUAL", 10.0, 60_000.0).label("hedge-1").post_only(true);
/// assert_eq!(order.label.as_deref(), Some("hedge-1"));
/// let market = OrderRequest::market("ETH-PERPETUAL", 1.0);
/// assert_eq!((market.order_type.as_str(), market.price), ("market", None));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRequest {
    /// The instrument.
    pub instrument_name: String,
    /// Amount.
    pub amount: f64,
    /// `limit` or `market`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// Limit price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// The label (at most 64 characters). The façade sets one when it is `None`, to find
    /// the order again if its answer is lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `good_til_cancelled` (Deribit's default), `good_til_day`, `fill_or_kill`,
    /// `immediate_or_cancel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_in_force: Option<String>,
    /// Post-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub post_only: bool,
    /// Reduce-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reduce_only: bool,
}

impl OrderRequest {
    /// A limit order.
    pub fn limit(instrument_name: impl Into<String>, amount: f64, price: f64) -> Self {
        Self {
            instrument_name: instrument_name.into(),
            amount,
            order_type: "limit".into(),
            price: Some(price),
            label: None,
            time_in_force: None,
            post_only: false,
            reduce_only: false,
        }
    }

    /// A market order.
    pub fn market(instrument_name: impl Into<String>, amount: f64) -> Self {
        Self { order_type: "market".into(), price: None, ..Self::limit(instrument_name, amount, 0.0) }
    }

    /// With this label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// With this time in force.
    pub fn time_in_force(mut self, tif: impl Into<String>) -> Self {
        self.time_in_force = Some(tif.into());
        self
    }

    /// Post-only.
    pub fn post_only(mut self, on: bool) -> Self {
        self.post_only = on;
        self
    }

    /// Reduce-only.
    pub fn reduce_only(mut self, on: bool) -> Self {
        self.reduce_only = on;
        self
    }
}

/// A change to an open order (`private/edit`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EditRequest {
    /// The order.
    pub order_id: String,
    /// The new amount.
    pub amount: f64,
    /// The new price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// The currency an instrument's orders are queried by (`BTC-PERPETUAL`: BTC;
/// `BTC_USDC-PERPETUAL`: USDC).
///
/// ```
/// use moorline_client::deribit::types::currency_of;
/// assert_eq!(currency_of("BTC-PERPETUAL"), "BTC");
/// assert_eq!(currency_of("ETH-27DEC24-4000-C"), "ETH");
/// assert_eq!(currency_of("BTC_USDC-PERPETUAL"), "USDC");
/// ```
pub fn currency_of(instrument_name: &str) -> &str {
    let base = instrument_name.split('-').next().unwrap_or(instrument_name);
    base.split_once('_').map_or(base, |(_, quote)| quote)
}

fn lenient_price<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_order_as_deribit_sends_it_and_a_market_price_as_text() {
        let text = r#"{"web":false,"time_in_force":"good_til_cancelled","replaced":false,"reduce_only":false,
            "price":8900.0,"post_only":false,"order_type":"limit","order_state":"open","order_id":"4008965646",
            "max_show":40.0,"last_update_timestamp":1550050594882,"label":"","is_liquidation":false,
            "instrument_name":"BTC-PERPETUAL","filled_amount":0.0,"direction":"sell","creation_timestamp":1550050594882,
            "commission":0.0,"average_price":0.0,"api":true,"amount":40.0}"#;
        let o: Order = serde_json::from_str(text).unwrap();
        assert_eq!(
            (o.order_state, o.direction, o.price, o.amount),
            (OrderState::Open, Direction::Sell, Some(8900.0), 40.0)
        );
        let m: Order = serde_json::from_str(&text.replace("8900.0", "\"market_price\"")).unwrap();
        assert_eq!(m.price, None);
        let odd: Order = serde_json::from_str(&text.replace("\"open\"", "\"archived\"")).unwrap();
        assert_eq!(odd.order_state, OrderState::Other);
        assert!(OrderState::Open.is_live() && !OrderState::Cancelled.is_live());
    }

    #[test]
    fn order_requests_serialize_as_deribit_params() {
        let r = OrderRequest::limit("BTC-PERPETUAL", 10.0, 100.5).label("a");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"limit","price":100.5,"label":"a"})
        );
        let m = OrderRequest::market("BTC-PERPETUAL", 10.0).post_only(true);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"instrument_name":"BTC-PERPETUAL","amount":10.0,"type":"market","post_only":true})
        );
    }
}
