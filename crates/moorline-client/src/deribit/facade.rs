//! What the Deribit façade ([`DeribitClient`](super::DeribitClient)) and its event stream
//! ([`DeribitEvents`](super::DeribitEvents)) share: the [`Facade`] (the client, the order
//! registry, the platform lock, the reconciliation's channel) and the reconciliation itself,
//! which runs in a task of its own after every `Connected`/`Reconnected` and sends its findings
//! to the stream. Below both, so neither imports the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::errors::{DeribitError, ErrorClass};
use super::event::{DeribitEvent, Internal, OrderEvent, OrderSource};
use super::orders::Registry;
use super::types::{Order, PlatformStatus, currency_of};
use crate::client::Client;
use crate::dialect::Deribit;
use crate::error::ClientError;
use crate::jsonrpc::RawValue;

/// Deribit's error code for "platform locked for maintenance".
const MAINTENANCE: i64 = 11051;

/// How often a call waiting for the end of maintenance asks `public/status`.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// What the façade and its event stream share.
pub(crate) struct Facade {
    pub client: Client,
    pub dialect: Deribit,
    pub registry: Mutex<Registry>,
    /// Trading is locked (maintenance), as last learned.
    pub locked: watch::Sender<bool>,
    pub internal: mpsc::Sender<Internal>,
    pub maintenance_wait: Duration,
    pub(super) label_prefix: String,
    pub(super) label_seq: AtomicU64,
    /// Itself, for the tasks a call spawns.
    pub(super) me: Weak<Facade>,
}

impl Facade {
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A JSON-RPC call with the error mapped; a call refused because the token is gone is
    /// made again once, after the re-authentication (it was not processed).
    pub async fn call_raw(&self, method: &str, params: &Value) -> Result<Box<RawValue>, DeribitError> {
        match self.client.request(method, params).await {
            Ok(raw) => Ok(raw),
            Err(e) => {
                let e = DeribitError::from(e);
                if e.class() != ErrorClass::Reauthenticate {
                    return Err(e);
                }
                self.client.reauthenticate().await?;
                Ok(self.client.request(method, params).await?)
            }
        }
    }

    /// As [`call_raw`](Self::call_raw), read as `T`.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: &Value) -> Result<T, DeribitError> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(raw.get())
            .map_err(|e| DeribitError::Decode { method: method.to_owned(), reason: e.to_string() })
    }

    pub(super) fn next_label(&self) -> String {
        let n = self.label_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.label_prefix)
    }

    /// Waits while trading is locked, asking `public/status` now and then; at most
    /// `maintenance_wait`.
    pub(super) async fn await_unlocked(&self) -> Result<(), DeribitError> {
        let started = Instant::now();
        let deadline = started + self.maintenance_wait;
        let mut rx = self.locked.subscribe();
        while *rx.borrow_and_update() {
            let now = Instant::now();
            if now >= deadline {
                return Err(DeribitError::Maintenance { waited: now - started });
            }
            let wake = (now + STATUS_POLL).min(deadline);
            if tokio::time::timeout_at(wake, rx.wait_for(|locked| !*locked)).await.is_ok() {
                return Ok(());
            }
            if let Ok(status) = self.call::<PlatformStatus>("public/status", &json!({})).await {
                self.locked.send_replace(status.is_locked());
            }
        }
        Ok(())
    }

    /// `private/buy`, `sell`, `edit` or `cancel`: waits out maintenance (not for a
    /// cancel), keeps the order's label to find it again if the answer is lost (`placement`:
    /// a buy or sell), records the answer.
    pub(super) async fn trade<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        label: Option<(&str, &str)>,
        placement: bool,
        order_of: impl Fn(&T) -> &Order,
    ) -> Result<T, DeribitError> {
        if method != "private/cancel" {
            self.await_unlocked().await?;
        }
        let mut again = true;
        loop {
            let error = match self.client.request(method, &params).await {
                Ok(raw) => {
                    let result: T = serde_json::from_str(raw.get())
                        .map_err(|e| DeribitError::Decode { method: method.to_owned(), reason: e.to_string() })?;
                    self.registry().observe(order_of(&result));
                    return Ok(result);
                }
                Err(e) => e,
            };
            let unknown = matches!(error, ClientError::Disconnected { sent: true } | ClientError::Timeout { .. });
            if let (true, Some((label, instrument))) = (unknown, label) {
                self.registry().outcome_unknown(label, instrument, placement);
                if matches!(error, ClientError::Timeout { .. }) {
                    // Still connected: look it up now rather than at the next reconnect.
                    if let Some(me) = self.me.upgrade() {
                        spawn_reconcile(me, Reconcile::LabelsOnly);
                    }
                }
                return Err(DeribitError::OutcomeUnknown { label: label.to_owned(), source: error });
            }
            let error = DeribitError::from(error);
            // Refused before processing: made again once, when it can succeed.
            match (again, error.code(), error.class()) {
                (true, Some(MAINTENANCE), _) => {
                    self.locked.send_replace(true);
                    self.await_unlocked().await?;
                }
                (true, _, ErrorClass::Reauthenticate) => self.client.reauthenticate().await?,
                _ => return Err(error),
            }
            again = false;
        }
    }
}

/// What a reconciliation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reconcile {
    /// After a (re)connect: platform state, open orders, orders
    /// last seen open, unknown outcomes.
    Full {
        /// The first connection (subscribe to `platform_state`).
        first: bool,
    },
    /// Only the order requests whose outcome is unknown.
    LabelsOnly,
}

/// Runs a reconciliation in a task of its own; its findings reach the event stream.
pub(crate) fn spawn_reconcile(facade: Arc<Facade>, what: Reconcile) {
    tokio::spawn(async move {
        let tx = facade.internal.clone();
        let event = match reconcile(&facade, what).await {
            Ok((open, resolved)) => DeribitEvent::Reconciled { open, resolved },
            Err(e) => DeribitEvent::ReconciliationFailed(e),
        };
        let _ = tx.send(Internal::Event(event)).await;
    });
}

pub(super) async fn emit(facade: &Facade, event: DeribitEvent) -> Result<(), DeribitError> {
    facade.internal.send(Internal::Event(event)).await.map_err(|_| DeribitError::Client(ClientError::Closed))
}

pub(super) async fn reconcile(facade: &Facade, what: Reconcile) -> Result<(usize, usize), DeribitError> {
    let mut open_count = 0;
    if let Reconcile::Full { first } = what {
        if first {
            let out = facade.client.subscribe(&["platform_state"]).await?;
            if !out.refused.is_empty() {
                tracing::info!(refused = ?out.refused, "platform_state not available");
            }
        }
        let status: PlatformStatus = facade.call("public/status", &json!({})).await?;
        facade.locked.send_replace(status.is_locked());
        if facade.dialect.credentials().is_some() {
            let open: Vec<Order> = facade.call("private/get_open_orders", &json!({})).await?;
            open_count = open.len();
            for order in &open {
                let new = facade.registry().observe(order);
                if new {
                    emit(facade, order_event(order.clone(), OrderSource::Reconciled)).await?;
                }
            }
            // Orders last seen open that are not any more: what became of them while away.
            let gone: Vec<String> = facade
                .registry()
                .live()
                .into_iter()
                .filter(|(id, _)| !open.iter().any(|o| &o.order_id == id))
                .map(|(id, _)| id)
                .collect();
            for id in gone {
                let order: Order = facade.call("private/get_order_state", &json!({ "order_id": id })).await?;
                let new = facade.registry().observe(&order);
                if new {
                    emit(facade, order_event(order, OrderSource::Reconciled)).await?;
                }
            }
        }
    }
    let mut resolved = 0;
    let unknown = facade.registry().unknown();
    for (label, unknown) in unknown {
        let params = json!({"currency": currency_of(&unknown.instrument_name), "label": label});
        let orders: Vec<Order> = facade.call("private/get_order_state_by_label", &params).await?;
        let mine = facade.registry().resolve(&label);
        if !mine {
            continue; // another reconciliation reported it
        }
        resolved += 1;
        if orders.is_empty() && unknown.placement {
            emit(facade, DeribitEvent::OrderNotPlaced { label }).await?;
        }
        for order in orders {
            let new = facade.registry().observe(&order);
            if new {
                emit(facade, order_event(order, OrderSource::Reconciled)).await?;
            }
        }
    }
    Ok((open_count, resolved))
}

pub(super) fn order_event(order: Order, source: OrderSource) -> DeribitEvent {
    DeribitEvent::Order(OrderEvent { order, source })
}
