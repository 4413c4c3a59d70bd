//! A real HTTP/1.1 + HTTP/2 test server on `127.0.0.1`, with fault injection.
//!
//! [`TestServer`] listens on an ephemeral loopback port, optionally speaks TLS
//! with a certificate generated at start (signed by a fresh CA available via
//! [`TestServer::ca_pem`] / [`TestServer::ca_der`]), and serves a fixed set of
//! routes identically over HTTP/1.1 and HTTP/2:
//!
//! | route | behaviour |
//! |---|---|
//! | `GET /hello` | `200`, body `hello` (content-length) |
//! | `POST\|PUT /echo` | `200`, request body streamed back as it arrives (chunked on HTTP/1.1) |
//! | `GET /stream?chunks=N&size=S&delay_ms=D` | `200`, `N` chunks of `S` bytes of `x`, `D` ms apart (defaults 3, 16, 0) |
//! | `GET /slow?delay_ms=D` | waits `D` ms (default 100), then `200` `slow` |
//! | `GET /stall` | reads the request, never answers |
//! | `GET /stall-body` | `200` head with content-length 100, 10 bytes of body, then nothing |
//! | `GET /inform` | `103` with `link: </style.css>; rel=preload`, then `200` `informed` |
//! | `GET /trailers` | `200` body `body`, then trailer `x-checksum: abc123` |
//! | `GET /push` | HTTP/2 with push allowed: PUSH_PROMISE `/pushed` (`200` `pushed`); then `200` `push` |
//! | `GET /pushed` | `200` `pushed` |
//! | `GET /close` | `200` `bye`, then HTTP/1.1 `connection: close` + close, HTTP/2 graceful GOAWAY |
//! | `GET /reset` | TCP RST of the connection, no answer |
//! | `GET /big?bytes=N` | `200` with `N` bytes (default 1 MiB), as fast as flow control allows |
//! | `GET /status/{code}` | that status (200..=599), empty body |
//! | `HEAD` of any `GET` route | the head only |
//! | anything else | `404` |
//!
//! Malformed query parameters give `400`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use moorline_testkit::http::{Fault, TestServer};
//!
//! let server = TestServer::builder().tls(true).h2(true).start().await?;
//! let _trust = server.ca_der();
//! server.set_fault(Fault::RefuseStreams);
//! // ... drive a client against server.addr() ...
//! assert!(server.wait_for_requests(1, Duration::from_secs(5)).await);
//! # Ok(())
//! # }
//! ```

mod conn;
mod control;
mod ctx;
mod error;
mod fault;
mod h1;
mod h1_codec;
mod h2;
mod io;
mod raw_h2;
mod routes;
mod server;

pub use crate::tls::{unrelated_ca_der, unrelated_ca_pem};
pub use fault::Fault;
pub use server::{TestServer, TestServerBuilder};
