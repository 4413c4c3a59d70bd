//! Introspection: what `info()` and `stream_info()` report.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::Method;

use crate::error::{ExitReason, Failure};
use crate::ids::{Protocol, StreamRef};
use crate::options::Transport;

/// Where the connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Trying to establish the connection.
    Connecting,
    /// Up and serving streams.
    Up,
    /// Lost; waiting before the next try.
    Reconnecting,
    /// `shutdown()` called: finishing streams in flight.
    ShuttingDown,
    /// The worker has exited.
    Exited,
}

/// A snapshot of the connection, from [`crate::Connection::info`].
#[derive(Debug, Clone)]
pub struct Info {
    /// Connection identity.
    pub id: u64,
    /// Host given to `open`.
    pub host: String,
    /// Port given to `open`.
    pub port: u16,
    /// Transport in use.
    pub transport: Transport,
    /// Life-cycle state.
    pub state: State,
    /// Protocol of the current (or last) connection.
    pub protocol: Option<Protocol>,
    /// Remote address of the current (or last) connection.
    pub peer: Option<SocketAddr>,
    /// Local address of the current (or last) connection.
    pub local: Option<SocketAddr>,
    /// Connections established so far (1 after the first `Up`).
    pub connects: u64,
    /// Consecutive failures the retry policy counts: failed attempts and connections lost
    /// before they proved healthy. An `Up` does not reset it; a connection that stays up
    /// for [`crate::ConnectOptions::healthy_after`], or [`crate::Connection::mark_healthy`],
    /// does. The next failure is attempt `failures + 1` of the policy.
    pub failures: u32,
    /// Why the last of those failures happened: a failed attempt or the lost connection
    /// (`None` since the last `Up`, or before any failure). [`crate::Error::ConnectTimeout`]
    /// carries it.
    pub last_failure: Option<Failure>,
    /// Why the worker exited, once it has.
    pub exit: Option<ExitReason>,
}

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamState {
    /// Accepted, not yet handed to the socket.
    Queued,
    /// Head sent, body still being sent.
    Sending,
    /// Request sent, waiting for the response head.
    AwaitingResponse,
    /// Response head received, body arriving.
    Receiving,
    /// An open WebSocket.
    WebSocket,
}

/// A snapshot of one stream, from [`crate::Connection::stream_info`].
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The stream.
    pub stream: StreamRef,
    /// Request method.
    pub method: Method,
    /// Request target.
    pub target: String,
    /// Protocol carrying it.
    pub protocol: Protocol,
    /// Where it is.
    pub state: StreamState,
}

/// What `stream_info` reports, kept by the worker as the sessions change it, so that a query
/// is answered from here whenever the worker takes commands, also while it waits for room
/// for the owner (the session itself is then in the middle of a delivery). Cleared when a
/// session ends: its streams end with it (`Down` lists them).
#[derive(Debug, Default)]
pub(crate) struct StreamTable(HashMap<StreamRef, StreamInfo>);

impl StreamTable {
    /// A request or WebSocket upgrade accepted, not yet handed to the socket.
    pub(crate) fn queued(&mut self, stream: StreamRef, method: &Method, target: &str, protocol: Protocol) {
        let info = StreamInfo {
            stream,
            method: method.clone(),
            target: target.to_owned(),
            protocol,
            state: StreamState::Queued,
        };
        self.0.insert(stream, info);
    }

    /// A stream the server opened (HTTP/2 push), its response arriving.
    pub(crate) fn pushed(&mut self, stream: StreamRef) {
        let info = StreamInfo {
            stream,
            method: Method::GET,
            target: String::new(),
            protocol: Protocol::Http2,
            state: StreamState::Receiving,
        };
        self.0.insert(stream, info);
    }

    /// A known stream moved on (a stream no longer known stays unknown).
    pub(crate) fn set(&mut self, stream: StreamRef, state: StreamState) {
        if let Some(info) = self.0.get_mut(&stream) {
            info.state = state;
        }
    }

    /// A stream that only moves on from `from` (a body done being sent).
    pub(crate) fn advance(&mut self, stream: StreamRef, from: StreamState, to: StreamState) {
        if let Some(info) = self.0.get_mut(&stream)
            && info.state == from
        {
            info.state = to;
        }
    }

    /// The stream is over (ended, failed or cancelled).
    pub(crate) fn remove(&mut self, stream: StreamRef) {
        self.0.remove(&stream);
    }

    /// The session ended: every stream with it.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn get(&self, stream: StreamRef) -> Option<StreamInfo> {
        self.0.get(&stream).cloned()
    }
}
