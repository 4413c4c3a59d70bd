//! [`Pending`]: requests waiting for their response (JSON-RPC 2.0 correlation, or any
//! request/response scheme with ids).
//!
//! - **Ids** are `u64`, allocated here, monotonic for the life of the machine, across
//!   reconnects: a late response from an earlier connection can never match a newer request.
//! - **Deadlines**: each request has its own timeout; [`Pending::expire`] hands back the ones
//!   past it, [`Pending::next_deadline`] says when the next one is due. `Duration::MAX` means
//!   no deadline.
//! - **Disconnect**: [`Pending::on_disconnect`] fails every request at once, except those
//!   inserted with [`RequestOptions::resend`] (idempotent ones, opt-in), which stay, keep their
//!   deadline, and are handed out again by [`Pending::take_resends`] after the restore, each
//!   under a **new** id (the old one is forgotten, so a late answer to it matches nothing).
//! - **Bounds**: at most [`PendingLimits::max_requests`] requests and
//!   [`PendingLimits::max_bytes`] bytes (as the caller counts them: the encoded request, say)
//!   are pending; an insert past either is refused with a [`PendingError`].
//!
//! `T` is whatever the shell needs to answer the caller (a oneshot sender, the encoded request
//! for a resend...).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use moorline_proto::client::pending::{Pending, PendingLimits, RequestOptions};
//!
//! let t0 = Instant::now();
//! let mut p: Pending<&str> = Pending::new(PendingLimits { max_requests: 2, max_bytes: 1024 });
//! let a = p.insert(t0, RequestOptions::new(Duration::from_secs(5), 100), "get_time").unwrap();
//! let b = p.insert(t0, RequestOptions::new(Duration::from_secs(1), 100).resend(true), "get_index").unwrap();
//! assert!(p.insert(t0, RequestOptions::new(Duration::from_secs(1), 1), "third").is_err(), "bounded");
//! assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
//! assert_eq!(p.complete(a), Some("get_time"));
//! assert_eq!(p.complete(a), None, "exactly once");
//! // The connection drops: the resendable one stays, under a new id after the restore.
//! assert!(p.on_disconnect().failed.is_empty());
//! let resent = p.take_resends();
//! assert_eq!(resent[0].old, b);
//! assert_eq!(p.complete(b), None, "the old id matches nothing any more");
//! assert_eq!(p.expire(t0 + Duration::from_secs(1)), vec![(resent[0].new, "get_index")]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::after;

/// The ceilings (defaults: 1,024 requests, 4 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// Most requests pending at once.
    pub max_requests: usize,
    /// Most bytes pending at once, as counted by [`RequestOptions::bytes`].
    pub max_bytes: usize,
}

impl Default for PendingLimits {
    fn default() -> Self {
        Self { max_requests: 1024, max_bytes: 4 << 20 }
    }
}

/// One request's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// How long to wait for the response (`Duration::MAX`: no deadline).
    pub timeout: Duration,
    /// What the request counts against [`PendingLimits::max_bytes`].
    pub bytes: usize,
    /// Idempotent: keep it over a disconnect and send it again after the restore.
    pub resend: bool,
}

impl RequestOptions {
    /// A request of `bytes` bytes with a `timeout`, failed on disconnect.
    pub fn new(timeout: Duration, bytes: usize) -> Self {
        Self { timeout, bytes, resend: false }
    }

    /// Whether to keep it over a disconnect and send it again after the restore.
    pub fn resend(mut self, resend: bool) -> Self {
        self.resend = resend;
        self
    }
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    /// As many requests as allowed are pending.
    #[error("too many pending requests: {limit} already wait for their response")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// The request's bytes would take the pending total past the limit.
    #[error("pending requests would hold {} bytes, over the limit of {limit}", pending.saturating_add(*requested))]
    TooManyBytes {
        /// The limit.
        limit: usize,
        /// Bytes pending now.
        pending: usize,
        /// This request's bytes.
        requested: usize,
    },
}

/// What a disconnect did.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected<T> {
    /// Requests failed at once (id, value), in id order.
    pub failed: Vec<(u64, T)>,
    /// Requests kept for a resend after the restore.
    pub kept: usize,
}

/// A request kept over a disconnect, now under a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resend {
    /// The id it had on the lost connection (forgotten now).
    pub old: u64,
    /// The id to send it under (its value is at [`Pending::get`]).
    pub new: u64,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    deadline: Option<Instant>,
    bytes: usize,
    resend: bool,
    /// Kept over a disconnect, waiting for `take_resends`.
    unsent: bool,
}

/// The pending-request table (see the [module doc](self)).
#[derive(Debug)]
pub struct Pending<T> {
    limits: PendingLimits,
    last_id: u64,
    entries: BTreeMap<u64, Entry<T>>,
    deadlines: BTreeSet<(Instant, u64)>,
    bytes: usize,
}

impl<T> Pending<T> {
    /// An empty table; the first id is 1.
    pub fn new(limits: PendingLimits) -> Self {
        Self { limits, last_id: 0, entries: BTreeMap::new(), deadlines: BTreeSet::new(), bytes: 0 }
    }

    fn allocate(&mut self) -> u64 {
        // 2^64 ids: at a billion a second, 584 years.
        self.last_id = self.last_id.wrapping_add(1).max(1);
        self.last_id
    }

    /// A new request sent at `now`: returns its id, or why it is refused (nothing is
    /// recorded then).
    pub fn insert(&mut self, now: Instant, options: RequestOptions, value: T) -> Result<u64, PendingError> {
        if self.entries.len() >= self.limits.max_requests {
            return Err(PendingError::TooMany { limit: self.limits.max_requests });
        }
        if self.bytes.saturating_add(options.bytes) > self.limits.max_bytes {
            return Err(PendingError::TooManyBytes {
                limit: self.limits.max_bytes,
                pending: self.bytes,
                requested: options.bytes,
            });
        }
        let id = self.allocate();
        let deadline = after(now, options.timeout);
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        self.bytes += options.bytes;
        self.entries.insert(id, Entry { value, deadline, bytes: options.bytes, resend: options.resend, unsent: false });
        Ok(id)
    }

    fn remove(&mut self, id: u64) -> Option<Entry<T>> {
        let e = self.entries.remove(&id)?;
        if let Some(d) = e.deadline {
            self.deadlines.remove(&(d, id));
        }
        self.bytes -= e.bytes;
        Some(e)
    }

    /// The response to `id` arrived: its value, once (`None` for an unknown, finished,
    /// expired or stale id).
    pub fn complete(&mut self, id: u64) -> Option<T> {
        self.remove(id).map(|e| e.value)
    }

    /// The request `id`, if pending.
    pub fn get(&self, id: u64) -> Option<&T> {
        self.entries.get(&id).map(|e| &e.value)
    }

    /// The requests whose deadline is at or before `now`, removed, in deadline order.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        while let Some(&(d, id)) = self.deadlines.first() {
            if d > now {
                break;
            }
            if let Some(e) = self.remove(id) {
                out.push((id, e.value));
            }
        }
        out
    }

    /// The earliest deadline of a pending request.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// The connection dropped: every request fails at once except the resendable ones, which
    /// wait (with their deadline) for [`take_resends`](Self::take_resends).
    pub fn on_disconnect(&mut self) -> Disconnected<T> {
        let ids: Vec<u64> = self.entries.iter().filter(|(_, e)| !e.resend).map(|(id, _)| *id).collect();
        let mut failed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.remove(id) {
                failed.push((id, e.value));
            }
        }
        for e in self.entries.values_mut() {
            e.unsent = true;
        }
        Disconnected { failed, kept: self.entries.len() }
    }

    /// After the restore: the requests kept over the disconnect, each moved to a new id (in
    /// their original order) for the shell to send again.
    pub fn take_resends(&mut self) -> Vec<Resend> {
        let old: Vec<u64> = self.entries.iter().filter(|(_, e)| e.unsent).map(|(id, _)| *id).collect();
        let mut out = Vec::with_capacity(old.len());
        for id in old {
            let Some(mut e) = self.entries.remove(&id) else { continue };
            let new = self.allocate();
            if let Some(d) = e.deadline {
                self.deadlines.remove(&(d, id));
                self.deadlines.insert((d, new));
            }
            e.unsent = false;
            self.entries.insert(new, e);
            out.push(Resend { old: id, new });
        }
        out
    }

    /// Everything pending, removed (the client is closing, or gave up reconnecting).
    pub fn fail_all(&mut self) -> Vec<(u64, T)> {
        self.deadlines.clear();
        self.bytes = 0;
        std::mem::take(&mut self.entries).into_iter().map(|(id, e)| (id, e.value)).collect()
    }

    /// Requests pending.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes pending, as counted by [`RequestOptions::bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The last id handed out (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }
}

#[cfg(test)]
#[path = "pending_tests.rs"]
mod tests;
