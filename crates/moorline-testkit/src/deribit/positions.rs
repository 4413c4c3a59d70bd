//! Accounts' positions per instrument, from their fills.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::book::Side;
use super::market::Market;

/// One account's position in one instrument.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Position {
    /// Signed size in USD (positive: long).
    pub(crate) size: i64,
    /// Average entry price in USD (0 when flat).
    pub(crate) average_price: f64,
}

/// Positions by (account, instrument index).
#[derive(Debug, Clone, Default)]
pub(crate) struct Positions(BTreeMap<(usize, usize), Position>);

impl Positions {
    /// Records a fill of `amount` USD at `price` on `side` for `account`.
    pub(crate) fn fill(&mut self, account: usize, instrument: usize, side: Side, price: f64, amount: u64) {
        let p = self.0.entry((account, instrument)).or_default();
        let delta = i64::try_from(amount).unwrap_or(i64::MAX) * if side == Side::Buy { 1 } else { -1 };
        let new = p.size.saturating_add(delta);
        p.average_price = if new == 0 {
            0.0
        } else if p.size == 0 || (p.size > 0) != (new > 0) {
            price
        } else if (p.size > 0) == (delta > 0) {
            (p.average_price * p.size.unsigned_abs() as f64 + price * amount as f64) / new.unsigned_abs() as f64
        } else {
            p.average_price
        };
        p.size = new;
    }

    /// `account`'s position in `instrument` (flat if never traded).
    pub(crate) fn get(&self, account: usize, instrument: usize) -> Position {
        self.0.get(&(account, instrument)).copied().unwrap_or_default()
    }
}

/// Deribit's position object.
pub(crate) fn to_json(position: Position, market: &Market) -> Value {
    let spec = &market.spec;
    let mark = spec.price(market.mark());
    let size = position.size as f64;
    let direction = match position.size {
        0 => "zero",
        s if s > 0 => "buy",
        _ => "sell",
    };
    // Inverse contracts: profit in the base currency.
    let pnl = if position.size == 0 || position.average_price <= 0.0 || mark <= 0.0 {
        0.0
    } else {
        size * (1.0 / position.average_price - 1.0 / mark)
    };
    let size_currency = if mark > 0.0 { size / mark } else { 0.0 };
    json!({
        "instrument_name": spec.name,
        "kind": "future",
        "direction": direction,
        "size": size,
        "size_currency": size_currency,
        "average_price": position.average_price,
        "mark_price": mark,
        "index_price": spec.price(market.index),
        "settlement_price": spec.price(market.index),
        "floating_profit_loss": pnl,
        "total_profit_loss": pnl,
        "realized_profit_loss": 0.0,
        "initial_margin": size_currency.abs() * super::account::INITIAL_MARGIN_RATE,
        "maintenance_margin": size_currency.abs() * super::account::MAINTENANCE_MARGIN_RATE,
        "open_orders_margin": 0.0,
        "leverage": 50,
        "delta": size_currency,
        "estimated_liquidation_price": Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::Positions;
    use crate::deribit::book::Side;

    #[test]
    fn averages_reductions_and_flips() {
        let mut p = Positions::default();
        p.fill(0, 1, Side::Buy, 100.0, 10);
        p.fill(0, 1, Side::Buy, 200.0, 10);
        assert_eq!((p.get(0, 1).size, p.get(0, 1).average_price), (20, 150.0));
        p.fill(0, 1, Side::Sell, 300.0, 5);
        assert_eq!((p.get(0, 1).size, p.get(0, 1).average_price), (15, 150.0));
        p.fill(0, 1, Side::Sell, 90.0, 25);
        assert_eq!((p.get(0, 1).size, p.get(0, 1).average_price), (-10, 90.0));
        p.fill(0, 1, Side::Buy, 1.0, 10);
        assert_eq!((p.get(0, 1).size, p.get(0, 1).average_price), (0, 0.0));
        assert_eq!(p.get(3, 0).size, 0);
    }
}
