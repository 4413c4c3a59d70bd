//! An HTTP/1.1 session: the sans-IO codec in `moorline_proto::http1` does the framing; this
//! module moves bytes, maps codec request ids to streams and reports events.
//!
//! Requests are written in order, up to `pipeline` of them before their answers; the ones
//! behind wait in a queue and are reported unprocessed if the connection is lost. Writing
//! and reading share one select loop (the socket is split), so a large upload never stops
//! the response from being read. The socket is read only while the owner takes events, so a
//! slow owner slows the server; body chunks are taken only while little is left to write.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use moorline_proto::http1::{BodyKind, Codec, DecodeError, Limits, RequestHead, RequestId, ResponseEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use moorline_proto::ws::{Carrier, ClientHandshake, Negotiated};

use super::command::{Command, ReqBody, Request, WsUpgrade};
use super::ctx::{Ctx, Input, SessionEnd};
use super::info::StreamState;
use super::ws_h1::WsStart;
use crate::dial::BoxIo;
use crate::error::{DownReason, ExitReason, ProtocolFailure, RequestError, StreamError};
use crate::event::Event;
use crate::ids::{Protocol, StreamRef};
use crate::instrument::Step;
use crate::wsio::{Sink, WsOptions};
use moorline_proto::read_size::ReadSize;

/// The room given to one read: 4 KiB while idle, up to 64 KiB once reads fill it (see
/// [`ReadSize`]; body chunks are split at 64 KiB anyway).
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;
/// How long a graceful close may spend flushing (TLS close_notify) to a peer.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// Body chunks are taken from the caller only while less than this waits to be written.
const WRITE_HIGH_WATER: usize = 64 * 1024;

struct InFlight {
    id: RequestId,
    stream: StreamRef,
    state: StreamState,
    cancelled: bool,
    /// The owner already has the stream's last event (a head with `fin`, or trailers).
    done: bool,
}

struct Session<'a> {
    ctx: &'a mut Ctx,
    rd: ReadHalf<BoxIo>,
    wr: WriteHalf<BoxIo>,
    /// Bytes were written since the last flush.
    unflushed: bool,
    codec: Codec,
    rbuf: BytesMut,
    read_size: ReadSize,
    wbuf: BytesMut,
    queue: VecDeque<Request>,
    inflight: VecDeque<InFlight>,
    /// The request whose body is being streamed, and where its chunks come from.
    writing: Option<(StreamRef, mpsc::Receiver<(Bytes, bool)>)>,
    /// The last body chunk, held back one step so that it can carry `fin`.
    held: Option<(StreamRef, Bytes)>,
    pipeline: usize,
    /// WebSocket upgrade requests (queued or in flight) and their handshakes.
    ws_requests: HashMap<StreamRef, (ClientHandshake, WsOptions)>,
}

/// A WebSocket upgrade the server accepted: the session hands the socket over.
pub(crate) struct Upgraded {
    stream: StreamRef,
    negotiated: Negotiated,
    options: WsOptions,
    headers: http::HeaderMap,
}

enum Step1 {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
    Body(Option<(Bytes, bool)>),
    Input(Input),
}

/// Why the session loop stops.
enum Stop {
    Down(DownReason),
    End(SessionEnd),
    /// The connection is now a WebSocket.
    Upgraded(Box<Upgraded>),
}

impl From<ExitReason> for Stop {
    fn from(r: ExitReason) -> Self {
        Stop::End(SessionEnd::Exit(r))
    }
}

/// Run the session until the connection goes down or shuts down.
pub(crate) async fn run(ctx: &mut Ctx, io: BoxIo, early: Vec<Command>) -> SessionEnd {
    // Two boxed phases, one after the other: what serving HTTP needs (the session, its
    // buffers, queues and maps) is gone once the connection became a WebSocket, which then
    // holds only its own driver's state (an idle WebSocket used to keep about 2 KB of the
    // HTTP session's tables and its future's room).
    match Box::pin(serve_http(ctx, io, early)).await {
        Phase::End(end) => end,
        Phase::WebSocket(start) => Box::pin(super::ws_h1::run(ctx, start)).await,
    }
}

/// How the HTTP phase ended.
enum Phase {
    End(SessionEnd),
    /// Upgraded: the WebSocket driver takes over with these.
    WebSocket(Box<WsStart>),
}

/// Serves HTTP/1.1 until the session ends or a WebSocket upgrade is accepted.
async fn serve_http(ctx: &mut Ctx, io: BoxIo, early: Vec<Command>) -> Phase {
    let o = &ctx.setup.opts.http1;
    let limits = Limits { max_head_bytes: o.max_head_bytes, max_headers: o.max_headers, ..Limits::default() };
    let pipeline = o.pipeline;
    let (rd, wr) = tokio::io::split(io);
    let mut s = Session {
        ctx,
        rd,
        wr,
        unflushed: false,
        codec: Codec::new(limits),
        rbuf: BytesMut::new(),
        read_size: ReadSize::new(READ_MIN, READ_MAX),
        wbuf: BytesMut::new(),
        queue: VecDeque::new(),
        inflight: VecDeque::new(),
        writing: None,
        held: None,
        pipeline,
        ws_requests: HashMap::new(),
    };
    let stop = match s.serve(early).await {
        Ok(never) => match never {},
        Err(stop) => stop,
    };
    match stop {
        Stop::End(end) => Phase::End(end),
        Stop::Down(reason) => Phase::End(s.down(reason)),
        Stop::Upgraded(up) => {
            // Requests queued behind the upgrade were never written: they fail, not processed.
            let queued: Vec<StreamRef> = s.queue.drain(..).map(|r| r.stream).collect();
            let Session { ctx, rd, wr, rbuf, .. } = s;
            let Upgraded { stream, negotiated, options, headers } = *up;
            // Handles send directly from now on: before the owner hears of the upgrade.
            let (mut ws, out) = crate::wsio::start(&negotiated, &options, Sink::Socket(wr));
            *ws.read_buf() = rbuf;
            let registration = super::shared::WsRegistration::new(&ctx.shared, stream, out.clone());
            let event = Event::WsUpgraded {
                stream,
                protocol: negotiated.protocol.clone(),
                deflate: negotiated.deflate,
                headers,
            };
            if let Err(reason) = ctx.emit(event).await {
                return Phase::End(SessionEnd::Exit(reason));
            }
            for q in queued {
                ctx.streams.remove(q);
                let error = StreamError::InvalidRequest(RequestError::UpgradedBeforeSent);
                if let Err(reason) = ctx.emit(Event::StreamError { stream: q, error }).await {
                    return Phase::End(SessionEnd::Exit(reason));
                }
            }
            let close_timeout = options.close_timeout;
            Phase::WebSocket(Box::new(WsStart { rd, stream, ws, out, close_timeout, registration }))
        }
    }
}

impl Session<'_> {
    async fn serve(&mut self, early: Vec<Command>) -> Result<std::convert::Infallible, Stop> {
        for cmd in early {
            self.command(cmd).await?;
        }
        loop {
            self.start_queued().await?;
            let idle = self.inflight.is_empty() && self.writing.is_none() && self.wbuf.is_empty();
            // Requests accepted before `shutdown()` are still served; then the socket closes.
            if self.ctx.shutting_down && idle && self.queue.is_empty() {
                // Bounded: a peer that stopped reading must not hold the shutdown forever.
                let _ = tokio::time::timeout(SHUTDOWN_FLUSH, self.wr.shutdown()).await;
                return Err(Stop::End(SessionEnd::Shutdown));
            }
            if !self.codec.is_reusable() && idle {
                return Err(Stop::Down(DownReason::ServerRequestedClose));
            }
            let take_body = self.writing.is_some() && self.wbuf.len() < WRITE_HIGH_WATER;
            let must_flush = self.unflushed && self.wbuf.is_empty();
            if self.rbuf.is_empty()
                && let Some(small) = self.read_size.shrink_to(self.rbuf.capacity())
            {
                self.rbuf = BytesMut::with_capacity(small);
            }
            let want = self.read_size.want();
            if self.rbuf.capacity() - self.rbuf.len() < want / 4 {
                self.rbuf.reserve(want);
            }
            let read_room = self.rbuf.capacity() - self.rbuf.len();
            let step = tokio::select! {
                biased;
                i = self.ctx.input() => Step1::Input(i),
                r = write_or_flush(&mut self.wr, &self.wbuf), if !self.wbuf.is_empty() || must_flush => r,
                r = self.rd.read_buf(&mut self.rbuf) => Step1::Read(r),
                c = recv_body(&mut self.writing), if take_body => Step1::Body(c),
            };
            match step {
                Step1::Wrote(Ok(0)) => return Err(Stop::Down(DownReason::Closed)),
                Step1::Wrote(Ok(n)) => {
                    let _ = self.wbuf.split_to(n);
                    self.codec.record_flushed(n);
                    self.unflushed = true;
                }
                Step1::Flushed(Ok(())) => self.unflushed = false,
                Step1::Wrote(Err(e)) | Step1::Flushed(Err(e)) => return Err(Stop::Down(DownReason::Io(Arc::new(e)))),
                Step1::Read(Ok(0)) => {
                    let mut events = Vec::new();
                    let res = drain(&mut self.codec, &mut self.rbuf, &mut events, true);
                    self.deliver(events).await?;
                    if let Err(e) = res {
                        return Err(Stop::Down(protocol(&e)));
                    }
                    return Err(Stop::Down(DownReason::Closed));
                }
                Step1::Read(Ok(n)) => {
                    self.read_size.on_read(n, read_room);
                    let mut events = Vec::new();
                    let res = drain(&mut self.codec, &mut self.rbuf, &mut events, false);
                    self.deliver(events).await?;
                    // Answers come in request order, and cancelled ones produce no `End`: whatever
                    // the codec no longer waits for is over.
                    while self.inflight.len() > self.codec.pending() {
                        if let Some(f) = self.inflight.pop_front() {
                            self.ctx.streams.remove(f.stream);
                        }
                    }
                    if let Err(e) = res {
                        return Err(Stop::Down(protocol(&e)));
                    }
                }
                Step1::Read(Err(e)) => return Err(Stop::Down(DownReason::Io(Arc::new(e)))),
                Step1::Body(chunk) => self.body_chunk(chunk).await?,
                Step1::Input(Input::Command(cmd)) => self.command(cmd).await?,
                Step1::Input(Input::HandlesDropped) => return Err(ExitReason::HandlesDropped.into()),
                Step1::Input(Input::OwnerGone) => return Err(ExitReason::OwnerGone.into()),
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Stop> {
        let Some(cmd) = self.ctx.pre(cmd).await? else {
            return Ok(());
        };
        match cmd {
            Command::Request(req) => {
                self.ctx.streams.queued(req.stream, &req.method, &req.target, Protocol::Http1);
                self.queue.push_back(*req);
            }
            Command::WsUpgrade(up) => {
                let WsUpgrade { stream, target, options, handshake } = *up;
                self.ctx.streams.queued(stream, &http::Method::GET, &target, Protocol::Http1);
                let mut headers = options.headers.clone();
                handshake.write_headers(Carrier::Http1, &mut headers);
                self.queue.push_back(Request {
                    stream,
                    method: http::Method::GET,
                    target,
                    headers,
                    body: ReqBody::Full(Bytes::new()),
                });
                self.ws_requests.insert(stream, (handshake, options));
            }
            Command::WsSend(stream, ..) => {
                // Not (or not yet) a WebSocket: the message cannot go anywhere.
                self.ctx.emit(Event::StreamError { stream, error: StreamError::NotWebSocket }).await?;
            }
            Command::Cancel(stream) => {
                self.ctx.streams.remove(stream);
                self.queue.retain(|r| r.stream != stream);
                if let Some(f) = self.inflight.iter_mut().find(|f| f.stream == stream) {
                    f.cancelled = true;
                    self.codec.cancel(f.id);
                }
                if matches!(&self.writing, Some((w, _)) if *w == stream) {
                    // Half a request cannot be taken back: the connection goes.
                    return Err(Stop::Down(DownReason::CancelledMidRequest));
                }
                if matches!(&self.held, Some((h, _)) if *h == stream) {
                    self.held = None;
                }
            }
            // Answered by `Ctx::input` from the stream table; this is only a fallback.
            Command::StreamInfo(stream, reply) => {
                let _ = reply.send(self.ctx.streams.get(stream));
            }
            Command::Shutdown => {}
        }
        Ok(())
    }

    /// Write queued requests while the connection allows.
    async fn start_queued(&mut self) -> Result<(), Stop> {
        // Nothing is written behind a WebSocket upgrade: the socket may switch protocols.
        while self.writing.is_none()
            && self.codec.is_reusable()
            && self.inflight.len() < self.pipeline
            && !self.inflight.iter().any(|f| self.ws_requests.contains_key(&f.stream))
        {
            let Some(req) = self.queue.pop_front() else { break };
            self.start(req).await?;
        }
        Ok(())
    }

    async fn start(&mut self, req: Request) -> Result<(), Stop> {
        let Request { stream, method, target, headers, body } = req;
        let (kind, full, streaming) = match body {
            ReqBody::Full(b) if b.is_empty() => (BodyKind::Empty, None, None),
            ReqBody::Full(b) => (BodyKind::Length(b.len() as u64), Some(b), None),
            ReqBody::Streaming(rx) => {
                let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                (declared.map_or(BodyKind::Chunked, BodyKind::Length), None, Some(rx))
            }
        };
        let authority = self.ctx.setup.authority();
        let head = RequestHead { method: &method, target: &target, authority: &authority, headers: &headers };
        let mark = self.wbuf.len();
        let encoded = self.codec.encode_head(head, kind, &mut self.wbuf).and_then(|id| {
            if let Some(b) = &full {
                self.codec.encode_body(b, true, &mut self.wbuf)?;
            }
            Ok(id)
        });
        let id = match encoded {
            Ok(id) => id,
            Err(e) => {
                self.ctx.streams.remove(stream);
                let error = StreamError::InvalidRequest(RequestError::Http1(e));
                self.ctx.emit(Event::StreamError { stream, error }).await?;
                if self.wbuf.len() > mark {
                    // The head went out but its body was refused: the connection is unusable.
                    return Err(Stop::Down(DownReason::CancelledMidRequest));
                }
                return Ok(());
            }
        };
        let state = if streaming.is_some() { StreamState::Sending } else { StreamState::AwaitingResponse };
        self.ctx.streams.set(stream, state);
        self.inflight.push_back(InFlight { id, stream, state, cancelled: false, done: false });
        self.ctx.setup.em.emit(Step::RequestStart { stream, method, target });
        match streaming {
            Some(rx) => self.writing = Some((stream, rx)),
            None => self.ctx.setup.em.emit(Step::RequestEnd { stream }),
        }
        Ok(())
    }

    async fn body_chunk(&mut self, chunk: Option<(Bytes, bool)>) -> Result<(), Stop> {
        let Some((stream, _)) = &self.writing else { return Ok(()) };
        let stream = *stream;
        let Some((data, fin)) = chunk else {
            // The body sender was dropped before the end: the request cannot be completed.
            return Err(Stop::Down(DownReason::CancelledMidRequest));
        };
        if let Err(e) = self.codec.encode_body(&data, fin, &mut self.wbuf) {
            // The declared length was overrun or not reached: the stream fails, and the
            // connection with it, since the server now waits for bytes that will not come.
            // (The codec wrote nothing for the refused chunk.)
            self.ctx.streams.remove(stream);
            let error = StreamError::InvalidRequest(RequestError::Http1(e));
            self.ctx.emit(Event::StreamError { stream, error }).await?;
            if let Some(f) = self.inflight.iter_mut().find(|f| f.stream == stream) {
                f.cancelled = true;
                self.codec.cancel(f.id);
            }
            return Err(Stop::Down(DownReason::CancelledMidRequest));
        }
        if fin {
            self.writing = None;
            if let Some(f) = self.inflight.iter_mut().find(|f| f.stream == stream && f.state == StreamState::Sending) {
                f.state = StreamState::AwaitingResponse;
            }
            self.ctx.streams.advance(stream, StreamState::Sending, StreamState::AwaitingResponse);
            self.ctx.setup.em.emit(Step::RequestEnd { stream });
        }
        Ok(())
    }

    /// Turn decoded events into owner events.
    async fn deliver(&mut self, events: Vec<ResponseEvent>) -> Result<(), Stop> {
        for ev in events {
            match ev {
                ResponseEvent::Inform { id, status, headers } => {
                    if let Some(stream) = self.live(id) {
                        self.ctx.setup.em.emit(Step::ResponseInform { stream, status });
                        self.ctx.emit(Event::Inform { stream, status, headers }).await?;
                    }
                }
                ResponseEvent::Head { id, status, headers, has_body, .. } => {
                    if let Some(f) = self.inflight.iter_mut().find(|f| f.id == id) {
                        f.state = StreamState::Receiving;
                        f.done = !has_body;
                        self.ctx.streams.set(f.stream, StreamState::Receiving);
                    }
                    if let Some(stream) = self.live(id) {
                        self.ctx.setup.em.emit(Step::ResponseHeaders { stream, status });
                        self.ctx.emit(Event::Response { stream, status, headers, fin: !has_body }).await?;
                    }
                }
                ResponseEvent::Data { id, data } => {
                    if let Some(stream) = self.live(id) {
                        self.release_held(false).await?;
                        self.held = Some((stream, data));
                    }
                }
                ResponseEvent::Trailers { id, headers } => {
                    if let Some(stream) = self.live(id) {
                        self.release_held(false).await?;
                        self.ctx.emit(Event::Trailers { stream, headers }).await?;
                        if let Some(f) = self.inflight.iter_mut().find(|f| f.id == id) {
                            f.done = true;
                        }
                    }
                }
                ResponseEvent::End { id } => {
                    let Some(pos) = self.inflight.iter().position(|f| f.id == id) else { continue };
                    let Some(f) = self.inflight.remove(pos) else { continue };
                    self.ctx.streams.remove(f.stream);
                    // A WebSocket upgrade answered without switching is an ordinary response.
                    self.ws_requests.remove(&f.stream);
                    if f.cancelled {
                        continue;
                    }
                    self.ctx.setup.em.emit(Step::ResponseEnd { stream: f.stream });
                    if self.held.is_some() {
                        self.release_held(true).await?;
                    } else if !f.done {
                        // The body ended with no bytes left to carry `fin`.
                        self.ctx.emit(Event::Data { stream: f.stream, data: Bytes::new(), fin: true }).await?;
                    }
                }
                ResponseEvent::Upgrade { id, status, headers } => {
                    let stream = self.live(id);
                    if let Some((handshake, options)) = stream.and_then(|s| self.ws_requests.remove(&s))
                        && let Some(stream) = stream
                    {
                        return match handshake.check_response(Carrier::Http1, status, &headers) {
                            Ok(negotiated) => {
                                self.ctx.setup.em.emit(Step::ResponseHeaders { stream, status });
                                self.ctx.streams.set(stream, StreamState::WebSocket);
                                Err(Stop::Upgraded(Box::new(Upgraded { stream, negotiated, options, headers })))
                            }
                            Err(e) => {
                                self.ctx.streams.remove(stream);
                                let reason = DownReason::Protocol(ProtocolFailure::WsHandshake(e.clone()));
                                self.ctx
                                    .emit(Event::StreamError { stream, error: StreamError::WsHandshake(e) })
                                    .await?;
                                Err(Stop::Down(reason))
                            }
                        };
                    }
                    // An unasked switch is a protocol error.
                    tracing::warn!(?stream, %status, "unexpected protocol upgrade");
                    if let Some(stream) = stream {
                        let error = StreamError::Protocol(ProtocolFailure::UnaskedSwitch { status: status.as_u16() });
                        self.ctx.emit(Event::StreamError { stream, error }).await?;
                    }
                    return Err(Stop::Down(DownReason::Protocol(ProtocolFailure::UnaskedSwitch {
                        status: status.as_u16(),
                    })));
                }
            }
        }
        // Whatever is held goes out now: the owner must not wait for the next read.
        self.release_held(false).await
    }

    async fn release_held(&mut self, fin: bool) -> Result<(), Stop> {
        if let Some((stream, data)) = self.held.take() {
            self.ctx.emit(Event::Data { stream, data, fin }).await?;
        }
        Ok(())
    }

    fn live(&self, id: RequestId) -> Option<StreamRef> {
        self.inflight.iter().find(|f| f.id == id && !f.cancelled).map(|f| f.stream)
    }

    fn down(&mut self, reason: DownReason) -> SessionEnd {
        let (possibly, unprocessed_ids) = self.codec.in_flight();
        let to_stream = |id: RequestId| self.inflight.iter().find(|f| f.id == id && !f.cancelled).map(|f| f.stream);
        let possibly_processed: Vec<StreamRef> = possibly.into_iter().filter_map(to_stream).collect();
        let mut unprocessed: Vec<StreamRef> = unprocessed_ids.into_iter().filter_map(to_stream).collect();
        unprocessed.extend(self.queue.drain(..).map(|r| r.stream));
        SessionEnd::Down { reason, possibly_processed, unprocessed }
    }
}

/// Write some pending bytes, or flush once all are written. Cancel-safe.
async fn write_or_flush(wr: &mut WriteHalf<BoxIo>, wbuf: &[u8]) -> Step1 {
    if wbuf.is_empty() { Step1::Flushed(wr.flush().await) } else { Step1::Wrote(wr.write(wbuf).await) }
}

/// Wait for the next chunk of the body being written.
async fn recv_body(writing: &mut Option<(StreamRef, mpsc::Receiver<(Bytes, bool)>)>) -> Option<(Bytes, bool)> {
    match writing {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Decode everything available; on error, the events before it are still returned.
fn drain(codec: &mut Codec, buf: &mut BytesMut, out: &mut Vec<ResponseEvent>, eof: bool) -> Result<(), DecodeError> {
    loop {
        let next = if eof { codec.decode_eof(buf)? } else { codec.decode(buf)? };
        match next {
            Some(ev) => {
                let upgrade = matches!(ev, ResponseEvent::Upgrade { .. });
                out.push(ev);
                if upgrade {
                    return Ok(());
                }
            }
            None => return Ok(()),
        }
    }
}

fn protocol(e: &DecodeError) -> DownReason {
    DownReason::Protocol(ProtocolFailure::Http1(e.clone()))
}
