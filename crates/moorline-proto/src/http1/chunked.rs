//! Decoder for the chunked transfer coding (RFC 9112 §7.1).

use bytes::{Buf, Bytes, BytesMut};

use super::Limits;
use super::error::DecodeError;
use super::fields::header_map;
use super::scan::Scan;

/// Longest chunk-size line accepted (size plus extensions), so a peer cannot make us
/// buffer without bound. A smaller `max_head_bytes` lowers it further.
const MAX_CHUNK_LINE: usize = 4096;

/// One decoded step of a chunked body.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Body bytes.
    Data(Bytes),
    /// A non-empty trailer section.
    Trailers(http::HeaderMap),
    /// The body is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data; `true` once the CR was seen.
    DataEnd(bool),
    /// Expecting the trailer section after the last chunk.
    Trailers,
    /// Trailers were returned; `End` is next.
    Done,
}

/// Chunked body decoder state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ChunkedDecoder {
    state: State,
    scan: Scan,
}

impl ChunkedDecoder {
    pub(super) fn new() -> Self {
        ChunkedDecoder { state: State::Size, scan: Scan::default() }
    }

    fn consume(&mut self, src: &mut BytesMut, n: usize) {
        src.advance(n);
        self.scan.reset();
    }

    /// Decode the next step, consuming what it uses from `src`. `Ok(None)` means more input
    /// is needed.
    pub(super) fn decode(&mut self, src: &mut BytesMut, limits: &Limits) -> Result<Option<Chunk>, DecodeError> {
        loop {
            match self.state {
                State::Size => {
                    let max_line = MAX_CHUNK_LINE.min(limits.max_head_bytes);
                    let Some(end) = self.scan.line_end(src) else {
                        if src.len() > max_line {
                            return Err(DecodeError::InvalidChunk { reason: "chunk-size line is too long" });
                        }
                        return Ok(None);
                    };
                    if end > max_line {
                        return Err(DecodeError::InvalidChunk { reason: "chunk-size line is too long" });
                    }
                    let line = src.get(..end).unwrap_or_default();
                    // httparse accepts an empty size; RFC 9112 requires at least one digit.
                    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
                        return Err(DecodeError::InvalidChunk {
                            reason: "chunk-size line does not start with a hex digit",
                        });
                    }
                    let size = match httparse::parse_chunk_size(line) {
                        Ok(httparse::Status::Complete((n, size))) if n == end => size,
                        Ok(_) => {
                            return Err(DecodeError::InvalidChunk { reason: "chunk-size line does not end with CRLF" });
                        }
                        Err(httparse::InvalidChunkSize) => {
                            return Err(DecodeError::InvalidChunk {
                                reason: "malformed chunk-size line (bad hex digit, size over 64 bits or bare LF)",
                            });
                        }
                    };
                    self.consume(src, end);
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(src.len()).min(limits.max_chunk.max(1));
                    let data = src.split_to(n).freeze();
                    self.scan.reset();
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd(false) } else { State::Data(left) };
                    return Ok(Some(Chunk::Data(data)));
                }
                State::DataEnd(seen_cr) => {
                    let Some(&b) = src.first() else {
                        return Ok(None);
                    };
                    match (seen_cr, b) {
                        (false, b'\r') => self.state = State::DataEnd(true),
                        (_, b'\n') => self.state = State::Size,
                        _ => {
                            return Err(DecodeError::InvalidChunk { reason: "chunk data is not followed by CRLF" });
                        }
                    }
                    self.consume(src, 1);
                }
                State::Trailers => {
                    let limit = limits.max_head_bytes;
                    let Some(end) = self.scan.section_end(src) else {
                        if src.len() > limit {
                            return Err(DecodeError::TrailersTooLarge { limit });
                        }
                        return Ok(None);
                    };
                    if end > limit {
                        return Err(DecodeError::TrailersTooLarge { limit });
                    }
                    let section = src.get(..end).unwrap_or_default();
                    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
                    let fields = match httparse::parse_headers(section, &mut slots) {
                        Ok(httparse::Status::Complete((_, fields))) => header_map(fields)?,
                        Ok(httparse::Status::Partial) => {
                            return Err(DecodeError::InvalidHeader { snippet: super::error::snippet(section) });
                        }
                        Err(httparse::Error::TooManyHeaders) => {
                            return Err(DecodeError::TooManyHeaders { limit: limits.max_headers });
                        }
                        Err(_) => {
                            return Err(DecodeError::InvalidHeader { snippet: super::error::snippet(section) });
                        }
                    };
                    self.consume(src, end);
                    if fields.is_empty() {
                        self.state = State::Done;
                        return Ok(Some(Chunk::End));
                    }
                    self.state = State::Done;
                    return Ok(Some(Chunk::Trailers(fields)));
                }
                State::Done => return Ok(Some(Chunk::End)),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(input: &[u8], limits: &Limits) -> Result<Vec<Chunk>, DecodeError> {
        let mut d = ChunkedDecoder::new();
        let mut src = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(c) = d.decode(&mut src, limits)? {
            let end = c == Chunk::End;
            out.push(c);
            if end {
                break;
            }
        }
        Ok(out)
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let out = run(b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-sum: 9\r\n\r\n", &Limits::default()).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], Chunk::Data(Bytes::from_static(b"abc")));
        assert_eq!(out[1], Chunk::Data(Bytes::from_static(b"0123456789")));
        let Chunk::Trailers(t) = &out[2] else { panic!("{:?}", out[2]) };
        assert_eq!(t["x-sum"], "9");
        assert_eq!(out[3], Chunk::End);
    }

    #[test]
    fn respects_max_chunk() {
        let limits = Limits { max_chunk: 4, ..Limits::default() };
        let out = run(b"A\r\n0123456789\r\n0\r\n\r\n", &limits).unwrap();
        let sizes: Vec<_> = out.iter().map(|c| if let Chunk::Data(d) = c { d.len() } else { 0 }).collect();
        assert_eq!(sizes, [4, 4, 2, 0]);
    }

    #[test]
    fn rejects_bad_sizes() {
        let l = Limits::default();
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"10000000000000000\r\n", // 17 hex digits overflow u64
            b"-1\r\n",
            b"5\n",
            b"3\r\nabcX",
        ] {
            assert!(matches!(run(bad, &l), Err(DecodeError::InvalidChunk { .. })), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn bounds_size_line_and_trailers() {
        let l = Limits { max_head_bytes: 32, ..Limits::default() };
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE));
        assert!(matches!(run(&long, &l), Err(DecodeError::InvalidChunk { .. })));
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b'x', 40));
        assert_eq!(run(&trailers, &l), Err(DecodeError::TrailersTooLarge { limit: 32 }));
        let many = b"0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        let l = Limits { max_headers: 2, ..Limits::default() };
        assert_eq!(run(many, &l), Err(DecodeError::TooManyHeaders { limit: 2 }));
    }
}
