//! The hooks: what a test (from Rust, or over the HTTP control endpoint of
//! [`super::control_http`]) does to a running simulator to make it break the way Deribit
//! breaks. [`Hook`] is the one description both paths apply.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::hooks::{BookFault, ConnectionInfo};
use super::server::DeribitSim;
use super::shared::Shared;
use super::time::Now;
use super::venue::ConnId;
use crate::ws::json::is_subset;

/// A connection fault (the WebSocket mock's kinds that make sense for one venue connection).
///
/// In JSON (control endpoint): `{"kind": "close", "code": 1011, "reason": "bye"}`,
/// `{"kind": "fin"}`, `{"kind": "reset"}`, `{"kind": "half_open"}`,
/// `{"kind": "stall_after", "bytes": 0}`, `{"kind": "slow_drip", "delay_ms": 50}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Send a close frame with this code and reason (behind what is queued), wait up to 1 s
    /// for the client's, then close the TCP connection.
    Close {
        /// Close code.
        code: u16,
        /// Close reason (at most 123 bytes on the wire).
        #[serde(default)]
        reason: String,
    },
    /// Close the TCP connection (FIN) without a close frame.
    Fin,
    /// Reset the TCP connection (RST).
    Reset,
    /// Stop reading and writing, keep the socket open (no FIN, no RST) until the simulator
    /// is dropped. The venue ends the session at once (cancel-on-disconnect fires).
    HalfOpen,
    /// Let this many more bytes out, then stop writing for good (reading goes on).
    StallAfter {
        /// Bytes still let through.
        bytes: usize,
    },
    /// Write every outgoing byte separately, this many milliseconds apart.
    SlowDrip {
        /// Delay between bytes, in milliseconds.
        delay_ms: u64,
    },
}

/// Which request a request hook acts on: same `method`, `params` containing `params` (a
/// JSON subset, if given), on connection `conn` (any, if not given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// The JSON-RPC method, e.g. `private/buy`.
    pub method: String,
    /// A JSON subset the request's `params` must contain.
    #[serde(default)]
    pub params: Option<Value>,
    /// Only on this connection.
    #[serde(default)]
    pub conn: Option<u64>,
}

impl RequestMatch {
    /// Matches every request for `method`.
    pub fn method(method: impl Into<String>) -> Self {
        Self { method: method.into(), params: None, conn: None }
    }
}

/// What a request hook does to the matching request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RequestAction {
    /// Process it, drop its response (and anything else for its connection), then apply the fault.
    Cut(Fault),
    /// Send its response this much later.
    Delay(Duration),
}

/// A one-shot request hook.
#[derive(Debug, Clone)]
pub(crate) struct RequestRule {
    pub(crate) request: RequestMatch,
    pub(crate) action: RequestAction,
}

impl RequestRule {
    pub(crate) fn matches(&self, conn: ConnId, request: &Value) -> bool {
        self.request.conn.is_none_or(|c| c == conn)
            && request.get("method").and_then(Value::as_str) == Some(self.request.method.as_str())
            && self.request.params.as_ref().is_none_or(|p| request.get("params").is_some_and(|v| is_subset(p, v)))
    }
}

/// One hook, as the control endpoint takes it (`POST /hook` with this as JSON, tagged by
/// `hook`), and as [`DeribitSim::apply`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "hook", rename_all = "snake_case", deny_unknown_fields)]
pub enum Hook {
    /// Fault connection `conn`, or every connection when absent.
    Fault {
        /// The connection (ids from [`DeribitSim::connections_info`]); all if absent.
        #[serde(default)]
        conn: Option<u64>,
        /// What to do.
        fault: Fault,
    },
    /// Break the next `book.{instrument}.{interval}` change of an instrument.
    BookFault {
        /// `BTC-PERPETUAL`, `ETH-PERPETUAL` or `BTC-25DEC26`.
        instrument_name: String,
        /// `withhold`, `duplicate` or `reorder`.
        fault: BookFault,
    },
    /// Expire access tokens now (of one client id, or all); refresh tokens stay good.
    ExpireTokens {
        /// The account's client id; every account if absent.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Revoke access and refresh tokens now (of one client id, or all).
    RevokeTokens {
        /// The account's client id; every account if absent.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Process the next matching request, then cut its connection before the response goes out.
    CutBeforeResponse {
        /// Which request.
        request: RequestMatch,
        /// How to cut (default: RST).
        #[serde(default = "default_cut")]
        fault: Fault,
    },
    /// Send the response to the next matching request later.
    DelayResponse {
        /// Which request.
        request: RequestMatch,
        /// How much later, in milliseconds.
        delay_ms: u64,
    },
    /// Fill what is left of an open order now, at its price (its client may be away).
    FillOrder {
        /// Deribit's `order_id`.
        order_id: String,
    },
    /// Cancel an open order now (its client may be away).
    CancelOrder {
        /// Deribit's `order_id`.
        order_id: String,
    },
    /// Lock (maintenance: trading answers `11051`) or unlock the platform; `platform_state`
    /// subscribers are told and `public/status` says so.
    PlatformState {
        /// Locked?
        locked: bool,
    },
    /// Make requests for `method` fail with `code` (Deribit's message for it).
    FailMethod {
        /// The JSON-RPC method.
        method: String,
        /// The error code.
        code: i64,
        /// How many requests (every one until replaced, if absent; 0 clears).
        #[serde(default)]
        times: Option<usize>,
    },
    /// Step the simulated market this many times now.
    StepMarket {
        /// Steps.
        steps: usize,
    },
}

fn default_cut() -> Fault {
    Fault::Reset
}

/// Why a hook could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// No open connection has this id.
    #[error("no open connection {0}")]
    UnknownConnection(u64),
    /// The simulator does not list this instrument.
    #[error("unknown instrument {0:?} (BTC-PERPETUAL, ETH-PERPETUAL, BTC-25DEC26)")]
    UnknownInstrument(String),
    /// No account has this client id.
    #[error("unknown client id {0:?}")]
    UnknownClient(String),
    /// No open order has this id.
    #[error("no open order {0:?}")]
    OrderNotOpen(String),
}

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
