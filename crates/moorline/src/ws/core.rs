//! [`WsCore`]: one WebSocket's protocol state between the codec and a driver (the HTTP/1.1
//! session or an HTTP/2 stream task): the decoder and its read buffer, the [`Outbox`] it
//! shares with the handles, automatic pongs, the keepalive pings and the closing handshake.
//! No I/O here: drivers move the bytes and deliver what it returns.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use moorline_proto::ws::{CloseFrame, Decoder, EncodeOptions, Encoder, Message, Negotiated, ProtocolError, Role};
use tokio::io::WriteHalf;
use tokio::time::Instant;

use super::options::WsOptions;
use super::outbox::Outbox;
use crate::dial::BoxIo;
use crate::error::StreamError;
use crate::options::Keepalive;

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
    /// Ping after this long without an inbound byte; give up if nothing comes within the timeout.
    keepalive: Option<Keepalive>,
    /// When the driver last read something from the peer.
    last_rx: Instant,
    /// When our keepalive ping was queued, while nothing has come since.
    ping_sent: Option<Instant>,
}

/// How long the keepalive timer rests when it has nothing to watch.
const FAR_REST: std::time::Duration = std::time::Duration::from_secs(86_400 * 365);

/// What the keepalive timer says when it fires.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeepaliveTick {
    /// Fire again at this instant.
    Next(Instant),
    /// Our ping went unanswered for the whole timeout: the peer is gone.
    Dead(std::time::Duration),
}

/// `at + d`, or a far-future instant when that overflows (`Duration::MAX` means "never").
pub(crate) fn deadline_after(at: Instant, d: std::time::Duration) -> Instant {
    // About 30 years, as tokio's own "far future".
    const FAR: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);
    at.checked_add(d).or_else(|| at.checked_add(FAR)).unwrap_or(at)
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
            keepalive: options.keepalive,
            last_rx: Instant::now(),
            ping_sent: None,
        }
    }

    /// The driver read bytes from the peer: it is alive. When this answers our keepalive
    /// ping, returns when the timer should fire next (the next ping is due an interval after
    /// this); otherwise the timer stays as it is.
    #[must_use]
    pub(crate) fn on_rx(&mut self) -> Option<Instant> {
        let k = self.keepalive?;
        self.last_rx = Instant::now();
        self.ping_sent.take()?;
        Some(deadline_after(self.last_rx, k.interval))
    }

    /// When the keepalive timer should first fire (`None`: keepalive is off).
    pub(crate) fn keepalive_start(&self) -> Option<Instant> {
        self.keepalive.map(|k| deadline_after(self.last_rx, k.interval))
    }

    /// The keepalive timer fired at `now`: queue a ping after a whole interval of silence,
    /// declare the peer dead when nothing came within the timeout after our ping, and say
    /// when to fire next. After a close frame either way, the closing handshake has its own
    /// timeout: the timer rests.
    pub(crate) fn keepalive_tick(&mut self, now: Instant) -> KeepaliveTick {
        let Some(k) = self.keepalive else { return KeepaliveTick::Next(deadline_after(now, FAR_REST)) };
        if let Some(sent) = self.ping_sent {
            if self.last_rx < sent {
                let give_up = deadline_after(sent, k.timeout);
                if now < give_up {
                    return KeepaliveTick::Next(give_up);
                }
                return KeepaliveTick::Dead(k.timeout);
            }
            self.ping_sent = None;
        }
        let due = deadline_after(self.last_rx, k.interval);
        if now < due {
            return KeepaliveTick::Next(due);
        }
        let mut out = self.out.lock();
        if out.sent_close.is_some() || self.received_close.is_some() {
            return KeepaliveTick::Next(deadline_after(now, FAR_REST));
        }
        out.encode_control(&Message::Ping(Bytes::new()));
        drop(out);
        self.ping_sent = Some(now);
        KeepaliveTick::Next(deadline_after(now, k.timeout))
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
                        // Replaces a pong still waiting to leave: only the latest ping is answered.
                        self.out.lock().queue_pong(payload.clone());
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
        self.out.lock().sent_close.map(|at| deadline_after(at, self.close_timeout))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use moorline_proto::ws::{Decoder, Limits, Message, Negotiated, Role, write_frame};

    use tokio::time::Instant;

    use super::{KeepaliveTick, WsCore};
    use crate::options::Keepalive;
    use crate::ws::WsOptions;

    fn core(options: &WsOptions) -> WsCore {
        WsCore::new(&Negotiated { protocol: None, deflate: None }, options, BytesMut::new(), None)
    }

    /// A server's (unmasked) ping.
    fn ping(core: &mut WsCore, payload: &[u8]) {
        write_frame(true, false, 0x9, payload, None, &mut core.rbuf);
    }

    /// Decodes everything the client queued, as the server would.
    fn sent(core: &WsCore) -> Vec<Message> {
        let mut wire = BytesMut::from(&core.out.take_chunk(usize::MAX)[..]);
        let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
        let mut out = Vec::new();
        while let Some(m) = decoder.decode(&mut wire).unwrap() {
            out.push(m);
        }
        assert!(wire.is_empty());
        out
    }

    #[test]
    fn only_the_latest_ping_is_answered_when_several_arrive_before_the_pong_leaves() {
        let mut core = core(&WsOptions::default());
        for p in [&b"p1"[..], b"p2", b"p3"] {
            ping(&mut core, p);
        }
        assert!(core.next_incoming().unwrap().is_none());
        // One pong waits, whatever the number of pings: its frame is all that is queued.
        assert_eq!(core.out.queued(), 2 + 4 + 2);
        assert_eq!(sent(&core), [Message::Pong(Bytes::from_static(b"p3"))]);

        // Once it left, the next ping gets a pong of its own.
        ping(&mut core, b"p4");
        assert!(core.next_incoming().unwrap().is_none());
        assert_eq!(sent(&core), [Message::Pong(Bytes::from_static(b"p4"))]);

        // A flood: 10 000 pings queue one pong of at most 131 bytes.
        for i in 0..10_000u32 {
            ping(&mut core, format!("flood {i:>100}").as_bytes());
            assert!(core.next_incoming().unwrap().is_none());
            assert!(core.out.queued() <= 131, "{}", core.out.queued());
        }
        assert_eq!(sent(&core), [Message::Pong(Bytes::from(format!("flood {:>100}", 9_999)))]);
    }

    #[test]
    fn the_waiting_pong_leaves_before_a_message_queued_after_it_and_before_our_close() {
        let mut core = core(&WsOptions::default());
        ping(&mut core, b"a");
        assert!(core.next_incoming().unwrap().is_none());
        core.send(&Message::text("after")).unwrap();
        ping(&mut core, b"b");
        assert!(core.next_incoming().unwrap().is_none());
        core.send(&Message::Close(None)).unwrap();
        assert_eq!(
            sent(&core),
            [
                Message::Pong(Bytes::from_static(b"a")),
                Message::text("after"),
                Message::Pong(Bytes::from_static(b"b")),
                Message::Close(None),
            ]
        );
    }

    #[test]
    fn keepalive_pings_after_silence_and_gives_up_when_nothing_comes() {
        let k = Keepalive { interval: Duration::from_secs(10), timeout: Duration::from_secs(3) };
        let mut core = core(&WsOptions::default().keepalive(Some(k)));
        let t0 = core.keepalive_start().unwrap() - k.interval;
        // Life before the interval is up: the timer moves on, no ping.
        core.last_rx = t0 + Duration::from_secs(4);
        assert_eq!(core.keepalive_tick(t0 + k.interval), KeepaliveTick::Next(t0 + Duration::from_secs(14)));
        assert!(sent(&core).is_empty());
        // A whole interval of silence: a ping, and the timeout starts.
        let at = t0 + Duration::from_secs(14);
        assert_eq!(core.keepalive_tick(at), KeepaliveTick::Next(at + k.timeout));
        assert_eq!(sent(&core), [Message::Ping(Bytes::new())]);
        // Anything received meanwhile counts as the answer.
        core.last_rx = at + Duration::from_secs(1);
        let next = at + Duration::from_secs(11);
        assert_eq!(core.keepalive_tick(at + k.timeout), KeepaliveTick::Next(next));
        // Silence again: ping, then nothing: dead.
        assert_eq!(core.keepalive_tick(next), KeepaliveTick::Next(next + k.timeout));
        assert_eq!(core.keepalive_tick(next + k.timeout), KeepaliveTick::Dead(k.timeout));
        // A read that answers our ping moves the timer to an interval after it (not to the
        // end of the timeout); a read with no ping out leaves the timer alone.
        let mut core = self::core(&WsOptions::default().keepalive(Some(k)));
        let start = core.keepalive_start().unwrap();
        assert_eq!(core.keepalive_tick(start), KeepaliveTick::Next(start + k.timeout));
        let before = Instant::now();
        let next = core.on_rx().unwrap();
        assert!(next >= before + k.interval && next <= Instant::now() + k.interval, "{next:?}");
        assert_eq!(core.on_rx(), None);

        // `Duration::MAX` saturates instead of overflowing.
        let forever = Keepalive { interval: Duration::MAX, timeout: Duration::MAX };
        let mut core = self::core(&WsOptions::default().keepalive(Some(forever)).close_timeout(Duration::MAX));
        let start = core.keepalive_start().unwrap();
        assert!(matches!(core.keepalive_tick(start), KeepaliveTick::Next(_)));
        core.send(&Message::Close(None)).unwrap();
        assert!(core.close_deadline().is_some());
    }
}
