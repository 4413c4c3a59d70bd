//! HTTP/1.1 wire format: request heads (via `httparse`), request body
//! decoding (content-length and chunked) and response head encoding.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::error::Error;
use super::routes::BodyLen;

/// Largest request head accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in a request head.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    pub(crate) headers: HeaderMap,
}

impl RequestHead {
    /// Whether the connection may be reused after this exchange.
    pub(crate) fn keep_alive(&self) -> bool {
        let has_token = |token: &str| {
            self.headers
                .get_all(CONNECTION)
                .iter()
                .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
        };
        if self.minor_version == 0 { has_token("keep-alive") } else { !has_token("close") }
    }

    /// Whether the client sent `expect: 100-continue`.
    pub(crate) fn expects_continue(&self) -> bool {
        self.headers.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    }
}

/// Tries to parse one request head from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed.
pub(crate) fn parse_head(buf: &mut BytesMut) -> Result<Option<RequestHead>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES { Err(Error::HeadTooLarge) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(_) => return Err(Error::BadRequest("unparsable request head")),
    };
    if consumed > MAX_HEAD_BYTES {
        return Err(Error::HeadTooLarge);
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| Error::BadRequest("invalid method"))?;
    let target = req.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Error::BadRequest("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Error::BadRequest("invalid header value"))?;
        headers.append(name, value);
    }
    let head = RequestHead { method, path, query, minor_version: req.version.unwrap_or(1), headers };
    buf.advance(consumed);
    Ok(Some(head))
}

/// What [`BodyDecoder::decode`] produced.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A piece of body.
    Data(Bytes),
    /// The body is complete.
    End,
    /// More bytes must be read first.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataCrlf,
    Trailers,
}

/// Incremental request body decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyDecoder {
    /// `content-length` body with this many bytes left.
    Length(u64),
    /// Chunked body in this state.
    Chunked(Chunk),
    /// Body fully read.
    Done,
}

impl BodyDecoder {
    /// Chooses the body framing of a request.
    pub(crate) fn for_request(head: &RequestHead) -> Result<Self, Error> {
        let mut te = head.headers.get_all(TRANSFER_ENCODING).iter().peekable();
        if te.peek().is_some() {
            let last = te.last().and_then(|v| v.to_str().ok()).and_then(|s| s.rsplit(',').next()).map(str::trim);
            return match last {
                Some(t) if t.eq_ignore_ascii_case("chunked") => Ok(Self::Chunked(Chunk::Size)),
                _ => Err(Error::BadRequest("unsupported transfer-encoding")),
            };
        }
        let mut length: Option<u64> = None;
        for v in head.headers.get_all(CONTENT_LENGTH) {
            for part in v.to_str().map_err(|_| Error::BadRequest("bad content-length"))?.split(',') {
                let n = part.trim().parse::<u64>().map_err(|_| Error::BadRequest("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::BadRequest("conflicting content-length"));
                }
                length = Some(n);
            }
        }
        Ok(match length {
            Some(0) | None => Self::Done,
            Some(n) => Self::Length(n),
        })
    }

    /// Whether the whole body has been consumed.
    pub(crate) fn is_done(&self) -> bool {
        *self == Self::Done
    }

    /// Decodes as much as possible from the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match *self {
                Self::Done => return Ok(Decoded::End),
                Self::Length(0) => *self = Self::Done,
                Self::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = take_len(left, buf.len());
                    *self = Self::Length(left - n as u64);
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Self::Chunked(Chunk::Size) => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        *self = Self::Chunked(if size == 0 { Chunk::Trailers } else { Chunk::Data(size) });
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_LINE => {
                        return Ok(Decoded::NeedMore);
                    }
                    _ => return Err(Error::BadRequest("invalid chunk size line")),
                },
                Self::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = take_len(left, buf.len());
                    let rest = left - n as u64;
                    *self = Self::Chunked(if rest == 0 { Chunk::DataCrlf } else { Chunk::Data(rest) });
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Self::Chunked(Chunk::DataCrlf) => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::BadRequest("missing CRLF after chunk data"));
                    }
                    buf.advance(2);
                    *self = Self::Chunked(Chunk::Size);
                }
                Self::Chunked(Chunk::Trailers) => {
                    match buf.windows(2).position(|w| w == b"\r\n") {
                        // An empty line ends the trailer section.
                        Some(0) => {
                            buf.advance(2);
                            *self = Self::Done;
                        }
                        // Trailer fields are ignored.
                        Some(i) => buf.advance(i + 2),
                        None if buf.len() <= MAX_LINE => return Ok(Decoded::NeedMore),
                        None => return Err(Error::BadRequest("trailer line too long")),
                    }
                }
            }
        }
    }
}

fn take_len(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |l| l.min(available))
}

/// Encodes a response head. `close` adds `connection: close`.
pub(crate) fn encode_head(status: StatusCode, headers: &HeaderMap, len: Option<BodyLen>, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(
        format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or("Unknown")).as_bytes(),
    );
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodyless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    match len {
        _ if bodyless => {}
        None => {}
        Some(BodyLen::Empty) => out.extend_from_slice(b"content-length: 0\r\n"),
        Some(BodyLen::Known(n)) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        Some(BodyLen::Streaming) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Encodes the last chunk of a chunked body, with optional trailers.
pub(crate) fn encode_last_chunk(trailers: Option<&HeaderMap>) -> Vec<u8> {
    let mut out = b"0\r\n".to_vec();
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `wire` one byte at a time and collects the decoded body.
    fn decode_bytewise(mut decoder: BodyDecoder, wire: &[u8]) -> Result<(Vec<u8>, usize), Error> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::End => return Ok((out, wire.len() - fed + buf.len())),
                Decoded::NeedMore if fed < wire.len() => {
                    buf.extend_from_slice(&wire[fed..=fed]);
                    fed += 1;
                }
                Decoded::NeedMore => return Err(Error::BadRequest("eof")),
            }
        }
    }

    #[test]
    fn chunked_bytewise_with_extensions_and_trailers() {
        let wire = b"3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let (body, left) = decode_bytewise(BodyDecoder::Chunked(Chunk::Size), wire).unwrap();
        assert_eq!(body, b"abc0123456789abcdef");
        assert_eq!(left, 4);
    }

    #[test]
    fn content_length_stops_at_length() {
        let (body, left) = decode_bytewise(BodyDecoder::Length(3), b"abcdef").unwrap();
        assert_eq!((body.as_slice(), left), (&b"abc"[..], 3));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [&b"zz\r\n"[..], b"3\r\nabcXY", b"ffffffffffffffffffff\r\n"] {
            assert!(decode_bytewise(BodyDecoder::Chunked(Chunk::Size), wire).is_err());
        }
    }

    #[test]
    fn head_parsing_and_framing() {
        let mut buf =
            BytesMut::from(&b"\r\nPOST /echo?x=1 HTTP/1.1\r\nContent-Length: 4\r\nConnection: Close\r\n\r\nbody"[..]);
        let head = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(
            (head.method.clone(), head.path.as_str(), head.query.as_deref()),
            (Method::POST, "/echo", Some("x=1"))
        );
        assert!(!head.keep_alive());
        assert_eq!(BodyDecoder::for_request(&head).unwrap(), BodyDecoder::Length(4));
        assert_eq!(&buf[..], b"body");
        let mut partial = BytesMut::from(&b"GET / HTTP/1.1\r\nhost"[..]);
        assert!(parse_head(&mut partial).unwrap().is_none());
    }

    #[test]
    fn encodes_heads() {
        let head = encode_head(StatusCode::NO_CONTENT, &HeaderMap::new(), Some(BodyLen::Empty), true);
        assert_eq!(head, b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        let head = encode_head(StatusCode::OK, &HeaderMap::new(), Some(BodyLen::Streaming), false);
        assert_eq!(head, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    }
}
