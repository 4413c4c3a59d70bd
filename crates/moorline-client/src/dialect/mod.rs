//! Dialects: how a venue speaks, apart from WebSocket itself.
//!
//! A [`Dialect`] says how the venue subscribes (the request for a batch of channels, and the
//! largest request it accepts), confirms (which channels its reply confirms), unsubscribes,
//! restores (the same requests, on every reconnect), correlates (the id of a response), beats
//! its heart (the requests of the handshake on every (re)connect, and the answer to the
//! venue's heartbeat), authenticates (a request built from credentials, re-sent on every
//! reconnect before private subscriptions, then any requests that must follow it, such as
//! Deribit's cancel-on-disconnect), and which channel a data message belongs to.
//! Every method is pure: text in, text or a verdict out. The client task calls them; it
//! owns the ids, timers, bookkeeping and the socket.
//!
//! Shipped: [`Deribit`] (JSON-RPC, `set_heartbeat` + `test_request`, `public/auth`),
//! [`JsonRpc`] (generic JSON-RPC 2.0 with configurable method names), [`Binance`]
//! (`SUBSCRIBE`/`UNSUBSCRIBE` with ids) and [`Raw`] (no protocol). A dialect of your own is a
//! few lines: `examples/custom_dialect.rs`.
//!
//! **Object-safe, on purpose.** The client holds an `Arc<dyn Dialect>`: `Client` is one type
//! whatever the venue (no generic parameter spreading through user code), the dialect can be
//! chosen at run time (the CLI's `--dialect`), and a user's dialect is a plain `impl`. The price
//! is one indirect call per frame, next to a JSON parse of the same frame: nothing. So the trait
//! has no generic methods: ids come from a `&mut dyn FnMut() -> u64`, replies are borrowed
//! [`RawValue`]s.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::config::{ClientConfig, ConfigError};
use crate::jsonrpc::{EncodeError, Incoming, ParseError, RawValue, RpcError, encode_request, parse};

mod binance;
mod deribit;
mod jsonrpc;
mod raw;

pub use self::jsonrpc::{ConfirmBy, JsonRpc};
pub use binance::Binance;
pub use deribit::{AuthInfo, Credentials, Deribit, Grant, client_signature};
pub use raw::Raw;

/// One incoming data frame, as the dialect sees it.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// What an incoming frame is, for the client task.
#[derive(Debug)]
#[non_exhaustive]
pub enum Inbound<'a> {
    /// The response to request `id`: resolve its waiter.
    Response {
        /// The request id.
        id: u64,
        /// The result (a slice of the frame), or the venue's error.
        outcome: Result<&'a RawValue, RpcError>,
    },
    /// An error response that names no request of ours (`"id": null`: the venue could not
    /// read one of our requests). Reported as an error event.
    UnmatchedError(RpcError),
    /// The venue's heartbeat; [`Dialect::answer_heartbeat`] says what to send back.
    Heartbeat(Heartbeat),
    /// Data for the user, with its channel when the dialect can tell.
    Data {
        /// The channel (`None`: unknown).
        channel: Option<Cow<'a, str>>,
    },
    /// Protocol traffic that is neither (a response that is not ours, a venue notice the
    /// dialect consumes): counts as life, not delivered.
    Control,
    /// The frame could not be read as the dialect expects. The client delivers it to the
    /// user as data (nothing is dropped) and reports the error.
    Malformed(ParseError),
}

/// A heartbeat from the venue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The venue asks for an answer now (Deribit's `test_request`): send it ahead of anything
    /// queued.
    TestRequest,
    /// A plain beat: proof of life, nothing to answer.
    Beat,
}

/// A request the dialect built: its method (what the rate limiter prices) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRequest {
    /// Its id (the response is matched on it).
    pub id: u64,
    /// The method, for the rate limiter's cost model and the logs.
    pub method: Cow<'static, str>,
    /// The frame to send.
    pub text: String,
}

/// Subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubOp {
    /// Subscribe.
    Subscribe,
    /// Unsubscribe.
    Unsubscribe,
}

/// What the venue's reply to a subscribe (or unsubscribe) confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// Channels confirmed.
    pub confirmed: Vec<String>,
    /// Channels requested but not confirmed, with the reason.
    pub refused: Vec<(String, String)>,
}

impl Confirmation {
    /// Every requested channel refused for one reason (an error reply).
    pub fn all_refused(requested: &[&str], reason: &str) -> Self {
        Self {
            confirmed: Vec::new(),
            refused: requested.iter().map(|c| ((*c).to_owned(), reason.to_owned())).collect(),
        }
    }

    /// Every requested channel confirmed (venues whose success reply carries no list).
    pub fn all_confirmed(requested: &[&str]) -> Self {
        Self { confirmed: requested.iter().map(|c| (*c).to_owned()).collect(), refused: Vec::new() }
    }

    /// Confirmation from the venue's list: requested channels in `listed` are confirmed,
    /// the others refused ("left out of the venue's confirmation"). Channels the venue lists
    /// but nobody asked for are ignored. Each requested channel appears once.
    pub fn from_list(requested: &[&str], listed: &[Cow<'_, str>]) -> Self {
        let mut out = Self::default();
        for (i, channel) in requested.iter().enumerate() {
            if requested[..i].contains(channel) {
                continue;
            }
            if listed.iter().any(|l| l == channel) {
                out.confirmed.push((*channel).to_owned());
            } else {
                out.refused.push(((*channel).to_owned(), "left out of the venue's confirmation".to_owned()));
            }
        }
        out
    }
}

/// Why a dialect could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialectError {
    /// The dialect has no such operation (the raw dialect has no subscriptions).
    #[error("the {dialect} dialect does not support {operation}")]
    Unsupported {
        /// The dialect.
        dialect: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// A request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A batch larger than the venue's frame limit.
    #[error("a {method} request of {bytes} bytes is over the venue's limit of {limit} bytes")]
    TooLarge {
        /// The method.
        method: String,
        /// Its size.
        bytes: usize,
        /// The venue's limit.
        limit: usize,
    },
    /// An empty batch.
    #[error("a {0} request needs at least one channel")]
    NoChannels(&'static str),
}

/// What a dialect knows of the session being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionContext {
    /// The venue heartbeat interval configured (`None`: none).
    pub heartbeat: Option<Duration>,
}

/// How a venue speaks. See the [module documentation](self).
pub trait Dialect: Send + Sync + fmt::Debug + 'static {
    /// The dialect's name (logs, errors).
    fn name(&self) -> &'static str;

    /// Checks the client configuration against what the venue accepts (Deribit: a heartbeat
    /// interval of at least 10 s). Called by `Client::connect`.
    fn check(&self, _config: &ClientConfig) -> Result<(), ConfigError> {
        Ok(())
    }

    /// What an incoming data frame is. Binary frames are data without a channel unless the
    /// dialect says otherwise.
    fn classify<'a>(&self, frame: Frame<'a>) -> Inbound<'a>;

    /// The largest subscribe or unsubscribe request the venue accepts, in bytes: the
    /// client's batcher keeps each request under it.
    fn max_request_bytes(&self) -> usize {
        32 << 10
    }

    /// What one channel adds to a subscribe request, in bytes (default: its JSON string and
    /// a comma).
    fn channel_cost(&self, channel: &str) -> usize {
        json_string_len(channel) + 1
    }

    /// What a subscribe request costs without its channels, in bytes.
    fn request_overhead(&self) -> usize {
        128
    }

    /// Channels with different keys never share a request (Deribit: public and private
    /// channels go to `public/subscribe` and `private/subscribe`).
    fn batch_key(&self, _channel: &str) -> u8 {
        0
    }

    /// Whether the channel needs authentication first (restored after it).
    fn is_private(&self, _channel: &str) -> bool {
        false
    }

    /// The request subscribing to (or unsubscribing from) a batch of channels, all of one
    /// [`batch_key`](Self::batch_key).
    fn subscription_request(&self, op: SubOp, id: u64, channels: &[&str]) -> Result<OutRequest, DialectError>;

    /// Which of `requested` the venue's reply confirms (`reply`: the result, or the error).
    fn confirm(&self, op: SubOp, requested: &[&str], reply: Result<&RawValue, &RpcError>) -> Confirmation;

    /// The requests to send, in order, on every connect and reconnect before anything else
    /// (Deribit: `public/set_heartbeat`). Each is awaited before the next.
    fn handshake(
        &self,
        _ctx: &SessionContext,
        _next_id: &mut dyn FnMut() -> u64,
    ) -> Result<Vec<OutRequest>, DialectError> {
        Ok(Vec::new())
    }

    /// The requests to send, in order, on every connect and reconnect once the session's
    /// authentication succeeded (or right after the handshake without credentials), before
    /// any subscription is restored and before `Connected`/`Reconnected` (Deribit:
    /// `private/enable_cancel_on_disconnect` once it was asked for, so no order placed on
    /// the new connection is uncovered). Each is awaited before the next; an error answer
    /// ends the attempt. Default: none.
    fn after_authentication(&self, _next_id: &mut dyn FnMut() -> u64) -> Result<Vec<OutRequest>, DialectError> {
        Ok(Vec::new())
    }

    /// Whether the venue sends heartbeats of its own once the handshake asked for them
    /// (Deribit: yes). Only then does the liveness check expect one every
    /// `venue_heartbeat` (+ grace); for other dialects that option is ignored.
    fn venue_heartbeat(&self) -> bool {
        false
    }

    /// The authentication request (`None`: the dialect has no credentials), sent after the
    /// handshake on every (re)connect, before private subscriptions.
    fn authenticate(&self, _id: u64) -> Option<Result<OutRequest, DialectError>> {
        None
    }

    /// Given the authentication's result, when to authenticate again (Deribit: at 80 % of
    /// the token's lifetime). `None`: never.
    fn reauthenticate_after(&self, _result: &RawValue) -> Option<Duration> {
        None
    }

    /// The request renewing the authentication on a live session (the timer of
    /// [`reauthenticate_after`](Self::reauthenticate_after), or
    /// [`needs_reauthentication`](Self::needs_reauthentication)); Deribit: the
    /// `refresh_token` grant. If the venue refuses it, the client falls back to
    /// [`authenticate`](Self::authenticate). Default: `authenticate`.
    fn renew_authentication(&self, id: u64) -> Option<Result<OutRequest, DialectError>> {
        self.authenticate(id)
    }

    /// Called with every successful authentication's result, before
    /// [`reauthenticate_after`](Self::reauthenticate_after) (Deribit keeps the refresh token
    /// and the granted scope).
    fn on_authenticated(&self, _result: &RawValue) {}

    /// Whether a request's error says the authentication is gone (Deribit: 13009 expired,
    /// 13010 revoked, 10000 missing): the client then renews it at once, so the call can
    /// be made again.
    fn needs_reauthentication(&self, _error: &RpcError) -> bool {
        false
    }

    /// The answer to a venue heartbeat (`None`: nothing to send).
    fn answer_heartbeat(&self, _beat: Heartbeat, _id: u64) -> Option<Result<OutRequest, DialectError>> {
        None
    }

    /// A user request (`Client::request(method, params)`) as a frame.
    fn request(&self, id: u64, method: &str, params: Option<&RawValue>) -> Result<OutRequest, DialectError> {
        Ok(OutRequest { id, method: Cow::Owned(method.to_owned()), text: encode_request(id, method, params)? })
    }

    /// Whether the venue's error code is transient (retrying the same request may succeed).
    fn is_retryable(&self, _error: &RpcError) -> bool {
        false
    }
}

/// The length of `s` as a JSON string, quotes and escapes included.
pub fn json_string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// The JSON-RPC classification most dialects share: notifications (read by the fast
/// [`scan::notification`](crate::jsonrpc::scan::notification) when it is sure, by
/// [`parse`] otherwise) handed to `notification` with their method, channel and type;
/// responses with a `u64` id, error responses with a null id, other JSON to `other`.
pub(crate) fn classify_json_rpc<'a>(
    text: &'a str,
    notification: impl FnOnce(&str, Option<Cow<'a, str>>, Option<&str>) -> Inbound<'a>,
) -> Inbound<'a> {
    if let Some(n) = crate::jsonrpc::scan::notification(text) {
        return notification(n.method, n.channel.map(Cow::Borrowed), n.kind);
    }
    match parse(text) {
        Ok(Incoming::Response { id: Some(id), outcome }) => Inbound::Response { id, outcome },
        Ok(Incoming::Response { id: None, outcome: Err(e) }) => Inbound::UnmatchedError(e),
        Ok(Incoming::Response { id: None, outcome: Ok(_) }) => Inbound::Control,
        Ok(Incoming::Notification { method, params }) => notification(&method, params.channel, params.kind.as_deref()),
        Ok(Incoming::Other) => Inbound::Data { channel: None },
        Err(e) => Inbound::Malformed(e),
    }
}

/// Checks a built request against the venue's limit.
pub(crate) fn within_limit(req: OutRequest, limit: usize) -> Result<OutRequest, DialectError> {
    if req.text.len() > limit {
        return Err(DialectError::TooLarge { method: req.method.into_owned(), bytes: req.text.len(), limit });
    }
    Ok(req)
}

/// Reads a reply's result as a list of channel names (`None`: not a list of strings).
pub(crate) fn channel_list(result: &RawValue) -> Option<Vec<Cow<'_, str>>> {
    serde_json::from_str::<Vec<Cow<'_, str>>>(result.get()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_string_len_matches_serde_json() {
        for s in ["", "book.BTC-PERPETUAL.100ms", "a\"b\\c", "tab\there", "\u{1}\u{1f}", "héllo €"] {
            assert_eq!(json_string_len(s), serde_json::to_string(s).unwrap().len(), "{s:?}");
        }
    }

    #[test]
    fn confirmation_from_a_list_reports_every_channel_once() {
        let listed = [Cow::Borrowed("a"), Cow::Borrowed("zzz")];
        let c = Confirmation::from_list(&["a", "b", "a"], &listed);
        assert_eq!(c.confirmed, ["a"]);
        assert_eq!(c.refused, [("b".to_owned(), "left out of the venue's confirmation".to_owned())]);
        let c = Confirmation::all_refused(&["x"], "Invalid params");
        assert_eq!(c.refused[0].1, "Invalid params");
    }

    /// The trait is object-safe: the client holds `Arc<dyn Dialect>`.
    #[test]
    fn dialects_are_objects() {
        let all: Vec<std::sync::Arc<dyn Dialect>> = vec![
            std::sync::Arc::new(Deribit::new()),
            std::sync::Arc::new(JsonRpc::new()),
            std::sync::Arc::new(Binance::new()),
            std::sync::Arc::new(Raw),
        ];
        let names: Vec<_> = all.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["deribit", "jsonrpc", "binance", "raw"]);
    }
}
