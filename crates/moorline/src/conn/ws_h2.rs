//! A WebSocket over one HTTP/2 stream (RFC 8441): the stream task behind an extended
//! CONNECT. It checks the `200`, then moves bytes between the stream's DATA frames and
//! [`WsCore`], reporting messages through the session's channel (so a slow owner stops
//! the task, which stops releasing flow-control capacity, which slows the server) and
//! taking outgoing messages from its own channel, fed by the session.
//!
//! While more than the outbox's high-water mark waits to be sent (a server that does not
//! read: no flow-control capacity), the task takes neither messages nor DATA, so the
//! server's window closes too and memory stays bounded. Keepalive pings go out after an
//! interval of silence; a server silent past the timeout takes the connection down.

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{Reason, SendStream};
use moorline_proto::ws::{Carrier, ClientHandshake};
use tokio::sync::mpsc;

use crate::error::{Error, ProtocolFailure, StreamError};
use crate::event::Event;
use crate::ids::StreamRef;
use crate::ws::{Incoming, KeepaliveTick, Message, WRITE_HIGH_WATER, WsCore, WsOptions, deadline_after};

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

/// Sends events to the session; `Err` when it is gone.
pub(crate) trait Report {
    async fn event(&self, ev: Event) -> Result<(), WsEnd>;
    /// The WebSocket ended: a send on it from now on returns `error` (recorded before the
    /// owner hears of the end).
    fn ended(&self, error: Error);
}

/// Runs the WebSocket of `stream` until it ends.
pub(crate) async fn run(
    report: &impl Report,
    stream: StreamRef,
    resp: ResponseFuture,
    mut send: SendStream<Bytes>,
    handshake: ClientHandshake,
    options: WsOptions,
    mut outgoing: mpsc::Receiver<Message>,
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
    report
        .event(Event::WsUpgraded {
            stream,
            protocol: negotiated.protocol.clone(),
            deflate: negotiated.deflate,
            headers: parts.headers,
        })
        .await?;
    let mut core = WsCore::new(&negotiated, &options, BytesMut::new(), None);
    // One timer for the keepalive, reset when it fires or our ping is answered.
    let keepalive_on = core.keepalive_start().is_some();
    let keepalive = tokio::time::sleep_until(
        core.keepalive_start().unwrap_or_else(|| deadline_after(tokio::time::Instant::now(), std::time::Duration::MAX)),
    );
    tokio::pin!(keepalive);
    loop {
        // Deliver what is decodable.
        loop {
            match core.next_incoming() {
                Ok(None) => break,
                Ok(Some(Incoming::Message(message))) => report.event(Event::Ws { stream, message }).await?,
                Ok(Some(Incoming::Closed(frame))) => {
                    report.ended(Error::Stream(StreamError::WsClosed));
                    report.event(Event::Ws { stream, message: Message::Close(frame) }).await?;
                }
                Err(e) => {
                    // Tell the owner now, then close properly (our close frame carries the code).
                    report.ended(Error::Stream(StreamError::WsProtocol(e.clone())));
                    report.event(Event::StreamError { stream, error: StreamError::WsProtocol(e.clone()) }).await?;
                    core.fail(&e);
                    end_gracefully(&mut send, &mut body, &mut core).await;
                    return Ok(());
                }
            }
        }
        if core.is_closed() {
            end_gracefully(&mut send, &mut body, &mut core).await;
            return Ok(());
        }
        let queued = core.out.queued();
        if queued > 0 {
            send.reserve_capacity(queued);
        }
        let deadline = core.close_deadline();
        // Over the high-water mark neither messages nor DATA are taken (see the module doc).
        let room = queued < WRITE_HIGH_WATER;
        tokio::select! {
            biased;
            m = outgoing.recv(), if room => match m {
                Some(message) => {
                    if let Err(error) = core.send(&message) {
                        let first = !matches!(error, StreamError::WsClosed) || !core.refused_after_close;
                        core.refused_after_close |= matches!(error, StreamError::WsClosed);
                        if first {
                            report.event(Event::StreamError { stream, error }).await?;
                        }
                    }
                }
                None => return Err(WsEnd::Cancelled),
            },
            cap = poll_fn(|cx| send.poll_capacity(cx)), if queued > 0 => match cap {
                Some(Ok(n)) if n > 0 => {
                    send.send_data(core.out.take_chunk(n), false)?;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(WsEnd::H2(e)),
                None => return Err(WsEnd::H2(h2::Error::from(Reason::STREAM_CLOSED))),
            },
            d = body.data(), if room => match d {
                Some(Ok(data)) => {
                    // Capacity goes back as the bytes are taken; they are delivered before
                    // more are read, so what is buffered stays bounded.
                    let _ = body.flow_control().release_capacity(data.len());
                    if let Some(next) = core.on_rx() {
                        keepalive.as_mut().reset(next);
                    }
                    core.rbuf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(WsEnd::H2(e)),
                None => {
                    return Err(WsEnd::Failed(StreamError::Protocol(ProtocolFailure::WsStreamEnded)));
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                send.send_reset(Reason::CANCEL);
                return Err(WsEnd::Failed(StreamError::WsCloseTimeout(core.close_timeout)));
            }
            () = &mut keepalive, if keepalive_on => match core.keepalive_tick(tokio::time::Instant::now()) {
                KeepaliveTick::Next(at) => keepalive.as_mut().reset(at),
                KeepaliveTick::Dead(timeout) => {
                    tracing::debug!(?stream, ?timeout, "WebSocket keepalive: the server fell silent");
                    return Err(WsEnd::KeepaliveTimeout(timeout));
                }
            },
        }
    }
}

/// Sends what is queued (our close frame), ends our side, and waits for the server to end
/// its side, all within the close timeout. Dropping the stream earlier would reset it, and
/// h2 discards DATA still queued by a reset.
async fn end_gracefully(send: &mut SendStream<Bytes>, body: &mut h2::RecvStream, core: &mut WsCore) {
    let timeout = core.close_timeout;
    let end = async {
        flush(send, core).await?;
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

/// Writes the whole write buffer under flow control.
async fn flush(send: &mut SendStream<Bytes>, core: &mut WsCore) -> Result<(), WsEnd> {
    loop {
        let queued = core.out.queued();
        if queued == 0 {
            return Ok(());
        }
        send.reserve_capacity(queued);
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(0)) => {}
            Some(Ok(n)) => send.send_data(core.out.take_chunk(n), false)?,
            Some(Err(e)) => return Err(WsEnd::H2(e)),
            None => return Err(WsEnd::H2(h2::Error::from(Reason::STREAM_CLOSED))),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
