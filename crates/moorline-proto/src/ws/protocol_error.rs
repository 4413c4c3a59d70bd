//! [`ProtocolError`]: what a peer did wrong, and the close code that says so.

use super::close::CloseCode;

/// A frame or message that breaks RFC 6455 / RFC 7692, or a configured limit.
///
/// Each maps to the close code to answer with ([`close_code`](Self::close_code)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 set where no negotiated extension allows it.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A server sent a masked frame (RFC 6455 §5.1).
    #[error("the server masked a frame")]
    MaskedFrame,
    /// A client sent an unmasked frame (RFC 6455 §5.1).
    #[error("the client did not mask a frame")]
    UnmaskedFrame,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    #[error("new data frame before the fragmented message ended")]
    UnfinishedMessage,
    /// A payload length not in its shortest form, or with the top bit set.
    #[error("payload length not minimally encoded")]
    BadLength,
    /// Text that is not UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A close frame with one byte of payload or a code that may not be sent.
    #[error("invalid close frame")]
    InvalidClose,
    /// A close reason that is not UTF-8.
    #[error("invalid UTF-8 in a close reason")]
    InvalidCloseReason,
    /// A frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    FrameTooBig {
        /// Its announced payload length.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A message larger than the configured maximum (after decompression).
    #[error("message exceeds the maximum of {max} bytes")]
    MessageTooBig {
        /// The limit.
        max: usize,
    },
    /// The compressed data of a permessage-deflate message is corrupt.
    #[error("permessage-deflate: {0}")]
    Inflate(String),
}

impl ProtocolError {
    /// The close code to send the peer for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason | ProtocolError::Inflate(_) => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooBig { .. } | ProtocolError::MessageTooBig { .. } => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL,
        }
    }
}
