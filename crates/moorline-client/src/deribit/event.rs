//! The Deribit façade's event values: [`DeribitEvent`] (what
//! [`DeribitEvents`](super::DeribitEvents) yields), [`OrderEvent`] and [`OrderSource`], and
//! what the reconciliation task sends the stream.

use super::book::BookUpdate;
use super::errors::DeribitError;
use super::types::Order;
use crate::client::SubscribeOutcome;
use crate::error::ClientError;
use crate::event::{Channel, ClientEvent, Payload};

/// How an order state was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    /// A `user.orders.*` notification.
    Notification,
    /// The reconciliation after a (re)connect, or the lookup of an order whose answer was lost.
    Reconciled,
}

/// An order state the user has not seen yet (from a notification or the reconciliation;
/// the answers of the façade's own calls are returned to the caller, not repeated here).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    /// The order as Deribit reported it.
    pub order: Order,
    /// Where it came from.
    pub source: OrderSource,
}

/// What the Deribit façade tells its user.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DeribitEvent {
    /// A `book.*` update that follows the book (a snapshot, or a change in sequence).
    Book {
        /// The channel.
        channel: Channel,
        /// The update.
        update: BookUpdate,
    },
    /// The book of `channel` skipped a change: it is broken until the resync's snapshot;
    /// nothing of it is delivered meanwhile.
    BookGap {
        /// The channel.
        channel: Channel,
        /// The instrument.
        instrument: String,
        /// The last applied `change_id` (`None`: no snapshot yet).
        expected: Option<u64>,
        /// The offending change's `prev_change_id`.
        got: Option<u64>,
        /// The offending change's own `change_id`.
        change_id: u64,
    },
    /// The resync of a broken book failed (it stays broken; a reconnect also mends it).
    BookResyncFailed {
        /// The channel.
        channel: Channel,
        /// Why.
        reason: String,
    },
    /// An order state not seen before.
    Order(OrderEvent),
    /// An order request whose answer was lost was not placed: no order has its label.
    OrderNotPlaced {
        /// The label.
        label: String,
    },
    /// A reconciliation finished.
    Reconciled {
        /// Open orders found.
        open: usize,
        /// Order requests of unknown outcome resolved.
        resolved: usize,
    },
    /// A reconciliation could not finish (it runs again after the next reconnect).
    ReconciliationFailed(DeribitError),
    /// Trading was locked (maintenance) or unlocked.
    PlatformState {
        /// Locked?
        locked: bool,
    },
    /// Any other notification, as the client delivered it.
    Notification {
        /// Its channel, when known.
        channel: Option<Channel>,
        /// The whole message.
        data: Payload,
    },
    /// The client's own events: connected, disconnected, reconnecting, reconnected, restored,
    /// idle, dropped, error, closed.
    Client(ClientEvent),
}

/// What the façade's tasks send to the stream.
pub(crate) enum Internal {
    Event(DeribitEvent),
    Resynced { channel: Channel, result: Result<SubscribeOutcome, ClientError> },
}
