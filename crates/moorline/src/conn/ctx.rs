//! What a session driver gets from the worker: [`Ctx`] (the owner's channel and budget, the
//! command channel, the stream table), [`Setup`] (what every attempt needs), the [`Input`]s
//! it hears besides its socket, and the [`SessionEnd`] it returns.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::command::Command;
use super::delivery::{Budget, Charge, Delivery, MAX_BATCH, MAX_BATCH_BYTES, event_bytes};
use super::info::{State, StreamInfo, StreamState, StreamTable};
use super::owner::Events;
use super::shared::Shared;
use super::tap::TapCache;
use crate::dial::Target;
use crate::error::{DownReason, ExitReason, StreamError};
use crate::event::Event;
use crate::ids::{Protocol, StreamRef};
use crate::instrument::Emitter;
use crate::options::{ConnectOptions, Transport};
use crate::sync::lock;
use crate::wsio::Message;

/// What every attempt needs, immutable for the connection's life.
pub(crate) struct Setup {
    pub(crate) target: Target,
    pub(crate) opts: ConnectOptions,
    pub(crate) em: Emitter,
}

impl Setup {
    /// `host[:port]` as it goes in `Host` / `:authority` (the port is left out when default).
    pub(crate) fn authority(&self) -> String {
        let t = &self.target;
        let default = match t.transport {
            Transport::Tls => 443,
            Transport::Tcp => 80,
        };
        let host =
            if t.host.contains(':') && !t.host.starts_with('[') { format!("[{}]", t.host) } else { t.host.clone() };
        if t.port == default { host } else { format!("{host}:{}", t.port) }
    }

    /// `http` or `https`.
    pub(crate) fn scheme(&self) -> &'static str {
        match self.target.transport {
            Transport::Tls => "https",
            Transport::Tcp => "http",
        }
    }
}

/// The worker's state that outlives sessions.
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) setup: Arc<Setup>,
    cmd_rx: mpsc::Receiver<Command>,
    owner_rx: mpsc::Receiver<oneshot::Sender<Events>>,
    pub(crate) owner: mpsc::Sender<Delivery>,
    /// Resolves when the current owner drops its receiver. Kept between polls (rather
    /// than a fresh `owner.closed()` on each), as the worker polls it on every turn.
    owner_closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    pub(crate) shutting_down: bool,
    /// WebSocket messages held back by [`Ctx::emit_ws`], sent together by
    /// [`Ctx::flush_events`] (or before the next [`Ctx::emit`], so order holds).
    batch: Vec<Message>,
    /// The stream of the messages in `batch`.
    batch_stream: Option<StreamRef>,
    /// Payload bytes of the messages in `batch`.
    batch_bytes: usize,
    /// The current owner's byte budget (see [`Budget`]).
    budget: Arc<Budget>,
    /// Commands taken while waiting for room for the owner (so that queries behind them are
    /// answered): [`Ctx::input`] hands them out first, in order.
    held: VecDeque<Command>,
    /// The command channel ended (every handle dropped) while commands were held.
    handles_gone: bool,
    /// What `stream_info` answers; the sessions keep it up to date.
    pub(crate) streams: StreamTable,
    /// The owner's WebSocket tap, cached, and the events queued for the owner.
    tap: TapCache,
}

/// The most commands [`Ctx::deliver`] takes into `held` while it waits (as many as the
/// command channel holds): queries behind them are answered at once.
const HELD_MAX: usize = 64;

/// What the worker hears from outside, besides its socket.
pub(crate) enum Input {
    /// A command from a handle.
    Command(Command),
    /// Every handle was dropped.
    HandlesDropped,
    /// The owner dropped its receiver.
    OwnerGone,
}

/// How a protocol session ended.
pub(crate) enum SessionEnd {
    /// The connection was lost.
    Down { reason: DownReason, possibly_processed: Vec<StreamRef>, unprocessed: Vec<StreamRef> },
    /// `shutdown()` completed.
    Shutdown,
    /// The worker must exit (owner gone, handles dropped).
    Exit(ExitReason),
}

impl Ctx {
    /// The worker's state for a new connection, its first owner listening on `owner`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        setup: Arc<Setup>,
        cmd_rx: mpsc::Receiver<Command>,
        owner_rx: mpsc::Receiver<oneshot::Sender<Events>>,
        owner: mpsc::Sender<Delivery>,
    ) -> Self {
        let budget = lock(&shared.budget).clone();
        Ctx {
            shared,
            setup,
            cmd_rx,
            owner_rx,
            owner_closed: closed_future(&owner),
            owner,
            shutting_down: false,
            batch: Vec::new(),
            batch_stream: None,
            batch_bytes: 0,
            budget,
            held: VecDeque::new(),
            handles_gone: false,
            streams: StreamTable::default(),
            tap: TapCache::default(),
        }
    }

    /// Deliver an event to the owner, waiting while its buffer is full (backpressure): its
    /// channel (counted in deliveries) or its byte budget. While it waits, a `set_owner` is
    /// served at once (the event goes to the new owner) and `stream_info` queries are
    /// answered; other commands are held for [`Ctx::input`].
    pub(crate) async fn emit(&mut self, ev: Event) -> Result<(), ExitReason> {
        self.flush_events().await?;
        self.tap.queued += 1;
        let n = event_bytes(&ev);
        self.deliver(Delivery::event(ev), n, false).await
    }

    /// Like [`Ctx::emit`], for an event whose bytes an HTTP/2 stream task already took from
    /// the budget before it handed the event over (see [`Charge`]).
    /// A WebSocket message is offered to the owner's tap first (its bytes go back to the
    /// budget if the tap takes it).
    pub(crate) async fn emit_charged(&mut self, ev: Event, charge: Charge) -> Result<(), ExitReason> {
        self.flush_events().await?;
        let ev = match ev {
            Event::Ws { stream, message } => match self.tap.offer(&self.shared.tap, stream, message) {
                Ok(()) => return Ok(()),
                Err(message) => Event::Ws { stream, message },
            },
            ev => ev,
        };
        self.tap.queued += 1;
        let n = charge.bytes();
        let charged = charge.settle(&self.budget);
        self.deliver(Delivery::event(ev), n, charged).await
    }

    /// Messages of one WebSocket (at most [`MAX_BATCH`], [`MAX_BATCH_BYTES`] together, never
    /// empty) in one delivery, their bytes already taken by an HTTP/2 stream task. The
    /// owner's tap is offered them first, in order, until it hands one back.
    pub(crate) async fn emit_ws_batch_charged(
        &mut self,
        stream: StreamRef,
        mut messages: Vec<Message>,
        mut charge: Charge,
    ) -> Result<(), ExitReason> {
        self.flush_events().await?;
        if self.tap.ready(&self.shared.tap, stream) {
            let mut taken = 0;
            let mut left = messages.into_iter();
            messages = loop {
                let Some(message) = left.next() else { return Ok(()) }; // all taken: the charge goes back
                let n = message.len();
                match self.tap.offer(&self.shared.tap, stream, message) {
                    Ok(()) => taken += n,
                    Err(message) => break std::iter::once(message).chain(left).collect(),
                }
            };
            charge.release(taken);
        }
        self.tap.queued += messages.len() as u64;
        let n = charge.bytes();
        let charged = charge.settle(&self.budget);
        self.deliver(Delivery::Ws(stream, messages), n, charged).await
    }

    /// Like [`Ctx::emit`] of an [`Event::Ws`], but the message may wait (at most
    /// [`MAX_BATCH`] of them, [`MAX_BATCH_BYTES`] together) to leave with the next ones of
    /// the same stream in one delivery.
    /// The caller must call [`Ctx::flush_events`] before it waits for anything.
    pub(crate) async fn emit_ws(&mut self, stream: StreamRef, message: Message) -> Result<(), ExitReason> {
        // The owner's tap first, when the owner has handled everything queued before.
        let Err(message) = self.tap.offer(&self.shared.tap, stream, message) else { return Ok(()) };
        self.tap.queued += 1;
        let n = message.len();
        if self.batch_stream != Some(stream) || self.batch_bytes.saturating_add(n) > MAX_BATCH_BYTES {
            self.flush_events().await?;
            self.batch_stream = Some(stream);
        }
        self.batch.push(message);
        self.batch_bytes += n;
        if self.batch.len() >= MAX_BATCH || self.batch_bytes >= MAX_BATCH_BYTES {
            self.flush_events().await
        } else {
            Ok(())
        }
    }

    /// Sends the messages [`Ctx::emit_ws`] held back.
    pub(crate) async fn flush_events(&mut self) -> Result<(), ExitReason> {
        let Some(stream) = self.batch_stream else { return Ok(()) };
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = std::mem::take(&mut self.batch_bytes);
        let delivery = if self.batch.len() == 1 {
            match self.batch.pop() {
                Some(message) => Delivery::WsOne(stream, message),
                None => return Ok(()),
            }
        } else {
            Delivery::Ws(stream, std::mem::replace(&mut self.batch, Vec::with_capacity(MAX_BATCH)))
        };
        self.deliver(delivery, n, false).await
    }

    /// Queues `ev` (of `n` payload bytes; `charged`: already taken from the budget) for the
    /// owner once its budget and its channel have room.
    async fn deliver(&mut self, ev: Delivery, n: usize, mut charged: bool) -> Result<(), ExitReason> {
        // Fast path: no owner change pending, room in the budget and in the channel.
        let ev = match self.owner_rx.try_recv() {
            Ok(reply) => {
                self.change_owner(reply, &mut charged, n);
                ev
            }
            Err(_) => {
                charged = charged || self.budget.try_take(n);
                if charged {
                    match self.owner.try_send(ev) {
                        Ok(()) => return Ok(()),
                        Err(mpsc::error::TrySendError::Closed(_)) => return Err(ExitReason::OwnerGone),
                        Err(mpsc::error::TrySendError::Full(ev)) => ev,
                    }
                } else {
                    ev
                }
            }
        };
        self.wait_for_room(ev, n, charged).await
    }

    /// [`Ctx::deliver`]'s slow path: wait for room in the budget, then in the channel. The
    /// socket is not read meanwhile (the session is in the middle of this delivery), but
    /// `set_owner` is served and commands are taken: queries answered at once, the others
    /// held, in order, for [`Ctx::input`].
    async fn wait_for_room(&mut self, ev: Delivery, n: usize, mut charged: bool) -> Result<(), ExitReason> {
        enum Wake {
            Owner(oneshot::Sender<Events>),
            Charged,
            Command(Option<Command>),
        }
        let mut ev = Some(ev);
        loop {
            let take_commands = !self.handles_gone && self.held.len() < HELD_MAX;
            let wake = tokio::select! {
                biased;
                Some(reply) = self.owner_rx.recv() => Wake::Owner(reply),
                () = &mut self.owner_closed => {
                    self.owner_closed = Box::pin(std::future::pending());
                    return Err(ExitReason::OwnerGone);
                }
                () = self.budget.take(n), if !charged => Wake::Charged,
                permit = self.owner.reserve(), if charged => {
                    let permit = permit.map_err(|_| ExitReason::OwnerGone)?;
                    if let Some(ev) = ev.take() {
                        permit.send(ev);
                    }
                    return Ok(());
                }
                cmd = self.cmd_rx.recv(), if take_commands => Wake::Command(cmd),
            };
            match wake {
                Wake::Owner(reply) => self.change_owner(reply, &mut charged, n),
                Wake::Charged => charged = true,
                Wake::Command(Some(Command::StreamInfo(stream, reply))) => {
                    let _ = reply.send(self.stream_info(stream));
                }
                Wake::Command(Some(cmd)) => self.held.push_back(cmd),
                Wake::Command(None) => self.handles_gone = true,
            }
        }
    }

    /// `set_owner` in the middle of a delivery: what was taken from the old owner's budget is
    /// given back, and taken from the new one's.
    fn change_owner(&mut self, reply: oneshot::Sender<Events>, charged: &mut bool, n: usize) {
        if *charged && n > 0 {
            self.budget.give_back(n);
            *charged = false;
        }
        self.set_owner(reply);
    }

    /// What `stream_info` answers now: commands held back come after everything the table
    /// knows.
    fn stream_info(&self, stream: StreamRef) -> Option<StreamInfo> {
        for cmd in self.held.iter().rev() {
            match cmd {
                Command::Cancel(s) if *s == stream => return None,
                Command::Request(r) if r.stream == stream => {
                    return Some(self.queued_info(stream, r.method.clone(), &r.target));
                }
                Command::WsUpgrade(u) if u.stream == stream => {
                    return Some(self.queued_info(stream, self.upgrade_method(), &u.target));
                }
                _ => {}
            }
        }
        self.streams.get(stream)
    }

    fn queued_info(&self, stream: StreamRef, method: http::Method, target: &str) -> StreamInfo {
        StreamInfo {
            stream,
            method,
            target: target.to_owned(),
            protocol: self.expected_protocol(),
            state: StreamState::Queued,
        }
    }

    /// The protocol a request accepted now will likely go over: the current (or last)
    /// connection's, or the first offered.
    fn expected_protocol(&self) -> Protocol {
        if let Some(p) = lock(&self.shared.info).protocol {
            return p;
        }
        let offered = self.setup.opts.protocols_for(self.setup.target.transport);
        offered.first().copied().unwrap_or(Protocol::Http1)
    }

    /// A WebSocket upgrade is a `GET` over HTTP/1.1, an extended `CONNECT` over HTTP/2.
    fn upgrade_method(&self) -> http::Method {
        match self.expected_protocol() {
            Protocol::Http1 => http::Method::GET,
            Protocol::Http2 => http::Method::CONNECT,
        }
    }

    /// Notes a request or upgrade taken before the session runs (it answers `stream_info`
    /// as queued until the session takes it over).
    pub(crate) fn track_early(&mut self, cmd: &Command) {
        let protocol = self.expected_protocol();
        match cmd {
            Command::Request(r) => self.streams.queued(r.stream, &r.method, &r.target, protocol),
            Command::WsUpgrade(u) => {
                let method = self.upgrade_method();
                self.streams.queued(u.stream, &method, &u.target, protocol);
            }
            _ => {}
        }
    }

    /// The next command, serving `set_owner` requests and answering `stream_info` queries
    /// on the way. Commands held while the worker waited for room come first. Cancel-safe.
    pub(crate) async fn input(&mut self) -> Input {
        if let Some(cmd) = self.held.pop_front() {
            return Input::Command(cmd);
        }
        if self.handles_gone {
            return Input::HandlesDropped;
        }
        loop {
            let reply = tokio::select! {
                biased;
                Some(reply) = self.owner_rx.recv() => reply,
                c = self.cmd_rx.recv() => match c {
                    Some(Command::StreamInfo(stream, reply)) => {
                        let info = self.stream_info(stream);
                        let _ = reply.send(info);
                        continue;
                    }
                    Some(c) => return Input::Command(c),
                    None => return Input::HandlesDropped,
                },
                () = &mut self.owner_closed => {
                    // Resolved once: never poll the finished future again.
                    self.owner_closed = Box::pin(std::future::pending());
                    return Input::OwnerGone;
                }
            };
            self.set_owner(reply);
        }
    }

    /// The next command if one is waiting now (serving `set_owner` requests and answering
    /// queries on the way); `None` when there is none yet. Lets a driver take a burst of
    /// commands in one go.
    pub(crate) fn try_input(&mut self) -> Option<Input> {
        while let Ok(reply) = self.owner_rx.try_recv() {
            self.set_owner(reply);
        }
        if let Some(cmd) = self.held.pop_front() {
            return Some(Input::Command(cmd));
        }
        if self.handles_gone {
            return Some(Input::HandlesDropped);
        }
        loop {
            match self.cmd_rx.try_recv() {
                Ok(Command::StreamInfo(stream, reply)) => {
                    let _ = reply.send(self.stream_info(stream));
                }
                Ok(c) => return Some(Input::Command(c)),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => return Some(Input::HandlesDropped),
            }
        }
    }

    /// Handle the commands every phase treats alike; return the others.
    pub(crate) async fn pre(&mut self, cmd: Command) -> Result<Option<Command>, ExitReason> {
        match cmd {
            Command::Shutdown => {
                self.shutting_down = true;
                self.shared.set_state(State::ShuttingDown);
                Ok(None)
            }
            Command::Request(req) if self.shutting_down => {
                self.streams.remove(req.stream);
                self.emit(Event::StreamError { stream: req.stream, error: StreamError::ShuttingDown }).await?;
                Ok(None)
            }
            Command::WsUpgrade(up) if self.shutting_down => {
                self.streams.remove(up.stream);
                self.emit(Event::StreamError { stream: up.stream, error: StreamError::ShuttingDown }).await?;
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    fn set_owner(&mut self, reply: oneshot::Sender<Events>) {
        let (tx, rx) = mpsc::channel(self.setup.opts.event_buffer);
        // A fresh budget: what the old owner leaves unread must not stall the new one.
        let budget = Arc::new(Budget::new(self.setup.opts.event_buffer_bytes));
        let old_budget = std::mem::replace(&mut self.budget, budget.clone());
        *lock(&self.shared.budget) = budget.clone();
        old_budget.retire();
        let old = std::mem::replace(&mut self.owner, tx.clone());
        self.owner_closed = closed_future(&tx);
        *lock(&self.shared.owner) = Some(tx);
        // The old owner gets the notice after what was already queued for it, then its end.
        tokio::spawn(async move {
            let _ = old.send(Delivery::event(Event::OwnerChanged)).await;
        });
        // The tap was the old owner's; the new owner's `Events` counts from zero (messages
        // held in the batch go to it).
        self.tap.owner_changed(&self.shared.tap, self.batch.len() as u64);
        let _ = reply.send(Events::new(self.shared.clone(), rx, budget));
    }
}

/// A future that resolves when `owner`'s receiver is dropped.
fn closed_future(owner: &mpsc::Sender<Delivery>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let owner = owner.clone();
    Box::pin(async move { owner.closed().await })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Setup;
    use crate::dial::Target;
    use crate::instrument::Emitter;
    use crate::options::{ConnectOptions, Transport};

    fn setup(host: &str, port: u16, transport: Option<Transport>) -> Setup {
        let opts = match transport {
            Some(t) => ConnectOptions::default().transport(t),
            None => ConnectOptions::default(),
        };
        let target = Target::new(host, port, &opts).unwrap();
        Setup { target, opts, em: Emitter { connection: 1, hook: None } }
    }

    #[test]
    fn the_transports_default_port_is_left_out_of_the_authority() {
        assert_eq!(setup("example.com", 80, None).authority(), "example.com");
        // Port 443 means TLS unless told otherwise.
        assert_eq!(setup("example.com", 443, None).authority(), "example.com");
        assert_eq!(setup("example.com", 8080, None).authority(), "example.com:8080");
        assert_eq!(setup("example.com", 8443, Some(Transport::Tls)).authority(), "example.com:8443");
        // The default is the transport's, not the port's.
        assert_eq!(setup("example.com", 443, Some(Transport::Tcp)).authority(), "example.com:443");
        assert_eq!(setup("example.com", 80, Some(Transport::Tls)).authority(), "example.com:80");
    }

    #[test]
    fn an_ipv6_host_is_bracketed_once() {
        assert_eq!(setup("::1", 80, None).authority(), "[::1]");
        assert_eq!(setup("::1", 8080, None).authority(), "[::1]:8080");
        assert_eq!(setup("[::1]", 8080, None).authority(), "[::1]:8080");
        assert_eq!(setup("2001:db8::7", 443, Some(Transport::Tls)).authority(), "[2001:db8::7]");
        assert_eq!(setup("127.0.0.1", 9000, None).authority(), "127.0.0.1:9000");
    }

    #[test]
    fn the_scheme_follows_the_transport() {
        assert_eq!(setup("example.com", 80, None).scheme(), "http");
        assert_eq!(setup("example.com", 443, None).scheme(), "https");
        assert_eq!(setup("example.com", 443, Some(Transport::Tcp)).scheme(), "http");
        assert_eq!(setup("example.com", 8080, Some(Transport::Tls)).scheme(), "https");
    }
}
