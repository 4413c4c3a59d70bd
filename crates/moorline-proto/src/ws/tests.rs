#![allow(clippy::unwrap_used)]

use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;

fn hs(protocols: &[&str], deflate: Option<DeflateConfig>) -> ClientHandshake {
    ClientHandshake::new([1; 16], protocols.iter().map(|p| (*p).to_owned()).collect(), deflate).unwrap()
}

fn ok_response(hs: &ClientHandshake) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("upgrade", HeaderValue::from_static("WebSocket"));
    h.insert("connection", HeaderValue::from_static("keep-alive, Upgrade"));
    h.insert("sec-websocket-accept", accept_key(hs.key()).parse().unwrap());
    h
}

fn check(hs: &ClientHandshake, headers: &HeaderMap) -> Result<Negotiated, HandshakeError> {
    hs.check_response(Carrier::Http1, StatusCode::SWITCHING_PROTOCOLS, headers)
}

#[test]
fn request_headers_http1_and_http2() {
    let h = hs(&["a", "b"], Some(DeflateConfig::default()));
    let mut req = HeaderMap::new();
    req.insert("sec-websocket-protocol", HeaderValue::from_static("user-set"));
    h.write_headers(Carrier::Http1, &mut req);
    assert_eq!(req["upgrade"], "websocket");
    assert_eq!(req["connection"], "Upgrade");
    assert_eq!(req["sec-websocket-key"], "AQEBAQEBAQEBAQEBAQEBAQ==");
    assert_eq!(req["sec-websocket-version"], "13");
    assert_eq!(req["sec-websocket-protocol"], "a, b");
    assert_eq!(req["sec-websocket-extensions"], "permessage-deflate; client_max_window_bits");
    let mut req = HeaderMap::new();
    h.write_headers(Carrier::Http2, &mut req);
    assert!(req.get("upgrade").is_none() && req.get("connection").is_none() && req.get("sec-websocket-key").is_none());
    assert_eq!(req["sec-websocket-version"], "13");
}

#[test]
fn good_response_and_plain_failures() {
    let h = hs(&[], None);
    assert_eq!(check(&h, &ok_response(&h)).unwrap(), Negotiated::default());
    assert_eq!(
        h.check_response(Carrier::Http1, StatusCode::OK, &ok_response(&h)),
        Err(HandshakeError::Status { status: 200 })
    );
    let mut r = ok_response(&h);
    r.remove("upgrade");
    assert_eq!(check(&h, &r), Err(HandshakeError::MissingUpgrade));
    let mut r = ok_response(&h);
    r.insert("connection", HeaderValue::from_static("close"));
    assert_eq!(check(&h, &r), Err(HandshakeError::MissingConnectionUpgrade));
    let mut r = ok_response(&h);
    r.insert("sec-websocket-accept", HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert!(matches!(check(&h, &r), Err(HandshakeError::BadAccept { got: Some(_), .. })));
    let mut r = ok_response(&h);
    r.remove("sec-websocket-accept");
    assert!(matches!(check(&h, &r), Err(HandshakeError::BadAccept { got: None, .. })));
    let mut r = ok_response(&h);
    r.append("sec-websocket-accept", accept_key(h.key()).parse().unwrap());
    assert!(matches!(check(&h, &r), Err(HandshakeError::BadAccept { .. })), "two accept headers");
}

#[test]
fn http2_carrier_needs_2xx_only() {
    let h = hs(&["p"], None);
    let mut r = HeaderMap::new();
    r.insert("sec-websocket-protocol", HeaderValue::from_static("p"));
    let n = h.check_response(Carrier::Http2, StatusCode::OK, &r).unwrap();
    assert_eq!(n.protocol.as_deref(), Some("p"));
    assert_eq!(
        h.check_response(Carrier::Http2, StatusCode::BAD_REQUEST, &r),
        Err(HandshakeError::Status { status: 400 })
    );
}

#[test]
fn subprotocol_must_be_one_offered() {
    let h = hs(&["v1", "v2"], None);
    let mut r = ok_response(&h);
    r.insert("sec-websocket-protocol", HeaderValue::from_static("v2"));
    assert_eq!(check(&h, &r).unwrap().protocol.as_deref(), Some("v2"));
    r.insert("sec-websocket-protocol", HeaderValue::from_static("v3"));
    assert_eq!(check(&h, &r), Err(HandshakeError::UnofferedProtocol("v3".into())));
    r.insert("sec-websocket-protocol", HeaderValue::from_static("v1"));
    r.append("sec-websocket-protocol", HeaderValue::from_static("v2"));
    assert!(matches!(check(&h, &r), Err(HandshakeError::UnofferedProtocol(_))));
    assert!(matches!(ClientHandshake::new([0; 16], vec!["a b".into()], None), Err(HandshakeError::BadConfig(_))));
}

fn with_ext(h: &ClientHandshake, ext: &'static str) -> Result<Negotiated, HandshakeError> {
    let mut r = ok_response(h);
    r.insert("sec-websocket-extensions", HeaderValue::from_static(ext));
    check(h, &r)
}

#[test]
fn deflate_negotiation() {
    let h = hs(&[], Some(DeflateConfig::default()));
    let d = with_ext(&h, "permessage-deflate").unwrap().deflate.unwrap();
    assert_eq!(
        d,
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15
        }
    );
    let d = with_ext(&h, "Permessage-Deflate; server_no_context_takeover; client_max_window_bits=\"10\"")
        .unwrap()
        .deflate
        .unwrap();
    assert!(d.server_no_context_takeover);
    assert_eq!(d.client_max_window_bits, 10);
    let d = with_ext(&h, "permessage-deflate; server_max_window_bits=9; client_no_context_takeover").unwrap().deflate;
    assert_eq!(d.map(|d| (d.server_max_window_bits, d.client_no_context_takeover)), Some((9, true)));
    // Declined: no extension header at all.
    assert_eq!(check(&h, &ok_response(&h)).unwrap().deflate, None);
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate, permessage-deflate",
        "x-webkit-deflate-frame",
        "permessage-deflate; client_max_window_bits=\"10",
        "permessage-deflate; server_max_window_bits=1 0",
    ] {
        assert!(matches!(with_ext(&h, bad), Err(HandshakeError::BadExtension(_))), "{bad}");
    }
    // Not offered at all.
    let plain = hs(&[], None);
    assert!(matches!(with_ext(&plain, "permessage-deflate"), Err(HandshakeError::BadExtension(_))));
}

#[test]
fn deflate_answers_must_respect_the_offer() {
    let config = DeflateConfig::default().server_max_window_bits(Some(10)).client_max_window_bits(Some(12));
    assert_eq!(config.offer(), "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12");
    let h = hs(&[], Some(config));
    let d = with_ext(&h, "permessage-deflate; server_max_window_bits=10").unwrap().deflate.unwrap();
    assert_eq!((d.server_max_window_bits, d.client_max_window_bits), (10, 12));
    assert!(with_ext(&h, "permessage-deflate; server_max_window_bits=11").is_err());
    assert!(with_ext(&h, "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13").is_err());
    assert!(with_ext(&h, "permessage-deflate").is_err(), "server_max_window_bits must be answered");
    assert!(matches!(
        ClientHandshake::new([0; 16], vec![], Some(DeflateConfig::default().client_max_window_bits(Some(16)))),
        Err(HandshakeError::BadConfig(_))
    ));
}

#[test]
fn extension_header_parsing() {
    let e = parse_extensions(["a; x=1, b", "c;y=\"q\""]).unwrap();
    assert_eq!(e.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(e[2].params[0], Param { name: "y".into(), value: Some("q".into()) });
    assert_eq!(e[0].to_string(), "a; x=1");
    assert!(parse_extensions(["a; =1"]).is_err());
    assert!(parse_extensions(["a b"]).is_err());
    assert!(parse_extensions([""]).unwrap().is_empty());
}
