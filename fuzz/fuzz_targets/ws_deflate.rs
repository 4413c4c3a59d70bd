//! The permessage-deflate path, two ways:
//! 1. arbitrary bytes as the payload of a compressed frame (RSV1 set) from a server: the
//!    inflater must refuse garbage and bombs with an error, never panic or exceed the limit;
//! 2. arbitrary messages compressed by our encoder must come back unchanged through a
//!    decoder with the same parameters (with and without context takeover).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use moorline_proto::ws::{Decoder, DeflateParams, EncodeOptions, Encoder, Limits, Message, Role, write_frame};

const LIMITS: Limits = Limits { max_frame_size: 1 << 20, max_message_size: 1 << 20 };

fn params(control: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: control & 2 == 2,
        client_no_context_takeover: control & 4 == 4,
        server_max_window_bits: 9 + (control >> 5) % 7,
        client_max_window_bits: 9 + (control >> 5) % 7,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else { return };
    let params = params(control);

    // 1. A compressed frame with an arbitrary payload.
    let mut decoder = Decoder::new(Role::Client, LIMITS, Some(params));
    let mut buf = BytesMut::new();
    write_frame(true, true, if control & 8 == 8 { 0x1 } else { 0x2 }, data, None, &mut buf);
    match decoder.decode(&mut buf) {
        Ok(Some(Message::Binary(b))) => assert!(b.len() <= LIMITS.max_message_size),
        Ok(Some(Message::Text(t))) => assert!(t.len() <= LIMITS.max_message_size),
        Ok(other) => assert!(other.is_none(), "a data frame decoded as {other:?}"),
        Err(_) => {}
    }

    // 2. Round trip: the input split at 0xff bytes into messages.
    let mut encoder = Encoder::new(Role::Client, EncodeOptions::default(), Some(params));
    let mut decoder = Decoder::new(Role::Server, LIMITS, Some(params));
    let mut wire = BytesMut::new();
    let mut mask = || [0x37, 0xfa, 0x21, 0x3d];
    let messages: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    for m in &messages {
        let message = Message::Binary(Bytes::copy_from_slice(m));
        encoder.encode(&message, &mut mask, &mut wire).expect("encoding a binary message cannot fail");
    }
    for m in &messages {
        match decoder.decode(&mut wire) {
            Ok(Some(Message::Binary(b))) => assert_eq!(&b[..], *m, "deflate round trip changed a message"),
            other => panic!("round trip gave {other:?}"),
        }
    }
    assert!(wire.is_empty());
});
