//! JSON-RPC 2.0 over WebSocket text frames: building requests, and reading what arrives.
//!
//! [`encode_request`] writes `{"jsonrpc":"2.0","id":N,"method":..,"params":..}` with a `u64`
//! id. [`parse`] reads one incoming text frame, in one pass and without copying it: a
//! [`Incoming::Response`] (with its id, and the `result` or a typed [`RpcError`]), a
//! [`Incoming::Notification`] (method and [`Params`]: the `channel` and `type` members read on
//! the way, `data` kept as a borrowed [`RawValue`]), or [`Incoming::Other`] (JSON, but not
//! JSON-RPC: a Binance event, an array). Text that is not JSON, or a broken JSON-RPC member, is
//! a typed [`ParseError`], never a panic.
//!
//! A feed's notifications have a faster reader, [`scan::notification`], which the dialects
//! try first: it reads the envelope and crosses `params.data` by its structure only, leaving
//! the frame to [`parse`] whenever it is not sure.
//!
//! Reading is lenient where venues are: the `jsonrpc` member is not required (Binance leaves it
//! out) and unknown members (Deribit's `usIn`, `usOut`, `testnet`) are skipped without being
//! stored. `result` and `data` are [`RawValue`]s: a slice of the frame, checked but not turned
//! into a tree, so a large order book notification costs one scan and no allocation here; the
//! user reads it with the deserializer of their choice.
//!
//! ```
//! use moorline_client::jsonrpc::{self, Incoming};
//!
//! let text = jsonrpc::encode_request(7, "public/test", Some(&serde_json::json!({}))).unwrap();
//! assert_eq!(text, r#"{"jsonrpc":"2.0","id":7,"method":"public/test","params":{}}"#);
//!
//! let reply = r#"{"jsonrpc":"2.0","id":7,"result":{"version":"1.2.26"},"usIn":1,"usOut":2}"#;
//! match jsonrpc::parse(reply).unwrap() {
//!     Incoming::Response { id: Some(7), outcome: Ok(result) } => assert_eq!(result.get(), r#"{"version":"1.2.26"}"#),
//!     other => panic!("{other:?}"),
//! }
//! let note = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[]}}"#;
//! let Incoming::Notification { method, params } = jsonrpc::parse(note).unwrap() else { panic!() };
//! assert_eq!((method.as_ref(), params.channel.as_deref()), ("subscription", Some("trades.BTC-PERPETUAL.raw")));
//! assert!(jsonrpc::parse("not json").is_err());
//! ```

use std::borrow::Cow;
use std::fmt;

pub mod scan;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
pub use serde_json::value::RawValue;

/// A JSON-RPC error object, as the venue sent it.
///
/// ```
/// use moorline_client::jsonrpc::RpcError;
///
/// let e = RpcError { code: 10028, message: "too_many_requests".into(), data: None };
/// assert_eq!(e.to_string(), "the venue answered with error 10028: too_many_requests");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error, Deserialize, Serialize)]
#[error("the venue answered with error {code}: {message}{}", .data.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct RpcError {
    /// The error code (JSON-RPC's -32xxx, or the venue's own: Deribit's 10028 `too_many_requests`...).
    pub code: i64,
    /// The venue's message.
    #[serde(default)]
    pub message: String,
    /// Anything else the venue said (Deribit: `{"reason", "param"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// Why an incoming text frame could not be read as JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text is not JSON (or an object with broken members); the serde_json message says where.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// JSON, but a JSON-RPC rule is broken (both `result` and `error`, a response without an
    /// id, an `error` that is not an error object...).
    #[error("not a valid JSON-RPC message: {0}")]
    Invalid(&'static str),
}

/// Why a request could not be encoded (the params' `Serialize` implementation failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not encode the JSON-RPC request {method:?}: {reason}")]
pub struct EncodeError {
    /// The method being encoded.
    pub method: String,
    /// serde_json's explanation.
    pub reason: String,
}

/// One incoming text frame, read.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A response to a request: `id` is `None` when it is `null` or not a `u64` (not one of
    /// ours: a venue answers `null` when it could not read the request at all).
    Response {
        /// The request id.
        id: Option<u64>,
        /// `result` (a slice of the frame), or the error object.
        outcome: Result<&'a RawValue, RpcError>,
    },
    /// A notification (or a request from the server): `method` and what was read of `params`.
    Notification {
        /// The method (`subscription`, `heartbeat`...).
        method: Cow<'a, str>,
        /// What was read of `params` on the way (empty when absent or not an object).
        params: Params<'a>,
    },
    /// JSON, but not JSON-RPC (an object without `id` or `method`, an array, a number).
    Other,
}

/// The members of a notification's `params` the dialects need, read in the same pass as the
/// frame: `channel` and `type` when they are strings, and `data` as a slice of the frame.
#[derive(Debug, Default, Clone)]
pub struct Params<'a> {
    /// `params.channel` (Deribit and most JSON-RPC venues name the subscription there).
    pub channel: Option<Cow<'a, str>>,
    /// `params.type` (Deribit's heartbeat: `test_request` or `heartbeat`).
    pub kind: Option<Cow<'a, str>>,
    /// `params.data`, unparsed.
    pub data: Option<&'a RawValue>,
}

/// Writes a JSON-RPC 2.0 request: `{"jsonrpc":"2.0","id":id,"method":method,"params":params}`
/// (`params` left out when `None`).
pub fn encode_request<P: Serialize + ?Sized>(id: u64, method: &str, params: Option<&P>) -> Result<String, EncodeError> {
    #[derive(Serialize)]
    struct Wire<'a, P: ?Sized> {
        jsonrpc: &'static str,
        id: u64,
        method: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<&'a P>,
    }
    serde_json::to_string(&Wire { jsonrpc: "2.0", id, method, params })
        .map_err(|e| EncodeError { method: method.to_owned(), reason: e.to_string() })
}

/// Reads one incoming text frame; see the [module documentation](self).
pub fn parse(text: &str) -> Result<Incoming<'_>, ParseError> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        // Arrays, numbers, strings: JSON perhaps, JSON-RPC never. Check it is JSON at all.
        _ => {
            return serde_json::from_str::<IgnoredAny>(text)
                .map(|_| Incoming::Other)
                .map_err(|e| ParseError::Json(e.to_string()));
        }
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    env.classify()
}

/// A notification's `params.data` as a slice of the frame (`None`: not a notification, or
/// no data): read by [`scan::notification`], or by [`parse`] when the scan is not sure. The
/// slice is for a deserializer, which checks it token by token.
///
/// ```
/// let frame = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.raw","data":{"mark_price":65000.5}}}"#;
/// assert_eq!(moorline_client::jsonrpc::notification_data(frame), Some(r#"{"mark_price":65000.5}"#));
/// assert_eq!(moorline_client::jsonrpc::notification_data(r#"{"id":1,"result":2}"#), None);
/// ```
pub fn notification_data(text: &str) -> Option<&str> {
    if let Some(n) = scan::notification(text) {
        return n.data;
    }
    match parse(text) {
        Ok(Incoming::Notification { params, .. }) => params.data.map(RawValue::get),
        _ => None,
    }
}

/// The top-level members of a frame.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    id: Field<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<Text<'a>>,
    #[serde(default, borrow)]
    params: Params<'a>,
    #[serde(default, borrow)]
    result: Field<&'a RawValue>,
    #[serde(default, borrow)]
    error: Field<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    fn classify(self) -> Result<Incoming<'a>, ParseError> {
        match (self.result, self.error) {
            (Field::Present(_), Field::Present(_)) => Err(ParseError::Invalid("a response with both result and error")),
            (Field::Present(result), Field::Absent) => {
                Ok(Incoming::Response { id: self.id.id()?, outcome: Ok(result) })
            }
            (Field::Absent, Field::Present(error)) => {
                let error = read_error(error)?;
                Ok(Incoming::Response { id: self.id.id()?, outcome: Err(error) })
            }
            (Field::Absent, Field::Absent) => match self.method {
                Some(method) => Ok(Incoming::Notification { method: method.0, params: self.params }),
                None => Ok(Incoming::Other),
            },
        }
    }
}

/// Reads an `error` member as an [`RpcError`].
pub(crate) fn read_error(raw: &RawValue) -> Result<RpcError, ParseError> {
    serde_json::from_str(raw.get()).map_err(|_| ParseError::Invalid("error is not an object with a numeric code"))
}

/// A member that may be absent, told apart from one that is `null` (`Option` cannot: Binance
/// confirms a subscription with `"result": null`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) enum Field<T> {
    /// Not in the object.
    #[default]
    Absent,
    /// There, maybe `null`.
    Present(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Field::Present)
    }
}

impl Field<&RawValue> {
    /// A response's id: a `u64` is ours, `null` or anything else is not; a response must have one.
    pub(crate) fn id(&self) -> Result<Option<u64>, ParseError> {
        match self {
            Field::Absent => Err(ParseError::Invalid("a response without an id")),
            Field::Present(raw) => Ok(raw.get().parse::<u64>().ok()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Params<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor)
    }
}

struct ParamsVisitor;

/// A string member read as a slice of the frame when it has no escapes; `None` if not a string.
fn string_member<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    serde_json::from_str::<Text<'a>>(text).ok().map(|t| t.0)
}

/// A string borrowed from the frame when it has no escapes, owned (unescaped) otherwise.
/// (`Cow<str>`'s own `Deserialize` always allocates, and `#[serde(borrow)]` does not reach
/// through `Option`.)
#[derive(Debug)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON-RPC params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = Params::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_ref() {
                "channel" => params.channel = string_member(map.next_value::<&'de RawValue>()?),
                "type" => params.kind = string_member(map.next_value::<&'de RawValue>()?),
                "data" => params.data = Some(map.next_value::<&'de RawValue>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(params)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Params::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Params::default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_are_json_rpc_2_with_u64_ids_and_escaped_methods() {
        let t = encode_request(u64::MAX, "public/subscribe", Some(&json!({"channels": ["a\"b"]}))).unwrap();
        assert_eq!(
            t,
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"public/subscribe","params":{"channels":["a\"b"]}}"#
        );
        let t = encode_request::<()>(1, "a\nb", None).unwrap();
        assert_eq!(t, r#"{"jsonrpc":"2.0","id":1,"method":"a\nb"}"#);
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["method"], "a\nb");
    }

    #[test]
    fn a_params_serializer_failure_is_a_typed_error() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no way"))
            }
        }
        let e = encode_request(1, "m", Some(&Bad)).unwrap_err();
        assert_eq!(e.to_string(), "could not encode the JSON-RPC request \"m\": no way");
    }

    #[test]
    fn deribit_responses_results_and_errors() {
        // Real shapes (docs.deribit.com): a subscribe answer with its timing members.
        let ok = r#"{"jsonrpc":"2.0","id":4235,"result":["deribit_price_index.btc_usd"],"usIn":1535043730126248,"usOut":1535043730126250,"usDiff":2,"testnet":false}"#;
        let Incoming::Response { id, outcome: Ok(result) } = parse(ok).unwrap() else { panic!() };
        assert_eq!((id, result.get()), (Some(4235), r#"["deribit_price_index.btc_usd"]"#));
        let err = r#"{"jsonrpc":"2.0","id":8163,"error":{"message":"Invalid params","data":{"reason":"must be one of the listed values","param":"interval"},"code":-32602},"testnet":true}"#;
        let Incoming::Response { id, outcome: Err(e) } = parse(err).unwrap() else { panic!() };
        assert_eq!((id, e.code, e.message.as_str()), (Some(8163), -32602, "Invalid params"));
        assert_eq!(e.data.unwrap()["param"], "interval");
        // Not ours: a null id (the venue could not read the request) or a string id.
        let Incoming::Response { id: None, outcome: Err(e) } =
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.code, -32700);
        assert!(matches!(parse(r#"{"id":"abc","result":1}"#).unwrap(), Incoming::Response { id: None, .. }));
    }

    #[test]
    fn binance_confirmation_with_a_null_result_is_a_response() {
        let Incoming::Response { id, outcome: Ok(result) } = parse(r#"{"result":null,"id":1}"#).unwrap() else {
            panic!()
        };
        assert_eq!((id, result.get()), (Some(1), "null"));
    }

    #[test]
    fn notifications_give_method_channel_type_and_data_without_copying() {
        let hb = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
        let Incoming::Notification { method, params } = parse(hb).unwrap() else { panic!() };
        assert_eq!(
            (method.as_ref(), params.kind.as_deref(), params.channel),
            ("heartbeat", Some("test_request"), None)
        );
        let sub = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"bids":[[1,2]],"asks":[]}}}"#;
        let Incoming::Notification { params, .. } = parse(sub).unwrap() else { panic!() };
        let Some(Cow::Borrowed(channel)) = params.channel else { panic!("the channel is a slice of the frame") };
        assert_eq!(channel, "book.BTC-PERPETUAL.100ms");
        let data = params.data.unwrap().get();
        assert_eq!(data, r#"{"bids":[[1,2]],"asks":[]}"#);
        // The data is a slice of the frame itself: nothing was copied.
        let range = sub.as_ptr() as usize..sub.as_ptr() as usize + sub.len();
        assert!(range.contains(&(data.as_ptr() as usize)));
        // An escaped channel name is unescaped (then owned).
        let Incoming::Notification { params, .. } =
            parse(r#"{"method":"subscription","params":{"channel":"a\u002eb"}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(params.channel.as_deref(), Some("a.b"));
        // Positional, scalar or odd params: read as empty, not an error.
        for p in ["[1,2,{\"channel\":\"x\"}]", "null", "3", "\"s\"", "{\"channel\":5,\"type\":[]}"] {
            let text = format!(r#"{{"method":"m","params":{p}}}"#);
            let Incoming::Notification { params, .. } = parse(&text).unwrap() else { panic!("{p}") };
            assert!(params.channel.is_none() && params.kind.is_none() && params.data.is_none(), "{p}");
        }
    }

    #[test]
    fn other_json_is_other() {
        for t in [r#"{"stream":"btcusdt@trade","data":{"e":"trade"}}"#, "[1,2]", "  42", "\"x\"", "{}"] {
            assert!(matches!(parse(t), Ok(Incoming::Other)), "{t}");
        }
    }

    #[test]
    fn garbage_is_a_typed_error_never_a_panic() {
        let cases: &[&str] = &[
            "",
            "not json",
            "{",
            "{\"id\":1,\"result\":",
            "[1,",
            "{\"id\":1,\"result\":1}trailing",
            "\u{0}",
            "{\"method\":\"m\",\"params\":{\"data\":}}",
        ];
        for t in cases {
            assert!(matches!(parse(t), Err(ParseError::Json(_))), "{t:?}: {:?}", parse(t));
        }
        let invalid = [
            (r#"{"id":1,"result":1,"error":{"code":1,"message":"x"}}"#, "both"),
            (r#"{"result":1}"#, "without an id"),
            (r#"{"id":1,"error":"boom"}"#, "error is not"),
            (r#"{"id":1,"error":{"message":"no code"}}"#, "error is not"),
        ];
        for (t, why) in invalid {
            let e = parse(t).unwrap_err();
            assert!(matches!(e, ParseError::Invalid(_)) && e.to_string().contains(why), "{t}: {e}");
        }
        // Deep nesting: the members we read are bounded by serde_json's recursion limit; `data`
        // is skipped without recursion (kept raw for the user's own parser, which has its limit).
        let deep =
            format!("{{\"method\":\"m\",\"params\":{{\"channel\":{}{}}}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_ok());
        let deeper = format!("{{\"id\":1,\"error\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deeper).is_err());
    }

    #[test]
    fn every_prefix_of_a_real_frame_parses_or_fails_cleanly() {
        let frame = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":1,"price":64000.5,"direction":"buy"}]}}"#;
        for end in 0..frame.len() {
            let _ = parse(&frame[..end]);
        }
        assert!(parse(frame).is_ok());
    }
}
