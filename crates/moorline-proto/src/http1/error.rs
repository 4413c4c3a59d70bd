//! Typed errors of the HTTP/1.1 codec.

use super::RequestId;

/// Why a request could not be serialised.
///
/// Encoding validates everything before writing, so on error nothing was appended to the
/// destination buffer and the codec state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// HTTP/1.1 cannot interleave messages: the body of an earlier request must be finished
    /// (`encode_body(.., fin = true)`) before the next head is written.
    #[error("request {id} is still writing its body; HTTP/1.1 cannot start another request before it ends")]
    BodyInProgress {
        /// The request whose body is unfinished.
        id: RequestId,
    },
    /// The connection cannot carry another request: a `connection: close` was sent or
    /// received, the protocol was upgraded, the peer closed, or decoding failed.
    #[error("the connection cannot carry another request ({reason})")]
    NotReusable {
        /// Which of the above happened.
        reason: &'static str,
    },
    /// The method contains bytes that are not allowed in a token.
    #[error("invalid request method `{snippet}`: a method must be a non-empty token")]
    InvalidMethod {
        /// Escaped method text.
        snippet: String,
    },
    /// The request target is empty or contains whitespace, control bytes or non-ASCII bytes
    /// (which could split the request line or inject headers).
    #[error("invalid request target `{snippet}`: it must be non-empty visible ASCII without spaces")]
    InvalidTarget {
        /// Escaped target text.
        snippet: String,
    },
    /// The authority used for the `host` header contains whitespace, control bytes or
    /// non-ASCII bytes.
    #[error("invalid authority `{snippet}` for the host header: it must be visible ASCII")]
    InvalidAuthority {
        /// Escaped authority text.
        snippet: String,
    },
    /// A header value contains CR, LF or NUL, which would allow header injection or
    /// response splitting.
    #[error("header `{name}` has a value containing CR, LF or NUL")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
    /// A framing header supplied by the caller (`content-length`, `transfer-encoding` or
    /// `host`) disagrees with the body kind or appears more than once.
    #[error("conflicting `{name}` header: {reason}")]
    ConflictingHeader {
        /// The header's name.
        name: &'static str,
        /// How it conflicts.
        reason: &'static str,
    },
    /// `encode_body` or `encode_trailers` was called while no request body is being written
    /// (the request had an empty body, or its body already ended).
    #[error("no request body is being written")]
    NoBodyInProgress,
    /// More body bytes were supplied than the `content-length` announced.
    #[error("request {id} declared a body of {declared} bytes; {excess} bytes too many were supplied")]
    BodyTooLong {
        /// The request being written.
        id: RequestId,
        /// The declared content length.
        declared: u64,
        /// How many bytes exceed it.
        excess: u64,
    },
    /// The body was ended with fewer bytes than the `content-length` announced.
    #[error("request {id} declared a body of {declared} bytes but ended {missing} bytes short")]
    BodyTooShort {
        /// The request being written.
        id: RequestId,
        /// The declared content length.
        declared: u64,
        /// How many bytes are missing.
        missing: u64,
    },
    /// Trailers can only end a chunked body.
    #[error("request {id} does not use chunked transfer coding, so it cannot carry trailers")]
    TrailersNotChunked {
        /// The request being written.
        id: RequestId,
    },
}

/// Why the response stream could not be decoded.
///
/// Every decode error is fatal for the connection: the codec keeps returning the same error
/// and reports itself as not reusable. All requests still in flight should be reported to
/// their owners through [`Codec::in_flight`](super::Codec::in_flight).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes where a status line was expected are not `HTTP/1.x NNN reason`.
    #[error("invalid HTTP/1 status line: \"{snippet}\"")]
    InvalidStatusLine {
        /// Up to 48 escaped bytes from the start of the bad line.
        snippet: String,
    },
    /// The response head did not end within the limit.
    #[error("response head exceeds the limit of {limit} bytes")]
    HeadTooLarge {
        /// The configured `max_head_bytes`.
        limit: usize,
    },
    /// The response head or trailer section has more fields than allowed.
    #[error("response has more than {limit} header fields")]
    TooManyHeaders {
        /// The configured `max_headers`.
        limit: usize,
    },
    /// A header field line is malformed (bad name, bad value byte or missing colon).
    #[error("invalid response header field: \"{snippet}\"")]
    InvalidHeader {
        /// Escaped text near the bad field.
        snippet: String,
    },
    /// `content-length` is not a decimal number, overflows, or appears with differing values.
    #[error("invalid content-length in response: \"{snippet}\"")]
    InvalidContentLength {
        /// Escaped offending value(s).
        snippet: String,
    },
    /// The chunked body framing is malformed.
    #[error("invalid chunked response body: {reason}")]
    InvalidChunk {
        /// What was wrong.
        reason: &'static str,
    },
    /// The 1xx informational responses before one final response add up to more than the
    /// head limit: a server sending them without end would otherwise grow memory without end.
    #[error("the 1xx informational responses before one response exceed the limit of {limit} bytes together")]
    InformationalTooLarge {
        /// The configured `max_head_bytes` (the 1xx heads of one response share it).
        limit: usize,
    },
    /// The trailer section after the last chunk did not end within the limit.
    #[error("response trailer section exceeds the limit of {limit} bytes")]
    TrailersTooLarge {
        /// The configured `max_head_bytes` (trailers share the head limit).
        limit: usize,
    },
    /// The server sent response bytes while no request was waiting for a response (or
    /// after it announced it would close the connection).
    #[error("the server sent a response but no request is waiting for one")]
    UnexpectedResponse,
    /// The server closed the connection before the response to a request was complete.
    #[error("the connection closed before the response to request {id} was complete")]
    IncompleteResponse {
        /// The request whose response was cut short.
        id: RequestId,
    },
    /// The server answered with a version other than HTTP/1.0 or HTTP/1.1.
    #[error("unsupported HTTP version in response: \"{snippet}\" (only HTTP/1.0 and HTTP/1.1)")]
    UnsupportedVersion {
        /// Escaped start of the status line.
        snippet: String,
    },
}

/// Escape up to 48 bytes for an error message.
pub(super) fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 48;
    let shown = bytes.get(..MAX).unwrap_or(bytes);
    let mut s = shown.escape_ascii().to_string();
    if bytes.len() > MAX {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_escapes_and_truncates() {
        assert_eq!(snippet(b"a\r\n\x00"), "a\\r\\n\\x00");
        let long = [b'x'; 60];
        assert_eq!(snippet(&long), format!("{}...", "x".repeat(48)));
    }

    #[test]
    fn messages_explain_the_cause() {
        let e = DecodeError::HeadTooLarge { limit: 10 };
        assert_eq!(e.to_string(), "response head exceeds the limit of 10 bytes");
        let e = EncodeError::BodyTooShort { id: RequestId(3), declared: 5, missing: 2 };
        assert_eq!(e.to_string(), "request 3 declared a body of 5 bytes but ended 2 bytes short");
    }
}
