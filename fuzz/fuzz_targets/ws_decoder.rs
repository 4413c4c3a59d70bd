//! The WebSocket frame decoder on arbitrary bytes from a server, fed in arbitrary pieces,
//! with and without permessage-deflate. It must never panic, never hand out a message over
//! its limit, and stop at the first error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use moorline_proto::ws::{Decoder, DeflateParams, Limits, Message, Role};

const LIMITS: Limits = Limits { max_frame_size: 64 << 10, max_message_size: 256 << 10 };

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else { return };
    let deflate = (control & 1 == 1).then_some(DeflateParams {
        server_no_context_takeover: control & 2 == 2,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    });
    let role = if control & 4 == 4 { Role::Server } else { Role::Client };
    // Pieces of 1..=32 bytes, or everything at once.
    let piece = match control >> 3 { 0 => data.len().max(1), n => usize::from(n) };
    let mut decoder = Decoder::new(role, LIMITS, deflate);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    let len = match &message {
                        Message::Text(t) => t.len(),
                        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
                        Message::Close(_) => 0,
                    };
                    assert!(len <= LIMITS.max_message_size, "a message over the limit got through");
                    if let Message::Text(t) = &message {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.close_code();
                    return;
                }
            }
        }
    }
});
