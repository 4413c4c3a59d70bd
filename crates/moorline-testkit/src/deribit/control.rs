//! The hooks: what a test (from Rust, or over the HTTP control endpoint of
//! [`super::control_http`]) does to a running simulator to make it break the way Deribit
//! breaks. [`Hook`] is the one description both paths apply.

use std::time::Duration;

use serde_json::{Value, json};

use super::hook_spec::{Fault, Hook, HookError, RequestAction, RequestMatch, RequestRule};
use super::hooks::{BookFault, ConnectionInfo};
use super::server::DeribitSim;
use super::shared::Shared;
use super::time::Now;

impl Shared {
    /// Applies `hook`; the JSON result says what it did.
    pub(crate) fn apply(&self, hook: Hook) -> Result<Value, HookError> {
        tracing::debug!(?hook, "hook");
        let now = Now::system();
        match hook {
            Hook::Fault { conn: Some(conn), fault } => {
                if self.fault(conn, &fault) {
                    Ok(json!({"faulted": 1}))
                } else {
                    Err(HookError::UnknownConnection(conn))
                }
            }
            Hook::Fault { conn: None, fault } => Ok(json!({ "faulted": self.fault_all(&fault) })),
            Hook::BookFault { instrument_name, fault } => {
                if self.lock().venue.arm_book_fault(&instrument_name, fault) {
                    Ok(json!("armed"))
                } else {
                    Err(HookError::UnknownInstrument(instrument_name))
                }
            }
            Hook::ExpireTokens { client_id } => {
                let n = self.lock().venue.expire_tokens(client_id.as_deref(), now);
                n.map(|n| json!({ "expired": n }))
                    .ok_or_else(|| HookError::UnknownClient(client_id.unwrap_or_default()))
            }
            Hook::RevokeTokens { client_id } => {
                let n = self.lock().venue.revoke_tokens(client_id.as_deref());
                n.map(|n| json!({ "revoked": n }))
                    .ok_or_else(|| HookError::UnknownClient(client_id.unwrap_or_default()))
            }
            Hook::CutBeforeResponse { request, fault } => {
                self.add_rule(RequestRule { request, action: RequestAction::Cut(fault) });
                Ok(json!("armed"))
            }
            Hook::DelayResponse { request, delay_ms } => {
                let action = RequestAction::Delay(Duration::from_millis(delay_ms));
                self.add_rule(RequestRule { request, action });
                Ok(json!("armed"))
            }
            Hook::FillOrder { order_id } => {
                if self.run(|v| v.fill_order(&order_id, now)) {
                    Ok(json!("filled"))
                } else {
                    Err(HookError::OrderNotOpen(order_id))
                }
            }
            Hook::CancelOrder { order_id } => {
                if self.run(|v| v.cancel_order(&order_id, now)) {
                    Ok(json!("cancelled"))
                } else {
                    Err(HookError::OrderNotOpen(order_id))
                }
            }
            Hook::PlatformState { locked } => {
                self.run(|v| ((), v.set_locked(locked)));
                Ok(json!({ "locked": locked }))
            }
            Hook::FailMethod { method, code, times } => {
                self.lock().venue.fail_method(&method, code, times);
                Ok(json!("armed"))
            }
            Hook::StepMarket { steps } => {
                for _ in 0..steps {
                    self.step_market();
                }
                Ok(json!({ "steps": steps }))
            }
        }
    }

    /// The open connections, by id.
    pub(crate) fn connections_info(&self) -> Vec<ConnectionInfo> {
        let peers = self.peers();
        let core = self.lock();
        peers.into_iter().map(|(id, peer)| core.venue.connection_info(id, peer.to_string())).collect()
    }
}

/// The hooks, from Rust. Each is also a [`Hook`] for [`apply`](DeribitSim::apply) and the
/// control endpoint.
impl DeribitSim {
    /// Applies a [`Hook`]; the JSON result says what it did (as the control endpoint answers).
    pub fn apply(&self, hook: Hook) -> Result<Value, HookError> {
        self.shared.apply(hook)
    }

    /// The open connections: id, address, account, named session, channels.
    pub fn connections_info(&self) -> Vec<ConnectionInfo> {
        self.shared.connections_info()
    }

    /// Faults connection `conn`; `false` if it is not open.
    pub fn fault(&self, conn: u64, fault: Fault) -> bool {
        self.shared.fault(conn, &fault)
    }

    /// Faults every open connection; returns how many.
    pub fn fault_all(&self, fault: Fault) -> usize {
        self.shared.fault_all(&fault)
    }

    /// Withholds, duplicates or reorders the next `book` change of `instrument_name`
    /// (`false`: unknown instrument).
    pub fn book_fault(&self, instrument_name: &str, fault: BookFault) -> bool {
        self.shared.lock().venue.arm_book_fault(instrument_name, fault)
    }

    /// Expires access tokens now (of `client_id`, or all); `None` for an unknown client id.
    pub fn expire_tokens(&self, client_id: Option<&str>) -> Option<usize> {
        self.shared.lock().venue.expire_tokens(client_id, Now::system())
    }

    /// Revokes access and refresh tokens now (of `client_id`, or all); `None` for an unknown client id.
    pub fn revoke_tokens(&self, client_id: Option<&str>) -> Option<usize> {
        self.shared.lock().venue.revoke_tokens(client_id)
    }

    /// Processes the next request matching `request`, then cuts its connection with
    /// `fault` (e.g. [`Fault::Reset`]) before the response goes out: the order exists, its
    /// client never heard.
    pub fn cut_before_response(&self, request: RequestMatch, fault: Fault) {
        self.shared.add_rule(RequestRule { request, action: RequestAction::Cut(fault) });
    }

    /// Sends the response to the next request matching `request` `delay` later.
    pub fn delay_response(&self, request: RequestMatch, delay: Duration) {
        self.shared.add_rule(RequestRule { request, action: RequestAction::Delay(delay) });
    }

    /// Fills what is left of open order `order_id` now; `false` if it is not open.
    pub fn fill_order(&self, order_id: &str) -> bool {
        self.shared.run(|v| v.fill_order(order_id, Now::system()))
    }

    /// Cancels open order `order_id` now; `false` if it is not open.
    pub fn cancel_order(&self, order_id: &str) -> bool {
        self.shared.run(|v| v.cancel_order(order_id, Now::system()))
    }

    /// Locks (maintenance) or unlocks the platform.
    pub fn set_platform_locked(&self, locked: bool) {
        self.shared.run(|v| ((), v.set_locked(locked)));
    }

    /// Makes the next `times` requests for `method` (all: `None`; none: `Some(0)`) fail
    /// with error `code`.
    pub fn fail_method(&self, method: &str, code: i64, times: Option<usize>) {
        self.shared.lock().venue.fail_method(method, code, times);
    }
}
