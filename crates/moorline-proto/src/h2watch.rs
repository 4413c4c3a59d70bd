//! Passive HTTP/2 frame watcher that reports GOAWAY frames.
//!
//! The `h2` crate does not expose the last-stream-id of a GOAWAY, which tells which
//! requests the server never processed (stream ids above it) and may safely be retried.
//! The shell passes every byte read from the server through a [`FrameWatcher`] before
//! handing them to `h2`. The server-to-client direction starts directly with frames (the
//! connection preface is only sent by the client), so the watcher just follows frame
//! boundaries (RFC 9113 §4.1): it keeps at most a 9-byte frame header and the first 8 bytes
//! of a GOAWAY payload, and skips every other payload without buffering it.
//!
//! ```
//! use moorline_proto::h2watch::{FrameWatcher, GoAway};
//!
//! let mut watcher = FrameWatcher::new();
//! // A PING frame, then a GOAWAY (last stream 5, NO_ERROR, debug data "bye"), split anywhere.
//! let mut bytes = vec![0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
//! bytes.extend([0, 0, 11, 7, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, b'b', b'y', b'e']);
//! assert_eq!(watcher.observe(&bytes[..20]), None);
//! let goaway = watcher.observe(&bytes[20..]);
//! assert_eq!(goaway, Some(GoAway { last_stream_id: 5, error_code: 0 }));
//! assert!(goaway.is_some_and(|g| !g.may_have_processed(7)));
//! ```

/// Frame type of DATA (RFC 9113 §6.1).
const DATA: u8 = 0x0;
/// Frame type of HEADERS (RFC 9113 §6.2).
const HEADERS: u8 = 0x1;
/// Frame type of GOAWAY (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;
/// Frame type of SETTINGS (RFC 9113 §6.5).
const SETTINGS: u8 = 0x4;
/// The ACK flag of a SETTINGS frame.
const ACK: u8 = 0x1;
/// Size of a frame header.
const HEADER_LEN: usize = 9;
/// Fixed part of a GOAWAY payload: last-stream-id and error code.
const GOAWAY_FIXED: usize = 8;

/// A GOAWAY frame sent by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoAway {
    /// Highest client stream id the server might have processed; streams above it were
    /// not processed and can be retried on another connection.
    pub last_stream_id: u32,
    /// HTTP/2 error code (0 = NO_ERROR, a graceful shutdown).
    pub error_code: u32,
}

impl GoAway {
    /// Whether the server may have acted on the client stream `stream_id`.
    ///
    /// ```
    /// let g = moorline_proto::h2watch::GoAway { last_stream_id: 3, error_code: 0 };
    /// assert!(g.may_have_processed(3));
    /// assert!(!g.may_have_processed(5));
    /// ```
    pub fn may_have_processed(&self, stream_id: u32) -> bool {
        stream_id <= self.last_stream_id
    }

    /// Whether this is a graceful shutdown (error code NO_ERROR).
    pub fn is_graceful(&self) -> bool {
        self.error_code == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a frame header.
    Header { buf: [u8; HEADER_LEN], got: usize },
    /// Collecting the fixed part of a GOAWAY payload; `rest` payload bytes follow it.
    GoAway { buf: [u8; GOAWAY_FIXED], got: usize, rest: u32 },
    /// Skipping this many payload bytes; `settings`: the frame is a SETTINGS frame (not an
    /// ACK), counted once its payload has passed.
    Skip { left: u32, settings: bool },
}

impl State {
    const START: State = State::Header { buf: [0; HEADER_LEN], got: 0 };
}

/// Follows HTTP/2 frame boundaries in the server-to-client byte stream and reports GOAWAY
/// frames. Constant memory, whatever the input.
#[derive(Debug, Clone)]
pub struct FrameWatcher {
    state: State,
    last: Option<GoAway>,
    frames: u64,
    settings: u64,
    headers: u64,
    small_data: u64,
}

/// A DATA frame whose payload is shorter than this costs `SMALL_DATA - len` in
/// [`FrameWatcher::small_data_overhead`]: h2 (0.4.20 on) charges small frames so against a
/// budget of its own and ends the connection when they pile up unread.
pub const SMALL_DATA: u32 = 256;

impl Default for FrameWatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWatcher {
    /// A watcher positioned at the start of the server's frame stream.
    pub fn new() -> Self {
        FrameWatcher { state: State::START, last: None, frames: 0, settings: 0, headers: 0, small_data: 0 }
    }

    /// Observe the next bytes read from the server, in order. Returns the last GOAWAY
    /// completed within them, if any (a later GOAWAY supersedes an earlier one: its
    /// last-stream-id can only be lower). Does not allocate.
    ///
    /// Only well-formed GOAWAY frames (stream 0, payload of at least 8 bytes) are
    /// reported; `h2` rejects the others.
    pub fn observe(&mut self, mut bytes: &[u8]) -> Option<GoAway> {
        let mut seen = None;
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header { buf, got } => {
                    let n = take_into(buf, got, &mut bytes);
                    if n < HEADER_LEN {
                        break;
                    }
                    let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *buf;
                    let len = u32::from_be_bytes([0, l0, l1, l2]);
                    let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
                    self.frames += 1;
                    self.headers += u64::from(kind == HEADERS);
                    if kind == DATA && len > 0 && len < SMALL_DATA {
                        self.small_data += u64::from(SMALL_DATA - len);
                    }
                    self.state = if kind == GOAWAY && stream == 0 && len as usize >= GOAWAY_FIXED {
                        State::GoAway { buf: [0; GOAWAY_FIXED], got: 0, rest: len - GOAWAY_FIXED as u32 }
                    } else {
                        State::Skip { left: len, settings: kind == SETTINGS && stream == 0 && flags & ACK == 0 }
                    };
                }
                State::GoAway { buf, got, rest } => {
                    let n = take_into(buf, got, &mut bytes);
                    if n < GOAWAY_FIXED {
                        break;
                    }
                    let [a0, a1, a2, a3, e0, e1, e2, e3] = *buf;
                    let goaway = GoAway {
                        last_stream_id: u32::from_be_bytes([a0, a1, a2, a3]) & 0x7fff_ffff,
                        error_code: u32::from_be_bytes([e0, e1, e2, e3]),
                    };
                    seen = Some(goaway);
                    self.last = Some(goaway);
                    self.state = State::Skip { left: *rest, settings: false };
                }
                State::Skip { left, .. } => {
                    let n = bytes.len().min(*left as usize);
                    bytes = bytes.get(n..).unwrap_or_default();
                    *left -= n as u32;
                    if *left > 0 {
                        break;
                    }
                }
            }
            // The frame is over once no payload byte is left (a zero-length payload ends
            // without consuming a byte).
            if let State::Skip { left: 0, settings } = self.state {
                if settings {
                    self.settings += 1;
                }
                self.state = State::START;
            }
        }
        seen
    }

    /// The most recent GOAWAY seen on this connection.
    pub fn last_goaway(&self) -> Option<GoAway> {
        self.last
    }

    /// Number of frame headers seen so far.
    pub fn frames_seen(&self) -> u64 {
        self.frames
    }

    /// Number of complete SETTINGS frames (not ACKs) seen so far: the server's preface, and
    /// any later change of its settings (MAX_CONCURRENT_STREAMS...).
    ///
    /// ```
    /// let mut w = moorline_proto::h2watch::FrameWatcher::new();
    /// // SETTINGS (MAX_CONCURRENT_STREAMS = 1), split inside its payload, then a SETTINGS ACK.
    /// let settings = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1];
    /// w.observe(&settings[..12]);
    /// assert_eq!(w.settings_seen(), 0);
    /// w.observe(&settings[12..]);
    /// w.observe(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
    /// assert_eq!(w.settings_seen(), 1);
    /// ```
    pub fn settings_seen(&self) -> u64 {
        self.settings
    }

    /// Number of HEADERS frames seen so far (each starts a header block: a response head,
    /// a 1xx, trailers).
    ///
    /// ```
    /// let mut watcher = moorline_proto::h2watch::FrameWatcher::new();
    /// // Two HEADERS frames (`:status: 103`, then `:status: 200`) and a PING.
    /// watcher.observe(&[0, 0, 5, 1, 4, 0, 0, 0, 1, 0x08, 0x03, b'1', b'0', b'3', 0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    /// watcher.observe(&[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    /// assert_eq!((watcher.headers_seen(), watcher.frames_seen()), (2, 3));
    /// ```
    pub fn headers_seen(&self) -> u64 {
        self.headers
    }

    /// The framing overhead of the small DATA frames seen so far: `SMALL_DATA - len` for
    /// each DATA frame of `len` bytes, 0 < `len` < [`SMALL_DATA`], as h2 counts it (padding
    /// included here).
    ///
    /// ```
    /// let mut watcher = moorline_proto::h2watch::FrameWatcher::new();
    /// // DATA of 6 bytes on stream 1, an empty DATA, and DATA of 300 bytes (cut short).
    /// watcher.observe(&[0, 0, 6, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    /// watcher.observe(&[0, 1, 44, 0, 0, 0, 0, 0, 1]);
    /// assert_eq!(watcher.small_data_overhead(), 250);
    /// ```
    pub fn small_data_overhead(&self) -> u64 {
        self.small_data
    }
}

/// Move bytes from `src` into `buf[*got..]`; returns the new fill level.
fn take_into(buf: &mut [u8], got: &mut usize, src: &mut &[u8]) -> usize {
    let want = buf.len().saturating_sub(*got);
    let n = want.min(src.len());
    if let (Some(dst), Some(from)) = (buf.get_mut(*got..*got + n), src.get(..n)) {
        dst.copy_from_slice(from);
    }
    *got += n;
    *src = src.get(n..).unwrap_or_default();
    *got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(0);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
        let mut p = last.to_be_bytes().to_vec();
        p.extend(code.to_be_bytes());
        p.extend(debug);
        frame(GOAWAY, 0, &p)
    }

    /// SETTINGS, empty SETTINGS ack, HEADERS, DATA, GOAWAY with debug data, DATA, GOAWAY.
    fn sample() -> Vec<u8> {
        let mut s = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]);
        let mut ack = frame(0x4, 0, &[]);
        ack[4] = ACK;
        s.extend(ack);
        s.extend(frame(0x1, 1, &[0x88]));
        s.extend(frame(0x0, 1, b"hello"));
        s.extend(goaway(0x8000_0007, 0, b"shutting down")); // reserved bit is masked
        s.extend(frame(0x0, 3, &[]));
        s.extend(goaway(3, 2, b""));
        s
    }

    #[test]
    fn whole_input_reports_last_goaway() {
        let mut w = FrameWatcher::new();
        assert_eq!(w.observe(&sample()), Some(GoAway { last_stream_id: 3, error_code: 2 }));
        assert_eq!(w.frames_seen(), 7);
        assert_eq!(w.settings_seen(), 1, "the SETTINGS, not its ACK");
        assert_eq!(w.state, State::START);
    }

    #[test]
    fn split_at_every_position_and_byte_at_a_time() {
        let input = sample();
        let expected = [GoAway { last_stream_id: 7, error_code: 0 }, GoAway { last_stream_id: 3, error_code: 2 }];
        for cut in 0..=input.len() {
            let mut w = FrameWatcher::new();
            let mut seen: Vec<GoAway> = Vec::new();
            seen.extend(w.observe(&input[..cut]));
            seen.extend(w.observe(&input[cut..]));
            // Both GOAWAYs land in one read only if the cut is outside both of them.
            assert_eq!(seen.last(), expected.last(), "cut {cut}");
            assert_eq!(w.frames_seen(), 7, "cut {cut}");
            assert_eq!(w.settings_seen(), 1, "cut {cut}");
            assert_eq!(w.last_goaway(), Some(expected[1]));
        }
        let mut w = FrameWatcher::new();
        let seen: Vec<GoAway> = input.iter().filter_map(|b| w.observe(&[*b])).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn goaway_after_huge_data_frame() {
        let mut w = FrameWatcher::new();
        let big = vec![0u8; 0xff_ffff]; // largest possible frame payload
        let mut input = frame(0x0, 1, &big);
        input.extend(goaway(1, 0, b"debug"));
        let mut seen = None;
        for piece in input.chunks(65_536) {
            seen = w.observe(piece).or(seen);
        }
        assert_eq!(seen, Some(GoAway { last_stream_id: 1, error_code: 0 }));
        // O(1): a few words whatever the input (the parse state, the last GOAWAY, three counters).
        assert!(std::mem::size_of::<FrameWatcher>() <= 80);
    }

    #[test]
    fn malformed_goaway_is_skipped_not_reported() {
        let mut w = FrameWatcher::new();
        let mut input = frame(GOAWAY, 0, &[0, 0, 0, 1]); // too short
        input.extend(frame(GOAWAY, 1, &[0; 8])); // on a stream
        input.extend(frame(0x6, 0, &[0; 8]));
        assert_eq!(w.observe(&input), None);
        assert_eq!(w.frames_seen(), 3);
        assert!(GoAway { last_stream_id: 0, error_code: 0 }.is_graceful());
    }
}
