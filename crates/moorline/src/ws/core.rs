//! [`WsCore`]: one WebSocket's protocol state between the codec and a driver (the HTTP/1.1
//! session or an HTTP/2 stream task): the decoder and its read buffer, the [`Outbox`] it
//! shares with the handles, automatic pongs, and the closing handshake. No I/O here: drivers
//! move the bytes and deliver what it returns.

use std::sync::Arc;

use bytes::BytesMut;
use moorline_proto::ws::{CloseFrame, Decoder, EncodeOptions, Encoder, Message, Negotiated, ProtocolError, Role};
use tokio::io::WriteHalf;
use tokio::time::Instant;

use super::options::WsOptions;
use super::outbox::Outbox;
use crate::dial::BoxIo;
use crate::error::StreamError;

/// What the driver must do with something decoded.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Deliver this message to the owner.
    Message(Message),
    /// The peer's close frame (delivered to the owner too); ours is answered or was sent.
    Closed(Option<CloseFrame>),
}

/// One WebSocket's protocol state.
#[derive(Debug)]
pub(crate) struct WsCore {
    decoder: Decoder,
    /// The sending side, shared with the handles (see [`Outbox`]).
    pub(crate) out: Arc<Outbox>,
    /// Received bytes not yet decoded.
    pub(crate) rbuf: BytesMut,
    auto_pong: bool,
    surface_control: bool,
    pub(crate) close_timeout: std::time::Duration,
    /// The peer's close frame, once received.
    pub(crate) received_close: Option<Option<CloseFrame>>,
    /// A send after our close was refused once already (reported once).
    pub(crate) refused_after_close: bool,
}

impl WsCore {
    /// The state of a client WebSocket that agreed `negotiated`; `rbuf` holds bytes that
    /// arrived right after the handshake. With `io` (HTTP/1.1), senders may write the socket
    /// themselves.
    pub(crate) fn new(
        negotiated: &Negotiated,
        options: &WsOptions,
        rbuf: BytesMut,
        io: Option<WriteHalf<BoxIo>>,
    ) -> Self {
        let encode = EncodeOptions {
            max_frame_payload: options.max_frame_payload,
            compress_min_size: options.compress_min_size,
            ..EncodeOptions::default()
        };
        Self {
            decoder: Decoder::new(Role::Client, options.limits, negotiated.deflate),
            out: Arc::new(Outbox::new(Encoder::new(Role::Client, encode, negotiated.deflate), io)),
            rbuf,
            auto_pong: options.auto_pong,
            surface_control: options.surface_control,
            close_timeout: options.close_timeout,
            received_close: None,
            refused_after_close: false,
        }
    }

    /// Decodes the next thing worth telling the owner from [`rbuf`](Self::rbuf).
    ///
    /// Pings are answered (queued in the outbox); a close frame is answered with ours (same
    /// code) unless we sent one first. After an error the driver must [`fail`](Self::fail)
    /// and end the connection.
    pub(crate) fn next_incoming(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            let Some(message) = self.decoder.decode(&mut self.rbuf)? else { return Ok(None) };
            if self.received_close.is_some() {
                // Nothing may follow a close frame; ignore rather than fail the finished socket.
                continue;
            }
            match message {
                Message::Ping(payload) => {
                    if self.auto_pong {
                        let mut out = self.out.lock();
                        if out.sent_close.is_none() {
                            out.encode_control(&Message::Pong(payload.clone()));
                        }
                    }
                    if self.surface_control {
                        return Ok(Some(Incoming::Message(Message::Ping(payload))));
                    }
                }
                Message::Pong(payload) => {
                    if self.surface_control {
                        return Ok(Some(Incoming::Message(Message::Pong(payload))));
                    }
                }
                Message::Close(frame) => {
                    let mut out = self.out.lock();
                    if out.sent_close.is_none() {
                        // Echo the code (RFC 6455 §5.5.1); an empty close is answered empty.
                        let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                        out.encode_control(&Message::Close(reply));
                        out.sent_close = Some(Instant::now());
                    }
                    out.peer_closed = true;
                    drop(out);
                    self.received_close = Some(frame.clone());
                    return Ok(Some(Incoming::Closed(frame)));
                }
                data => return Ok(Some(Incoming::Message(data))),
            }
        }
    }

    /// Queues `message`. A close frame starts the closing handshake; nothing may be sent after it.
    pub(crate) fn send(&mut self, message: &Message) -> Result<(), StreamError> {
        self.out.lock().encode(message)
    }

    /// After a protocol error: queue a close frame with the matching code (if none was sent).
    pub(crate) fn fail(&mut self, error: &ProtocolError) {
        let mut out = self.out.lock();
        if out.sent_close.is_none() {
            out.encode_control(&Message::Close(Some(CloseFrame::new(error.close_code(), ""))));
            out.sent_close = Some(Instant::now());
            out.closed_by_us = true;
        }
    }

    /// Whether our close frame has been queued.
    pub(crate) fn sent_close(&self) -> bool {
        self.out.lock().sent_close.is_some()
    }

    /// Whether our close frame went out before the peer's arrived.
    pub(crate) fn closed_by_us(&self) -> bool {
        self.out.lock().closed_by_us
    }

    /// Both close frames have been exchanged.
    pub(crate) fn is_closed(&self) -> bool {
        self.received_close.is_some() && self.sent_close()
    }

    /// When the closing handshake times out, if one is under way.
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        if self.received_close.is_some() {
            return None;
        }
        self.out.lock().sent_close.map(|at| at + self.close_timeout)
    }
}
