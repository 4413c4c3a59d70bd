//! One connection attempt: connecting, the connection's end and the retry after it, closing,
//! and the session's own timers (pings, re-authentication, paced requests).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moorline::ws::{CloseCode, CloseFrame, Message, WsSession};
use moorline::{Connection, DownReason, Events, Protocol, StreamRef};
use moorline_proto::client::Attempt;
use moorline_proto::client::backoff::Decision;
use moorline_proto::client::liveness::{Dead, LivenessAction};
use moorline_proto::client::pending::RequestOptions;
use moorline_proto::client::ratelimit::Acquire;
use tokio::time::Instant;

use super::Task;
use crate::error::ClientError;
use crate::event::{AttemptId, ClientEvent, DisconnectReason};
use crate::record::Direction;
use crate::shared::{ClientState, Job, Link, Waiter};

/// Where the session sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The dialect's handshake requests, one at a time.
    Handshake,
    /// Authentication.
    Auth,
    /// The dialect's requests after the first authentication (Deribit:
    /// `private/enable_cancel_on_disconnect`), one at a time.
    AfterAuth,
    /// Subscriptions being restored.
    Restoring,
    /// Restored: user sends go out.
    Ready,
}

/// A request waiting for the rate limiter before it is sent.
pub(super) struct Paced {
    /// When it may go.
    pub at: Instant,
    /// Its pending id.
    pub id: u64,
    /// `Some(method)`: its credits are not spent yet (refused when it was made, or queued
    /// behind another): they are, by the method's cost, when it goes; `None`: paid (or
    /// reserved for `at`).
    pub method: Option<std::borrow::Cow<'static, str>>,
    pub text: String,
}

/// The connection of one attempt.
pub(super) struct Session {
    pub attempt: Attempt,
    pub conn: Connection,
    pub events: Events,
    pub stream: StreamRef,
    pub protocol: Protocol,
    pub phase: Phase,
    /// Handshake (or after-authentication) requests not sent yet.
    pub handshake: VecDeque<crate::dialect::OutRequest>,
    /// The handshake request sent last (for errors).
    pub step: String,
    /// The venue heartbeat interval it promised (once the handshake is answered).
    pub heartbeat: Option<Duration>,
    /// When the last frame arrived (pings go after `ping_interval` of silence).
    pub last_frame: Instant,
    /// The ping in flight: when it left and its payload.
    pub ping: Option<(Instant, u64)>,
    pub pings: u64,
    /// A WebSocket ping after this much silence.
    pub ping_interval: Option<Duration>,
    pub reauth_at: Option<Instant>,
    /// An authentication request is in flight (first or renewal).
    pub auth_in_flight: bool,
    /// Subscription requests waiting for the rate limiter, in order.
    pub paced: VecDeque<Paced>,
}

impl Session {
    pub fn next_deadline(&self) -> Option<Instant> {
        let ping = match (self.ping, self.ping_interval) {
            (None, Some(i)) => self.last_frame.checked_add(i),
            _ => None,
        };
        [ping, self.reauth_at, self.paced.front().map(|p| p.at)].into_iter().flatten().min()
    }
}

impl Task {
    /// Starts the first attempt (or one asked for by `reconnect()`).
    pub(super) fn start_attempt(&mut self) {
        self.backoff.start(Instant::now().into_std());
        self.connect_now();
    }

    /// Dials the backoff's current attempt.
    pub(super) fn connect_now(&mut self) {
        let attempt = self.backoff.attempt();
        let url = self.url.clone();
        let shared = self.shared.clone();
        tracing::debug!(%attempt, url = %url, "connecting");
        self.connecting =
            Some((attempt, Box::pin(async move { crate::connect::connect_once(&url, &shared.config).await })));
    }

    pub(super) async fn on_connect_result(&mut self, result: Result<WsSession, moorline::Error>) {
        let Some((attempt, _)) = self.connecting.take() else { return };
        let ws = match result {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(%attempt, error = %e, "connection attempt failed");
                self.retry_after(e).await;
                return;
            }
        };
        let now = Instant::now();
        self.backoff.on_up(now.into_std());
        self.live.on_open(attempt, now.into_std());
        tracing::debug!(%attempt, protocol = ?ws.protocol, "connected; restoring the session");
        self.shared.record_connected(attempt.to_string());
        self.session = Some(Session {
            attempt,
            conn: ws.conn,
            events: ws.events,
            stream: ws.stream,
            protocol: ws.protocol,
            phase: Phase::Handshake,
            handshake: VecDeque::new(),
            step: String::new(),
            heartbeat: None,
            last_frame: now,
            ping: None,
            pings: 0,
            ping_interval: self.shared.config.liveness.ping_interval,
            reauth_at: None,
            auth_in_flight: false,
            paced: VecDeque::new(),
        });
        self.begin_session().await;
    }

    /// The current attempt failed (a failed dial or a lost connection): retry per the policy,
    /// or stop.
    pub(super) async fn retry_after(&mut self, error: moorline::Error) {
        let random = self.random();
        match self.backoff.on_failure(Instant::now().into_std(), &error, random) {
            Decision::Retry { retry, delay, .. } => {
                self.set_status(if self.ever_connected { ClientState::Reconnecting } else { ClientState::Connecting });
                self.deliver(ClientEvent::Reconnecting { attempt: retry, delay });
            }
            Decision::GiveUp { failures, fatal } => {
                let error = if fatal {
                    ClientError::FatalConnect { source: error }
                } else {
                    ClientError::RetriesExhausted { attempts: failures, last: error }
                };
                tracing::warn!(%error, "the client stops");
                self.deliver(ClientEvent::Error(error.clone()));
                self.finish(Some(error)).await;
            }
        }
    }

    /// The current connection is over: everything that belonged to it fails or waits for the
    /// next one, the user hears why, and (unless `closing`) the next attempt is scheduled.
    ///
    /// Boxed: it runs once per connection, and inline its state (2.3 KB) would size every
    /// future that may call it, the task's own among them (a tokio task is allocated at its
    /// future's largest state, for the client's whole life).
    pub(super) fn drop_session(
        &mut self,
        reason: DisconnectReason,
        closing: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.drop_session_now(reason, closing))
    }

    async fn drop_session_now(&mut self, reason: DisconnectReason, closing: bool) {
        self.gate.set_open(false);
        let Some(s) = self.session.take() else { return };
        s.conn.close();
        self.live.on_close();
        self.subs.on_disconnect();
        self.batches.clear();
        let failed = {
            let mut st = self.shared.lock();
            st.link = None;
            if s.phase == Phase::Ready {
                st.reconnects += 1;
            }
            st.pending.on_disconnect()
        };
        for (_, waiter) in failed.failed {
            if let Waiter::User { tx, .. } = waiter {
                let _ = tx.send(Err(ClientError::Disconnected { sent: true }));
            }
        }
        self.pump_sub_events().await;
        tracing::info!(attempt = %s.attempt, %reason, "disconnected");
        let error = match &reason {
            DisconnectReason::Down(r) => moorline::Error::Down(r.clone()),
            DisconnectReason::Exited(r) => moorline::Error::Exited(Some(r.clone())),
            DisconnectReason::DeadPeer(d) | DisconnectReason::HeartbeatMissed(d) | DisconnectReason::Idle(d) => {
                moorline::Error::Timeout(*d)
            }
            _ => moorline::Error::Down(DownReason::Closed),
        };
        if !closing {
            self.set_status(ClientState::Reconnecting);
        }
        self.deliver(ClientEvent::Disconnected { reason });
        if !closing {
            if matches!(self.backoff.phase(), moorline_proto::client::backoff::Phase::Stopped) {
                return;
            }
            self.retry_after(error).await;
        }
    }

    /// The user closed the client (or dropped every handle): the closing handshake (it
    /// follows the messages already sent), then the end.
    pub(super) async fn close(&mut self, error: Option<ClientError>) {
        if self.finished {
            return;
        }
        self.connecting = None;
        // Whatever comes now reaches the task (which delivers or drops it as it closes).
        self.gate.set_open(false);
        if let Some(mut s) = self.session.take() {
            {
                let mut st = self.shared.lock();
                st.link = None;
            }
            self.shared.record(Direction::Out, &Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))));
            if s.conn.ws_close(&s.stream, CloseCode::NORMAL, "").await.is_ok() {
                // Wait for the end of the closing handshake (moorline bounds it by its
                // close timeout; this bound is a second guard).
                let _ = tokio::time::timeout(Duration::from_secs(6), async {
                    while let Some(ev) = s.events.next().await {
                        if matches!(ev, moorline::Event::Exit { .. } | moorline::Event::Down { .. }) {
                            break;
                        }
                    }
                })
                .await;
            }
            s.conn.close();
            self.session = Some(s);
            self.drop_session(DisconnectReason::Closed, true).await;
        }
        self.finish(error).await;
    }

    /// The end: nothing waits any more, the stream ends with [`ClientEvent::Closed`].
    pub(super) async fn finish(&mut self, error: Option<ClientError>) {
        if self.finished {
            return;
        }
        self.backoff.stop();
        self.connecting = None;
        if let Some(s) = self.session.take() {
            s.conn.close();
        }
        self.subs.close();
        self.pump_sub_events().await;
        let why = error.clone().unwrap_or(ClientError::Closed);
        for tx in self.auth_waiters.drain(..) {
            let _ = tx.send(Err(why.clone()));
        }
        for (_, group) in self.groups.drain() {
            if let Some(tx) = group.tx {
                let _ = tx.send(group.outcome);
            }
        }
        let failed = {
            let mut st = self.shared.lock();
            st.closed = Some(error.clone());
            st.link = None;
            st.pending.fail_all()
        };
        let why = error.clone().unwrap_or(ClientError::Closed);
        for (_, waiter) in failed {
            if let Waiter::User { tx, .. } = waiter {
                let _ = tx.send(Err(why.clone()));
            }
        }
        self.set_status(ClientState::Closed);
        self.deliver(ClientEvent::Closed { error });
        self.flush_side(true);
        if let crate::shared::Sink::Queue(q) = &self.sink {
            // What still does not fit is lost with the client: counted.
            if !self.side.is_empty() {
                let n = self.side.iter().filter(|e| e.is_message()).count() as u64;
                self.shared.lock().drops += n;
                tracing::warn!(messages = n, "client closed with messages the reader had no room for");
            }
            q.close();
        }
        self.finished = true;
    }

    /// The liveness machine's verdicts.
    pub(super) async fn on_liveness(&mut self, now: std::time::Instant) {
        while let Some(action) = self.live.on_timeout(now) {
            let Some(s) = &self.session else { return };
            match action {
                LivenessAction::Reconnect { attempt, reason } if attempt == s.attempt => {
                    let l = &self.shared.config.liveness;
                    let reason = match reason {
                        Dead::NoFrame { .. } => DisconnectReason::DeadPeer(l.dead_after),
                        Dead::IdleFeed { .. } => DisconnectReason::Idle(l.idle_after.unwrap_or_default()),
                        Dead::HeartbeatMissed { interval, .. } => {
                            DisconnectReason::HeartbeatMissed(interval.saturating_add(l.heartbeat_grace))
                        }
                    };
                    tracing::warn!(%attempt, %reason, "connection declared dead");
                    self.drop_session(reason, false).await;
                    return;
                }
                LivenessAction::Idle { attempt, last } if attempt == s.attempt => {
                    self.deliver(ClientEvent::Idle { silent_for: now.saturating_duration_since(last) });
                }
                _ => {}
            }
        }
    }

    /// Requests past their deadline: a user's fails with a timeout (its caller normally saw
    /// it first); one of the session sequence means the session cannot be restored.
    pub(super) async fn expire_requests(&mut self, now: std::time::Instant) {
        let expired = self.shared.lock().pending.expire(now);
        let mut restore_failed = None;
        for (_, waiter) in expired {
            match waiter {
                Waiter::User { tx, sent, .. } => {
                    let after = Instant::now().saturating_duration_since(sent);
                    let _ = tx.send(Err(ClientError::Timeout { what: "request".into(), after }));
                }
                Waiter::Task { attempt, job, .. } => {
                    let current = self.session.as_ref().is_some_and(|s| s.attempt.get() == attempt);
                    match job {
                        Job::HeartbeatAnswer => {}
                        other if current => {
                            restore_failed = Some(format!(
                                "{} unanswered within {:?}",
                                job_name(&other),
                                self.shared.config.request_timeout
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(why) = restore_failed {
            self.drop_session(DisconnectReason::RestoreFailed(why), false).await;
        }
    }

    /// Pings, re-authentication and paced requests due now.
    pub(super) async fn session_timers(&mut self, now: Instant) {
        let Some(s) = &mut self.session else { return };
        if let (None, Some(interval)) = (s.ping, s.ping_interval)
            && s.last_frame + interval <= now
        {
            s.pings += 1;
            let n = s.pings;
            s.ping = Some((now, n));
            let (conn, stream) = (s.conn.clone(), s.stream);
            let ping = Message::Ping(Bytes::copy_from_slice(&n.to_be_bytes()));
            self.shared.record(Direction::Out, &ping);
            if conn.ws_send(&stream, ping).await.is_ok() {
                self.shared.count_out(8);
            }
        }
        let Some(s) = &mut self.session else { return };
        if s.reauth_at.is_some_and(|at| at <= now) {
            s.reauth_at = None;
            if !s.auth_in_flight {
                self.send_auth(true).await;
            }
        }
        loop {
            let Some(s) = &mut self.session else { return };
            if s.paced.front().is_none_or(|p| p.at > now) {
                break;
            }
            let Some(mut p) = s.paced.pop_front() else { break };
            if let Some(method) = &p.method {
                // Its credits are spent now, as it leaves (or it waits again).
                let acquired = self.shared.lock().limiter.as_mut().map(|l| l.acquire(now.into_std(), method));
                let again = match acquired {
                    None | Some(Acquire::Ready) => None,
                    Some(Acquire::Wait(at)) => {
                        p.method = None;
                        Some(Instant::from_std(at))
                    }
                    Some(Acquire::Refused(r)) => match r.retry_at() {
                        Some(at) => Some(Instant::from_std(at).max(now + Duration::from_millis(1))),
                        None => {
                            self.fail_part(p.id, crate::limiter::rate_limit_refusal(&r)).await;
                            continue;
                        }
                    },
                };
                if let Some(at) = again {
                    p.at = at;
                    if let Some(s) = &mut self.session {
                        s.paced.push_front(p);
                    }
                    break;
                }
            }
            let Some(s) = &self.session else { return };
            let (conn, stream) = (s.conn.clone(), s.stream);
            self.send_now(&conn, &stream, p.text).await;
        }
    }

    /// Sends a frame of the task's own on the current connection (a failure shows up as the
    /// connection's end, which the loop reads next).
    pub(super) async fn send_now(&mut self, conn: &Connection, stream: &StreamRef, text: String) {
        let len = text.len();
        let message = Message::text(text);
        self.shared.record(Direction::Out, &message);
        match conn.ws_send(stream, message).await {
            Ok(()) => self.shared.count_out(len),
            Err(e) => tracing::debug!(error = %e, "send on a closing connection"),
        }
    }

    /// Registers a request of the task's own; its id.
    pub(super) fn register(&self, job: Job, bytes: usize) -> Option<u64> {
        let attempt = self.session.as_ref()?.attempt.get();
        let options = RequestOptions::new(self.shared.config.request_timeout, bytes);
        let now = Instant::now();
        self.shared.lock().pending.insert(now.into_std(), options, Waiter::Task { attempt, job, sent: now }).ok()
    }

    /// The session is restored: user sends go out, the user hears of it.
    pub(super) fn on_ready(&mut self, confirmed: Vec<crate::event::Channel>, refused: Vec<crate::event::Refused>) {
        let Some(s) = &mut self.session else { return };
        s.phase = Phase::Ready;
        let attempt = AttemptId(s.attempt.get());
        let protocol = s.protocol;
        let link = Arc::new(Link { conn: s.conn.clone(), stream: s.stream });
        self.shared.lock().link = Some(link);
        self.set_status(ClientState::Connected);
        let event = if self.ever_connected {
            ClientEvent::Reconnected { attempt, protocol }
        } else {
            ClientEvent::Connected { attempt, protocol }
        };
        self.ever_connected = true;
        tracing::info!(%attempt, "session restored");
        self.deliver(event);
        self.deliver(ClientEvent::Restored { confirmed, refused });
        self.install_tap();
    }

    /// Requests kept over the disconnect (`request_idempotent`), sent again under new ids.
    pub(super) async fn resend_kept(&mut self) {
        let frames: Vec<String> = {
            let mut st = self.shared.lock();
            let resends = st.pending.take_resends();
            resends
                .into_iter()
                .filter_map(|r| match st.pending.get(r.new) {
                    Some(Waiter::User { resend: Some((method, params)), .. }) => {
                        self.dialect.request(r.new, method, params.as_deref()).ok().map(|req| req.text)
                    }
                    _ => None,
                })
                .collect()
        };
        let Some(s) = &self.session else { return };
        let (conn, stream) = (s.conn.clone(), s.stream);
        for text in frames {
            self.send_now(&conn, &stream, text).await;
        }
    }
}

pub(super) fn job_name(job: &Job) -> String {
    match job {
        Job::Handshake { method } => format!("handshake request {method}"),
        Job::Auth { renew: false } => "authentication".into(),
        Job::Auth { renew: true } => "authentication renewal".into(),
        Job::Batch { op, .. } => format!("{op:?} request"),
        Job::HeartbeatAnswer => "heartbeat answer".into(),
    }
}
