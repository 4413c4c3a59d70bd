//! WebSocket (RFC 6455, RFC 7692, RFC 8441), sans-IO: the opening handshake and
//! extension negotiation.

mod error;
mod extension;
mod handshake;
#[cfg(test)]
mod tests;

pub use error::HandshakeError;
pub use extension::{DeflateConfig, DeflateParams, Extension, Param, WINDOW_BITS, parse_extensions};
pub use handshake::{
    Carrier, ClientHandshake, Negotiated, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, accept_key,
};
