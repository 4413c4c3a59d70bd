//! Sans-IO core of moorline: pure state machines with no I/O and no async runtime.
//!
//! Everything here is deterministic and tested without sockets; the tokio shell in the
//! `moorline` crate drives these machines with real bytes and real timers.

pub mod client;
pub mod h2watch;
pub mod http1;
pub mod read_size;
pub mod retry;
pub mod ws;
