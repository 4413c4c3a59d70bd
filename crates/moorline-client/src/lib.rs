//! moorline-client: a WebSocket client for trading venues, built on the [`moorline`]
//! connection layer.
//!
//! One task per client owns the moorline `Connection` and its `Events` and routes every
//! frame: the venue's control traffic (heartbeats, `test_request`, subscription
//! confirmations, JSON-RPC responses) is handled inside, data goes to the user's bounded
//! queue. The client owns reconnection (the connection layer is opened with no retries of
//! its own); each attempt has an [`AttemptId`] and every timer belongs to one attempt. Sends
//! go from the caller's task straight to `Connection::ws_send` (no hop through the client
//! task).
//!
//! - [`client`]: [`Client`], its handle: `connect`, sends, `request`, `subscribe`, `stats`...
//! - [`config`]: [`ClientConfig`] and its validating builder (every option, its default,
//!   [`ConfigError`] naming the option, the value and the limit);
//! - [`jsonrpc`]: JSON-RPC 2.0 requests and one-pass, zero-copy reading of incoming frames;
//! - [`dialect`]: the [`Dialect`] trait (how a venue subscribes, confirms, beats its heart,
//!   authenticates, correlates) with Deribit, generic JSON-RPC, Binance and raw dialects;
//! - [`event`] and [`error`]: [`ClientEvent`], [`ClientError`] with [`ErrorKind`], and the
//!   retry classification of failed connection attempts ([`classify_connect_error`]);
//! - [`connect`]: one connection attempt from a [`ClientConfig`];
//! - [`deribit`]: the Deribit adapter: the [`DeribitClient`](deribit::DeribitClient) façade
//!   (typed calls and errors) and its event stream (book integrity, order events,
//!   reconciliation after every reconnect);
//! - [`queue`]: the user's incoming queue, bounded in bytes with the overflow policy, read
//!   through a cancel-safe [`EventStream`](queue::EventStream);
//! - [`pool`]: [`ClientPool`], N clients behind one handle: requests to the healthiest member
//!   with failover, subscriptions sharded under a per-connection limit or replicated on every
//!   member with each message delivered once (redundant mode), one merged event stream.
//!
//! ```
//! use moorline_client::dialect::{Deribit, Dialect, Frame, Inbound, SubOp};
//!
//! let deribit = Deribit::new();
//! let req = deribit.subscription_request(SubOp::Subscribe, 1, &["trades.BTC-PERPETUAL.raw"]).unwrap();
//! assert_eq!(req.method, "public/subscribe");
//! let reply = r#"{"jsonrpc":"2.0","id":1,"result":["trades.BTC-PERPETUAL.raw"]}"#;
//! let Inbound::Response { id: 1, outcome } = deribit.classify(Frame::Text(reply)) else { unreachable!() };
//! let confirmed = deribit.confirm(SubOp::Subscribe, &["trades.BTC-PERPETUAL.raw"], outcome.as_ref().map(|r| &**r));
//! assert_eq!(confirmed.confirmed, ["trades.BTC-PERPETUAL.raw"]);
//! ```
//!
//! The README's example (kept the same there):
//!
//! ```
//! use std::time::Duration;
//! use moorline_client::ClientConfig;
//! use moorline_client::config::{LimitMode, Overflow, RateLimit};
//! use moorline_client::dialect::{Credentials, Deribit, Dialect};
//!
//! let config = ClientConfig::builder()
//!     .header("user-agent", "my-bot/1.0")
//!     .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
//!     .rate_limit(Some(RateLimit::deribit(LimitMode::Wait { max_wait: Duration::from_secs(2) })))
//!     .incoming_buffer(4 << 20, Overflow::DropOldest)
//!     .build()
//!     .expect("valid options");
//! let deribit = Deribit::with_credentials(Credentials::new("client-id", "client-secret"));
//! deribit.check(&config).expect("Deribit accepts a 10 s heartbeat");
//! ```
//!
//! The README's Deribit adapter example (kept the same there):
//!
//! ```no_run
//! # async fn demo() -> Result<(), moorline_client::deribit::DeribitError> {
//! use moorline_client::ClientConfig;
//! use moorline_client::deribit::{DeribitClient, DeribitEvent};
//! use moorline_client::deribit::types::OrderRequest;
//! use moorline_client::dialect::Credentials;
//!
//! let credentials = Credentials::new("client-id", "client-secret").signed().scope("session:bot");
//! let (deribit, mut events) = DeribitClient::connect("wss://test.deribit.com/ws/api/v2", ClientConfig::default(), Some(credentials))?;
//! deribit.subscribe(&["book.BTC-PERPETUAL.100ms", "user.orders.BTC-PERPETUAL.raw"]).await?;
//! let placed = deribit.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, 50_000.0)).await?; // labelled for you
//! while let Some(event) = events.recv().await { // cancel-safe
//!     match event {
//!         DeribitEvent::Book { channel, update } => println!("{channel}: change {}", update.change_id),
//!         DeribitEvent::BookGap { instrument, expected, got, .. } => println!("{instrument}: gap ({expected:?}, {got:?}), resyncing"),
//!         DeribitEvent::Order(o) => println!("order {} is {:?} ({:?})", o.order.order_id, o.order.order_state, o.source),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # let _ = placed;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod connect;
pub mod deribit;
pub mod dialect;
pub mod error;
pub mod event;
pub mod jsonrpc;
mod limiter;
pub mod pool;
pub mod queue;
pub mod record;
mod shared;
mod task;

pub use client::{Client, ClientState, RoundTrips, Stats, SubscribeOutcome, running_tasks};
pub use config::{ClientConfig, ClientConfigBuilder, ConfigError};
pub use dialect::Dialect;
pub use error::{ClientError, ErrorKind, classify_connect_error};
pub use event::{AttemptId, Channel, ClientEvent, DisconnectReason, Payload, Refused};
pub use pool::{ClientPool, PoolConfig, PoolError, PoolEvent, PoolEvents};
