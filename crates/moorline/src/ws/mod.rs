//! WebSocket over a moorline connection: RFC 6455 over HTTP/1.1 (the connection becomes the
//! WebSocket) and RFC 8441 over HTTP/2 (each WebSocket is a stream; several share one
//! connection).
//!
//! Open one from a URL with [`connect`] (HTTP/1.1 by default, HTTP/2 opt-in), or upgrade a
//! connection of your own with [`Connection::ws_upgrade`](crate::Connection::ws_upgrade); the owner gets
//! [`Event::WsUpgraded`](crate::Event::WsUpgraded), then one [`Event::Ws`](crate::Event::Ws)
//! per message; send with [`Connection::ws_send`](crate::Connection::ws_send) and close with
//! [`Connection::ws_close`](crate::Connection::ws_close). Awaits:
//! [`Events::await_ws_upgrade`](crate::Events::await_ws_upgrade) and
//! [`Events::await_ws`](crate::Events::await_ws).
//!
//! The codec is moorline's own sans-IO one ([`moorline_proto::ws`]): strict (every protocol
//! violation closes with the right code and reaches the owner as a typed error), bounded
//! (limits checked before buffering, including while inflating), zero-copy for unfragmented
//! messages, with permessage-deflate.

mod connect;

pub use crate::wsio::{DEFAULT_WS_KEEPALIVE, Upgraded, WsOptions};
pub use connect::{WsSession, WsUrl, connect};
pub use moorline_proto::ws::{
    CloseCode, CloseFrame, DeflateConfig, DeflateParams, HandshakeError, Limits, Message, ProtocolError, Utf8Bytes,
};
