//! What the connection tells its owner.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::error::{DownReason, ExitReason, StreamError};
pub use crate::ids::{Protocol, StreamRef};

/// An event sent by the connection worker to the connection's single owner.
///
/// A stream's events arrive in order: any number of [`Event::Inform`], one
/// [`Event::Response`], then [`Event::Data`] chunks, the last with `fin: true`, unless
/// [`Event::Trailers`] end the stream. [`Event::StreamError`] or a [`Event::Down`] listing the
/// stream ends it early.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The connection is up (again) with this protocol.
    Up {
        /// Negotiated protocol.
        protocol: Protocol,
    },
    /// The connection was lost. Streams in flight are over; they are listed in two groups.
    Down {
        /// Protocol of the lost connection.
        protocol: Protocol,
        /// Why it was lost.
        reason: DownReason,
        /// Streams the server may have processed (sent, not fully answered).
        possibly_processed: Vec<StreamRef>,
        /// Streams the server certainly did not process: safe to retry.
        unprocessed: Vec<StreamRef>,
    },
    /// A 1xx informational response (other than 101).
    Inform {
        /// The stream.
        stream: StreamRef,
        /// 1xx status.
        status: StatusCode,
        /// Its headers.
        headers: HeaderMap,
    },
    /// The response head.
    Response {
        /// The stream.
        stream: StreamRef,
        /// Final status.
        status: StatusCode,
        /// Response headers.
        headers: HeaderMap,
        /// True when the response has no body: the stream is complete.
        fin: bool,
    },
    /// A chunk of the response body.
    Data {
        /// The stream.
        stream: StreamRef,
        /// The bytes.
        data: Bytes,
        /// True on the last chunk: the stream is complete.
        fin: bool,
    },
    /// Response trailers; they complete the stream.
    Trailers {
        /// The stream.
        stream: StreamRef,
        /// Trailer fields.
        headers: HeaderMap,
    },
    /// The server pushed a response (HTTP/2); the pushed stream's events follow under `pushed`.
    Push {
        /// The stream the push is associated with.
        stream: StreamRef,
        /// The new stream carrying the pushed response.
        pushed: StreamRef,
        /// Method of the promised request.
        method: Method,
        /// URI of the promised request (boxed, as pushes are rare and every event's size is
        /// that of the largest kind).
        uri: Box<Uri>,
        /// Headers of the promised request (boxed, as the URI).
        headers: Box<HeaderMap>,
    },
    /// A stream failed while the connection stayed up; the stream is over.
    StreamError {
        /// The stream.
        stream: StreamRef,
        /// Why.
        error: StreamError,
    },
    /// A WebSocket upgrade succeeded: the stream is now a WebSocket (over HTTP/1.1, the
    /// whole connection is). Its messages follow as [`Event::Ws`].
    WsUpgraded {
        /// The stream.
        stream: StreamRef,
        /// The subprotocol the server chose, if any.
        protocol: Option<String>,
        /// permessage-deflate parameters, if negotiated.
        deflate: Option<moorline_proto::ws::DeflateParams>,
        /// The response headers.
        headers: HeaderMap,
    },
    /// A WebSocket message (pings and pongs only with `surface_control`). A
    /// [`Message::Close`](crate::ws::Message::Close) is the server's close frame: the
    /// WebSocket is over (over HTTP/1.1, a `Down` with [`DownReason::WsClosed`] follows, or
    /// [`ExitReason::WsClosed`] when the owner closed it).
    Ws {
        /// The stream.
        stream: StreamRef,
        /// The message.
        message: moorline_proto::ws::Message,
    },
    /// Sent to the previous owner after `set_owner`: no more events will come to it.
    OwnerChanged,
    /// The worker exited; no more events will come.
    Exit {
        /// Why it exited.
        reason: ExitReason,
    },
}

impl Event {
    /// The stream this event is about, if any.
    pub fn stream(&self) -> Option<StreamRef> {
        match self {
            Event::Inform { stream, .. }
            | Event::Response { stream, .. }
            | Event::Data { stream, .. }
            | Event::Trailers { stream, .. }
            | Event::Push { stream, .. }
            | Event::WsUpgraded { stream, .. }
            | Event::Ws { stream, .. }
            | Event::StreamError { stream, .. } => Some(*stream),
            _ => None,
        }
    }
}

/// A response head returned by [`crate::Events::await_response`].
#[derive(Debug, Clone)]
pub struct Response {
    /// Final status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// 1xx informational responses received before it, in order.
    pub informs: Vec<(StatusCode, HeaderMap)>,
    /// True when the response has no body.
    pub fin: bool,
}

/// A whole response body returned by [`crate::Events::await_body`].
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// The body bytes, concatenated.
    pub data: Bytes,
    /// Trailers, if the response had any.
    pub trailers: Option<HeaderMap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_name_themselves_as_alpn_and_in_text() {
        assert_eq!(Protocol::Http1.alpn(), b"http/1.1");
        assert_eq!(Protocol::Http2.alpn(), b"h2");
        assert_eq!(Protocol::Http1.to_string(), "HTTP/1.1");
        assert_eq!(Protocol::Http2.to_string(), "HTTP/2");
    }

    #[test]
    fn stream_events_tell_their_stream_and_connection_events_none() {
        let s = StreamRef { conn: 3, id: 9 };
        assert_eq!((s.connection_id(), s.id()), (3, 9));
        let about_s = [
            Event::Inform { stream: s, status: StatusCode::EARLY_HINTS, headers: HeaderMap::new() },
            Event::Response { stream: s, status: StatusCode::OK, headers: HeaderMap::new(), fin: false },
            Event::Data { stream: s, data: Bytes::from_static(b"x"), fin: true },
            Event::Trailers { stream: s, headers: HeaderMap::new() },
            Event::StreamError { stream: s, error: StreamError::Refused },
        ];
        for ev in &about_s {
            assert_eq!(ev.stream(), Some(s), "{ev:?}");
        }
        let about_none = [
            Event::Up { protocol: Protocol::Http2 },
            Event::Down {
                protocol: Protocol::Http2,
                reason: DownReason::Closed,
                possibly_processed: vec![s],
                unprocessed: vec![],
            },
            Event::OwnerChanged,
            Event::Exit { reason: ExitReason::Closed },
        ];
        for ev in &about_none {
            assert_eq!(ev.stream(), None, "{ev:?}");
        }
    }
}
