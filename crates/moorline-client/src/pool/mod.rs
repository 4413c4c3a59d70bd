//! Pools and redundancy: [`ClientPool`], N [`Client`](crate::Client)s to one or more endpoints
//! behind one handle and one event stream, built on the client's public API only.
//!
//! - **Requests** go to the healthiest member ([`MemberHealth`]: connected first, then fewest
//!   requests in flight, fewest recent errors, lowest request p99) and fail over to the next
//!   on a connection error: always when the venue cannot have seen the request (not
//!   connected, `Disconnected { sent: false }`), and, for [`ClientPool::request_idempotent`],
//!   also when it may have (`Disconnected { sent: true }`, the member's attempt timing out).
//!   The venue's JSON-RPC error is an answer: never retried. Only when every member failed is
//!   the error [`PoolError::AllMembersFailed`].
//! - **Sharded mode** ([`PoolConfig::sharded`]): each channel is subscribed on one member,
//!   under [`PoolConfig::channels_per_connection`]; a subscribe that does not fit is refused
//!   whole with [`PoolError::CapacityFull`]. A member that reconnects restores its own
//!   channels (the client does); channels are not moved between members.
//! - **Redundant mode** ([`PoolConfig::redundant`]): every channel on every member (two or
//!   more, to one endpoint or several); each data message delivered once, deduplicated by
//!   `(channel, key)` with the key from a [`SequenceExtractor`] ([`DeribitSequence`] for
//!   Deribit) in a [`Dedup`] bounded in bytes. Losing a member loses nothing while another is
//!   up.
//! - **Events** of every member, with the member's index, in one cancel-safe [`PoolEvents`]
//!   stream bounded in bytes ([`PoolConfig::event_buffer_bytes`], with the
//!   [`Overflow`](crate::config::Overflow) policy).
//!
//! One task per member (`forward.rs`) reads that member's [`EventStream`](crate::queue::EventStream),
//! notes its errors for the health ranking and passes its events on (redundant mode: data
//! messages through the shared [`Dedup`], whose verdict is taken and recorded under one lock
//! together with the queueing, so the order it records is the order the user reads). The
//! handle holds the clients, the health board and the placement of channels; nothing else
//! runs. Memory: the merged queue (`event_buffer_bytes`), the dedup state
//! ([`Dedup::memory_bound`]: per channel 16 bytes per member and per `dedup_ranges`, its
//! name and about 70 more, plus `unkeyed_window` × 16 bytes), 64 error times per member.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moorline_client::pool::PoolError> {
//! use std::sync::Arc;
//! use moorline_client::{ClientConfig, ClientEvent};
//! use moorline_client::dialect::{Deribit, Dialect};
//! use moorline_client::pool::{ClientPool, DeribitSequence, PoolConfig};
//!
//! // The same book on two connections to two endpoints; each change delivered once.
//! let endpoints = ["wss://www.deribit.com/ws/api/v2", "wss://streams.deribit.com/ws/api/v2"];
//! let (pool, mut events) = ClientPool::connect(&endpoints, 2, ClientConfig::default(),
//!     |_| Arc::new(Deribit::new()) as Arc<dyn Dialect>, PoolConfig::redundant(DeribitSequence))?;
//! pool.subscribe(&["book.BTC-PERPETUAL.100ms"]).await?;
//! while let Some(e) = events.recv().await {
//!     match e.event {
//!         ClientEvent::Message { channel, .. } => println!("{channel:?} change {:?} via member {}", e.key, e.member),
//!         other => println!("member {}: {other:?}", e.member),
//!     }
//! }
//! # Ok(()) }
//! ```

mod config;
mod dedup;
mod error;
mod events;
mod forward;
mod handle;
mod health;
mod redundant;
mod sequence;
mod shard;

pub use config::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_CHANNELS_PER_CONNECTION, DEFAULT_DEDUP_RANGES, DEFAULT_ERROR_WINDOW,
    DEFAULT_EVENT_BUFFER_BYTES, DEFAULT_LATENCY_TOLERANCE, DEFAULT_OVERFLOW, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_UNKEYED_WINDOW, MAX_CHANNELS_PER_CONNECTION, MAX_DEDUP_RANGES, MAX_UNKEYED_WINDOW, Mode, PoolConfig,
};
pub use dedup::{Dedup, DedupStats, MAX_MEMBERS, Probe, Verdict};
pub use error::PoolError;
pub use events::{PoolEvent, PoolEvents};
pub use handle::{Answer, ClientPool, Failover};
pub use health::MemberHealth;
pub use sequence::{DeribitSequence, SequenceExtractor, SequenceField};
