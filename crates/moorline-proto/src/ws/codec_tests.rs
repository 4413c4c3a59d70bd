#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};

use super::*;

fn client() -> Decoder {
    Decoder::new(Role::Client, Limits::default(), None)
}

/// An unmasked (server) frame.
fn frame(b0: u8, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    write_frame(b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0f, payload, None, &mut out);
    out[0] = b0;
    out
}

fn decode_all(decoder: &mut Decoder, mut wire: BytesMut) -> Result<Vec<Message>, ProtocolError> {
    let mut out = Vec::new();
    while let Some(m) = decoder.decode(&mut wire)? {
        out.push(m);
    }
    assert!(wire.is_empty(), "left over: {wire:?}");
    Ok(out)
}

fn err(wire: BytesMut) -> ProtocolError {
    decode_all(&mut client(), wire).unwrap_err()
}

#[test]
fn single_frames_of_every_size_class() {
    for len in [0usize, 1, 125, 126, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let got = decode_all(&mut client(), frame(0x82, &payload)).unwrap();
        assert_eq!(got, [Message::Binary(Bytes::from(payload))]);
    }
}

#[test]
fn byte_by_byte_feeding_gives_the_same_messages() {
    let mut wire = frame(0x01, b"Hel");
    wire.extend_from_slice(&frame(0x89, b"ping"));
    wire.extend_from_slice(&frame(0x80, b"lo"));
    wire.extend_from_slice(&frame(0x82, &[9; 300]));
    let mut d = client();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in wire.iter() {
        buf.extend_from_slice(&[*b]);
        while let Some(m) = d.decode(&mut buf).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(
        got,
        [
            Message::Ping(Bytes::from_static(b"ping")),
            Message::text("Hello"),
            Message::Binary(Bytes::from(vec![9; 300]))
        ]
    );
}

#[test]
fn protocol_violations_are_typed_with_their_close_code() {
    let cases: Vec<(BytesMut, ProtocolError, u16)> = vec![
        (frame(0xc1, b"x"), ProtocolError::ReservedBits(0b100), 1002),
        (frame(0xa1, b"x"), ProtocolError::ReservedBits(0b010), 1002),
        (frame(0x91, b"x"), ProtocolError::ReservedBits(0b001), 1002),
        (frame(0x83, b""), ProtocolError::UnknownOpcode(3), 1002),
        (frame(0x8b, b""), ProtocolError::UnknownOpcode(0xb), 1002),
        (frame(0x09, b""), ProtocolError::FragmentedControl, 1002),
        (frame(0x89, &[0; 126]), ProtocolError::ControlTooLong(126), 1002),
        (frame(0x80, b"x"), ProtocolError::UnexpectedContinuation, 1002),
        (frame(0x81, &[0xce, 0xba, 0xff]), ProtocolError::InvalidUtf8, 1007),
        (frame(0x88, &[0x03]), ProtocolError::InvalidClose, 1002),
        (frame(0x88, &[0x03, 0xed]), ProtocolError::InvalidClose, 1002), // 1005
        (frame(0x88, &[0x03, 0xe7]), ProtocolError::InvalidClose, 1002), // 999
        (frame(0x88, &[0x13, 0x88]), ProtocolError::InvalidClose, 1002), // 5000
        (frame(0x88, &[0x03, 0xe8, 0xff]), ProtocolError::InvalidCloseReason, 1007),
    ];
    for (wire, expected, code) in cases {
        let got = err(wire);
        assert_eq!(got, expected);
        assert_eq!(got.close_code().0, code, "{got}");
    }
    // A masked server frame.
    let mut masked = BytesMut::new();
    write_frame(true, false, 1, b"hi", Some([1, 2, 3, 4]), &mut masked);
    assert_eq!(err(masked.clone()), ProtocolError::MaskedFrame);
    // ...which a server accepts, and an unmasked one it refuses.
    let mut server = Decoder::new(Role::Server, Limits::default(), None);
    assert_eq!(decode_all(&mut server, masked).unwrap(), [Message::text("hi")]);
    assert_eq!(decode_all(&mut server, frame(0x81, b"hi")).unwrap_err(), ProtocolError::UnmaskedFrame);
    // A new message inside a fragmented one.
    let mut wire = frame(0x01, b"a");
    wire.extend_from_slice(&frame(0x81, b"b"));
    assert_eq!(err(wire), ProtocolError::UnfinishedMessage);
    // Non-minimal lengths.
    assert_eq!(err(BytesMut::from(&[0x82, 126, 0, 5, 1, 2, 3, 4, 5][..])), ProtocolError::BadLength);
    assert_eq!(err(BytesMut::from(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff][..])), ProtocolError::BadLength);
    assert_eq!(err(BytesMut::from(&[0x82, 127, 0x80, 0, 0, 0, 0, 1, 0, 0][..])), ProtocolError::BadLength);
}

#[test]
fn control_frames_interleave_with_fragments_and_close_parses() {
    let mut wire = frame(0x01, "κό".as_bytes());
    wire.extend_from_slice(&frame(0x8a, b"pong"));
    wire.extend_from_slice(&frame(0x00, "σμ".as_bytes()));
    wire.extend_from_slice(&frame(0x80, "ε".as_bytes()));
    wire.extend_from_slice(&frame(0x88, &[0x03, 0xe8, b'o', b'k']));
    wire.extend_from_slice(&frame(0x88, &[]));
    let got = decode_all(&mut client(), wire).unwrap();
    assert_eq!(got[0], Message::Pong(Bytes::from_static(b"pong")));
    assert_eq!(got[1], Message::text("κόσμε"));
    assert_eq!(got[2], Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "ok"))));
    assert_eq!(got[3], Message::Close(None));
}

#[test]
fn utf8_fails_inside_a_frame_still_arriving() {
    // A 64 KiB text frame whose first bytes are already invalid: the error comes
    // before the rest of the frame does (Autobahn 6.4.3/6.4.4).
    let mut payload = vec![b'a'; 65536];
    payload[10] = 0xff;
    let whole = frame(0x81, &payload);
    let mut d = client();
    let mut wire = BytesMut::from(&whole[..100]);
    assert_eq!(d.decode(&mut wire).unwrap_err(), ProtocolError::InvalidUtf8);
    // The same in a continuation frame.
    let mut d = client();
    let mut wire = frame(0x01, b"ok");
    let cont = frame(0x80, &payload);
    wire.extend_from_slice(&cont[..100]);
    assert_eq!(d.decode(&mut wire).unwrap_err(), ProtocolError::InvalidUtf8);
    // Valid text fed a few bytes at a time, with code points cut at every place,
    // decodes exactly as when it arrives whole, in one frame or in fragments.
    let text = "κόσμε €𐍈 ascii ".repeat(50);
    let mut fragmented = frame(0x01, &text.as_bytes()[..301]);
    fragmented.extend_from_slice(&frame(0x80, &text.as_bytes()[301..]));
    for whole in [frame(0x81, text.as_bytes()), fragmented] {
        for step in [1usize, 3, 7, 64] {
            let mut d = client();
            let mut wire = BytesMut::new();
            let mut got = Vec::new();
            for chunk in whole.chunks(step) {
                wire.extend_from_slice(chunk);
                while let Some(m) = d.decode(&mut wire).unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, [Message::text(text.clone())], "step {step}");
        }
    }
    // A frame that arrives valid so far but ends inside a code point still fails.
    let mut d = client();
    let euro = "€".as_bytes();
    let whole = frame(0x81, &euro[..2]);
    let mut wire = BytesMut::from(&whole[..3]);
    assert_eq!(d.decode(&mut wire).unwrap(), None);
    wire.extend_from_slice(&whole[3..]);
    assert_eq!(d.decode(&mut wire).unwrap_err(), ProtocolError::InvalidUtf8);
}

#[test]
fn utf8_fails_fast_on_the_first_bad_fragment() {
    let mut d = client();
    let mut wire = frame(0x01, &[0xce, 0xba]);
    assert_eq!(d.decode(&mut wire).unwrap(), None);
    let mut wire = frame(0x00, &[0xed, 0xa0]); // surrogate start: invalid whatever follows
    assert_eq!(d.decode(&mut wire).unwrap_err(), ProtocolError::InvalidUtf8);
    // A code point split across fragments is fine.
    let euro = "€".as_bytes();
    let mut wire = frame(0x01, &euro[..1]);
    wire.extend_from_slice(&frame(0x80, &euro[1..]));
    assert_eq!(decode_all(&mut client(), wire).unwrap(), [Message::text("€")]);
    // ...but a message that ends inside one is not.
    let mut wire = frame(0x01, b"a");
    wire.extend_from_slice(&frame(0x80, &euro[..2]));
    assert_eq!(err(wire), ProtocolError::InvalidUtf8);
}

#[test]
fn limits_refuse_before_the_payload_arrives() {
    let limits = Limits { max_frame_size: 1000, max_message_size: 1500 };
    let mut d = Decoder::new(Role::Client, limits, None);
    // Only the header of a 2000-byte frame: refused at once.
    let mut header = BytesMut::from(&[0x82, 126, 0x07, 0xd0][..]);
    assert_eq!(d.decode(&mut header).unwrap_err(), ProtocolError::FrameTooBig { size: 2000, max: 1000 });
    assert_eq!(ProtocolError::FrameTooBig { size: 0, max: 0 }.close_code().0, 1009);
    // Two fragments of 800: the second header is refused.
    let mut d = Decoder::new(Role::Client, limits, None);
    let mut wire = frame(0x02, &[0; 800]);
    wire.extend_from_slice(&[0x80, 126, 0x03, 0x20]);
    assert_eq!(decode_all(&mut d, wire).unwrap_err(), ProtocolError::MessageTooBig { max: 1500 });
    // Room is reserved only up to the announced frame size.
    let mut d = Decoder::new(Role::Client, limits, None);
    let mut partial = BytesMut::from(&[0x82, 126, 0x03, 0x20, 1, 2][..]);
    assert_eq!(d.decode(&mut partial).unwrap(), None);
    assert!(partial.capacity() >= 800 && partial.capacity() < 4096);
}

fn params(server_reset: bool, client_reset: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: server_reset,
        client_no_context_takeover: client_reset,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

#[test]
fn deflate_round_trips_both_ways_with_and_without_context_takeover() {
    for (server_reset, client_reset) in [(false, false), (true, true), (true, false)] {
        let p = params(server_reset, client_reset);
        let mut client_enc = Encoder::new(Role::Client, EncodeOptions::default(), Some(p));
        let mut server_dec = Decoder::new(Role::Server, Limits::default(), Some(p));
        let mut server_enc = Encoder::new(Role::Server, EncodeOptions::default(), Some(p));
        let mut client_dec = Decoder::new(Role::Client, Limits::default(), Some(p));
        let text = "the quick brown fox jumps over the lazy dog; ".repeat(40);
        let messages = [
            Message::text(text.clone()),
            Message::text(text.clone()),
            Message::binary(vec![7u8; 100_000]),
            Message::text("short"),
            Message::binary(Vec::new()),
        ];
        let mut sizes = Vec::new();
        for m in &messages {
            let mut wire = BytesMut::new();
            client_enc.encode(m, &mut || [9, 8, 7, 6], &mut wire).unwrap();
            sizes.push(wire.len());
            assert_eq!(server_dec.decode(&mut wire).unwrap().as_ref(), Some(m));
            let mut wire = BytesMut::new();
            server_enc.encode(m, &mut || [0; 4], &mut wire).unwrap();
            assert_eq!(client_dec.decode(&mut wire).unwrap().as_ref(), Some(m));
        }
        assert!(sizes[0] < text.len() / 4, "compressed: {sizes:?}");
        if !client_reset {
            assert!(sizes[1] < sizes[0], "context takeover makes the repeat smaller: {sizes:?}");
        }
    }
}

#[test]
fn compressed_fragmented_messages_and_a_deflate_bomb() {
    let p = params(false, false);
    let options = EncodeOptions { max_frame_payload: Some(10), ..EncodeOptions::default() };
    let mut enc = Encoder::new(Role::Server, options, Some(p));
    let mut wire = BytesMut::new();
    let big = "abcdefgh".repeat(1000);
    enc.encode(&Message::text(big.clone()), &mut || [0; 4], &mut wire).unwrap();
    assert_eq!(wire[0] & 0xc0, 0x40, "first fragment: RSV1, no FIN");
    let mut d = Decoder::new(Role::Client, Limits::default(), Some(p));
    assert_eq!(decode_all(&mut d, wire).unwrap(), [Message::text(big)]);

    // 10 MB of zeros compress to ~10 KB; a 1 MB limit refuses it while inflating.
    let mut enc = Encoder::new(Role::Server, EncodeOptions::default(), Some(p));
    let mut wire = BytesMut::new();
    enc.encode(&Message::binary(vec![0u8; 10_000_000]), &mut || [0; 4], &mut wire).unwrap();
    assert!(wire.len() < 100_000);
    let limits = Limits { max_frame_size: 1 << 20, max_message_size: 1 << 20 };
    let mut d = Decoder::new(Role::Client, limits, Some(p));
    assert_eq!(decode_all(&mut d, wire).unwrap_err(), ProtocolError::MessageTooBig { max: 1 << 20 });

    // Corrupt compressed data.
    let mut d = Decoder::new(Role::Client, Limits::default(), Some(p));
    let got = decode_all(&mut d, frame(0xc2, &[0xff, 0xff, 0xff, 0xff])).unwrap_err();
    assert!(matches!(got, ProtocolError::Inflate(_)), "{got:?}");
    assert_eq!(got.close_code().0, 1007);
    // RSV1 on a continuation or a control frame is never allowed.
    let mut d = Decoder::new(Role::Client, Limits::default(), Some(p));
    assert_eq!(decode_all(&mut d, frame(0xc9, b"")).unwrap_err(), ProtocolError::ReservedBits(0b100));
}

#[test]
fn encoder_masks_fragments_with_fresh_keys_and_refuses_bad_control_frames() {
    let options = EncodeOptions { max_frame_payload: Some(4), ..EncodeOptions::default() };
    let mut enc = Encoder::new(Role::Client, options, None);
    let mut keys = 0u8;
    let mut next_key = || {
        keys += 1;
        [keys; 4]
    };
    let mut wire = BytesMut::new();
    enc.encode(&Message::binary(&b"0123456789"[..]), &mut next_key, &mut wire).unwrap();
    assert_eq!(keys, 3, "one key per frame");
    let mut server = Decoder::new(Role::Server, Limits::default(), None);
    assert_eq!(decode_all(&mut server, wire).unwrap(), [Message::binary(&b"0123456789"[..])]);

    let mut wire = BytesMut::new();
    let long = Message::Ping(Bytes::from(vec![0; 126]));
    assert_eq!(enc.encode(&long, &mut || [0; 4], &mut wire), Err(ProtocolError::ControlTooLong(126)));
    let bad_close = Message::Close(Some(CloseFrame::new(CloseCode(1005), "")));
    assert_eq!(enc.encode(&bad_close, &mut || [0; 4], &mut wire), Err(ProtocolError::InvalidClose));
    assert!(wire.is_empty());
    // Close reasons are cut to 123 bytes at a character boundary.
    assert_eq!(CloseFrame::new(CloseCode::NORMAL, &"é".repeat(100)).reason.len(), 122);
}

#[test]
fn short_frames_take_the_fast_path_with_every_rule_kept() {
    // Many short frames in one buffer, split anywhere: each comes out whole, in order.
    let mut wire = BytesMut::new();
    for i in 0..100u8 {
        wire.extend_from_slice(&frame(0x81, format!("m{i}").as_bytes()));
        wire.extend_from_slice(&frame(0x82, &[i; 3]));
    }
    for cut in [1usize, 2, 3, 7, wire.len()] {
        let mut decoder = client();
        let (mut buf, mut got, mut rest) = (BytesMut::new(), Vec::new(), &wire[..]);
        while !rest.is_empty() {
            let n = cut.min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(m) = decoder.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 200, "cut {cut}");
        assert_eq!(got[10], Message::text("m5"));
        assert_eq!(got[11], Message::Binary(Bytes::from(vec![5u8; 3])));
    }
    // Invalid UTF-8 in a short text frame.
    assert_eq!(err(frame(0x81, &[0xff, 0xfe])), ProtocolError::InvalidUtf8);
    // A short frame over a (small) frame or message limit is still refused.
    let limits = Limits { max_frame_size: 4, max_message_size: 64 };
    let e = decode_all(&mut Decoder::new(Role::Client, limits, None), frame(0x82, &[0; 5])).unwrap_err();
    assert!(matches!(e, ProtocolError::FrameTooBig { .. }), "{e:?}");
    let limits = Limits { max_frame_size: 64, max_message_size: 4 };
    let e = decode_all(&mut Decoder::new(Role::Client, limits, None), frame(0x81, b"hello")).unwrap_err();
    assert!(matches!(e, ProtocolError::MessageTooBig { .. }), "{e:?}");
    // A whole frame in the middle of a fragmented message is a violation, not a message.
    let mut wire = frame(0x01, b"first");
    wire.extend_from_slice(&frame(0x81, b"whole"));
    assert_eq!(err(wire), ProtocolError::UnfinishedMessage);
    // A server (masked frames expected) never takes the client's fast path.
    let mut server = Decoder::new(Role::Server, Limits::default(), None);
    assert_eq!(decode_all(&mut server, frame(0x81, b"hi")).unwrap_err(), ProtocolError::UnmaskedFrame);
}
