//! WebSocket (RFC 6455, RFC 7692, RFC 8441), sans-IO: the opening handshake,
//! extension negotiation, and the frame codec (strict decoder, masking encoder,
//! permessage-deflate, incremental UTF-8 validation), and the session state machine
//! ([`Session`]: closing handshake, auto-pong, keepalive, outgoing checks).

mod close;
#[cfg(test)]
mod codec_tests;
mod decode;
mod deflate;
mod encode;
mod error;
mod extension;
mod handshake;
mod mask;
mod message;
mod protocol_error;
mod session;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
mod utf8;
mod utf8_bytes;

pub use close::{CloseCode, CloseFrame};
pub use decode::{Decoder, Limits, Role};
pub use encode::{EncodeOptions, Encoder, write_frame};
pub use error::{HandshakeError, SendError};
pub use extension::{DeflateConfig, DeflateParams, Extension, Param, WINDOW_BITS, parse_extensions};
pub use handshake::{
    Carrier, ClientHandshake, Negotiated, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, accept_key,
};
pub use mask::apply_mask;
pub use message::Message;
pub use protocol_error::ProtocolError;
pub use session::{
    CloseState, Ended, Inbound, KeepaliveConfig, Outbound, OutboundAccess, Session, SessionConfig, SessionEvent,
    check_outgoing,
};
pub use utf8::{InvalidUtf8, Utf8Validator};
pub use utf8_bytes::Utf8Bytes;
