//! A WebSocket over HTTP/1.1: after the `101`, the session's socket carries frames. This
//! driver moves bytes between the socket and [`WsCore`], delivers messages to the owner
//! (waiting for room: a slow owner slows the socket) and runs the closing handshake.
//!
//! A close the owner asked for ends the connection: `Exit { WsClosed }`, no reconnection.
//! Otherwise it ends the session with `Down`: `WsClosed` after a closing handshake the
//! server started, `WsCloseTimeout` if the server never answered our close frame (sent
//! at shutdown), `WsProtocol` after a violation (our close frame with the matching code is
//! sent first), `WsKeepaliveTimeout` when the server fell silent, or the socket's own failure.
//!
//! While more than the outbox's high-water mark waits to be written (a server that does not
//! read), the driver neither takes commands nor reads the socket: what the server sends
//! waits in the kernel, and memory stays bounded.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::BytesMut;
use moorline_proto::read_size::ReadSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::command::Command;
use super::ctx::{Ctx, Input, SessionEnd};
use super::shared::Shared;
use crate::dial::BoxIo;
use crate::error::{DownReason, Error, ExitReason, RequestError, StreamError};
use crate::event::Event;
use crate::ids::StreamRef;
use crate::sync::lock;
use crate::ws::{CloseCode, CloseFrame, Incoming, KeepaliveTick, Message, Outbox, WsCore, deadline_after};

/// The room given to one read: from 4 KiB (an idle connection holds little) up to 64 KiB
/// (a busy one reads in large chunks); see [`ReadSize`].
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

enum Step {
    Read(std::io::Result<usize>),
    WriteFailed(std::io::Error),
    Woken,
    Input(Input),
    CloseTimeout,
    Keepalive,
}

/// While it lives, handles send on `stream` through its outbox directly (and may write the
/// socket themselves). Dropping it ends that: the outbox refuses further direct sends and
/// lets go of the socket's write half.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    out: Arc<Outbox>,
}

impl Registration {
    /// Registers `out` as the outbox of `stream`, the connection's WebSocket.
    pub(crate) fn new(shared: &Arc<Shared>, stream: StreamRef, out: Arc<Outbox>) -> Self {
        *lock(&shared.ws_out) = Some((stream, out.clone()));
        Self { shared: shared.clone(), out }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        *lock(&self.shared.ws_out) = None;
        let _ = self.out.end();
    }
}

struct Driver<'a> {
    ctx: &'a mut Ctx,
    rd: ReadHalf<BoxIo>,
    stream: StreamRef,
    core: WsCore,
    read_size: ReadSize,
}

/// Runs the WebSocket until it (or the connection) ends. The socket's write half is in the
/// outbox of `core` (registered for the handles by `registration`).
pub(crate) async fn run(
    ctx: &mut Ctx,
    rd: ReadHalf<BoxIo>,
    stream: StreamRef,
    core: WsCore,
    registration: Registration,
) -> SessionEnd {
    let mut d = Driver { ctx, rd, stream, core, read_size: ReadSize::new(READ_MIN, READ_MAX) };
    let end = match d.serve().await {
        Ok(end) | Err(end) => end,
    };
    // Before the outbox refuses direct sends (and before the owner hears of it): a send on
    // the stream from now on says how it ended.
    match &end {
        SessionEnd::Down { reason: DownReason::WsClosed { .. }, .. }
        | SessionEnd::Shutdown
        | SessionEnd::Exit(ExitReason::WsClosed { .. }) => {
            d.ctx.shared.ws_ended(stream, Error::Stream(StreamError::WsClosed));
        }
        SessionEnd::Down { reason, .. } => d.ctx.shared.ws_ended(stream, Error::Down(reason.clone())),
        SessionEnd::Exit(_) => {}
    }
    drop(registration);
    end
}

impl Driver<'_> {
    fn down(&self, reason: DownReason) -> SessionEnd {
        SessionEnd::Down { reason, possibly_processed: vec![self.stream], unprocessed: Vec::new() }
    }

    async fn serve(&mut self) -> Result<SessionEnd, SessionEnd> {
        // Frames that came with the 101 are already buffered.
        self.deliver().await?;
        let out = self.core.out.clone();
        // One timer for the keepalive, reset when it fires or our ping is answered (not on
        // every read).
        let keepalive_on = self.core.keepalive_start().is_some();
        let keepalive = tokio::time::sleep_until(self.core.keepalive_start().unwrap_or_else(far_future));
        tokio::pin!(keepalive);
        loop {
            if self.core.is_closed() {
                return Ok(self.finish_close().await);
            }
            // An emptied buffer much larger than reads now need goes back (after a burst);
            // then room for the next read as the policy says.
            if self.core.rbuf.is_empty()
                && let Some(small) = self.read_size.shrink_to(self.core.rbuf.capacity())
            {
                self.core.rbuf = BytesMut::with_capacity(small);
            }
            let want = self.read_size.want();
            if self.core.rbuf.capacity() - self.core.rbuf.len() < want / 4 {
                self.core.rbuf.reserve(want);
            }
            let read_room = self.core.rbuf.capacity() - self.core.rbuf.len();
            // Take the commands already waiting in one go: their frames then leave in one write.
            while out.has_room()
                && let Some(input) = self.ctx.try_input()
            {
                match input {
                    Input::Command(cmd) => self.command(cmd).await?,
                    Input::HandlesDropped => return Err(SessionEnd::Exit(ExitReason::HandlesDropped)),
                    Input::OwnerGone => return Err(SessionEnd::Exit(ExitReason::OwnerGone)),
                }
                if self.core.is_closed() {
                    break;
                }
            }
            // Over the high-water mark (a server that does not read) neither commands nor the
            // socket are taken: the write arm says when room is back.
            let (room, sent_close) = out.status();
            if sent_close.is_some() && self.core.received_close.is_some() {
                return Ok(self.finish_close().await);
            }
            let deadline = sent_close
                .filter(|_| self.core.received_close.is_none())
                .map(|at| deadline_after(at, self.core.close_timeout));
            // The write arm drains the outbox (in the same turn a message was queued) and
            // stays pending; it ends the select on a socket error, or when room came back.
            let step = tokio::select! {
                biased;
                i = self.ctx.input(), if room => Step::Input(i),
                r = poll_fn(|cx| out.poll_write_out(cx)) => match r {
                    Ok(()) => Step::Woken,
                    Err(e) => Step::WriteFailed(e),
                },
                () = poll_fn(|cx| out.poll_woken(cx)) => Step::Woken,
                r = self.rd.read_buf(&mut self.core.rbuf), if room => Step::Read(r),
                () = sleep_until(deadline), if deadline.is_some() => Step::CloseTimeout,
                () = &mut keepalive, if keepalive_on => Step::Keepalive,
            };
            match step {
                Step::Woken => {}
                Step::WriteFailed(e) if e.kind() == std::io::ErrorKind::WriteZero => {
                    return Err(self.down(DownReason::Closed));
                }
                Step::WriteFailed(e) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                Step::Read(Ok(0)) => {
                    self.deliver().await?;
                    return Err(self.down(DownReason::Closed));
                }
                Step::Read(Ok(n)) => {
                    self.read_size.on_read(n, read_room);
                    if let Some(next) = self.core.on_rx() {
                        keepalive.as_mut().reset(next);
                    }
                    self.deliver().await?;
                }
                Step::Read(Err(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                Step::CloseTimeout => return Err(self.close_timed_out()),
                Step::Keepalive => match self.core.keepalive_tick(tokio::time::Instant::now()) {
                    KeepaliveTick::Next(at) => keepalive.as_mut().reset(at),
                    KeepaliveTick::Dead(timeout) => {
                        tracing::debug!(stream = ?self.stream, ?timeout, "WebSocket keepalive: the server fell silent");
                        return Err(self.down(DownReason::WsKeepaliveTimeout(timeout)));
                    }
                },
                Step::Input(Input::Command(cmd)) => self.command(cmd).await?,
                Step::Input(Input::HandlesDropped) => return Err(SessionEnd::Exit(ExitReason::HandlesDropped)),
                Step::Input(Input::OwnerGone) => return Err(SessionEnd::Exit(ExitReason::OwnerGone)),
            }
        }
    }

    /// Our close frame went unanswered for the close timeout. A close the owner asked for
    /// ends the connection all the same; one sent at shutdown is a `Down`.
    fn close_timed_out(&self) -> SessionEnd {
        if self.core.closed_by_us() && !self.ctx.shutting_down {
            return SessionEnd::Exit(ExitReason::WsClosed { completed: false });
        }
        self.down(DownReason::WsCloseTimeout(self.core.close_timeout))
    }

    /// Delivers everything decodable in the read buffer: the messages of one read leave in
    /// batches (one channel operation for up to `MAX_BATCH` of them).
    async fn deliver(&mut self) -> Result<(), SessionEnd> {
        loop {
            match self.core.next_incoming() {
                Ok(None) => return self.ctx.flush_events().await.map_err(SessionEnd::Exit),
                Ok(Some(Incoming::Message(message))) => {
                    self.ctx.emit_ws(self.stream, message).await.map_err(SessionEnd::Exit)?;
                }
                Ok(Some(Incoming::Closed(frame))) => {
                    self.emit(Event::Ws { stream: self.stream, message: Message::Close(frame) }).await?;
                }
                Err(e) => {
                    tracing::debug!(stream = ?self.stream, error = %e, "WebSocket protocol error");
                    self.ctx.shared.ws_ended(self.stream, Error::Down(DownReason::WsProtocol(e.clone())));
                    self.core.fail(&e);
                    self.emit(Event::StreamError { stream: self.stream, error: StreamError::WsProtocol(e.clone()) })
                        .await?;
                    let _ = self.flush_bounded().await;
                    return Err(self.down(DownReason::WsProtocol(e)));
                }
            }
        }
    }

    async fn emit(&mut self, event: Event) -> Result<(), SessionEnd> {
        self.ctx.emit(event).await.map_err(SessionEnd::Exit)
    }

    async fn command(&mut self, cmd: Command) -> Result<(), SessionEnd> {
        let Some(cmd) = self.ctx.pre(cmd).await.map_err(SessionEnd::Exit)? else {
            if self.ctx.shutting_down && !self.core.sent_close() {
                // Graceful shutdown of a WebSocket: close it.
                let _ = self.core.send(&Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "shutdown"))));
            }
            return Ok(());
        };
        match cmd {
            Command::WsSend(stream, message, _in_channel) if stream == self.stream => {
                if let Err(error) = self.core.send(&message) {
                    // After our close frame nothing more may go out; say so once.
                    let first = !matches!(error, StreamError::WsClosed) || !self.core.refused_after_close;
                    if matches!(error, StreamError::WsClosed) {
                        self.core.refused_after_close = true;
                    }
                    if first {
                        self.emit(Event::StreamError { stream, error }).await?;
                    } else {
                        tracing::debug!(?stream, "message after close refused");
                    }
                }
            }
            Command::Cancel(stream) if stream == self.stream => {
                let _ = self.core.send(&Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))));
            }
            Command::WsSend(stream, ..) => {
                self.emit(Event::StreamError { stream, error: StreamError::NotWebSocket }).await?;
            }
            Command::Request(req) => {
                let error = StreamError::InvalidRequest(RequestError::ConnectionIsWebSocket);
                self.emit(Event::StreamError { stream: req.stream, error }).await?;
            }
            Command::WsUpgrade(up) => {
                let error = StreamError::InvalidRequest(RequestError::ConnectionIsWebSocket);
                self.emit(Event::StreamError { stream: up.stream, error }).await?;
            }
            // Answered by `Ctx::input` from the stream table; this is only a fallback.
            Command::StreamInfo(stream, reply) => {
                let _ = reply.send(self.ctx.streams.get(stream));
            }
            Command::Cancel(_) | Command::Shutdown => {}
        }
        Ok(())
    }

    /// Ends direct sends and writes what is queued, within the close timeout. Returns the
    /// write half (if the outbox still had it).
    async fn flush_bounded(&mut self) -> Option<WriteHalf<BoxIo>> {
        let (io, wbuf) = self.core.out.end();
        let mut wr = io?;
        let write = async {
            wr.write_all(&wbuf).await?;
            wr.flush().await
        };
        if let Ok(Err(e)) = tokio::time::timeout(self.core.close_timeout, write).await {
            tracing::debug!(error = %e, "could not send the close frame");
        }
        Some(wr)
    }

    /// Both close frames are exchanged: flush ours, let the server close the TCP connection
    /// first (RFC 6455 §7.1.1), bounded by the close timeout, then end.
    ///
    /// A close the owner asked for (`ws_close`, `cancel`) ends the connection: the stream
    /// completed, and reconnecting would give the owner a connection it did not ask for.
    async fn finish_close(&mut self) -> SessionEnd {
        self.ctx.shared.ws_ended(self.stream, Error::Stream(StreamError::WsClosed));
        let wr = self.flush_bounded().await;
        let mut scratch = [0u8; 1024];
        let wait_eof = async {
            while let Ok(n) = self.rd.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.core.close_timeout, wait_eof).await;
        if let Some(mut wr) = wr {
            let _ = tokio::time::timeout(self.core.close_timeout, wr.shutdown()).await;
        }
        if self.ctx.shutting_down {
            return SessionEnd::Shutdown;
        }
        if self.core.closed_by_us() {
            return SessionEnd::Exit(ExitReason::WsClosed { completed: true });
        }
        let close = self.core.received_close.clone().flatten();
        self.down(DownReason::WsClosed { close, by_us: false })
    }
}

/// An instant the keepalive timer never reaches when keepalive is off.
fn far_future() -> tokio::time::Instant {
    deadline_after(tokio::time::Instant::now(), std::time::Duration::MAX)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
