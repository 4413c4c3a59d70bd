//! The owner's side: the single receiver of a connection's events, and the await functions.
//!
//! Awaits read the same channel as [`Events::next`]. Like Erlang's selective receive, an
//! await takes the events it is waiting for and sets the others aside in a stash that
//! `next` returns first, in order. Because the receiver itself closes when the worker is
//! gone (and the worker always sends `Exit` before going), an await can never wait on a dead
//! connection: no monitor to set up, none to forget.
//!
//! The payload bytes of what waits here (the channel, a batch being unpacked, the stash)
//! count in the owner's byte budget ([`ConnectOptions::event_buffer_bytes`]); each event gives
//! its bytes back as it leaves: returned by `next`, or taken by an await (an await holds what
//! it took for its caller, e.g. the chunks of a body it collects, outside the budget).
//!
//! [`ConnectOptions::event_buffer_bytes`]: crate::ConnectOptions::event_buffer_bytes

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::delivery::{Budget, Delivery, event_bytes};
use super::shared::Shared;
use crate::error::{Error, ExitReason, StreamError};
use crate::event::{Body, Event, Response};
use crate::ids::{Protocol, StreamRef};
use crate::wsio::{HandshakeError, Message, Upgraded};

/// Default number of unrelated events an await may set aside before giving up.
pub const DEFAULT_STASH_LIMIT: usize = 16 * 1024;

/// The owner's event receiver. Exactly one exists per connection at a time; see
/// [`crate::Connection::set_owner`] to hand it over.
#[derive(Debug)]
pub struct Events {
    conn: u64,
    /// The connection's shared state: `await_ws` writes what `ws_feed` queued through the
    /// outbox found there (see [`WRITE_FED_EVERY`]).
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Delivery>,
    /// The byte budget of what waits for this owner: every event gives its payload bytes
    /// back as it leaves (returned by `next`, or taken by an await).
    budget: Arc<Budget>,
    /// Events delivered and put back unlooked-at (by `await_ws`'s fast path): they come first.
    inbox: VecDeque<Event>,
    /// The rest of the last batch of WebSocket messages received, after `inbox`.
    batch: Option<(StreamRef, std::vec::IntoIter<Message>)>,
    stash: VecDeque<Stashed>,
    /// Payload bytes of the stash still counted in the budget (events set aside).
    stash_bytes: usize,
    stash_limit: usize,
    moved: bool,
    exit: Option<ExitReason>,
    /// Streams recently ended by `Down` or `StreamError`, so that a later await on one fails at
    /// once even after the owner consumed the event that ended it.
    gone: VecDeque<(StreamRef, Error)>,
    /// Messages `await_ws` handed out from batches since it last wrote fed bytes.
    taken: usize,
    /// Events received from the channel (a batch counts its messages), for the tap.
    received: u64,
    /// `next`/`try_next` handed out an event the owner may still be handling (released at
    /// the next call; see [`crate::WsTap`]).
    handed: bool,
}

/// `await_ws` writes what [`Connection::ws_feed`](crate::Connection::ws_feed) queued each time
/// it has handed out this many messages from a batch (and whenever it starts on a new batch),
/// so that replies fed while a burst is worked through leave during the burst, not after it.
/// Chosen by measurement (the 64 B `ws_echo`; sweep in docs/DESIGN.md, "Fed replies leave during a burst"): writing
/// every one or two messages costs more in syscalls than it gains, eight or more leaves the
/// peer idle longer.
const WRITE_FED_EVERY: usize = 4;

/// An event an await set aside (or consumed, until the await ends).
#[derive(Debug)]
struct Stashed {
    ev: Event,
    /// Its payload bytes still counted in the budget: 0 once an await took it (the await
    /// holds it for its caller, e.g. a body being collected).
    bytes: usize,
}

/// How many ended streams `Events` remembers.
const GONE_MEMORY: usize = 4096;

/// What an await makes of one event.
enum Verdict<T> {
    /// Not about us: set it aside.
    Skip,
    /// About us and consumed; keep waiting.
    Consumed,
    /// About us: done, the event is consumed.
    Done(T),
    /// The wait failed; the event stays visible to `next`.
    Fail(Error),
}

impl Events {
    pub(crate) fn new(shared: Arc<Shared>, rx: mpsc::Receiver<Delivery>, budget: Arc<Budget>) -> Self {
        Self {
            conn: shared.id,
            shared,
            rx,
            budget,
            inbox: VecDeque::new(),
            batch: None,
            stash: VecDeque::new(),
            stash_bytes: 0,
            stash_limit: DEFAULT_STASH_LIMIT,
            moved: false,
            exit: None,
            gone: VecDeque::new(),
            taken: 0,
            received: 0,
            handed: false,
        }
    }

    /// The identity of the connection these events come from.
    pub fn connection_id(&self) -> u64 {
        self.conn
    }

    /// Set how many unrelated events an await may set aside before it fails with
    /// [`Error::Backlog`] (default [`DEFAULT_STASH_LIMIT`]). An await for a body or a
    /// WebSocket message also fails with it, at once, when the events set aside fill the
    /// byte budget ([`ConnectOptions::event_buffer_bytes`](crate::ConnectOptions::event_buffer_bytes))
    /// and the connection waits for room: nothing more can come until they are read.
    pub fn set_stash_limit(&mut self, limit: usize) {
        self.stash_limit = limit.max(1);
    }

    /// The next event, or `None` once the worker has exited (after `Exit`) or ownership moved
    /// (after `OwnerChanged`).
    pub async fn next(&mut self) -> Option<Event> {
        self.release();
        let ev = match self.unstash() {
            Some(ev) => ev,
            None => {
                let ev = self.recv().await?;
                self.budget.give_back(event_bytes(&ev));
                ev
            }
        };
        self.observe(&ev);
        self.hand_out();
        Some(ev)
    }

    /// The next event if one is ready now.
    pub fn try_next(&mut self) -> Option<Event> {
        self.release();
        let ev = match self.unstash() {
            Some(ev) => ev,
            None => {
                let ev = self.try_recv().ok()?;
                self.budget.give_back(event_bytes(&ev));
                ev
            }
        };
        self.observe(&ev);
        self.hand_out();
        Some(ev)
    }

    /// The owner asks for more: what `next`/`try_next` last handed out was handled.
    fn release(&mut self) {
        self.handed = false;
        self.publish();
    }

    /// An event leaves through `next`/`try_next`: not released until the owner asks again.
    fn hand_out(&mut self) {
        self.handed = true;
        self.publish();
    }

    /// Publishes how many events the owner released, once a tap was ever installed: those
    /// received, less those still held here and the one being handled.
    fn publish(&self) {
        if !self.shared.tap.armed() {
            return;
        }
        let batch = self.batch.as_ref().map_or(0, |(_, m)| m.len());
        let held = (self.stash.len() + self.inbox.len() + batch) as u64 + u64::from(self.handed);
        self.shared.tap.released.store(self.received.saturating_sub(held), std::sync::atomic::Ordering::Release);
    }

    /// The first event set aside, leaving `Events` (its bytes go back to the budget).
    fn unstash(&mut self) -> Option<Event> {
        let Stashed { ev, bytes } = self.stash.pop_front()?;
        self.stash_bytes -= bytes;
        self.budget.give_back(bytes);
        Some(ev)
    }

    /// Sets `ev` aside; it stays counted in the budget.
    fn stash_push(&mut self, ev: Event) {
        let bytes = event_bytes(&ev);
        self.stash_bytes += bytes;
        self.stash.push_back(Stashed { ev, bytes });
    }

    /// The await took the event set aside at `index`: it no longer counts in the budget.
    fn stash_taken(&mut self, index: usize) {
        if let Some(entry) = self.stash.get_mut(index) {
            let bytes = std::mem::take(&mut entry.bytes);
            self.stash_bytes -= bytes;
            self.budget.give_back(bytes);
        }
    }

    /// Nothing delivered is waiting to be looked at: no put-back event, no batch, an empty
    /// channel.
    fn nothing_delivered(&self) -> bool {
        self.inbox.is_empty() && self.batch.as_ref().is_none_or(|(_, m)| m.as_slice().is_empty()) && self.rx.is_empty()
    }

    /// The next event delivered: the rest of the last batch first, then the channel.
    /// Cancel-safe (a batch is unpacked in the same poll that receives it).
    async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.unpacked() {
                return Some(ev);
            }
            let delivery = self.rx.recv().await?;
            self.received += delivery.events();
            match delivery {
                Delivery::One(ev) => return Some(*ev),
                Delivery::WsOne(stream, message) => return Some(Event::Ws { stream, message }),
                Delivery::Ws(stream, messages) => self.batch = Some((stream, messages.into_iter())),
            }
        }
    }

    fn try_recv(&mut self) -> Result<Event, mpsc::error::TryRecvError> {
        loop {
            if let Some(ev) = self.unpacked() {
                return Ok(ev);
            }
            let delivery = self.rx.try_recv()?;
            self.received += delivery.events();
            match delivery {
                Delivery::One(ev) => return Ok(*ev),
                Delivery::WsOne(stream, message) => return Ok(Event::Ws { stream, message }),
                Delivery::Ws(stream, messages) => self.batch = Some((stream, messages.into_iter())),
            }
        }
    }

    /// The next event already delivered, if any: put-back ones first, then the batch.
    fn unpacked(&mut self) -> Option<Event> {
        if let Some(ev) = self.inbox.pop_front() {
            return Some(ev);
        }
        let (stream, messages) = self.batch.as_mut()?;
        match messages.next() {
            Some(message) => Some(Event::Ws { stream: *stream, message }),
            None => {
                self.batch = None;
                None
            }
        }
    }

    /// `await_ws`'s fast path: the next delivered event, if it is a data message of
    /// `stream` (taken by value, no `Event` built). Anything else stays where it was.
    fn next_data_message(&mut self, stream: StreamRef) -> Option<Message> {
        if !self.stash.is_empty() || !self.inbox.is_empty() {
            return None;
        }
        if self.batch.as_ref().is_none_or(|(_, m)| m.as_slice().is_empty()) {
            self.shared.ws_write_fed(&stream);
            let delivery = self.rx.try_recv().ok()?;
            self.received += delivery.events();
            match delivery {
                Delivery::Ws(s, messages) => self.batch = Some((s, messages.into_iter())),
                Delivery::WsOne(s, message) if s == stream && is_data(&message) => {
                    self.budget.give_back(message.len());
                    return Some(message);
                }
                Delivery::WsOne(s, message) => {
                    self.inbox.push_back(Event::Ws { stream: s, message });
                    return None;
                }
                Delivery::One(ev) => {
                    self.inbox.push_back(*ev);
                    return None;
                }
            }
        }
        let (s, messages) = self.batch.as_mut()?;
        if *s != stream || !messages.as_slice().first().is_some_and(is_data) {
            return None;
        }
        let message = messages.next();
        if let Some(m) = &message {
            self.budget.give_back(m.len());
        }
        self.taken += 1;
        if self.taken >= WRITE_FED_EVERY {
            self.taken = 0;
            self.shared.ws_write_fed(&stream);
        }
        message
    }

    fn observe(&mut self, ev: &Event) {
        match ev {
            Event::Exit { reason } => self.exit = Some(reason.clone()),
            Event::OwnerChanged => self.moved = true,
            Event::Down { reason, possibly_processed, unprocessed, .. } => {
                for s in possibly_processed.iter().chain(unprocessed) {
                    self.remember_gone(*s, Error::Down(reason.clone()));
                }
            }
            Event::StreamError { stream, error } => self.remember_gone(*stream, Error::Stream(error.clone())),
            Event::Ws { stream, message: Message::Close(_) } => {
                self.remember_gone(*stream, Error::Stream(StreamError::WsClosed));
            }
            _ => {}
        }
    }

    fn remember_gone(&mut self, stream: StreamRef, error: Error) {
        if self.gone.len() >= GONE_MEMORY {
            self.gone.pop_front();
        }
        self.gone.push_back((stream, error));
    }

    /// Wait until the connection is up; returns the negotiated protocol.
    ///
    /// `Down` events met on the way stay queued for [`Events::next`]. Fails at once if the
    /// worker exits (retries exhausted, closed...). A timeout is
    /// [`Error::ConnectTimeout`], with why the last attempt failed.
    pub async fn await_up(&mut self, timeout: Duration) -> Result<Protocol, Error> {
        let up = self
            .wait(timeout, false, |ev| match ev {
                Event::Up { protocol } => Verdict::Done(*protocol),
                _ => Verdict::Skip,
            })
            .await;
        match up {
            Err(Error::Timeout(after)) => {
                let info = crate::sync::lock(&self.shared.info);
                Err(Error::ConnectTimeout { after, attempts: info.failures, last: info.last_failure.clone() })
            }
            other => other,
        }
    }

    /// Wait for the response head of `stream` (1xx responses before it are collected in
    /// [`Response::informs`]).
    ///
    /// Fails at once if the stream fails, the connection goes down with the stream in flight,
    /// or the worker exits.
    pub async fn await_response(&mut self, stream: &StreamRef, timeout: Duration) -> Result<Response, Error> {
        self.check(stream)?;
        let s = *stream;
        let mut informs = Vec::new();
        self.wait(timeout, false, move |ev| match ev {
            Event::Inform { stream, status, headers } if *stream == s => {
                informs.push((*status, headers.clone()));
                Verdict::Consumed
            }
            Event::Response { stream, status, headers, fin } if *stream == s => Verdict::Done(Response {
                status: *status,
                headers: headers.clone(),
                informs: std::mem::take(&mut informs),
                fin: *fin,
            }),
            _ => stream_failure(ev, s),
        })
        .await
    }

    /// Wait for the whole body of `stream` (its response head is consumed too if it has not
    /// been awaited yet).
    ///
    /// Fails at once if the stream fails, the connection goes down with the stream in flight,
    /// or the worker exits.
    pub async fn await_body(&mut self, stream: &StreamRef, timeout: Duration) -> Result<Body, Error> {
        self.check(stream)?;
        let s = *stream;
        let mut buf = BytesMut::new();
        let mut single: Option<Bytes> = None;
        self.wait(timeout, true, move |ev| match ev {
            Event::Inform { stream, .. } if *stream == s => Verdict::Consumed,
            Event::Response { stream, fin, .. } if *stream == s => {
                if *fin {
                    Verdict::Done(Body::default())
                } else {
                    Verdict::Consumed
                }
            }
            Event::Data { stream, data, fin } if *stream == s => {
                // Avoid a copy for single-chunk bodies.
                match single.take() {
                    None if buf.is_empty() => single = Some(data.clone()),
                    prev => {
                        if let Some(p) = prev {
                            buf.extend_from_slice(&p);
                        }
                        buf.extend_from_slice(data);
                    }
                }
                if *fin {
                    let data = single.take().unwrap_or_else(|| std::mem::take(&mut buf).freeze());
                    Verdict::Done(Body { data, trailers: None })
                } else {
                    Verdict::Consumed
                }
            }
            Event::Trailers { stream, headers } if *stream == s => {
                let data = single.take().unwrap_or_else(|| std::mem::take(&mut buf).freeze());
                Verdict::Done(Body { data, trailers: Some(headers.clone()) })
            }
            _ => stream_failure(ev, s),
        })
        .await
    }

    /// Wait for the WebSocket upgrade of `stream` to complete.
    ///
    /// Fails at once if the server answers without switching protocols (the
    /// [`StreamError::WsHandshake`] carries the status; the response itself stays queued for
    /// [`Events::next`]), if the handshake is wrong, or if the connection goes down or exits.
    pub async fn await_ws_upgrade(&mut self, stream: &StreamRef, timeout: Duration) -> Result<Upgraded, Error> {
        self.check(stream)?;
        let s = *stream;
        self.wait(timeout, false, move |ev| match ev {
            Event::WsUpgraded { stream, protocol, deflate, headers } if *stream == s => {
                Verdict::Done(Upgraded { protocol: protocol.clone(), deflate: *deflate, headers: headers.clone() })
            }
            Event::Response { stream, status, .. } if *stream == s => {
                Verdict::Fail(Error::Stream(StreamError::WsHandshake(HandshakeError::Status {
                    status: status.as_u16(),
                })))
            }
            _ => stream_failure(ev, s),
        })
        .await
    }

    /// Wait for the next message on WebSocket `stream` (a close frame included: after it, the
    /// WebSocket is over).
    ///
    /// Fails at once if the stream fails (protocol error...), the connection goes down or the
    /// worker exits.
    pub async fn await_ws(&mut self, stream: &StreamRef, timeout: Duration) -> Result<Message, Error> {
        self.check(stream)?;
        let s = *stream;
        // Fast path (a busy stream): nothing set aside and the next event is a data message for
        // this stream; it is taken by value. Anything else stays where it was, for the wait.
        if let Some(message) = self.next_data_message(s) {
            return Ok(message);
        }
        let message = self
            .wait(timeout, true, move |ev| match ev {
                Event::Ws { stream, message } if *stream == s => Verdict::Done(message.clone()),
                _ => stream_failure(ev, s),
            })
            .await?;
        if let Message::Close(_) = message {
            // The WebSocket is over: a later await on it fails at once.
            self.remember_gone(s, Error::Stream(StreamError::WsClosed));
        }
        Ok(message)
    }

    fn check(&self, stream: &StreamRef) -> Result<(), Error> {
        if stream.conn != self.conn {
            return Err(Error::ForeignStream(*stream));
        }
        match self.gone.iter().rev().find(|(s, _)| s == stream) {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The selective receive under every await.
    ///
    /// Every event pulled from the channel goes into the stash first; the ones the await
    /// consumed leave it only when the await succeeds. So a timeout, a failure or a dropped
    /// future loses nothing: a later await or `next` sees every event, in order.
    ///
    /// `payload`: what the await waits for carries payload bytes (a body chunk, a message),
    /// so it cannot come while the events set aside fill the byte budget: the wait then
    /// fails at once with [`Error::Backlog`] instead of timing out.
    async fn wait<T>(
        &mut self,
        timeout: Duration,
        payload: bool,
        mut judge: impl FnMut(&Event) -> Verdict<T>,
    ) -> Result<T, Error> {
        // Read the clock only when the wait has to block (an event already queued needs none).
        let mut deadline: Option<Instant> = None;
        let mut consumed: Vec<usize> = Vec::new();
        // First the events already set aside, in order.
        for i in 0..self.stash.len() {
            match judge(&self.stash[i].ev) {
                Verdict::Skip => {}
                Verdict::Consumed => {
                    consumed.push(i);
                    self.stash_taken(i);
                }
                Verdict::Done(v) => {
                    consumed.push(i);
                    self.stash_taken(i);
                    self.take(&consumed);
                    return Ok(v);
                }
                Verdict::Fail(e) => return Err(e),
            }
        }
        if self.moved {
            return Err(Error::OwnershipMoved);
        }
        if let Some(reason) = &self.exit {
            return Err(Error::Exited(Some(reason.clone())));
        }
        loop {
            if self.stash.len() - consumed.len() >= self.stash_limit {
                return Err(Error::Backlog(self.stash.len() - consumed.len()));
            }
            // The events set aside fill the byte budget and the connection waits for room: no
            // payload can come until the owner takes some, so waiting would only time out.
            if payload
                && self.stash_bytes >= self.budget.limit()
                && self.budget.is_waited_on()
                && self.nothing_delivered()
            {
                return Err(Error::Backlog(self.stash.len() - consumed.len()));
            }
            // An event already queued is taken without arming a timer.
            let next = match self.try_recv() {
                Ok(ev) => Some(ev),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let deadline = *deadline.get_or_insert_with(|| super::deadline(timeout));
                    match tokio::time::timeout_at(deadline, self.recv()).await {
                        Err(_) => return Err(Error::Timeout(timeout)),
                        Ok(ev) => ev,
                    }
                }
            };
            let Some(ev) = next else {
                return Err(if self.moved { Error::OwnershipMoved } else { Error::Exited(self.exit.clone()) });
            };
            let verdict = match judge(&ev) {
                // Nothing set aside: the event that ends the wait need not pass through the stash.
                Verdict::Done(v) if consumed.is_empty() && !matches!(ev, Event::OwnerChanged | Event::Exit { .. }) => {
                    self.budget.give_back(event_bytes(&ev));
                    return Ok(v);
                }
                other => other,
            };
            let failure = match &ev {
                Event::OwnerChanged => {
                    self.moved = true;
                    Some(Error::OwnershipMoved)
                }
                Event::Exit { reason } => {
                    self.exit = Some(reason.clone());
                    Some(Error::Exited(Some(reason.clone())))
                }
                _ => None,
            };
            let index = self.stash.len();
            self.stash_push(ev);
            match verdict {
                Verdict::Skip => {}
                Verdict::Consumed => {
                    consumed.push(index);
                    self.stash_taken(index);
                }
                Verdict::Done(v) => {
                    consumed.push(index);
                    self.stash_taken(index);
                    self.take(&consumed);
                    return Ok(v);
                }
                Verdict::Fail(e) => return Err(e),
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// Remove the stash entries at these (ascending) indices.
    fn take(&mut self, indices: &[usize]) {
        let mut next = indices.iter().peekable();
        let mut i = 0;
        self.stash.retain(|_| {
            let keep = next.peek() != Some(&&i);
            if !keep {
                next.next();
            }
            i += 1;
            keep
        });
    }
}

/// A message that neither ends nor controls the WebSocket.
fn is_data(message: &Message) -> bool {
    matches!(message, Message::Text(_) | Message::Binary(_))
}

/// The verdict for events that end a stream early.
fn stream_failure<T>(ev: &Event, s: StreamRef) -> Verdict<T> {
    match ev {
        Event::StreamError { stream, error } if *stream == s => Verdict::Fail(Error::Stream(error.clone())),
        Event::Down { reason, possibly_processed, unprocessed, .. }
            if possibly_processed.contains(&s) || unprocessed.contains(&s) =>
        {
            Verdict::Fail(Error::Down(reason.clone()))
        }
        Event::Exit { reason } => Verdict::Fail(Error::Exited(Some(reason.clone()))),
        _ => Verdict::Skip,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! The bookkeeping of [`Events`], fed by hand: the stash of what awaits set aside, batches,
    //! the streams remembered as gone, and the ends (owner changed, exit, closed channel).

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::error::DownReason;
    use crate::options::ConnectOptions;

    /// An [`Events`] the test feeds through `tx`. Its connection's worker never connects (its
    /// resolver never answers), so there is no socket and nothing else on the channel.
    struct Rig {
        _conn: crate::Connection,
        /// The connection's own receiver, kept so its worker runs on.
        _owner: Events,
        events: Events,
        tx: mpsc::Sender<Delivery>,
        /// What `tx` carries is charged here, as the worker charges its owner's budget.
        budget: Arc<crate::conn::delivery::Budget>,
    }

    impl Rig {
        fn new() -> Self {
            let opts = ConnectOptions::default()
                .lookup_timeout(Duration::from_secs(365 * 86_400))
                .resolver(|_, _| Box::pin(std::future::pending()));
            let (conn, owner) = crate::open("owner.test", 80, opts).unwrap();
            let (tx, rx) = mpsc::channel(64);
            let budget = Arc::new(crate::conn::delivery::Budget::new(usize::MAX));
            let events = Events::new(owner.shared.clone(), rx, budget.clone());
            Self { _conn: conn, _owner: owner, events, tx, budget }
        }

        fn stream(&self) -> StreamRef {
            self.events.shared.new_stream()
        }

        async fn send(&self, ev: Event) {
            self.deliver(Delivery::event(ev)).await;
        }

        async fn deliver(&self, d: Delivery) {
            let bytes = match &d {
                Delivery::One(ev) => crate::conn::delivery::event_bytes(ev),
                Delivery::WsOne(_, message) => message.len(),
                Delivery::Ws(_, messages) => messages.iter().map(Message::len).sum(),
            };
            assert!(self.budget.try_take(bytes));
            self.tx.send(d).await.unwrap();
        }
    }

    fn response(stream: StreamRef, status: u16, fin: bool) -> Event {
        Event::Response { stream, status: StatusCode::from_u16(status).unwrap(), headers: HeaderMap::new(), fin }
    }

    fn data(stream: StreamRef, bytes: &'static [u8], fin: bool) -> Event {
        Event::Data { stream, data: Bytes::from_static(bytes), fin }
    }

    fn text(stream: StreamRef, t: &'static str) -> Event {
        Event::Ws { stream, message: Message::text(t) }
    }

    /// What `next` hands out, as text, until nothing is ready.
    fn drain(events: &mut Events) -> Vec<String> {
        std::iter::from_fn(|| events.try_next()).map(|e| format!("{e:?}")).collect()
    }

    #[tokio::test]
    async fn an_await_takes_its_events_and_next_gets_the_others_in_order() {
        let mut r = Rig::new();
        let (a, b) = (r.stream(), r.stream());
        r.send(response(b, 200, false)).await;
        r.send(Event::Inform { stream: a, status: StatusCode::EARLY_HINTS, headers: HeaderMap::new() }).await;
        r.send(data(b, b"b1", false)).await;
        r.send(response(a, 204, true)).await;
        r.send(data(b, b"b2", true)).await;
        let got = r.events.await_response(&a, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.status, StatusCode::NO_CONTENT);
        assert!(got.fin);
        assert_eq!(got.informs.len(), 1, "the 103 before the answer");
        assert_eq!(got.informs[0].0, StatusCode::EARLY_HINTS);
        // b's events, set aside, come first and in order; a's are gone.
        let rest = drain(&mut r.events);
        assert_eq!(
            rest,
            [response(b, 200, false), data(b, b"b1", false), data(b, b"b2", true)].map(|e| format!("{e:?}"))
        );
    }

    #[tokio::test]
    async fn await_body_joins_the_chunks_and_leaves_no_trace() {
        let mut r = Rig::new();
        let (a, b) = (r.stream(), r.stream());
        r.send(response(a, 200, false)).await;
        r.send(data(a, b"hel", false)).await;
        r.send(text(b, "between")).await;
        r.send(data(a, b"lo", true)).await;
        let body = r.events.await_body(&a, Duration::from_secs(5)).await.unwrap();
        assert_eq!(&body.data[..], b"hello");
        assert!(body.trailers.is_none());
        assert_eq!(drain(&mut r.events), [format!("{:?}", text(b, "between"))]);
        // A head with fin is an empty body; trailers end one too.
        let (c, d) = (r.stream(), r.stream());
        r.send(response(c, 204, true)).await;
        r.send(data(d, b"x", false)).await;
        r.send(Event::Trailers { stream: d, headers: HeaderMap::new() }).await;
        assert!(r.events.await_body(&c, Duration::from_secs(5)).await.unwrap().data.is_empty());
        let body = r.events.await_body(&d, Duration::from_secs(5)).await.unwrap();
        assert_eq!((&body.data[..], body.trailers.is_some()), (&b"x"[..], true));
    }

    /// A timed-out await, or one dropped midway, loses nothing: the next await starts over
    /// from the events it had consumed.
    #[tokio::test(start_paused = true)]
    async fn a_timed_out_or_dropped_await_loses_nothing() {
        let mut r = Rig::new();
        let a = r.stream();
        r.send(response(a, 200, false)).await;
        r.send(data(a, b"hel", false)).await;
        let t = Duration::from_millis(200);
        let start = Instant::now();
        assert!(matches!(r.events.await_body(&a, t).await, Err(Error::Timeout(d)) if d == t));
        assert_eq!(Instant::now() - start, t);
        let dropped = tokio::time::timeout(Duration::from_millis(50), r.events.await_body(&a, Duration::MAX)).await;
        assert!(dropped.is_err());
        r.send(data(a, b"lo", true)).await;
        assert_eq!(r.events.await_response(&a, t).await.unwrap().status, StatusCode::OK);
        assert_eq!(&r.events.await_body(&a, t).await.unwrap().data[..], b"hello");
        assert!(r.events.try_next().is_none());
    }

    #[tokio::test]
    async fn a_batch_is_handed_out_one_message_at_a_time_in_order() {
        let mut r = Rig::new();
        let (ws, other) = (r.stream(), r.stream());
        let batch = |from: usize| (from..from + 3).map(|i| Message::text(format!("m{i}"))).collect::<Vec<_>>();
        r.deliver(Delivery::Ws(ws, batch(0))).await;
        r.send(response(other, 200, true)).await;
        r.deliver(Delivery::Ws(ws, batch(3))).await;
        // The fast path and the wait both take one message per call, in order; the response
        // of the other stream in the middle is set aside, not lost.
        for i in 0..6 {
            assert_eq!(r.events.await_ws(&ws, Duration::from_secs(5)).await.unwrap(), Message::text(format!("m{i}")));
        }
        assert_eq!(r.events.await_response(&other, Duration::from_secs(5)).await.unwrap().status, StatusCode::OK);
        // Through `next`, a batch is one `Event::Ws` per message.
        r.deliver(Delivery::Ws(ws, batch(6))).await;
        let expected: Vec<String> = (6..9)
            .map(|i| format!("{:?}", Event::Ws { stream: ws, message: Message::text(format!("m{i}")) }))
            .collect();
        assert_eq!(drain(&mut r.events), expected);
    }

    #[tokio::test]
    async fn too_many_unrelated_events_fail_the_await_and_stay_for_next() {
        let mut r = Rig::new();
        r.events.set_stash_limit(3);
        let (a, b) = (r.stream(), r.stream());
        for i in 0..5 {
            r.send(Event::Ws { stream: b, message: Message::text(format!("{i}")) }).await;
        }
        let err = r.events.await_response(&a, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, Error::Backlog(3)), "{err:?}");
        let rest = drain(&mut r.events);
        assert_eq!(rest.len(), 5, "{rest:?}");
        assert!(rest[0].contains("\"0\"") && rest[4].contains("\"4\""), "{rest:?}");
    }

    /// Once the event that ended a stream was consumed (by `next`), an await on the stream
    /// still fails at once with what ended it.
    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_is_remembered() {
        let mut r = Rig::new();
        let (a, b, c, d) = (r.stream(), r.stream(), r.stream(), r.stream());
        r.send(Event::Down {
            protocol: Protocol::Http1,
            reason: DownReason::Closed,
            possibly_processed: vec![a],
            unprocessed: vec![b],
        })
        .await;
        r.send(Event::StreamError { stream: c, error: StreamError::Refused }).await;
        r.send(Event::Ws { stream: d, message: Message::Close(None) }).await;
        assert_eq!(drain(&mut r.events).len(), 3);
        let start = Instant::now();
        let t = Duration::from_secs(5);
        assert!(matches!(r.events.await_response(&a, t).await, Err(Error::Down(DownReason::Closed))));
        assert!(matches!(r.events.await_body(&b, t).await, Err(Error::Down(DownReason::Closed))));
        assert!(matches!(r.events.await_body(&c, t).await, Err(Error::Stream(StreamError::Refused))));
        assert!(matches!(r.events.await_ws(&d, t).await, Err(Error::Stream(StreamError::WsClosed))));
        assert_eq!(Instant::now(), start, "each failed at once");
        // A stream of another connection is refused as such.
        let foreign = StreamRef { conn: a.conn + 1_000_000, id: a.id };
        assert!(matches!(r.events.await_response(&foreign, t).await, Err(Error::ForeignStream(s)) if s == foreign));
    }

    #[tokio::test]
    async fn a_down_that_does_not_list_the_stream_is_set_aside() {
        let mut r = Rig::new();
        let (a, b) = (r.stream(), r.stream());
        let down = Event::Down {
            protocol: Protocol::Http2,
            reason: DownReason::Closed,
            possibly_processed: vec![b],
            unprocessed: vec![],
        };
        r.send(down.clone()).await;
        r.send(Event::Up { protocol: Protocol::Http2 }).await;
        r.send(response(a, 200, true)).await;
        assert!(r.events.await_response(&a, Duration::from_secs(5)).await.is_ok());
        assert_eq!(
            drain(&mut r.events),
            [format!("{down:?}"), format!("{:?}", Event::Up { protocol: Protocol::Http2 })]
        );
    }

    #[tokio::test]
    async fn after_owner_changed_every_await_says_ownership_moved() {
        let mut r = Rig::new();
        let a = r.stream();
        r.send(Event::OwnerChanged).await;
        drop(r.tx);
        let t = Duration::from_secs(5);
        assert!(matches!(r.events.await_response(&a, t).await, Err(Error::OwnershipMoved)));
        assert!(matches!(r.events.await_up(t).await, Err(Error::OwnershipMoved)));
        // `next` still gets the notice, then the end.
        assert!(matches!(r.events.next().await, Some(Event::OwnerChanged)));
        assert!(r.events.next().await.is_none());
        assert!(matches!(r.events.await_ws(&a, t).await, Err(Error::OwnershipMoved)));
    }

    #[tokio::test]
    async fn after_exit_every_await_fails_with_the_reason() {
        let mut r = Rig::new();
        let a = r.stream();
        r.send(Event::Exit { reason: ExitReason::Shutdown }).await;
        drop(r.tx);
        let t = Duration::from_secs(5);
        assert!(matches!(r.events.await_body(&a, t).await, Err(Error::Exited(Some(ExitReason::Shutdown)))));
        assert!(matches!(r.events.await_up(t).await, Err(Error::Exited(Some(ExitReason::Shutdown)))));
        assert!(matches!(r.events.next().await, Some(Event::Exit { reason: ExitReason::Shutdown })));
        assert!(r.events.next().await.is_none());
    }

    /// A channel that closes without an `Exit` (not sent by the worker, but possible for a
    /// receiver whose sender vanished): the awaits fail, with the reason unknown.
    #[tokio::test]
    async fn a_closed_channel_fails_the_awaits_without_a_reason() {
        let mut r = Rig::new();
        let a = r.stream();
        drop(r.tx);
        let t = Duration::from_secs(5);
        assert!(matches!(r.events.await_response(&a, t).await, Err(Error::Exited(None))));
        assert!(r.events.next().await.is_none());
    }
}
