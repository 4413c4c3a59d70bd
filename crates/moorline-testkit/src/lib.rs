//! Real loopback servers with fault injection, for testing moorline and code built on it.
//!
//! The main entry point is [`http::TestServer`]: a real HTTP/1.1 + HTTP/2 server
//! (optionally over TLS) bound to `127.0.0.1` on an ephemeral port, which tests
//! can drive to close, reset, stall, send GOAWAY, refuse streams, answer slowly
//! and misbehave in other controlled ways.

#![forbid(unsafe_code)]

pub mod deribit;
pub mod http;
mod net;
pub mod proxy;
mod registry;
mod sync;
mod tls;
pub mod ws;

pub use tls::{PemCertificates, localhost_certificates};
