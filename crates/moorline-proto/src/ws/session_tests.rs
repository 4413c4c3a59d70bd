//! [`Session`] byte by byte, with the time passed in.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;

/// The mask key of every frame we send: the expected bytes below are masked with it.
const KEY: [u8; 4] = [1, 2, 3, 4];

fn mask() -> [u8; 4] {
    KEY
}

fn config() -> SessionConfig {
    SessionConfig { close_timeout: Duration::from_secs(5), ..SessionConfig::client() }
}

fn session(config: &SessionConfig, t0: Instant) -> Session {
    Session::new(config, mask, t0)
}

/// A server's (unmasked) frame.
fn frame(opcode: u8, payload: &[u8]) -> BytesMut {
    let mut wire = BytesMut::new();
    write_frame(true, false, opcode, payload, None, &mut wire);
    wire
}

/// A client frame as we write it: masked with [`KEY`].
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    write_frame(true, false, opcode, payload, Some(KEY), &mut wire);
    wire.to_vec()
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Everything the session queued, taken as the shell would.
fn output<M: FnMut() -> [u8; 4]>(ws: &mut Session<M>) -> Vec<u8> {
    ws.outbound().take_output(usize::MAX).to_vec()
}

/// Decodes what we sent, as the server would.
fn decode_sent(bytes: &[u8]) -> Vec<Message> {
    let mut wire = BytesMut::from(bytes);
    let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
    let mut out = Vec::new();
    while let Some(m) = decoder.decode(&mut wire).unwrap() {
        out.push(m);
    }
    assert!(wire.is_empty());
    out
}

fn events(ws: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| ws.next_event()).collect()
}

#[test]
fn we_close_first_and_the_peer_answers() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    assert_eq!(ws.state(), &CloseState::Open);
    let at = t0 + Duration::from_secs(1);
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")), || at).unwrap();
    assert_eq!(output(&mut ws), masked(0x8, &close_payload(1000, "bye")));
    assert_eq!(ws.state(), &CloseState::CloseSent { at });
    assert_eq!(ws.next_deadline(), Some(at + Duration::from_secs(5)));
    // Data the server sent before it read our close still arrives.
    ws.receive(&frame(0x1, b"late news"), at);
    assert_eq!(ws.next_event(), Some(SessionEvent::Message(Message::text("late news"))));
    ws.receive(&frame(0x8, &close_payload(1000, "ok")), at);
    let peer = Some(CloseFrame::new(CloseCode::NORMAL, "ok"));
    assert_eq!(events(&mut ws), [SessionEvent::PeerClosed(peer.clone())]);
    assert_eq!(ws.ended(), Some(&Ended::Closed { by_us: true, frame: peer }));
    // No second close frame, no timer left.
    assert!(output(&mut ws).is_empty());
    assert_eq!(ws.next_deadline(), None);
    assert_eq!(ws.on_timeout(at + Duration::from_secs(60)), None);
}

#[test]
fn the_peer_closes_first_and_its_code_is_echoed() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    ws.receive(&frame(0x8, &close_payload(1001, "going away")), t0);
    let peer = Some(CloseFrame::new(CloseCode::GOING_AWAY, "going away"));
    assert_eq!(events(&mut ws), [SessionEvent::PeerClosed(peer.clone())]);
    // Our answer: the same code, no reason, byte for byte.
    assert_eq!(output(&mut ws), [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2]);
    assert_eq!(ws.ended(), Some(&Ended::Closed { by_us: false, frame: peer }));
    assert_eq!(ws.next_deadline(), None);

    // An empty close is answered empty.
    let mut ws = session(&config(), t0);
    ws.receive(&frame(0x8, b""), t0);
    assert_eq!(events(&mut ws), [SessionEvent::PeerClosed(None)]);
    assert_eq!(output(&mut ws), [0x88, 0x80, 1, 2, 3, 4]);
    assert_eq!(ws.ended(), Some(&Ended::Closed { by_us: false, frame: None }));
}

#[test]
fn simultaneous_closes_complete_the_handshake_without_a_second_close_frame() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "")), || t0).unwrap();
    // The server's close crossed ours on the wire.
    ws.receive(&frame(0x8, &close_payload(1001, "")), t0);
    let peer = Some(CloseFrame::new(CloseCode::GOING_AWAY, ""));
    assert_eq!(events(&mut ws), [SessionEvent::PeerClosed(peer.clone())]);
    assert_eq!(output(&mut ws), masked(0x8, &close_payload(1000, "")));
    assert_eq!(ws.ended(), Some(&Ended::Closed { by_us: true, frame: peer }));
}

#[test]
fn an_unanswered_close_times_out() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    ws.close(None, || t0).unwrap();
    let deadline = t0 + Duration::from_secs(5);
    assert_eq!(ws.next_deadline(), Some(deadline));
    assert_eq!(ws.on_timeout(deadline - Duration::from_nanos(1)), None);
    assert_eq!(ws.state(), &CloseState::CloseSent { at: t0 });
    assert_eq!(ws.on_timeout(deadline), Some(Ended::CloseTimeout(Duration::from_secs(5))));
    assert_eq!(ws.ended(), Some(&Ended::CloseTimeout(Duration::from_secs(5))));
    assert_eq!(ws.next_deadline(), None);
    // Once ended, timers say nothing more, and a late close frame changes nothing.
    assert_eq!(ws.on_timeout(deadline + Duration::from_secs(1)), None);
    ws.receive(&frame(0x8, b""), t0);
    assert_eq!(events(&mut ws), [SessionEvent::PeerClosed(None)]);
    assert_eq!(ws.ended(), Some(&Ended::CloseTimeout(Duration::from_secs(5))));
}

#[test]
fn nothing_is_sent_after_our_close_and_the_refusal_is_first_only_once() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    ws.send(&Message::text("a"), || unreachable!("the clock is read only for a close")).unwrap();
    ws.close(None, || t0).unwrap();
    let before = output(&mut ws);
    assert_eq!(decode_sent(&before), [Message::text("a"), Message::Close(None)]);
    assert_eq!(ws.send(&Message::text("b"), || t0), Err(SendError::Closed { first: true }));
    assert_eq!(ws.send(&Message::Ping(Bytes::new()), || t0), Err(SendError::Closed { first: false }));
    assert_eq!(ws.close(None, || t0), Err(SendError::Closed { first: false }));
    assert!(output(&mut ws).is_empty());
    assert_eq!(ws.state(), &CloseState::CloseSent { at: t0 });

    // After the peer's close (answered), the same.
    let mut ws = session(&config(), t0);
    ws.receive(&frame(0x8, b""), t0);
    let _ = events(&mut ws);
    assert_eq!(ws.send(&Message::text("b"), || t0), Err(SendError::Closed { first: true }));
    assert_eq!(ws.send(&Message::text("c"), || t0), Err(SendError::Closed { first: false }));
    assert_eq!(output(&mut ws), [0x88, 0x80, 1, 2, 3, 4]);
}

#[test]
fn outgoing_checks_refuse_before_anything_is_queued() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    let long = Bytes::from(vec![0u8; 126]);
    assert_eq!(ws.send(&Message::Ping(long.clone()), || t0), Err(SendError::ControlTooLong(126)));
    assert_eq!(ws.send(&Message::Pong(long), || t0), Err(SendError::ControlTooLong(126)));
    for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        let close = Some(CloseFrame::new(CloseCode(code), ""));
        assert_eq!(ws.close(close, || t0), Err(SendError::CloseCode(CloseCode(code))));
    }
    let reason = Utf8Bytes::from("x".repeat(124));
    let close = Some(CloseFrame { code: CloseCode::NORMAL, reason });
    assert_eq!(ws.close(close, || t0), Err(SendError::CloseReasonTooLong(124)));
    assert!(output(&mut ws).is_empty());
    assert_eq!(ws.state(), &CloseState::Open);
    // The limits themselves pass.
    ws.send(&Message::Ping(Bytes::from(vec![7u8; 125])), || t0).unwrap();
    let reason = Utf8Bytes::from("y".repeat(123));
    ws.close(Some(CloseFrame { code: CloseCode(4999), reason: reason.clone() }), || t0).unwrap();
    assert_eq!(
        decode_sent(&output(&mut ws)),
        [
            Message::Ping(Bytes::from(vec![7u8; 125])),
            Message::Close(Some(CloseFrame { code: CloseCode(4999), reason }))
        ]
    );
}

#[test]
fn frames_after_the_peers_close_are_ignored() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    let mut wire = frame(0x8, &close_payload(1000, ""));
    wire.extend_from_slice(&frame(0x1, b"after"));
    wire.extend_from_slice(&frame(0x9, b"ping after"));
    wire.extend_from_slice(&[0x83, 0x00]); // a reserved opcode: not even an error now
    ws.receive(&wire, t0);
    assert_eq!(events(&mut ws), [SessionEvent::PeerClosed(Some(CloseFrame::new(CloseCode::NORMAL, "")))]);
    ws.receive(&frame(0x2, b"later still"), t0);
    assert_eq!(events(&mut ws), []);
    // Only our close answer went out: no pong.
    assert_eq!(decode_sent(&output(&mut ws)), [Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "")))]);
}

#[test]
fn pings_are_answered_automatically_byte_by_byte() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    // The ping arrives one byte at a time.
    for b in frame(0x9, b"hi").iter() {
        assert_eq!(ws.next_event(), None);
        ws.receive(&[*b], t0);
    }
    assert_eq!(ws.outbound().queued(), 0);
    assert_eq!(ws.next_event(), None);
    // The pong waits unencoded (counted in `queued`) until it can leave.
    assert_eq!(ws.outbound().buffered(), 0);
    assert_eq!(ws.outbound().queued(), 2 + 4 + 2);
    assert!(ws.outbound().wants_write());
    assert_eq!(ws.outbound().pending_output(), &[0x8a, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2][..]);
    ws.outbound().consume_output(3);
    assert_eq!(ws.outbound().pending_output(), &[2, 3, 4, b'h' ^ 1, b'i' ^ 2][..]);
    ws.outbound().consume_output(5);
    assert!(!ws.outbound().wants_write());

    // Without auto-pong, nothing is answered.
    let mut ws = session(&SessionConfig { auto_pong: false, ..config() }, t0);
    ws.receive(&frame(0x9, b"hi"), t0);
    assert_eq!(events(&mut ws), []);
    assert!(!ws.outbound().wants_write());
}

#[test]
fn several_pings_before_the_pong_leaves_get_one_pong_with_the_latest_payload() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    for p in [&b"p1"[..], b"p2", b"p3"] {
        ws.receive(&frame(0x9, p), t0);
    }
    assert_eq!(events(&mut ws), []);
    assert_eq!(ws.outbound().queued(), 2 + 4 + 2);
    assert_eq!(output(&mut ws), masked(0xa, b"p3"));
    // Once it left, the next ping gets a pong of its own.
    ws.receive(&frame(0x9, b"p4"), t0);
    assert_eq!(events(&mut ws), []);
    assert_eq!(output(&mut ws), masked(0xa, b"p4"));
    // A flood of 10 000 pings never queues more than one pong.
    for i in 0..10_000u32 {
        ws.receive(&frame(0x9, format!("flood {i:>100}").as_bytes()), t0);
        assert_eq!(ws.next_event(), None);
        assert!(ws.outbound().queued() <= 2 + 4 + 125, "{}", ws.outbound().queued());
    }
    assert_eq!(decode_sent(&output(&mut ws)), [Message::Pong(Bytes::from(format!("flood {:>100}", 9_999)))]);
}

#[test]
fn the_waiting_pong_leaves_before_what_is_queued_after_it() {
    let t0 = Instant::now();
    let mut ws = session(&config(), t0);
    ws.receive(&frame(0x9, b"a"), t0);
    assert_eq!(events(&mut ws), []);
    ws.send(&Message::text("after"), || t0).unwrap();
    ws.receive(&frame(0x9, b"b"), t0);
    assert_eq!(events(&mut ws), []);
    ws.close(None, || t0).unwrap();
    // A ping after our close is not answered.
    ws.receive(&frame(0x9, b"c"), t0);
    assert_eq!(events(&mut ws), []);
    let mut expected = masked(0xa, b"a");
    expected.extend(masked(0x1, b"after"));
    expected.extend(masked(0xa, b"b"));
    expected.extend(masked(0x8, b""));
    assert_eq!(output(&mut ws), expected);
    // `take_all_output` flushes a waiting pong too.
    let mut ws = session(&config(), t0);
    ws.receive(&frame(0x9, b"z"), t0);
    assert_eq!(events(&mut ws), []);
    assert_eq!(ws.outbound().take_all_output().to_vec(), masked(0xa, b"z"));
}

#[test]
fn control_frames_are_surfaced_on_request_and_still_answered() {
    let t0 = Instant::now();
    let mut ws = session(&SessionConfig { surface_control: true, ..config() }, t0);
    let mut wire = frame(0x9, b"ping!");
    wire.extend_from_slice(&frame(0xa, b"pong!"));
    wire.extend_from_slice(&frame(0x2, b"\x00\x01"));
    ws.receive(&wire, t0);
    assert_eq!(
        events(&mut ws),
        [
            SessionEvent::Message(Message::Ping(Bytes::from_static(b"ping!"))),
            SessionEvent::Message(Message::Pong(Bytes::from_static(b"pong!"))),
            SessionEvent::Message(Message::binary(&b"\x00\x01"[..])),
        ]
    );
    assert_eq!(output(&mut ws), masked(0xa, b"ping!"));
    // Not surfaced by default: only the data message comes out.
    let mut ws = session(&config(), t0);
    ws.receive(&wire, t0);
    assert_eq!(events(&mut ws), [SessionEvent::Message(Message::binary(&b"\x00\x01"[..]))]);
}

#[test]
fn protocol_errors_close_with_the_matching_code_and_end_the_session() {
    let t0 = Instant::now();
    let too_big = SessionConfig { limits: Limits { max_frame_size: 4, max_message_size: 4 }, ..config() };
    let cases: [(SessionConfig, BytesMut, u16); 3] = [
        (config(), BytesMut::from(&[0x83, 0x00][..]), 1002),
        (config(), frame(0x1, &[0xff, 0xfe]), 1007),
        (too_big, frame(0x2, b"12345"), 1009),
    ];
    for (config, wire, code) in cases {
        let mut ws = session(&config, t0);
        ws.receive(&frame(0x1, b"ok"), t0);
        ws.receive(&wire, t0);
        ws.receive(&frame(0x1, b"after"), t0);
        let got = events(&mut ws);
        assert_eq!(got[0], SessionEvent::Message(Message::text("ok")));
        let [_, SessionEvent::ProtocolError(e)] = &got[..] else { panic!("{got:?}") };
        assert_eq!(e.close_code(), CloseCode(code));
        assert_eq!(ws.ended(), Some(&Ended::ProtocolError(e.clone())));
        assert_eq!(output(&mut ws), [0x88, 0x82, 1, 2, 3, 4, (code >> 8) as u8 ^ 1, code as u8 ^ 2]);
        assert_eq!(ws.next_event(), None);
        assert_eq!(ws.send(&Message::text("x"), || t0), Err(SendError::Closed { first: true }));
        assert_eq!(ws.next_deadline(), None);
    }

    // The shell fails a session after our close: no second close frame; the end is the error.
    let mut ws = session(&config(), t0);
    ws.close(None, || t0).unwrap();
    ws.fail(&ProtocolError::InvalidUtf8);
    assert_eq!(output(&mut ws), masked(0x8, b""));
    assert_eq!(ws.ended(), Some(&Ended::ProtocolError(ProtocolError::InvalidUtf8)));
    // A pong waiting when the session fails leaves before our close.
    let mut ws = session(&config(), t0);
    ws.receive(&frame(0x9, b"p"), t0);
    ws.receive(&[0x83, 0x00], t0);
    assert!(matches!(events(&mut ws)[..], [SessionEvent::ProtocolError(ProtocolError::UnknownOpcode(3))]));
    let mut expected = masked(0xa, b"p");
    expected.extend(masked(0x8, &close_payload(1002, "")));
    assert_eq!(output(&mut ws), expected);
}

fn keepalive_config(interval: u64, timeout: u64) -> SessionConfig {
    let keepalive =
        Some(KeepaliveConfig { interval: Duration::from_secs(interval), timeout: Duration::from_secs(timeout) });
    SessionConfig { keepalive, ..config() }
}

#[test]
fn keepalive_pings_after_an_interval_of_silence() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut ws = session(&keepalive_config(10, 3), t0);
    assert_eq!(ws.next_deadline(), Some(t0 + s(10)));
    assert_eq!(ws.on_timeout(t0 + s(9)), None);
    assert!(output(&mut ws).is_empty());
    assert_eq!(ws.on_timeout(t0 + s(10)), None);
    assert_eq!(output(&mut ws), masked(0x9, b""));
    assert_eq!(ws.next_deadline(), Some(t0 + s(13)));
}

#[test]
fn any_inbound_byte_resets_the_keepalive() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut ws = session(&keepalive_config(10, 3), t0);
    // One byte of a frame is life: the deadline does not move on the read (no timer reset)...
    ws.receive(&[0x81], t0 + s(4));
    assert_eq!(ws.next_deadline(), Some(t0 + s(10)));
    // ...but when it fires, no ping: the timer moves to an interval after that byte.
    assert_eq!(ws.on_timeout(t0 + s(10)), None);
    assert!(output(&mut ws).is_empty());
    assert_eq!(ws.next_deadline(), Some(t0 + s(14)));
    // Silence: ping at 14, answer at 15 (any byte) moves the next ping to 25 at once.
    assert_eq!(ws.on_timeout(t0 + s(14)), None);
    assert_eq!(output(&mut ws), masked(0x9, b""));
    assert_eq!(ws.next_deadline(), Some(t0 + s(17)));
    ws.receive(&[0x00], t0 + s(15));
    assert_eq!(ws.next_deadline(), Some(t0 + s(25)));
    // A read with no ping out leaves the deadline alone.
    ws.receive(&[0x02], t0 + s(16));
    assert_eq!(ws.next_deadline(), Some(t0 + s(25)));
    assert_eq!(ws.on_timeout(t0 + s(25)), None);
    assert!(output(&mut ws).is_empty());
    assert_eq!(ws.next_deadline(), Some(t0 + s(26)));
    assert_eq!(events(&mut ws), [SessionEvent::Message(Message::text(""))]);
    // The clock is not read when keepalive is off.
    let mut ws = session(&config(), t0);
    ws.inbound().receive(b"\x81\x00", || unreachable!("keepalive is off"));
    assert_eq!(ws.next_deadline(), None);
}

#[test]
fn an_unanswered_keepalive_ping_ends_the_session() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut ws = session(&keepalive_config(10, 3), t0);
    assert_eq!(ws.on_timeout(t0 + s(10)), None);
    assert_eq!(output(&mut ws), masked(0x9, b""));
    assert_eq!(ws.on_timeout(t0 + s(12)), None);
    assert_eq!(ws.on_timeout(t0 + s(13)), Some(Ended::KeepaliveTimeout(s(3))));
    assert_eq!(ws.ended(), Some(&Ended::KeepaliveTimeout(s(3))));
    assert_eq!(ws.next_deadline(), None);
    assert_eq!(ws.send(&Message::text("x"), || t0), Err(SendError::Closed { first: true }));
    // A late timer call (the shell was slow) still ends it, once.
    let mut ws = session(&keepalive_config(10, 3), t0);
    assert_eq!(ws.on_timeout(t0 + s(10)), None);
    assert_eq!(ws.on_timeout(t0 + s(100)), Some(Ended::KeepaliveTimeout(s(3))));
    assert_eq!(ws.on_timeout(t0 + s(200)), None);
}

#[test]
fn keepalive_rests_once_a_close_frame_went_either_way() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut ws = session(&SessionConfig { close_timeout: s(60), ..keepalive_config(10, 3) }, t0);
    ws.close(None, || t0 + s(1)).unwrap();
    assert_eq!(ws.next_deadline(), Some(t0 + s(10)));
    assert_eq!(ws.on_timeout(t0 + s(10)), None);
    assert_eq!(decode_sent(&output(&mut ws)), [Message::Close(None)]);
    // No ping; only the close timer is left.
    assert_eq!(ws.next_deadline(), Some(t0 + s(61)));
}

#[test]
fn every_deadline_saturates_with_duration_max() {
    let t0 = Instant::now();
    let far = t0 + Duration::from_secs(86_400 * 365 * 100);
    let forever = KeepaliveConfig { interval: Duration::MAX, timeout: Duration::MAX };
    let config = SessionConfig { close_timeout: Duration::MAX, keepalive: Some(forever), ..config() };
    // Interval: never a ping.
    let mut ws = session(&config, t0);
    assert_eq!(ws.next_deadline(), None);
    assert_eq!(ws.on_timeout(far), None);
    ws.receive(b"\x81\x00", far);
    assert_eq!(ws.on_timeout(far), None);
    assert!(output(&mut ws).is_empty());
    // Close timeout: never times out.
    ws.close(None, || far).unwrap();
    assert_eq!(ws.next_deadline(), None);
    assert_eq!(ws.on_timeout(far + Duration::from_secs(86_400 * 365 * 100)), None);
    assert_eq!(ws.state(), &CloseState::CloseSent { at: far });
    // Keepalive timeout: the ping goes out, the session never gives up.
    let keepalive = Some(KeepaliveConfig { interval: Duration::from_secs(1), timeout: Duration::MAX });
    let mut ws = session(&SessionConfig { keepalive, ..config }, t0);
    assert_eq!(ws.on_timeout(t0 + Duration::from_secs(1)), None);
    assert_eq!(output(&mut ws), masked(0x9, b""));
    assert_eq!(ws.next_deadline(), None);
    assert_eq!(ws.on_timeout(far), None);
    assert_eq!(ws.state(), &CloseState::Open);
}

/// A shell's outbound half behind a lock, as the HTTP/1.1 driver keeps it (its senders
/// encode from their own tasks); the reader reaches it only for control frames.
struct Locked<'a> {
    out: &'a Mutex<Outbound>,
    locks: usize,
}

impl OutboundAccess for Locked<'_> {
    type Mask = fn() -> [u8; 4];
    fn with_outbound<R>(&mut self, f: impl FnOnce(&mut Outbound) -> R) -> R {
        self.locks += 1;
        f(&mut self.out.lock().unwrap())
    }
}

#[test]
fn split_halves_lock_only_for_control_frames() {
    let t0 = Instant::now();
    let (mut inbound, outbound) = session(&config(), t0).split();
    let out = Mutex::new(outbound);
    let mut access = Locked { out: &out, locks: 0 };
    for i in 0..100u8 {
        inbound.receive(&frame(0x2, &[i]), || t0);
    }
    inbound.receive(&frame(0x9, b"p"), || t0);
    let mut n = 0;
    while let Some(event) = inbound.next_event(&mut access) {
        assert!(matches!(event, SessionEvent::Message(Message::Binary(_))));
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(access.locks, 1, "only the ping took the lock");
    // A sender encodes under the lock meanwhile; the pong leaves first.
    out.lock().unwrap().send(&Message::text("s"), || t0).unwrap();
    inbound.receive(&frame(0x8, b""), || t0);
    assert_eq!(inbound.next_event(&mut access), Some(SessionEvent::PeerClosed(None)));
    let mut o = out.lock().unwrap();
    assert_eq!(o.ended(), Some(&Ended::Closed { by_us: false, frame: None }));
    assert_eq!(
        decode_sent(&o.take_all_output()),
        [Message::Pong(Bytes::from_static(b"p")), Message::text("s"), Message::Close(None)]
    );
}

#[test]
fn a_server_session_writes_unmasked_frames_and_never_asks_for_a_key() {
    let t0 = Instant::now();
    let config = SessionConfig { role: Role::Server, ..config() };
    let mut ws = Session::new(&config, || unreachable!("a server does not mask"), t0);
    let mut wire = BytesMut::new();
    write_frame(true, false, 0x9, b"hi", Some(KEY), &mut wire);
    ws.receive(&wire, t0);
    assert_eq!(ws.next_event(), None);
    assert_eq!(ws.outbound().queued(), 2 + 2);
    ws.send(&Message::text("ok"), || t0).unwrap();
    assert_eq!(output(&mut ws), [0x8a, 0x02, b'h', b'i', 0x81, 0x02, b'o', b'k']);
}
