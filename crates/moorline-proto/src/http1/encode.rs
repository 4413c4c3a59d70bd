//! Request serialisation: request line, header fields, body framing.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method};

use super::error::{EncodeError, snippet};
use super::{BodyKind, Codec, Pending, RequestHead, RequestId, list_tokens};

/// The request whose body is being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BodyWriter {
    id: RequestId,
    kind: WriterKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterKind {
    Length { declared: u64, left: u64 },
    Chunked,
}

impl BodyWriter {
    pub(super) fn id(&self) -> RequestId {
        self.id
    }

    /// A length-framed body whose every byte was written is finished even before `fin`.
    pub(super) fn is_finished(&self) -> bool {
        matches!(self.kind, WriterKind::Length { left: 0, .. })
    }
}

/// The framing header the codec must add itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddFraming {
    Nothing,
    Length(u64),
    Chunked,
}

impl Codec {
    /// Serialise a request head into `dst` and register the request; its response is
    /// expected after those of all earlier requests (pipelining).
    ///
    /// Adds `host: {authority}` unless `headers` has a `host`, and the framing header for
    /// `body`: `content-length`, or `transfer-encoding: chunked`. The caller may supply
    /// that header itself only if it agrees with `body`. When `body` is not
    /// [`BodyKind::Empty`], follow with [`encode_body`](Self::encode_body) calls, the last
    /// with `fin = true` (a `Length` body is also finished once all its bytes are written).
    /// A request with `connection: close` is the last one on the connection.
    ///
    /// Nothing is written on error.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use http::{HeaderMap, HeaderValue, Method};
    /// use moorline_proto::http1::{BodyKind, Codec, EncodeError, Limits, RequestHead};
    ///
    /// let mut codec = Codec::new(Limits::default());
    /// let mut dst = BytesMut::new();
    /// let mut headers = HeaderMap::new();
    /// headers.insert("content-length", HeaderValue::from_static("3"));
    /// let head = RequestHead { method: &Method::PUT, target: "/k", authority: "h:8080", headers: &headers };
    /// // The declared length disagrees with the caller's own content-length.
    /// assert!(matches!(
    ///     codec.encode_head(head, BodyKind::Length(4), &mut dst),
    ///     Err(EncodeError::ConflictingHeader { name: "content-length", .. })
    /// ));
    /// assert!(dst.is_empty());
    /// codec.encode_head(head, BodyKind::Length(3), &mut dst)?;
    /// assert_eq!(&dst[..], b"PUT /k HTTP/1.1\r\nhost: h:8080\r\ncontent-length: 3\r\n\r\n");
    /// # Ok::<(), EncodeError>(())
    /// ```
    pub fn encode_head(
        &mut self,
        head: RequestHead<'_>,
        body: BodyKind,
        dst: &mut BytesMut,
    ) -> Result<RequestId, EncodeError> {
        if let Some(w) = &self.writer
            && !w.is_finished()
        {
            return Err(EncodeError::BodyInProgress { id: w.id });
        }
        if let Some(reason) = self.not_reusable_reason() {
            return Err(EncodeError::NotReusable { reason });
        }
        validate_method(head.method)?;
        if !is_visible_ascii(head.target.as_bytes()) || head.target.is_empty() {
            return Err(EncodeError::InvalidTarget { snippet: snippet(head.target.as_bytes()) });
        }
        let host_fields = head.headers.get_all(HOST).iter().count();
        if host_fields > 1 {
            return Err(EncodeError::ConflictingHeader { name: "host", reason: "more than one host header" });
        }
        if host_fields == 0 && !is_visible_ascii(head.authority.as_bytes()) {
            return Err(EncodeError::InvalidAuthority { snippet: snippet(head.authority.as_bytes()) });
        }
        for (name, value) in head.headers {
            if !is_safe_value(value.as_bytes()) {
                return Err(EncodeError::InvalidHeaderValue { name: name.as_str().to_owned() });
            }
        }
        let add = check_framing(head.method, head.headers, body)?;
        let close = list_tokens(head.headers, &CONNECTION).any(|t| t.eq_ignore_ascii_case(b"close"));

        let start = dst.len();
        dst.extend_from_slice(head.method.as_str().as_bytes());
        dst.extend_from_slice(b" ");
        dst.extend_from_slice(head.target.as_bytes());
        dst.extend_from_slice(b" HTTP/1.1\r\n");
        if host_fields == 0 {
            dst.extend_from_slice(b"host: ");
            dst.extend_from_slice(head.authority.as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        write_fields(head.headers, dst);
        match add {
            AddFraming::Nothing => {}
            AddFraming::Length(n) => {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(n.to_string().as_bytes());
                dst.extend_from_slice(b"\r\n");
            }
            AddFraming::Chunked => dst.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        dst.extend_from_slice(b"\r\n");
        self.produced = self.produced.saturating_add((dst.len() - start) as u64);

        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.queue.push_back(Pending {
            id,
            head_end: self.produced,
            written: false,
            cancelled: false,
            is_head: head.method == Method::HEAD,
            is_connect: head.method == Method::CONNECT,
        });
        self.writer = match body {
            BodyKind::Length(n) if n > 0 => Some(BodyWriter { id, kind: WriterKind::Length { declared: n, left: n } }),
            BodyKind::Chunked => Some(BodyWriter { id, kind: WriterKind::Chunked }),
            _ => None,
        };
        self.client_close |= close;
        Ok(id)
    }

    /// Append body bytes of the request being written, framed as chunks if it is chunked.
    /// `fin` ends the body (for chunked bodies this writes the last chunk `0\r\n\r\n`).
    /// A length-framed body must receive exactly its declared number of bytes.
    ///
    /// Nothing is written on error.
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use moorline_proto::http1::{BodyKind, Codec, EncodeError, Limits, RequestHead};
    /// # let mut codec = Codec::new(Limits::default());
    /// # let headers = http::HeaderMap::new();
    /// # let head = RequestHead { method: &http::Method::POST, target: "/", authority: "a", headers: &headers };
    /// let mut dst = BytesMut::new();
    /// codec.encode_head(head, BodyKind::Chunked, &mut dst)?;
    /// dst.clear();
    /// codec.encode_body(b"hello", false, &mut dst)?;
    /// codec.encode_body(b"", true, &mut dst)?;
    /// assert_eq!(&dst[..], b"5\r\nhello\r\n0\r\n\r\n");
    /// assert_eq!(codec.encode_body(b"x", true, &mut dst), Err(EncodeError::NoBodyInProgress));
    /// # Ok::<(), EncodeError>(())
    /// ```
    pub fn encode_body(&mut self, data: &[u8], fin: bool, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let Some(writer) = &mut self.writer else {
            return Err(EncodeError::NoBodyInProgress);
        };
        let start = dst.len();
        match &mut writer.kind {
            WriterKind::Length { declared, left } => {
                let len = data.len() as u64;
                if len > *left {
                    return Err(EncodeError::BodyTooLong { id: writer.id, declared: *declared, excess: len - *left });
                }
                if fin && len < *left {
                    return Err(EncodeError::BodyTooShort { id: writer.id, declared: *declared, missing: *left - len });
                }
                *left -= len;
                dst.extend_from_slice(data);
            }
            WriterKind::Chunked => {
                if !data.is_empty() {
                    dst.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
                    dst.extend_from_slice(data);
                    dst.extend_from_slice(b"\r\n");
                }
                if fin {
                    dst.extend_from_slice(b"0\r\n\r\n");
                }
            }
        }
        if fin {
            self.writer = None;
        }
        self.produced = self.produced.saturating_add((dst.len() - start) as u64);
        Ok(())
    }

    /// End a chunked request body with trailer fields (the last chunk and the trailer
    /// section). Use instead of `encode_body(.., fin = true)`.
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use moorline_proto::http1::{BodyKind, Codec, EncodeError, Limits, RequestHead};
    /// # let mut codec = Codec::new(Limits::default());
    /// # let headers = http::HeaderMap::new();
    /// # let head = RequestHead { method: &http::Method::POST, target: "/", authority: "a", headers: &headers };
    /// let mut dst = BytesMut::new();
    /// codec.encode_head(head, BodyKind::Chunked, &mut dst)?;
    /// dst.clear();
    /// let mut trailers = http::HeaderMap::new();
    /// trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    /// codec.encode_trailers(&trailers, &mut dst)?;
    /// assert_eq!(&dst[..], b"0\r\nx-checksum: abc\r\n\r\n");
    /// # Ok::<(), EncodeError>(())
    /// ```
    pub fn encode_trailers(&mut self, trailers: &HeaderMap, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let Some(writer) = &self.writer else {
            return Err(EncodeError::NoBodyInProgress);
        };
        if writer.kind != WriterKind::Chunked {
            return Err(EncodeError::TrailersNotChunked { id: writer.id });
        }
        for (name, value) in trailers {
            if !is_safe_value(value.as_bytes()) {
                return Err(EncodeError::InvalidHeaderValue { name: name.as_str().to_owned() });
            }
        }
        let start = dst.len();
        dst.extend_from_slice(b"0\r\n");
        write_fields(trailers, dst);
        dst.extend_from_slice(b"\r\n");
        self.writer = None;
        self.produced = self.produced.saturating_add((dst.len() - start) as u64);
        Ok(())
    }

    /// Whether a request body is being written (its end has not been encoded yet).
    pub fn is_writing_body(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| !w.is_finished())
    }
}

fn write_fields(headers: &HeaderMap, dst: &mut BytesMut) {
    for (name, value) in headers {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
}

/// Methods whose requests usually have a body, so an empty body is announced as
/// `content-length: 0` (RFC 9110 §8.6).
fn expects_body(method: &Method) -> bool {
    ![Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS, Method::TRACE, Method::CONNECT].contains(method)
}

/// Decide which framing header to add, rejecting caller headers that contradict `body`.
fn check_framing(method: &Method, headers: &HeaderMap, body: BodyKind) -> Result<AddFraming, EncodeError> {
    let conflict = |name, reason| Err(EncodeError::ConflictingHeader { name, reason });
    let lengths: Vec<&[u8]> = headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    if lengths.len() > 1 {
        return conflict("content-length", "more than one content-length header");
    }
    let user_length = lengths.first().copied();
    match body {
        BodyKind::Empty | BodyKind::Length(_) if has_te => conflict("transfer-encoding", "the body is not chunked"),
        BodyKind::Empty => match user_length {
            Some(b"0") => Ok(AddFraming::Nothing),
            Some(_) => conflict("content-length", "the request has no body, so it must be 0"),
            None if expects_body(method) => Ok(AddFraming::Length(0)),
            None => Ok(AddFraming::Nothing),
        },
        BodyKind::Length(n) => match user_length {
            Some(v) if v == n.to_string().as_bytes() => Ok(AddFraming::Nothing),
            Some(_) => conflict("content-length", "it differs from the declared body length"),
            None => Ok(AddFraming::Length(n)),
        },
        BodyKind::Chunked if user_length.is_some() => {
            conflict("content-length", "the body is streamed with chunked coding")
        }
        BodyKind::Chunked if has_te => {
            let chunked_last =
                list_tokens(headers, &TRANSFER_ENCODING).last().is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            if chunked_last {
                Ok(AddFraming::Nothing)
            } else {
                conflict("transfer-encoding", "chunked must be the final transfer coding")
            }
        }
        BodyKind::Chunked => Ok(AddFraming::Chunked),
    }
}

fn validate_method(method: &Method) -> Result<(), EncodeError> {
    let m = method.as_str().as_bytes();
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if m.is_empty() || !m.iter().all(tchar) {
        return Err(EncodeError::InvalidMethod { snippet: snippet(m) });
    }
    Ok(())
}

/// Visible ASCII only: no space, control byte, DEL or non-ASCII.
fn is_visible_ascii(s: &[u8]) -> bool {
    s.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// Header values must not contain CR, LF or NUL (`http::HeaderValue` already forbids them
/// unless built with an unchecked constructor; this is defence in depth).
pub(super) fn is_safe_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}
