//! The Deribit adapter's typed parts, beside the [`Deribit`](crate::dialect::Deribit)
//! dialect (which says how Deribit subscribes, confirms, beats its heart and authenticates):
//!
//! - [`book`]: order-book integrity on `book.*` channels (`prev_change_id` must equal the
//!   last `change_id`; a gap breaks the book until a new snapshot; nothing is shown from a
//!   broken book).
//! - [`errors`]: Deribit error codes sorted into retryable, re-authenticate and permanent.

pub mod book;
pub mod errors;
