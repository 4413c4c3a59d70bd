//! [`Encoder`]: messages in, frames out (masked as a client, compressed when
//! permessage-deflate was negotiated, fragmented on request).

use bytes::{BufMut, BytesMut};

use super::close::CloseFrame;
use super::decode::Role;
use super::deflate::Deflater;
use super::extension::DeflateParams;
use super::mask::apply_mask;
use super::message::Message;
use super::protocol_error::ProtocolError;

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Split data messages into frames of at most this many payload bytes (`None`: one frame).
    pub max_frame_payload: Option<usize>,
    /// With permessage-deflate, compress only messages at least this long (default 64 bytes:
    /// shorter ones rarely shrink).
    pub compress_min_size: usize,
    /// zlib compression level 0..=9 (default 1: the fastest, as latency matters more than ratio here).
    pub compression_level: u32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { max_frame_payload: None, compress_min_size: 64, compression_level: 1 }
    }
}

/// Encodes [`Message`]s into frames.
///
/// Masking keys come from the caller (one call of `mask` per frame), so the
/// encoder stays deterministic and the caller picks the randomness.
///
/// ```
/// use bytes::BytesMut;
/// use moorline_proto::ws::{Decoder, EncodeOptions, Encoder, Limits, Message, Role};
///
/// let mut encoder = Encoder::new(Role::Client, EncodeOptions::default(), None);
/// let mut wire = BytesMut::new();
/// encoder.encode(&Message::text("hi"), &mut || [1, 2, 3, 4], &mut wire).unwrap();
/// assert_eq!(&wire[..2], &[0x81, 0x82]); // FIN + text, masked, 2 bytes
///
/// // A server-side decoder reads it back.
/// let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
/// assert_eq!(decoder.decode(&mut wire).unwrap(), Some(Message::text("hi")));
/// ```
#[derive(Debug)]
pub struct Encoder {
    role: Role,
    options: EncodeOptions,
    deflater: Option<Deflater>,
    scratch: Vec<u8>,
}

impl Encoder {
    /// An encoder for `role`, compressing per `deflate` if it was negotiated.
    pub fn new(role: Role, options: EncodeOptions, deflate: Option<DeflateParams>) -> Self {
        let deflater = deflate.and_then(|d| {
            let (bits, reset) = match role {
                Role::Client => (d.client_max_window_bits, d.client_no_context_takeover),
                Role::Server => (d.server_max_window_bits, d.server_no_context_takeover),
            };
            Deflater::new(bits, reset, options.compression_level.min(9))
        });
        Self { role, options, deflater, scratch: Vec::new() }
    }

    /// Appends the frame(s) of `message` to `out`. `mask` gives one fresh key per
    /// frame (called only by a client).
    ///
    /// Fails, writing nothing, on a control payload over 125 bytes or a close code
    /// that may not be sent.
    pub fn encode(
        &mut self,
        message: &Message,
        mask: &mut impl FnMut() -> [u8; 4],
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let (opcode, payload): (u8, &[u8]) = match message {
            Message::Text(t) => (0x1, t.as_bytes()),
            Message::Binary(b) => (0x2, b),
            Message::Ping(b) => (0x9, b),
            Message::Pong(b) => (0xa, b),
            Message::Close(close) => return self.encode_close(close.as_ref(), mask, out),
        };
        if opcode >= 0x8 {
            if payload.len() > 125 {
                return Err(ProtocolError::ControlTooLong(payload.len() as u64));
            }
            self.frame(true, false, opcode, payload, mask, out);
            return Ok(());
        }
        let compress = payload.len() >= self.options.compress_min_size;
        let (rsv1, data) = match self.deflater.as_mut() {
            Some(deflater) if compress => {
                self.scratch.clear();
                deflater.deflate(payload, &mut self.scratch)?;
                (true, std::mem::take(&mut self.scratch))
            }
            _ => (false, Vec::new()),
        };
        let body: &[u8] = if rsv1 { &data } else { payload };
        match self.options.max_frame_payload.filter(|m| *m > 0 && body.len() > *m) {
            None => self.frame(true, rsv1, opcode, body, mask, out),
            Some(max) => {
                let count = body.len().div_ceil(max);
                for (i, chunk) in body.chunks(max).enumerate() {
                    let first = i == 0;
                    let op = if first { opcode } else { 0x0 };
                    self.frame(i + 1 == count, rsv1 && first, op, chunk, mask, out);
                }
            }
        }
        if rsv1 {
            self.scratch = data;
        }
        Ok(())
    }

    fn encode_close(
        &mut self,
        close: Option<&CloseFrame>,
        mask: &mut impl FnMut() -> [u8; 4],
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        match close {
            None => self.frame(true, false, 0x8, &[], mask, out),
            Some(c) => {
                if !c.code.is_valid_on_wire() || c.reason.len() > 123 {
                    return Err(ProtocolError::InvalidClose);
                }
                self.frame(true, false, 0x8, &c.payload(), mask, out);
            }
        }
        Ok(())
    }

    /// Writes one frame.
    fn frame(
        &self,
        fin: bool,
        rsv1: bool,
        opcode: u8,
        payload: &[u8],
        mask: &mut impl FnMut() -> [u8; 4],
        out: &mut BytesMut,
    ) {
        let key = (self.role == Role::Client).then(mask);
        write_frame(fin, rsv1, opcode, payload, key, out);
    }
}

/// Appends one frame with exactly these header fields to `out` (masking the
/// payload with `key` if given). No checks: for tests, fuzzers and servers that
/// misbehave on purpose.
pub fn write_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>, out: &mut BytesMut) {
    let len = payload.len();
    out.reserve(14 + len);
    out.put_u8(u8::from(fin) << 7 | u8::from(rsv1) << 6 | (opcode & 0x0f));
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.put_u8(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.put_u8(mask_bit | 126);
        out.put_u16(len16);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(len as u64);
    }
    match key {
        Some(key) => {
            out.put_slice(&key);
            copy_masked(payload, key, out);
        }
        None => out.put_slice(payload),
    }
}

/// Appends `payload` XORed with `key` in one pass: blocks of 256 bytes are masked on the
/// stack (the compiler vectorises the XOR) and appended, the tail byte by byte.
fn copy_masked(payload: &[u8], key: [u8; 4], out: &mut BytesMut) {
    const BLOCK: usize = 256;
    let word = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut blocks = payload.chunks_exact(BLOCK);
    for block in &mut blocks {
        let mut masked = [0u8; BLOCK];
        for (dst, src) in masked.chunks_exact_mut(8).zip(block.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(src);
            dst.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
        }
        out.put_slice(&masked);
    }
    let start = out.len();
    out.put_slice(blocks.remainder());
    apply_mask(&mut out[start..], key, 0);
}
