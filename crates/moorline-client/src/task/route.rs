//! Every event of the connection: frames routed (responses to their waiters, heartbeats
//! answered at once, data to the user), and the connection's end.

use moorline::Event;
use moorline::ws::Message;
use tokio::time::Instant;

use super::Task;
use crate::dialect::{Frame, Heartbeat, Inbound};
use crate::error::ClientError;
use crate::event::{ClientEvent, DisconnectReason, Payload};
use crate::jsonrpc::{RawValue, RpcError};
use crate::record::Direction;
use crate::shared::{Job, Waiter};

impl Task {
    pub(super) async fn on_event(&mut self, ev: Option<Event>) {
        let Some(s) = &mut self.session else { return };
        let attempt = s.attempt;
        let now = Instant::now();
        let ev = match ev {
            Some(ev) => ev,
            None => {
                // The connection's worker is gone without a word: treat as closed.
                self.drop_session(DisconnectReason::Down(moorline::DownReason::Closed), false).await;
                return;
            }
        };
        match ev {
            Event::Ws { stream, message } if stream == s.stream => {
                s.last_frame = now;
                self.shared.record(Direction::In, &message);
                match message {
                    Message::Text(text) => self.on_text(text, now).await,
                    Message::Binary(data) => {
                        self.shared.count_in(data.len());
                        let channel = match self.dialect.classify(Frame::Binary(&data)) {
                            Inbound::Data { channel: Some(c) } => Some(self.intern(&c)),
                            _ => None,
                        };
                        self.live.on_data(attempt, now.into_std());
                        self.deliver(ClientEvent::Message { data: Payload::Binary(data), channel });
                    }
                    Message::Ping(_) => {
                        // moorline answered it already (ahead of any queued data).
                        self.live.on_frame(attempt, now.into_std());
                    }
                    Message::Pong(payload) => {
                        self.live.on_frame(attempt, now.into_std());
                        if let Some((sent, n)) = s.ping
                            && payload.as_ref() == n.to_be_bytes()
                        {
                            s.ping = None;
                            self.shared.lock().heartbeat_rtt.record(now.saturating_duration_since(sent));
                        }
                    }
                    Message::Close(close) => {
                        let reason = moorline::DownReason::WsClosed { close, by_us: false };
                        self.drop_session(DisconnectReason::Down(reason), false).await;
                    }
                }
            }
            Event::Down { reason, .. } => self.drop_session(DisconnectReason::Down(reason), false).await,
            Event::Exit { reason } => self.drop_session(DisconnectReason::Exited(reason), false).await,
            Event::StreamError { error, .. } => {
                self.drop_session(DisconnectReason::Stream(error), false).await;
            }
            _ => {}
        }
    }

    async fn on_text(&mut self, text: moorline::ws::Utf8Bytes, now: Instant) {
        let Some(s) = &self.session else { return };
        let attempt = s.attempt;
        let std_now = now.into_std();
        // Read what the frame is; take owned copies of what outlives the borrow.
        enum Route {
            Response(u64, Result<Box<RawValue>, RpcError>),
            Unmatched(RpcError),
            Beat(Heartbeat),
            Data(Option<crate::event::Channel>),
            Control,
            Malformed(String),
        }
        let route = match self.dialect.classify(Frame::Text(text.as_str())) {
            Inbound::Response { id, outcome } => Route::Response(id, outcome.map(|r| r.to_owned())),
            Inbound::UnmatchedError(e) => Route::Unmatched(e),
            Inbound::Heartbeat(b) => Route::Beat(b),
            Inbound::Data { channel } => Route::Data(channel.map(|c| self.intern(&c))),
            Inbound::Control => Route::Control,
            Inbound::Malformed(e) => Route::Malformed(e.to_string()),
            #[allow(unreachable_patterns)]
            _ => Route::Control,
        };
        match route {
            Route::Response(id, outcome) => {
                self.live.on_frame(attempt, std_now);
                // Boxed (a response may continue the session sequence: 3.3 KB of state that
                // would otherwise size the data path's futures and the task).
                Box::pin(self.on_response(id, outcome)).await;
            }
            Route::Unmatched(e) => {
                self.live.on_frame(attempt, std_now);
                let retryable = self.dialect.is_retryable(&e);
                self.deliver(ClientEvent::Error(ClientError::Rpc { error: e, retryable }));
            }
            Route::Beat(beat) => {
                self.live.on_heartbeat(attempt, std_now);
                if beat == Heartbeat::TestRequest {
                    self.answer_heartbeat(beat).await;
                }
            }
            Route::Data(channel) => {
                self.shared.count_in(text.len());
                self.live.on_data(attempt, std_now);
                self.deliver(ClientEvent::Message { data: Payload::Text(text), channel });
            }
            Route::Control => {
                self.live.on_frame(attempt, std_now);
            }
            Route::Malformed(why) => {
                self.shared.count_in(text.len());
                // Delivered all the same (nothing is dropped), with the reason.
                self.live.on_data(attempt, std_now);
                self.deliver(ClientEvent::Message { data: Payload::Text(text), channel: None });
                self.deliver(ClientEvent::Error(ClientError::BadReply(why)));
            }
        }
    }

    /// The venue asked for an answer now: sent at once, ahead of anything the user has not
    /// read (the answer never waits for the user).
    async fn answer_heartbeat(&mut self, beat: Heartbeat) {
        let Some(id) = self.register(Job::HeartbeatAnswer, 64) else { return };
        match self.dialect.answer_heartbeat(beat, id) {
            Some(Ok(req)) => {
                self.charge(&req.method);
                let Some(s) = &self.session else { return };
                let (conn, stream) = (s.conn.clone(), s.stream);
                self.send_now(&conn, &stream, req.text).await;
            }
            other => {
                self.shared.lock().pending.complete(id);
                if let Some(Err(e)) = other {
                    tracing::warn!(error = %e, "could not build the heartbeat answer");
                }
            }
        }
    }

    /// A response: to the user's waiter, or to the session sequence.
    async fn on_response(&mut self, id: u64, outcome: Result<Box<RawValue>, RpcError>) {
        let now = Instant::now();
        let waiter = {
            let mut st = self.shared.lock();
            let w = st.pending.complete(id);
            if let Some(Waiter::User { sent, .. }) = &w {
                st.request_rtt.record(now.saturating_duration_since(*sent));
            }
            w
        };
        match waiter {
            Some(Waiter::User { tx, .. }) => {
                let reauth = outcome.as_ref().is_err_and(|e| self.dialect.needs_reauthentication(e));
                let result = outcome.map_err(|error| {
                    let retryable = self.dialect.is_retryable(&error);
                    ClientError::Rpc { error, retryable }
                });
                let _ = tx.send(result);
                if reauth {
                    self.renew_after_auth_error().await;
                }
            }
            Some(Waiter::Task { attempt, job, sent }) => {
                if self.session.as_ref().is_some_and(|s| s.attempt.get() == attempt) {
                    self.on_job_done(job, outcome, sent).await;
                }
            }
            None => tracing::debug!(id, "a response nobody waits for (timed out, or not ours)"),
        }
    }
}
