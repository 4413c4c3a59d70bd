//! Codec-level tests: encoding, framing modes, pipelining, split feeding, bookkeeping.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

use super::*;

fn head<'a>(method: &'a Method, target: &'a str, headers: &'a HeaderMap) -> RequestHead<'a> {
    RequestHead { method, target, authority: "example.com", headers }
}

/// Encode a request with no headers and (if any) its whole body.
fn send(codec: &mut Codec, method: Method, body: &[u8]) -> RequestId {
    let headers = HeaderMap::new();
    let kind = if body.is_empty() { BodyKind::Empty } else { BodyKind::Length(body.len() as u64) };
    let mut dst = BytesMut::new();
    let id = codec.encode_head(head(&method, "/", &headers), kind, &mut dst).unwrap();
    if !body.is_empty() {
        codec.encode_body(body, true, &mut dst).unwrap();
    }
    codec.record_flushed(dst.len());
    id
}

/// Feed `pieces` one after another, decoding after each; then signal EOF if asked.
/// Consecutive Data events are merged so results do not depend on the split.
fn feed(codec: &mut Codec, pieces: &[&[u8]], eof: bool) -> Result<Vec<ResponseEvent>, DecodeError> {
    let mut src = BytesMut::new();
    let mut events = Vec::new();
    for piece in pieces {
        src.extend_from_slice(piece);
        while let Some(e) = codec.decode(&mut src)? {
            events.push(e);
        }
    }
    if eof {
        while let Some(e) = codec.decode_eof(&mut src)? {
            events.push(e);
        }
    }
    Ok(coalesce(events))
}

fn coalesce(events: Vec<ResponseEvent>) -> Vec<ResponseEvent> {
    let mut out: Vec<ResponseEvent> = Vec::new();
    for e in events {
        if let (Some(ResponseEvent::Data { id: prev_id, data: prev }), ResponseEvent::Data { id, data }) =
            (out.last_mut(), &e)
            && prev_id == id
        {
            assert!(!data.is_empty(), "empty Data event");
            *prev = [&prev[..], &data[..]].concat().into();
            continue;
        }
        out.push(e);
    }
    out
}

fn decode_one(codec: &mut Codec, input: &[u8]) -> Result<Vec<ResponseEvent>, DecodeError> {
    feed(codec, &[input], false)
}

fn data(id: RequestId, bytes: &'static [u8]) -> ResponseEvent {
    ResponseEvent::Data { id, data: Bytes::from_static(bytes) }
}

fn status_of(e: &ResponseEvent) -> Option<(StatusCode, bool)> {
    match e {
        ResponseEvent::Head { status, has_body, .. } => Some((*status, *has_body)),
        _ => None,
    }
}

// ---------------------------------------------------------------- encoding

#[test]
fn encodes_get_without_framing_headers() {
    let mut codec = Codec::new(Limits::default());
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_static("*/*"));
    let mut dst = BytesMut::new();
    let id = codec.encode_head(head(&Method::GET, "/a?b=c", &headers), BodyKind::Empty, &mut dst).unwrap();
    assert_eq!(id, RequestId(0));
    assert_eq!(&dst[..], b"GET /a?b=c HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\n\r\n");
    assert!(!codec.is_writing_body());
}

#[test]
fn empty_post_gets_content_length_zero_and_user_host_wins() {
    let mut codec = Codec::new(Limits::default());
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("other:81"));
    let mut dst = BytesMut::new();
    codec.encode_head(head(&Method::POST, "/", &headers), BodyKind::Empty, &mut dst).unwrap();
    assert_eq!(&dst[..], b"POST / HTTP/1.1\r\nhost: other:81\r\ncontent-length: 0\r\n\r\n");
}

#[test]
fn encodes_length_body_and_enforces_it() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let mut dst = BytesMut::new();
    let id = codec.encode_head(head(&Method::PUT, "/", &headers), BodyKind::Length(5), &mut dst).unwrap();
    dst.clear();
    assert_eq!(
        codec.encode_body(b"toolong", false, &mut dst),
        Err(EncodeError::BodyTooLong { id, declared: 5, excess: 2 })
    );
    codec.encode_body(b"abc", false, &mut dst).unwrap();
    assert_eq!(codec.encode_body(b"d", true, &mut dst), Err(EncodeError::BodyTooShort { id, declared: 5, missing: 1 }));
    assert!(codec.is_writing_body());
    assert!(matches!(
        codec.encode_head(head(&Method::GET, "/", &headers), BodyKind::Empty, &mut dst),
        Err(EncodeError::BodyInProgress { id: i }) if i == id
    ));
    codec.encode_body(b"de", false, &mut dst).unwrap();
    assert_eq!(&dst[..], b"abcde");
    // All declared bytes written: finished without an explicit fin.
    assert!(!codec.is_writing_body());
    codec.encode_head(head(&Method::GET, "/", &headers), BodyKind::Empty, &mut dst).unwrap();
    assert_eq!(codec.encode_body(b"", true, &mut dst), Err(EncodeError::NoBodyInProgress));
}

#[test]
fn encodes_chunked_body() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let mut dst = BytesMut::new();
    codec.encode_head(head(&Method::POST, "/up", &headers), BodyKind::Chunked, &mut dst).unwrap();
    assert!(dst.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
    dst.clear();
    codec.encode_body(&[b'x'; 26], false, &mut dst).unwrap();
    codec.encode_body(b"", false, &mut dst).unwrap(); // empty data writes nothing
    codec.encode_body(b"yz", true, &mut dst).unwrap();
    let mut expected = b"1A\r\n".to_vec();
    expected.extend([b'x'; 26]);
    expected.extend(b"\r\n2\r\nyz\r\n0\r\n\r\n");
    assert_eq!(&dst[..], &expected[..]);
    assert!(!codec.is_writing_body());
}

#[test]
fn trailers_only_for_chunked() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let mut dst = BytesMut::new();
    let id = codec.encode_head(head(&Method::POST, "/", &headers), BodyKind::Length(1), &mut dst).unwrap();
    assert_eq!(codec.encode_trailers(&HeaderMap::new(), &mut dst), Err(EncodeError::TrailersNotChunked { id }));
}

#[test]
fn rejects_conflicting_framing_headers() {
    let cases: &[(&str, &str, BodyKind, &str)] = &[
        ("content-length", "4", BodyKind::Length(5), "content-length"),
        ("content-length", "4", BodyKind::Chunked, "content-length"),
        ("content-length", "1", BodyKind::Empty, "content-length"),
        ("transfer-encoding", "chunked", BodyKind::Length(5), "transfer-encoding"),
        ("transfer-encoding", "chunked", BodyKind::Empty, "transfer-encoding"),
        ("transfer-encoding", "chunked, gzip", BodyKind::Chunked, "transfer-encoding"),
    ];
    for (name, value, kind, blamed) in cases {
        let mut codec = Codec::new(Limits::default());
        let mut headers = HeaderMap::new();
        headers.insert(*name, HeaderValue::from_static(value));
        let mut dst = BytesMut::new();
        let r = codec.encode_head(head(&Method::POST, "/", &headers), *kind, &mut dst);
        assert!(
            matches!(r, Err(EncodeError::ConflictingHeader { name, .. }) if name == *blamed),
            "{name}: {value} with {kind:?} gave {r:?}"
        );
        assert!(dst.is_empty());
        assert_eq!(codec.pending(), 0);
    }
    // Two content-length fields, or two hosts.
    let mut codec = Codec::new(Limits::default());
    let mut headers = HeaderMap::new();
    headers.append("content-length", HeaderValue::from_static("5"));
    headers.append("content-length", HeaderValue::from_static("5"));
    let r = codec.encode_head(head(&Method::POST, "/", &headers), BodyKind::Length(5), &mut BytesMut::new());
    assert!(matches!(r, Err(EncodeError::ConflictingHeader { name: "content-length", .. })));
    let mut headers = HeaderMap::new();
    headers.append("host", HeaderValue::from_static("a"));
    headers.append("host", HeaderValue::from_static("b"));
    let r = codec.encode_head(head(&Method::GET, "/", &headers), BodyKind::Empty, &mut BytesMut::new());
    assert!(matches!(r, Err(EncodeError::ConflictingHeader { name: "host", .. })));
}

#[test]
fn agreeing_user_framing_headers_are_not_duplicated() {
    let mut codec = Codec::new(Limits::default());
    let mut headers = HeaderMap::new();
    headers.insert("transfer-encoding", HeaderValue::from_static("gzip, chunked"));
    let mut dst = BytesMut::new();
    codec.encode_head(head(&Method::POST, "/", &headers), BodyKind::Chunked, &mut dst).unwrap();
    assert_eq!(&dst[..], b"POST / HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
    codec.encode_body(b"", true, &mut dst).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-length", HeaderValue::from_static("2"));
    dst.clear();
    codec.encode_head(head(&Method::POST, "/", &headers), BodyKind::Length(2), &mut dst).unwrap();
    assert_eq!(&dst[..], b"POST / HTTP/1.1\r\nhost: example.com\r\ncontent-length: 2\r\n\r\n");
}

#[test]
fn rejects_injection_in_request_line_and_host() {
    let headers = HeaderMap::new();
    let mut codec = Codec::new(Limits::default());
    for target in ["", "/a b", "/a\r\nx: y", "/\n", "/\u{e9}", "/\t"] {
        let r = codec.encode_head(head(&Method::GET, target, &headers), BodyKind::Empty, &mut BytesMut::new());
        assert!(matches!(r, Err(EncodeError::InvalidTarget { .. })), "{target:?}");
    }
    for authority in ["a\r\nx: y", "a b", "a\0"] {
        let h = RequestHead { method: &Method::GET, target: "/", authority, headers: &headers };
        let r = codec.encode_head(h, BodyKind::Empty, &mut BytesMut::new());
        assert!(matches!(r, Err(EncodeError::InvalidAuthority { .. })), "{authority:?}");
    }
    // Header values: `http` refuses CR/LF already; the codec checks again.
    assert!(HeaderValue::from_bytes(b"a\r\nb: c").is_err());
    assert!(!encode::is_safe_value(b"a\r\nb: c"));
    assert!(!encode::is_safe_value(b"a\0"));
    assert!(encode::is_safe_value(b"a\tb \x80"));
    // An extension method is fine as long as it is a token.
    let m = Method::from_bytes(b"PURGE").unwrap();
    codec.encode_head(head(&m, "*", &headers), BodyKind::Empty, &mut BytesMut::new()).unwrap();
    assert_eq!(codec.pending(), 1);
}

#[test]
fn error_messages_name_the_problem() {
    let e = EncodeError::InvalidTarget { snippet: error::snippet(b"/a\r\nb") };
    assert_eq!(e.to_string(), "invalid request target `/a\\r\\nb`: it must be non-empty visible ASCII without spaces");
}

#[test]
fn connection_close_request_is_the_last() {
    let mut codec = Codec::new(Limits::default());
    let mut headers = HeaderMap::new();
    headers.insert("connection", HeaderValue::from_static("Close"));
    codec.encode_head(head(&Method::GET, "/", &headers), BodyKind::Empty, &mut BytesMut::new()).unwrap();
    assert!(!codec.is_reusable());
    let r = codec.encode_head(head(&Method::GET, "/", &HeaderMap::new()), BodyKind::Empty, &mut BytesMut::new());
    assert!(matches!(r, Err(EncodeError::NotReusable { .. })));
}

// ---------------------------------------------------------------- framing modes

#[test]
fn content_length_body() {
    let mut codec = Codec::new(Limits::default());
    let id = send(&mut codec, Method::GET, b"");
    let ev = decode_one(&mut codec, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello").unwrap();
    assert_eq!(ev.len(), 3);
    let ResponseEvent::Head { id: hid, status, version, headers, has_body } = &ev[0] else { panic!() };
    assert_eq!((*hid, *status, *version, *has_body), (id, StatusCode::OK, Version::HTTP_11, true));
    assert_eq!(headers["x-a"], "1");
    assert_eq!(ev[1], data(id, b"hello"));
    assert_eq!(ev[2], ResponseEvent::End { id });
    assert!(codec.is_reusable());
}

#[test]
fn chunked_body_with_trailers() {
    let mut codec = Codec::new(Limits::default());
    let id = send(&mut codec, Method::GET, b"");
    let ev = decode_one(
        &mut codec,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nExpires: never\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status_of(&ev[0]), Some((StatusCode::OK, true)));
    assert_eq!(ev[1], data(id, b"wikipedia"));
    let ResponseEvent::Trailers { headers, .. } = &ev[2] else { panic!("{ev:?}") };
    assert_eq!(headers["expires"], "never");
    assert_eq!(ev[3], ResponseEvent::End { id });
    assert_eq!(ev.len(), 4);
    assert!(codec.is_reusable());
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let mut codec = Codec::new(Limits::default());
    let id = send(&mut codec, Method::GET, b"");
    let ev = feed(&mut codec, &[b"HTTP/1.1 200 OK\r\n\r\nsome", b" bytes"], true).unwrap();
    assert_eq!(ev[1..], [data(id, b"some bytes"), ResponseEvent::End { id }]);
    assert!(!codec.is_reusable());
    // Transfer coding without chunked last is also close-delimited.
    let mut codec = Codec::new(Limits::default());
    let id = send(&mut codec, Method::GET, b"");
    let ev = feed(&mut codec, &[b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 2\r\n\r\nabc"], true)
        .unwrap();
    assert_eq!(ev[1..], [data(id, b"abc"), ResponseEvent::End { id }]);
}

#[test]
fn bodyless_responses() {
    for (method, response) in [
        (Method::HEAD, &b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"[..]),
        (Method::HEAD, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        (Method::GET, b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n"),
        (Method::GET, b"HTTP/1.1 304 Not Modified\r\n\r\n"),
        (Method::GET, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
    ] {
        let mut codec = Codec::new(Limits::default());
        let id = send(&mut codec, method.clone(), b"");
        let ev = decode_one(&mut codec, response).unwrap();
        assert_eq!(ev.len(), 2, "{method} {}", response.escape_ascii());
        assert_eq!(status_of(&ev[0]).map(|s| s.1), Some(false));
        assert_eq!(ev[1], ResponseEvent::End { id });
        assert!(codec.is_reusable());
    }
}

#[test]
fn informational_then_final() {
    let mut codec = Codec::new(Limits::default());
    let id = send(&mut codec, Method::POST, b"x");
    let ev = decode_one(
        &mut codec,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    )
    .unwrap();
    assert!(
        matches!(&ev[0], ResponseEvent::Inform { id: i, status, .. } if *i == id && *status == StatusCode::CONTINUE)
    );
    let ResponseEvent::Inform { headers, status, .. } = &ev[1] else { panic!() };
    assert_eq!((*status, &headers["link"]), (StatusCode::EARLY_HINTS, &HeaderValue::from_static("</s.css>")));
    assert_eq!(status_of(&ev[2]), Some((StatusCode::CREATED, false)));
    assert_eq!(ev[3], ResponseEvent::End { id });
}

#[test]
fn switching_protocols_leaves_the_rest() {
    let mut codec = Codec::new(Limits::default());
    let id = send(&mut codec, Method::GET, b"");
    let mut src = BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n\x81\x05hello"[..]);
    let ev = codec.decode(&mut src).unwrap().unwrap();
    let ResponseEvent::Upgrade { id: uid, status, headers } = ev else { panic!("{ev:?}") };
    assert_eq!((uid, status), (id, StatusCode::SWITCHING_PROTOCOLS));
    assert_eq!(headers["upgrade"], "websocket");
    assert_eq!(codec.decode(&mut src), Ok(None));
    assert_eq!(codec.decode_eof(&mut src), Ok(None));
    assert_eq!(&src[..], b"\x81\x05hello");
    assert!(!codec.is_reusable());
    assert_eq!(codec.in_flight(), (vec![], vec![]));
}

#[test]
fn connect_success_is_a_tunnel_and_failure_is_not() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let h = head(&Method::CONNECT, "example.org:443", &headers);
    let id = codec.encode_head(h, BodyKind::Empty, &mut BytesMut::new()).unwrap();
    let mut src = BytesMut::from(&b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03"[..]);
    assert!(matches!(codec.decode(&mut src), Ok(Some(ResponseEvent::Upgrade { id: i, .. })) if i == id));
    assert_eq!(&src[..], b"\x16\x03");

    let mut codec = Codec::new(Limits::default());
    codec.encode_head(h, BodyKind::Empty, &mut BytesMut::new()).unwrap();
    let ev = decode_one(&mut codec, b"HTTP/1.1 407 Proxy Auth\r\ncontent-length: 2\r\n\r\nno").unwrap();
    assert_eq!(status_of(&ev[0]), Some((StatusCode::PROXY_AUTHENTICATION_REQUIRED, true)));
    assert_eq!(ev.len(), 3);
}

#[test]
fn max_chunk_bounds_data_events() {
    let mut codec = Codec::new(Limits { max_chunk: 3, ..Limits::default() });
    let id = send(&mut codec, Method::GET, b"");
    let mut src = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nabcdefgh"[..]);
    let mut sizes = Vec::new();
    while let Some(e) = codec.decode(&mut src).unwrap() {
        if let ResponseEvent::Data { data, .. } = e {
            sizes.push(data.len());
        } else if e == (ResponseEvent::End { id }) {
            sizes.push(0);
        }
    }
    assert_eq!(sizes, [3, 3, 2, 0]);
}

// ---------------------------------------------------------------- keep-alive

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", true),
        (b"HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n", false),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false),
        (b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n", true),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n", false),
    ];
    for (response, reusable) in cases {
        let mut codec = Codec::new(Limits::default());
        let id = send(&mut codec, Method::GET, b"");
        let ev = decode_one(&mut codec, response).unwrap();
        assert_eq!(ev.last(), Some(&ResponseEvent::End { id }));
        assert_eq!(codec.is_reusable(), *reusable, "{}", response.escape_ascii());
    }
}

#[test]
fn requests_after_a_closing_response_are_unprocessed() {
    let mut codec = Codec::new(Limits::default());
    let a = send(&mut codec, Method::GET, b"");
    let b = send(&mut codec, Method::POST, b"data");
    let c = send(&mut codec, Method::GET, b"");
    assert_eq!(codec.in_flight(), (vec![a, b, c], vec![]));
    let ev = decode_one(&mut codec, b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nab").unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(codec.in_flight(), (vec![a], vec![b, c]));
    let mut src = BytesMut::from(&b"c"[..]);
    assert_eq!(codec.decode(&mut src), Ok(Some(data(a, b"c"))));
    assert_eq!(codec.decode(&mut src), Ok(Some(ResponseEvent::End { id: a })));
    assert_eq!(codec.in_flight(), (vec![], vec![b, c]));
    // The server must not answer anything else.
    src.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(codec.decode(&mut src), Err(DecodeError::UnexpectedResponse));
}

#[test]
fn response_before_body_finished_prevents_reuse() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let mut dst = BytesMut::new();
    let id = codec.encode_head(head(&Method::POST, "/", &headers), BodyKind::Length(100), &mut dst).unwrap();
    codec.record_flushed(dst.len());
    let ev = decode_one(&mut codec, b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n").unwrap();
    assert_eq!(ev.last(), Some(&ResponseEvent::End { id }));
    assert!(!codec.is_reusable());
}

// ---------------------------------------------------------------- pipelining and splits

fn pipelined_codec() -> (Codec, [RequestId; 4]) {
    let mut codec = Codec::new(Limits { max_chunk: 7, ..Limits::default() });
    let ids = [
        send(&mut codec, Method::POST, b"body"),
        send(&mut codec, Method::GET, b""),
        send(&mut codec, Method::HEAD, b""),
        send(&mut codec, Method::GET, b""),
    ];
    (codec, ids)
}

const PIPELINED: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello world!\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-t: 1\r\n\r\n\
\r\nHTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n\
HTTP/1.0 200 OK\r\n\r\nclose delimited";

#[test]
fn pipelined_responses_match_requests_in_order() {
    let (mut codec, [a, b, c, d]) = pipelined_codec();
    let ev = feed(&mut codec, &[PIPELINED], true).unwrap();
    let ids: Vec<RequestId> = ev
        .iter()
        .map(|e| match e {
            ResponseEvent::Inform { id, .. }
            | ResponseEvent::Head { id, .. }
            | ResponseEvent::Data { id, .. }
            | ResponseEvent::Trailers { id, .. }
            | ResponseEvent::End { id }
            | ResponseEvent::Upgrade { id, .. } => *id,
        })
        .collect();
    assert_eq!(ids, [a, a, a, a, b, b, b, b, c, c, d, d, d]);
    assert_eq!(ev[2], data(a, b"hello world!"));
    assert_eq!(ev[5], data(b, b"abc0123456789abcdef"));
    assert_eq!(status_of(&ev[8]), Some((StatusCode::OK, false)));
    assert_eq!(ev[11], data(d, b"close delimited"));
    assert_eq!(codec.in_flight(), (vec![], vec![]));
    assert!(!codec.is_reusable());
}

/// Every two-way split and byte-at-a-time feeding give the same (coalesced) events.
fn check_splits(make: impl Fn() -> Codec, input: &[u8], eof: bool) {
    let whole = feed(&mut make(), &[input], eof);
    assert!(whole.is_ok(), "{whole:?}");
    for cut in 0..=input.len() {
        let (x, y) = input.split_at(cut);
        assert_eq!(feed(&mut make(), &[x, y], eof), whole, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed(&mut make(), &bytes, eof), whole, "byte at a time");
}

#[test]
fn split_feeding_gives_identical_events() {
    check_splits(|| pipelined_codec().0, PIPELINED, true);
    let upgrade = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\nrest";
    check_splits(
        || {
            let mut c = Codec::new(Limits::default());
            send(&mut c, Method::GET, b"");
            c
        },
        upgrade,
        true,
    );
    let bare_lf = b"HTTP/1.1 200 OK\ncontent-length: 2\n\nokHTTP/1.1 204 No Content\n\n";
    check_splits(
        || {
            let mut c = Codec::new(Limits::default());
            send(&mut c, Method::GET, b"");
            send(&mut c, Method::GET, b"");
            c
        },
        bare_lf,
        false,
    );
}

#[test]
fn split_feeding_gives_identical_errors() {
    let make = || {
        let mut c = Codec::new(Limits::default());
        send(&mut c, Method::GET, b"");
        c
    };
    for bad in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcdeXY"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
        b"HTTX/1.1 200 OK\r\n\r\n",
    ] {
        let whole = feed(&mut make(), &[bad], true);
        assert!(whole.is_err());
        let bytes: Vec<&[u8]> = bad.chunks(1).collect();
        let split = feed(&mut make(), &bytes, true);
        // Same error kind; an early-detected error may quote fewer bytes.
        assert_eq!(split.as_ref().map_err(std::mem::discriminant), whole.as_ref().map_err(std::mem::discriminant));
    }
}

// ---------------------------------------------------------------- errors

fn one_get() -> Codec {
    let mut c = Codec::new(Limits::default());
    send(&mut c, Method::GET, b"");
    c
}

#[test]
fn garbage_status_line_fails_early() {
    let mut codec = one_get();
    // Not even a complete line: detected from the first bytes.
    let r = decode_one(&mut codec, b"<html>");
    assert_eq!(r, Err(DecodeError::InvalidStatusLine { snippet: "<html>".into() }));
    // Sticky, and the connection is finished.
    assert_eq!(codec.decode(&mut BytesMut::new()), r.map(|_| None));
    assert!(!codec.is_reusable());

    for (bad, expect_version) in [
        (&b"HTTP/1.1 2OO OK\r\n\r\n"[..], false),
        (b"HTTP/1.1 200OK\r\n\r\n", false),
        (b"HTTP/1.1 99 X\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\rX\r\n\r\n", false),
        (b"HTTP/2.0 200 OK\r\n\r\n", true),
        (b"HTTP/1.2 200 OK\r\n\r\n", true),
        (b"HTTP/2 200", true),
    ] {
        let r = decode_one(&mut one_get(), bad);
        if expect_version {
            assert!(matches!(r, Err(DecodeError::UnsupportedVersion { .. })), "{}: {r:?}", bad.escape_ascii());
        } else {
            assert!(matches!(r, Err(DecodeError::InvalidStatusLine { .. })), "{}: {r:?}", bad.escape_ascii());
        }
    }
    let e = decode_one(&mut one_get(), b"HTTP/1.1 2OO OK\r\n\r\n").unwrap_err();
    assert_eq!(e.to_string(), "invalid HTTP/1 status line: \"HTTP/1.1 2OO OK\"");
}

#[test]
fn invalid_header_fields() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n(x): 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: \x01\r\n\r\n",
    ] {
        let r = decode_one(&mut one_get(), bad);
        assert!(matches!(r, Err(DecodeError::InvalidHeader { .. })), "{}: {r:?}", bad.escape_ascii());
    }
}

#[test]
fn oversized_heads_are_rejected() {
    let limits = Limits { max_head_bytes: 64, max_headers: 2, ..Limits::default() };
    let make = || {
        let mut c = Codec::new(limits);
        send(&mut c, Method::GET, b"");
        c
    };
    // Never-ending head: rejected once more than the limit is buffered.
    let mut codec = make();
    let mut src = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
    assert_eq!(codec.decode(&mut src), Ok(None));
    src.extend_from_slice(&[b'a'; 47]);
    assert_eq!(codec.decode(&mut src), Ok(None)); // exactly 64 bytes: still allowed
    src.extend_from_slice(b"a");
    assert_eq!(codec.decode(&mut src), Err(DecodeError::HeadTooLarge { limit: 64 }));
    // A complete head over the limit.
    let mut long = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
    long.extend([b'v'; 60]);
    long.extend(b"\r\n\r\n");
    assert_eq!(decode_one(&mut make(), &long), Err(DecodeError::HeadTooLarge { limit: 64 }));
    // Too many fields.
    let r = decode_one(&mut make(), b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n");
    assert_eq!(r, Err(DecodeError::TooManyHeaders { limit: 2 }));
}

#[test]
fn content_length_validation() {
    for bad in ["abc", "-1", "+5", "1 2", "5, 6", "", "18446744073709551616", "0x10"] {
        let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
        let r = decode_one(&mut one_get(), response.as_bytes());
        assert!(matches!(r, Err(DecodeError::InvalidContentLength { .. })), "{bad:?}: {r:?}");
    }
    let r = decode_one(&mut one_get(), b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n");
    assert_eq!(r, Err(DecodeError::InvalidContentLength { snippet: "5, 6".into() }));
    // Identical repeated values are one value.
    let mut codec = one_get();
    let ev = decode_one(&mut codec, b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\nContent-Length: 2\r\n\r\nok").unwrap();
    assert_eq!(ev.len(), 3);
    // Huge but valid lengths are fine (no preallocation).
    let ev = decode_one(&mut one_get(), b"HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\nx").unwrap();
    assert_eq!(ev.len(), 2);
}

#[test]
fn chunk_errors_surface() {
    for bad in [&b"zz\r\n"[..], b"fffffffffffffffff\r\n", b"3\r\nabcde", b";ext\r\n"] {
        let mut response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        response.extend(bad);
        let r = decode_one(&mut one_get(), &response);
        assert!(matches!(r, Err(DecodeError::InvalidChunk { .. })), "{}: {r:?}", bad.escape_ascii());
    }
    let mut codec = Codec::new(Limits { max_head_bytes: 50, ..Limits::default() });
    send(&mut codec, Method::GET, b"");
    let r =
        decode_one(&mut codec, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-long: 0123456789012345678901234567890123456789\r\n\r\n");
    assert_eq!(r, Err(DecodeError::TrailersTooLarge { limit: 50 }));
}

#[test]
fn eof_mid_response_is_incomplete() {
    for partial in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel"[..],
        b"HTTP/1.1 200 OK\r\ncontent-le",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
    ] {
        let mut codec = one_get();
        let r = feed(&mut codec, &[partial], true);
        assert_eq!(r, Err(DecodeError::IncompleteResponse { id: RequestId(0) }), "{}", partial.escape_ascii());
        assert_eq!(codec.in_flight(), (vec![RequestId(0)], vec![]));
    }
    // EOF with nothing received is not a decode error; the request stays in flight.
    let mut codec = one_get();
    assert_eq!(feed(&mut codec, &[b"\r\n"], true), Ok(vec![]));
    assert_eq!(codec.in_flight(), (vec![RequestId(0)], vec![]));
    assert!(!codec.is_reusable());
}

#[test]
fn response_without_request_is_unexpected() {
    let mut codec = Codec::new(Limits::default());
    // Stray blank lines are tolerated.
    assert_eq!(decode_one(&mut codec, b"\r\n\r\n"), Ok(vec![]));
    assert_eq!(decode_one(&mut codec, b"H"), Err(DecodeError::UnexpectedResponse));
    let mut codec = one_get();
    let r = decode_one(&mut codec, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(r, Err(DecodeError::UnexpectedResponse));
}

// ---------------------------------------------------------------- bookkeeping

#[test]
fn in_flight_tracks_written_and_answered() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let mut out = BytesMut::new();
    let a = codec.encode_head(head(&Method::GET, "/a", &headers), BodyKind::Empty, &mut out).unwrap();
    let a_len = out.len();
    let b = codec.encode_head(head(&Method::POST, "/b", &headers), BodyKind::Chunked, &mut out).unwrap();
    let b_head_end = out.len();
    codec.encode_body(b"data", true, &mut out).unwrap();
    let c = codec.encode_head(head(&Method::GET, "/c", &headers), BodyKind::Empty, &mut out).unwrap();
    assert_eq!(codec.in_flight(), (vec![], vec![a, b, c]));

    codec.record_flushed(a_len - 1);
    assert_eq!(codec.in_flight(), (vec![], vec![a, b, c]));
    codec.record_flushed(1);
    assert_eq!(codec.in_flight(), (vec![a], vec![b, c]));
    codec.record_flushed(b_head_end - a_len); // head of b written, body not yet
    assert_eq!(codec.in_flight(), (vec![a, b], vec![c]));

    let ev = decode_one(&mut codec, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
    assert_eq!(ev.last(), Some(&ResponseEvent::End { id: a }));
    assert_eq!(codec.in_flight(), (vec![b], vec![c]));
    codec.mark_written(c);
    assert_eq!(codec.in_flight(), (vec![b, c], vec![]));
    assert_eq!(codec.pending(), 2);
}

#[test]
fn mark_written_covers_earlier_requests_and_responses_imply_written() {
    let mut codec = Codec::new(Limits::default());
    let headers = HeaderMap::new();
    let mut out = BytesMut::new();
    let ids: Vec<RequestId> = (0..3)
        .map(|_| codec.encode_head(head(&Method::GET, "/", &headers), BodyKind::Empty, &mut out).unwrap())
        .collect();
    codec.mark_written(ids[1]);
    assert_eq!(codec.in_flight(), (vec![ids[0], ids[1]], vec![ids[2]]));

    // A response beginning for a request never marked written: it evidently was.
    let mut codec = Codec::new(Limits::default());
    let id = codec.encode_head(head(&Method::GET, "/", &headers), BodyKind::Empty, &mut out).unwrap();
    let mut src = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"[..]);
    assert!(codec.decode(&mut src).unwrap().is_some());
    assert_eq!(codec.in_flight(), (vec![id], vec![]));
}

#[test]
fn cancelled_responses_are_parsed_and_discarded() {
    let mut codec = Codec::new(Limits::default());
    let a = send(&mut codec, Method::GET, b"");
    let b = send(&mut codec, Method::GET, b"");
    let c = send(&mut codec, Method::GET, b"");
    assert!(codec.cancel(a));
    assert_eq!(codec.in_flight(), (vec![b, c], vec![]));
    let mut src = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab"[..]);
    // The head and part of the body of cancelled `a` produce nothing.
    assert_eq!(codec.decode(&mut src), Ok(None));
    src.extend_from_slice(b"cHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n");
    assert!(matches!(codec.decode(&mut src), Ok(Some(ResponseEvent::Head { id, .. })) if id == b));
    assert!(codec.cancel(b));
    src.extend_from_slice(b"0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nz");
    let mut rest = Vec::new();
    while let Some(e) = codec.decode(&mut src).unwrap() {
        rest.push(e);
    }
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[1..], [data(c, b"z"), ResponseEvent::End { id: c }]);
    assert!(!codec.cancel(a)); // already answered
    assert_eq!(codec.in_flight(), (vec![], vec![]));
    assert!(codec.is_reusable());
}

/// Deterministic xorshift generator for the robustness test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_input_never_panics_and_stays_bounded() {
    let limits = Limits { max_head_bytes: 256, max_headers: 8, max_chunk: 16 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let interesting = b"\r\n:;0123456789abcdefHTTP/1. chunked";
    for _ in 0..3000 {
        let mut input = PIPELINED.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len());
            match rng.below(3) {
                0 => input[at] = interesting[rng.below(interesting.len())],
                1 => {
                    input.remove(at);
                }
                _ => input.insert(at, rng.next() as u8),
            }
        }
        let mut codec = Codec::new(limits);
        for _ in 0..4 {
            send(&mut codec, Method::GET, b"");
        }
        let mut src = BytesMut::new();
        let mut rest = &input[..];
        let mut failed = false;
        while !rest.is_empty() && !failed {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len().min(40)));
            rest = tail;
            src.extend_from_slice(piece);
            loop {
                match codec.decode(&mut src) {
                    Ok(Some(ResponseEvent::Data { data, .. })) => assert!(data.len() <= 16),
                    Ok(Some(ResponseEvent::Upgrade { .. })) | Ok(None) => break,
                    Ok(Some(_)) => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if !failed && !matches!(codec.read, decode::ReadState::Upgraded) {
                // Unconsumed input never exceeds the head limit plus one read.
                assert!(src.len() <= 256 + 40, "{} bytes buffered", src.len());
            }
        }
        let _ = codec.decode_eof(&mut src);
        let _ = codec.in_flight();
    }
}

#[test]
fn informational_flood_is_refused_past_the_head_limit() {
    // The 1xx heads before one final response share `max_head_bytes`; a server sending them
    // forever fails the connection instead of growing the client's memory.
    let limits = Limits { max_head_bytes: 256, ..Limits::default() };
    let hint: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"; // 55 bytes
    let mut codec = Codec::new(limits);
    let id = send(&mut codec, Method::GET, b"");
    let mut src = BytesMut::new();
    let mut informs = 0;
    let err = loop {
        src.extend_from_slice(hint);
        match codec.decode(&mut src) {
            Ok(Some(ResponseEvent::Inform { id: i, .. })) => {
                assert_eq!(i, id);
                informs += 1;
                assert!(informs < 1000, "1xx responses are accepted without end");
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(informs, 256 / hint.len());
    assert_eq!(err, DecodeError::InformationalTooLarge { limit: 256 });
    assert!(err.to_string().contains("1xx"), "{err}");
    assert!(!codec.is_reusable());
}

#[test]
fn informational_allowance_is_per_response() {
    let limits = Limits { max_head_bytes: 128, ..Limits::default() };
    let mut codec = Codec::new(limits);
    let a = send(&mut codec, Method::GET, b"");
    let b = send(&mut codec, Method::GET, b"");
    // Two 1xx of 44 bytes (88 together, within 128) before each of two responses.
    let one = "HTTP/1.1 102 Processing\r\nx-progress: 50%\r\n\r\n";
    assert_eq!(one.len(), 44);
    let wire = format!(
        "{one}{one}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n{one}{one}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    );
    let ev = decode_one(&mut codec, wire.as_bytes()).unwrap();
    let informs: Vec<RequestId> =
        ev.iter().filter_map(|e| if let ResponseEvent::Inform { id, .. } = e { Some(*id) } else { None }).collect();
    assert_eq!(informs, [a, a, b, b]);
    assert_eq!(ev.last(), Some(&ResponseEvent::End { id: b }));
    assert!(codec.is_reusable());
}
