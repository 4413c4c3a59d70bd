//! HTTP/1.1 client codec: serialises requests and decodes responses, with no I/O.
//!
//! One [`Codec`] serves one connection. The shell writes the bytes the codec produces to the
//! socket, feeds it the bytes it reads, and tells it what reached the socket so that, when
//! the connection is lost, [`Codec::in_flight`] can say which requests *may* have been
//! processed by the server and which certainly were *not*.
//!
//! # When is a request "written"?
//!
//! A request counts as written once its complete head has been handed to the socket: from
//! then on the server may act on it. The codec learns this in one of two ways (use one):
//!
//! * [`Codec::record_flushed`]`(n)` after every successful socket write of `n` bytes taken in
//!   order from the bytes the codec produced. The codec knows where each head ends in that
//!   stream, so this is exact even with partial writes.
//! * [`Codec::mark_written`]`(id)` once all bytes up to and including the head of `id` have
//!   been written. It also marks every earlier request, since bytes leave in order.
//!
//! A request whose response starts arriving is considered written in any case.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use http::{HeaderMap, Method, StatusCode};
//! use moorline_proto::http1::{BodyKind, Codec, Limits, RequestHead, ResponseEvent};
//!
//! let mut codec = Codec::new(Limits::default());
//! let mut out = BytesMut::new();
//! let headers = HeaderMap::new();
//! let head = RequestHead {
//!     method: &Method::POST,
//!     target: "/upload?x=1",
//!     authority: "example.com",
//!     headers: &headers,
//! };
//! let id = codec.encode_head(head, BodyKind::Length(5), &mut out)?;
//! codec.encode_body(b"hello", true, &mut out)?;
//! assert_eq!(
//!     &out[..],
//!     b"POST /upload?x=1 HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\n\r\nhello"
//! );
//! assert_eq!(codec.in_flight(), (vec![], vec![id])); // nothing reached the socket yet
//! codec.record_flushed(out.len());
//! assert_eq!(codec.in_flight(), (vec![id], vec![])); // the server may be processing it
//!
//! let mut input = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..]);
//! let mut events = Vec::new();
//! while let Some(event) = codec.decode(&mut input)? {
//!     events.push(event);
//! }
//! assert!(matches!(events[0], ResponseEvent::Head { status: StatusCode::OK, .. }));
//! assert_eq!(events[1], ResponseEvent::Data { id, data: bytes::Bytes::from_static(b"ok") });
//! assert_eq!(events[2], ResponseEvent::End { id });
//! assert_eq!(codec.in_flight(), (vec![], vec![]));
//! assert!(codec.is_reusable());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chunked;
mod decode;
mod encode;
mod error;
mod fields;
mod scan;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;

pub use error::{DecodeError, EncodeError};

use decode::ReadState;
use encode::BodyWriter;

/// Size limits that bound the codec's memory use for any input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest response head (status line and header fields) and largest trailer section,
    /// in bytes; also the most bytes of 1xx informational heads before one final response,
    /// together. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in a response head or trailer section. Default 128.
    pub max_headers: usize,
    /// Largest [`ResponseEvent::Data`] payload. Default 64 KiB.
    pub max_chunk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 64 * 1024, max_headers: 128, max_chunk: 64 * 1024 }
    }
}

/// Identifies a request on one connection. Ids are sequential from 0 in encoding order,
/// which is also the order responses arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The sequence number of the request on its connection.
    ///
    /// ```
    /// # use moorline_proto::http1::{BodyKind, Codec, Limits, RequestHead};
    /// let mut codec = Codec::new(Limits::default());
    /// let headers = http::HeaderMap::new();
    /// let head = RequestHead { method: &http::Method::GET, target: "/", authority: "a", headers: &headers };
    /// let id = codec.encode_head(head, BodyKind::Empty, &mut bytes::BytesMut::new())?;
    /// assert_eq!(id.get(), 0);
    /// # Ok::<(), moorline_proto::http1::EncodeError>(())
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body. `content-length: 0` is sent for methods that normally carry one
    /// (anything but GET, HEAD, DELETE, OPTIONS, TRACE and CONNECT).
    Empty,
    /// A body of exactly this many bytes, announced with `content-length`.
    Length(u64),
    /// A streamed body of unknown length, sent with `transfer-encoding: chunked`.
    Chunked,
}

/// The parts of a request head the codec serialises.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// Request method.
    pub method: &'a http::Method,
    /// Request target as it appears on the request line: origin-form `path?query` usually,
    /// authority-form for CONNECT, absolute-form for proxies, `*` for OPTIONS.
    pub target: &'a str,
    /// Value of the `host` header, used unless `headers` already has one.
    pub authority: &'a str,
    /// Header fields, written in the map's iteration order with lowercase names.
    pub headers: &'a http::HeaderMap,
}

/// One step of decoding the response stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseEvent {
    /// An informational (1xx) response other than 101; the final response follows.
    Inform {
        /// The request being answered.
        id: RequestId,
        /// The 1xx status.
        status: http::StatusCode,
        /// Its header fields.
        headers: http::HeaderMap,
    },
    /// The head of the final response.
    Head {
        /// The request being answered.
        id: RequestId,
        /// Final status.
        status: http::StatusCode,
        /// `HTTP_10` or `HTTP_11`.
        version: http::Version,
        /// Header fields.
        headers: http::HeaderMap,
        /// False when the response certainly has no body bytes (HEAD request, 204, 304,
        /// `content-length: 0`); `End` then follows at once.
        has_body: bool,
    },
    /// A piece of the response body, at most [`Limits::max_chunk`] bytes, split from the
    /// input buffer without copying. Never empty.
    Data {
        /// The request being answered.
        id: RequestId,
        /// The body bytes.
        data: bytes::Bytes,
    },
    /// Trailer fields after a chunked body (only sent when there is at least one).
    Trailers {
        /// The request being answered.
        id: RequestId,
        /// Trailer fields.
        headers: http::HeaderMap,
    },
    /// The response is complete; the request is answered.
    End {
        /// The request answered.
        id: RequestId,
    },
    /// The connection switched protocols: `101 Switching Protocols`, or a 2xx answer to
    /// CONNECT (a tunnel). Bytes after the head stay in the input buffer and belong to the new
    /// protocol; the codec decodes nothing more. Reported even for a cancelled request,
    /// since the connection itself changed.
    Upgrade {
        /// The request answered.
        id: RequestId,
        /// 101, or the 2xx status of a CONNECT.
        status: http::StatusCode,
        /// Header fields of the response.
        headers: http::HeaderMap,
    },
}

/// A request waiting for (the end of) its response.
#[derive(Debug, Clone)]
struct Pending {
    id: RequestId,
    /// Offset in the produced byte stream where this request's head ends.
    head_end: u64,
    written: bool,
    cancelled: bool,
    is_head: bool,
    is_connect: bool,
}

/// HTTP/1.1 client codec for one connection. See the [module docs](self).
#[derive(Debug)]
pub struct Codec {
    limits: Limits,
    next_id: u64,
    /// Requests awaiting responses, in the order they were encoded.
    queue: VecDeque<Pending>,
    /// The request whose body is being written, if any.
    writer: Option<BodyWriter>,
    /// Total bytes produced into destination buffers.
    produced: u64,
    /// Total bytes reported as flushed to the socket.
    flushed: u64,
    read: ReadState,
    /// The client sent `connection: close`.
    client_close: bool,
    /// The server announced closing in the response to this request: requests after it
    /// will not be processed.
    server_close: Option<RequestId>,
    /// The response to this request completed while its body was still being written.
    answered_early: bool,
    /// The peer closed its side.
    eof: bool,
    /// Bytes of 1xx heads received since the last final response head (bounded by
    /// `max_head_bytes`).
    informational: usize,
}

impl Codec {
    /// A codec for a fresh connection.
    pub fn new(limits: Limits) -> Self {
        Codec {
            limits,
            next_id: 0,
            queue: VecDeque::new(),
            writer: None,
            produced: 0,
            flushed: 0,
            read: ReadState::default(),
            client_close: false,
            server_close: None,
            answered_early: false,
            eof: false,
            informational: 0,
        }
    }

    /// The limits this codec enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Record that `n` more bytes of the produced stream were written to the socket
    /// (in order, starting where the previous call ended). Requests whose complete head is
    /// now written become "possibly processed".
    ///
    /// ```
    /// # use moorline_proto::http1::{BodyKind, Codec, Limits, RequestHead};
    /// let mut codec = Codec::new(Limits::default());
    /// let (headers, mut out) = (http::HeaderMap::new(), bytes::BytesMut::new());
    /// let head = RequestHead { method: &http::Method::GET, target: "/", authority: "a", headers: &headers };
    /// let id = codec.encode_head(head, BodyKind::Empty, &mut out)?;
    /// codec.record_flushed(out.len() - 1); // head not complete on the wire yet
    /// assert_eq!(codec.in_flight(), (vec![], vec![id]));
    /// codec.record_flushed(1);
    /// assert_eq!(codec.in_flight(), (vec![id], vec![]));
    /// # Ok::<(), moorline_proto::http1::EncodeError>(())
    /// ```
    pub fn record_flushed(&mut self, n: usize) {
        self.flushed = self.flushed.saturating_add(n as u64).min(self.produced);
        let flushed = self.flushed;
        // Heads end in request order, so stop at the first one not fully flushed.
        for p in self.queue.iter_mut().take_while(|p| p.head_end <= flushed) {
            p.written = true;
        }
    }

    /// Record that the head of request `id`, and so everything produced before it, has been
    /// written to the socket. Unknown or already answered ids are ignored.
    pub fn mark_written(&mut self, id: RequestId) {
        for p in self.queue.iter_mut().filter(|p| p.id <= id) {
            p.written = true;
        }
    }

    /// Stop reporting request `id`: its response, if one arrives, is still parsed (to keep
    /// the stream in sync) but produces no events, except [`ResponseEvent::Upgrade`].
    /// Cancelled requests are left out of [`in_flight`](Self::in_flight). Returns false if
    /// the id is unknown or already answered. A body still being written is not affected;
    /// the shell decides whether to finish it or close the connection.
    pub fn cancel(&mut self, id: RequestId) -> bool {
        let Some(p) = self.queue.iter_mut().find(|p| p.id == id) else {
            return false;
        };
        p.cancelled = true;
        self.read.cancel(id);
        true
    }

    /// Whether the connection may carry another request (possibly after the current request
    /// body ends). False once `connection: close` was sent or received, after an HTTP/1.0
    /// response without keep-alive or a close-delimited body, after a protocol upgrade, after
    /// the peer closed, after a decode error, or if a response completed while its request
    /// body was still being written.
    pub fn is_reusable(&self) -> bool {
        self.not_reusable_reason().is_none()
    }

    fn not_reusable_reason(&self) -> Option<&'static str> {
        if self.read.is_failed() {
            Some("decoding the response stream failed")
        } else if self.read.is_upgraded() {
            Some("the connection switched protocols")
        } else if self.eof {
            Some("the server closed the connection")
        } else if self.client_close {
            Some("a request carried connection: close")
        } else if self.server_close.is_some() {
            Some("the server announced it closes the connection")
        } else if self.answered_early {
            Some("a response ended before its request body was fully written")
        } else {
            None
        }
    }

    /// Requests not yet fully answered, for a connection-loss report:
    /// `(possibly_processed, unprocessed)`.
    ///
    /// * possibly processed: the head was written (or a response began) but the response
    ///   is not complete. The server may have acted on these.
    /// * unprocessed: the head was never completely written, or it followed a response in
    ///   which the server announced it would close (RFC 9112 §9.6: such a server processes
    ///   no further requests). These are safe to retry.
    ///
    /// Cancelled requests are omitted. Both lists are in request order.
    pub fn in_flight(&self) -> (Vec<RequestId>, Vec<RequestId>) {
        let mut possibly = Vec::new();
        let mut unprocessed = Vec::new();
        for p in self.queue.iter().filter(|p| !p.cancelled) {
            let after_close = self.server_close.is_some_and(|c| p.id > c);
            if p.written && !after_close {
                possibly.push(p.id);
            } else {
                unprocessed.push(p.id);
            }
        }
        (possibly, unprocessed)
    }

    /// Number of requests encoded but not yet fully answered (cancelled ones included).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

/// Comma-separated list elements of every field named `name`, trimmed, empty ones dropped.
fn list_tokens<'a>(headers: &'a http::HeaderMap, name: &http::HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}
