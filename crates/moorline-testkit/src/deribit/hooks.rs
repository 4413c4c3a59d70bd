//! What tests do to the venue from outside (the sans-IO half of the hooks; the
//! connection-level ones are in [`super::control`]): book faults, injected method
//! failures, token expiry and revocation, orders filled or cancelled behind their
//! client's back, the platform lock.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::channel::Kind;
use super::error::RpcError;
use super::instrument::{INSTRUMENTS, index_of, price_indices};
use super::orders::{OrderState, parse_public_id};
use super::time::Now;
use super::venue::{ConnId, Delivery, Venue};

/// How the next `book.{instrument}.{interval}` change of an instrument goes wrong (a gap
/// a client must detect from `prev_change_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookFault {
    /// Never sent: the change after it has a `prev_change_id` the client never saw.
    Withhold,
    /// Sent twice: the second copy's `prev_change_id` is not the last `change_id`.
    Duplicate,
    /// Sent after the change that follows it.
    Reorder,
}

/// A method made to fail by [`DeribitSim::fail_method`](super::DeribitSim::fail_method).
#[derive(Debug, Clone)]
struct Failure {
    method: String,
    code: i64,
    /// Requests left to fail (`None`: until cleared).
    times: Option<usize>,
}

/// Venue-side hook state.
#[derive(Debug, Default)]
pub(crate) struct VenueHooks {
    book_faults: [Option<BookFault>; INSTRUMENTS.len()],
    held: [Option<Value>; INSTRUMENTS.len()],
    failures: Vec<Failure>,
    /// The platform is locked (maintenance): trading answers `11051`.
    pub(crate) locked: bool,
}

impl VenueHooks {
    pub(crate) fn take_book_fault(&mut self, idx: usize) -> Option<BookFault> {
        self.book_faults.get_mut(idx).and_then(Option::take)
    }

    pub(crate) fn take_held(&mut self, idx: usize) -> Option<Value> {
        self.held.get_mut(idx).and_then(Option::take)
    }

    pub(crate) fn hold(&mut self, idx: usize, change: Value) {
        if let Some(slot) = self.held.get_mut(idx) {
            *slot = Some(change);
        }
    }

    /// The error a request for `method` must fail with, if a failure is armed (counts it).
    pub(crate) fn injected_failure(&mut self, method: &str) -> Option<RpcError> {
        let pos = self.failures.iter().position(|f| f.method == method)?;
        let failure = &mut self.failures[pos];
        let code = failure.code;
        if let Some(left) = failure.times.as_mut() {
            *left -= 1;
            if *left == 0 {
                self.failures.remove(pos);
            }
        }
        Some(RpcError::from_code(code))
    }
}

/// A connection as [`DeribitSim::connections_info`](super::DeribitSim::connections_info) lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    /// The connection's id (for [`DeribitSim::fault`](super::DeribitSim::fault)).
    pub id: u64,
    /// The client's address.
    pub peer: String,
    /// The authenticated account's client id, if any.
    pub client_id: Option<String>,
    /// The named session (`session:NAME` scope), if any.
    pub session: Option<String>,
    /// Subscribed channels.
    pub channels: Vec<String>,
    /// `private/enable_cancel_on_disconnect` with the connection scope is on.
    pub cancel_on_disconnect: bool,
}

impl Venue {
    /// Arms `fault` for the next book change of `instrument_name`; `false` if unknown.
    pub(crate) fn arm_book_fault(&mut self, instrument_name: &str, fault: BookFault) -> bool {
        let Some(idx) = index_of(instrument_name) else { return false };
        self.hooks.book_faults[idx] = Some(fault);
        true
    }

    /// Makes the next `times` requests for `method` (every one: `None`) fail with `code`.
    pub(crate) fn fail_method(&mut self, method: &str, code: i64, times: Option<usize>) {
        self.hooks.failures.retain(|f| f.method != method);
        if times != Some(0) {
            self.hooks.failures.push(Failure { method: method.to_owned(), code, times });
        }
    }

    /// Account index of `client_id` (`None` = every account); `Err` if unknown.
    fn account_filter(&self, client_id: Option<&str>) -> Result<Option<usize>, ()> {
        client_id.map(|id| self.auth.account_of(id).ok_or(())).transpose()
    }

    /// Expires access tokens now (refresh tokens stay good). `None` if the client id is unknown.
    pub(crate) fn expire_tokens(&mut self, client_id: Option<&str>, now: Now) -> Option<usize> {
        let account = self.account_filter(client_id).ok()?;
        Some(self.auth.expire(account, now.instant))
    }

    /// Revokes access and refresh tokens now. `None` if the client id is unknown.
    pub(crate) fn revoke_tokens(&mut self, client_id: Option<&str>) -> Option<usize> {
        let account = self.account_filter(client_id).ok()?;
        Some(self.auth.revoke(account))
    }

    /// Fills what is left of an open order at its limit price, as if a market participant
    /// took it, and notifies (its owner's connections, the public channels). `false` if it
    /// is not an open order.
    pub(crate) fn fill_order(&mut self, order_id: &str, now: Now) -> (bool, Vec<Delivery>) {
        let Some(id) = self.open_order(order_id) else { return (false, Vec::new()) };
        let idx = self.orders[&id].instrument;
        let side = self.orders[&id].side.opposite();
        let before = self.markets[idx].levels();
        let Some(resting) = self.markets[idx].book.get(id).cloned() else { return (false, Vec::new()) };
        // Take exactly this order: remove it, then record the fill and trade as a taker would.
        self.markets[idx].book.remove(id);
        let trade = self.markets[idx].record_trade(&mut self.ids, resting.price, resting.remaining, side);
        let fill = super::book::Fill {
            maker_id: id,
            maker_owner: resting.owner,
            price: resting.price,
            amount: resting.remaining,
            maker_remaining: 0,
        };
        let executions = vec![super::market::Execution { fill, trade }];
        self.settle_makers(idx, &executions, None, now);
        self.publish_trades(idx, &executions, now);
        self.publish_book_change(idx, before, now);
        (true, std::mem::take(&mut self.pending))
    }

    /// Cancels an open order as the venue would (reason `user_request`... as if from
    /// another session of its account). `false` if it is not an open order.
    pub(crate) fn cancel_order(&mut self, order_id: &str, now: Now) -> (bool, Vec<Delivery>) {
        let Some(id) = self.open_order(order_id) else { return (false, Vec::new()) };
        let (account, idx) = (self.orders[&id].account, self.orders[&id].instrument);
        let before = self.markets[idx].levels();
        let done = self.cancel_one(account, id, now, "user_request").is_some();
        self.publish_book_change(idx, before, now);
        (done, std::mem::take(&mut self.pending))
    }

    fn open_order(&self, order_id: &str) -> Option<u64> {
        parse_public_id(order_id)
            .and_then(|n| self.orders.get(&n))
            .filter(|o| o.public_id() == order_id && o.state == OrderState::Open)
            .map(|o| o.id)
    }

    /// Locks (maintenance) or unlocks the platform; `platform_state` subscribers are told.
    pub(crate) fn set_locked(&mut self, locked: bool) -> Vec<Delivery> {
        self.hooks.locked = locked;
        for index in price_indices() {
            let data = json!({ "price_index": index, "locked": locked });
            self.publish(Kind::PlatformState, 0, None, &data);
        }
        std::mem::take(&mut self.pending)
    }

    /// What the venue knows about connection `conn` (the shell adds the address).
    pub(crate) fn connection_info(&self, conn: ConnId, peer: String) -> ConnectionInfo {
        let session = self.sessions.get(&conn);
        let account = session.and_then(|s| s.auth.as_ref()).map(|a| a.0);
        ConnectionInfo {
            id: conn,
            peer,
            client_id: account.and_then(|a| self.auth.client_id(a)).map(str::to_owned),
            session: self.session_name(conn),
            channels: session.map(|s| s.subs.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            cancel_on_disconnect: session.is_some_and(|s| s.cancel_on_disconnect),
        }
    }
}
