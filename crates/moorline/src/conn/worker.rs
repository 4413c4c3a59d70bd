//! The connection worker: one task that owns the socket, connects, runs the protocol session,
//! reports `Up`/`Down`, reconnects per the retry policy and exits with a reason. A supervisor
//! task awaits it and turns a panic (or an abort by `close()`) into an `Exit` event, so the
//! owner is always told.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use futures_util::FutureExt;
use moorline_proto::retry::{Reconnector, RetryDecision};

use super::command::Command;
use super::delivery::{Budget, Charge, Delivery, MAX_BATCH, MAX_BATCH_BYTES, event_bytes};
use super::info::{State, StreamInfo, StreamState, StreamTable};
use super::owner::Events;
use super::shared::Shared;
use super::{h1, h2};
use crate::dial::{Dialed, Target, dial};
use crate::error::{ConnectError, DownReason, ExitReason, Failure, StreamError};
use crate::event::{Event, Protocol, StreamRef};
use crate::instrument::{Emitter, Step};
use crate::options::{ConnectOptions, Transport};
use crate::sync::lock;
use crate::ws::Message;

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
    /// Deliver an event to the owner, waiting while its buffer is full (backpressure): its
    /// channel (counted in deliveries) or its byte budget. While it waits, a `set_owner` is
    /// served at once (the event goes to the new owner) and `stream_info` queries are
    /// answered; other commands are held for [`Ctx::input`].
    pub(crate) async fn emit(&mut self, ev: Event) -> Result<(), ExitReason> {
        self.flush_events().await?;
        let n = event_bytes(&ev);
        self.deliver(Delivery::One(ev), n, false).await
    }

    /// Like [`Ctx::emit`], for an event whose bytes an HTTP/2 stream task already took from
    /// the budget before it handed the event over (see [`Charge`]).
    pub(crate) async fn emit_charged(&mut self, ev: Event, charge: Charge) -> Result<(), ExitReason> {
        self.flush_events().await?;
        let n = charge.bytes();
        let charged = charge.settle(&self.budget);
        self.deliver(Delivery::One(ev), n, charged).await
    }

    /// Like [`Ctx::emit`] of an [`Event::Ws`], but the message may wait (at most
    /// [`MAX_BATCH`] of them, [`MAX_BATCH_BYTES`] together) to leave with the next ones of
    /// the same stream in one delivery.
    /// The caller must call [`Ctx::flush_events`] before it waits for anything.
    pub(crate) async fn emit_ws(&mut self, stream: StreamRef, message: Message) -> Result<(), ExitReason> {
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
                Some(message) => Delivery::One(Event::Ws { stream, message }),
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
    fn track_early(&mut self, cmd: &Command) {
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
                set_state(&self.shared, State::ShuttingDown);
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
            let _ = old.send(Delivery::One(Event::OwnerChanged)).await;
        });
        let _ = reply.send(Events::new(self.shared.clone(), rx, budget));
    }
}

/// A future that resolves when `owner`'s receiver is dropped.
fn closed_future(owner: &mpsc::Sender<Delivery>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let owner = owner.clone();
    Box::pin(async move { owner.closed().await })
}

fn set_state(shared: &Shared, state: State) {
    lock(&shared.info).state = state;
}

/// Start the worker and its supervisor.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    shared: Arc<Shared>,
    target: Target,
    opts: ConnectOptions,
    cmd_rx: mpsc::Receiver<Command>,
    owner_rx: mpsc::Receiver<oneshot::Sender<Events>>,
    owner: mpsc::Sender<Delivery>,
) {
    let em = Emitter { connection: shared.id, hook: opts.hook.clone() };
    let setup = Arc::new(Setup { target, opts, em: em.clone() });
    let budget = lock(&shared.budget).clone();
    let ctx = Ctx {
        shared: shared.clone(),
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
    };
    let worker = rt.spawn(run(ctx));
    *lock(&shared.abort) = Some(worker.abort_handle());
    rt.spawn(supervise(worker, shared, em));
}

/// Wait for the worker; whatever way it ends, record why and tell the owner.
async fn supervise(worker: JoinHandle<ExitReason>, shared: Arc<Shared>, em: Emitter) {
    let reason = match worker.await {
        Ok(reason) => reason,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            tracing::error!(connection = shared.id, panic = %msg, "connection worker panicked");
            ExitReason::Panicked(msg)
        }
        Err(_) => ExitReason::Closed,
    };
    {
        let mut info = lock(&shared.info);
        info.state = State::Exited;
        info.exit = Some(reason.clone());
    }
    let owner = lock(&shared.owner).take();
    let text = reason.to_string();
    if let Some(owner) = owner {
        let _ = owner.send(Delivery::One(Event::Exit { reason })).await;
    }
    // Last, as a panicking hook must not keep the owner from hearing of the exit.
    em.emit(Step::Exit { reason: text });
}

async fn run(mut ctx: Ctx) -> ExitReason {
    match lifecycle(&mut ctx).await {
        Ok(never) => match never {},
        Err(reason) => reason,
    }
}

/// A connected session, ready to run.
enum Session {
    H1(Dialed),
    H2(Box<h2::H2Parts>),
}

async fn establish(setup: Arc<Setup>) -> Result<(Session, Dialed2), ConnectError> {
    let d = dial(&setup.target, &setup.opts, &setup.em).await?;
    let meta = Dialed2 { protocol: d.protocol, peer: d.peer, local: d.local };
    match d.protocol {
        Protocol::Http1 => Ok((Session::H1(d), meta)),
        Protocol::Http2 => {
            let parts =
                h2::handshake(d.io, &setup.opts.http2, setup.opts.connect_timeout, setup.target.server_name()).await?;
            Ok((Session::H2(Box::new(parts)), meta))
        }
    }
}

/// What `info()` learns from a successful attempt.
struct Dialed2 {
    protocol: Protocol,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
}

/// Now, as the retry bookkeeping takes it (tokio's clock, so a paused test clock applies).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn lifecycle(ctx: &mut Ctx) -> Result<Infallible, ExitReason> {
    let mut retry = Reconnector::new(ctx.setup.opts.retry.clone()).healthy_after(ctx.setup.opts.healthy_after);
    loop {
        set_state(&ctx.shared, State::Connecting);
        // Connect while still taking commands: requests made now wait for the connection.
        let mut early: Vec<Command> = Vec::new();
        let attempt = {
            let fut = establish(ctx.setup.clone());
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    input = ctx.input() => {
                        let cmd = match input {
                            Input::Command(cmd) => cmd,
                            Input::HandlesDropped => return Err(ExitReason::HandlesDropped),
                            Input::OwnerGone => return Err(ExitReason::OwnerGone),
                        };
                        if let Some(cmd) = ctx.pre(cmd).await? {
                            ctx.track_early(&cmd);
                            early.push(cmd);
                        }
                        if ctx.shutting_down {
                            fail_early(ctx, early, StreamError::ShuttingDown).await?;
                            ctx.streams.clear();
                            return Err(ExitReason::Shutdown);
                        }
                    }
                }
            }
        };
        let failure: Failure = match attempt {
            Err(e) => {
                fail_early(ctx, early, StreamError::NotConnected).await?;
                ctx.streams.clear();
                e.into()
            }
            Ok((session, meta)) => {
                // The failure count stays until this connection proves healthy.
                retry.on_up(now());
                // `mark_healthy` calls made while nothing was up are for no connection.
                let _ = ctx.shared.healthy.notified().now_or_never();
                {
                    let mut info = lock(&ctx.shared.info);
                    info.state = State::Up;
                    info.protocol = Some(meta.protocol);
                    info.peer = Some(meta.peer);
                    info.local = Some(meta.local);
                    info.connects += 1;
                    info.failures = retry.failures();
                    info.last_failure = None;
                }
                ctx.setup.em.emit(Step::Up { protocol: meta.protocol });
                ctx.emit(Event::Up { protocol: meta.protocol }).await?;
                let end = run_session(ctx, session, early, &mut retry).await;
                // Its streams ended with it (`Down` lists them).
                ctx.streams.clear();
                match end {
                    SessionEnd::Shutdown => return Err(ExitReason::Shutdown),
                    SessionEnd::Exit(r) => return Err(r),
                    SessionEnd::Down { reason, possibly_processed, unprocessed } => {
                        ctx.setup.em.emit(Step::Down { reason: reason.to_string() });
                        ctx.emit(Event::Down {
                            protocol: meta.protocol,
                            reason: reason.clone(),
                            possibly_processed,
                            unprocessed,
                        })
                        .await?;
                        if ctx.shutting_down {
                            return Err(ExitReason::Shutdown);
                        }
                        reason.into()
                    }
                }
            }
        };
        let decision = retry.on_failure(now(), &failure);
        {
            // What an `await_up` that times out reports (`Error::ConnectTimeout`).
            let mut info = lock(&ctx.shared.info);
            info.failures = retry.failures();
            info.last_failure = Some(failure.clone());
        }
        match decision {
            RetryDecision::GiveUp => {
                return Err(ExitReason::RetriesExhausted { attempts: retry.failures(), last: failure });
            }
            RetryDecision::RetryAfter(delay) => {
                set_state(&ctx.shared, State::Reconnecting);
                ctx.setup.em.emit(Step::Retry { attempt: retry.failures(), delay });
                tracing::info!(connection = ctx.shared.id, %failure, ?delay, "reconnecting");
                backoff(ctx, delay).await?;
            }
        }
    }
}

/// Run the session of a connection that is up. While it has failures to forgive, also
/// wait for it to prove healthy (up for `healthy_after`, or `mark_healthy`), and then reset
/// the count. With none (the usual case) the session runs alone.
async fn run_session(
    ctx: &mut Ctx,
    session: Session,
    early: Vec<Command>,
    retry: &mut Reconnector<Failure>,
) -> SessionEnd {
    let shared = ctx.shared.clone();
    let run = async move {
        match session {
            Session::H1(d) => h1::run(ctx, d.io, early).await,
            Session::H2(parts) => h2::run(ctx, *parts, early).await,
        }
    };
    if retry.failures() == 0 {
        return run.await;
    }
    let healthy_at = retry.healthy_at().map(tokio::time::Instant::from_std);
    tokio::pin!(run);
    // `None` (the time is beyond the clock's range): only `mark_healthy` resets the count.
    let by_time = async {
        match healthy_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        end = &mut run => return end,
        () = by_time => {
            retry.on_time(now());
        }
        () = shared.healthy.notified() => {
            retry.on_healthy();
        }
    }
    {
        let mut info = lock(&shared.info);
        info.failures = retry.failures();
    }
    tracing::debug!(connection = shared.id, "connection healthy: retry count reset");
    run.await
}

/// Wait before the next try; requests made meanwhile fail at once (nothing is connected).
async fn backoff(ctx: &mut Ctx, delay: std::time::Duration) -> Result<(), ExitReason> {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return Ok(()),
            input = ctx.input() => {
                let cmd = match input {
                    Input::Command(cmd) => cmd,
                    Input::HandlesDropped => return Err(ExitReason::HandlesDropped),
                    Input::OwnerGone => return Err(ExitReason::OwnerGone),
                };
                match ctx.pre(cmd).await? {
                    Some(Command::Request(req)) => {
                        ctx.emit(Event::StreamError { stream: req.stream, error: StreamError::NotConnected }).await?;
                    }
                    Some(Command::WsUpgrade(up)) => {
                        ctx.emit(Event::StreamError { stream: up.stream, error: StreamError::NotConnected }).await?;
                    }
                    Some(Command::WsSend(stream, ..)) => {
                        ctx.emit(Event::StreamError { stream, error: StreamError::NotConnected }).await?;
                    }
                    Some(Command::StreamInfo(_, reply)) => {
                        let _ = reply.send(None);
                    }
                    Some(Command::Cancel(_) | Command::Shutdown) | None => {}
                }
                if ctx.shutting_down {
                    return Err(ExitReason::Shutdown);
                }
            }
        }
    }
}

async fn fail_early(ctx: &mut Ctx, early: Vec<Command>, error: StreamError) -> Result<(), ExitReason> {
    for cmd in early {
        match cmd {
            Command::Request(req) => {
                ctx.emit(Event::StreamError { stream: req.stream, error: error.clone() }).await?;
            }
            Command::WsUpgrade(up) => {
                ctx.emit(Event::StreamError { stream: up.stream, error: error.clone() }).await?;
            }
            Command::WsSend(stream, ..) => {
                ctx.emit(Event::StreamError { stream, error: error.clone() }).await?;
            }
            Command::StreamInfo(_, reply) => {
                let _ = reply.send(None);
            }
            _ => {}
        }
    }
    Ok(())
}
