//! The Deribit adapter's typed parts, beside the [`Deribit`](crate::dialect::Deribit)
//! dialect (which says how Deribit subscribes, confirms, beats its heart and authenticates):
//!
//! - [`DeribitClient`]: the façade: typed calls (time, instruments, ticker, order book,
//!   subscribe, buy, sell, edit, cancel, cancel all, open orders, order state), errors as
//!   [`DeribitError`] with their [`ErrorClass`](errors::ErrorClass), labels on every order;
//! - [`DeribitEvents`]: its event stream: book integrity with resync, typed order events,
//!   reconciliation after every (re)connect, the platform's maintenance state;
//! - [`book`]: order-book integrity on `book.*` channels (`prev_change_id` must equal the
//!   last `change_id`; a gap breaks the book until a new snapshot; nothing is shown from a
//!   broken book);
//! - [`errors`]: Deribit error codes sorted into retryable, re-authenticate and permanent;
//! - [`types`]: the requests and answers, typed.

pub mod book;
mod client;
pub mod errors;
mod event;
pub mod events;
mod facade;
mod orders;
pub mod types;

pub use client::DeribitClient;
pub use errors::DeribitError;
pub use events::{DeribitEvent, DeribitEvents, OrderEvent, OrderSource};
