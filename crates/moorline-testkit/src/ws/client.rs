//! Client identity: [`ClientId`] and what the upgrade request said ([`ClientInfo`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// Identifies one accepted connection of a [`MockServer`](super::MockServer)
/// (ids start at 1 and are never reused by the same server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client#{}", self.0)
    }
}

/// A client whose WebSocket upgrade was accepted.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Its id.
    pub id: ClientId,
    /// Its address.
    pub peer: SocketAddr,
    /// The request target of the upgrade request (path and query), e.g. `/ws/v2?x=1`.
    pub path: String,
    /// The upgrade request's headers (lower-case names, in order; non-UTF-8 values lossily converted).
    pub headers: Vec<(String, String)>,
    /// When the upgrade completed.
    pub connected_at: Instant,
}

impl ClientInfo {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}
