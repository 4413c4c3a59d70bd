//! [`WsCore`]: one WebSocket's protocol state between the codec and a driver (the HTTP/1.1
//! session or an HTTP/2 stream task): read and write buffers, automatic pongs, and the
//! closing handshake. No I/O here: drivers move the bytes and deliver what it returns.

use bytes::BytesMut;
use moorline_proto::ws::{CloseFrame, Decoder, EncodeOptions, Encoder, Message, Negotiated, ProtocolError, Role};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use super::options::WsOptions;
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
    encoder: Encoder,
    /// Received bytes not yet decoded.
    pub(crate) rbuf: BytesMut,
    /// Encoded bytes not yet written.
    pub(crate) wbuf: BytesMut,
    auto_pong: bool,
    surface_control: bool,
    pub(crate) close_timeout: std::time::Duration,
    /// When our close frame was queued.
    pub(crate) sent_close: Option<Instant>,
    /// Whether our close frame went out before the peer's arrived.
    pub(crate) closed_by_us: bool,
    /// The peer's close frame, once received.
    pub(crate) received_close: Option<Option<CloseFrame>>,
    /// A send after our close was refused once already (reported once).
    pub(crate) refused_after_close: bool,
    rng: StdRng,
}

impl WsCore {
    /// The state of a client WebSocket that agreed `negotiated`; `rbuf` holds bytes that
    /// arrived right after the handshake.
    pub(crate) fn new(negotiated: &Negotiated, options: &WsOptions, rbuf: BytesMut) -> Self {
        let encode = EncodeOptions {
            max_frame_payload: options.max_frame_payload,
            compress_min_size: options.compress_min_size,
            ..EncodeOptions::default()
        };
        Self {
            decoder: Decoder::new(Role::Client, options.limits, negotiated.deflate),
            encoder: Encoder::new(Role::Client, encode, negotiated.deflate),
            rbuf,
            wbuf: BytesMut::new(),
            auto_pong: options.auto_pong,
            surface_control: options.surface_control,
            close_timeout: options.close_timeout,
            sent_close: None,
            closed_by_us: false,
            received_close: None,
            refused_after_close: false,
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }

    /// Decodes the next thing worth telling the owner from [`rbuf`](Self::rbuf).
    ///
    /// Pings are answered (into [`wbuf`](Self::wbuf)); a close frame is answered with ours
    /// (same code) unless we sent one first. After an error the driver must
    /// [`fail`](Self::fail) and end the connection.
    pub(crate) fn next_incoming(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            let Some(message) = self.decoder.decode(&mut self.rbuf)? else { return Ok(None) };
            if self.received_close.is_some() {
                // Nothing may follow a close frame; ignore rather than fail the finished socket.
                continue;
            }
            match message {
                Message::Ping(payload) => {
                    if self.auto_pong && self.sent_close.is_none() {
                        self.encode(&Message::Pong(payload.clone()));
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
                    if self.sent_close.is_none() {
                        // Echo the code (RFC 6455 §5.5.1); an empty close is answered empty.
                        let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
                        self.encode(&Message::Close(reply));
                        self.sent_close = Some(Instant::now());
                    }
                    self.received_close = Some(frame.clone());
                    return Ok(Some(Incoming::Closed(frame)));
                }
                data => return Ok(Some(Incoming::Message(data))),
            }
        }
    }

    /// Queues `message`. A close frame starts the closing handshake; nothing may be sent after it.
    pub(crate) fn send(&mut self, message: &Message) -> Result<(), StreamError> {
        if self.sent_close.is_some() {
            return Err(StreamError::WsClosed);
        }
        let rng = &mut self.rng;
        self.encoder
            .encode(message, &mut || rng.random(), &mut self.wbuf)
            .map_err(|e| StreamError::InvalidRequest(e.to_string()))?;
        if matches!(message, Message::Close(_)) {
            self.sent_close = Some(Instant::now());
            self.closed_by_us = self.received_close.is_none();
        }
        Ok(())
    }

    /// After a protocol error: queue a close frame with the matching code (if none was sent).
    pub(crate) fn fail(&mut self, error: &ProtocolError) {
        if self.sent_close.is_none() {
            self.encode(&Message::Close(Some(CloseFrame::new(error.close_code(), ""))));
            self.sent_close = Some(Instant::now());
            self.closed_by_us = true;
        }
    }

    /// Both close frames have been exchanged.
    pub(crate) fn is_closed(&self) -> bool {
        self.sent_close.is_some() && self.received_close.is_some()
    }

    /// When the closing handshake times out, if one is under way.
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        self.sent_close.filter(|_| self.received_close.is_none()).map(|at| at + self.close_timeout)
    }

    fn encode(&mut self, message: &Message) {
        let rng = &mut self.rng;
        if let Err(e) = self.encoder.encode(message, &mut || rng.random(), &mut self.wbuf) {
            // Our own control frames are always valid; log rather than panic if not.
            tracing::error!(error = %e, "could not encode a control frame");
        }
    }
}
