//! The client's check of a server's handshake response (HTTP/1.1 101 and HTTP/2 200) on
//! arbitrary response bytes, offering subprotocols and permessage-deflate: it must accept
//! or refuse with a typed error, never panic, and never agree to what was not offered.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use moorline_proto::ws::{Carrier, ClientHandshake, DeflateConfig, parse_extensions};

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = response.parse(data) else { return };
    let Some(status) = response.code.and_then(|c| StatusCode::from_u16(c).ok()) else { return };
    let mut map = HeaderMap::new();
    for h in response.headers.iter() {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value)) {
            map.append(name, value);
        }
    }
    let values = map.get_all("sec-websocket-extensions").iter().filter_map(|v| v.to_str().ok());
    let _ = parse_extensions(values);
    let offered = vec!["json.v1".to_owned(), "chat".to_owned()];
    let handshake = ClientHandshake::new([7; 16], offered.clone(), Some(DeflateConfig::default()))
        .expect("a valid offer");
    for carrier in [Carrier::Http1, Carrier::Http2] {
        if let Ok(agreed) = handshake.check_response(carrier, status, &map) {
            if let Some(p) = &agreed.protocol {
                assert!(offered.contains(p), "agreed to a subprotocol we did not offer");
            }
            if let Some(d) = agreed.deflate {
                assert!((8..=15).contains(&d.server_max_window_bits));
                assert!((8..=15).contains(&d.client_max_window_bits));
            }
        }
    }
});
