//! [`Client`]: the trading client's handle. One task per client owns the connection (see
//! DESIGN.md, "Trading client"); the handle talks to it through a short lock on the state they share
//! (sends and requests go from the caller straight to the socket: no task hop on the data
//! path) and a small command channel (subscribe, unsubscribe, reconnect, close).
//!
//! ```no_run
//! # async fn demo() -> Result<(), moorline_client::ClientError> {
//! use moorline_client::{Client, ClientConfig, ClientEvent};
//! use moorline_client::dialect::Deribit;
//!
//! let (client, mut events) = Client::connect("wss://test.deribit.com/ws/api/v2", ClientConfig::default(), Deribit::new())?;
//! let subscribed = client.subscribe(&["trades.BTC-PERPETUAL.raw"]).await?;
//! assert_eq!(subscribed.confirmed.len(), 1);
//! let time = client.request("public/get_time", serde_json::json!({})).await?;
//! println!("venue time {}", time.get());
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::Message { data, channel } = event {
//!         println!("{channel:?}: {:?}", data.as_text());
//!     }
//! }
//! client.close().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use moorline::ws::{Message, Utf8Bytes};
use moorline_proto::client::pending::RequestOptions;
use moorline_proto::client::ratelimit::{Acquire, RateStats};
use moorline_proto::client::stats::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{ClientConfig, OfflineSends};
use crate::dialect::Dialect;
use crate::error::ClientError;
use crate::event::{Channel, ClientEvent};
use crate::jsonrpc::RawValue;
use crate::limiter::rate_limited;
use crate::queue::{self, EventStream};
use crate::record::Direction;
pub use crate::shared::{ClientState, SubscribeOutcome};
use crate::shared::{Command, Link, RUNNING_TASKS, Shared, Sink, Waiter};

/// Round-trip statistics of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrips {
    /// How many were measured.
    pub count: u64,
    /// The latest.
    pub last: Option<Duration>,
    /// Median.
    pub p50: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
    /// 99.9th percentile.
    pub p999: Option<Duration>,
}

impl RoundTrips {
    fn of(h: &Histogram) -> Self {
        let s = h.summary();
        Self { count: s.count, last: s.last, p50: h.quantile(0.5), p99: h.quantile(0.99), p999: h.quantile(0.999) }
    }
}

/// The client's health and statistics ([`Client::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Request round trips (sent to answered).
    pub requests: RoundTrips,
    /// Heartbeat round trips: WebSocket ping to pong, and the venue's heartbeat answer
    /// (Deribit's `public/test`) to its response.
    pub heartbeats: RoundTrips,
    /// Connections lost and made again.
    pub reconnects: u64,
    /// Data messages received (delivered or dropped).
    pub messages_in: u64,
    /// Of `messages_in`, those the connection's worker handed straight to the event queue
    /// (no hop through the client's task: the session restored, nothing parked; HTTP/1.1).
    pub messages_direct: u64,
    /// Messages sent (user sends, requests, and the client's own protocol traffic).
    pub messages_out: u64,
    /// Bytes of data messages received.
    pub bytes_in: u64,
    /// Bytes of messages sent.
    pub bytes_out: u64,
    /// Data messages dropped because the user read too slowly (`Overflow::DropOldest`).
    pub drops: u64,
    /// Requests waiting for their answer now.
    pub pending: usize,
    /// Sends and requests waiting in the queue of sends made while disconnected
    /// ([`OfflineSends::Queue`]) now.
    pub offline_waiting: usize,
    /// Rate limiter pressure (granted, waits, refusals), when a rate limit is configured.
    pub rate_limit: Option<RateStats>,
}

/// How many client tasks run in this process (each client has exactly one while it is open):
/// for leak checks.
pub fn running_tasks() -> usize {
    RUNNING_TASKS.load(Ordering::SeqCst)
}

/// The trading client. Cheap to clone (every clone is the same client); the client closes
/// when [`close`](Self::close) is called or the last clone is dropped.
///
/// See the [module documentation](self) and the README's "Trading client" section.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    cmds: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("dialect", &self.shared.dialect.name()).field("state", &self.state()).finish()
    }
}

impl Client {
    /// Starts a client for `url` speaking `dialect`: checks the URL and the configuration
    /// (also against the dialect), spawns the client's task and returns at once with the
    /// event stream. The task connects in the background (a failed first connect is retried
    /// per the policy too) and reports [`ClientEvent::Connected`] once the session is
    /// restored. Must be called within a tokio runtime.
    pub fn connect(
        url: &str,
        config: ClientConfig,
        dialect: impl Dialect,
    ) -> Result<(Client, EventStream), ClientError> {
        let (tx, rx) = queue::channel(config.incoming_buffer_bytes, config.overflow);
        let client = Self::start(url, config, Arc::new(dialect), Sink::Queue(tx))?;
        Ok((client, rx))
    }

    /// As [`connect`](Self::connect), with an `Arc<dyn Dialect>` chosen at run time.
    pub fn connect_dyn(
        url: &str,
        config: ClientConfig,
        dialect: Arc<dyn Dialect>,
    ) -> Result<(Client, EventStream), ClientError> {
        let (tx, rx) = queue::channel(config.incoming_buffer_bytes, config.overflow);
        let client = Self::start(url, config, dialect, Sink::Queue(tx))?;
        Ok((client, rx))
    }

    /// As [`connect`](Self::connect), with every event handed to `handler`, called from the
    /// client's task in order. The handler must return quickly (it runs where heartbeats are
    /// answered); the incoming buffer and its overflow policy do not apply.
    pub fn connect_with_handler(
        url: &str,
        config: ClientConfig,
        dialect: Arc<dyn Dialect>,
        handler: impl FnMut(ClientEvent) + Send + 'static,
    ) -> Result<Client, ClientError> {
        Self::start(url, config, dialect, Sink::Handler(Box::new(handler)))
    }

    fn start(url: &str, config: ClientConfig, dialect: Arc<dyn Dialect>, sink: Sink) -> Result<Client, ClientError> {
        config.validate()?;
        dialect.check(&config)?;
        crate::connect::check_url(url)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ClientError::Send(moorline::Error::NoRuntime))?;
        let shared = Arc::new(Shared::new(dialect, config));
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let task = crate::task::Task::new(url.to_owned(), shared.clone(), cmd_rx, sink);
        RUNNING_TASKS.fetch_add(1, Ordering::SeqCst);
        // On the heap: the task's future holds a pointer, not two copies of it.
        runtime.spawn(Box::new(task).run());
        Ok(Client { shared, cmds: cmd_tx })
    }

    /// Where the client stands.
    pub fn state(&self) -> ClientState {
        *self.shared.status.borrow()
    }

    /// Health and statistics.
    pub fn stats(&self) -> Stats {
        let s = self.shared.lock();
        Stats {
            requests: RoundTrips::of(&s.request_rtt),
            heartbeats: RoundTrips::of(&s.heartbeat_rtt),
            reconnects: s.reconnects,
            messages_in: self.shared.messages_in.load(Ordering::Relaxed),
            messages_direct: self.shared.messages_direct.load(Ordering::Relaxed),
            messages_out: self.shared.messages_out.load(Ordering::Relaxed),
            bytes_in: self.shared.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.shared.bytes_out.load(Ordering::Relaxed),
            drops: s.drops,
            pending: s.pending.len(),
            offline_waiting: s.offline_waiting,
            rate_limit: s.limiter.as_ref().map(|l| *l.rl.stats()),
        }
    }

    /// The connection to send on, waiting for it per [`OfflineSends`] when there is none.
    ///
    /// With `OfflineSends::Queue`, a send made while disconnected takes a [`Turn`] in a FIFO
    /// queue (tokio's fair mutex): the one at the head waits for the session, sends, and only
    /// then lets the next one go, so queued messages reach the wire in the order they were
    /// sent. A send made while the session is up but sends are still queued joins the queue
    /// too (it must not overtake them).
    async fn link(&self, bytes: usize) -> Result<(Arc<Link>, Option<Turn<'_>>), ClientError> {
        let OfflineSends::Queue { deadline, max_bytes } = self.shared.config.offline_sends else {
            let s = self.shared.lock();
            return match (&s.closed, &s.link) {
                (Some(_), _) => Err(ClientError::Closed),
                (None, Some(link)) => Ok((link.clone(), None)),
                (None, None) => Err(ClientError::Disconnected { sent: false }),
            };
        };
        let mut turn = {
            let mut s = self.shared.lock();
            if s.closed.is_some() {
                return Err(ClientError::Closed);
            }
            if let Some(link) = &s.link
                && s.offline_waiting == 0
            {
                return Ok((link.clone(), None));
            }
            if s.offline_bytes.saturating_add(bytes) > max_bytes {
                return Err(ClientError::QueueFull {
                    what: "the queue of sends made while disconnected",
                    bytes: s.offline_bytes,
                    limit: max_bytes,
                });
            }
            s.offline_bytes += bytes;
            s.offline_waiting += 1;
            Turn { shared: &self.shared, bytes, gate: None }
        };
        let waited = tokio::time::timeout(deadline, async {
            turn.gate = Some(self.shared.offline_gate.lock().await);
            // Subscribed before looking, so a session published after the look wakes us.
            let mut status = self.shared.status.subscribe();
            loop {
                {
                    let s = self.shared.lock();
                    if s.closed.is_some() {
                        return Err(ClientError::Closed);
                    }
                    if let Some(link) = &s.link {
                        return Ok(link.clone());
                    }
                }
                if status.changed().await.is_err() {
                    return Err(ClientError::Closed);
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(link)) => Ok((link, Some(turn))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout { what: "queued send".into(), after: deadline }),
        }
    }

    async fn send(&self, message: Message) -> Result<(), ClientError> {
        self.send_or_feed(message, true).await
    }

    async fn send_or_feed(&self, message: Message, now: bool) -> Result<(), ClientError> {
        let bytes = match &message {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        let (link, turn) = self.link(bytes).await?;
        self.shared.record(Direction::Out, &message);
        if now {
            link.conn.ws_send(&link.stream, message).await.map_err(send_error)?;
        } else {
            link.conn.ws_feed(&link.stream, message).await.map_err(send_error)?;
        }
        drop(turn);
        self.shared.count_out(bytes);
        Ok(())
    }

    /// Sends a text message, from the caller's task straight to the connection.
    ///
    /// Fails with [`ClientError::Disconnected`] when the session is not up (or waits for it,
    /// per [`OfflineSends`]), [`ClientError::Closed`] once closed.
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), ClientError> {
        self.send(Message::Text(text.into())).await
    }

    /// Queues a text message without writing it yet: it leaves with the next
    /// [`send_text`](Self::send_text) / [`send_binary`](Self::send_binary) /
    /// [`flush`](Self::flush), or when the connection's worker next runs (at the latest once
    /// the calling task waits). A burst of messages fed one by one thus leaves in a few
    /// writes, as with `SinkExt::feed` and `flush`. Errors and offline behaviour as for
    /// `send_text`; the queue is bounded as sends are (a full one waits).
    ///
    /// ```no_run
    /// # async fn demo(client: moorline_client::Client) -> Result<(), moorline_client::ClientError> {
    /// for i in 0..10 {
    ///     client.feed_text(format!("{{\"quote\":{i}}}")).await?;
    /// }
    /// client.flush();
    /// # Ok(()) }
    /// ```
    pub async fn feed_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), ClientError> {
        self.send_or_feed(Message::Text(text.into()), false).await
    }

    /// Queues a binary message (as [`feed_text`](Self::feed_text)).
    pub async fn feed_binary(&self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        self.send_or_feed(Message::Binary(data.into()), false).await
    }

    /// Writes what [`feed_text`](Self::feed_text) / [`feed_binary`](Self::feed_binary) queued,
    /// now (a no-op while disconnected: what was fed before the drop went with the connection,
    /// as unsent sends do).
    pub fn flush(&self) {
        if let Some(link) = self.shared.lock().link.clone() {
            link.conn.ws_flush(&link.stream);
        }
    }

    /// Sends a binary message (as [`send_text`](Self::send_text)).
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        self.send(Message::Binary(data.into())).await
    }

    /// Sends `value` encoded as JSON, as a text message.
    pub async fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), ClientError> {
        let text = serde_json::to_string(value).map_err(|e| {
            ClientError::Encode(crate::jsonrpc::EncodeError { method: "send_json".into(), reason: e.to_string() })
        })?;
        self.send_text(text).await
    }

    /// A JSON-RPC request: `method` with `params`, answered with the venue's `result` (or its
    /// error as [`ClientError::Rpc`]) within the configured request timeout.
    pub async fn request<P: Serialize>(&self, method: &str, params: P) -> Result<Box<RawValue>, ClientError> {
        let params = serde_json::value::to_raw_value(&params).map_err(|e| {
            ClientError::Encode(crate::jsonrpc::EncodeError { method: method.to_owned(), reason: e.to_string() })
        })?;
        self.request_raw(method, Some(&params), self.shared.config.request_timeout).await
    }

    /// A request with params already encoded and a deadline of its own.
    pub async fn request_raw(
        &self,
        method: &str,
        params: Option<&RawValue>,
        timeout: Duration,
    ) -> Result<Box<RawValue>, ClientError> {
        self.request_inner(method, params, timeout, false).await
    }

    /// A request that is safe to repeat (a read, or one the venue deduplicates): if the
    /// connection drops before the answer, it does not fail but is sent again, under a new id,
    /// once the session is restored, all within its deadline (the configured request timeout).
    /// Only for idempotent requests: the venue may have processed the first one.
    pub async fn request_idempotent<P: Serialize>(
        &self,
        method: &str,
        params: P,
    ) -> Result<Box<RawValue>, ClientError> {
        let params = serde_json::value::to_raw_value(&params).map_err(|e| {
            ClientError::Encode(crate::jsonrpc::EncodeError { method: method.to_owned(), reason: e.to_string() })
        })?;
        self.request_inner(method, Some(&params), self.shared.config.request_timeout, true).await
    }

    async fn request_inner(
        &self,
        method: &str,
        params: Option<&RawValue>,
        timeout: Duration,
        resend: bool,
    ) -> Result<Box<RawValue>, ClientError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let estimate = method.len() + params.map_or(0, |p| p.get().len()) + 64;
        // A queued request keeps its turn until it is written (see `link`).
        let (link, turn) = tokio::time::timeout_at(deadline, self.link(estimate))
            .await
            .map_err(|_| ClientError::Timeout { what: format!("request {method}"), after: timeout })??;
        // The rate limiter: spend now, or wait for the reserved credits.
        let acquired = {
            let mut s = self.shared.lock();
            let now = Instant::now().into_std();
            s.limiter.as_mut().map(|l| (l.acquire(now, method), now))
        };
        match acquired {
            Some((Acquire::Refused(r), now)) => return Err(rate_limited(&r, now)),
            Some((Acquire::Wait(at), _)) => {
                let at = Instant::from_std(at);
                if at > deadline {
                    return Err(ClientError::Timeout {
                        what: format!("request {method} (rate limited)"),
                        after: timeout,
                    });
                }
                tokio::time::sleep_until(at).await;
            }
            _ => {}
        }
        let (tx, rx) = oneshot::channel();
        let (id, text) = {
            let mut s = self.shared.lock();
            if s.closed.is_some() {
                return Err(ClientError::Closed);
            }
            // The session may have gone while we waited: a request is sent on the link its
            // pending entry belongs to, or not at all.
            let Some(current) = s.link.clone() else { return Err(ClientError::Disconnected { sent: false }) };
            if !Arc::ptr_eq(&current, &link) {
                return Err(ClientError::Disconnected { sent: false });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let options = RequestOptions::new(remaining, estimate).resend(resend);
            let again = resend.then(|| (method.to_owned(), params.map(|p| p.to_owned())));
            let id = s
                .pending
                .insert(Instant::now().into_std(), options, Waiter::User { tx, sent: Instant::now(), resend: again })
                .map_err(|e| ClientError::QueueFull {
                    what: "pending requests",
                    bytes: s.pending.bytes(),
                    limit: match e {
                        moorline_proto::client::pending::PendingError::TooManyBytes { limit, .. } => limit,
                        _ => s.pending.len(),
                    },
                })?;
            match self.shared.dialect.request(id, method, params) {
                Ok(req) => (id, req.text),
                Err(e) => {
                    s.pending.complete(id);
                    return Err(match e {
                        crate::dialect::DialectError::Encode(e) => ClientError::Encode(e),
                        other => ClientError::BadReply(other.to_string()),
                    });
                }
            }
        };
        // If this future is dropped from here on, the entry goes with it.
        let guard = PendingGuard { shared: &self.shared, id };
        let len = text.len();
        let message = Message::text(text);
        self.shared.record(Direction::Out, &message);
        if let Err(e) = link.conn.ws_send(&link.stream, message).await {
            drop(guard);
            return Err(send_error(e));
        }
        drop(turn);
        self.shared.count_out(len);
        let answer = tokio::time::timeout_at(deadline, rx).await;
        match answer {
            Ok(Ok(result)) => {
                std::mem::forget(guard);
                result
            }
            // The task dropped the waiter without an answer: only when it ended.
            Ok(Err(_)) => {
                drop(guard);
                Err(ClientError::Closed)
            }
            Err(_) => {
                drop(guard);
                Err(ClientError::Timeout { what: format!("request {method}"), after: timeout })
            }
        }
    }

    /// Subscribes to `channels`; resolves once the venue has answered for each, with what it
    /// confirmed and refused. While disconnected the channels join the next restore. Waits at
    /// most the request timeout (the channels stay wanted after a timeout).
    pub async fn subscribe(&self, channels: &[&str]) -> Result<SubscribeOutcome, ClientError> {
        self.subscription(channels, false).await
    }

    /// Unsubscribes from `channels`; resolves once the venue confirmed (at once for channels
    /// not on the venue).
    pub async fn unsubscribe(&self, channels: &[&str]) -> Result<SubscribeOutcome, ClientError> {
        self.subscription(channels, true).await
    }

    async fn subscription(&self, channels: &[&str], unsubscribe: bool) -> Result<SubscribeOutcome, ClientError> {
        let mut list: Vec<Channel> = Vec::with_capacity(channels.len());
        for c in channels {
            if !list.iter().any(|l| &**l == *c) {
                list.push(Arc::from(*c));
            }
        }
        let (tx, rx) = oneshot::channel();
        let timeout = self.shared.config.request_timeout;
        let what = if unsubscribe { "unsubscribe" } else { "subscribe" };
        let cmd = Command::Subscribe { channels: list, unsubscribe, tx };
        tokio::time::timeout(timeout, async {
            self.cmds.send(cmd).await.map_err(|_| ClientError::Closed)?;
            rx.await.map_err(|_| ClientError::Closed)
        })
        .await
        .map_err(|_| ClientError::Timeout { what: what.into(), after: timeout })?
    }

    /// Authenticates again now on the live session (Deribit: with the refresh token, falling
    /// back to the credentials) and resolves once the venue has answered. While disconnected
    /// it resolves with the next session's authentication. At once `Ok` for a dialect without
    /// credentials. Waits at most the request timeout.
    ///
    /// The client does this by itself when a request's error says the token is gone
    /// ([`Dialect::needs_reauthentication`]); call it to wait for that before retrying.
    pub async fn reauthenticate(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        let timeout = self.shared.config.request_timeout;
        tokio::time::timeout(timeout, async {
            self.cmds.send(Command::Reauthenticate { tx }).await.map_err(|_| ClientError::Closed)?;
            rx.await.map_err(|_| ClientError::Closed)?
        })
        .await
        .map_err(|_| ClientError::Timeout { what: "reauthentication".into(), after: timeout })?
    }

    /// Drops the current connection and connects again at once (the failure count is kept).
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        self.cmds.send(Command::Reconnect).await.map_err(|_| ClientError::Closed)
    }

    /// Closes the client: the WebSocket closing handshake (messages sent before it are
    /// flushed first), pending requests fail with [`ClientError::Closed`], the event stream
    /// ends with [`ClientEvent::Closed`]. Returns once the task has ended (at most the
    /// closing handshake's timeout). Closing a closed client is `Ok`.
    pub async fn close(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Command::Close { tx }).await.is_err() {
            return Ok(());
        }
        let _ = rx.await;
        Ok(())
    }
}

/// A send's place in the queue of sends made while disconnected (`OfflineSends::Queue`):
/// counted (and its bytes reserved) from the moment it queues, at the head once it holds
/// `gate`, and held until its message is written; leaving (sent, failed or given up) frees
/// its place and its bytes.
struct Turn<'a> {
    shared: &'a Shared,
    bytes: usize,
    gate: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.offline_bytes = s.offline_bytes.saturating_sub(self.bytes);
        s.offline_waiting = s.offline_waiting.saturating_sub(1);
        drop(s);
        // Released after the counts: the next one in the queue sees them up to date.
        self.gate.take();
    }
}

/// Removes a request's pending entry when its caller gives up (timeout, or the future dropped).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.complete(self.id);
    }
}

/// moorline's send error as the user's.
pub(crate) fn send_error(e: moorline::Error) -> ClientError {
    match e {
        moorline::Error::Down(_) | moorline::Error::Exited(_) | moorline::Error::Stream(_) => {
            ClientError::Disconnected { sent: false }
        }
        other => ClientError::Send(other),
    }
}
