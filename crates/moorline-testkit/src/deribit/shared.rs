//! The venue behind a mutex, plus each connection's outbox. Deliveries are
//! queued while the lock is held, so every connection sees events in the
//! order the venue produced them (a `book` change never overtakes its predecessor).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;

use super::snapshot::BookSnapshot;
use super::time::Now;
use super::venue::{ConnId, Delivery, Outgoing, Venue};
use crate::sync::lock;
use crate::ws::close::GOING_AWAY;

struct Core {
    venue: Venue,
    outboxes: HashMap<ConnId, mpsc::UnboundedSender<Outgoing>>,
}

/// State shared by the accept loop, the market clock and connections.
pub(crate) struct Shared {
    core: Mutex<Core>,
    open: AtomicUsize,
}

/// Counts an open WebSocket connection while alive.
pub(crate) struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(crate) fn new(venue: Venue) -> Self {
        Self { core: Mutex::new(Core { venue, outboxes: HashMap::new() }), open: AtomicUsize::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // Nothing panics while holding the lock; recover anyway rather than cascade.
        lock(&self.core)
    }

    /// Runs `f` on the venue and routes what it produced, under one lock.
    fn run<R>(&self, f: impl FnOnce(&mut Venue) -> (R, Vec<Delivery>)) -> R {
        let mut core = self.lock();
        let (result, deliveries) = f(&mut core.venue);
        for Delivery { conn, out } in deliveries {
            if let Some(outbox) = core.outboxes.get(&conn) {
                // A closed outbox means the connection is ending; nothing to do.
                let _ = outbox.send(out);
            }
        }
        result
    }

    /// Registers a connection whose frames go to `outbox`.
    pub(crate) fn connect(&self, outbox: mpsc::UnboundedSender<Outgoing>) -> (ConnId, OpenGuard<'_>) {
        self.open.fetch_add(1, Ordering::SeqCst);
        let mut core = self.lock();
        let conn = core.venue.connect(Now::system());
        core.outboxes.insert(conn, outbox);
        (conn, OpenGuard(&self.open))
    }

    /// Server shutdown: queues a close frame 1001 (going away) to every connection, behind
    /// what it was already sent.
    pub(crate) fn going_away(&self) {
        let core = self.lock();
        for outbox in core.outboxes.values() {
            let _ = outbox.send(Outgoing::Close { code: GOING_AWAY, reason: "server shutting down".to_owned() });
        }
    }

    pub(crate) fn disconnect(&self, conn: ConnId) {
        let mut core = self.lock();
        core.outboxes.remove(&conn);
        core.venue.disconnect(conn);
    }

    pub(crate) fn on_text(&self, conn: ConnId, text: &str) {
        self.run(|v| ((), v.on_text(conn, text, Now::system())));
    }

    pub(crate) fn on_binary(&self, conn: ConnId) {
        self.run(|v| ((), v.on_binary(conn, Now::system())));
    }

    pub(crate) fn on_timer(&self, conn: ConnId) {
        self.run(|v| ((), v.on_timer(conn, Now::system())));
    }

    pub(crate) fn deadline(&self, conn: ConnId) -> Option<Instant> {
        self.lock().venue.deadline(conn)
    }

    pub(crate) fn step_market(&self) {
        self.run(|v| ((), v.step_market(Now::system())));
    }

    pub(crate) fn book_snapshot(&self, instrument_name: &str) -> Option<BookSnapshot> {
        self.lock().venue.book_snapshot(instrument_name)
    }

    /// Open WebSocket connections.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}
