//! Close frames (RFC 6455 §5.5.1, §7.4): codes and their validity.

use bytes::{BufMut, Bytes, BytesMut};

use super::utf8_bytes::Utf8Bytes;

/// A close code and a reason.
///
/// ```
/// use moorline_proto::ws::{CloseCode, CloseFrame};
///
/// let frame = CloseFrame::new(CloseCode::NORMAL, "bye");
/// assert_eq!(frame.code, CloseCode(1000));
/// assert!(CloseCode(4000).is_valid_on_wire());
/// assert!(!CloseCode(1005).is_valid_on_wire()); // reserved: never sent
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The code.
    pub code: CloseCode,
    /// The reason (at most 123 bytes of UTF-8 on the wire).
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with `code` and `reason` (truncated to 123 bytes at a character boundary).
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self { code, reason: Utf8Bytes::from(&reason[..end]) }
    }

    /// The payload of a close frame carrying this code and reason.
    pub fn payload(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + self.reason.len());
        out.put_u16(self.code.0);
        out.put_slice(self.reason.as_bytes());
        out.freeze()
    }
}

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: going away (server shutting down, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: unsupported data type.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code present (never on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a close frame (never on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: invalid payload data (e.g. text that is not UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: a required extension was not negotiated.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: internal error.
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// Whether this code may appear in a close frame: 1000-1003, 1007-1014 (IANA-registered)
    /// and 3000-4999 (registered and private use). 1004, 1005, 1006, 1015 and the rest of
    /// 0-2999 may not.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a received close payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadClose {
    /// One byte, or a code that may not be sent.
    Protocol,
    /// The reason is not UTF-8.
    Utf8,
}

/// Parses a received close payload: empty (no code), or a valid code and a UTF-8 reason.
pub(crate) fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, BadClose> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(BadClose::Protocol),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(BadClose::Protocol);
            }
            let reason = Utf8Bytes::try_from(payload.slice(2..)).map_err(|_| BadClose::Utf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}
