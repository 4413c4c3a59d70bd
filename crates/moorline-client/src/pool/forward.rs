//! A member's forwarding task: reads the member's [`EventStream`], notes its errors on the
//! health board, and passes every event on to the merged queue with the member's index
//! (redundant mode: data messages through the deduplication). Ends when the member's stream
//! ends (the member closed) or nobody reads the pool's events.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::events::{PoolEvent, PoolSender};
use super::health::Board;
use super::redundant::Redundancy;
use crate::event::ClientEvent;
use crate::queue::EventStream;

/// Runs `member`'s forwarder.
pub(crate) async fn forward(
    member: usize,
    mut stream: EventStream,
    tx: PoolSender,
    board: Arc<Mutex<Board>>,
    redundancy: Option<Arc<Redundancy>>,
) {
    while let Some(event) = stream.recv().await {
        if matches!(event, ClientEvent::Disconnected { .. } | ClientEvent::Error(_)) {
            board.lock().unwrap_or_else(|p| p.into_inner()).record_error(member, Instant::now());
        }
        // The member's stream breaks here: what it sends next starts new key ranges.
        if let Some(r) = &redundancy
            && matches!(
                event,
                ClientEvent::Disconnected { .. } | ClientEvent::Dropped { .. } | ClientEvent::Closed { .. }
            )
        {
            r.end_session(member);
        }
        let sent = match (&redundancy, event) {
            (Some(r), ClientEvent::Message { data, channel }) => r.deliver(member, &tx, data, channel).await,
            (_, event) => tx.send(PoolEvent::new(member, event)).await,
        };
        if sent.is_err() {
            tracing::debug!(member, "nobody reads the pool's events: the forwarder ends");
            return;
        }
    }
    tracing::debug!(member, "the member's event stream ended");
}
