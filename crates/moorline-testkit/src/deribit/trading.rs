//! Accounts' trading on the venue: `private/buy`, `sell`, `cancel`,
//! `cancel_all*`, `get_open_orders*`, `get_order_state`.

use serde_json::{Value, json};

use super::book::{Owner, Resting, Side};
use super::channel::Kind;
use super::error::RpcError;
use super::instrument::INSTRUMENTS;
use super::orders::{OrderState, OrderType, TimeInForce, UserOrder, parse_public_id};
use super::payload;
use super::rpc::Params;
use super::time::Now;
use super::venue::{Venue, instrument_param};

/// Longest accepted `label`, as on Deribit.
const MAX_LABEL_LEN: usize = 64;

impl Venue {
    /// `private/buy` / `private/sell`: matches against the book (price-time
    /// priority), rests the rest of a good-til-cancelled limit order, and
    /// returns `{order, trades}`.
    pub(super) fn place(&mut self, account: usize, side: Side, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let idx = instrument_param(p)?;
        let spec = INSTRUMENTS[idx];
        let amount = spec.units(p.f64("amount")?).map_err(|r| RpcError::invalid_params("amount", r))?;
        let order_type = match p.opt_str("type")?.unwrap_or("limit") {
            "limit" => OrderType::Limit,
            "market" => OrderType::Market,
            _ => return Err(RpcError::invalid_params("type", "supported: limit, market")),
        };
        let time_in_force = match p.opt_str("time_in_force")? {
            None => TimeInForce::GoodTilCancelled,
            Some(t) => TimeInForce::parse(t).ok_or_else(|| RpcError::invalid_params("time_in_force", "unknown"))?,
        };
        let label = p.opt_str("label")?.unwrap_or("");
        if label.len() > MAX_LABEL_LEN {
            return Err(RpcError::invalid_params("label", "at most 64 characters"));
        }
        let post_only = p.opt_bool("post_only")?.unwrap_or(false) && order_type == OrderType::Limit;
        let reject_post_only = p.opt_bool("reject_post_only")?.unwrap_or(false);
        let reduce_only = p.opt_bool("reduce_only")?.unwrap_or(false);
        let mut price = match order_type {
            OrderType::Limit => Some(spec.ticks(p.f64("price")?).map_err(|r| RpcError::invalid_params("price", r))?),
            OrderType::Market => None,
        };
        let market = &mut self.markets[idx];
        if let Some(limit) = price.filter(|&l| post_only && market.book.crosses(side, l)) {
            // Deribit moves a crossing post-only order just outside the spread,
            // or rejects it with `reject_post_only`.
            let adjusted = match side {
                Side::Buy => market.book.best_ask().map_or(limit, |a| a - 1),
                Side::Sell => market.book.best_bid().map_or(limit, |b| b + 1),
            };
            if reject_post_only || adjusted < 1 {
                return Err(RpcError::post_only_reject());
            }
            price = Some(adjusted);
        }
        let before = market.levels();
        let id = self.ids.order();
        let executable =
            time_in_force != TimeInForce::FillOrKill || market.book.available(side, price, amount) >= amount;
        let executions = if executable { market.execute(&mut self.ids, side, price, amount) } else { Vec::new() };
        let mut order = UserOrder {
            id,
            account,
            instrument: idx,
            side,
            order_type,
            time_in_force,
            price,
            amount,
            filled: 0,
            filled_value: 0.0,
            state: OrderState::Open,
            label: label.to_owned(),
            post_only,
            reduce_only,
            created_ms: now.ms(),
            updated_ms: now.ms(),
            cancel_reason: None,
        };
        for e in &executions {
            order.fill(e.fill.price, e.fill.amount, now.ms());
        }
        if order.state == OrderState::Open {
            match price {
                Some(limit) if time_in_force.rests() => market.book.insert(Resting {
                    id,
                    owner: Owner::Account(account),
                    side,
                    price: limit,
                    remaining: order.remaining(),
                }),
                _ => {
                    order.state = OrderState::Cancelled;
                    order.cancel_reason = Some("immediate_or_cancel");
                }
            }
        }
        tracing::debug!(account, order = id, state = ?order.state, filled = order.filled, "order placed");
        let trades: Vec<Value> = executions
            .iter()
            .map(|e| {
                let self_trade = e.fill.maker_owner == Owner::Account(account);
                payload::user_trade(&order, &e.trade, false, self_trade, now.ms())
            })
            .collect();
        let order_json = order.to_json();
        self.orders.insert(id, order);
        self.publish(Kind::UserOrders, idx, Some(account), &order_json);
        if !trades.is_empty() {
            self.publish(Kind::UserTrades, idx, Some(account), &Value::Array(trades.clone()));
        }
        self.settle_makers(idx, &executions, Some(account), now);
        self.publish_trades(idx, &executions, now);
        self.publish_book_change(idx, before, now);
        Ok(json!({ "order": order_json, "trades": trades }))
    }

    /// Takes an open order of `account` out of the book, marks it cancelled
    /// and notifies; the caller publishes the book change.
    fn cancel_one(&mut self, account: usize, id: u64, now: Now) -> Option<Value> {
        let order = self.orders.get_mut(&id).filter(|o| o.account == account && o.state == OrderState::Open)?;
        self.markets[order.instrument].book.remove(id);
        order.state = OrderState::Cancelled;
        order.cancel_reason = Some("user_request");
        order.updated_ms = now.ms();
        let (idx, json) = (order.instrument, order.to_json());
        self.publish(Kind::UserOrders, idx, Some(account), &json);
        Some(json)
    }

    /// `private/cancel`: the cancelled order, or `11044 not_open_order`.
    pub(super) fn cancel(&mut self, account: usize, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let order_id = p.str("order_id")?;
        let (id, idx) = parse_public_id(order_id)
            .and_then(|n| self.orders.get(&n))
            .filter(|o| o.public_id() == order_id)
            .map(|o| (o.id, o.instrument))
            .ok_or_else(RpcError::not_open_order)?;
        let before = self.markets[idx].levels();
        let json = self.cancel_one(account, id, now).ok_or_else(RpcError::not_open_order)?;
        self.publish_book_change(idx, before, now);
        Ok(json)
    }

    /// `private/cancel_all*`: cancels `account`'s open orders (on one
    /// instrument or all); returns how many.
    pub(super) fn cancel_all(&mut self, account: usize, instrument: Option<usize>, now: Now) -> usize {
        let mut count = 0;
        for idx in 0..self.markets.len() {
            if instrument.is_some_and(|i| i != idx) {
                continue;
            }
            let ids: Vec<u64> = self
                .orders
                .values()
                .filter(|o| o.account == account && o.instrument == idx && o.state == OrderState::Open)
                .map(|o| o.id)
                .collect();
            let before = self.markets[idx].levels();
            count += ids.into_iter().filter_map(|id| self.cancel_one(account, id, now)).count();
            self.publish_book_change(idx, before, now);
        }
        count
    }

    /// `private/get_open_orders*`: `account`'s open orders, oldest first.
    pub(super) fn open_orders(&self, account: usize, instrument: Option<usize>) -> Value {
        let open = self.orders.values().filter(|o| {
            o.account == account && o.state == OrderState::Open && instrument.is_none_or(|i| i == o.instrument)
        });
        Value::Array(open.map(UserOrder::to_json).collect())
    }

    /// `private/get_order_state`: any order of `account`, or `10004 order_not_found`.
    pub(super) fn order_state(&self, account: usize, p: Params<'_>) -> Result<Value, RpcError> {
        let order_id = p.str("order_id")?;
        parse_public_id(order_id)
            .and_then(|n| self.orders.get(&n))
            .filter(|o| o.account == account && o.public_id() == order_id)
            .map(UserOrder::to_json)
            .ok_or_else(RpcError::order_not_found)
    }
}
