//! [`ClientEvent`]: what the client tells its user, in order, through its event stream (or
//! callback).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moorline::ws::Utf8Bytes;
use moorline::{DownReason, ExitReason, Protocol};

use crate::error::ClientError;

/// A subscription channel's name, shared (the client hands out the same allocation for every
/// message of a channel it knows).
pub type Channel = Arc<str>;

/// The identity of one connection attempt: every timer and reply belongs to one, so nothing
/// of an old connection acts on a new one. Increases by one per attempt, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(pub u64);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {}", self.0)
    }
}

/// A data message's payload: the bytes moorline received, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text message (valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Payload {
    /// Its size in bytes (what the incoming queue's ceiling counts).
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Payload::Text(t) => Some(t.as_str()),
            Payload::Binary(_) => None,
        }
    }
}

/// Why the connection ended.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The connection layer saw it go down (closed, reset, protocol error, closing handshake).
    #[error("{0}")]
    Down(DownReason),
    /// The connection layer exited.
    #[error("{0}")]
    Exited(ExitReason),
    /// The WebSocket's stream failed while the connection stayed up (over HTTP/2, where the
    /// WebSocket is one stream: a protocol error, a reset, a close timeout).
    #[error("the WebSocket stream failed: {0}")]
    Stream(moorline::StreamError),
    /// No frame at all arrived within the dead-peer limit.
    #[error("dead peer: nothing received for {0:?}")]
    DeadPeer(Duration),
    /// The venue's heartbeat did not come within its interval plus grace: half-open.
    #[error("the venue's heartbeat did not arrive within {0:?}: the connection is half-open")]
    HeartbeatMissed(Duration),
    /// No data message within the idle limit, and idle reconnection is on.
    #[error("idle feed: no data message for {0:?}")]
    Idle(Duration),
    /// The session could not be restored (the handshake, authentication or a restore request
    /// failed or timed out).
    #[error("session restore failed: {0}")]
    RestoreFailed(String),
    /// The user asked for a reconnection.
    #[error("reconnection requested")]
    Requested,
    /// The user closed the client.
    #[error("closed by the user")]
    Closed,
}

/// A channel the venue did not confirm, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The channel.
    pub channel: Channel,
    /// The venue's reason (its error message), or why the client counts it refused (left out
    /// of the venue's confirmation list).
    pub reason: String,
}

/// What the client tells its user.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A data message, with its subscription channel when the dialect knows it.
    Message {
        /// The payload.
        data: Payload,
        /// Its channel.
        channel: Option<Channel>,
    },
    /// The first connection is up and its session restored (handshake, authentication,
    /// subscriptions).
    Connected {
        /// The attempt that connected.
        attempt: AttemptId,
        /// HTTP/1.1 or HTTP/2.
        protocol: Protocol,
    },
    /// The connection ended; pending requests have failed with
    /// [`ClientError::Disconnected`].
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// A reconnection will be tried after `delay`.
    Reconnecting {
        /// Consecutive failures so far (1 for the first retry).
        attempt: u32,
        /// The delay before it.
        delay: Duration,
    },
    /// A later connection is up and its session restored.
    Reconnected {
        /// The attempt that connected.
        attempt: AttemptId,
        /// HTTP/1.1 or HTTP/2.
        protocol: Protocol,
    },
    /// Subscriptions after a (re)connect, as the venue confirmed them.
    Restored {
        /// Channels the venue confirmed.
        confirmed: Vec<Channel>,
        /// Channels it refused or left out, with the reason.
        refused: Vec<Refused>,
    },
    /// No data message for the idle limit (the connection stays unless idle reconnection is on).
    Idle {
        /// How long it has been quiet.
        silent_for: Duration,
    },
    /// Data messages were dropped here because the user read too slowly
    /// ([`Overflow::DropOldest`](crate::config::Overflow)); never silent.
    Dropped {
        /// How many messages.
        messages: u64,
        /// Their bytes (as the queue counts them).
        bytes: u64,
    },
    /// Something went wrong that the user should know of; the client goes on unless
    /// [`ClientError::kind`] is fatal (then [`ClientEvent::Closed`] follows).
    Error(ClientError),
    /// The client stopped: the last event. `None`: closed by the user.
    Closed {
        /// The fatal error, if that is why.
        error: Option<ClientError>,
    },
}

impl ClientEvent {
    /// Bytes this event counts against the incoming queue's ceiling: a message's payload, or
    /// a small fixed amount for the others (so a flood of events is bounded too).
    pub fn queued_bytes(&self) -> usize {
        const EVENT_OVERHEAD: usize = 64;
        match self {
            ClientEvent::Message { data, .. } => EVENT_OVERHEAD + data.len(),
            ClientEvent::Restored { confirmed, refused } => {
                EVENT_OVERHEAD
                    + confirmed.iter().map(|c| c.len() + 16).sum::<usize>()
                    + refused.iter().map(|r| r.channel.len() + r.reason.len() + 32).sum::<usize>()
            }
            _ => EVENT_OVERHEAD,
        }
    }

    /// Whether this is a data message (what [`Overflow::DropOldest`](crate::config::Overflow)
    /// may drop; the other events are never dropped).
    pub fn is_message(&self) -> bool {
        matches!(self, ClientEvent::Message { .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            DisconnectReason::DeadPeer(Duration::from_secs(30)).to_string(),
            "dead peer: nothing received for 30s"
        );
        assert!(DisconnectReason::HeartbeatMissed(Duration::from_secs(35)).to_string().contains("half-open"));
        assert_eq!(DisconnectReason::Down(DownReason::Closed).to_string(), "the peer closed the connection");
        assert_eq!(AttemptId(3).to_string(), "attempt 3");
    }

    #[test]
    fn queued_bytes_count_the_payload_and_bound_the_rest() {
        let m = ClientEvent::Message { data: Payload::Binary(Bytes::from(vec![0; 1000])), channel: None };
        assert_eq!(m.queued_bytes(), 1064);
        assert!(m.is_message());
        let t = Payload::Text(Utf8Bytes::from("héllo"));
        assert_eq!((t.len(), t.as_text()), (6, Some("héllo")));
        let r = ClientEvent::Restored {
            confirmed: vec![Arc::from("a.b")],
            refused: vec![Refused { channel: Arc::from("c"), reason: "no".into() }],
        };
        assert_eq!(r.queued_bytes(), 64 + 3 + 16 + 1 + 2 + 32);
        assert!(!ClientEvent::Idle { silent_for: Duration::ZERO }.is_message());
    }
}
