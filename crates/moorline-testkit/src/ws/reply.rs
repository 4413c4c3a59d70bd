//! Scripted replies: [`Reply`] and the rule table consulted for every received frame.

use std::fmt;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::frame::Frame;
use super::matcher::Matcher;
use crate::sync::{read, write};

/// A function building a reply from the received frame, for [`Reply::With`].
pub type ReplyFn = Arc<dyn Fn(&Frame) -> Option<Frame> + Send + Sync>;

/// What a scripted rule ([`MockServer::on`](super::MockServer::on)) answers.
#[derive(Clone)]
pub enum Reply {
    /// Always this frame.
    Message(Frame),
    /// Whatever the function returns for the received frame (`None`: no answer).
    With(ReplyFn),
}

impl Reply {
    /// A fixed reply.
    pub fn message(frame: Frame) -> Self {
        Reply::Message(frame)
    }

    /// A reply computed from the received frame.
    pub fn with(f: impl Fn(&Frame) -> Option<Frame> + Send + Sync + 'static) -> Self {
        Reply::With(Arc::new(f))
    }

    /// A JSON-RPC 2.0 success response echoing the request's `id`:
    /// `{"jsonrpc":"2.0","id":<id of the request>,"result":<result>}`.
    /// Requests that are not JSON objects get no answer; a missing id is echoed as `null`.
    ///
    /// ```
    /// use moorline_testkit::ws::{Frame, Reply};
    /// use serde_json::json;
    ///
    /// let reply = Reply::json_rpc_result(json!(["book.BTC"]));
    /// let answer = reply.answer(&Frame::text(r#"{"jsonrpc":"2.0","id":42,"method":"subscribe"}"#));
    /// assert_eq!(answer, Some(Frame::text(r#"{"id":42,"jsonrpc":"2.0","result":["book.BTC"]}"#)));
    /// ```
    pub fn json_rpc_result(result: Value) -> Self {
        Reply::with(move |frame| {
            let request: Value = serde_json::from_str(frame.as_text()?).ok()?;
            let id = request.as_object()?.get("id").cloned().unwrap_or(Value::Null);
            Some(Frame::Text(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()))
        })
    }

    /// The answer to `received`, if any.
    pub fn answer(&self, received: &Frame) -> Option<Frame> {
        match self {
            Reply::Message(frame) => Some(frame.clone()),
            Reply::With(f) => f(received),
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Message(frame) => write!(f, "Message({frame})"),
            Reply::With(_) => write!(f, "With(<fn>)"),
        }
    }
}

/// Reply rules, consulted in the order they were added; the first matching rule answers.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    rules: RwLock<Vec<(Matcher, Reply)>>,
}

impl Rules {
    pub(crate) fn add(&self, matcher: Matcher, reply: Reply) {
        write(&self.rules).push((matcher, reply));
    }

    pub(crate) fn clear(&self) {
        write(&self.rules).clear();
    }

    /// The answer of the first rule matching `received`, if any.
    pub(crate) fn answer(&self, received: &Frame) -> Option<Frame> {
        let rules = read(&self.rules);
        rules.iter().find(|(m, _)| m.matches(received)).and_then(|(_, reply)| reply.answer(received))
    }
}
