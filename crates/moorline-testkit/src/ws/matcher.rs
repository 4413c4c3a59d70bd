//! [`Matcher`]: which received frames a test is waiting for, or a reply rule answers.

use std::fmt;
use std::sync::Arc;

use regex::Regex;

use super::frame::Frame;
use super::json::is_subset;

/// A predicate over received frames, for [`Matcher::Predicate`].
pub type FramePredicate = Arc<dyn Fn(&Frame) -> bool + Send + Sync>;

/// Decides whether a received [`Frame`] is the one expected.
///
/// [`Exact`](Matcher::Exact), [`Regex`](Matcher::Regex) and
/// [`JsonSubset`](Matcher::JsonSubset) only ever match text frames;
/// [`Predicate`](Matcher::Predicate) sees every frame (binary, ping, pong, close too).
///
/// ```
/// use moorline_testkit::ws::{Frame, Matcher};
/// use serde_json::json;
///
/// let m = Matcher::JsonSubset(json!({"method": "subscribe", "params": {"channels": ["book"]}}));
/// assert!(m.matches(&Frame::text(r#"{"id":1,"method":"subscribe","params":{"channels":["book","trades"]}}"#)));
/// assert!(!m.matches(&Frame::text(r#"{"method":"unsubscribe"}"#)));
/// ```
#[derive(Clone)]
pub enum Matcher {
    /// The text frame equals this string exactly.
    Exact(String),
    /// The regex finds a match somewhere in the text frame (anchor it with `^...$` for a full match).
    Regex(Regex),
    /// The text frame parses as JSON and contains the pattern: every key/value of
    /// the pattern is present, recursively; arrays are compared by position (the
    /// message's array may be longer); numbers compare by value (`1` == `1.0`).
    JsonSubset(serde_json::Value),
    /// Any frame for which the function returns `true`.
    Predicate(FramePredicate),
}

impl Matcher {
    /// A [`Matcher::Predicate`] from a closure.
    pub fn predicate(f: impl Fn(&Frame) -> bool + Send + Sync + 'static) -> Self {
        Matcher::Predicate(Arc::new(f))
    }

    /// Matches every frame.
    pub fn any() -> Self {
        Matcher::predicate(|_| true)
    }

    /// Whether `frame` matches.
    pub fn matches(&self, frame: &Frame) -> bool {
        match self {
            Matcher::Exact(s) => frame.as_text() == Some(s.as_str()),
            Matcher::Regex(re) => frame.as_text().is_some_and(|t| re.is_match(t)),
            Matcher::JsonSubset(pattern) => frame
                .as_text()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                .is_some_and(|v| is_subset(pattern, &v)),
            Matcher::Predicate(f) => f(frame),
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(s) => write!(f, "Exact({s:?})"),
            Matcher::Regex(re) => write!(f, "Regex({:?})", re.as_str()),
            Matcher::JsonSubset(v) => write!(f, "JsonSubset({v})"),
            Matcher::Predicate(_) => write!(f, "Predicate(<fn>)"),
        }
    }
}
