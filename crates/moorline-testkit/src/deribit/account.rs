//! Account-level state and queries: the margin check (`10009`), `get_positions`,
//! `get_account_summary`, and the trade history `get_user_trades_by_instrument` reads.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::dispatch::instrument_param;
use super::error::RpcError;
use super::instrument::INSTRUMENTS;
use super::orders::OrderState;
use super::positions;
use super::rpc::Params;
use super::venue::Venue;

/// Initial margin per unit of position or open order (in the base currency): 1 / 50x.
pub(crate) const INITIAL_MARGIN_RATE: f64 = 0.02;
/// Maintenance margin rate.
pub(crate) const MAINTENANCE_MARGIN_RATE: f64 = 0.01;
/// Every test account's equity per currency: 10 BTC, 100 ETH.
fn equity(currency: &str) -> f64 {
    if currency == "BTC" { 10.0 } else { 100.0 }
}
/// Trades kept per account and instrument for `get_user_trades_by_instrument` (the oldest go first).
pub(crate) const MAX_TRADE_HISTORY: usize = 10_000;

/// Accounts' trades, newest last, per (account, instrument).
#[derive(Debug, Default)]
pub(crate) struct TradeHistory(BTreeMap<(usize, usize), VecDeque<Value>>);

impl Venue {
    /// Remembers one of `account`'s trades (at most [`MAX_TRADE_HISTORY`] per instrument).
    pub(super) fn record_user_trade(&mut self, account: usize, idx: usize, trade: &Value) {
        let trades = self.trade_history.0.entry((account, idx)).or_default();
        if trades.len() == MAX_TRADE_HISTORY {
            trades.pop_front();
        }
        trades.push_back(trade.clone());
    }

    /// Initial margin `account` uses in `currency`: positions plus open orders, in the currency.
    fn initial_margin(&self, account: usize, currency: &str) -> f64 {
        let mut margin = 0.0;
        for (idx, market) in self.markets.iter().enumerate().filter(|(_, m)| m.spec.currency == currency) {
            let mark = market.spec.price(market.mark()).max(f64::MIN_POSITIVE);
            margin += self.positions.get(account, idx).size.unsigned_abs() as f64 / mark * INITIAL_MARGIN_RATE;
        }
        for order in self.orders.values().filter(|o| o.account == account && o.state == OrderState::Open) {
            let spec = order.spec();
            if spec.currency == currency {
                let price = spec.price(order.price.unwrap_or(order.market_price)).max(f64::MIN_POSITIVE);
                margin += order.remaining() as f64 / price * INITIAL_MARGIN_RATE;
            }
        }
        margin
    }

    /// `10009 not_enough_funds` if an order of `amount` USD at `price` (ticks) on instrument
    /// `idx` would need more initial margin than the account's equity leaves.
    pub(super) fn check_margin(&self, account: usize, idx: usize, amount: u64, price: i64) -> Result<(), RpcError> {
        let spec = INSTRUMENTS[idx];
        let needed = amount as f64 / spec.price(price).max(f64::MIN_POSITIVE) * INITIAL_MARGIN_RATE;
        let used = self.initial_margin(account, spec.currency);
        let available = equity(spec.currency) - used;
        if needed > available {
            return Err(RpcError::not_enough_funds(format!(
                "the order needs {needed:.8} {} of initial margin; {available:.8} available",
                spec.currency
            )));
        }
        Ok(())
    }

    /// `private/get_user_trades_by_instrument {instrument_name, count, sorting}`:
    /// `{trades, has_more}`, newest first unless `sorting` is `asc`.
    pub(super) fn user_trades(&self, account: usize, p: Params<'_>) -> Result<Value, RpcError> {
        let idx = instrument_param(p)?;
        let count = match p.opt_f64("count")? {
            None => 10,
            Some(c) if (1.0..=1000.0).contains(&c) => c as usize,
            Some(_) => return Err(RpcError::invalid_params("count", "must be between 1 and 1000")),
        };
        let ascending = match p.opt_str("sorting")?.unwrap_or("desc") {
            "asc" => true,
            "desc" | "default" => false,
            _ => return Err(RpcError::invalid_params("sorting", "asc, desc or default")),
        };
        let empty = VecDeque::new();
        let all = self.trade_history.0.get(&(account, idx)).unwrap_or(&empty);
        let trades: Vec<Value> = if ascending {
            all.iter().take(count).cloned().collect()
        } else {
            all.iter().rev().take(count).cloned().collect()
        };
        Ok(json!({ "trades": trades, "has_more": all.len() > count }))
    }

    /// `private/get_positions {currency, kind}`: one position per instrument of the currency
    /// (`any`: all) the account has traded or holds.
    pub(super) fn get_positions(&self, account: usize, p: Params<'_>) -> Result<Value, RpcError> {
        let currency = p.opt_str("currency")?.unwrap_or("any");
        if !matches!(currency, "BTC" | "ETH" | "USDC" | "USDT" | "any") {
            return Err(RpcError::invalid_params("currency", "unknown currency"));
        }
        let kind_ok = p.opt_str("kind")?.is_none_or(|k| k == "future");
        let list = self
            .markets
            .iter()
            .enumerate()
            .filter(|(_, m)| kind_ok && (currency == "any" || m.spec.currency == currency))
            .filter(|(idx, _)| self.positions.get(account, *idx).size != 0)
            .map(|(idx, m)| positions::to_json(self.positions.get(account, idx), m))
            .collect();
        Ok(Value::Array(list))
    }

    /// `private/get_account_summary {currency}`.
    pub(super) fn account_summary(&self, account: usize, p: Params<'_>) -> Result<Value, RpcError> {
        let currency = p.str("currency")?;
        if !matches!(currency, "BTC" | "ETH") {
            return Err(RpcError::invalid_params("currency", "BTC or ETH"));
        }
        let mut pnl = 0.0;
        let mut maintenance = 0.0;
        for (idx, market) in self.markets.iter().enumerate().filter(|(_, m)| m.spec.currency == currency) {
            let position = positions::to_json(self.positions.get(account, idx), market);
            pnl += position["floating_profit_loss"].as_f64().unwrap_or(0.0);
            maintenance += position["maintenance_margin"].as_f64().unwrap_or(0.0);
        }
        let balance = equity(currency);
        let initial = self.initial_margin(account, currency);
        Ok(json!({
            "currency": currency,
            "balance": balance,
            "equity": balance + pnl,
            "margin_balance": balance + pnl,
            "available_funds": balance + pnl - initial,
            "available_withdrawal_funds": balance + pnl - initial,
            "initial_margin": initial,
            "maintenance_margin": maintenance,
            "futures_pl": pnl,
            "session_upl": pnl,
            "total_pl": pnl,
            "delta_total": 0.0,
            "fee_balance": 0.0,
            "limits": {
                "non_matching_engine": { "rate": 20, "burst": 100 },
                "matching_engine": { "rate": 5, "burst": 25 },
            },
            "portfolio_margining_enabled": false,
            "cross_collateral_enabled": false,
            "margin_model": "segregated_sm",
        }))
    }
}
