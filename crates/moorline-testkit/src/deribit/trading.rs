//! Accounts' trading on the venue: `private/buy`, `sell`, `edit`, `cancel`,
//! `cancel_all*`, and the order queries. Account-level queries (positions, summary,
//! trade history) and the margin check are in [`super::account`].

use serde_json::{Value, json};

use super::book::{Owner, Resting, Side};
use super::dispatch::instrument_param;
use super::error::RpcError;
use super::instrument::INSTRUMENTS;
use super::orders::{OrderState, OrderType, TimeInForce, UserOrder, parse_public_id};
use super::payload;
use super::rpc::Params;
use super::time::Now;
use super::venue::Venue;

/// Longest accepted `label`, as on Deribit.
const MAX_LABEL_LEN: usize = 64;

/// The `private/` methods [`Venue::trade`] answers.
pub(super) fn is_trading_method(method: &str) -> bool {
    matches!(
        method,
        "buy"
            | "sell"
            | "edit"
            | "cancel"
            | "cancel_all"
            | "cancel_all_by_instrument"
            | "get_open_orders"
            | "get_open_orders_by_instrument"
            | "get_open_orders_by_label"
            | "get_order_state"
            | "get_order_state_by_label"
            | "get_user_trades_by_instrument"
            | "get_positions"
            | "get_position"
            | "get_account_summary"
    )
}

impl Venue {
    /// Answers trading method `private/{method}` for `account`.
    pub(super) fn trade(&mut self, account: usize, method: &str, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let trading = matches!(method, "buy" | "sell" | "edit");
        if trading && self.hooks.locked {
            return Err(RpcError::maintenance());
        }
        match method {
            "buy" => self.place(account, Side::Buy, p, now),
            "sell" => self.place(account, Side::Sell, p, now),
            "edit" => self.edit(account, p, now),
            "cancel" => self.cancel(account, p, now),
            "cancel_all" => Ok(json!(self.cancel_all(account, None, now, "user_request"))),
            "cancel_all_by_instrument" => {
                let idx = instrument_param(p)?;
                Ok(json!(self.cancel_all(account, Some(idx), now, "user_request")))
            }
            "get_open_orders" => Ok(self.open_orders(account, None, None)),
            "get_open_orders_by_instrument" => Ok(self.open_orders(account, Some(instrument_param(p)?), None)),
            "get_open_orders_by_label" => {
                let label = p.str("label")?;
                Ok(self.open_orders(account, None, Some(label)))
            }
            "get_order_state" => self.order_state(account, p),
            "get_order_state_by_label" => {
                let label = p.str("label")?;
                let idx = p.opt_str("instrument_name")?.map(|_| instrument_param(p)).transpose()?;
                let orders = self
                    .orders
                    .values()
                    .filter(|o| o.account == account && o.label == label && idx.is_none_or(|i| i == o.instrument));
                Ok(Value::Array(orders.map(UserOrder::to_json).collect()))
            }
            "get_user_trades_by_instrument" => self.user_trades(account, p),
            "get_positions" => self.get_positions(account, p),
            "get_position" => {
                let idx = instrument_param(p)?;
                Ok(super::positions::to_json(self.positions.get(account, idx), &self.markets[idx]))
            }
            _ => self.account_summary(account, p),
        }
    }

    /// `private/buy` / `private/sell`: matches against the book (price-time
    /// priority), rests the rest of a good-til-cancelled limit order, and
    /// returns `{order, trades}`.
    fn place(&mut self, account: usize, side: Side, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
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
        let band = payload::price_band(&self.markets[idx]);
        let market_price = if side == Side::Buy { band.1 } else { band.0 };
        self.check_margin(account, idx, amount, price.unwrap_or(market_price))?;
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
            market_price,
            edits: 0,
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
            self.positions.fill(account, idx, side, spec.price(e.fill.price), e.fill.amount);
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
        for trade in &trades {
            self.record_user_trade(account, idx, trade);
        }
        let order_json = order.to_json();
        self.orders.insert(id, order);
        self.notify_account(idx, account, &order_json, trades.clone());
        self.settle_makers(idx, &executions, Some(account), now);
        self.publish_trades(idx, &executions, now);
        self.publish_book_change(idx, before, now);
        Ok(json!({ "order": order_json, "trades": trades }))
    }

    /// `private/edit {order_id, amount, price}`: changes an open limit order's amount and
    /// price. A new price loses time priority, as does a bigger amount; a smaller amount
    /// keeps it. An edit that crosses the book is rejected with `-32602` (the simulator does
    /// not match on edit). `11044` unless open and yours.
    fn edit(&mut self, account: usize, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let order_id = p.str("order_id")?;
        let id = self.own_order(account, order_id).ok_or_else(RpcError::not_open_order)?;
        let order = &self.orders[&id];
        if order.state != OrderState::Open {
            return Err(RpcError::not_open_order());
        }
        let (idx, side, spec) = (order.instrument, order.side, order.spec());
        let amount = spec.units(p.f64("amount")?).map_err(|r| RpcError::invalid_params("amount", r))?;
        let price = match p.opt_f64("price")? {
            Some(price) => spec.ticks(price).map_err(|r| RpcError::invalid_params("price", r))?,
            None => order.price.ok_or_else(|| RpcError::invalid_params("price", "is required"))?,
        };
        if amount <= order.filled {
            return Err(RpcError::invalid_params("amount", "must be more than the filled amount"));
        }
        let market = &mut self.markets[idx];
        let before = market.levels();
        let resting = market.book.remove(id);
        if market.book.crosses(side, price) {
            if let Some(r) = resting {
                market.book.insert(r);
            }
            return Err(RpcError::invalid_params("price", "the edited order would cross the book"));
        }
        let Some(order) = self.orders.get_mut(&id) else { return Err(RpcError::not_open_order()) };
        order.amount = amount;
        order.price = Some(price);
        order.edits += 1;
        order.updated_ms = now.ms();
        let remaining = order.remaining();
        market.book.insert(Resting { id, owner: Owner::Account(account), side, price, remaining });
        let order_json = order.to_json();
        self.notify_account(idx, account, &order_json, Vec::new());
        self.publish_book_change(idx, before, now);
        Ok(json!({ "order": order_json, "trades": [] }))
    }

    /// The internal id of `account`'s order `order_id`, if any.
    fn own_order(&self, account: usize, order_id: &str) -> Option<u64> {
        parse_public_id(order_id)
            .and_then(|n| self.orders.get(&n))
            .filter(|o| o.public_id() == order_id && o.account == account)
            .map(|o| o.id)
    }

    /// Takes an open order of `account` out of the book, marks it cancelled
    /// and notifies; the caller publishes the book change.
    pub(super) fn cancel_one(&mut self, account: usize, id: u64, now: Now, reason: &'static str) -> Option<Value> {
        let order = self.orders.get_mut(&id).filter(|o| o.account == account && o.state == OrderState::Open)?;
        self.markets[order.instrument].book.remove(id);
        order.state = OrderState::Cancelled;
        order.cancel_reason = Some(reason);
        order.updated_ms = now.ms();
        let (idx, json) = (order.instrument, order.to_json());
        self.notify_account(idx, account, &json, Vec::new());
        Some(json)
    }

    /// `private/cancel`: the cancelled order, or `11044 not_open_order`.
    fn cancel(&mut self, account: usize, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let order_id = p.str("order_id")?;
        let id = self.own_order(account, order_id).ok_or_else(RpcError::not_open_order)?;
        let idx = self.orders[&id].instrument;
        let before = self.markets[idx].levels();
        let json = self.cancel_one(account, id, now, "user_request").ok_or_else(RpcError::not_open_order)?;
        self.publish_book_change(idx, before, now);
        Ok(json)
    }

    /// `private/cancel_all*` (and cancel-on-disconnect): cancels `account`'s open orders
    /// (on one instrument or all); returns how many.
    pub(super) fn cancel_all(
        &mut self,
        account: usize,
        instrument: Option<usize>,
        now: Now,
        reason: &'static str,
    ) -> usize {
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
            count += ids.into_iter().filter_map(|id| self.cancel_one(account, id, now, reason)).count();
            self.publish_book_change(idx, before, now);
        }
        count
    }

    /// `private/get_open_orders*`: `account`'s open orders, oldest first.
    fn open_orders(&self, account: usize, instrument: Option<usize>, label: Option<&str>) -> Value {
        let open = self.orders.values().filter(|o| {
            o.account == account
                && o.state == OrderState::Open
                && instrument.is_none_or(|i| i == o.instrument)
                && label.is_none_or(|l| l == o.label)
        });
        Value::Array(open.map(UserOrder::to_json).collect())
    }

    /// `private/get_order_state`: any order of `account`, or `10004 order_not_found`.
    fn order_state(&self, account: usize, p: Params<'_>) -> Result<Value, RpcError> {
        let order_id = p.str("order_id")?;
        self.own_order(account, order_id).map(|id| self.orders[&id].to_json()).ok_or_else(RpcError::order_not_found)
    }
}
