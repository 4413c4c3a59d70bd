//! Deribit's JSON shapes for market data: tickers, book snapshots and
//! changes, trades, instruments.

use serde_json::{Value, json};

use super::book::Levels;
use super::instrument::InstrumentSpec;
use super::market::{Market, TradeRecord};
use super::orders::{UserOrder, public_id};

fn best(levels: &Levels, bids: bool) -> Option<(i64, u64)> {
    let entry = if bids { levels.iter().next_back() } else { levels.iter().next() };
    entry.map(|(&p, &a)| (p, a))
}

fn stats(market: &Market) -> Value {
    let spec = &market.spec;
    json!({
        "high": spec.price(market.stats.high),
        "low": spec.price(market.stats.low),
        "volume": (market.stats.volume * 1e8).round() / 1e8,
        "volume_usd": market.stats.volume_usd as f64,
        "price_change": market.price_change(),
    })
}

/// The `ticker` notification data (and `public/ticker` result).
pub(crate) fn ticker(market: &Market, now_ms: u64) -> Value {
    let spec = &market.spec;
    let (bids, asks) = market.levels();
    let (bid, bid_amount) = best(&bids, true).map_or((0.0, 0.0), |(p, a)| (spec.price(p), a as f64));
    let (ask, ask_amount) = best(&asks, false).map_or((0.0, 0.0), |(p, a)| (spec.price(p), a as f64));
    let mark = spec.price(market.mark());
    let index = spec.price(market.index);
    json!({
        "timestamp": now_ms,
        "instrument_name": spec.name,
        "state": "open",
        "best_bid_price": bid,
        "best_bid_amount": bid_amount,
        "best_ask_price": ask,
        "best_ask_amount": ask_amount,
        "last_price": spec.price(market.last_price),
        "mark_price": mark,
        "index_price": index,
        "estimated_delivery_price": index,
        "settlement_price": index,
        "min_price": spec.price(price_band(market).0),
        "max_price": spec.price(price_band(market).1),
        "open_interest": market.open_interest as f64,
        "current_funding": 0.0,
        "funding_8h": 0.0,
        "interest_value": 0.0,
        "stats": stats(market),
    })
}

/// The ticker's `(min_price, max_price)` in ticks: 5 % around the mark. A market order
/// reports the bound on its side as its price.
pub(crate) fn price_band(market: &Market) -> (i64, i64) {
    let mark = market.mark() as f64;
    (((mark * 0.95).round() as i64).max(1), ((mark * 1.05).round() as i64).max(1))
}

/// A grouped book notification (`book.I.G.D.interval`): the best `depth` levels per side,
/// prices grouped down (bids) or up (asks) to multiples of `group` ticks (0: not grouped),
/// as `[price, amount]` pairs; no `prev_change_id` (every message is a whole book).
pub(crate) fn grouped_book(market: &Market, group: u32, depth: u8, now_ms: u64) -> Value {
    let spec = &market.spec;
    let (bids, asks) = market.levels();
    let group = i64::from(group.max(1));
    let mut grouped_bids: Levels = Levels::new();
    for (&p, &a) in &bids {
        *grouped_bids.entry(p.div_euclid(group) * group).or_default() += a;
    }
    let mut grouped_asks: Levels = Levels::new();
    for (&p, &a) in &asks {
        *grouped_asks.entry((p + group - 1).div_euclid(group) * group).or_default() += a;
    }
    let pair = |(&p, &a): (&i64, &u64)| json!([spec.price(p), a as f64]);
    let depth = usize::from(depth);
    json!({
        "timestamp": now_ms,
        "instrument_name": spec.name,
        "change_id": market.change_id,
        "bids": grouped_bids.iter().rev().take(depth).map(pair).collect::<Vec<_>>(),
        "asks": grouped_asks.iter().take(depth).map(pair).collect::<Vec<_>>(),
    })
}

fn book_entries(spec: &InstrumentSpec, levels: &Levels, bids: bool) -> Vec<Value> {
    let entry = |(&p, &a): (&i64, &u64)| json!(["new", spec.price(p), a as f64]);
    if bids { levels.iter().rev().map(entry).collect() } else { levels.iter().map(entry).collect() }
}

/// The first `book` notification of a subscription: the whole book.
pub(crate) fn book_snapshot(market: &Market, now_ms: u64) -> Value {
    let (bids, asks) = market.levels();
    json!({
        "type": "snapshot",
        "timestamp": now_ms,
        "instrument_name": market.spec.name,
        "change_id": market.change_id,
        "bids": book_entries(&market.spec, &bids, true),
        "asks": book_entries(&market.spec, &asks, false),
    })
}

/// `[action, price, amount]` entries turning `before` into `after` (bids best first when `bids`).
pub(crate) fn level_diff(spec: &InstrumentSpec, before: &Levels, after: &Levels, bids: bool) -> Vec<Value> {
    let mut changes: Vec<(i64, Value)> = Vec::new();
    for (&price, &amount) in after {
        match before.get(&price) {
            None => changes.push((price, json!(["new", spec.price(price), amount as f64]))),
            Some(&old) if old != amount => changes.push((price, json!(["change", spec.price(price), amount as f64]))),
            Some(_) => {}
        }
    }
    for &price in before.keys() {
        if !after.contains_key(&price) {
            changes.push((price, json!(["delete", spec.price(price), 0.0])));
        }
    }
    changes.sort_by_key(|(p, _)| if bids { -p } else { *p });
    changes.into_iter().map(|(_, v)| v).collect()
}

/// A `book` change notification (the caller bumped `change_id` already).
pub(crate) fn book_change(
    market: &Market,
    prev_change_id: u64,
    bids: Vec<Value>,
    asks: Vec<Value>,
    now_ms: u64,
) -> Value {
    json!({
        "type": "change",
        "timestamp": now_ms,
        "instrument_name": market.spec.name,
        "prev_change_id": prev_change_id,
        "change_id": market.change_id,
        "bids": bids,
        "asks": asks,
    })
}

/// `public/get_order_book` result, `depth` levels per side.
pub(crate) fn order_book(market: &Market, depth: usize, now_ms: u64) -> Value {
    let spec = &market.spec;
    let (bids, asks) = market.levels();
    let pair = |(&p, &a): (&i64, &u64)| json!([spec.price(p), a as f64]);
    let mut book = ticker(market, now_ms);
    if let Some(map) = book.as_object_mut() {
        map.insert("change_id".to_owned(), json!(market.change_id));
        map.insert("bids".to_owned(), Value::Array(bids.iter().rev().take(depth).map(pair).collect()));
        map.insert("asks".to_owned(), Value::Array(asks.iter().take(depth).map(pair).collect()));
    }
    book
}

/// One entry of a `trades` notification.
pub(crate) fn public_trade(spec: &InstrumentSpec, trade: &TradeRecord, now_ms: u64) -> Value {
    json!({
        "trade_id": public_id(trade.trade_id, spec),
        "trade_seq": trade.trade_seq,
        "timestamp": now_ms,
        "instrument_name": spec.name,
        "price": spec.price(trade.price),
        "amount": trade.amount as f64,
        "contracts": (trade.amount / spec.contract_size) as f64,
        "direction": trade.taker.as_str(),
        "tick_direction": trade.tick_direction,
        "index_price": spec.price(trade.index),
        "mark_price": spec.price(trade.mark),
    })
}

/// One of an account's trades (`private/buy` result `trades`, `user.trades`).
pub(crate) fn user_trade(order: &UserOrder, trade: &TradeRecord, maker: bool, self_trade: bool, now_ms: u64) -> Value {
    let spec = order.spec();
    let mut value = public_trade(&spec, trade, now_ms);
    if let Some(map) = value.as_object_mut() {
        for (k, v) in [
            ("direction", json!(order.side.as_str())),
            ("order_id", json!(order.public_id())),
            ("order_type", order.to_json()["order_type"].clone()),
            ("state", order.to_json()["order_state"].clone()),
            ("label", json!(order.label)),
            ("liquidity", json!(if maker { "M" } else { "T" })),
            ("fee", json!(0.0)),
            ("fee_currency", json!(spec.currency)),
            ("self_trade", json!(self_trade)),
            ("post_only", json!(order.post_only)),
            ("reduce_only", json!(order.reduce_only)),
            ("matching_id", Value::Null),
            ("api", json!(true)),
        ] {
            map.insert(k.to_owned(), v);
        }
    }
    value
}

/// A `public/get_instruments` entry.
pub(crate) fn instrument(spec: &InstrumentSpec) -> Value {
    json!({
        "instrument_name": spec.name,
        "instrument_id": spec.instrument_id,
        "kind": "future",
        "settlement_period": if spec.expiration_ms.is_some() { "month" } else { "perpetual" },
        "future_type": "reversed",
        "instrument_type": "reversed",
        "base_currency": spec.currency,
        "quote_currency": "USD",
        "counter_currency": "USD",
        "settlement_currency": spec.currency,
        "price_index": format!("{}_usd", spec.currency.to_lowercase()),
        "tick_size": spec.tick_size(),
        "tick_size_steps": [],
        "contract_size": spec.contract_size as f64,
        "min_trade_amount": spec.contract_size as f64,
        "is_active": true,
        "rfq": false,
        "maker_commission": 0.0,
        "taker_commission": 0.0005,
        "max_leverage": 50,
        "max_liquidation_commission": 0.0075,
        "block_trade_commission": 0.00025,
        "block_trade_min_trade_amount": 200_000,
        "block_trade_tick_size": 0.01,
        "creation_timestamp": 1_534_242_287_000u64,
        "expiration_timestamp": spec.expiration_ms.unwrap_or(32_503_708_800_000),
    })
}

#[cfg(test)]
mod tests {
    use super::level_diff;
    use crate::deribit::book::Levels;
    use crate::deribit::instrument::INSTRUMENTS;
    use serde_json::json;

    #[test]
    fn diff_actions_sorted_best_first() {
        let spec = INSTRUMENTS[0];
        let before: Levels = [(10, 5), (11, 5), (12, 5)].into_iter().collect();
        let after: Levels = [(10, 5), (11, 7), (13, 1)].into_iter().collect();
        assert_eq!(
            level_diff(&spec, &before, &after, true),
            vec![json!(["new", 6.5, 1.0]), json!(["delete", 6.0, 0.0]), json!(["change", 5.5, 7.0])]
        );
        assert_eq!(level_diff(&spec, &before, &after, false)[0], json!(["change", 5.5, 7.0]));
        assert!(level_diff(&spec, &after, &after, false).is_empty());
    }
}
