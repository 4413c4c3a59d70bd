//! The JSON-RPC 2.0 envelope: parsing requests (never panicking on garbage),
//! encoding responses and notifications, and typed access to `params`.

use serde_json::{Map, Value, json};

use super::error::RpcError;

/// Longest accepted `method` name; longer ones are answered `-32601`.
const MAX_METHOD_LEN: usize = 128;

/// A well-formed request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// `None` when the request had no `id` (the answer then has none either).
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) params: Map<String, Value>,
}

/// A request that could not be accepted: the id to answer with and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejected {
    pub(crate) id: Option<Value>,
    pub(crate) error: RpcError,
}

fn reject(id: Option<Value>, error: RpcError) -> Rejected {
    Rejected { id, error }
}

/// Parses one text frame as a JSON-RPC request.
pub(crate) fn parse_request(text: &str) -> Result<Request, Rejected> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| reject(Some(Value::Null), RpcError::parse(format!("invalid JSON: {e}"))))?;
    let Value::Object(mut obj) = value else {
        let reason = if value.is_array() { "batch requests are not supported" } else { "a request is a JSON object" };
        return Err(reject(Some(Value::Null), RpcError::invalid_request(reason)));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::Number(_) | Value::String(_) | Value::Null)) => Some(id),
        Some(_) => return Err(reject(Some(Value::Null), RpcError::invalid_request("id must be a number or a string"))),
    };
    match obj.get("jsonrpc") {
        None => {}
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Err(reject(id, RpcError::invalid_request("jsonrpc must be \"2.0\""))),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) if m.len() <= MAX_METHOD_LEN => m,
        Some(Value::String(_)) => return Err(reject(id, RpcError::method_not_found())),
        Some(_) => return Err(reject(id, RpcError::invalid_request("method must be a string"))),
        None => return Err(reject(id, RpcError::invalid_request("missing method"))),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(reject(id, RpcError::invalid_params("params", "must be an object"))),
    };
    Ok(Request { id, method, params })
}

/// Deribit's timing fields, in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) us_in: u64,
    pub(crate) us_out: u64,
}

/// A response (`result` or `error`) with `usIn`, `usOut`, `usDiff` and `testnet`.
pub(crate) fn response(id: Option<&Value>, outcome: Result<Value, RpcError>, timing: Timing) -> String {
    let mut obj = Map::new();
    obj.insert("jsonrpc".to_owned(), json!("2.0"));
    if let Some(id) = id {
        obj.insert("id".to_owned(), id.clone());
    }
    match outcome {
        Ok(result) => obj.insert("result".to_owned(), result),
        Err(error) => obj.insert("error".to_owned(), error.to_json()),
    };
    obj.insert("usIn".to_owned(), json!(timing.us_in));
    obj.insert("usOut".to_owned(), json!(timing.us_out));
    obj.insert("usDiff".to_owned(), json!(timing.us_out.saturating_sub(timing.us_in)));
    obj.insert("testnet".to_owned(), json!(true));
    Value::Object(obj).to_string()
}

/// A `subscription` notification for `channel`.
pub(crate) fn notification(channel: &str, data: &Value) -> String {
    json!({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}).to_string()
}

/// A heartbeat notification: `type` `heartbeat` (the server is alive) or `test_request`
/// (the client must answer with `public/test`).
pub(crate) fn heartbeat(kind: &str) -> String {
    json!({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": kind}}).to_string()
}

/// Typed, validating access to a request's `params` (`null` counts as absent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params<'a>(pub(crate) &'a Map<String, Value>);

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// An optional string.
    pub(crate) fn opt_str(&self, name: &str) -> Result<Option<&'a str>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(RpcError::invalid_params(name, "must be a string")),
        }
    }

    /// A required string.
    pub(crate) fn str(&self, name: &str) -> Result<&'a str, RpcError> {
        self.opt_str(name)?.ok_or_else(|| RpcError::invalid_params(name, "is required"))
    }

    /// An optional number.
    pub(crate) fn opt_f64(&self, name: &str) -> Result<Option<f64>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| RpcError::invalid_params(name, "bad number")),
            Some(_) => Err(RpcError::invalid_params(name, "must be a number")),
        }
    }

    /// A required number.
    pub(crate) fn f64(&self, name: &str) -> Result<f64, RpcError> {
        self.opt_f64(name)?.ok_or_else(|| RpcError::invalid_params(name, "is required"))
    }

    /// An optional boolean.
    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(RpcError::invalid_params(name, "must be a boolean")),
        }
    }

    /// A required list of strings.
    pub(crate) fn str_list(&self, name: &str) -> Result<Vec<&'a str>, RpcError> {
        let Some(Value::Array(items)) = self.get(name) else {
            return Err(RpcError::invalid_params(name, "must be a list of strings"));
        };
        items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| RpcError::invalid_params(name, "must be a list of strings")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Params, Timing, parse_request, response};
    use crate::deribit::error::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RpcError};
    use serde_json::{Value, json};

    fn code(text: &str) -> (Option<Value>, i64) {
        match parse_request(text) {
            Ok(r) => (r.id, 0),
            Err(r) => (r.id, r.error.code),
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_right_code() {
        assert_eq!(code("not json"), (Some(Value::Null), PARSE_ERROR));
        assert_eq!(code("{\"id\": 1e999}"), (Some(Value::Null), PARSE_ERROR));
        assert_eq!(code("[]"), (Some(Value::Null), INVALID_REQUEST));
        assert_eq!(code("42"), (Some(Value::Null), INVALID_REQUEST));
        assert_eq!(code(r#"{"id":{},"method":"public/test"}"#), (Some(Value::Null), INVALID_REQUEST));
        assert_eq!(code(r#"{"id":3,"method":7}"#), (Some(json!(3)), INVALID_REQUEST));
        assert_eq!(code(r#"{"id":3}"#), (Some(json!(3)), INVALID_REQUEST));
        assert_eq!(code(r#"{"id":3,"jsonrpc":"1.0","method":"x"}"#), (Some(json!(3)), INVALID_REQUEST));
        assert_eq!(code(r#"{"id":"a","method":"x","params":[1]}"#), (Some(json!("a")), INVALID_PARAMS));
        let long = format!(r#"{{"id":1,"method":"{}"}}"#, "x".repeat(1000));
        assert_eq!(code(&long), (Some(json!(1)), METHOD_NOT_FOUND));
        assert_eq!(code(r#"{"id":123456789012345678901234567890,"method":"x"}"#).1, 0);
        assert_eq!(code(r#"{"method":"x"}"#), (None, 0));
    }

    #[test]
    fn responses_carry_timing() {
        let text = response(Some(&json!(7)), Ok(json!("ok")), Timing { us_in: 10, us_out: 15 });
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v, json!({"jsonrpc":"2.0","id":7,"result":"ok","usIn":10,"usOut":15,"usDiff":5,"testnet":true}));
        let text = response(None, Err(RpcError::method_not_found()), Timing { us_in: 1, us_out: 1 });
        assert!(!text.contains("\"id\""));
    }

    #[test]
    fn params_are_typed() {
        let map = json!({"a": "x", "n": 2.5, "b": true, "l": ["c"], "bad": [1], "z": null});
        let p = Params(map.as_object().unwrap_or_else(|| unreachable!()));
        assert_eq!(p.str("a"), Ok("x"));
        assert_eq!(p.f64("n"), Ok(2.5));
        assert_eq!(p.opt_bool("b"), Ok(Some(true)));
        assert_eq!(p.str_list("l"), Ok(vec!["c"]));
        assert!(p.str_list("bad").is_err() && p.f64("a").is_err() && p.str("z").is_err());
        assert_eq!(p.opt_str("z"), Ok(None));
    }
}
