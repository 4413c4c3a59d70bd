//! The session sequence on every connect and reconnect, in order: the dialect's handshake
//! (Deribit: `public/set_heartbeat`, every time), authentication (if the dialect has
//! credentials), the dialect's requests after it (Deribit: `private/enable_cancel_on_disconnect`
//! when it was asked for), then every wanted subscription, batched under the venue's frame limit, paced
//! by the rate limiter, confirmed from the venue's reply; only then `Connected` /
//! `Reconnected` and `Restored`. Also the user's subscribe and unsubscribe calls.

use moorline_proto::client::ratelimit::Acquire;
use moorline_proto::client::subscriptions::{Kind, Outcome, Refusal, Reply, SubEvent};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::session::{Paced, Phase};
use super::{BatchInFlight, Group, Task};
use crate::dialect::{SessionContext, SubOp};
use crate::error::ClientError;
use crate::event::{Channel, ClientEvent, DisconnectReason, Refused};
use crate::jsonrpc::{RawValue, RpcError};
use crate::shared::Job;
use crate::shared::SubscribeOutcome;

impl Task {
    /// A connection is up: its session sequence starts with the handshake.
    pub(super) async fn begin_session(&mut self) {
        let ctx = SessionContext { heartbeat: self.shared.config.liveness.venue_heartbeat };
        if self.begin_steps(Phase::Handshake, |dialect, next_id| dialect.handshake(&ctx, next_id)).await {
            self.next_handshake_step().await;
        }
    }

    /// Authentication done (or none): the dialect's requests after it, then the restore.
    async fn begin_after_auth(&mut self) {
        if self.begin_steps(Phase::AfterAuth, |dialect, next_id| dialect.after_authentication(next_id)).await
            && !self.send_next_step().await
        {
            self.begin_restore().await;
        }
    }

    /// Starts a sequence of the dialect's requests (`Phase::Handshake` or
    /// `Phase::AfterAuth`), sent one at a time, each awaited; `false` if the session was
    /// dropped.
    async fn begin_steps(
        &mut self,
        phase: Phase,
        build: impl FnOnce(
            &dyn crate::dialect::Dialect,
            &mut dyn FnMut() -> u64,
        ) -> Result<Vec<crate::dialect::OutRequest>, crate::dialect::DialectError>,
    ) -> bool {
        // Ids come from the pending table (one id space for every request): each step is
        // registered when the dialect asks for its id.
        let mut ids = Vec::new();
        let dialect = self.dialect.clone();
        let steps = {
            let mut next_id = || {
                let id = self.register(Job::Handshake { method: String::new() }, 256).unwrap_or(0);
                ids.push(id);
                id
            };
            build(&*dialect, &mut next_id)
        };
        let steps = match steps {
            Ok(steps) => steps,
            Err(e) => {
                let what = if phase == Phase::Handshake { "handshake" } else { "after authentication" };
                self.drop_session(DisconnectReason::RestoreFailed(format!("{what}: {e}")), false).await;
                return false;
            }
        };
        // Drop ids the dialect asked for but did not use.
        {
            let mut st = self.shared.lock();
            for id in ids {
                if !steps.iter().any(|r| r.id == id) {
                    st.pending.complete(id);
                }
            }
        }
        let Some(s) = &mut self.session else { return false };
        s.phase = phase;
        s.handshake = steps.into();
        true
    }

    /// Sends the next queued handshake (or after-authentication) request; `false` if none.
    async fn send_next_step(&mut self) -> bool {
        let Some(s) = &mut self.session else { return false };
        let Some(req) = s.handshake.pop_front() else { return false };
        s.step = req.method.to_string();
        let (conn, stream) = (s.conn.clone(), s.stream);
        self.charge(&req.method);
        self.send_now(&conn, &stream, req.text).await;
        true
    }

    /// Sends the next handshake (or after-authentication) request, or moves on to
    /// authentication (or to the restore).
    async fn next_handshake_step(&mut self) {
        if self.send_next_step().await {
            return;
        }
        let Some(s) = &mut self.session else { return };
        match s.phase {
            Phase::AfterAuth => self.begin_restore().await,
            _ => {
                // The handshake is done (Deribit: the venue agreed to beat): from now on its
                // heartbeat is expected every interval (+ grace), for this attempt only.
                if self.dialect.venue_heartbeat()
                    && let Some(interval) = self.shared.config.liveness.venue_heartbeat
                {
                    s.heartbeat = Some(interval);
                    self.live.expect_heartbeat(s.attempt, interval, Instant::now().into_std());
                }
                s.phase = Phase::Auth;
                if self.send_auth(false).await.is_none() {
                    // No credentials: nothing to wait for.
                    for tx in self.auth_waiters.drain(..) {
                        let _ = tx.send(Ok(()));
                    }
                    self.begin_after_auth().await;
                }
            }
        }
    }

    /// Sends the authentication request (`renew`: on a live session, Deribit's refresh
    /// token); `None` when the dialect has no credentials.
    pub(super) async fn send_auth(&mut self, renew: bool) -> Option<()> {
        let id = self.register(Job::Auth { renew }, 512)?;
        let built = if renew { self.dialect.renew_authentication(id) } else { self.dialect.authenticate(id) };
        let req = match built {
            None => {
                self.shared.lock().pending.complete(id);
                return None;
            }
            Some(Ok(req)) => req,
            Some(Err(e)) => {
                self.shared.lock().pending.complete(id);
                let error = ClientError::BadReply(format!("authentication request: {e}"));
                self.deliver(ClientEvent::Error(error.clone()));
                self.finish(Some(error)).await;
                return Some(());
            }
        };
        self.charge(&req.method);
        let s = self.session.as_mut()?;
        s.auth_in_flight = true;
        let (conn, stream) = (s.conn.clone(), s.stream);
        self.send_now(&conn, &stream, req.text).await;
        Some(())
    }

    /// `Client::reauthenticate`: renew now on a live session (or join the authentication
    /// under way, or the next session's).
    pub(super) async fn on_reauthenticate(&mut self, tx: oneshot::Sender<Result<(), ClientError>>) {
        self.auth_waiters.push(tx);
        let Some(s) = &self.session else { return };
        if s.auth_in_flight || !matches!(s.phase, Phase::AfterAuth | Phase::Restoring | Phase::Ready) {
            return;
        }
        if self.send_auth(true).await.is_none() {
            for tx in self.auth_waiters.drain(..) {
                let _ = tx.send(Ok(()));
            }
        }
    }

    /// A request failed because the authentication is gone: renew it now (once).
    pub(super) async fn renew_after_auth_error(&mut self) {
        let Some(s) = &self.session else { return };
        if s.auth_in_flight || !matches!(s.phase, Phase::AfterAuth | Phase::Restoring | Phase::Ready) {
            return;
        }
        tracing::info!("the venue says the authentication is gone: renewing it");
        self.send_auth(true).await;
    }

    /// Spends the credits of a request sent at once, not paced (a session step, an
    /// authentication, a heartbeat answer): the venue charges it all the same.
    pub(super) fn charge(&self, method: &str) {
        if let Some(l) = self.shared.lock().limiter.as_mut() {
            l.charge(Instant::now().into_std(), method);
        }
    }

    /// Authentication done (or none): restore the subscriptions.
    async fn begin_restore(&mut self) {
        let Some(s) = &mut self.session else { return };
        s.phase = Phase::Restoring;
        let attempt = s.attempt;
        self.subs.on_connected(attempt);
        self.pump_requests().await;
        self.pump_sub_events().await;
    }

    /// A response to a request of the task's own, on the current attempt.
    pub(super) async fn on_job_done(&mut self, job: Job, outcome: Result<Box<RawValue>, RpcError>, sent: Instant) {
        let now = Instant::now();
        match job {
            Job::HeartbeatAnswer => {
                self.shared.lock().heartbeat_rtt.record(now.saturating_duration_since(sent));
            }
            Job::Handshake { .. } => match outcome {
                Ok(_) => self.next_handshake_step().await,
                Err(e) => {
                    let method = self.session.as_ref().map(|s| s.step.clone()).unwrap_or_default();
                    let why = format!("session request {method}: {e}");
                    self.drop_session(DisconnectReason::RestoreFailed(why), false).await;
                }
            },
            Job::Auth { renew } => match outcome {
                Ok(result) => {
                    self.dialect.on_authenticated(&result);
                    let Some(s) = &mut self.session else { return };
                    s.auth_in_flight = false;
                    s.reauth_at = self.dialect.reauthenticate_after(&result).map(|d| now + d);
                    let first = s.phase == Phase::Auth;
                    for tx in self.auth_waiters.drain(..) {
                        let _ = tx.send(Ok(()));
                    }
                    if first {
                        self.begin_after_auth().await;
                    }
                }
                Err(e) if renew => {
                    // The refresh token was refused (revoked, expired): the credentials then.
                    tracing::info!(error = %e, "renewing the authentication failed; authenticating again");
                    if let Some(s) = &mut self.session {
                        s.auth_in_flight = false;
                    }
                    if self.send_auth(false).await.is_none() {
                        for tx in self.auth_waiters.drain(..) {
                            let _ = tx.send(Ok(()));
                        }
                    }
                }
                Err(e) => {
                    if let Some(s) = &mut self.session {
                        s.auth_in_flight = false;
                    }
                    let retryable = self.dialect.is_retryable(&e);
                    let error = ClientError::Rpc { error: e, retryable };
                    for tx in self.auth_waiters.drain(..) {
                        let _ = tx.send(Err(error.clone()));
                    }
                    if retryable {
                        self.drop_session(DisconnectReason::RestoreFailed(format!("authentication: {error}")), false)
                            .await;
                    } else {
                        // Wrong credentials: retrying cannot fix them.
                        self.deliver(ClientEvent::Error(error.clone()));
                        self.finish(Some(error)).await;
                    }
                }
            },
            Job::Batch { batch, op, channels } => {
                let Some(b) = self.batches.get_mut(&batch) else { return };
                let requested: Vec<&str> = channels.iter().map(|c| &**c).collect();
                match &outcome {
                    Ok(result) => {
                        let c = self.dialect.confirm(op, &requested, Ok(result));
                        for name in c.confirmed {
                            if let Some(ch) = channels.iter().find(|ch| &***ch == name.as_str()) {
                                b.confirmed.push(ch.clone());
                            }
                        }
                    }
                    Err(e) => b.errors.push(e.message.clone()),
                }
                b.parts -= 1;
                if b.parts > 0 {
                    return;
                }
                let Some(b) = self.batches.remove(&batch) else { return };
                let reply = if b.confirmed.is_empty() && !b.errors.is_empty() {
                    Reply::Error(b.errors.join("; "))
                } else {
                    Reply::Confirmed(b.confirmed)
                };
                let Some(s) = &self.session else { return };
                self.subs.on_reply(s.attempt, b.id, reply);
                self.pump_sub_events().await;
                self.pump_requests().await;
            }
        }
    }

    /// Sends every subscription request due (split by the dialect's batch key, paced by the
    /// rate limiter).
    pub(super) async fn pump_requests(&mut self) {
        loop {
            let Some(s) = &self.session else { return };
            if !matches!(s.phase, Phase::Restoring | Phase::Ready) {
                return;
            }
            let Some(req) = self.subs.next_request() else { return };
            let op = match req.kind {
                Kind::Subscribe => SubOp::Subscribe,
                Kind::Unsubscribe => SubOp::Unsubscribe,
            };
            // Channels of different batch keys never share a venue request.
            let mut parts: Vec<(u8, Vec<Channel>)> = Vec::new();
            for c in req.channels {
                let key = self.dialect.batch_key(&c);
                match parts.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(c),
                    None => parts.push((key, vec![c])),
                }
            }
            let batch = req.id.get();
            self.batches.insert(
                batch,
                BatchInFlight { id: req.id, parts: parts.len(), confirmed: Vec::new(), errors: Vec::new() },
            );
            for (_, channels) in parts {
                let Some(id) = self.register(Job::Batch { batch, op, channels: channels.clone() }, req.bytes) else {
                    return;
                };
                let names: Vec<&str> = channels.iter().map(|c| &**c).collect();
                let out = match self.dialect.subscription_request(op, id, &names) {
                    Ok(out) => out,
                    Err(e) => {
                        self.fail_part(id, RpcError { code: -32602, message: e.to_string(), data: None }).await;
                        continue;
                    }
                };
                // Behind requests already paced: queued unpaid, in order (credits are spent
                // when it leaves). Otherwise spent now, or reserved for later (`Wait`).
                let now = Instant::now();
                let queued = self.session.as_ref().is_some_and(|s| !s.paced.is_empty());
                let acquired = match queued {
                    true => None,
                    false => self.shared.lock().limiter.as_mut().map(|l| l.acquire(now.into_std(), &out.method)),
                };
                let (at, unpaid) = match acquired {
                    None if queued => (None, true),
                    None | Some(Acquire::Ready) => (None, false),
                    Some(Acquire::Wait(at)) => (Some(Instant::from_std(at)), false),
                    Some(Acquire::Refused(r)) => match r.retry_at() {
                        Some(at) => (Some(Instant::from_std(at)), true),
                        None => {
                            self.fail_part(id, crate::limiter::rate_limit_refusal(&r)).await;
                            continue;
                        }
                    },
                };
                let Some(s) = &mut self.session else { return };
                match (at, unpaid) {
                    (None, false) => {
                        let (conn, stream) = (s.conn.clone(), s.stream);
                        self.send_now(&conn, &stream, out.text).await;
                    }
                    (at, unpaid) => {
                        let at = at.unwrap_or(now).max(s.paced.back().map_or(now, |p| p.at));
                        let method = unpaid.then_some(out.method);
                        s.paced.push_back(Paced { at, id, method, text: out.text });
                    }
                }
            }
        }
    }

    /// A venue request of a subscription batch that will not be sent (it could not be built,
    /// or the rate limiter can never let it through): answered as a venue refusal, so its
    /// channels are reported refused with the reason.
    pub(super) async fn fail_part(&mut self, id: u64, error: RpcError) {
        let job = self.shared.lock().pending.complete(id);
        if let Some(crate::shared::Waiter::Task { job, sent, .. }) = job {
            Box::pin(self.on_job_done(job, Err(error), sent)).await;
        }
    }

    /// What the subscription machine has to report: user calls answered, the restore done.
    pub(super) async fn pump_sub_events(&mut self) {
        while let Some(ev) = self.subs.poll_event() {
            match ev {
                SubEvent::Resolved { waiter, channel, outcome } => {
                    let Some(g) = self.groups.get_mut(&waiter) else { continue };
                    match outcome {
                        Outcome::Subscribed | Outcome::Unsubscribed => g.outcome.confirmed.push(channel),
                        Outcome::Refused(r) => g.outcome.refused.push(Refused { channel, reason: refusal(&r) }),
                        Outcome::Withdrawn => g.outcome.refused.push(Refused {
                            channel,
                            reason: "withdrawn: unsubscribed before the venue confirmed".into(),
                        }),
                        Outcome::Failed(f) => g.outcome.refused.push(Refused { channel, reason: format!("{f:?}") }),
                    }
                    g.remaining = g.remaining.saturating_sub(1);
                    if g.remaining == 0
                        && let Some(g) = self.groups.remove(&waiter)
                        && let Some(tx) = g.tx
                    {
                        let _ = tx.send(g.outcome);
                    }
                }
                SubEvent::Refused { channel, refusal: r, .. } => {
                    tracing::info!(%channel, reason = %refusal(&r), "subscription refused by the venue");
                    self.known.remove(&channel);
                    self.gate.set_known(&self.known);
                }
                SubEvent::Restored { attempt, confirmed, refused } => {
                    let current =
                        self.session.as_ref().is_some_and(|s| s.attempt == attempt && s.phase == Phase::Restoring);
                    if current {
                        let refused =
                            refused.into_iter().map(|(channel, r)| Refused { channel, reason: refusal(&r) }).collect();
                        self.on_ready(confirmed, refused);
                        self.resend_kept().await;
                    }
                }
            }
        }
    }

    /// A user's subscribe or unsubscribe call.
    pub(super) async fn on_subscribe(
        &mut self,
        channels: Vec<Channel>,
        unsubscribe: bool,
        tx: oneshot::Sender<SubscribeOutcome>,
    ) {
        self.next_group += 1;
        let gid = self.next_group;
        let mut group = Group { tx: Some(tx), remaining: channels.len(), outcome: SubscribeOutcome::default() };
        for c in channels {
            let result = if unsubscribe {
                self.subs.unsubscribe(&c, Some(gid))
            } else {
                self.known.insert(c.clone());
                self.gate.set_known(&self.known);
                self.subs.subscribe(c.clone(), Some(gid))
            };
            match result {
                Ok(()) => {}
                Err(e) => {
                    group.remaining -= 1;
                    group.outcome.refused.push(Refused { channel: c, reason: e.to_string() });
                }
            }
        }
        if group.remaining == 0 {
            if let Some(tx) = group.tx.take() {
                let _ = tx.send(group.outcome);
            }
            return;
        }
        self.groups.insert(gid, group);
        self.pump_sub_events().await;
        self.pump_requests().await;
    }
}

fn refusal(r: &Refusal) -> String {
    match r {
        Refusal::NotConfirmed => "left out of the venue's confirmation".into(),
        Refusal::Venue(reason) => reason.clone(),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}
