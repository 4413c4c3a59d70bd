//! [`Binance`]: Binance-style market streams (`SUBSCRIBE`/`UNSUBSCRIBE` with ids).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{Confirmation, Dialect, DialectError, Frame, Inbound, OutRequest, SubOp, within_limit};
use crate::jsonrpc::{Field, ParseError, RawValue, RpcError, Text};

/// The largest subscribe request this dialect sends (Binance documents 1 024 streams per
/// connection and 5 messages a second, no frame limit; 16 KiB is a safe batch).
pub const MAX_REQUEST_BYTES: usize = 16 << 10;

/// The Binance dialect.
///
/// - Subscriptions: `{"method":"SUBSCRIBE","params":[..],"id":N}` (and `UNSUBSCRIBE`); the
///   venue confirms with `{"result":null,"id":N}`, which confirms the whole batch (Binance
///   sends no list), and refuses with `{"error":{"code":..,"msg":..},"id":N}` (older
///   endpoints: `{"code":..,"msg":..,"id":N}`).
/// - Data: on the combined endpoint (`/stream?streams=..`) each event is
///   `{"stream":"btcusdt@trade","data":{..}}` and the channel is `stream`, exactly. On a raw
///   endpoint (`/ws/..`) the channel is made from the event's `s` (symbol) and `e` (event
///   type) as `btcusdt@trade`: exact for `trade` and `aggTrade`, a best guess for the others
///   (`depthUpdate`, `kline`): prefer the combined endpoint when channels matter.
/// - Heartbeat: WebSocket pings only (answered by moorline); nothing at this level.
///
/// ```
/// use moorline_client::dialect::{Binance, Dialect, Frame, Inbound, SubOp};
///
/// let d = Binance::new();
/// let r = d.subscription_request(SubOp::Subscribe, 1, &["btcusdt@aggTrade", "btcusdt@depth"]).unwrap();
/// assert_eq!(r.text, r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","btcusdt@depth"],"id":1}"#);
/// let event = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1672515782136,"s":"BTCUSDT","a":12345,"p":"0.001","q":"100"}}"#;
/// assert!(matches!(d.classify(Frame::Text(event)), Inbound::Data { channel: Some(c) } if c == "btcusdt@aggTrade"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Binance;

impl Binance {
    /// The dialect.
    pub fn new() -> Self {
        Self
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    id: Field<&'a RawValue>,
    #[serde(default, borrow)]
    result: Field<&'a RawValue>,
    #[serde(default, borrow)]
    error: Field<&'a RawValue>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, borrow)]
    msg: Option<Text<'a>>,
    #[serde(default, borrow)]
    stream: Option<Text<'a>>,
    #[serde(default, borrow)]
    e: Option<Text<'a>>,
    #[serde(default, borrow)]
    s: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    msg: String,
}

fn classify_object(text: &str) -> Result<Inbound<'_>, ParseError> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    fn response<'a>(
        id: &Field<&'a RawValue>,
        outcome: Result<&'a RawValue, RpcError>,
    ) -> Result<Inbound<'a>, ParseError> {
        Ok(match id.id()? {
            Some(id) => Inbound::Response { id, outcome },
            None => match outcome {
                Err(e) => Inbound::UnmatchedError(e),
                Ok(_) => Inbound::Control,
            },
        })
    }
    match (&env.result, &env.error, env.code) {
        (Field::Present(_), Field::Present(_), _) => Err(ParseError::Invalid("a response with both result and error")),
        (Field::Present(result), _, _) => response(&env.id, Ok(result)),
        (_, Field::Present(error), _) => {
            let e: ErrorObject = serde_json::from_str(error.get())
                .map_err(|_| ParseError::Invalid("error is not an object with a numeric code"))?;
            response(&env.id, Err(RpcError { code: e.code, message: e.msg, data: None }))
        }
        (_, _, Some(code)) if matches!(env.id, Field::Present(_)) => {
            let message = env.msg.map(|m| m.0.into_owned()).unwrap_or_default();
            response(&env.id, Err(RpcError { code, message, data: None }))
        }
        _ => Ok(match (env.stream, env.s, env.e) {
            (Some(stream), _, _) => Inbound::Data { channel: Some(stream.0) },
            (None, Some(symbol), Some(event)) => {
                Inbound::Data { channel: Some(Cow::Owned(format!("{}@{}", symbol.0.to_ascii_lowercase(), event.0))) }
            }
            _ => Inbound::Data { channel: None },
        }),
    }
}

impl Dialect for Binance {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn classify<'a>(&self, frame: Frame<'a>) -> Inbound<'a> {
        let Frame::Text(text) = frame else { return Inbound::Data { channel: None } };
        if text.trim_start().starts_with('{') {
            return classify_object(text).unwrap_or_else(Inbound::Malformed);
        }
        // `!ticker@arr` on a raw endpoint is a top-level array: data, without a channel.
        match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Inbound::Data { channel: None },
            Err(e) => Inbound::Malformed(ParseError::Json(e.to_string())),
        }
    }

    fn max_request_bytes(&self) -> usize {
        MAX_REQUEST_BYTES
    }

    fn request_overhead(&self) -> usize {
        // {"method":"UNSUBSCRIBE","params":[],"id":<20 digits>}
        64
    }

    fn subscription_request(&self, op: SubOp, id: u64, channels: &[&str]) -> Result<OutRequest, DialectError> {
        #[derive(Serialize)]
        struct Wire<'a> {
            method: &'static str,
            params: &'a [&'a str],
            id: u64,
        }
        let method = match op {
            SubOp::Subscribe => "SUBSCRIBE",
            SubOp::Unsubscribe => "UNSUBSCRIBE",
        };
        if channels.is_empty() {
            return Err(DialectError::NoChannels(method));
        }
        let text = serde_json::to_string(&Wire { method, params: channels, id }).map_err(|e| {
            DialectError::Encode(crate::jsonrpc::EncodeError { method: method.to_owned(), reason: e.to_string() })
        })?;
        within_limit(OutRequest { id, method: Cow::Borrowed(method), text }, MAX_REQUEST_BYTES)
    }

    fn confirm(&self, _op: SubOp, requested: &[&str], reply: Result<&RawValue, &RpcError>) -> Confirmation {
        match reply {
            Ok(_) => Confirmation::all_confirmed(requested),
            Err(e) => Confirmation::all_refused(requested, &e.to_string()),
        }
    }

    fn request(&self, id: u64, method: &str, params: Option<&RawValue>) -> Result<OutRequest, DialectError> {
        #[derive(Serialize)]
        struct Wire<'a> {
            method: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            params: Option<&'a RawValue>,
            id: u64,
        }
        let text = serde_json::to_string(&Wire { method, params, id }).map_err(|e| {
            DialectError::Encode(crate::jsonrpc::EncodeError { method: method.to_owned(), reason: e.to_string() })
        })?;
        Ok(OutRequest { id, method: Cow::Owned(method.to_owned()), text })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_and_errors_as_binance_sends_them() {
        let d = Binance::new();
        let Inbound::Response { id: 1, outcome: Ok(result) } = d.classify(Frame::Text(r#"{"result":null,"id":1}"#))
        else {
            panic!()
        };
        assert_eq!(result.get(), "null");
        let c = d.confirm(SubOp::Subscribe, &["btcusdt@aggTrade", "btcusdt@depth"], Ok(result));
        assert_eq!(c.confirmed.len(), 2);
        let err = r#"{"error":{"code":2,"msg":"Invalid request: unknown variant `SUBSCRIBEX`"},"id":7}"#;
        let Inbound::Response { id: 7, outcome: Err(e) } = d.classify(Frame::Text(err)) else { panic!() };
        assert_eq!((e.code, e.message.as_str()), (2, "Invalid request: unknown variant `SUBSCRIBEX`"));
        let c = d.confirm(SubOp::Subscribe, &["x"], Err(&e));
        assert!(c.refused[0].1.contains("Invalid request"), "{c:?}");
        let old = r#"{"code":0,"msg":"Unknown property","id":3}"#;
        assert!(matches!(
            d.classify(Frame::Text(old)),
            Inbound::Response { id: 3, outcome: Err(RpcError { code: 0, .. }) }
        ));
        let list = r#"{"result":["btcusdt@aggTrade"],"id":3}"#;
        assert!(matches!(d.classify(Frame::Text(list)), Inbound::Response { id: 3, outcome: Ok(_) }));
        let null_id = r#"{"error":{"code":3,"msg":"Invalid JSON"},"id":null}"#;
        assert!(matches!(d.classify(Frame::Text(null_id)), Inbound::UnmatchedError(_)));
    }

    #[test]
    fn channels_from_combined_streams_and_raw_events() {
        let d = Binance::new();
        let raw_trade = r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#;
        assert!(
            matches!(d.classify(Frame::Text(raw_trade)), Inbound::Data { channel: Some(c) } if c == "bnbbtc@trade")
        );
        let depth = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["0.1","2"]],"a":[]}}"#;
        assert!(matches!(
            d.classify(Frame::Text(depth)),
            Inbound::Data { channel: Some(Cow::Borrowed("btcusdt@depth@100ms")) }
        ));
        assert!(matches!(d.classify(Frame::Text(r#"[{"e":"24hrMiniTicker"}]"#)), Inbound::Data { channel: None }));
        assert!(matches!(d.classify(Frame::Text(r#"{"serverShutdown":true}"#)), Inbound::Data { channel: None }));
        assert!(matches!(d.classify(Frame::Text("{\"stream\":")), Inbound::Malformed(_)));
        assert!(matches!(d.classify(Frame::Text("nope")), Inbound::Malformed(_)));
        assert!(matches!(d.classify(Frame::Text(r#"{"result":1}"#)), Inbound::Malformed(ParseError::Invalid(_))));
    }

    #[test]
    fn requests_follow_binance_field_order() {
        let d = Binance::new();
        let r = d.subscription_request(SubOp::Unsubscribe, 312, &["btcusdt@depth"]).unwrap();
        assert_eq!(r.text, r#"{"method":"UNSUBSCRIBE","params":["btcusdt@depth"],"id":312}"#);
        let params = RawValue::from_string(r#"["combined",true]"#.into()).unwrap();
        let r = d.request(5, "SET_PROPERTY", Some(&params)).unwrap();
        assert_eq!(r.text, r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#);
        let r = d.request(3, "LIST_SUBSCRIPTIONS", None).unwrap();
        assert_eq!(r.text, r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#);
        assert!(matches!(d.subscription_request(SubOp::Subscribe, 1, &[]), Err(DialectError::NoChannels("SUBSCRIBE"))));
    }
}
