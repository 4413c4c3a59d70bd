//! [`Decoder`]: received bytes in, whole messages out, every rule of RFC 6455 and
//! RFC 7692 checked, memory bounded by the configured limits.

use bytes::{Buf, Bytes, BytesMut};

use super::close::{BadClose, parse_close};
use super::deflate::Inflater;
use super::extension::DeflateParams;
use super::mask::apply_mask;
use super::message::Message;
use super::protocol_error::ProtocolError;
use super::utf8::Utf8Validator;
use super::utf8_bytes::Utf8Bytes;

/// Which end of the connection we are: it decides who masks (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We are the client: we mask, the server must not.
    Client,
    /// We are the server: the client must mask, we do not.
    Server,
}

/// Size limits for received data.
///
/// A frame or message over its limit is refused as soon as its header (or,
/// compressed, its inflated size) shows it, before it is buffered whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload accepted (default 16 MiB).
    pub max_frame_size: usize,
    /// Largest message accepted, after decompression, fragments joined (default 64 MiB).
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_frame_size: 16 << 20, max_message_size: 64 << 20 }
    }
}

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// A frame header whose payload has not fully arrived yet.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: usize,
}

/// A fragmented (or compressed) data message being received.
#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    /// Uncompressed payload so far.
    plain: BytesMut,
    /// Inflated payload so far (compressed messages).
    inflated: Vec<u8>,
    utf8: Utf8Validator,
}

/// Decodes WebSocket frames from a byte buffer into [`Message`]s.
///
/// Feed it whatever arrived; it consumes complete frames, keeps partial ones in
/// the buffer (reserving room for the rest, up to the limits) and returns one
/// message at a time. Unfragmented, uncompressed payloads are handed out without
/// a copy (`Bytes` split off the read buffer).
///
/// ```
/// use bytes::BytesMut;
/// use moorline_proto::ws::{Decoder, Limits, Message, Role};
///
/// let mut decoder = Decoder::new(Role::Client, Limits::default(), None);
/// let mut buf = BytesMut::from(&[0x01, 0x03, b'H', b'e', b'l'][..]); // text, FIN=0
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None);
/// buf.extend_from_slice(&[0x80, 0x02, b'l', b'o']); // continuation, FIN=1
/// assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Message::text("Hello")));
///
/// let mut bad = BytesMut::from(&[0x83, 0x00][..]); // opcode 3 is reserved
/// assert_eq!(decoder.decode(&mut bad).unwrap_err().close_code().0, 1002);
/// ```
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    header: Option<Header>,
    partial: Option<Partial>,
    inflater: Option<Inflater>,
    /// UTF-8 checked so far of the text frame still arriving (validator, payload bytes
    /// checked): invalid text fails before the frame is complete (Autobahn 6.4.3/6.4.4).
    early: Option<(Utf8Validator, usize)>,
}

impl Decoder {
    /// A decoder for `role` with `limits`, and permessage-deflate if it was negotiated.
    pub fn new(role: Role, limits: Limits, deflate: Option<DeflateParams>) -> Self {
        let inflater = deflate.map(|d| {
            Inflater::new(match role {
                Role::Client => d.server_no_context_takeover,
                Role::Server => d.client_no_context_takeover,
            })
        });
        Self { role, limits, header: None, partial: None, inflater, early: None }
    }

    /// The next complete message in `src`, consuming its bytes; `None` when more
    /// bytes are needed. After an error the connection must be closed (with
    /// [`ProtocolError::close_code`]); the decoder's state is then unspecified.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if let Some(message) = self.decode_short(src) {
            return message.map(Some);
        }
        loop {
            let header = match self.header {
                Some(h) => h,
                None => match self.parse_header(src)? {
                    Some(h) => h,
                    None => return Ok(None),
                },
            };
            if src.len() < header.len {
                self.header = Some(header);
                self.check_early(&header, src)?;
                src.reserve(header.len - src.len());
                return Ok(None);
            }
            self.header = None;
            let mut payload = src.split_to(header.len);
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            if let Some(message) = self.frame(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// The common case in one step: a short (under 126 bytes), whole, unfragmented and
    /// uncompressed text or binary frame from a server, with nothing in progress. `None`
    /// when the case does not apply (the general path then decides, with every check).
    #[inline]
    fn decode_short(&mut self, src: &mut BytesMut) -> Option<Result<Message, ProtocolError>> {
        let [b0, b1, ..] = src[..] else { return None };
        // FIN, no RSV bits, text or binary; unmasked with a 7-bit length.
        let len = usize::from(b1);
        if !(b0 == 0x81 || b0 == 0x82)
            || b1 >= 126
            || self.role != Role::Client
            || self.header.is_some()
            || self.partial.is_some()
            || src.len() < 2 + len
            || len > self.limits.max_frame_size
            || len > self.limits.max_message_size
        {
            return None;
        }
        src.advance(2);
        let payload = src.split_to(len).freeze();
        if b0 == 0x82 {
            return Some(Ok(Message::Binary(payload)));
        }
        Some(match simdutf8::basic::from_utf8(&payload) {
            Ok(_) => Ok(Message::Text(Utf8Bytes::from_validated(payload))),
            Err(_) => Err(ProtocolError::InvalidUtf8),
        })
    }

    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Validates the UTF-8 of a text frame's payload that has arrived so far (unmasked,
    /// uncompressed frames: what a server sends), so that invalid text fails fast.
    fn check_early(&mut self, h: &Header, arrived: &[u8]) -> Result<(), ProtocolError> {
        let text = match h.opcode {
            TEXT => !h.rsv1,
            CONTINUATION => self.partial.as_ref().is_some_and(|p| p.text && !p.compressed),
            _ => false,
        };
        if !text || h.mask.is_some() {
            return Ok(());
        }
        let (validator, checked) = match self.early.as_mut() {
            Some(early) => early,
            None => {
                let start = match (&self.partial, h.opcode) {
                    (Some(p), CONTINUATION) => p.utf8.clone(),
                    _ => Utf8Validator::default(),
                };
                self.early.insert((start, 0))
            }
        };
        validator.feed(&arrived[*checked..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        *checked = arrived.len();
        Ok(())
    }

    /// Parses and consumes one frame header, checking everything it can tell.
    fn parse_header(&self, src: &mut BytesMut) -> Result<Option<Header>, ProtocolError> {
        let [b0, b1, ..] = src[..] else { return Ok(None) };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = b0 & 0x0f;
        let masked = b1 & 0x80 != 0;
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(ProtocolError::UnknownOpcode(opcode));
        }
        let control = opcode >= CLOSE;
        let rsv1_allowed = self.inflater.is_some() && matches!(opcode, TEXT | BINARY);
        if rsv & 0b011 != 0 || (rsv & 0b100 != 0 && !rsv1_allowed) {
            return Err(ProtocolError::ReservedBits(rsv));
        }
        match (self.role, masked) {
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            _ => {}
        }
        if control && !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        match (opcode, self.partial.is_some()) {
            (CONTINUATION, false) => return Err(ProtocolError::UnexpectedContinuation),
            (TEXT | BINARY, true) => return Err(ProtocolError::UnfinishedMessage),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        let extra = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + extra + if masked { 4 } else { 0 };
        if src.len() < header_len {
            return Ok(None);
        }
        let len: u64 = match len7 {
            126 => {
                let len = u64::from(u16::from_be_bytes([src[2], src[3]]));
                if len < 126 {
                    return Err(ProtocolError::BadLength);
                }
                len
            }
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&src[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 || len <= 0xffff {
                    return Err(ProtocolError::BadLength);
                }
                len
            }
            n => u64::from(n),
        };
        if control && len > 125 {
            return Err(ProtocolError::ControlTooLong(len));
        }
        let max = self.limits.max_frame_size;
        let len =
            usize::try_from(len).ok().filter(|l| *l <= max).ok_or(ProtocolError::FrameTooBig { size: len, max })?;
        if !control {
            let so_far = self.partial.as_ref().map_or(0, |p| if p.compressed { 0 } else { p.plain.len() });
            if so_far.saturating_add(len) > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooBig { max: self.limits.max_message_size });
            }
        }
        let mask = masked.then(|| {
            let at = 2 + extra;
            [src[at], src[at + 1], src[at + 2], src[at + 3]]
        });
        src.advance(header_len);
        Ok(Some(Header { fin, rsv1: rsv & 0b100 != 0, opcode, mask, len }))
    }

    /// Handles one complete frame.
    fn frame(&mut self, h: Header, payload: BytesMut) -> Result<Option<Message>, ProtocolError> {
        match h.opcode {
            PING => Ok(Some(Message::Ping(payload.freeze()))),
            PONG => Ok(Some(Message::Pong(payload.freeze()))),
            CLOSE => match parse_close(payload.freeze()) {
                Ok(close) => Ok(Some(Message::Close(close))),
                Err(BadClose::Protocol) => Err(ProtocolError::InvalidClose),
                Err(BadClose::Utf8) => Err(ProtocolError::InvalidCloseReason),
            },
            TEXT | BINARY if h.fin && !h.rsv1 => {
                // The common case: one frame, no compression, no copy.
                let bytes = payload.freeze();
                if h.opcode == TEXT {
                    match self.early.take() {
                        Some((mut v, checked)) => {
                            v.feed(&bytes[checked..])
                                .and_then(|()| v.finish())
                                .map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                        None => {
                            simdutf8::basic::from_utf8(&bytes).map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                    }
                    Ok(Some(Message::Text(Utf8Bytes::from_validated(bytes))))
                } else {
                    Ok(Some(Message::Binary(bytes)))
                }
            }
            TEXT | BINARY => {
                let partial = Partial {
                    text: h.opcode == TEXT,
                    compressed: h.rsv1,
                    plain: BytesMut::new(),
                    inflated: Vec::new(),
                    utf8: Utf8Validator::default(),
                };
                self.partial = Some(partial);
                self.continue_message(h.fin, payload)
            }
            _ => self.continue_message(h.fin, payload),
        }
    }

    /// Adds a fragment to the message in progress; returns the message when `fin`.
    fn continue_message(&mut self, fin: bool, payload: BytesMut) -> Result<Option<Message>, ProtocolError> {
        let early = self.early.take();
        let Some(p) = self.partial.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        if p.compressed {
            let Some(inflater) = self.inflater.as_mut() else {
                return Err(ProtocolError::ReservedBits(0b100));
            };
            let before = p.inflated.len();
            inflater.inflate(&payload, fin, &mut p.inflated, self.limits.max_message_size)?;
            if p.text {
                p.utf8.feed(&p.inflated[before..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        } else {
            if p.text {
                // What was checked while the frame arrived is not checked again.
                let checked = match early {
                    Some((v, checked)) => {
                        p.utf8 = v;
                        checked
                    }
                    None => 0,
                };
                p.utf8.feed(&payload[checked..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            if p.plain.is_empty() {
                p.plain = payload;
            } else {
                p.plain.extend_from_slice(&payload);
            }
        }
        if !fin {
            return Ok(None);
        }
        let Some(mut p) = self.partial.take() else { return Ok(None) };
        let bytes = if p.compressed {
            // The output grew by doubling: give the spare room back before the message is
            // queued (a `Bytes` made from a `Vec` keeps its whole capacity).
            let mut inflated = std::mem::take(&mut p.inflated);
            inflated.shrink_to_fit();
            Bytes::from(inflated)
        } else {
            p.plain.freeze()
        };
        if p.text {
            p.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(Message::Text(Utf8Bytes::from_validated(bytes))))
        } else {
            Ok(Some(Message::Binary(bytes)))
        }
    }
}
