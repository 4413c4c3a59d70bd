//! The log of received frames, and waiting on it: [`Received`], [`ExpectError`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::client::ClientId;
use super::frame::Frame;
use super::matcher::Matcher;
use crate::sync::lock;

/// At most this many received frames are listed in an [`ExpectError`]'s message (the latest ones).
const LISTED: usize = 50;

/// One frame received from a client.
#[derive(Debug, Clone)]
pub struct Received {
    /// Who sent it.
    pub client: ClientId,
    /// When it was received.
    pub at: Instant,
    /// Time since the server started.
    pub since_start: Duration,
    /// The frame.
    pub frame: Frame,
}

/// [`MockServer::expect_received`](super::MockServer::expect_received) found no matching frame in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", describe(.matcher, *.waited, .received))]
pub struct ExpectError {
    /// The matcher, as `Debug` text.
    pub matcher: String,
    /// How long the call waited.
    pub waited: Duration,
    /// Everything received when the wait gave up (none of it matched).
    pub received: Vec<Received>,
}

fn describe(matcher: &str, waited: Duration, received: &[Received]) -> String {
    let mut out = format!("no received frame matched {matcher} within {waited:?}; ");
    if received.is_empty() {
        out.push_str("nothing was received");
        return out;
    }
    out.push_str(&format!("{} frame(s) received:", received.len()));
    let skip = received.len().saturating_sub(LISTED);
    if skip > 0 {
        out.push_str(&format!("\n  ... {skip} earlier frame(s) not shown"));
    }
    for r in &received[skip..] {
        out.push_str(&format!("\n  {} at +{:?}: {}", r.client, r.since_start, r.frame));
    }
    out
}

/// Received frames, appended by connection tasks, waited on by tests.
pub(crate) struct Log {
    started: Instant,
    frames: Mutex<Vec<Received>>,
    added: Notify,
    on_received: Option<ReceivedHook>,
}

/// A function called with every frame a [`MockServer`](super::MockServer) receives, set with
/// [`MockServerBuilder::on_received`](super::MockServerBuilder::on_received).
#[derive(Clone)]
pub(crate) struct ReceivedHook(pub(crate) Arc<dyn Fn(&Received) + Send + Sync>);

impl fmt::Debug for ReceivedHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReceivedHook(<fn>)")
    }
}

impl Log {
    pub(crate) fn new(started: Instant, on_received: Option<ReceivedHook>) -> Self {
        Self { started, frames: Mutex::new(Vec::new()), added: Notify::new(), on_received }
    }

    /// Appends a frame received from `client` now (and hands it to the hook, if any).
    pub(crate) fn push(&self, client: ClientId, frame: Frame) {
        let at = Instant::now();
        let received = Received { client, at, since_start: at - self.started, frame };
        if let Some(hook) = &self.on_received {
            (hook.0)(&received);
        }
        lock(&self.frames).push(received);
        self.added.notify_waiters();
    }

    /// A copy of everything received so far.
    pub(crate) fn all(&self) -> Vec<Received> {
        lock(&self.frames).clone()
    }

    /// Forgets everything received so far.
    pub(crate) fn clear(&self) {
        lock(&self.frames).clear();
    }

    /// The first logged frame (oldest first) matching `matcher`, waiting up to `timeout` for one.
    pub(crate) async fn expect(&self, matcher: &Matcher, timeout: Duration) -> Result<Received, ExpectError> {
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        loop {
            let notified = self.added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = lock(&self.frames).iter().find(|r| matcher.matches(&r.frame)) {
                return Ok(found.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let frames = lock(&self.frames).clone();
                if let Some(found) = frames.iter().find(|r| matcher.matches(&r.frame)) {
                    return Ok(found.clone());
                }
                return Err(ExpectError { matcher: format!("{matcher:?}"), waited: start.elapsed(), received: frames });
            }
        }
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("frames", &lock(&self.frames).len()).finish_non_exhaustive()
    }
}
