//! [`JsonRpc`]: a generic JSON-RPC 2.0 venue, with configurable method names.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{
    Confirmation, Dialect, DialectError, Frame, Heartbeat, Inbound, OutRequest, SubOp, channel_list, classify_json_rpc,
    within_limit,
};
use crate::jsonrpc::{RawValue, RpcError, encode_request};

/// How a venue's subscribe reply confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmBy {
    /// `result` lists the channels subscribed; the others are refused.
    List,
    /// Any `result` confirms the whole batch (the venue answers `true`, `"ok"`, `null`...).
    Success,
}

/// A generic JSON-RPC 2.0 dialect.
///
/// Defaults: subscribe with `subscribe {"channels": [..]}`, unsubscribe with
/// `unsubscribe {"channels": [..]}`, confirmation from the list in `result`
/// ([`ConfirmBy::List`]), data from any notification (its channel from `params.channel`), no
/// heartbeat, requests up to 32 KiB. Each is configurable:
///
/// ```
/// use moorline_client::dialect::{ConfirmBy, Dialect, Frame, Heartbeat, Inbound, JsonRpc, SubOp};
///
/// let d = JsonRpc::new()
///     .methods("sub", "unsub")
///     .channels_param("topics")
///     .confirm_by(ConfirmBy::Success)
///     .heartbeat("ping", Some("pong"));
/// let r = d.subscription_request(SubOp::Subscribe, 1, &["ticker.BTC"]).unwrap();
/// assert_eq!(r.text, r#"{"jsonrpc":"2.0","id":1,"method":"sub","params":{"topics":["ticker.BTC"]}}"#);
/// let beat = r#"{"jsonrpc":"2.0","method":"ping"}"#;
/// assert!(matches!(d.classify(Frame::Text(beat)), Inbound::Heartbeat(Heartbeat::TestRequest)));
/// assert_eq!(d.answer_heartbeat(Heartbeat::TestRequest, 2).unwrap().unwrap().method, "pong");
/// ```
#[derive(Debug, Clone)]
pub struct JsonRpc {
    subscribe: String,
    unsubscribe: String,
    channels_param: String,
    confirm: ConfirmBy,
    data_method: Option<String>,
    heartbeat_method: Option<String>,
    heartbeat_answer: Option<String>,
    max_request_bytes: usize,
}

impl Default for JsonRpc {
    fn default() -> Self {
        Self {
            subscribe: "subscribe".into(),
            unsubscribe: "unsubscribe".into(),
            channels_param: "channels".into(),
            confirm: ConfirmBy::List,
            data_method: None,
            heartbeat_method: None,
            heartbeat_answer: None,
            max_request_bytes: 32 << 10,
        }
    }
}

impl JsonRpc {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscribe and unsubscribe methods.
    pub fn methods(mut self, subscribe: &str, unsubscribe: &str) -> Self {
        self.subscribe = subscribe.to_owned();
        self.unsubscribe = unsubscribe.to_owned();
        self
    }

    /// The params member holding the channel list (default `channels`).
    pub fn channels_param(mut self, name: &str) -> Self {
        self.channels_param = name.to_owned();
        self
    }

    /// How a subscribe reply confirms.
    pub fn confirm_by(mut self, confirm: ConfirmBy) -> Self {
        self.confirm = confirm;
        self
    }

    /// Only notifications with this method are data with a channel (others are data
    /// without one). Default: every notification's `params.channel` is used.
    pub fn data_method(mut self, method: &str) -> Self {
        self.data_method = Some(method.to_owned());
        self
    }

    /// A notification `method` is the venue's heartbeat; `answer` (if any) is the method
    /// called in reply (with empty params).
    pub fn heartbeat(mut self, method: &str, answer: Option<&str>) -> Self {
        self.heartbeat_method = Some(method.to_owned());
        self.heartbeat_answer = answer.map(str::to_owned);
        self
    }

    /// The largest subscribe request the venue accepts.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }
}

impl Dialect for JsonRpc {
    fn name(&self) -> &'static str {
        "jsonrpc"
    }

    fn classify<'a>(&self, frame: Frame<'a>) -> Inbound<'a> {
        let Frame::Text(text) = frame else { return Inbound::Data { channel: None } };
        classify_json_rpc(text, |method, channel, _kind| {
            if self.heartbeat_method.as_deref() == Some(method) {
                return Inbound::Heartbeat(if self.heartbeat_answer.is_some() {
                    Heartbeat::TestRequest
                } else {
                    Heartbeat::Beat
                });
            }
            match &self.data_method {
                Some(m) if m != method => Inbound::Data { channel: None },
                _ => Inbound::Data { channel },
            }
        })
    }

    fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    fn request_overhead(&self) -> usize {
        64 + self.subscribe.len().max(self.unsubscribe.len()) * 2 + self.channels_param.len() * 2
    }

    fn subscription_request(&self, op: SubOp, id: u64, channels: &[&str]) -> Result<OutRequest, DialectError> {
        let method = match op {
            SubOp::Subscribe => &self.subscribe,
            SubOp::Unsubscribe => &self.unsubscribe,
        };
        if channels.is_empty() {
            return Err(DialectError::NoChannels(match op {
                SubOp::Subscribe => "subscribe",
                SubOp::Unsubscribe => "unsubscribe",
            }));
        }
        let mut params = Map::new();
        params.insert(self.channels_param.clone(), Value::from(channels.to_vec()));
        let text = encode_request(id, method, Some(&params))?;
        within_limit(OutRequest { id, method: Cow::Owned(method.clone()), text }, self.max_request_bytes)
    }

    fn confirm(&self, _op: SubOp, requested: &[&str], reply: Result<&RawValue, &RpcError>) -> Confirmation {
        match (reply, self.confirm) {
            (Err(e), _) => Confirmation::all_refused(requested, &e.to_string()),
            (Ok(_), ConfirmBy::Success) => Confirmation::all_confirmed(requested),
            (Ok(result), ConfirmBy::List) => match channel_list(result) {
                Some(listed) => Confirmation::from_list(requested, &listed),
                None => Confirmation::all_refused(requested, "the venue's reply is not a list of channels"),
            },
        }
    }

    fn venue_heartbeat(&self) -> bool {
        self.heartbeat_method.is_some()
    }

    fn answer_heartbeat(&self, beat: Heartbeat, id: u64) -> Option<Result<OutRequest, DialectError>> {
        let answer = self.heartbeat_answer.as_ref().filter(|_| beat == Heartbeat::TestRequest)?;
        Some(
            encode_request(id, answer, Some(&Map::new()))
                .map(|text| OutRequest { id, method: Cow::Owned(answer.clone()), text })
                .map_err(Into::into),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn defaults_subscribe_and_confirm_from_the_list() {
        let d = JsonRpc::new();
        let r = d.subscription_request(SubOp::Subscribe, 3, &["a", "b"]).unwrap();
        assert_eq!(r.text, r#"{"jsonrpc":"2.0","id":3,"method":"subscribe","params":{"channels":["a","b"]}}"#);
        let r = d.subscription_request(SubOp::Unsubscribe, 4, &["a"]).unwrap();
        assert_eq!(r.method, "unsubscribe");
        let Inbound::Response { id: 3, outcome: Ok(result) } =
            d.classify(Frame::Text(r#"{"jsonrpc":"2.0","id":3,"result":["b"]}"#))
        else {
            panic!()
        };
        let c = d.confirm(SubOp::Subscribe, &["a", "b"], Ok(result));
        assert_eq!((c.confirmed, c.refused.len()), (vec!["b".to_owned()], 1));
        let note = r#"{"jsonrpc":"2.0","method":"update","params":{"channel":"a","data":1}}"#;
        assert!(matches!(d.classify(Frame::Text(note)), Inbound::Data { channel: Some(c) } if c == "a"));
        // No heartbeat configured: nothing is a heartbeat, nothing is answered.
        assert!(d.answer_heartbeat(Heartbeat::TestRequest, 1).is_none());
        assert!(!d.venue_heartbeat() && JsonRpc::new().heartbeat("hb", None).venue_heartbeat());
    }

    #[test]
    fn data_method_filters_channels_and_a_small_limit_refuses_big_batches() {
        let d = JsonRpc::new().data_method("subscription").max_request_bytes(80);
        let other = r#"{"method":"notice","params":{"channel":"a"}}"#;
        assert!(matches!(d.classify(Frame::Text(other)), Inbound::Data { channel: None }));
        let e = d.subscription_request(SubOp::Subscribe, 1, &["a-long-channel-name", "another-long-one"]).unwrap_err();
        assert!(matches!(&e, DialectError::TooLarge { method, limit: 80, .. } if method == "subscribe"), "{e}");
        let beat_only = JsonRpc::new().heartbeat("hb", None);
        assert!(matches!(beat_only.classify(Frame::Text(r#"{"method":"hb"}"#)), Inbound::Heartbeat(Heartbeat::Beat)));
    }
}
