//! Orders placed by test accounts, and their Deribit JSON shape.

use serde_json::{Value, json};

use super::book::Side;
use super::instrument::{INSTRUMENTS, InstrumentSpec};

/// `type` of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderType {
    Limit,
    Market,
}

/// `time_in_force` of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeInForce {
    GoodTilCancelled,
    GoodTilDay,
    ImmediateOrCancel,
    FillOrKill,
}

impl TimeInForce {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "good_til_cancelled" => Some(Self::GoodTilCancelled),
            "good_til_day" => Some(Self::GoodTilDay),
            "immediate_or_cancel" => Some(Self::ImmediateOrCancel),
            "fill_or_kill" => Some(Self::FillOrKill),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::GoodTilCancelled => "good_til_cancelled",
            Self::GoodTilDay => "good_til_day",
            Self::ImmediateOrCancel => "immediate_or_cancel",
            Self::FillOrKill => "fill_or_kill",
        }
    }

    /// Whether the unfilled rest of a limit order rests in the book.
    pub(crate) fn rests(self) -> bool {
        matches!(self, Self::GoodTilCancelled | Self::GoodTilDay)
    }
}

/// `order_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderState {
    Open,
    Filled,
    Cancelled,
}

impl OrderState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Filled => "filled",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An order of a test account.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserOrder {
    pub(crate) id: u64,
    pub(crate) account: usize,
    pub(crate) instrument: usize,
    pub(crate) side: Side,
    pub(crate) order_type: OrderType,
    pub(crate) time_in_force: TimeInForce,
    /// Limit price in ticks (`None` for market orders).
    pub(crate) price: Option<i64>,
    /// The price a market order reports (its protection limit: the ticker's `max_price`
    /// for a buy, `min_price` for a sell, when it was placed), as Deribit shows a number.
    pub(crate) market_price: i64,
    /// Times the order was edited (`replaced` is `true` after the first).
    pub(crate) edits: u32,
    pub(crate) amount: u64,
    pub(crate) filled: u64,
    /// Sum of fill price (USD) times fill amount, for `average_price`.
    pub(crate) filled_value: f64,
    pub(crate) state: OrderState,
    pub(crate) label: String,
    pub(crate) post_only: bool,
    pub(crate) reduce_only: bool,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
    pub(crate) cancel_reason: Option<&'static str>,
}

/// Deribit's id for order or trade number `n` of `spec`: plain digits for
/// BTC instruments, `ETH-<digits>` for the others, as on Deribit.
pub(crate) fn public_id(n: u64, spec: &InstrumentSpec) -> String {
    if spec.currency == "BTC" { n.to_string() } else { format!("{}-{n}", spec.currency) }
}

/// The number inside an order id string (checked against the order's own id by the caller).
pub(crate) fn parse_public_id(s: &str) -> Option<u64> {
    s.rsplit('-').next().and_then(|n| n.parse().ok())
}

impl UserOrder {
    /// The instrument this order is for.
    pub(crate) fn spec(&self) -> InstrumentSpec {
        INSTRUMENTS[self.instrument.min(INSTRUMENTS.len() - 1)]
    }

    /// `order_id`.
    pub(crate) fn public_id(&self) -> String {
        public_id(self.id, &self.spec())
    }

    /// Unfilled amount.
    pub(crate) fn remaining(&self) -> u64 {
        self.amount - self.filled
    }

    /// Records a fill.
    pub(crate) fn fill(&mut self, price: i64, amount: u64, now_ms: u64) {
        self.filled = (self.filled + amount).min(self.amount);
        self.filled_value += self.spec().price(price) * amount as f64;
        self.updated_ms = now_ms;
        if self.filled == self.amount {
            self.state = OrderState::Filled;
        }
    }

    /// `average_price` (0 before the first fill).
    pub(crate) fn average_price(&self) -> f64 {
        if self.filled == 0 { 0.0 } else { self.filled_value / self.filled as f64 }
    }

    /// The Deribit order object.
    pub(crate) fn to_json(&self) -> Value {
        let spec = self.spec();
        let price = match self.price {
            Some(ticks) => json!(spec.price(ticks)),
            None => json!(spec.price(self.market_price)),
        };
        let mut order = json!({
            "order_id": self.public_id(),
            "order_state": self.state.as_str(),
            "order_type": match self.order_type { OrderType::Limit => "limit", OrderType::Market => "market" },
            "time_in_force": self.time_in_force.as_str(),
            "instrument_name": spec.name,
            "direction": self.side.as_str(),
            "price": price,
            "amount": self.amount as f64,
            "contracts": (self.amount / spec.contract_size) as f64,
            "filled_amount": self.filled as f64,
            "average_price": self.average_price(),
            "label": self.label,
            "post_only": self.post_only,
            "reject_post_only": false,
            "reduce_only": self.reduce_only,
            "creation_timestamp": self.created_ms,
            "last_update_timestamp": self.updated_ms,
            "max_show": self.amount as f64,
            "commission": 0.0,
            "api": true,
            "web": false,
            "is_liquidation": false,
            "replaced": self.edits > 0,
            "risk_reducing": false,
            "mmp": false,
        });
        if let (Some(reason), Some(map)) = (self.cancel_reason, order.as_object_mut()) {
            map.insert("cancel_reason".to_owned(), json!(reason));
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::{OrderState, OrderType, TimeInForce, UserOrder, parse_public_id, public_id};
    use crate::deribit::book::Side;
    use crate::deribit::instrument::INSTRUMENTS;
    use serde_json::json;

    #[test]
    fn ids_and_json() {
        assert_eq!(public_id(5, &INSTRUMENTS[0]), "5");
        assert_eq!(public_id(5, &INSTRUMENTS[1]), "ETH-5");
        assert_eq!((parse_public_id("ETH-5"), parse_public_id("5"), parse_public_id("x")), (Some(5), Some(5), None));
        let mut order = UserOrder {
            id: 9,
            account: 0,
            instrument: 1,
            side: Side::Sell,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::GoodTilCancelled,
            price: Some(60_001),
            market_price: 0,
            edits: 0,
            amount: 3,
            filled: 0,
            filled_value: 0.0,
            state: OrderState::Open,
            label: "l".to_owned(),
            post_only: false,
            reduce_only: false,
            created_ms: 1,
            updated_ms: 1,
            cancel_reason: None,
        };
        order.fill(60_001, 1, 2);
        order.fill(60_000, 2, 3);
        assert_eq!(order.state, OrderState::Filled);
        let v = order.to_json();
        assert_eq!(v["order_id"], json!("ETH-9"));
        assert_eq!(v["price"], json!(3000.05));
        assert_eq!(v["filled_amount"], json!(3.0));
        assert_eq!(v["order_state"], json!("filled"));
        assert!((order.average_price() - 3000.0166).abs() < 1e-3);
    }
}
