//! Response decoding: status line and headers, body framing (RFC 9112 §6.3), end of stream.

use bytes::{Buf, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};

use super::chunked::{Chunk, ChunkedDecoder};
use super::error::{DecodeError, snippet};
use super::fields::header_map;
use super::scan::Scan;
use super::{Codec, Pending, RequestId, ResponseEvent, list_tokens};

/// How the body of the response being decoded ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Body {
    /// After this many more bytes (0: no body, or fully read).
    Length(u64),
    /// Chunked transfer coding.
    Chunked(ChunkedDecoder),
    /// When the server closes the connection.
    Close,
}

/// Where the decoder is in the response stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReadState {
    /// Waiting for a status line and header fields.
    Head(Scan),
    /// Reading the body of the response to `id`; `discard` if the request was cancelled.
    Body { id: RequestId, discard: bool, body: Body },
    /// The server announced it closes after the last response, which is complete: no more
    /// response bytes may arrive.
    Closed,
    /// The connection switched protocols; remaining bytes are not HTTP/1.
    Upgraded,
    /// A decode error happened; it is returned again on every call.
    Failed(DecodeError),
}

impl Default for ReadState {
    fn default() -> Self {
        ReadState::Head(Scan::default())
    }
}

impl ReadState {
    pub(super) fn is_failed(&self) -> bool {
        matches!(self, ReadState::Failed(_))
    }

    pub(super) fn is_upgraded(&self) -> bool {
        matches!(self, ReadState::Upgraded)
    }

    pub(super) fn cancel(&mut self, cancelled: RequestId) {
        if let ReadState::Body { id, discard, .. } = self
            && *id == cancelled
        {
            *discard = true;
        }
    }
}

/// An event plus whether it must be swallowed because its request was cancelled.
type Step = Option<(ResponseEvent, bool)>;

impl Codec {
    /// Decode the next event from the response bytes in `src`, consuming what it uses.
    /// Call in a loop until `Ok(None)`, which means more input is needed. Unconsumed bytes
    /// must stay at the front of `src` for the next call; append new input after them.
    ///
    /// Errors are fatal for the connection and are returned again on later calls.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use moorline_proto::http1::{BodyKind, Codec, DecodeError, Limits};
    ///
    /// let mut codec = Codec::new(Limits::default());
    /// let mut src = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
    /// // No request was sent, so a response is a protocol violation.
    /// assert_eq!(codec.decode(&mut src), Err(DecodeError::UnexpectedResponse));
    /// ```
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ResponseEvent>, DecodeError> {
        if let ReadState::Failed(e) = &self.read {
            return Err(e.clone());
        }
        loop {
            match self.step(src) {
                Ok(None) => return Ok(None),
                Ok(Some((_, true))) => continue,
                Ok(Some((event, false))) => return Ok(Some(event)),
                Err(e) => {
                    self.read = ReadState::Failed(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Like [`decode`](Self::decode), after the server closed its side (read EOF). Once
    /// the complete events are returned, it ends a close-delimited body with
    /// [`ResponseEvent::End`], or fails with [`DecodeError::IncompleteResponse`] if a
    /// response was cut short. Call in a loop until `Ok(None)`. Requests that got no
    /// response at all are not an error here; [`in_flight`](Self::in_flight) lists them.
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use moorline_proto::http1::{BodyKind, Codec, Limits, RequestHead, ResponseEvent};
    /// # let mut codec = Codec::new(Limits::default());
    /// # let headers = http::HeaderMap::new();
    /// # let head = RequestHead { method: &http::Method::GET, target: "/", authority: "a", headers: &headers };
    /// let id = codec.encode_head(head, BodyKind::Empty, &mut BytesMut::new())?;
    /// let mut src = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\nuntil close"[..]);
    /// assert!(matches!(codec.decode(&mut src)?, Some(ResponseEvent::Head { .. })));
    /// assert!(matches!(codec.decode(&mut src)?, Some(ResponseEvent::Data { .. })));
    /// assert_eq!(codec.decode(&mut src)?, None); // the body ends only at EOF
    /// assert_eq!(codec.decode_eof(&mut src)?, Some(ResponseEvent::End { id }));
    /// assert_eq!(codec.decode_eof(&mut src)?, None);
    /// assert!(!codec.is_reusable());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<ResponseEvent>, DecodeError> {
        if let Some(event) = self.decode(src)? {
            return Ok(Some(event));
        }
        self.eof = true;
        loop {
            let step = match &self.read {
                ReadState::Head(_) => match self.queue.front() {
                    Some(p) if !src.is_empty() => Err(DecodeError::IncompleteResponse { id: p.id }),
                    _ => Ok(None),
                },
                ReadState::Body { id, discard, body: Body::Close } => Ok(Some(self.finish_response(*id, *discard))),
                ReadState::Body { id, .. } => Err(DecodeError::IncompleteResponse { id: *id }),
                ReadState::Closed | ReadState::Upgraded => Ok(None),
                ReadState::Failed(e) => Err(e.clone()),
            };
            match step {
                Ok(None) => return Ok(None),
                Ok(Some((_, true))) => continue,
                Ok(Some((event, false))) => return Ok(Some(event)),
                Err(e) => {
                    self.read = ReadState::Failed(e.clone());
                    return Err(e);
                }
            }
        }
    }

    fn step(&mut self, src: &mut BytesMut) -> Result<Step, DecodeError> {
        match &mut self.read {
            ReadState::Head(scan) => {
                let scan = *scan;
                self.read_head(src, scan)
            }
            ReadState::Body { id, discard, body } => {
                let (id, discard) = (*id, *discard);
                let max_chunk = self.limits.max_chunk.max(1);
                let event = match body {
                    Body::Length(0) => return Ok(Some(self.finish_response(id, discard))),
                    Body::Length(left) => {
                        if src.is_empty() {
                            return Ok(None);
                        }
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(src.len()).min(max_chunk);
                        *left -= n as u64;
                        ResponseEvent::Data { id, data: src.split_to(n).freeze() }
                    }
                    Body::Close => {
                        if src.is_empty() {
                            return Ok(None);
                        }
                        let n = src.len().min(max_chunk);
                        ResponseEvent::Data { id, data: src.split_to(n).freeze() }
                    }
                    Body::Chunked(decoder) => match decoder.decode(src, &self.limits)? {
                        None => return Ok(None),
                        Some(Chunk::Data(data)) => ResponseEvent::Data { id, data },
                        Some(Chunk::Trailers(headers)) => ResponseEvent::Trailers { id, headers },
                        Some(Chunk::End) => return Ok(Some(self.finish_response(id, discard))),
                    },
                };
                Ok(Some((event, discard)))
            }
            ReadState::Closed => {
                skip_blank_lines(src);
                if src.is_empty() { Ok(None) } else { Err(DecodeError::UnexpectedResponse) }
            }
            ReadState::Upgraded => Ok(None),
            ReadState::Failed(e) => Err(e.clone()),
        }
    }

    /// The response to the front request is complete.
    fn finish_response(&mut self, id: RequestId, discard: bool) -> (ResponseEvent, bool) {
        if self.queue.front().is_some_and(|p| p.id == id) {
            self.queue.pop_front();
        }
        if self.writer.as_ref().is_some_and(|w| w.id() == id && !w.is_finished()) {
            self.answered_early = true;
        }
        self.read = if self.server_close.is_some() { ReadState::Closed } else { ReadState::default() };
        (ResponseEvent::End { id }, discard)
    }

    fn read_head(&mut self, src: &mut BytesMut, mut scan: Scan) -> Result<Step, DecodeError> {
        if skip_blank_lines(src) {
            scan.reset();
        }
        if src.is_empty() {
            self.read = ReadState::Head(scan);
            return Ok(None);
        }
        let Some(req) = self.queue.front_mut() else {
            return Err(DecodeError::UnexpectedResponse);
        };
        let limit = self.limits.max_head_bytes;
        let Some(end) = scan.section_end(src) else {
            check_version_prefix(src)?;
            if src.len() > limit {
                return Err(DecodeError::HeadTooLarge { limit });
            }
            self.read = ReadState::Head(scan);
            return Ok(None);
        };
        if end > limit {
            return Err(DecodeError::HeadTooLarge { limit });
        }
        let (version, status, headers) = parse_head(src.get(..end).unwrap_or_default(), self.limits.max_headers)?;
        src.advance(end);
        req.written = true;
        let (id, discard) = (req.id, req.cancelled);

        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            // The 1xx heads of one response share the head limit: without a bound, a server
            // could send them for ever, and each becomes an event the owner holds.
            self.informational = self.informational.saturating_add(end);
            if self.informational > limit {
                return Err(DecodeError::InformationalTooLarge { limit });
            }
        } else {
            self.informational = 0;
        }
        if status == StatusCode::SWITCHING_PROTOCOLS || (req.is_connect && status.is_success()) {
            self.queue.pop_front();
            self.read = ReadState::Upgraded;
            return Ok(Some((ResponseEvent::Upgrade { id, status, headers }, false)));
        }
        if status.is_informational() {
            self.read = ReadState::default();
            return Ok(Some((ResponseEvent::Inform { id, status, headers }, discard)));
        }
        let (body, keep_alive) = framing(req, status, version, &headers)?;
        if !keep_alive && self.server_close.is_none() {
            self.server_close = Some(id);
        }
        let has_body = body != Body::Length(0);
        self.read = ReadState::Body { id, discard, body };
        Ok(Some((ResponseEvent::Head { id, status, version, headers, has_body }, discard)))
    }
}

/// Drop CR and LF bytes before a status line (tolerating stray CRLF after a body).
/// Returns whether anything was dropped.
fn skip_blank_lines(src: &mut BytesMut) -> bool {
    let n = src.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    src.advance(n);
    n > 0
}

/// Fail early on bytes that cannot start an HTTP/1.x status line, instead of waiting for a
/// whole head that will never come.
fn check_version_prefix(buf: &[u8]) -> Result<(), DecodeError> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = buf.len().min(PREFIX.len());
    let head = buf.get(..n).unwrap_or_default();
    if head != PREFIX.get(..n).unwrap_or_default() {
        return Err(version_error(buf));
    }
    match buf.get(PREFIX.len()) {
        None | Some(b'0' | b'1') => Ok(()),
        Some(_) => Err(version_error(buf)),
    }
}

/// The error for a status line that does not start with `HTTP/1.0` or `HTTP/1.1`.
fn version_error(buf: &[u8]) -> DecodeError {
    let line = first_line(buf);
    let looks_http = buf.len() >= 5 && buf.get(..5).is_some_and(|p| p == b"HTTP/");
    if looks_http {
        DecodeError::UnsupportedVersion { snippet: snippet(line) }
    } else {
        DecodeError::InvalidStatusLine { snippet: snippet(line) }
    }
}

fn first_line(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(buf.len());
    buf.get(..end).unwrap_or(buf)
}

/// Parse a complete response head.
fn parse_head(head: &[u8], max_headers: usize) -> Result<(Version, StatusCode, HeaderMap), DecodeError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut res = httparse::Response::new(&mut slots);
    let status_line_error = || DecodeError::InvalidStatusLine { snippet: snippet(first_line(head)) };
    let header_error = || {
        let after = head.iter().position(|&b| b == b'\n').map_or(head, |i| head.get(i + 1..).unwrap_or_default());
        DecodeError::InvalidHeader { snippet: snippet(after) }
    };
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(header_error()),
        Err(httparse::Error::Version) => return Err(version_error(head)),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(DecodeError::TooManyHeaders { limit: max_headers });
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(header_error());
        }
        Err(httparse::Error::Status | httparse::Error::Token) => return Err(status_line_error()),
        Err(httparse::Error::NewLine) => {
            // Bad line ending: blame the status line if it alone does not parse.
            let line_len = head.iter().position(|&b| b == b'\n').map_or(head.len(), |i| i + 1);
            let line = head.get(..line_len).unwrap_or(head);
            let status_ok = matches!(httparse::Response::new(&mut []).parse(line), Ok(httparse::Status::Partial));
            return Err(if status_ok { header_error() } else { status_line_error() });
        }
    }
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(version_error(head)),
    };
    let status = res.code.and_then(|c| StatusCode::from_u16(c).ok()).ok_or_else(status_line_error)?;
    let headers = header_map(res.headers)?;
    Ok((version, status, headers))
}

/// Body framing of a final (non-1xx, non-upgrade) response and whether the connection
/// stays open after it (RFC 9112 §6.3 and §9.3).
fn framing(
    req: &Pending,
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
) -> Result<(Body, bool), DecodeError> {
    let tokens = || list_tokens(headers, &CONNECTION);
    let mut keep_alive = if tokens().any(|t| t.eq_ignore_ascii_case(b"close")) {
        false
    } else {
        version == Version::HTTP_11 || tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    };
    if req.is_head
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (req.is_connect && status.is_success())
    {
        return Ok((Body::Length(0), keep_alive));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        // Both framings, or transfer coding in HTTP/1.0, signal a confused or malicious peer:
        // follow transfer-encoding but do not reuse the connection (RFC 9112 §6.1, §6.3).
        if headers.contains_key(CONTENT_LENGTH) || version == Version::HTTP_10 {
            keep_alive = false;
        }
        let chunked_last =
            list_tokens(headers, &TRANSFER_ENCODING).last().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        if chunked_last {
            return Ok((Body::Chunked(ChunkedDecoder::new()), keep_alive));
        }
        return Ok((Body::Close, false));
    }
    if headers.contains_key(CONTENT_LENGTH) {
        return Ok((Body::Length(content_length(headers)?), keep_alive));
    }
    Ok((Body::Close, false))
}

/// The single value of all `content-length` fields; a list of identical values is
/// accepted as that value (RFC 9110 §8.6).
fn content_length(headers: &HeaderMap) -> Result<u64, DecodeError> {
    let invalid = || {
        let all: Vec<&[u8]> = headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
        DecodeError::InvalidContentLength { snippet: snippet(&all.join(&b", "[..])) }
    };
    let mut found: Option<u64> = None;
    for field in headers.get_all(CONTENT_LENGTH) {
        for element in field.as_bytes().split(|&b| b == b',') {
            let digits = element.trim_ascii();
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(invalid());
            }
            let n = digits.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')));
            match (n, found) {
                (None, _) => return Err(invalid()),
                (Some(n), Some(prev)) if n != prev => return Err(invalid()),
                (Some(n), _) => found = Some(n),
            }
        }
    }
    found.ok_or_else(invalid)
}
