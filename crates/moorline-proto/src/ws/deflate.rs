//! permessage-deflate (RFC 7692) data path: raw DEFLATE with the `00 00 ff ff`
//! tail removed, contexts kept or reset per the negotiated parameters, and
//! inflation bounded by the message size limit as it happens.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::protocol_error::ProtocolError;

/// The tail every flushed message ends with; stripped on the wire (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is grown by at most this much per inflate step.
const STEP: usize = 32 * 1024;

/// Inflates received messages.
#[derive(Debug)]
pub(crate) struct Inflater {
    inner: Decompress,
    /// Reset after each message (the peer does not take its context over).
    reset: bool,
}

impl Inflater {
    /// An inflater for a peer that resets its context after each message when
    /// `no_context_takeover`. The window is always 15: a larger window inflates data
    /// compressed with any smaller one.
    pub(crate) fn new(no_context_takeover: bool) -> Self {
        Self { inner: Decompress::new(false), reset: no_context_takeover }
    }

    /// Inflates `input` (one frame's compressed payload; with `last`, the message's
    /// end) onto `out`, failing as soon as `out` exceeds `max` bytes.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), ProtocolError> {
        self.run(input, out, max)?;
        if last {
            self.run(&TAIL, out, max)?;
            if self.reset {
                self.inner.reset(false);
            }
        }
        Ok(())
    }

    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), ProtocolError> {
        loop {
            // Room for one byte past the limit, so that crossing it is seen.
            out.reserve(STEP.min(max.saturating_sub(out.len()).saturating_add(1)));
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| ProtocolError::Inflate(e.to_string()))?;
            if out.len() > max {
                return Err(ProtocolError::MessageTooBig { max });
            }
            let consumed = usize::try_from(self.inner.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = self.inner.total_out() - out_before;
            input = &input[consumed.min(input.len())..];
            if matches!(status, Status::StreamEnd) {
                // A final block (BFINAL) ends this DEFLATE stream; what follows starts a new one.
                self.inner.reset(false);
                if input.is_empty() {
                    return Ok(());
                }
                continue;
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(ProtocolError::Inflate("compressed data makes no progress".into()));
            }
        }
    }
}

/// Deflates sent messages.
#[derive(Debug)]
pub(crate) struct Deflater {
    inner: Compress,
    reset: bool,
}

impl Deflater {
    /// A deflater limited to a window of `window_bits` (9..=15: zlib cannot deflate
    /// with 8, so a peer asking for 8 gets uncompressed messages, which RFC 7692 allows).
    pub(crate) fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Option<Self> {
        (9..=15).contains(&window_bits).then(|| Self {
            inner: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            reset: no_context_takeover,
        })
    }

    /// Compresses one message payload onto `out` (tail removed).
    pub(crate) fn deflate(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let start = out.len();
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.inner.total_in();
            self.inner
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| ProtocolError::Inflate(format!("deflate failed: {e}")))?;
            let consumed = usize::try_from(self.inner.total_in() - before_in).unwrap_or(usize::MAX);
            input = &input[consumed.min(input.len())..];
            // Done when all input is in and the sync flush fully written (spare room left).
            if input.is_empty() && out.len() < out.capacity() && out[start..].ends_with(&TAIL) {
                break;
            }
        }
        out.truncate(out.len() - TAIL.len());
        if out.len() == start {
            // An empty message still needs one empty stored block... which is `00` after stripping.
            out.push(0x00);
        }
        if self.reset {
            self.inner.reset();
        }
        Ok(())
    }
}
