//! An HTTP/2 session: the `h2` crate does the framing; this module maps its streams to
//! moorline streams and events, and works out which streams a lost connection processed.
//!
//! Tasks: the h2 connection future runs in its own task; each stream runs in its own task
//! (sending its body under flow control, receiving 1xx, head, data, trailers and pushes) and
//! reports to the session through one bounded channel. The session (running inside the
//! worker) forwards those reports to the owner in order, so a slow owner stops the stream
//! tasks, which stop releasing flow-control capacity, which stops the server.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName};
use moorline_proto::h2watch::{FrameWatcher, GoAway};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::command::{Command, ReqBody, Request};
use super::handle::{Shared, lock};
use super::info::{StreamInfo, StreamState};
use super::worker::{Ctx, SessionEnd};
use crate::dial::BoxIo;
use crate::error::{ConnectError, DownReason, ExitReason, StreamError};
use crate::event::{Event, Protocol, StreamRef};
use crate::instrument::{Emitter, Step};
use crate::options::{Http2Options, Keepalive};

/// The last GOAWAY seen on the wire, shared between the read path and the session.
#[derive(Default)]
pub(crate) struct GoAwaySlot {
    last: Mutex<Option<GoAway>>,
    notify: Notify,
    /// Signalled once the server's first frame (its SETTINGS) has been read.
    first_frame: Notify,
    /// A TLS failure seen on the read path (h2 keeps only the text of I/O errors).
    tls: Mutex<Option<crate::error::TlsFailure>>,
}

/// The transport seen through a [`FrameWatcher`], so that GOAWAY's last-stream-id is known.
pub(crate) struct WatchedIo {
    inner: BoxIo,
    watcher: FrameWatcher,
    slot: Arc<GoAwaySlot>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &res
            && crate::dial::is_tls_error(e)
        {
            *lock(&self.slot.tls) = Some(crate::dial::tls_failure(e));
        }
        if let Poll::Ready(Ok(())) = res {
            let this = &mut *self;
            let seen = this.watcher.frames_seen();
            let goaway = this.watcher.observe(&buf.filled()[before..]);
            if seen == 0 && this.watcher.frames_seen() > 0 {
                this.slot.first_frame.notify_one();
            }
            if let Some(g) = goaway {
                *lock(&this.slot.last) = Some(g);
                this.slot.notify.notify_one();
            }
        }
        res
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An HTTP/2 connection after the client preface was sent.
pub(crate) struct H2Parts {
    send: SendRequest<Bytes>,
    conn_task: TaskGuard<Result<(), h2::Error>>,
    ping: Option<h2::PingPong>,
    goaway: Arc<GoAwaySlot>,
}

/// Start HTTP/2 on a connected transport: send our preface, then wait (at most `timeout`)
/// for the server's first frame, so that `Up` means the peer really speaks HTTP/2. Over
/// TLS 1.3 this is also where a server that refuses our client certificate says so.
pub(crate) async fn handshake(
    io: BoxIo,
    opts: &Http2Options,
    timeout: std::time::Duration,
    server_name: String,
) -> Result<H2Parts, ConnectError> {
    let goaway = Arc::new(GoAwaySlot::default());
    let io = WatchedIo { inner: io, watcher: FrameWatcher::new(), slot: goaway.clone() };
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(opts.stream_window)
        .initial_connection_window_size(opts.connection_window)
        .max_header_list_size(opts.max_header_list_size)
        .enable_push(opts.enable_push)
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Http2Handshake(e.to_string()))?;
    let mut conn = conn;
    let ping = conn.ping_pong();
    let mut conn_task = TaskGuard(tokio::spawn(conn));
    tokio::select! {
        () = goaway.first_frame.notified() => Ok(H2Parts { send, conn_task, ping, goaway }),
        r = &mut conn_task.0 => Err(match r {
            Ok(Err(e)) => match lock(&goaway.tls).take() {
                Some(cause) => ConnectError::Tls { server_name, cause },
                None => ConnectError::Http2Handshake(e.to_string()),
            },
            Ok(Ok(())) => ConnectError::Http2Handshake("the server closed the connection before its SETTINGS".into()),
            Err(e) => ConnectError::Http2Handshake(format!("connection task failed: {e}")),
        }),
        () = tokio::time::sleep(timeout) => Err(ConnectError::Http2Handshake(format!(
            "no HTTP/2 SETTINGS from the server within {timeout:?}"
        ))),
    }
}

/// Aborts the task when dropped.
struct TaskGuard<T>(JoinHandle<T>);
impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a stream task ended.
enum Outcome {
    /// The response completed.
    Complete,
    /// The connection failed under the stream: the session's `Down` reports it.
    ConnectionLost,
    /// The stream alone failed.
    Failed(StreamError),
}

/// Reports from stream tasks to the session.
enum Msg {
    Event(Event),
    Sent(StreamRef),
    Pushed { pushed: StreamRef, task: JoinHandle<()> },
    Finished(StreamRef, Outcome),
}

struct Entry {
    h2_id: u32,
    method: http::Method,
    target: String,
    state: StreamState,
    /// The connection failed under this stream; it waits for `Down`.
    lost: bool,
    _task: TaskGuard<()>,
}

struct Session<'a> {
    ctx: &'a mut Ctx,
    send: SendRequest<Bytes>,
    streams: HashMap<StreamRef, Entry>,
    queue: VecDeque<Request>,
    goaway: Option<GoAway>,
    msg_tx: mpsc::Sender<Msg>,
}

enum Step2 {
    Msg(Msg),
    ConnDone(Result<Result<(), h2::Error>, tokio::task::JoinError>),
    Keepalive(DownReason),
    GoAway,
    Cmd(Option<Command>),
    Ready(Result<(), h2::Error>),
    OwnerGone,
}

/// Run the session until the connection goes down or shuts down.
pub(crate) async fn run(ctx: &mut Ctx, parts: H2Parts, early: Vec<Command>) -> SessionEnd {
    let H2Parts { send, mut conn_task, ping, goaway: slot } = parts;
    let keepalive = ctx.setup.opts.keepalive;
    let mut ka_task = TaskGuard(tokio::spawn(async move {
        match (ping, keepalive) {
            (Some(p), Some(k)) => keepalive_loop(p, k).await,
            _ => std::future::pending().await,
        }
    }));
    let (msg_tx, mut msg_rx) = mpsc::channel(64);
    let mut s = Session { ctx, send, streams: HashMap::new(), queue: VecDeque::new(), goaway: None, msg_tx };
    for cmd in early {
        if let Err(end) = s.command(cmd).await {
            return end;
        }
    }
    loop {
        if let Some(end) = s.check_drained().await {
            return end;
        }
        let can_send = !s.queue.is_empty() && s.goaway.is_none();
        let step = tokio::select! {
            biased;
            m = msg_rx.recv() => match m { Some(m) => Step2::Msg(m), None => continue },
            r = &mut conn_task.0 => Step2::ConnDone(r),
            r = &mut ka_task.0 => Step2::Keepalive(match r { Ok(reason) => reason, Err(e) => DownReason::Protocol(format!("keepalive task failed: {e}")) }),
            _ = slot.notify.notified() => Step2::GoAway,
            r = poll_fn(|cx| s.send.poll_ready(cx)), if can_send => Step2::Ready(r),
            c = s.ctx.cmd_rx.recv() => Step2::Cmd(c),
            _ = s.ctx.owner.closed() => Step2::OwnerGone,
        };
        match step {
            Step2::Msg(m) => {
                if let Err(r) = s.message(m).await {
                    return SessionEnd::Exit(r);
                }
            }
            Step2::ConnDone(r) => {
                let reason = s.conn_reason(r);
                return s.down(reason, &mut msg_rx).await;
            }
            Step2::Keepalive(reason) => return s.down(reason, &mut msg_rx).await,
            Step2::GoAway => {
                s.goaway = *lock(&slot.last);
                if let Some(g) = s.goaway {
                    tracing::debug!(last_stream_id = g.last_stream_id, error_code = g.error_code, "GOAWAY received");
                }
            }
            Step2::Ready(Ok(())) => {
                if let Some(req) = s.queue.pop_front() {
                    s.start(req);
                }
            }
            Step2::Ready(Err(e)) => {
                let reason = conn_error_reason(&e, s.goaway);
                return s.down(reason, &mut msg_rx).await;
            }
            Step2::Cmd(None) => return SessionEnd::Exit(ExitReason::HandlesDropped),
            Step2::Cmd(Some(cmd)) => {
                if let Err(end) = s.command(cmd).await {
                    return end;
                }
            }
            Step2::OwnerGone => return SessionEnd::Exit(ExitReason::OwnerGone),
        }
    }
}

impl Session<'_> {
    async fn command(&mut self, cmd: Command) -> Result<(), SessionEnd> {
        let Some(cmd) = self.ctx.pre(cmd).await.map_err(SessionEnd::Exit)? else {
            return Ok(());
        };
        match cmd {
            Command::Request(req) => self.queue.push_back(req),
            Command::Cancel(stream) => {
                self.queue.retain(|r| r.stream != stream);
                // Dropping the entry aborts its task, which resets the stream (CANCEL).
                self.streams.remove(&stream);
            }
            Command::StreamInfo(stream, reply) => {
                let info = if let Some(e) = self.streams.get(&stream) {
                    Some(StreamInfo {
                        stream,
                        method: e.method.clone(),
                        target: e.target.clone(),
                        protocol: Protocol::Http2,
                        state: e.state,
                    })
                } else {
                    self.queue.iter().find(|r| r.stream == stream).map(|r| StreamInfo {
                        stream,
                        method: r.method.clone(),
                        target: r.target.clone(),
                        protocol: Protocol::Http2,
                        state: StreamState::Queued,
                    })
                };
                let _ = reply.send(info);
            }
            Command::SetOwner(_) | Command::Shutdown => {}
        }
        Ok(())
    }

    /// Hand a request to h2 and spawn its stream task.
    fn start(&mut self, req: Request) {
        let Request { stream, method, target, headers, body } = req;
        let em = self.ctx.setup.em.clone();
        let built = build_request(self.ctx.setup.scheme(), &self.ctx.setup.authority(), &method, &target, headers);
        let request = match built {
            Ok(r) => r,
            Err(e) => {
                self.fail_now(stream, e);
                return;
            }
        };
        let end_now = matches!(&body, ReqBody::Full(b) if b.is_empty());
        let (resp, send_stream) = match self.send.send_request(request, end_now) {
            Ok(pair) => pair,
            Err(e) => {
                self.fail_now(stream, StreamError::InvalidRequest(e.to_string()));
                return;
            }
        };
        em.emit(Step::RequestStart { stream, method: method.clone(), target: target.clone() });
        let h2_id = u32::from(resp.stream_id());
        let state = if end_now { StreamState::AwaitingResponse } else { StreamState::Sending };
        if end_now {
            em.emit(Step::RequestEnd { stream });
        }
        let task = StreamTask {
            stream,
            tx: self.msg_tx.clone(),
            em,
            shared: self.ctx.shared.clone(),
            push: self.ctx.setup.opts.http2.enable_push,
        };
        let handle = tokio::spawn(task.run(resp, send_stream, if end_now { None } else { Some(body) }));
        self.streams.insert(stream, Entry { h2_id, method, target, state, lost: false, _task: TaskGuard(handle) });
    }

    /// Fail a stream that never reached the wire, through the same ordered channel.
    fn fail_now(&mut self, stream: StreamRef, error: StreamError) {
        let tx = self.msg_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Msg::Finished(stream, Outcome::Failed(error))).await;
        });
    }

    async fn message(&mut self, m: Msg) -> Result<(), ExitReason> {
        match m {
            Msg::Event(ev) => {
                if let Some(stream) = ev.stream() {
                    if !self.streams.contains_key(&stream) {
                        return Ok(()); // cancelled
                    }
                    if let (Event::Response { .. }, Some(e)) = (&ev, self.streams.get_mut(&stream)) {
                        e.state = StreamState::Receiving;
                    }
                }
                self.ctx.emit(ev).await
            }
            Msg::Sent(stream) => {
                if let Some(e) = self.streams.get_mut(&stream) {
                    if e.state == StreamState::Sending {
                        e.state = StreamState::AwaitingResponse;
                    }
                    self.ctx.setup.em.emit(Step::RequestEnd { stream });
                }
                Ok(())
            }
            Msg::Pushed { pushed, task } => {
                self.streams.insert(
                    pushed,
                    Entry {
                        h2_id: 0,
                        method: http::Method::GET,
                        target: String::new(),
                        state: StreamState::Receiving,
                        lost: false,
                        _task: TaskGuard(task),
                    },
                );
                Ok(())
            }
            Msg::Finished(stream, outcome) => match outcome {
                Outcome::Complete => {
                    self.streams.remove(&stream);
                    Ok(())
                }
                Outcome::ConnectionLost => {
                    if let Some(e) = self.streams.get_mut(&stream) {
                        e.lost = true;
                    }
                    Ok(())
                }
                Outcome::Failed(error) => {
                    let known = self.streams.remove(&stream).is_some();
                    // Failures before the stream was registered (bad request) are reported too.
                    if known || !self.queue.iter().any(|r| r.stream == stream) {
                        self.ctx.emit(Event::StreamError { stream, error }).await?;
                    }
                    Ok(())
                }
            },
        }
    }

    /// After GOAWAY, or during shutdown, end the session once no processed stream remains.
    async fn check_drained(&mut self) -> Option<SessionEnd> {
        if self.ctx.shutting_down {
            for req in std::mem::take(&mut self.queue) {
                if let Err(r) =
                    self.ctx.emit(Event::StreamError { stream: req.stream, error: StreamError::ShuttingDown }).await
                {
                    return Some(SessionEnd::Exit(r));
                }
            }
            if self.streams.is_empty() {
                return Some(SessionEnd::Shutdown);
            }
        }
        let g = self.goaway?;
        let live = self.streams.values().any(|e| !e.lost && (e.h2_id == 0 || e.h2_id <= g.last_stream_id));
        if live {
            return None;
        }
        let (possibly, unprocessed) = self.lists();
        Some(SessionEnd::Down {
            reason: DownReason::GoAway { error_code: g.error_code, last_stream_id: g.last_stream_id },
            possibly_processed: possibly,
            unprocessed,
        })
    }

    fn lists(&mut self) -> (Vec<StreamRef>, Vec<StreamRef>) {
        let mut possibly = Vec::new();
        let mut unprocessed: Vec<StreamRef> = Vec::new();
        for (stream, e) in self.streams.drain() {
            let above = matches!(self.goaway, Some(g) if e.h2_id > g.last_stream_id);
            if above { unprocessed.push(stream) } else { possibly.push(stream) }
        }
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
            Err(e) => DownReason::Protocol(format!("HTTP/2 connection task failed: {e}")),
        }
    }

    /// The connection is gone: deliver what the stream tasks already received, then the lists.
    async fn down(mut self, reason: DownReason, msg_rx: &mut mpsc::Receiver<Msg>) -> SessionEnd {
        // Stop the stream tasks, then forward what they had already reported.
        let tasks: Vec<_> = self.streams.values().map(|e| e._task.0.abort_handle()).collect();
        for t in tasks {
            t.abort();
        }
        while let Ok(m) = msg_rx.try_recv() {
            if let Err(r) = self.message(m).await {
                return SessionEnd::Exit(r);
            }
        }
        let (possibly_processed, unprocessed) = self.lists();
        SessionEnd::Down { reason, possibly_processed, unprocessed }
    }
}

/// What a connection-level h2 error means for the owner.
fn conn_error_reason(e: &h2::Error, goaway: Option<GoAway>) -> DownReason {
    if let (true, Some(g)) = (e.is_go_away() && e.is_remote(), goaway) {
        return DownReason::GoAway { error_code: g.error_code, last_stream_id: g.last_stream_id };
    }
    if let Some(io) = e.get_io() {
        if io.kind() == io::ErrorKind::UnexpectedEof {
            return DownReason::Closed;
        }
        return DownReason::Io(Arc::new(io::Error::new(io.kind(), io.to_string())));
    }
    DownReason::Protocol(e.to_string())
}

/// Ping on an interval; return when a ping goes unanswered.
async fn keepalive_loop(mut ping: h2::PingPong, k: Keepalive) -> DownReason {
    loop {
        tokio::time::sleep(k.interval).await;
        match tokio::time::timeout(k.timeout, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return DownReason::Protocol(format!("keepalive PING failed: {e}")),
            Err(_) => return DownReason::KeepaliveTimeout(k.timeout),
        }
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
        return Err(StreamError::InvalidRequest(format!("target {target:?} must start with '/'")));
    }
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(target)
        .build()
        .map_err(|e| StreamError::InvalidRequest(format!("target {target:?}: {e}")))?;
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

/// One stream's task: send its body, receive its response, report in order.
struct StreamTask {
    stream: StreamRef,
    tx: mpsc::Sender<Msg>,
    em: Emitter,
    shared: Arc<Shared>,
    push: bool,
}

impl StreamTask {
    async fn run(self, resp: ResponseFuture, send: SendStream<Bytes>, body: Option<ReqBody>) {
        let stream = self.stream;
        let sender = {
            let tx = self.tx.clone();
            async move {
                if let Some(body) = body {
                    send_body(send, body).await?;
                    let _ = tx.send(Msg::Sent(stream)).await;
                }
                std::future::pending::<Result<(), h2::Error>>().await
            }
        };
        let outcome = tokio::select! {
            r = self.receive(resp) => r,
            Err(e) = sender => Err(e),
        };
        let outcome = match outcome {
            Ok(()) => Outcome::Complete,
            Err(e) => classify(&e),
        };
        let _ = self.tx.send(Msg::Finished(stream, outcome)).await;
    }

    async fn event(&self, ev: Event) -> Result<(), h2::Error> {
        self.tx.send(Msg::Event(ev)).await.map_err(|_| h2::Error::from(Reason::CANCEL))
    }

    async fn receive(&self, mut resp: ResponseFuture) -> Result<(), h2::Error> {
        let mut pushes = resp.push_promises();
        let mut pushes_open = self.push;
        let work = self.head_and_body(resp);
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                p = pushes.push_promise(), if pushes_open => match p {
                    Some(Ok(p)) => self.pushed(p).await?,
                    Some(Err(e)) => return Err(e),
                    None => pushes_open = false,
                },
                r = &mut work => {
                    r?;
                    break;
                }
            }
        }
        // Promises precede the end of their stream: take those already received.
        while pushes_open {
            let next = poll_fn(|cx| match pushes.poll_push_promise(cx) {
                Poll::Pending => Poll::Ready(None),
                other => other,
            })
            .await;
            match next {
                Some(p) => self.pushed(p?).await?,
                None => pushes_open = false,
            }
        }
        Ok(())
    }

    async fn head_and_body(&self, mut resp: ResponseFuture) -> Result<(), h2::Error> {
        let stream = self.stream;
        let response = loop {
            enum Head {
                Inform(http::Response<()>),
                Final(Result<http::Response<RecvStream>, h2::Error>),
            }
            let next = poll_fn(|cx| {
                if let Poll::Ready(Some(r)) = resp.poll_informational(cx) {
                    return Poll::Ready(r.map(Head::Inform));
                }
                Pin::new(&mut resp).poll(cx).map(|r| Ok(Head::Final(r)))
            });
            match next.await? {
                Head::Inform(r) => {
                    self.em.emit(Step::ResponseInform { stream, status: r.status() });
                    let (parts, ()) = r.into_parts();
                    self.event(Event::Inform { stream, status: parts.status, headers: parts.headers }).await?;
                }
                Head::Final(r) => break r?,
            }
        };
        self.em.emit(Step::ResponseHeaders { stream, status: response.status() });
        let (parts, body) = response.into_parts();
        let fin = body.is_end_stream();
        self.event(Event::Response { stream, status: parts.status, headers: parts.headers, fin }).await?;
        if !fin {
            self.body(stream, body).await?;
        }
        self.em.emit(Step::ResponseEnd { stream });
        Ok(())
    }

    async fn body(&self, stream: StreamRef, mut body: RecvStream) -> Result<(), h2::Error> {
        let mut ended = false;
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let len = chunk.len();
            let fin = body.is_end_stream();
            self.event(Event::Data { stream, data: chunk, fin }).await?;
            // Capacity goes back to the server only once the owner's side took the chunk.
            let _ = body.flow_control().release_capacity(len);
            if fin {
                ended = true;
                break;
            }
        }
        if ended {
            return Ok(());
        }
        match body.trailers().await? {
            Some(headers) => self.event(Event::Trailers { stream, headers }).await,
            None => self.event(Event::Data { stream, data: Bytes::new(), fin: true }).await,
        }
    }

    async fn pushed(&self, p: h2::client::PushPromise) -> Result<(), h2::Error> {
        let (req, fut) = p.into_parts();
        let pushed = self.shared.new_stream();
        let (parts, ()) = req.into_parts();
        self.event(Event::Push {
            stream: self.stream,
            pushed,
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        })
        .await?;
        let child = StreamTask {
            stream: pushed,
            tx: self.tx.clone(),
            em: self.em.clone(),
            shared: self.shared.clone(),
            push: false,
        };
        let tx = self.tx.clone();
        // The child waits until the session has registered it, so none of its events can
        // arrive before the stream is known.
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if wait.await.is_err() {
                return;
            }
            let outcome = match fut.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let fin = body.is_end_stream();
                    let r = async {
                        child
                            .event(Event::Response {
                                stream: pushed,
                                status: parts.status,
                                headers: parts.headers,
                                fin,
                            })
                            .await?;
                        if !fin {
                            child.body(pushed, body).await?;
                        }
                        Ok::<(), h2::Error>(())
                    }
                    .await;
                    match r {
                        Ok(()) => Outcome::Complete,
                        Err(e) => classify(&e),
                    }
                }
                Err(e) => classify(&e),
            };
            let _ = tx.send(Msg::Finished(pushed, outcome)).await;
        });
        self.tx.send(Msg::Pushed { pushed, task }).await.map_err(|_| h2::Error::from(Reason::CANCEL))?;
        let _ = go.send(());
        Ok(())
    }
}

/// Send a request body under HTTP/2 flow control, never buffering more than the window.
async fn send_body(mut send: SendStream<Bytes>, body: ReqBody) -> Result<(), h2::Error> {
    match body {
        ReqBody::Full(data) => send_chunk(&mut send, data, true).await,
        ReqBody::Streaming(mut rx) => loop {
            match rx.recv().await {
                Some((data, fin)) => {
                    send_chunk(&mut send, data, fin).await?;
                    if fin {
                        return Ok(());
                    }
                }
                None => {
                    // The body sender was dropped without finishing: abandon the stream.
                    send.send_reset(Reason::CANCEL);
                    return Err(h2::Error::from(Reason::CANCEL));
                }
            }
        },
    }
}

async fn send_chunk(send: &mut SendStream<Bytes>, mut data: Bytes, fin: bool) -> Result<(), h2::Error> {
    if data.is_empty() {
        return send.send_data(data, fin);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(r) => r?,
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, fin && data.is_empty())?;
    }
    Ok(())
}

/// Sort a stream's h2 error into "the connection failed" and "this stream failed".
fn classify(e: &h2::Error) -> Outcome {
    if e.is_go_away() || e.is_io() {
        return Outcome::ConnectionLost;
    }
    match e.reason() {
        Some(Reason::REFUSED_STREAM) if e.is_remote() => Outcome::Failed(StreamError::Refused),
        Some(r) if e.is_reset() && e.is_remote() => Outcome::Failed(StreamError::Reset(r.into())),
        _ => Outcome::Failed(StreamError::Protocol(e.to_string())),
    }
}
