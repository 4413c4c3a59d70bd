//! [`ClientPool`]: the pool's handle. It owns the members' [`Client`]s, the health board, the
//! placement of channels and (redundant mode) the deduplication state; one forwarding task
//! per member moves that member's events into the merged [`PoolEvents`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::{Mode, PoolConfig};
use super::dedup::{Dedup, DedupStats};
use super::error::PoolError;
use super::events::{self, PoolEvents};
use super::forward::forward;
use super::health::{Board, MemberHealth, View};
use super::redundant::{Redundancy, merge_replicated};
use super::shard::Placement;
use crate::dialect::Dialect;
use crate::event::{Channel, Refused};
use crate::jsonrpc::{EncodeError, RawValue};
use crate::queue::EventStream;
use crate::{Client, ClientConfig, ClientError, ClientState, SubscribeOutcome};

/// A request's answer, with the member that gave it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Answer {
    /// The member that answered.
    pub member: usize,
    /// The venue's `result`.
    pub result: Box<RawValue>,
}

/// Whether a failed request goes on to another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Only when the venue cannot have seen it: the member was not connected, its connection
    /// went down before the request was written (`Disconnected { sent: false }`), it is
    /// closed, or its queue of pending requests is full. Any request may.
    Unsent,
    /// Also when it may have reached the venue: the connection went down after it was written
    /// (`Disconnected { sent: true }`) or the member's attempt timed out. Only for requests
    /// that are safe to repeat (reads, or what the venue deduplicates).
    Always,
}

/// A pool of clients to one or more endpoints; see the [module documentation](super).
/// Cheap to clone (every clone is the same pool).
#[derive(Clone)]
pub struct ClientPool {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<Client>,
    config: PoolConfig,
    board: Arc<Mutex<Board>>,
    placement: Mutex<Placement>,
    redundancy: Option<Arc<Redundancy>>,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPool")
            .field("mode", &self.inner.config.mode)
            .field("members", &self.inner.members)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind these locks: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a request from its member's in-flight count when it ends (or is dropped).
struct InFlight<'a> {
    board: &'a Mutex<Board>,
    member: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.board).finish(self.member);
    }
}

/// What a member's failed attempt means for the request.
fn fails_over(error: &ClientError, failover: Failover) -> bool {
    match error {
        ClientError::Disconnected { sent: false } | ClientError::Closed | ClientError::QueueFull { .. } => true,
        ClientError::Disconnected { sent: true } | ClientError::Timeout { .. } => failover == Failover::Always,
        _ => false,
    }
}

/// Whether an error says something of the member's connection (counted against its health).
fn connection_error(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Disconnected { .. }
            | ClientError::Closed
            | ClientError::Timeout { .. }
            | ClientError::QueueFull { .. }
    )
}

impl ClientPool {
    /// Starts `members` clients, member `i` to `endpoints[i % endpoints.len()]` with
    /// `client_config` and the dialect `dialect(i)` (a dialect keeps per-connection state,
    /// such as Deribit's tokens: one each), and the pool over them; returns at once with the
    /// merged event stream (each member connects in the background, as
    /// [`Client::connect`] does). Must be called within a tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), moorline_client::pool::PoolError> {
    /// use std::sync::Arc;
    /// use moorline_client::ClientConfig;
    /// use moorline_client::dialect::{Deribit, Dialect};
    /// use moorline_client::pool::{ClientPool, PoolConfig};
    ///
    /// let endpoints = ["wss://www.deribit.com/ws/api/v2", "wss://streams.deribit.com/ws/api/v2"];
    /// let (pool, mut events) = ClientPool::connect(&endpoints, 4, ClientConfig::default(),
    ///     |_| Arc::new(Deribit::new()) as Arc<dyn Dialect>, PoolConfig::sharded().channels_per_connection(100))?;
    /// pool.subscribe(&["book.BTC-PERPETUAL.100ms", "book.ETH-PERPETUAL.100ms"]).await?;
    /// let time = pool.request("public/get_time", serde_json::json!({})).await?; // the healthiest member
    /// while let Some(e) = events.recv().await { // cancel-safe
    ///     println!("member {}: {:?}", e.member, e.event);
    /// }
    /// # let _ = time; Ok(()) }
    /// ```
    pub fn connect(
        endpoints: &[&str],
        members: usize,
        client_config: ClientConfig,
        dialect: impl Fn(usize) -> Arc<dyn Dialect>,
        config: PoolConfig,
    ) -> Result<(ClientPool, PoolEvents), PoolError> {
        config.validate()?;
        config.check_members(members)?;
        if endpoints.is_empty() {
            return Err(PoolError::Config { option: "endpoints", value: "[]".into(), rule: "at least one URL" });
        }
        let mut clients = Vec::with_capacity(members);
        for i in 0..members {
            let url = endpoints[i % endpoints.len()];
            let started = Client::connect_dyn(url, client_config.clone(), dialect(i));
            clients.push(started.map_err(|error| PoolError::Start { member: i, error: Box::new(error) })?);
        }
        Self::from_clients(clients, config)
    }

    /// The pool over clients already started (each with its event stream, which the pool
    /// reads from now on); member `i` is `clients[i]`. Must be called within a tokio runtime.
    pub fn from_clients(
        clients: Vec<(Client, EventStream)>,
        config: PoolConfig,
    ) -> Result<(ClientPool, PoolEvents), PoolError> {
        config.validate()?;
        config.check_members(clients.len())?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PoolError::NoRuntime)?;
        let n = clients.len();
        let (tx, events) = events::channel(config.event_buffer_bytes, config.overflow, n);
        let board = Arc::new(Mutex::new(Board::new(n, config.error_window, config.latency_tolerance)));
        let redundancy = match &config.mode {
            Mode::Sharded => None,
            Mode::Redundant(extractor) => Some(Arc::new(Redundancy::new(
                extractor.clone(),
                Dedup::new(n, config.dedup_ranges, config.unkeyed_window),
            ))),
        };
        let mut members = Vec::with_capacity(n);
        for (i, (client, stream)) in clients.into_iter().enumerate() {
            runtime.spawn(forward(i, stream, tx.clone(), board.clone(), redundancy.clone()));
            members.push(client);
        }
        let placement = Mutex::new(Placement::new(n, config.channels_per_connection, redundancy.is_some()));
        let inner = Inner { members, config, board, placement, redundancy };
        tracing::debug!(members = n, mode = ?inner.config.mode, "pool started");
        Ok((ClientPool { inner: Arc::new(inner) }, events))
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    /// Whether the pool has no member (never: a pool has at least one).
    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    /// The members' clients, by index (to send on one, read its stats, reconnect it...).
    pub fn members(&self) -> &[Client] {
        &self.inner.members
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Every member's health, by index.
    pub fn health(&self) -> Vec<MemberHealth> {
        let now = Instant::now();
        let views: Vec<(ClientState, Option<Duration>)> =
            self.inner.members.iter().map(|c| (c.state(), c.stats().requests.p99)).collect();
        let board = lock(&self.inner.board);
        let placement = lock(&self.inner.placement);
        views
            .into_iter()
            .enumerate()
            .map(|(member, (state, p99))| MemberHealth {
                member,
                state,
                in_flight: board.in_flight(member),
                recent_errors: board.recent_errors(member, now),
                p99,
                channels: placement.count(member),
            })
            .collect()
    }

    /// Sharded mode: the member holding `channel`, if the pool subscribed it (redundant
    /// mode: `None`, every member holds every channel).
    pub fn owner(&self, channel: &str) -> Option<usize> {
        if self.inner.redundancy.is_some() {
            return None;
        }
        lock(&self.inner.placement).owner(channel)
    }

    /// Channels the pool holds now.
    pub fn channels(&self) -> usize {
        lock(&self.inner.placement).len()
    }

    /// How many channels the pool can hold: members × `channels_per_connection` sharded,
    /// `channels_per_connection` redundant.
    pub fn capacity(&self) -> usize {
        lock(&self.inner.placement).capacity()
    }

    /// Redundant mode: the deduplication's counters and memory.
    pub fn dedup_stats(&self) -> Option<DedupStats> {
        self.inner.redundancy.as_ref().map(|r| r.stats())
    }

    /// A JSON-RPC request on the healthiest member, failing over to the next healthiest only
    /// when the venue cannot have seen it ([`Failover::Unsent`]): a request that was written
    /// and then lost with its connection fails with [`PoolError::Member`] (`Disconnected {
    /// sent: true }` or `Timeout`), as it may have been processed. The venue's error answer
    /// is [`PoolError::Member`] with `ClientError::Rpc`, never retried. Every member tried and
    /// failed: [`PoolError::AllMembersFailed`]. Waits at most the pool's `request_timeout`.
    pub async fn request<P: Serialize>(&self, method: &str, params: P) -> Result<Box<RawValue>, PoolError> {
        let params = encode(method, &params)?;
        Ok(self.request_raw(method, Some(&params), Failover::Unsent).await?.result)
    }

    /// As [`request`](Self::request), for a request safe to repeat ([`Failover::Always`]):
    /// it also goes on to the next member when its connection went down after it was written,
    /// or the member's attempt timed out (`attempt_timeout`).
    pub async fn request_idempotent<P: Serialize>(&self, method: &str, params: P) -> Result<Box<RawValue>, PoolError> {
        let params = encode(method, &params)?;
        Ok(self.request_raw(method, Some(&params), Failover::Always).await?.result)
    }

    /// A request with params already encoded, failing over as `failover` says; the answer
    /// names the member that gave it.
    pub async fn request_raw(
        &self,
        method: &str,
        params: Option<&RawValue>,
        failover: Failover,
    ) -> Result<Answer, PoolError> {
        let inner = &*self.inner;
        let timeout = inner.config.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut tried = vec![false; inner.members.len()];
        let mut failures: Vec<(usize, ClientError)> = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                if failures.is_empty() {
                    return Err(PoolError::Timeout { what: format!("request {method}"), after: timeout });
                }
                break;
            }
            let views: Vec<View> = inner
                .members
                .iter()
                .map(|c| View { connected: c.state() == ClientState::Connected, p99: c.stats().requests.p99 })
                .collect();
            let Some(member) = lock(&inner.board).pick(&views, &tried, now) else { break };
            tried[member] = true;
            let attempt = inner.config.attempt_timeout.min(deadline - now);
            let result = {
                let _in_flight = InFlight { board: &inner.board, member };
                inner.members[member].request_raw(method, params, attempt).await
            };
            let error = match result {
                Ok(result) => return Ok(Answer { member, result }),
                Err(error) => error,
            };
            if connection_error(&error) {
                lock(&inner.board).record_error(member, Instant::now());
            }
            if !fails_over(&error, failover) {
                return Err(PoolError::Member { member, error: Box::new(error) });
            }
            tracing::debug!(member, method, %error, "request failed on a member; trying the next");
            failures.push((member, error));
        }
        Err(PoolError::AllMembersFailed { failures })
    }

    /// Subscribes to `channels`: sharded, each new channel goes to the member with the fewest
    /// channels among those with room (connected ones first), a channel already held to its
    /// member; redundant, every channel to every member. Refused whole with
    /// [`PoolError::CapacityFull`] when the new channels do not fit. Resolves once every member
    /// asked has answered (each within its request timeout): confirmed, or refused with the
    /// venue's reason or the member's error (a channel whose subscribe timed out stays with
    /// its member, which still wants it; one refused or whose member is closed is given up).
    /// Redundant: confirmed if a member confirmed it, refused if every member refused it.
    pub async fn subscribe(&self, channels: &[&str]) -> Result<SubscribeOutcome, PoolError> {
        let list = channel_list(channels);
        let connected: Vec<bool> = self.inner.members.iter().map(|c| c.state() == ClientState::Connected).collect();
        let plan = {
            let mut placement = lock(&self.inner.placement);
            placement.place(&list, &connected).map_err(|full| PoolError::CapacityFull {
                requested: full.requested,
                free: full.free,
                per_connection: self.inner.config.channels_per_connection,
                members: self.inner.members.len(),
            })?
        };
        if let Some(r) = &self.inner.redundancy {
            for c in &list {
                r.track(c);
            }
        }
        let results = self.on_members(plan, false).await;
        if let Some(r) = &self.inner.redundancy {
            let (outcome, given_up) = merge_replicated(&list, results.into_iter().map(|(m, _, r)| (m, r)).collect());
            let mut placement = lock(&self.inner.placement);
            for c in given_up {
                placement.release(&c);
                r.untrack(&c);
            }
            return Ok(outcome);
        }
        let mut out = SubscribeOutcome::default();
        let mut placement = lock(&self.inner.placement);
        for (member, asked, result) in results {
            match result {
                Ok(o) => {
                    for r in &o.refused {
                        placement.release(&r.channel);
                    }
                    out.confirmed.extend(o.confirmed);
                    out.refused.extend(o.refused);
                }
                Err(error) => {
                    let keep = matches!(error, ClientError::Timeout { .. });
                    for channel in asked {
                        if !keep {
                            placement.release(&channel);
                        }
                        out.refused.push(Refused { channel, reason: format!("member {member}: {error}") });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Unsubscribes from `channels` on the members holding them (every member, redundant);
    /// a channel the pool does not hold is confirmed at once. The channels' places are freed
    /// whatever the members answer. Redundant: confirmed if a member confirmed it.
    pub async fn unsubscribe(&self, channels: &[&str]) -> Result<SubscribeOutcome, PoolError> {
        let n = self.inner.members.len();
        let mut plan: Vec<Vec<Channel>> = vec![Vec::new(); n];
        let mut held: Vec<Channel> = Vec::new();
        let mut out = SubscribeOutcome::default();
        {
            let mut placement = lock(&self.inner.placement);
            for c in channel_list(channels) {
                let Some(owner) = placement.owner(&c) else {
                    out.confirmed.push(c);
                    continue;
                };
                placement.release(&c);
                match &self.inner.redundancy {
                    Some(r) => {
                        r.untrack(&c);
                        plan.iter_mut().for_each(|p| p.push(c.clone()));
                    }
                    None => plan[owner].push(c.clone()),
                }
                held.push(c);
            }
        }
        let results = self.on_members(plan, true).await;
        if self.inner.redundancy.is_some() {
            let (merged, _) = merge_replicated(&held, results.into_iter().map(|(m, _, r)| (m, r)).collect());
            out.confirmed.extend(merged.confirmed);
            out.refused.extend(merged.refused);
            return Ok(out);
        }
        for (member, asked, result) in results {
            match result {
                Ok(o) => {
                    out.confirmed.extend(o.confirmed);
                    out.refused.extend(o.refused);
                }
                Err(error) => {
                    for channel in asked {
                        out.refused.push(Refused { channel, reason: format!("member {member}: {error}") });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Closes every member (as [`Client::close`]); the event stream ends once each member's
    /// last event (`Closed`) was read.
    pub async fn close(&self) {
        let mut set = JoinSet::new();
        for client in &self.inner.members {
            let client = client.clone();
            set.spawn(async move { client.close().await });
        }
        while set.join_next().await.is_some() {}
    }

    /// Runs a subscribe (or unsubscribe) call on each member with channels in `plan`, side by
    /// side; returns `(member, channels, result)` by member.
    async fn on_members(
        &self,
        plan: Vec<Vec<Channel>>,
        unsubscribe: bool,
    ) -> Vec<(usize, Vec<Channel>, Result<SubscribeOutcome, ClientError>)> {
        let mut set = JoinSet::new();
        for (member, channels) in plan.into_iter().enumerate() {
            if channels.is_empty() {
                continue;
            }
            let Some(client) = self.inner.members.get(member).cloned() else { continue };
            set.spawn(async move {
                let result = {
                    let names: Vec<&str> = channels.iter().map(|c| &**c).collect();
                    if unsubscribe { client.unsubscribe(&names).await } else { client.subscribe(&names).await }
                };
                (member, channels, result)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(done) => out.push(done),
                Err(e) => tracing::warn!(error = %e, "a member's subscription call ended without an answer"),
            }
        }
        out.sort_by_key(|(member, _, _)| *member);
        out
    }
}

/// The names as shared channels, each once, in order.
fn channel_list(channels: &[&str]) -> Vec<Channel> {
    let mut list: Vec<Channel> = Vec::with_capacity(channels.len());
    for c in channels {
        if !list.iter().any(|l| &**l == *c) {
            list.push(Arc::from(*c));
        }
    }
    list
}

fn encode<P: Serialize>(method: &str, params: &P) -> Result<Box<RawValue>, PoolError> {
    serde_json::value::to_raw_value(params)
        .map_err(|e| PoolError::Encode(EncodeError { method: method.to_owned(), reason: e.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_fails_over() {
        let sent = ClientError::Disconnected { sent: true };
        let unsent = ClientError::Disconnected { sent: false };
        let timeout = ClientError::Timeout { what: "x".into(), after: Duration::from_secs(1) };
        let rpc = ClientError::Rpc {
            error: crate::jsonrpc::RpcError { code: 10028, message: "too_many_requests".into(), data: None },
            retryable: true,
        };
        for (e, unsent_policy, always) in [
            (&unsent, true, true),
            (&ClientError::Closed, true, true),
            (&sent, false, true),
            (&timeout, false, true),
            (&rpc, false, false),
        ] {
            assert_eq!(fails_over(e, Failover::Unsent), unsent_policy, "{e}");
            assert_eq!(fails_over(e, Failover::Always), always, "{e}");
        }
        assert!(!connection_error(&rpc) && connection_error(&sent));
    }
}
