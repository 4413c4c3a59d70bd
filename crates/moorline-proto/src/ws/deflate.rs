//! permessage-deflate (RFC 7692) data path: raw DEFLATE with the `00 00 ff ff`
//! tail removed, contexts kept or reset per the negotiated parameters, and
//! inflation bounded by the message size limit as it happens.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::protocol_error::ProtocolError;

/// The tail every flushed message ends with; stripped on the wire (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The least spare room the output gets before an inflate step (less when the limit is
/// nearer). The output grows by doubling, as a `Vec` does, but never past the limit plus
/// one byte (see [`grow`]): the decompressor fills whatever spare room it is given, so room
/// past the limit would be filled by a bomb before the limit is checked.
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
            grow(out, max);
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

/// Makes room in `out` for the next inflate step: at least [`STEP`] bytes of spare room (less
/// near the limit), by doubling the capacity, but never to more than `max + 1` bytes: one
/// byte past the limit, so that crossing it is seen, and no more for a bomb to fill.
/// (`Vec::reserve` may double past the limit, and the decompressor fills all spare room:
/// that made a refused message cost up to twice the limit.)
fn grow(out: &mut Vec<u8>, max: usize) {
    let len = out.len();
    let ceiling = max.saturating_add(1);
    let want = STEP.min(ceiling.saturating_sub(len)).max(1);
    if out.capacity() - len >= want {
        return;
    }
    let target = out.capacity().saturating_mul(2).max(len.saturating_add(want)).min(ceiling.max(len.saturating_add(1)));
    out.reserve_exact(target - len);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A raw DEFLATE stream of `len` zero bytes, sync-flushed, tail removed (as on the wire).
    fn zeros_compressed(len: usize) -> Vec<u8> {
        let mut deflater = Deflater::new(15, false, 6).unwrap();
        let mut out = Vec::new();
        deflater.deflate(&vec![0u8; len], &mut out).unwrap();
        out
    }

    #[test]
    fn a_bomb_is_refused_without_the_output_growing_past_the_limit() {
        // 64 MiB of zeros are about 64 KiB compressed; the limit is 1 MiB (and a few odd ones).
        let bomb = zeros_compressed(64 << 20);
        assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
        for max in [1 << 20, (1 << 20) + 1, 3 * STEP + 7, 5_000_000] {
            let mut inflater = Inflater::new(false);
            let mut out = Vec::new();
            let err = inflater.inflate(&bomb, true, &mut out, max).unwrap_err();
            assert_eq!(err, ProtocolError::MessageTooBig { max });
            assert_eq!(err.close_code().0, 1009);
            assert!(
                out.capacity() <= max + STEP,
                "output buffer grew to {} bytes for a limit of {max} (at most {} allowed)",
                out.capacity(),
                max + STEP
            );
        }
    }

    #[test]
    fn messages_up_to_the_limit_inflate_whole() {
        for len in [0, 1, STEP - 1, STEP, STEP + 1, 1 << 20] {
            let wire = zeros_compressed(len);
            let mut inflater = Inflater::new(false);
            let mut out = Vec::new();
            inflater.inflate(&wire, true, &mut out, len).unwrap();
            assert_eq!(out.len(), len);
            assert!(out.capacity() <= len + STEP, "{} for {len}", out.capacity());
            // One byte more than the limit allows is refused.
            if len > 0 {
                let mut inflater = Inflater::new(false);
                let mut out = Vec::new();
                let err = inflater.inflate(&wire, true, &mut out, len - 1).unwrap_err();
                assert_eq!(err, ProtocolError::MessageTooBig { max: len - 1 });
            }
        }
    }
}
