//! An HTTP/2 session: the `h2` crate does the framing; this module maps its streams to
//! moorline streams and events, and works out which streams a lost connection processed.
//!
//! Tasks: the h2 connection future runs in its own task; each stream runs in its own task
//! (sending its body under flow control, receiving 1xx, head, data, trailers and pushes) and
//! reports to the session through one bounded channel. The session (running inside the
//! worker) forwards those reports to the owner in order, so a slow owner stops the stream
//! tasks, which stop releasing flow-control capacity, which stops the server.

mod goaway;
mod io;
mod keepalive;
mod stream;

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderName};
use moorline_proto::h2watch::GoAway;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use moorline_proto::ws::Carrier;

use super::command::{Command, ReqBody, Request, WsUpgrade};
use super::ctx::{Ctx, Input, SessionEnd};
use super::info::StreamState;
use super::ws_h2::WsSend;
use crate::error::{DownReason, Error, ExitReason, Http2Failure, RequestError, StreamError};
use crate::event::Event;
use crate::ids::{Protocol, StreamRef};
use crate::instrument::Step;
use crate::sync::lock;
use crate::wsio::{CloseCode, CloseFrame, Message};

use self::goaway::{GoAwaySlot, conn_error_reason};
use self::io::TaskGuard;
pub(crate) use self::io::{H2Parts, handshake};
use self::keepalive::keepalive_loop;
use self::stream::{Msg, Outcome, StreamTask};

/// Outgoing messages queued per WebSocket stream.
const WS_CHANNEL: usize = 64;

/// How long, after the connection ended, stream tasks may take to hand over what h2 had
/// already received for them.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Aborts a task when dropped (cancel = drop the stream's entry).
struct AbortOnDrop(AbortHandle);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Entry {
    h2_id: u32,
    state: StreamState,
    /// The connection failed under this stream; it waits for `Down`.
    lost: bool,
    /// A WebSocket stream's messages that came through the worker (the rest go straight
    /// to its outbox).
    ws_tx: Option<mpsc::Sender<WsSend>>,
    _task: AbortOnDrop,
}

struct Session<'a> {
    ctx: &'a mut Ctx,
    send: SendRequest<Bytes>,
    streams: HashMap<StreamRef, Entry>,
    /// Every stream task, so that a panic in one is seen (and becomes the worker's).
    tasks: JoinSet<()>,
    queue: VecDeque<Request>,
    slot: Arc<GoAwaySlot>,
    goaway: Option<GoAway>,
    msg_tx: mpsc::Sender<Msg>,
    /// WebSocket upgrades waiting in `queue`.
    ws_pending: HashMap<StreamRef, Box<WsUpgrade>>,
    /// Entries of `streams` we opened (not pushes): what counts against the server's
    /// MAX_CONCURRENT_STREAMS.
    opened: usize,
    /// Requests h2 refused because the connection had just failed: never sent.
    never_sent: Vec<StreamRef>,
    /// A stream found the connection dead (WebSocket keepalive): the session goes down.
    dead: Option<DownReason>,
}

enum Step2 {
    Msg(Msg),
    Task(Result<(), tokio::task::JoinError>),
    ConnDone(Result<Result<(), h2::Error>, tokio::task::JoinError>),
    Keepalive(DownReason),
    GoAway,
    /// The server's SETTINGS changed: there may be room for more streams.
    Settings,
    Ready(Result<(), h2::Error>),
    Input(Input),
}

/// Run the session until the connection goes down or shuts down.
pub(crate) async fn run(ctx: &mut Ctx, parts: H2Parts, early: Vec<Command>) -> SessionEnd {
    let H2Parts { send, conn_task, ping, goaway: slot } = parts;
    let mut conn_task = Some(conn_task);
    let keepalive = ctx.setup.opts.keepalive;
    let mut ka_task = TaskGuard(tokio::spawn(async move {
        match (ping, keepalive) {
            (Some(p), Some(k)) => keepalive_loop(p, k).await,
            _ => std::future::pending().await,
        }
    }));
    let (msg_tx, mut msg_rx) = mpsc::channel(64);
    let mut s = Session {
        ctx,
        send,
        streams: HashMap::new(),
        tasks: JoinSet::new(),
        queue: VecDeque::new(),
        slot: slot.clone(),
        goaway: None,
        msg_tx,
        ws_pending: HashMap::new(),
        opened: 0,
        never_sent: Vec::new(),
        dead: None,
    };
    for cmd in early {
        if let Err(end) = s.command(cmd).await {
            return end;
        }
    }
    loop {
        match s.check_drained().await {
            Ok(Some(end)) => return end,
            Ok(None) => {}
            Err(r) => return SessionEnd::Exit(r),
        }
        let can_send = s.can_send();
        let has_tasks = !s.tasks.is_empty();
        let Some(conn) = conn_task.as_mut() else {
            return SessionEnd::Exit(ExitReason::Panicked("HTTP/2 connection task missing".into()));
        };
        let step = tokio::select! {
            biased;
            i = s.ctx.input() => Step2::Input(i),
            m = msg_rx.recv() => match m { Some(m) => Step2::Msg(m), None => continue },
            Some(r) = s.tasks.join_next(), if has_tasks => Step2::Task(r),
            // Before the connection's end: a GOAWAY read before the socket closed fails the
            // streams above its last-stream-id at once, as it would had the socket stayed open.
            _ = slot.notify.notified() => Step2::GoAway,
            r = &mut conn.0 => Step2::ConnDone(r),
            r = &mut ka_task.0 => Step2::Keepalive(match r { Ok(reason) => reason, Err(e) => DownReason::TaskFailed { task: "HTTP/2 keepalive", panicked: e.is_panic() } }),
            _ = slot.settings.notified() => Step2::Settings,
            r = poll_fn(|cx| s.send.poll_ready(cx)), if can_send => Step2::Ready(r),
        };
        match step {
            Step2::Msg(m) => {
                if let Err(r) = s.message(m).await {
                    return SessionEnd::Exit(r);
                }
                if let Some(reason) = s.dead.take() {
                    // As for an unanswered PING: dropping the connection fails every stream.
                    drop(conn_task.take());
                    return s.down(reason, &mut msg_rx).await;
                }
            }
            Step2::Task(r) => s.task_ended(r),
            Step2::ConnDone(r) => {
                s.refresh_goaway();
                let reason = s.conn_reason(r);
                return s.down(reason, &mut msg_rx).await;
            }
            Step2::Keepalive(reason) => {
                // Dropping the connection fails every stream under it.
                drop(conn_task.take());
                return s.down(reason, &mut msg_rx).await;
            }
            Step2::GoAway => {
                if let Err(r) = s.on_goaway().await {
                    return SessionEnd::Exit(r);
                }
            }
            Step2::Settings => {}
            Step2::Ready(Ok(())) => {
                if let Some(req) = s.queue.pop_front()
                    && let Err(r) = s.start(req).await
                {
                    return SessionEnd::Exit(r);
                }
            }
            // h2 refuses new streams once a GOAWAY came, while the streams below its
            // last-stream-id go on: fail what waits, keep the connection.
            Step2::Ready(Err(e)) if e.is_go_away() && e.is_remote() && s.refresh_goaway().is_some() => {
                if let Err(r) = s.on_goaway().await {
                    return SessionEnd::Exit(r);
                }
            }
            Step2::Ready(Err(e)) => {
                drop(conn_task.take());
                s.refresh_goaway();
                let reason = conn_error_reason(&e, s.goaway);
                return s.down(reason, &mut msg_rx).await;
            }
            Step2::Input(Input::HandlesDropped) => return SessionEnd::Exit(ExitReason::HandlesDropped),
            Step2::Input(Input::OwnerGone) => return SessionEnd::Exit(ExitReason::OwnerGone),
            Step2::Input(Input::Command(cmd)) => {
                if let Err(end) = s.command(cmd).await {
                    return end;
                }
            }
        }
    }
}

impl Session<'_> {
    async fn command(&mut self, cmd: Command) -> Result<(), SessionEnd> {
        let Some(cmd) = self.ctx.pre(cmd).await.map_err(SessionEnd::Exit)? else {
            if self.ctx.shutting_down {
                // Graceful shutdown closes the WebSockets (they would never end on their own).
                let close = Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "shutdown")));
                let senders: Vec<_> = self.streams.values().filter_map(|e| e.ws_tx.clone()).collect();
                for tx in senders {
                    let _ = tx.send((close.clone(), None)).await;
                }
            }
            return Ok(());
        };
        match cmd {
            // After GOAWAY this connection takes no new stream; the next one will.
            Command::Request(req) if self.goaway.is_some() => self.fail_unsent(req.stream).await?,
            Command::WsUpgrade(up) if self.goaway.is_some() => self.fail_unsent(up.stream).await?,
            Command::Request(req) => {
                self.ctx.streams.queued(req.stream, &req.method, &req.target, Protocol::Http2);
                self.queue.push_back(*req);
            }
            Command::WsUpgrade(up) => {
                if !self.send.is_extended_connect_protocol_enabled() {
                    self.ctx.streams.remove(up.stream);
                    let error = StreamError::Http2WebSocketUnsupported;
                    self.ctx.emit(Event::StreamError { stream: up.stream, error }).await.map_err(SessionEnd::Exit)?;
                    return Ok(());
                }
                let mut headers = up.options.headers.clone();
                up.handshake.write_headers(Carrier::Http2, &mut headers);
                let req = Request {
                    stream: up.stream,
                    method: http::Method::CONNECT,
                    target: up.target.clone(),
                    headers,
                    body: ReqBody::Full(Bytes::new()),
                };
                self.ctx.streams.queued(req.stream, &req.method, &req.target, Protocol::Http2);
                self.ws_pending.insert(up.stream, up);
                self.queue.push_back(req);
            }
            Command::WsSend(stream, message, in_channel) => {
                match self.streams.get(&stream).and_then(|e| e.ws_tx.clone()) {
                    Some(tx) => {
                        if tx.send((*message, Some(in_channel))).await.is_err() {
                            tracing::debug!(?stream, "WebSocket stream task gone; message dropped with the stream");
                        }
                    }
                    None => {
                        let error = StreamError::NotWebSocket;
                        self.ctx.emit(Event::StreamError { stream, error }).await.map_err(SessionEnd::Exit)?;
                    }
                }
            }
            Command::Cancel(stream) => {
                self.ctx.streams.remove(stream);
                self.queue.retain(|r| r.stream != stream);
                self.ws_pending.remove(&stream);
                if self.streams.get(&stream).is_some_and(|e| e.ws_tx.is_some()) {
                    // A cancelled WebSocket takes no more messages, from now on (its task
                    // lets go of its outbox only once the abort reaches it).
                    self.ctx.shared.ws_ended(stream, Error::Stream(StreamError::WsClosed));
                    self.ctx.shared.ws_unregister(&stream);
                }
                // Dropping the entry aborts its task, which resets the stream (CANCEL).
                self.remove(&stream);
            }
            // Answered by `Ctx::input` from the stream table; this is only a fallback.
            Command::StreamInfo(stream, reply) => {
                let _ = reply.send(self.ctx.streams.get(stream));
            }
            Command::Shutdown => {}
        }
        Ok(())
    }

    /// Hand a request to h2 and spawn its stream task.
    async fn start(&mut self, req: Request) -> Result<(), ExitReason> {
        let Request { stream, method, target, headers, body } = req;
        let em = self.ctx.setup.em.clone();
        let ws = self.ws_pending.remove(&stream);
        let built = build_request(self.ctx.setup.scheme(), &self.ctx.setup.authority(), &method, &target, headers).map(
            |mut request| {
                if ws.is_some() {
                    request.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
                }
                request
            },
        );
        let request = match built {
            Ok(request) => request,
            // Never reached the wire: fail it now, in order with everything else.
            Err(error) => {
                self.ctx.streams.remove(stream);
                return self.ctx.emit(Event::StreamError { stream, error }).await;
            }
        };
        // A WebSocket's stream stays open for its frames.
        let end_now = ws.is_none() && matches!(&body, ReqBody::Full(b) if b.is_empty());
        let (resp, send_stream) = match self.send.send_request(request, end_now) {
            Ok(pair) => pair,
            // The connection failed (or a GOAWAY came) since `poll_ready` said yes: h2 did not
            // take the request, so it was never sent. The connection's end lists it as
            // unprocessed; a GOAWAY fails it as such.
            Err(e) if e.is_io() || e.is_go_away() => {
                tracing::debug!(?stream, error = %e, "connection gone before the request was handed to h2");
                self.never_sent.push(stream);
                return Ok(());
            }
            Err(e) => {
                self.ctx.streams.remove(stream);
                let error = StreamError::InvalidRequest(RequestError::Http2(Http2Failure::new(e)));
                return self.ctx.emit(Event::StreamError { stream, error }).await;
            }
        };
        em.emit(Step::RequestStart { stream, method: method.clone(), target: target.clone() });
        let h2_id = u32::from(resp.stream_id());
        let state = if end_now { StreamState::AwaitingResponse } else { StreamState::Sending };
        self.ctx.streams.set(stream, state);
        if end_now {
            em.emit(Step::RequestEnd { stream });
        }
        let task = StreamTask {
            stream,
            tx: self.msg_tx.clone(),
            em,
            max_informational: self.ctx.setup.opts.http2.max_header_list_size as usize,
            shared: self.ctx.shared.clone(),
            push: self.ctx.setup.opts.http2.enable_push,
        };
        let (abort, ws_tx) = match ws {
            Some(up) => {
                let (tx, rx) = mpsc::channel(WS_CHANNEL);
                let WsUpgrade { handshake, options, .. } = *up;
                (self.tasks.spawn(task.run_ws(resp, send_stream, handshake, options, rx)), Some(tx))
            }
            None => (self.tasks.spawn(task.run(resp, send_stream, if end_now { None } else { Some(body) })), None),
        };
        let entry = Entry { h2_id, state, lost: false, ws_tx, _task: AbortOnDrop(abort) };
        self.streams.insert(stream, entry);
        self.opened += 1;
        Ok(())
    }

    /// Whether the next queued request may be handed to h2 now: there is one, no GOAWAY
    /// came, and the server's MAX_CONCURRENT_STREAMS leaves room. h2 would queue a stream
    /// over the limit itself (with its id, unsent); kept here instead, a request that was
    /// never sent is known as such when the connection is lost.
    fn can_send(&self) -> bool {
        !self.queue.is_empty() && self.goaway.is_none() && self.opened < self.send.current_max_send_streams()
    }

    /// Forget a stream (dropping its entry aborts its task).
    fn remove(&mut self, stream: &StreamRef) -> Option<Entry> {
        self.ctx.streams.remove(*stream);
        let entry = self.streams.remove(stream)?;
        if entry.h2_id != 0 {
            self.opened -= 1;
        }
        Some(entry)
    }

    /// A stream that never reached the server, failed because of the GOAWAY.
    async fn fail_unsent(&mut self, stream: StreamRef) -> Result<(), SessionEnd> {
        let Some(g) = self.goaway else { return Ok(()) };
        let error = StreamError::GoAwayUnprocessed { last_stream_id: g.last_stream_id, error_code: g.error_code };
        self.ctx.emit(Event::StreamError { stream, error }).await.map_err(SessionEnd::Exit)
    }

    /// A GOAWAY arrived (the connection may still serve the streams at or below its
    /// last-stream-id). As Gun does, the owner hears at once of every stream the server will
    /// not process: the open ones above the last-stream-id and the requests still queued
    /// here each end with [`StreamError::GoAwayUnprocessed`], safe to retry. Requests made
    /// from now on fail the same way at once, until the session ends with `Down`
    /// (see `check_drained`) and the worker connects again.
    async fn on_goaway(&mut self) -> Result<(), ExitReason> {
        let Some(g) = self.refresh_goaway() else { return Ok(()) };
        tracing::debug!(last_stream_id = g.last_stream_id, error_code = g.error_code, "GOAWAY received");
        let mut above: Vec<StreamRef> =
            self.streams.iter().filter(|(_, e)| e.h2_id > g.last_stream_id).map(|(s, _)| *s).collect();
        above.sort();
        for stream in &above {
            self.remove(stream);
        }
        above.append(&mut self.never_sent);
        above.extend(self.queue.drain(..).map(|r| r.stream));
        self.ws_pending.clear();
        let error = StreamError::GoAwayUnprocessed { last_stream_id: g.last_stream_id, error_code: g.error_code };
        for stream in above {
            self.ctx.streams.remove(stream);
            self.ctx.emit(Event::StreamError { stream, error: error.clone() }).await?;
        }
        Ok(())
    }

    /// A stream task ended. A panic in it is a panic of the connection worker: the
    /// supervisor reports it to the owner as `Exit { Panicked }`.
    fn task_ended(&mut self, r: Result<(), tokio::task::JoinError>) {
        if let Err(e) = r
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Take the last GOAWAY seen on the wire, if any; returns the one in force.
    fn refresh_goaway(&mut self) -> Option<GoAway> {
        if let Some(g) = *lock(&self.slot.last) {
            self.goaway = Some(g);
        }
        self.goaway
    }

    async fn message(&mut self, m: Msg) -> Result<(), ExitReason> {
        match m {
            Msg::WsBatch(stream, messages, charge) => {
                if !self.streams.contains_key(&stream) {
                    return Ok(()); // cancelled (the charge goes back as it is dropped)
                }
                self.ctx.emit_ws_batch_charged(stream, messages, charge).await
            }
            Msg::Event(ev, charge) => {
                if let Some(stream) = ev.stream() {
                    let Some(e) = self.streams.get_mut(&stream) else {
                        return Ok(()); // cancelled (the charge goes back as it is dropped)
                    };
                    match &ev {
                        Event::Response { .. } => e.state = StreamState::Receiving,
                        Event::WsUpgraded { .. } => e.state = StreamState::WebSocket,
                        _ => {}
                    }
                    self.ctx.streams.set(stream, e.state);
                }
                self.ctx.emit_charged(ev, charge).await
            }
            Msg::Sent(stream) => {
                if let Some(e) = self.streams.get_mut(&stream) {
                    if e.state == StreamState::Sending {
                        e.state = StreamState::AwaitingResponse;
                    }
                    self.ctx.streams.set(stream, e.state);
                    self.ctx.setup.em.emit(Step::RequestEnd { stream });
                }
                Ok(())
            }
            Msg::Pushed { pushed, task } => {
                // Registered before its task starts, so none of its events can come first.
                let abort = self.tasks.spawn(task);
                let entry = Entry {
                    h2_id: 0,
                    state: StreamState::Receiving,
                    lost: false,
                    ws_tx: None,
                    _task: AbortOnDrop(abort),
                };
                self.streams.insert(pushed, entry);
                self.ctx.streams.pushed(pushed);
                Ok(())
            }
            Msg::Finished(stream, outcome) => match outcome {
                Outcome::Complete => {
                    self.remove(&stream);
                    Ok(())
                }
                Outcome::ConnectionLost => {
                    if let Some(e) = self.streams.get_mut(&stream) {
                        e.lost = true;
                    }
                    Ok(())
                }
                Outcome::Dead(reason) => {
                    if let Some(e) = self.streams.get_mut(&stream) {
                        e.lost = true;
                    }
                    self.dead.get_or_insert(reason);
                    Ok(())
                }
                Outcome::Failed(error) => {
                    self.ctx.streams.remove(stream);
                    // Unknown means cancelled: its owner asked to hear no more of it.
                    if self.remove(&stream).is_some() {
                        self.ctx.emit(Event::StreamError { stream, error }).await?;
                    }
                    Ok(())
                }
            },
        }
    }

    /// During shutdown, or after GOAWAY, end the session once no stream the server may still
    /// answer remains. Requests accepted before `shutdown()` are still served.
    async fn check_drained(&mut self) -> Result<Option<SessionEnd>, ExitReason> {
        // (Requests h2 refused as the connection failed wait for the `Down` that lists them.)
        let idle = self.queue.is_empty() && self.never_sent.is_empty();
        if self.ctx.shutting_down && self.streams.is_empty() && idle {
            return Ok(Some(SessionEnd::Shutdown));
        }
        let Some(g) = self.goaway else { return Ok(None) };
        let live = self.streams.values().any(|e| !e.lost && (e.h2_id == 0 || e.h2_id <= g.last_stream_id));
        if live {
            return Ok(None);
        }
        if self.ctx.shutting_down && idle {
            return Ok(Some(SessionEnd::Shutdown));
        }
        let (possibly, unprocessed) = self.lists();
        Ok(Some(SessionEnd::Down {
            reason: DownReason::GoAway { error_code: g.error_code, last_stream_id: g.last_stream_id },
            possibly_processed: possibly,
            unprocessed,
        }))
    }

    fn lists(&mut self) -> (Vec<StreamRef>, Vec<StreamRef>) {
        let mut possibly = Vec::new();
        let mut unprocessed: Vec<StreamRef> = Vec::new();
        self.opened = 0;
        for (stream, e) in self.streams.drain() {
            let above = matches!(self.goaway, Some(g) if e.h2_id > g.last_stream_id);
            if above { unprocessed.push(stream) } else { possibly.push(stream) }
        }
        unprocessed.append(&mut self.never_sent);
        unprocessed.extend(self.queue.drain(..).map(|r| r.stream));
        possibly.sort();
        unprocessed.sort();
        (possibly, unprocessed)
    }

    fn conn_reason(&self, r: Result<Result<(), h2::Error>, tokio::task::JoinError>) -> DownReason {
        match r {
            Ok(Ok(())) => match self.goaway {
                Some(g) => DownReason::GoAway { error_code: g.error_code, last_stream_id: g.last_stream_id },
                None => DownReason::Closed,
            },
            Ok(Err(e)) => conn_error_reason(&e, self.goaway),
            Err(e) => DownReason::TaskFailed { task: "HTTP/2 connection", panicked: e.is_panic() },
        }
    }

    /// The connection is gone. h2 hands each stream what it had received before failing it,
    /// so the stream tasks run out (for at most [`DRAIN`]) and their reports are forwarded;
    /// then the streams still open are listed.
    async fn down(mut self, reason: DownReason, msg_rx: &mut mpsc::Receiver<Msg>) -> SessionEnd {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while self.streams.values().any(|e| !e.lost) {
            let m = tokio::select! {
                m = msg_rx.recv() => m,
                Some(r) = self.tasks.join_next() => {
                    self.task_ended(r);
                    continue;
                }
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some(m) = m else { break };
            if let Err(r) = self.message(m).await {
                return SessionEnd::Exit(r);
            }
        }
        self.tasks.abort_all();
        while let Ok(m) = msg_rx.try_recv() {
            if let Err(r) = self.message(m).await {
                return SessionEnd::Exit(r);
            }
        }
        self.refresh_goaway();
        // Before the owner hears of it: a send on one of these WebSockets now says why.
        for (stream, e) in &self.streams {
            if e.ws_tx.is_some() {
                self.ctx.shared.ws_ended(*stream, Error::Down(reason.clone()));
            }
        }
        let (possibly_processed, unprocessed) = self.lists();
        SessionEnd::Down { reason, possibly_processed, unprocessed }
    }
}

/// Headers that HTTP/2 forbids (RFC 9113 §8.2.2); `host` becomes `:authority`.
fn is_connection_specific(name: &HeaderName) -> bool {
    matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "host")
}

fn build_request(
    scheme: &str,
    authority: &str,
    method: &http::Method,
    target: &str,
    headers: HeaderMap,
) -> Result<http::Request<()>, StreamError> {
    if !target.starts_with('/') && target != "*" {
        return Err(StreamError::InvalidRequest(RequestError::Target {
            target: target.to_owned(),
            why: "it must start with '/'",
        }));
    }
    let uri =
        http::Uri::builder().scheme(scheme).authority(authority).path_and_query(target).build().map_err(|_| {
            StreamError::InvalidRequest(RequestError::Target {
                target: target.to_owned(),
                why: "not a valid request target",
            })
        })?;
    let mut req = http::Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    let h = req.headers_mut();
    for (name, value) in headers.iter() {
        if !is_connection_specific(name) {
            h.append(name.clone(), value.clone());
        }
    }
    Ok(req)
}
