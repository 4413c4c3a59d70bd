//! [`DeribitEvents`]: the façade's event stream. It reads the client's events and turns
//! them into [`DeribitEvent`]s:
//!
//! - `book.*` notifications go through one [`OrderBook`] per channel: an update that follows
//!   the book is delivered ([`DeribitEvent::Book`]); a gap (`prev_change_id` not the last
//!   `change_id`: a change withheld, duplicated or reordered) is reported once
//!   ([`DeribitEvent::BookGap`]), the channel is resynced (unsubscribe + subscribe, which makes
//!   Deribit send a new snapshot), and **no** update of the broken book is delivered until
//!   that snapshot. A disconnect resets every book (the restore's snapshot starts it again).
//! - `user.orders.*` notifications become [`DeribitEvent::Order`], each order state once
//!   (shared bookkeeping with the calls' answers and the reconciliation).
//! - `platform_state` notifications: [`DeribitEvent::PlatformState`] when the lock changes.
//! - after every `Connected`/`Reconnected`: a reconciliation (open orders, orders last seen
//!   open, order requests whose answer was lost, the platform state) runs in a task of its
//!   own; its findings arrive as order events, then [`DeribitEvent::Reconciled`].
//!
//! The façade's view (books, orders, lock) advances as the stream is read: read it.
//! `recv` is cancel-safe (usable in `select!`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::book::{BookGap as Gap, BookUpdate, OrderBook};
use super::event::Internal;
pub use super::event::{DeribitEvent, OrderEvent, OrderSource};
use super::facade::{Facade, Reconcile, spawn_reconcile};
use super::types::Order;
use crate::error::ClientError;
use crate::event::{Channel, ClientEvent, Payload};
use crate::jsonrpc;
use crate::queue::EventStream;

/// The façade's event stream. See the [module documentation](self).
pub struct DeribitEvents {
    events: EventStream,
    internal: mpsc::Receiver<Internal>,
    facade: Arc<Facade>,
    books: HashMap<Channel, OrderBook>,
    resyncing: HashSet<Channel>,
    ready: VecDeque<DeribitEvent>,
    withheld: u64,
    ever_connected: bool,
    ended: bool,
}

impl std::fmt::Debug for DeribitEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeribitEvents").field("books", &self.books.len()).field("withheld", &self.withheld).finish()
    }
}

impl DeribitEvents {
    pub(crate) fn new(events: EventStream, internal: mpsc::Receiver<Internal>, facade: Arc<Facade>) -> Self {
        Self {
            events,
            internal,
            facade,
            books: HashMap::new(),
            resyncing: HashSet::new(),
            ready: VecDeque::new(),
            withheld: 0,
            ever_connected: false,
            ended: false,
        }
    }

    /// The next event; `None` once the client closed (after [`ClientEvent::Closed`]).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<DeribitEvent> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(ev);
            }
            if self.ended {
                // The client is gone: what the tasks still had to say, then the end.
                return match self.internal.try_recv() {
                    Ok(internal) => {
                        self.on_internal(internal);
                        continue;
                    }
                    Err(_) => None,
                };
            }
            tokio::select! {
                biased;
                Some(internal) = self.internal.recv() => self.on_internal(internal),
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_client_event(ev),
                    None => self.ended = true,
                },
            }
        }
    }

    /// The book of a `book.*` channel as delivered so far (`None` before its first update).
    /// Broken books show no levels.
    pub fn book(&self, channel: &str) -> Option<&OrderBook> {
        self.books.get(channel)
    }

    /// Updates of broken books that were not delivered (they came between a gap and the
    /// resync's snapshot).
    pub fn withheld(&self) -> u64 {
        self.withheld
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Event(ev) => self.ready.push_back(ev),
            Internal::Resynced { channel, result } => {
                self.resyncing.remove(&channel);
                let reason = match result {
                    Ok(out) => out.refused.first().map(|r| r.reason.clone()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(reason) = reason {
                    self.ready.push_back(DeribitEvent::BookResyncFailed { channel, reason });
                }
            }
        }
    }

    fn on_client_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Message { data, channel: Some(channel) } => self.on_notification(channel, data),
            ClientEvent::Message { data, channel: None } => {
                self.ready.push_back(DeribitEvent::Notification { channel: None, data });
            }
            ClientEvent::Disconnected { .. } => {
                // The next connection's restore sends a snapshot of every book.
                for book in self.books.values_mut() {
                    *book = OrderBook::new();
                }
                self.ready.push_back(DeribitEvent::Client(ev));
            }
            ClientEvent::Connected { .. } | ClientEvent::Reconnected { .. } => {
                let first = !self.ever_connected;
                self.ever_connected = true;
                self.ready.push_back(DeribitEvent::Client(ev));
                spawn_reconcile(self.facade.clone(), Reconcile::Full { first });
            }
            other => self.ready.push_back(DeribitEvent::Client(other)),
        }
    }

    fn on_notification(&mut self, channel: Channel, data: Payload) {
        let kind = channel.split('.').next().unwrap_or("");
        let is_user_orders = channel.starts_with("user.orders.");
        if kind != "book" && !is_user_orders && &*channel != "platform_state" {
            self.ready.push_back(DeribitEvent::Notification { channel: Some(channel), data });
            return;
        }
        // `data` alone, found without checking it: the typed reads below check it.
        let body = data.as_text().and_then(jsonrpc::notification_data);
        let Some(body) = body else {
            self.ready.push_back(DeribitEvent::Notification { channel: Some(channel), data });
            return;
        };
        if kind == "book" {
            self.on_book(channel, body);
        } else if is_user_orders {
            self.on_orders(body);
        } else {
            #[derive(Deserialize)]
            struct State {
                locked: bool,
            }
            if let Ok(state) = serde_json::from_str::<State>(body)
                && *self.facade.locked.borrow() != state.locked
            {
                self.facade.locked.send_replace(state.locked);
                self.ready.push_back(DeribitEvent::PlatformState { locked: state.locked });
            }
        }
    }

    fn on_book(&mut self, channel: Channel, body: &str) {
        let update = match BookUpdate::parse(body) {
            Ok(u) => u,
            Err(e) => {
                // Unreadable: the book cannot be trusted any more.
                let book = self.books.entry(channel.clone()).or_default();
                let expected = book.last_change_id();
                *book = OrderBook::new();
                tracing::warn!(%channel, error = %e, "unreadable book notification: resyncing");
                self.ready.push_back(DeribitEvent::BookGap {
                    channel: channel.clone(),
                    instrument: String::new(),
                    expected,
                    got: None,
                    change_id: 0,
                });
                self.resync(channel);
                return;
            }
        };
        let book = self.books.entry(channel.clone()).or_default();
        match book.apply(&update) {
            Ok(_) => self.ready.push_back(DeribitEvent::Book { channel, update }),
            Err(Gap::Broken { .. }) => self.withheld += 1,
            Err(gap) => {
                self.withheld += 1;
                let (expected, got, change_id) = match gap {
                    Gap::Mismatch { expected, got, change_id } => (Some(expected), got, change_id),
                    Gap::NoSnapshot { change_id } => (None, update.prev_change_id, change_id),
                    Gap::Broken { change_id } => (None, update.prev_change_id, change_id),
                };
                tracing::info!(%channel, ?expected, ?got, change_id, "book gap: resyncing");
                self.ready.push_back(DeribitEvent::BookGap {
                    channel: channel.clone(),
                    instrument: update.instrument_name,
                    expected,
                    got,
                    change_id,
                });
                self.resync(channel);
            }
        }
    }

    /// Unsubscribe + subscribe, in a task (the stream stays readable); Deribit answers the
    /// new subscription with a snapshot, which mends the book.
    fn resync(&mut self, channel: Channel) {
        if !self.resyncing.insert(channel.clone()) {
            return;
        }
        let client = self.facade.client.clone();
        let tx = self.facade.internal.clone();
        tokio::spawn(async move {
            let result = async {
                client.unsubscribe(&[&channel]).await?;
                client.subscribe(&[&channel]).await
            }
            .await;
            let _ = tx.send(Internal::Resynced { channel, result }).await;
        });
    }

    fn on_orders(&mut self, body: &str) {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Box<Order>),
            Many(Vec<Order>),
        }
        let orders = match serde_json::from_str::<OneOrMany>(body) {
            Ok(OneOrMany::One(o)) => vec![*o],
            Ok(OneOrMany::Many(v)) => v,
            Err(e) => {
                let why = format!("unreadable user.orders notification: {e}");
                self.ready.push_back(DeribitEvent::Client(ClientEvent::Error(ClientError::BadReply(why))));
                return;
            }
        };
        for order in orders {
            if self.facade.registry().observe(&order) {
                self.ready.push_back(DeribitEvent::Order(OrderEvent { order, source: OrderSource::Notification }));
            }
        }
    }
}
