//! Notifications the venue sends as things happen: book changes (with the book faults
//! tests arm), trades, and accounts' order/trade/position changes.

use serde_json::{Value, json};

use super::book::{Levels, Owner};
use super::channel::Kind;
use super::hooks::BookFault;
use super::market::Execution;
use super::payload;
use super::positions;
use super::time::Now;
use super::venue::Venue;

impl Venue {
    /// Publishes a `book` change turning `before` into the current book (nothing if equal),
    /// `change_id` advancing by a random stride; applies an armed [`BookFault`]; then the
    /// grouped books of the instrument.
    pub(super) fn publish_book_change(&mut self, idx: usize, before: (Levels, Levels), now: Now) {
        let stride = self.change_stride();
        let market = &mut self.markets[idx];
        let (bids, asks) = market.levels();
        let bid_changes = payload::level_diff(&market.spec, &before.0, &bids, true);
        let ask_changes = payload::level_diff(&market.spec, &before.1, &asks, false);
        if bid_changes.is_empty() && ask_changes.is_empty() {
            return;
        }
        let prev = market.change_id;
        market.change_id += stride;
        let data = payload::book_change(market, prev, bid_changes, ask_changes, now.ms());
        match self.hooks.take_book_fault(idx) {
            None => {
                self.publish(Kind::Book, idx, None, &data);
                if let Some(held) = self.hooks.take_held(idx) {
                    self.publish(Kind::Book, idx, None, &held);
                }
            }
            Some(BookFault::Withhold) => tracing::debug!(idx, change_id = prev + stride, "book change withheld"),
            Some(BookFault::Duplicate) => {
                self.publish(Kind::Book, idx, None, &data);
                self.publish(Kind::Book, idx, None, &data);
            }
            Some(BookFault::Reorder) => self.hooks.hold(idx, data),
        }
        self.publish_grouped_books(idx, now);
    }

    /// Sends every subscribed grouped book (`book.I.G.D.interval`) of instrument `idx` as it stands.
    fn publish_grouped_books(&mut self, idx: usize, now: Now) {
        let mut kinds: Vec<Kind> = self
            .sessions
            .values()
            .flat_map(|s| s.subs.iter())
            .filter(|c| c.instrument == idx && matches!(c.kind, Kind::GroupedBook { .. }))
            .map(|c| c.kind)
            .collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let Kind::GroupedBook { group, depth } = kind else { continue };
            let data = payload::grouped_book(&self.markets[idx], group, depth, now.ms());
            self.publish(kind, idx, None, &data);
        }
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

    /// Tells `account`'s connections about a change of one of its orders (and the trades it
    /// made): `user.orders`, `user.trades` (if any), `user.changes` (with the position).
    pub(super) fn notify_account(&mut self, idx: usize, account: usize, order: &Value, trades: Vec<Value>) {
        self.publish(Kind::UserOrders, idx, Some(account), order);
        if !trades.is_empty() {
            self.publish(Kind::UserTrades, idx, Some(account), &Value::Array(trades.clone()));
        }
        let position = positions::to_json(self.positions.get(account, idx), &self.markets[idx]);
        let changes = json!({
            "instrument_name": self.markets[idx].spec.name,
            "orders": [order],
            "trades": trades,
            "positions": [position],
        });
        self.publish(Kind::UserChanges, idx, Some(account), &changes);
    }

    /// Applies fills to accounts' resting (maker) orders and notifies their
    /// owners. `taker` is the account whose order took the liquidity, if any (for `self_trade`).
    pub(super) fn settle_makers(&mut self, idx: usize, executions: &[Execution], taker: Option<usize>, now: Now) {
        for e in executions {
            let Owner::Account(account) = e.fill.maker_owner else { continue };
            let Some(order) = self.orders.get_mut(&e.fill.maker_id) else { continue };
            order.fill(e.fill.price, e.fill.amount, now.ms());
            let trade = payload::user_trade(order, &e.trade, true, taker == Some(account), now.ms());
            let (side, price) = (order.side, order.spec().price(e.fill.price));
            let order = order.to_json();
            self.positions.fill(account, idx, side, price, e.fill.amount);
            self.record_user_trade(account, idx, &trade);
            self.notify_account(idx, account, &order, vec![trade]);
        }
    }
}
