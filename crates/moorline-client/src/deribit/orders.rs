//! What the façade knows of the account's orders, so every order state reaches the user
//! exactly once, whichever way it was learned (a call's answer, a `user.orders`
//! notification, reconciliation after a reconnect), and so an order whose answer was lost is
//! found again by its label.
//!
//! Pure bookkeeping: no IO. The façade feeds it and asks it what to reconcile.

use std::collections::HashMap;

use super::types::{Order, OrderState};

/// How far an order has come: a later version is never replaced by an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    updated: u64,
    /// Filled amount in nano-units (orderable).
    filled: u64,
    finished: bool,
}

impl Version {
    fn of(order: &Order) -> Self {
        Self {
            updated: order.last_update_timestamp,
            filled: (order.filled_amount.max(0.0) * 1e9) as u64,
            finished: !order.order_state.is_live(),
        }
    }
}

/// An order request whose answer never came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    /// The order's instrument (its currency is what Deribit queries labels by).
    pub instrument_name: String,
    /// A `buy`/`sell` (no order with the label means it was not placed), not an `edit` or
    /// `cancel` of an order already known.
    pub placement: bool,
}

/// What is kept of an order seen.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    version: Version,
    state: OrderState,
    /// Price and amount (an edit changes them, maybe within the same millisecond).
    terms: (Option<f64>, f64),
    instrument_name: String,
    label: String,
}

/// The orders seen so far and the requests whose outcome is unknown.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    orders: HashMap<String, Seen>,
    unknown: HashMap<String, Unknown>,
}

impl Registry {
    /// Records `order`; `true` if it says something not known yet (a new order, or a later
    /// state of a known one), `false` for a repeat or an older state.
    pub fn observe(&mut self, order: &Order) -> bool {
        let seen = Seen {
            version: Version::of(order),
            state: order.order_state,
            terms: (order.price, order.amount),
            instrument_name: order.instrument_name.clone(),
            label: order.label.clone(),
        };
        match self.orders.get_mut(&order.order_id) {
            Some(known)
                if known.version > seen.version
                    || (known.version == seen.version && known.state == seen.state && known.terms == seen.terms) =>
            {
                false
            }
            Some(known) => {
                let version = known.version.max(seen.version);
                *known = Seen { version, ..seen };
                true
            }
            None => {
                self.orders.insert(order.order_id.clone(), seen);
                true
            }
        }
    }

    /// Orders last seen live (open): after a reconnect, those not among the open orders
    /// changed while we were away.
    pub fn live(&self) -> Vec<(String, String)> {
        self.orders
            .iter()
            .filter(|(_, seen)| seen.state.is_live())
            .map(|(id, seen)| (id.clone(), seen.instrument_name.clone()))
            .collect()
    }

    /// The label and instrument of a known order (to find it again by label when the
    /// answer to its `edit` or `cancel` is lost); `None` if unknown or unlabelled.
    pub fn label_of(&self, order_id: &str) -> Option<(String, String)> {
        let seen = self.orders.get(order_id)?;
        (!seen.label.is_empty()).then(|| (seen.label.clone(), seen.instrument_name.clone()))
    }

    /// An order request with `label` was sent and its answer lost (`placement`: a buy or
    /// sell, not an edit or cancel).
    pub fn outcome_unknown(&mut self, label: &str, instrument_name: &str, placement: bool) {
        self.unknown.insert(label.to_owned(), Unknown { instrument_name: instrument_name.to_owned(), placement });
    }

    /// The labels to look up.
    pub fn unknown(&self) -> Vec<(String, Unknown)> {
        self.unknown.iter().map(|(l, u)| (l.clone(), u.clone())).collect()
    }

    /// Takes `label` off the unknown list; `true` if it was there (so its outcome is
    /// reported once, even by two reconciliations at the same time).
    pub fn resolve(&mut self, label: &str) -> bool {
        self.unknown.remove(label).is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::deribit::types::Direction;

    fn order(id: &str, state: OrderState, filled: f64, updated: u64) -> Order {
        Order {
            order_id: id.into(),
            order_state: state,
            instrument_name: "BTC-PERPETUAL".into(),
            direction: Direction::Buy,
            order_type: "limit".into(),
            price: Some(100.0),
            amount: 10.0,
            filled_amount: filled,
            average_price: None,
            label: "l".into(),
            time_in_force: String::new(),
            post_only: false,
            reduce_only: false,
            creation_timestamp: 1,
            last_update_timestamp: updated,
            cancel_reason: None,
            replaced: false,
        }
    }

    #[test]
    fn each_state_once_and_never_backwards() {
        let mut r = Registry::default();
        assert!(r.observe(&order("1", OrderState::Open, 0.0, 10)));
        assert!(!r.observe(&order("1", OrderState::Open, 0.0, 10)), "a repeat");
        assert!(r.observe(&order("1", OrderState::Open, 5.0, 11)), "partly filled");
        assert_eq!(r.live(), [("1".to_owned(), "BTC-PERPETUAL".to_owned())]);
        assert!(r.observe(&order("1", OrderState::Cancelled, 5.0, 12)));
        assert!(!r.observe(&order("1", OrderState::Open, 5.0, 11)), "an older state, read late");
        assert!(r.live().is_empty());
        // Same timestamp and fill, finished later: still news.
        assert!(r.observe(&order("2", OrderState::Open, 0.0, 20)));
        assert!(r.observe(&order("2", OrderState::Cancelled, 0.0, 20)));
        assert!(!r.observe(&order("2", OrderState::Cancelled, 0.0, 20)));
        // Edited within the same millisecond: new terms are news.
        assert!(r.observe(&order("3", OrderState::Open, 0.0, 30)));
        let mut edited = order("3", OrderState::Open, 0.0, 30);
        edited.price = Some(99.0);
        assert!(r.observe(&edited));
        assert!(!r.observe(&edited));
        assert_eq!(r.label_of("3"), Some(("l".to_owned(), "BTC-PERPETUAL".to_owned())));
        assert_eq!(r.label_of("nope"), None);
    }

    #[test]
    fn an_unknown_outcome_is_resolved_once() {
        let mut r = Registry::default();
        r.outcome_unknown("lbl", "ETH-PERPETUAL", true);
        assert_eq!(r.unknown().len(), 1);
        assert!(r.resolve("lbl"));
        assert!(!r.resolve("lbl"));
        assert!(r.unknown().is_empty());
    }
}
