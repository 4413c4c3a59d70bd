//! The connection worker: one task that owns the socket, connects, runs the protocol session,
//! reports `Up`/`Down`, reconnects per the retry policy and exits with a reason. A supervisor
//! task awaits it and turns a panic (or an abort by `close()`) into an `Exit` event, so the
//! owner is always told.

use std::convert::Infallible;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use futures_util::FutureExt;
use moorline_proto::retry::{Reconnector, RetryDecision};

use super::command::Command;
use super::ctx::{Ctx, Input, SessionEnd, Setup};
use super::delivery::Delivery;
use super::info::State;
use super::owner::Events;
use super::shared::Shared;
use super::{h1, h2};
use crate::dial::{Dialed, Target, dial};
use crate::error::{ConnectError, ExitReason, Failure, StreamError};
use crate::event::Event;
use crate::ids::Protocol;
use crate::instrument::{Emitter, Step};
use crate::options::ConnectOptions;
use crate::sync::lock;

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
    let ctx = Ctx::new(shared.clone(), setup, cmd_rx, owner_rx, owner);
    // The context on the heap: the task's future then holds a pointer, not two copies of it.
    let worker = rt.spawn(run(Box::new(ctx)));
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
        let _ = owner.send(Delivery::event(Event::Exit { reason })).await;
    }
    // Last, as a panicking hook must not keep the owner from hearing of the exit.
    em.emit(Step::Exit { reason: text });
}

async fn run(mut ctx: Box<Ctx>) -> ExitReason {
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

/// The connection's life: connect, serve, reconnect. Every await here that is not the
/// session itself is boxed (those run while connecting or once per connection), so the
/// worker's task, allocated once at this future's largest state, stays small for the whole
/// life of an idle connection (`-Zprint-type-sizes`: 1.8 KB with them inline).
async fn lifecycle(ctx: &mut Ctx) -> Result<Infallible, ExitReason> {
    let mut retry = Reconnector::new(ctx.setup.opts.retry.clone()).healthy_after(ctx.setup.opts.healthy_after);
    loop {
        ctx.shared.set_state(State::Connecting);
        // Connect while still taking commands: requests made now wait for the connection.
        let mut early: Vec<Command> = Vec::new();
        let attempt = {
            // Boxed: only for the attempt's duration, not in the task's size (see run_session).
            let mut fut = Box::pin(establish(ctx.setup.clone()));
            loop {
                tokio::select! {
                    r = &mut fut => break r,
                    input = ctx.input() => {
                        let cmd = match input {
                            Input::Command(cmd) => cmd,
                            Input::HandlesDropped => return Err(ExitReason::HandlesDropped),
                            Input::OwnerGone => return Err(ExitReason::OwnerGone),
                        };
                        if let Some(cmd) = Box::pin(ctx.pre(cmd)).await? {
                            ctx.track_early(&cmd);
                            early.push(cmd);
                        }
                        if ctx.shutting_down {
                            Box::pin(fail_early(ctx, early, StreamError::ShuttingDown)).await?;
                            ctx.streams.clear();
                            return Err(ExitReason::Shutdown);
                        }
                    }
                }
            }
        };
        let failure: Failure = match attempt {
            Err(e) => {
                Box::pin(fail_early(ctx, early, StreamError::NotConnected)).await?;
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
                Box::pin(ctx.emit(Event::Up { protocol: meta.protocol })).await?;
                let end = Box::pin(run_session(ctx, session, early, &mut retry)).await;
                // Its streams ended with it (`Down` lists them).
                ctx.streams.clear();
                match end {
                    SessionEnd::Shutdown => return Err(ExitReason::Shutdown),
                    SessionEnd::Exit(r) => return Err(r),
                    SessionEnd::Down { reason, possibly_processed, unprocessed } => {
                        ctx.setup.em.emit(Step::Down { reason: reason.to_string() });
                        Box::pin(ctx.emit(Event::Down {
                            protocol: meta.protocol,
                            reason: reason.clone(),
                            possibly_processed,
                            unprocessed,
                        }))
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
                ctx.shared.set_state(State::Reconnecting);
                ctx.setup.em.emit(Step::Retry { attempt: retry.failures(), delay });
                tracing::info!(connection = ctx.shared.id, %failure, ?delay, "reconnecting");
                Box::pin(backoff(ctx, delay)).await?;
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
    // Boxed: the session's future lives on the heap only while the session runs, so the
    // worker's task (allocated once, at its largest state's size) stays small; unboxed, it
    // was held twice in this function's state (9.5 KB per connection; rustc #62958).
    let mut run: std::pin::Pin<Box<dyn std::future::Future<Output = SessionEnd> + Send + '_>> = match session {
        Session::H1(d) => Box::pin(h1::run(ctx, d.io, early)),
        Session::H2(parts) => Box::pin(h2::run(ctx, *parts, early)),
    };
    if retry.failures() == 0 {
        return run.await;
    }
    let healthy_at = retry.healthy_at().map(tokio::time::Instant::from_std);
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
