//! Deribit error objects and the codes the simulator uses.

use serde_json::{Value, json};

/// `-32700`: the text is not JSON (the response id is `null`).
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: JSON, but not a JSON-RPC request (wrong shape, bad id, binary frame).
pub const INVALID_REQUEST: i64 = -32600;
/// `-32601`: unknown method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// `-32602`: missing or malformed parameter (`data` names it: `{"param", "reason"}`).
pub const INVALID_PARAMS: i64 = -32602;
/// `10004`: no order with this id.
pub const ORDER_NOT_FOUND: i64 = 10004;
/// `10009`: the account's margin does not cover the order (`not_enough_funds`).
pub const NOT_ENOUGH_FUNDS: i64 = 10009;
/// `10028`: the rate-limit pool ran out of credits (the session ends, unless configured not to).
pub const TOO_MANY_REQUESTS: i64 = 10028;
/// `11044`: cancelling an order that is not open (unknown, filled, cancelled, someone else's).
pub const NOT_OPEN_ORDER: i64 = 11044;
/// `11054`: a `post_only` order with `reject_post_only` would have crossed.
pub const POST_ONLY_REJECT: i64 = 11054;
/// `11051`: the platform is locked for maintenance (`system_maintenance`).
pub const SYSTEM_MAINTENANCE: i64 = 11051;
/// `13004`: wrong client id/secret or an unknown refresh token.
pub const INVALID_CREDENTIALS: i64 = 13004;
/// `13009`: a private method without a valid (present, unexpired) access token.
pub const UNAUTHORIZED: i64 = 13009;
/// `13778`: a `.raw` channel subscribed without authentication.
pub const RAW_SUBSCRIPTIONS_NEED_AUTH: i64 = 13778;

/// Deribit's message for a code, for errors injected by code ([`RpcError::from_code`]).
fn message_of(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "Parse error",
        INVALID_REQUEST => "Invalid Request",
        METHOD_NOT_FOUND => "Method not found",
        INVALID_PARAMS => "Invalid params",
        -32000 => "Internal error",
        10000 => "authorization_required",
        ORDER_NOT_FOUND => "order_not_found",
        NOT_ENOUGH_FUNDS => "not_enough_funds",
        TOO_MANY_REQUESTS => "too_many_requests",
        10040 => "retry",
        10041 => "settlement_in_progress",
        10047 => "matching_engine_queue_full",
        10066 => "too_many_concurrent_requests",
        NOT_OPEN_ORDER => "not_open_order",
        SYSTEM_MAINTENANCE => "system_maintenance",
        POST_ONLY_REJECT => "post_only_reject",
        11094 => "internal_server_error",
        INVALID_CREDENTIALS => "invalid_credentials",
        UNAUTHORIZED => "unauthorized",
        13028 => "temporarily_unavailable",
        RAW_SUBSCRIPTIONS_NEED_AUTH => "raw_subscriptions_not_available_for_unauthorized",
        13888 => "timed_out",
        _ => "error",
    }
}

/// A JSON-RPC error as Deribit sends it: `{"code", "message", "data"?}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: &str) -> Self {
        Self { code, message: message.to_owned(), data: None }
    }

    fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.data = Some(json!({ "reason": reason.into() }));
        self
    }

    /// `-32700 Parse error`.
    pub(crate) fn parse(reason: impl Into<String>) -> Self {
        Self::new(PARSE_ERROR, "Parse error").with_reason(reason)
    }

    /// `-32600 Invalid Request`.
    pub(crate) fn invalid_request(reason: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, "Invalid Request").with_reason(reason)
    }

    /// `-32600 request entity too large`: a request over the size Deribit accepts.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(INVALID_REQUEST, "request entity too large")
            .with_reason(format!("requests are at most {limit} bytes"))
    }

    /// An error with this code and Deribit's message for it (`"error"` for codes it does not know).
    pub(crate) fn from_code(code: i64) -> Self {
        Self::new(code, message_of(code))
    }

    /// `13778 raw_subscriptions_not_available_for_unauthorized`.
    pub(crate) fn raw_needs_auth() -> Self {
        Self::from_code(RAW_SUBSCRIPTIONS_NEED_AUTH)
    }

    /// `10009 not_enough_funds`.
    pub(crate) fn not_enough_funds(reason: impl Into<String>) -> Self {
        Self::from_code(NOT_ENOUGH_FUNDS).with_reason(reason)
    }

    /// `11051 system_maintenance`.
    pub(crate) fn maintenance() -> Self {
        Self::from_code(SYSTEM_MAINTENANCE)
    }

    /// `-32601 Method not found`.
    pub(crate) fn method_not_found() -> Self {
        Self::new(METHOD_NOT_FOUND, "Method not found")
    }

    /// `-32602 Invalid params` naming the parameter, as Deribit does.
    pub(crate) fn invalid_params(param: &str, reason: impl Into<String>) -> Self {
        let mut e = Self::new(INVALID_PARAMS, "Invalid params");
        e.data = Some(json!({ "param": param, "reason": reason.into() }));
        e
    }

    /// `13009 unauthorized`.
    pub(crate) fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(UNAUTHORIZED, "unauthorized").with_reason(reason)
    }

    /// `13004 invalid_credentials`.
    pub(crate) fn invalid_credentials() -> Self {
        Self::new(INVALID_CREDENTIALS, "invalid_credentials")
    }

    /// `10028 too_many_requests`.
    pub(crate) fn too_many_requests() -> Self {
        Self::new(TOO_MANY_REQUESTS, "too_many_requests")
    }

    /// `11044 not_open_order`.
    pub(crate) fn not_open_order() -> Self {
        Self::new(NOT_OPEN_ORDER, "not_open_order")
    }

    /// `10004 order_not_found`.
    pub(crate) fn order_not_found() -> Self {
        Self::new(ORDER_NOT_FOUND, "order_not_found")
    }

    /// `11054 post_only_reject`.
    pub(crate) fn post_only_reject() -> Self {
        Self::new(POST_ONLY_REJECT, "post_only_reject")
    }

    /// The error object of a response.
    pub(crate) fn to_json(&self) -> Value {
        let mut obj = json!({ "code": self.code, "message": self.message });
        if let (Some(data), Some(map)) = (&self.data, obj.as_object_mut()) {
            map.insert("data".to_owned(), data.clone());
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::RpcError;
    use serde_json::json;

    #[test]
    fn error_objects() {
        assert_eq!(RpcError::method_not_found().to_json(), json!({"code": -32601, "message": "Method not found"}));
        assert_eq!(
            RpcError::invalid_params("amount", "bad").to_json(),
            json!({"code": -32602, "message": "Invalid params", "data": {"param": "amount", "reason": "bad"}})
        );
        assert_eq!(RpcError::unauthorized("x").to_string(), "unauthorized (13009)");
    }
}
