//! A WebSocket over HTTP/1.1: after the `101`, the session's socket carries frames. This
//! driver moves bytes between the socket and the sans-IO session (its [`Inbound`] half here,
//! its sending half in the [`Outbox`], shared with the handles), delivers messages to the
//! owner (waiting for room: a slow owner slows the socket) and runs the closing handshake.
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

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use moorline_proto::read_size::ReadSize;
use moorline_proto::ws::{Ended, Inbound, SendError, SessionEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::command::Command;
use super::ctx::{Ctx, Input, SessionEnd};
use super::shared::WsRegistration;
use crate::dial::BoxIo;
use crate::error::{DownReason, Error, ExitReason, RequestError, StreamError};
use crate::event::Event;
use crate::ids::StreamRef;
use crate::wsio::{
    Access, CloseCode, CloseFrame, Message, Outbox, Sink, WriteError, moves_timer, now, refused, tokio_instant,
};

/// The room given to one read: from 4 KiB (an idle connection holds little) up to 256 KiB
/// (a busy one reads what a burst put in the socket in a few large reads; measured against
/// 64, 128 and 512 KiB on both server behaviours of `benches/ws_echo.rs`); see [`ReadSize`].
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 256 * 1024;

enum Step {
    /// Bytes read, and the room the read had.
    Read(std::io::Result<(usize, usize)>),
    WriteFailed(WriteError),
    Woken,
    Input(Input),
    CloseTimeout,
    Keepalive,
}

struct Driver<'a> {
    ctx: &'a mut Ctx,
    rd: ReadHalf<BoxIo>,
    stream: StreamRef,
    /// The session's receiving half (decoder, read buffer, keepalive).
    ws: Inbound,
    /// The session's sending half, with the socket's write half.
    out: Arc<Outbox>,
    close_timeout: Duration,
    /// How much room the next read gets.
    read_size: ReadSize,
}

/// What the WebSocket driver starts from: the socket's read half, the session's receiving
/// half (holding the bytes that came with the `101`), the outbox (with the socket's write
/// half) and the handles' registration. Boxed by the caller, so the driver's future holds
/// one pointer to it, not a second copy of the session.
pub(crate) struct WsStart {
    pub(crate) rd: ReadHalf<BoxIo>,
    pub(crate) stream: StreamRef,
    pub(crate) ws: Inbound,
    pub(crate) out: Arc<Outbox>,
    pub(crate) close_timeout: Duration,
    pub(crate) registration: WsRegistration,
}

/// Runs the WebSocket until it (or the connection) ends.
pub(crate) async fn run(ctx: &mut Ctx, start: Box<WsStart>) -> SessionEnd {
    let WsStart { rd, stream, ws, out, close_timeout, registration } = *start;
    let mut d = Driver { ctx, rd, stream, ws, out, close_timeout, read_size: ReadSize::new(READ_MIN, READ_MAX) };
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

/// One read into the session's buffer, `(bytes read, room it had)`. The room (as the
/// [`ReadSize`] policy wants) is reserved only while a read is tried: when the socket has
/// nothing yet, an empty buffer of the small size is given back, so an idle WebSocket holds
/// no read buffer at all (it held 4 KiB each; `benches/ws_idle.rs`). A connection that is
/// or was lately busy (the policy above its minimum) keeps its buffer between reads (given
/// back and taken anew at every pending read, it cost 4 % more CPU per message on the
/// batched 64 B echo); the keepalive's silence brings the policy back down.
fn poll_read(
    rd: &mut ReadHalf<BoxIo>,
    rbuf: &mut BytesMut,
    policy: &ReadSize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<(usize, usize)>> {
    let want = policy.want();
    if rbuf.capacity() - rbuf.len() < want / 4 {
        rbuf.reserve(want);
    }
    let room = rbuf.capacity() - rbuf.len();
    // `read_buf`'s future keeps no state between polls: a new one each poll is the same read.
    let read = std::pin::pin!(rd.read_buf(rbuf));
    match read.poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map(|n| (n, room))),
        Poll::Pending => {
            if rbuf.is_empty() && want <= READ_MIN {
                *rbuf = BytesMut::new();
            }
            Poll::Pending
        }
    }
}

impl Driver<'_> {
    fn down(&self, reason: DownReason) -> SessionEnd {
        SessionEnd::Down { reason, possibly_processed: vec![self.stream], unprocessed: Vec::new() }
    }

    async fn serve(&mut self) -> Result<SessionEnd, SessionEnd> {
        // Frames that came with the 101 are already buffered.
        self.deliver().await?;
        let out = self.out.clone();
        // One timer for the keepalive, moved when it fires or our ping is answered (not on
        // every read).
        let mut keepalive_at = self.ws.keepalive_deadline();
        let keepalive_on = keepalive_at.is_some();
        let keepalive = tokio::time::sleep_until(tokio_instant(keepalive_at));
        tokio::pin!(keepalive);
        loop {
            if out.status().ended {
                return Ok(self.finish_close().await);
            }
            // An emptied buffer much larger than reads now need goes back (after a burst);
            // then room for the next read as the policy says.
            let rbuf = self.ws.read_buf();
            if rbuf.is_empty()
                && let Some(small) = self.read_size.shrink_to(rbuf.capacity())
            {
                *rbuf = BytesMut::with_capacity(small);
            }
            // Take the commands already waiting in one go: their frames then leave in one write.
            while out.has_room()
                && let Some(input) = self.ctx.try_input()
            {
                match input {
                    Input::Command(cmd) => self.command(cmd).await?,
                    Input::HandlesDropped => return Err(SessionEnd::Exit(ExitReason::HandlesDropped)),
                    Input::OwnerGone => return Err(SessionEnd::Exit(ExitReason::OwnerGone)),
                }
                if out.status().ended {
                    break;
                }
            }
            // Over the high-water mark (a server that does not read) neither commands nor the
            // socket are taken: the write arm says when room is back.
            let status = out.status();
            if status.ended {
                return Ok(self.finish_close().await);
            }
            let (room, deadline) = (status.room, status.close_deadline);
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
                r = poll_fn(|cx| poll_read(&mut self.rd, self.ws.read_buf(), &self.read_size, cx)), if room => Step::Read(r),
                () = sleep_until(deadline), if deadline.is_some() => Step::CloseTimeout,
                () = &mut keepalive, if keepalive_on => Step::Keepalive,
            };
            match step {
                Step::Woken => {}
                Step::WriteFailed(WriteError::Io(e)) if e.kind() == std::io::ErrorKind::WriteZero => {
                    return Err(self.down(DownReason::Closed));
                }
                Step::WriteFailed(WriteError::Io(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                Step::WriteFailed(WriteError::H2(e)) => {
                    return Err(self.down(DownReason::Io(Arc::new(std::io::Error::other(e)))));
                }
                Step::Read(Ok((0, _))) => {
                    self.deliver().await?;
                    return Err(self.down(DownReason::Closed));
                }
                Step::Read(Ok((n, read_room))) => {
                    self.read_size.on_read(n, read_room);
                    self.ws.on_read(now);
                    let next = self.ws.keepalive_deadline();
                    if moves_timer(keepalive_at, next) {
                        keepalive_at = next;
                        keepalive.as_mut().reset(tokio_instant(next));
                    }
                    self.deliver().await?;
                }
                Step::Read(Err(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                Step::CloseTimeout => self.timers()?,
                Step::Keepalive => {
                    self.timers()?;
                    // Silent for the keepalive's interval: what a burst grew goes back.
                    self.read_size.on_idle();
                    let rbuf = self.ws.read_buf();
                    if rbuf.is_empty() {
                        *rbuf = BytesMut::new();
                    }
                    // Always set again: a timer that fired stays ready until it is reset.
                    keepalive_at = self.ws.keepalive_deadline();
                    keepalive.as_mut().reset(tokio_instant(keepalive_at));
                }
                Step::Input(Input::Command(cmd)) => self.command(cmd).await?,
                Step::Input(Input::HandlesDropped) => return Err(SessionEnd::Exit(ExitReason::HandlesDropped)),
                Step::Input(Input::OwnerGone) => return Err(SessionEnd::Exit(ExitReason::OwnerGone)),
            }
        }
    }

    /// A timer fired: the session's close timer and keepalive at the current time.
    fn timers(&mut self) -> Result<(), SessionEnd> {
        match self.ws.on_timeout(now(), &mut Access(&self.out)) {
            Some(Ended::CloseTimeout(_)) => Err(self.close_timed_out()),
            Some(Ended::KeepaliveTimeout(timeout)) => {
                tracing::debug!(stream = ?self.stream, ?timeout, "WebSocket keepalive: the server fell silent");
                Err(self.down(DownReason::WsKeepaliveTimeout(timeout)))
            }
            // Other ends come from what is decoded.
            Some(_) | None => Ok(()),
        }
    }

    /// Our close frame went unanswered for the close timeout. A close the owner asked for
    /// ends the connection all the same; one sent at shutdown is a `Down`.
    fn close_timed_out(&self) -> SessionEnd {
        if !self.ctx.shutting_down {
            return SessionEnd::Exit(ExitReason::WsClosed { completed: false });
        }
        self.down(DownReason::WsCloseTimeout(self.close_timeout))
    }

    /// Delivers everything decodable in the read buffer: the messages of one read leave in
    /// batches (one channel operation for up to `MAX_BATCH` of them).
    async fn deliver(&mut self) -> Result<(), SessionEnd> {
        loop {
            match self.ws.next_event(&mut Access(&self.out)) {
                None => return self.ctx.flush_events().await.map_err(SessionEnd::Exit),
                Some(SessionEvent::Message(message)) => {
                    self.ctx.emit_ws(self.stream, message).await.map_err(SessionEnd::Exit)?;
                }
                Some(SessionEvent::PeerClosed(frame)) => {
                    self.emit(Event::Ws { stream: self.stream, message: Message::Close(frame) }).await?;
                }
                Some(SessionEvent::ProtocolError(e)) => {
                    // The session queued our close frame with the error's code.
                    tracing::debug!(stream = ?self.stream, error = %e, "WebSocket protocol error");
                    self.ctx.shared.ws_ended(self.stream, Error::Down(DownReason::WsProtocol(e.clone())));
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
            if self.ctx.shutting_down && !self.out.sent_close() {
                // Graceful shutdown of a WebSocket: close it.
                let close = Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "shutdown")));
                let _ = self.out.send_from_driver(&close);
            }
            return Ok(());
        };
        match cmd {
            Command::WsSend(stream, message, _in_channel) if stream == self.stream => {
                match self.out.send_from_driver(&message) {
                    Ok(()) => {}
                    // After our close frame nothing more may go out; say so once.
                    Err(SendError::Closed { first: false }) => tracing::debug!(?stream, "message after close refused"),
                    Err(e) => self.emit(Event::StreamError { stream, error: refused(e) }).await?,
                }
            }
            Command::Cancel(stream) if stream == self.stream => {
                let _ = self.out.send_from_driver(&Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))));
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
        let (sink, wbuf) = self.out.end();
        let Some(Sink::Socket(mut wr)) = sink else { return None };
        let write = async {
            wr.write_all(&wbuf).await?;
            wr.flush().await
        };
        if let Ok(Err(e)) = tokio::time::timeout(self.close_timeout, write).await {
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
        let _ = tokio::time::timeout(self.close_timeout, wait_eof).await;
        if let Some(mut wr) = wr {
            let _ = tokio::time::timeout(self.close_timeout, wr.shutdown()).await;
        }
        if self.ctx.shutting_down {
            return SessionEnd::Shutdown;
        }
        match self.out.ended() {
            Some(Ended::Closed { by_us: true, .. }) => SessionEnd::Exit(ExitReason::WsClosed { completed: true }),
            Some(Ended::Closed { frame, .. }) => self.down(DownReason::WsClosed { close: frame, by_us: false }),
            _ => self.down(DownReason::WsClosed { close: None, by_us: false }),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
