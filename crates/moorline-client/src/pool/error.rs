//! [`PoolError`]: what the pool's calls fail with.

use std::fmt::Write as _;
use std::time::Duration;

use crate::error::ClientError;
use crate::jsonrpc::EncodeError;

/// Why a pool call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// An option was refused.
    #[error("invalid pool option {option} = {value}: must be {rule}")]
    Config {
        /// The option.
        option: &'static str,
        /// Its value.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// Starting a member failed (its URL, configuration or dialect was refused).
    #[error("member {member} could not start: {error}")]
    Start {
        /// The member's index.
        member: usize,
        /// The client's error.
        #[source]
        error: Box<ClientError>,
    },
    /// Not called within a tokio runtime (the pool spawns a task per member).
    #[error("the pool must be started within a tokio runtime")]
    NoRuntime,
    /// A member answered, and the answer is an error that another member would give too (the
    /// venue's JSON-RPC error, a request that could not be encoded, the rate limit), or a
    /// request that may have reached the venue was lost and is not to be sent again
    /// ([`ClientPool::request`](super::ClientPool::request): see its failover rules).
    #[error("member {member}: {error}")]
    Member {
        /// The member that answered.
        member: usize,
        /// Its error (`ClientError::Rpc` for the venue's answer; boxed: it is large).
        #[source]
        error: Box<ClientError>,
    },
    /// Every member was tried and failed with a connection error (or the pool's deadline
    /// passed): each member's error, in the order they were tried.
    #[error("every member failed: {}", list(.failures))]
    AllMembersFailed {
        /// `(member, error)` per attempt.
        failures: Vec<(usize, ClientError)>,
    },
    /// The request's params could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The pool's deadline for the call passed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// The pool has no room for the channels asked for: nothing of the call was subscribed.
    #[error(
        "the pool is full: {requested} new channels asked for, room for {free} ({per_connection} per connection, {members} members)"
    )]
    CapacityFull {
        /// New channels in the call.
        requested: usize,
        /// Channels the pool still has room for.
        free: usize,
        /// The per-connection limit.
        per_connection: usize,
        /// Members.
        members: usize,
    },
}

fn list(failures: &[(usize, ClientError)]) -> String {
    let mut out = String::new();
    for (i, (member, error)) in failures.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(out, "{sep}member {member}: {error}");
    }
    out
}

impl PoolError {
    /// The member's error, for [`Member`](Self::Member) and [`Start`](Self::Start).
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            PoolError::Member { error, .. } | PoolError::Start { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The venue's JSON-RPC error, when that is the answer.
    pub fn rpc(&self) -> Option<&crate::jsonrpc::RpcError> {
        match self {
            PoolError::Member { error, .. } => match &**error {
                ClientError::Rpc { error, .. } => Some(error),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed() {
        let e = PoolError::AllMembersFailed {
            failures: vec![(1, ClientError::Disconnected { sent: false }), (0, ClientError::Closed)],
        };
        assert_eq!(
            e.to_string(),
            "every member failed: member 1: not connected: the message was not sent; member 0: the client is closed"
        );
        let full = PoolError::CapacityFull { requested: 5, free: 2, per_connection: 4, members: 2 };
        assert!(full.to_string().contains("room for 2"), "{full}");
        assert!(e.rpc().is_none());
    }
}
