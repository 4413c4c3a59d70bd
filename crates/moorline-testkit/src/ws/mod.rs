//! A WebSocket mock server on `127.0.0.1`, for testing WebSocket clients against
//! venues that misbehave.
//!
//! [`MockServer`] listens on an ephemeral loopback port (plain `ws://` or TLS
//! `wss://` with a certificate generated at start, trusted via
//! [`MockServer::ca_pem`] / [`MockServer::ca_der`]) and accepts HTTP/1.1
//! WebSocket upgrades on any path. It
//!
//! * records every frame clients send ([`MockServer::received`]) and lets tests
//!   wait for one ([`MockServer::expect_received`] with a [`Matcher`]): the wait
//!   fails with an [`ExpectError`] listing what *was* received;
//! * sends frames on demand ([`MockServer::inject`], [`MockServer::inject_to`]);
//! * answers by script ([`MockServer::on`] with a [`Reply`]);
//! * replays recorded sessions ([`Recording`], see below);
//! * injects faults ([`Fault`]: close frame, FIN, RST, half-open, stalled or
//!   dripping writes, a partial frame, refused connections, rejected upgrades,
//!   HTTP/2 GOAWAY).
//!
//! With [`MockServerBuilder::http2`] it also serves WebSockets over HTTP/2
//! (RFC 8441 extended CONNECT; ALPN `h2` over TLS, prior knowledge in clear
//! text), several sessions per connection, each a client of its own; the
//! [`Fault::GoAway`] fault sends those connections a GOAWAY.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer, Reply};
//! use serde_json::json;
//!
//! let server = MockServer::builder().tls(true).start().await?;
//! server.on(Matcher::JsonSubset(json!({"method": "public/subscribe"})), Reply::json_rpc_result(json!(["book"])));
//! // ... connect the client under test to server.url(), trusting server.ca_der() ...
//! assert!(server.wait_for_connections(1, Duration::from_secs(5)).await);
//! server.inject(Frame::text(r#"{"params":{"channel":"book","data":{}}}"#));
//! server.expect_received(Matcher::JsonSubset(json!({"method": "public/subscribe"})), Duration::from_secs(5)).await?;
//! server.fault(Fault::Reset);
//! # Ok(())
//! # }
//! ```
//!
//! # Recorded sessions (JSONL)
//!
//! A recording is one JSON object per line (blank lines are skipped):
//!
//! ```text
//! {"ts": 0,   "dir": "out", "type": "text",   "data": "{\"method\":\"subscribe\"}"}
//! {"ts": 12,  "dir": "in",  "type": "text",   "data": "{\"result\":\"ok\"}"}
//! {"ts": 250, "dir": "in",  "type": "binary", "data": "AAECAw=="}
//! {"ts": 900, "dir": "in",  "type": "close",  "data": "1001 going away"}
//! ```
//!
//! * `ts`: either a number, milliseconds since the start of the session (used
//!   as is: a line with `ts` 250 is played 250 ms after the replay starts), or
//!   an RFC 3339 string (`2024-03-01T12:00:00.250Z`, offsets allowed), taken
//!   relative to the first line of the file. One file uses one kind.
//! * `dir`: `"in"` for messages the recorded client received (these are played
//!   to the client under test), `"out"` for messages it sent (ignored), or `"meta"`
//!   (see below).
//! * `type`: `"text"`, `"binary"`, `"ping"`, `"pong"` or `"close"`.
//! * `data`: the text for `text`; standard base64 of the payload for `binary`,
//!   `ping` and `pong`; `"<code> <reason>"` (or just `"<code>"`, or empty/absent for
//!   an empty close payload) for `close`. Optional (empty) otherwise.
//!
//! * A line with `"dir": "meta"` is not a frame: `"type": "connected"` says a new
//!   connection of the recorded client starts there (the client's recorder writes one at
//!   every connect, `data` naming the attempt); other meta types are skipped.
//!
//! Lines are played in file order at `start + ts / speed`; a line whose time has
//! already passed is played immediately. A recording of several connections (`connected`
//! lines, or an inbound close frame followed by more frames) replays on connect
//! connection by connection: the n-th client gets what the n-th recorded connection got,
//! timed from that connection's start ([`Recording::sessions`], [`Recording::session`]).

mod client;
pub(crate) mod close;
mod conn;
mod fault;
mod frame;
mod h2;
mod h2_stream;
pub(crate) mod io;
pub(crate) mod json;
mod log;
mod matcher;
mod replay;
mod reply;
mod rfc3339;
mod server;
mod session;
mod shared;

pub use client::{ClientId, ClientInfo};
pub use fault::Fault;
pub use frame::Frame;
pub use h2_stream::H2Stream;
pub use log::{ExpectError, Received};
pub use matcher::{FramePredicate, Matcher};
pub use replay::{Recording, ReplayError};
pub use reply::{Reply, ReplyFn};
pub use server::{MockServer, MockServerBuilder};
