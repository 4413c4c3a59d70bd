//! moorline: connections to trading venues that stay alive and correct.
//!
//! This crate is the connection layer, modelled on Gun: [`open`] starts a worker task that
//! owns one socket to one endpoint, reconnects on its own per a [`RetryPolicy`], and tells
//! its single owner what happens through [`Events`]: [`Event::Up`], [`Event::Down`] with the
//! streams that were and were not processed, responses as they stream in, and
//! [`Event::Exit`] when it gives up. Any task may hold a cloned [`Connection`] to send
//! requests. The awaits ([`Events::await_up`], [`Events::await_response`],
//! [`Events::await_body`]) take a timeout and return at once when the connection dies.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moorline::Error> {
//! use std::time::Duration;
//! use moorline::{ConnectOptions, Event};
//!
//! let (conn, mut events) = moorline::open("127.0.0.1", 8080, ConnectOptions::default())?;
//! events.await_up(Duration::from_secs(5)).await?;
//! let stream = conn.get("/hello", moorline::http::HeaderMap::new()).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Data { stream: s, data, fin } if s == stream => {
//!             println!("{} bytes", data.len());
//!             if fin { break }
//!         }
//!         Event::Down { reason, unprocessed, .. } => println!("down: {reason}; retry {unprocessed:?}"),
//!         Event::Exit { reason } => return Err(moorline::Error::Exited(Some(reason))),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod conn;
mod dial;
pub mod error;
pub mod event;
mod ids;
pub mod instrument;
pub mod options;
mod sync;
mod tls;
pub mod ws;
mod wsio;

/// The [`http`](https://docs.rs/http) crate, whose types the API takes and returns
/// ([`HeaderMap`](http::HeaderMap), [`Method`](http::Method), [`StatusCode`](http::StatusCode),
/// ...): use `moorline::http` rather than a dependency of your own, so the versions always match.
pub use http;

/// The README's code blocks, compiled (and, unless `no_run`, run) as doctests, so the
/// README stays true to the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub use conn::handle::{Connection, RequestBody, open};
pub use conn::info::{Info, State, StreamInfo, StreamState};
pub use conn::owner::{DEFAULT_STASH_LIMIT, Events};
pub use conn::tap::WsTap;
pub use error::{
    AlpnMismatch, ConnectError, DownReason, Error, ErrorKind, ExitReason, Failure, Http2Failure, Http2HandshakeFailure,
    OptionsError, PemItem, ProtocolFailure, RequestError, StreamError, TlsFailure, UrlProblem,
};
pub use event::{Body, Event, Response};
pub use ids::{Protocol, StreamRef};
pub use instrument::{Hook, Instrument, Step};
pub use options::{
    ConnectOptions, DEFAULT_EVENT_BUFFER_BYTES, DEFAULT_SMALL_FRAME_BUDGET, Http1Options, Http2Options, Keepalive,
    MIN_SMALL_FRAME_BUDGET, Resolver, RetryPolicy, TlsOptions, Transport,
};
