//! What a hook says, without applying it: the faults, the request hooks and [`Hook`], the
//! one description a test applies from Rust or over the control endpoint (`control.rs`
//! applies them; `shared.rs` keeps the request rules; `control_http.rs` reads them as JSON).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hooks::BookFault;
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
/// `hook`), and as [`DeribitSim::apply`](crate::deribit::DeribitSim::apply) does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "hook", rename_all = "snake_case", deny_unknown_fields)]
pub enum Hook {
    /// Fault connection `conn`, or every connection when absent.
    Fault {
        /// The connection (ids from [`DeribitSim::connections_info`](crate::deribit::DeribitSim::connections_info)); all if absent.
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
