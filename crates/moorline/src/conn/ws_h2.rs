//! A WebSocket over one HTTP/2 stream (RFC 8441): the stream task behind an extended
//! CONNECT. It checks the `200`, then moves bytes between the stream's DATA frames and the
//! sans-IO session (its [`Inbound`] half here, its sending half in the [`Outbox`], shared
//! with the handles), reporting messages through the session's channel (so a slow owner
//! holds up the task's deliveries, and the task releases no flow-control capacity meanwhile,
//! which slows the server; the DATA that still comes it takes into a [`RecvHold`]).
//!
//! Handles send as over HTTP/1.1: the caller encodes into the outbox and hands the bytes
//! to h2 as DATA at once, within the stream's flow-control capacity; this task sends the
//! rest as capacity comes. Only messages that had to go through the worker (sent before
//! the `200`, or queued behind such a one, see `InChannel`) come on the task's own channel.
//!
//! While more than the outbox's high-water mark waits to be sent (a server that does not
//! read: no flow-control capacity), senders wait and the task takes no messages; DATA it
//! takes only into a [`RecvHold`] without releasing its capacity (as while a delivery to a
//! slow owner waits), so the server's window closes too and memory stays bounded by it;
//! the other streams of the connection go on. Keepalive pings go out after an interval of
//! silence; a server silent past the timeout takes the connection down.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{Reason, SendStream};
use moorline_proto::ws::{Carrier, ClientHandshake, Ended, SendError, SessionEvent};
use tokio::sync::mpsc;

use super::command::InChannel;
use super::delivery::{MAX_BATCH, MAX_BATCH_BYTES};
use super::recv_hold::RecvHold;
use super::shared::WsRegistration;
use crate::error::{Error, ProtocolFailure, StreamError};
use crate::event::Event;
use crate::ids::StreamRef;
use crate::wsio::{Access, Message, Outbox, Sink, WriteError, WsOptions, moves_timer, now, refused, tokio_instant};

/// A message for the stream task, sent through the worker (with what keeps later sends
/// behind it; `None` for the worker's own close at shutdown).
pub(crate) type WsSend = (Message, Option<InChannel>);

/// How a WebSocket stream ended, short of completing its closing handshake.
pub(crate) enum WsEnd {
    /// An h2 error (the caller sorts connection loss from stream failure).
    H2(h2::Error),
    /// The WebSocket failed; the owner gets this error.
    Failed(StreamError),
    /// The session dropped the sender: the stream was cancelled.
    Cancelled,
    /// Keepalive: nothing came within this timeout after our ping. The connection is
    /// taken down (the peer is silently gone, as an unanswered HTTP/2 PING says).
    KeepaliveTimeout(std::time::Duration),
}

impl From<h2::Error> for WsEnd {
    fn from(e: h2::Error) -> Self {
        WsEnd::H2(e)
    }
}

impl From<WriteError> for WsEnd {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::H2(e) => WsEnd::H2(e),
            // Not from an h2 sink; kept total rather than panic.
            WriteError::Io(e) => {
                tracing::debug!(error = %e, "WebSocket stream write failed");
                WsEnd::H2(h2::Error::from(Reason::INTERNAL_ERROR))
            }
        }
    }
}

/// Sends events to the session; `Err` when it is gone.
pub(crate) trait Report {
    async fn event(&self, ev: Event) -> Result<(), WsEnd>;
    /// Data messages of `stream`, in order, as one delivery (one message: as an event).
    async fn messages(&self, stream: StreamRef, messages: Vec<Message>) -> Result<(), WsEnd>;
    /// The WebSocket ended: a send on it from now on returns `error` (recorded before the
    /// owner hears of the end).
    fn ended(&self, error: Error);
    /// Handles send on the stream through `out` from now on, while the registration lives.
    fn register(&self, out: Arc<Outbox>) -> WsRegistration;
}

/// Runs the WebSocket of `stream` until it ends. The outbox's registration is left in
/// `registration`: the caller drops it once it has recorded how the stream ended, so a send
/// in between still meets the outbox (which refuses it) rather than the worker.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    report: &impl Report,
    stream: StreamRef,
    resp: ResponseFuture,
    mut send: SendStream<Bytes>,
    handshake: ClientHandshake,
    options: WsOptions,
    mut outgoing: mpsc::Receiver<WsSend>,
    registration: &mut Option<WsRegistration>,
) -> Result<(), WsEnd> {
    let response = resp.await?;
    let (parts, mut body) = response.into_parts();
    let negotiated = match handshake.check_response(Carrier::Http2, parts.status, &parts.headers) {
        Ok(n) => n,
        Err(e) => {
            send.send_reset(Reason::CANCEL);
            return Err(WsEnd::Failed(StreamError::WsHandshake(e)));
        }
    };
    let close_timeout = options.close_timeout;
    let (mut ws, out) = crate::wsio::start(&negotiated, &options, Sink::H2(send));
    // Handles send directly from now on: before the owner hears of the upgrade.
    *registration = Some(report.register(out.clone()));
    report
        .event(Event::WsUpgraded {
            stream,
            protocol: negotiated.protocol.clone(),
            deflate: negotiated.deflate,
            headers: parts.headers,
        })
        .await?;
    // One timer for the keepalive, moved when it fires or our ping is answered.
    let mut keepalive_at = ws.keepalive_deadline();
    let keepalive_on = keepalive_at.is_some();
    let keepalive = tokio::time::sleep_until(tokio_instant(keepalive_at));
    tokio::pin!(keepalive);
    // DATA taken while a delivery waited or the outbox was full (see `RecvHold`).
    let mut hold = RecvHold::default();
    // DATA taken, for the session.
    let mut fresh: Option<Bytes> = None;
    loop {
        if let Some(data) = fresh.take() {
            // Capacity goes back as the bytes go to the session; they are delivered before
            // more are read, so what is buffered stays bounded.
            let _ = body.flow_control().release_capacity(data.len());
            ws.receive(&data, now);
            let next = ws.keepalive_deadline();
            if moves_timer(keepalive_at, next) {
                keepalive_at = next;
                keepalive.as_mut().reset(tokio_instant(next));
            }
        }
        // Deliver what is decodable: data messages in batches (one channel operation each,
        // within one delivery's limits), anything else after the messages before it.
        let mut batch: Vec<Message> = Vec::new();
        let mut batch_bytes = 0;
        while let Some(event) = ws.next_event(&mut Access(&out)) {
            if !matches!(event, SessionEvent::Message(_)) && !batch.is_empty() {
                hold.during(&mut body, report.messages(stream, std::mem::take(&mut batch))).await?;
                batch_bytes = 0;
            }
            match event {
                SessionEvent::Message(message) => {
                    batch_bytes += message.len();
                    batch.push(message);
                    if batch.len() >= MAX_BATCH || batch_bytes >= MAX_BATCH_BYTES {
                        hold.during(&mut body, report.messages(stream, std::mem::take(&mut batch))).await?;
                        batch_bytes = 0;
                    }
                }
                SessionEvent::PeerClosed(frame) => {
                    report.ended(Error::Stream(StreamError::WsClosed));
                    let ev = Event::Ws { stream, message: Message::Close(frame) };
                    hold.during(&mut body, report.event(ev)).await?;
                }
                SessionEvent::ProtocolError(e) => {
                    // Tell the owner now, then close properly (the session queued our close
                    // frame with the code).
                    report.ended(Error::Stream(StreamError::WsProtocol(e.clone())));
                    report.event(Event::StreamError { stream, error: StreamError::WsProtocol(e.clone()) }).await?;
                    end_gracefully(&out, &mut body, close_timeout).await;
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            hold.during(&mut body, report.messages(stream, batch)).await?;
        }
        let status = out.status();
        if status.ended {
            end_gracefully(&out, &mut body, close_timeout).await;
            return Ok(());
        }
        // Over the high-water mark no messages are taken, and DATA only into the hold,
        // its capacity kept (see the module doc).
        let (room, deadline) = (status.room, status.close_deadline);
        if room {
            // What was held goes to the session first, in order, then how the body ended.
            if let Some(data) = hold.take_bytes() {
                fresh = Some(data);
                continue;
            }
            match hold.take_end() {
                Some(Err(e)) => return Err(WsEnd::H2(e)),
                Some(Ok(())) => return Err(WsEnd::Failed(StreamError::Protocol(ProtocolFailure::WsStreamEnded))),
                None => {}
            }
        }
        let timer = tokio::select! {
            biased;
            m = outgoing.recv(), if room => match m {
                Some((message, _in_channel)) => {
                    match out.send_from_driver(&message) {
                        Ok(()) => {}
                        // After our close frame nothing more may go out; say so once.
                        Err(SendError::Closed { first: false }) => tracing::debug!(?stream, "message after close refused"),
                        Err(e) => report.event(Event::StreamError { stream, error: refused(e) }).await?,
                    }
                    false
                }
                None => return Err(WsEnd::Cancelled),
            },
            r = poll_fn(|cx| out.poll_write_out(cx)) => {
                r?;
                false
            }
            () = poll_fn(|cx| out.poll_woken(cx)) => false,
            // With room (nothing is held then: it went to the session above), DATA goes to
            // the session; without, and the body's end, into the hold (handled above).
            d = body.data(), if !hold.ended() => {
                match d {
                    Some(Ok(data)) if room => fresh = Some(data),
                    d => hold.hold(d),
                }
                false
            }
            () = sleep_until(deadline), if deadline.is_some() => true,
            () = &mut keepalive, if keepalive_on => {
                // Always set again below: a timer that fired stays ready until it is reset.
                keepalive_at = None;
                true
            }
        };
        if !timer {
            continue;
        }
        match ws.on_timeout(now(), &mut Access(&out)) {
            Some(Ended::CloseTimeout(timeout)) => {
                if let (Some(Sink::H2(mut send)), _) = out.end() {
                    send.send_reset(Reason::CANCEL);
                }
                return Err(WsEnd::Failed(StreamError::WsCloseTimeout(timeout)));
            }
            Some(Ended::KeepaliveTimeout(timeout)) => {
                tracing::debug!(?stream, ?timeout, "WebSocket keepalive: the server fell silent");
                return Err(WsEnd::KeepaliveTimeout(timeout));
            }
            Some(_) | None => {}
        }
        let next = ws.keepalive_deadline();
        if next != keepalive_at {
            keepalive_at = next;
            keepalive.as_mut().reset(tokio_instant(next));
        }
    }
}

/// Sends what is queued (our close frame), ends our side, and waits for the server to end
/// its side, all within the close timeout. Dropping the stream earlier would reset it, and
/// h2 discards DATA still queued by a reset. Direct sends are refused from now on.
async fn end_gracefully(out: &Outbox, body: &mut h2::RecvStream, timeout: Duration) {
    let (Some(Sink::H2(mut send)), rest) = out.end() else { return };
    let end = async {
        flush(&mut send, rest).await?;
        send.send_data(Bytes::new(), true)?;
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
        }
        Ok::<(), WsEnd>(())
    };
    match tokio::time::timeout(timeout, end).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => tracing::debug!("WebSocket stream not ended cleanly"),
    }
}

/// Sends `rest` under flow control.
async fn flush(send: &mut SendStream<Bytes>, mut rest: BytesMut) -> Result<(), WsEnd> {
    while !rest.is_empty() {
        send.reserve_capacity(rest.len());
        let capacity = send.capacity();
        if capacity > 0 {
            send.send_data(rest.split_to(capacity.min(rest.len())).freeze(), false)?;
            continue;
        }
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(WsEnd::H2(e)),
            None => return Err(WsEnd::H2(h2::Error::from(Reason::STREAM_CLOSED))),
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
