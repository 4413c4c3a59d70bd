//! A WebSocket over HTTP/1.1: after the `101`, the session's socket carries frames. This
//! driver moves bytes between the socket and [`WsCore`], delivers messages to the owner
//! (waiting for room: a slow owner slows the socket) and runs the closing handshake.
//!
//! It ends the session with `Down`: `WsClosed` after a completed closing handshake,
//! `WsCloseTimeout` if the server never answered ours, `WsProtocol` after a violation (our
//! close frame with the matching code is sent first), or the socket's own failure.

use std::sync::Arc;

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::command::Command;
use super::info::{StreamInfo, StreamState};
use super::worker::{Ctx, Input, SessionEnd};
use crate::dial::BoxIo;
use crate::error::{DownReason, ExitReason, StreamError};
use crate::event::{Event, Protocol, StreamRef};
use crate::ws::{CloseCode, CloseFrame, Incoming, Message, WsCore};

/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Messages from handles are taken only while less than this waits to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;

enum Step {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
    Input(Input),
    CloseTimeout,
}

struct Driver<'a> {
    ctx: &'a mut Ctx,
    rd: ReadHalf<BoxIo>,
    wr: WriteHalf<BoxIo>,
    stream: StreamRef,
    core: WsCore,
    unflushed: bool,
}

/// Runs the WebSocket until it (or the connection) ends.
pub(crate) async fn run(
    ctx: &mut Ctx,
    rd: ReadHalf<BoxIo>,
    wr: WriteHalf<BoxIo>,
    stream: StreamRef,
    core: WsCore,
) -> SessionEnd {
    let mut d = Driver { ctx, rd, wr, stream, core, unflushed: false };
    match d.serve().await {
        Ok(end) | Err(end) => end,
    }
}

impl Driver<'_> {
    fn down(&self, reason: DownReason) -> SessionEnd {
        SessionEnd::Down { reason, possibly_processed: vec![self.stream], unprocessed: Vec::new() }
    }

    async fn serve(&mut self) -> Result<SessionEnd, SessionEnd> {
        // Frames that came with the 101 are already buffered.
        self.deliver().await?;
        loop {
            if self.core.is_closed() {
                return Ok(self.finish_close().await);
            }
            if self.core.rbuf.capacity() - self.core.rbuf.len() < READ_CHUNK / 4 {
                self.core.rbuf.reserve(READ_CHUNK);
            }
            // Take the commands already waiting in one go: their frames then leave in one write.
            while self.core.wbuf.len() < WRITE_HIGH_WATER && !self.core.is_closed() {
                match self.ctx.try_input() {
                    None => break,
                    Some(Input::Command(cmd)) => self.command(cmd).await?,
                    Some(Input::HandlesDropped) => return Err(SessionEnd::Exit(ExitReason::HandlesDropped)),
                    Some(Input::OwnerGone) => return Err(SessionEnd::Exit(ExitReason::OwnerGone)),
                }
            }
            if self.core.is_closed() {
                return Ok(self.finish_close().await);
            }
            self.write_now()?;
            let take_input = self.core.wbuf.len() < WRITE_HIGH_WATER;
            let must_flush = self.unflushed && self.core.wbuf.is_empty();
            let deadline = self.core.close_deadline();
            let step = tokio::select! {
                biased;
                i = self.ctx.input(), if take_input => Step::Input(i),
                r = write_or_flush(&mut self.wr, &self.core.wbuf), if !self.core.wbuf.is_empty() || must_flush => r,
                r = self.rd.read_buf(&mut self.core.rbuf) => Step::Read(r),
                () = sleep_until(deadline), if deadline.is_some() => Step::CloseTimeout,
            };
            match step {
                Step::Wrote(Ok(0)) => return Err(self.down(DownReason::Closed)),
                Step::Wrote(Ok(n)) => {
                    let _ = self.core.wbuf.split_to(n);
                    self.unflushed = true;
                }
                Step::Flushed(Ok(())) => self.unflushed = false,
                Step::Wrote(Err(e)) | Step::Flushed(Err(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                Step::Read(Ok(0)) => {
                    self.deliver().await?;
                    return Err(self.down(DownReason::Closed));
                }
                Step::Read(Ok(_)) => self.deliver().await?,
                Step::Read(Err(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                Step::CloseTimeout => return Err(self.down(DownReason::WsCloseTimeout(self.core.close_timeout))),
                Step::Input(Input::Command(cmd)) => self.command(cmd).await?,
                Step::Input(Input::HandlesDropped) => return Err(SessionEnd::Exit(ExitReason::HandlesDropped)),
                Step::Input(Input::OwnerGone) => return Err(SessionEnd::Exit(ExitReason::OwnerGone)),
            }
        }
    }

    /// Writes (and flushes) what is queued as far as the socket takes it right now, without
    /// a trip through the select loop: a message goes out in the same turn it was taken.
    /// What the socket does not take is left to the loop.
    fn write_now(&mut self) -> Result<(), SessionEnd> {
        while !self.core.wbuf.is_empty() {
            match self.wr.write(&self.core.wbuf).now_or_never() {
                Some(Ok(0)) => return Err(self.down(DownReason::Closed)),
                Some(Ok(n)) => {
                    let _ = self.core.wbuf.split_to(n);
                    self.unflushed = true;
                }
                Some(Err(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                None => return Ok(()),
            }
        }
        if self.unflushed {
            match self.wr.flush().now_or_never() {
                Some(Ok(())) => self.unflushed = false,
                Some(Err(e)) => return Err(self.down(DownReason::Io(Arc::new(e)))),
                None => {}
            }
        }
        Ok(())
    }

    /// Delivers everything decodable in the read buffer: the messages of one read leave in
    /// batches (one channel operation for up to `MAX_BATCH` of them).
    async fn deliver(&mut self) -> Result<(), SessionEnd> {
        loop {
            match self.core.next_incoming() {
                Ok(None) => return self.ctx.flush_events().await.map_err(SessionEnd::Exit),
                Ok(Some(Incoming::Message(message))) => {
                    let event = Event::Ws { stream: self.stream, message };
                    self.ctx.emit_batched(event).await.map_err(SessionEnd::Exit)?;
                }
                Ok(Some(Incoming::Closed(frame))) => {
                    self.emit(Event::Ws { stream: self.stream, message: Message::Close(frame) }).await?;
                }
                Err(e) => {
                    tracing::debug!(stream = ?self.stream, error = %e, "WebSocket protocol error");
                    self.core.fail(&e);
                    self.emit(Event::StreamError { stream: self.stream, error: StreamError::WsProtocol(e.clone()) })
                        .await?;
                    self.flush_bounded().await;
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
            if self.ctx.shutting_down && self.core.sent_close.is_none() {
                // Graceful shutdown of a WebSocket: close it.
                let _ = self.core.send(&Message::Close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "shutdown"))));
            }
            return Ok(());
        };
        match cmd {
            Command::WsSend(stream, message) if stream == self.stream => {
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
            Command::WsSend(stream, _) => {
                self.emit(Event::StreamError { stream, error: StreamError::NotWebSocket }).await?;
            }
            Command::Request(req) => {
                let error = StreamError::InvalidRequest("this HTTP/1.1 connection is a WebSocket now".into());
                self.emit(Event::StreamError { stream: req.stream, error }).await?;
            }
            Command::WsUpgrade(up) => {
                let error = StreamError::InvalidRequest("this HTTP/1.1 connection is a WebSocket already".into());
                self.emit(Event::StreamError { stream: up.stream, error }).await?;
            }
            Command::StreamInfo(stream, reply) => {
                let info = (stream == self.stream).then(|| StreamInfo {
                    stream,
                    method: http::Method::GET,
                    target: String::new(),
                    protocol: Protocol::Http1,
                    state: StreamState::WebSocket,
                });
                let _ = reply.send(info);
            }
            Command::Cancel(_) | Command::Shutdown => {}
        }
        Ok(())
    }

    /// Writes what is queued, within the close timeout.
    async fn flush_bounded(&mut self) {
        let wbuf = std::mem::take(&mut self.core.wbuf);
        let write = async {
            self.wr.write_all(&wbuf).await?;
            self.wr.flush().await
        };
        if let Ok(Err(e)) = tokio::time::timeout(self.core.close_timeout, write).await {
            tracing::debug!(error = %e, "could not send the close frame");
        }
    }

    /// Both close frames are exchanged: flush ours, let the server close the TCP connection
    /// first (RFC 6455 §7.1.1), bounded by the close timeout, then end.
    async fn finish_close(&mut self) -> SessionEnd {
        self.flush_bounded().await;
        let mut scratch = [0u8; 1024];
        let wait_eof = async {
            while let Ok(n) = self.rd.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.core.close_timeout, wait_eof).await;
        let _ = tokio::time::timeout(self.core.close_timeout, self.wr.shutdown()).await;
        if self.ctx.shutting_down {
            return SessionEnd::Shutdown;
        }
        let close = self.core.received_close.clone().flatten();
        self.down(DownReason::WsClosed { close, by_us: self.core.closed_by_us })
    }
}

/// Write some pending bytes, or flush once all are written. Cancel-safe.
async fn write_or_flush(wr: &mut WriteHalf<BoxIo>, wbuf: &[u8]) -> Step {
    if wbuf.is_empty() { Step::Flushed(wr.flush().await) } else { Step::Wrote(wr.write(wbuf).await) }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
