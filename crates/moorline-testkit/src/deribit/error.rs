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
/// `10028`: the connection ran out of rate-limit credits.
pub const TOO_MANY_REQUESTS: i64 = 10028;
/// `11044`: cancelling an order that is not open (unknown, filled, cancelled, someone else's).
pub const NOT_OPEN_ORDER: i64 = 11044;
/// `11054`: a `post_only` order with `reject_post_only` would have crossed.
pub const POST_ONLY_REJECT: i64 = 11054;
/// `13004`: wrong client id/secret or an unknown refresh token.
pub const INVALID_CREDENTIALS: i64 = 13004;
/// `13009`: a private method without a valid (present, unexpired) access token.
pub const UNAUTHORIZED: i64 = 13009;

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
