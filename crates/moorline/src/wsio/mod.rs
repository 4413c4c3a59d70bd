//! The WebSocket parts the connection layer runs on: the options ([`WsOptions`]), the sending
//! side shared by the handles and a driver ([`Outbox`], holding the sans-IO session's
//! `Outbound` half), and what an upgrade agreed ([`Upgraded`]). Below `conn/`; the public face
//! is `crate::ws`, which re-exports what users see and adds `ws::connect` (above `conn/`).

mod options;
mod outbox;
mod upgraded;

pub(crate) use self::outbox::{
    Access, Outbox, Queued, Sink, WriteError, moves_timer, now, refused, start, tokio_instant,
};
pub use moorline_proto::ws::{CloseCode, CloseFrame, HandshakeError, Message};
pub use options::{DEFAULT_WS_KEEPALIVE, WsOptions};
pub use upgraded::Upgraded;
