//! What travels on the worker → owner channel: one event, or a batch of the WebSocket
//! messages of one stream decoded from one read. A batch costs one channel operation (and one wake-up)
//! instead of one per message; the owner's [`Events`](super::owner::Events) unpacks it, so
//! the owner still sees one event at a time, in order.

use crate::event::{Event, StreamRef};
use crate::ws::Message;

/// The most events one batch carries (so the channel's capacity, counted in deliveries,
/// still bounds what waits for the owner).
pub(crate) const MAX_BATCH: usize = 32;

/// One item on the owner's channel.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A single event.
    One(Event),
    /// Messages of one WebSocket, in order (never empty): each is an
    /// [`Event::Ws`] to the owner. Only the messages travel (not a whole `Event` each).
    Ws(StreamRef, Vec<Message>),
}

impl From<Event> for Delivery {
    fn from(ev: Event) -> Self {
        Delivery::One(ev)
    }
}
