//! `moorline demo`: the trading client against the Deribit simulator, in-process on
//! loopback with TLS. It connects a [`DeribitClient`] with a simulator account's
//! credentials, subscribes to ticker, book and trades of two instruments, then breaks things
//! through the simulator's hooks (a clean close, a TCP reset, a silent half-open, a book gap,
//! token expiry, a lost order response) and shows, for each, the detection, the
//! reconnection, the re-authentication, the restoration and the reconciliation. It places and
//! cancels an order, and ends with a summary of the promises kept (exit 0 only if all held).
//!
//! What it checks is checked here, independently of the client's own bookkeeping: every
//! delivered book change must follow the last delivered `change_id` of its channel (a
//! delivered change that does not is a delta from a broken book); the subscriptions are
//! compared with what the client asked for, both as the client's `Restored` event says and as
//! the simulator lists them for the connection; every request is bounded by a deadline of
//! its own (a request past it is hung).
//!
//! `moorline demo http` is the connection layer's demo ([`http`]).

pub(crate) mod http;

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use moorline::TlsOptions;
use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::deribit::book::Kind;
use moorline_client::deribit::types::{OrderRequest, OrderState};
use moorline_client::deribit::{DeribitClient, DeribitError, DeribitEvent, DeribitEvents, OrderSource};
use moorline_client::dialect::Credentials;
use moorline_client::record::{RecordOptions, Recorder, RecorderStats};
use moorline_client::{ClientConfig, ClientError, ClientEvent, ClientState};
use moorline_testkit::deribit::{BookFault, DeribitSim, Fault, RequestMatch};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::out::{self, OutputError};

/// The simulator account the demo trades on.
const CLIENT_ID: &str = "moorline-demo";
/// The instruments it watches.
const INSTRUMENTS: [&str; 2] = ["BTC-PERPETUAL", "ETH-PERPETUAL"];
/// Milliseconds between market steps of the simulator (each step: a few quotes, cancels
/// or trades, and their ticker, book and trades notifications).
const MARKET_STEP_MS: u64 = 5;
/// How long one phase (a fault and its recovery) may take before it counts as failed.
const PHASE: Duration = Duration::from_secs(15);
/// How long market data flows between two faults.
const SETTLE: Duration = Duration::from_millis(300);
/// The client's request deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A request not answered (nor failed) this long after it was made is hung.
const HUNG: Duration = Duration::from_secs(10);

/// Options of `moorline demo`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DemoArgs {
    /// The connection layer's demo instead (`moorline demo http --help`).
    #[command(subcommand)]
    pub(crate) command: Option<DemoCommand>,
    /// Print only the summary, as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Keep streaming market data until this many seconds have passed since the start (the
    /// faults take about 10 s).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = crate::args::seconds)]
    pub(crate) duration: Option<Duration>,
    /// Record every frame in and out to this JSONL file (secrets redacted; `moorline replay
    /// FILE` prints it, `moorline serve mock --replay FILE` serves it).
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
}

/// The demos besides the default one.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DemoCommand {
    /// The connection layer at work against a built-in TLS test server: connect, stream,
    /// survive a connection reset (Down with its stream lists), reconnect, shut down gracefully.
    Http(http::HttpDemoArgs),
}

/// Everything that ends the demo with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// The simulator could not start.
    #[error("cannot start the Deribit simulator: {0}")]
    Sim(#[source] std::io::Error),
    /// The client could not be set up.
    #[error("client: {0}")]
    Client(#[from] ClientError),
    /// The recording file could not be opened.
    #[error(transparent)]
    Record(#[from] moorline_client::record::RecordError),
    /// The TLS settings were refused.
    #[error(transparent)]
    Tls(#[from] moorline::Error),
    /// The demo ran, and these promises did not hold.
    #[error("promises broken: {}", .0.join("; "))]
    Broken(Vec<String>),
    /// Stdout could not be written (or its reader went away).
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Where the demo writes: step lines and the status line on a terminal, a plain status line
/// per second otherwise, nothing but the summary with `--json`.
struct Screen {
    json: bool,
    tty: bool,
    colour: bool,
    /// The first write error (the status task's too): every later write returns it.
    failed: Mutex<Option<OutputError>>,
}

impl Screen {
    fn failed(&self) -> MutexGuard<'_, Option<OutputError>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, r: Result<(), OutputError>) -> Result<(), OutputError> {
        let mut failed = self.failed();
        if let Some(e) = failed.as_ref() {
            return Err(match e {
                OutputError::Closed => OutputError::Closed,
                OutputError::Write(e) => OutputError::Write(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
        if let Err(e) = r {
            let again = match &e {
                OutputError::Closed => OutputError::Closed,
                OutputError::Write(e) => OutputError::Write(std::io::Error::new(e.kind(), e.to_string())),
            };
            *failed = Some(e);
            return Err(again);
        }
        Ok(())
    }

    /// One step line: `tag` right-aligned, then the text.
    fn step(&self, tag: &str, text: impl Display) -> Result<(), OutputError> {
        if self.json {
            return self.check(Ok(()));
        }
        let clear = if self.tty { "\r\x1b[2K" } else { "" };
        let r = if self.colour {
            out::line(format_args!("{clear}\x1b[1;36m{tag:>10}\x1b[0m {text}"))
        } else {
            out::line(format_args!("{clear}{tag:>10} {text}"))
        };
        self.check(r)
    }

    /// The status: redrawn in place on a terminal, a plain line otherwise.
    fn status(&self, text: &str) -> Result<(), OutputError> {
        if self.json {
            return Ok(());
        }
        let r = if self.tty {
            let mut stdout = std::io::stdout().lock();
            write!(stdout, "\r\x1b[2K{text}").and_then(|()| stdout.flush()).map_err(OutputError::from)
        } else {
            out::line(format_args!("{:>10} {text}", "status"))
        };
        self.check(r)
    }

    fn plain(&self, text: impl Display) -> Result<(), OutputError> {
        let clear = if self.tty && !self.json { "\r\x1b[2K" } else { "" };
        let r = out::line(format_args!("{clear}{text}"));
        self.check(r)
    }
}

/// What the event pump counts.
#[derive(Default)]
struct Tally {
    /// Data messages delivered (book updates, tickers, trades).
    messages: u64,
    /// Book changes delivered that did not follow the last delivered `change_id` of their
    /// channel, or came before any snapshot: deltas from a broken book.
    broken_deliveries: u64,
    /// Last delivered `change_id` per book channel (cleared on a disconnect).
    last_change: HashMap<String, u64>,
    /// Order events per label.
    order_reports: HashMap<String, u64>,
}

/// What the pump forwards to the script: every event but the data, and book snapshots.
enum Note {
    Event(DeribitEvent),
    Snapshot(String),
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the façade's events: counts and checks the data, forwards the rest.
async fn pump(mut events: DeribitEvents, tally: Arc<Mutex<Tally>>, tx: mpsc::UnboundedSender<(Instant, Note)>) {
    while let Some(ev) = events.recv().await {
        let now = Instant::now();
        match ev {
            DeribitEvent::Book { channel, update } => {
                let snapshot = {
                    let mut t = lock(&tally);
                    t.messages += 1;
                    let last = t.last_change.get(&*channel).copied();
                    let follows = match update.kind {
                        Kind::Snapshot => true,
                        Kind::Change => last.is_some() && update.prev_change_id == last,
                    };
                    if !follows {
                        t.broken_deliveries += 1;
                    }
                    t.last_change.insert(channel.to_string(), update.change_id);
                    update.kind == Kind::Snapshot
                };
                if snapshot {
                    let _ = tx.send((now, Note::Snapshot(channel.to_string())));
                }
            }
            DeribitEvent::Notification { channel: Some(_), .. } => lock(&tally).messages += 1,
            DeribitEvent::Client(ClientEvent::Message { .. }) => lock(&tally).messages += 1,
            other => {
                {
                    let mut t = lock(&tally);
                    match &other {
                        DeribitEvent::Client(ClientEvent::Disconnected { .. }) => t.last_change.clear(),
                        DeribitEvent::Order(o) => *t.order_reports.entry(o.order.label.clone()).or_default() += 1,
                        _ => {}
                    }
                }
                let _ = tx.send((now, Note::Event(other)));
            }
        }
    }
}

/// What a phase saw.
#[derive(Default)]
struct Seen {
    disconnected: Option<(Instant, String)>,
    reconnected: Option<(Instant, String)>,
    restored: Option<(Instant, Vec<String>, Vec<String>)>,
    reconciled: Option<(Instant, usize, usize)>,
    snapshots: HashMap<String, Instant>,
    gap: Option<(Instant, String, String)>,
    orders: Vec<(Instant, String, String, OrderSource)>,
    problems: Vec<String>,
}

impl Seen {
    fn take(&mut self, at: Instant, note: Note) {
        match note {
            Note::Snapshot(channel) => {
                self.snapshots.entry(channel).or_insert(at);
            }
            Note::Event(ev) => match ev {
                DeribitEvent::Client(ClientEvent::Disconnected { reason }) => {
                    self.disconnected.get_or_insert((at, reason.to_string()));
                }
                DeribitEvent::Client(ClientEvent::Reconnected { attempt, protocol }) => {
                    self.reconnected = Some((at, format!("{attempt}, {protocol}")));
                }
                DeribitEvent::Client(ClientEvent::Connected { attempt, protocol }) => {
                    self.reconnected = Some((at, format!("{attempt}, {protocol}")));
                }
                DeribitEvent::Client(ClientEvent::Restored { confirmed, refused }) => {
                    let confirmed = confirmed.iter().map(|c| c.to_string()).collect();
                    let refused = refused.iter().map(|r| format!("{} ({})", r.channel, r.reason)).collect();
                    self.restored = Some((at, confirmed, refused));
                }
                DeribitEvent::Reconciled { open, resolved } => self.reconciled = Some((at, open, resolved)),
                DeribitEvent::BookGap { channel, expected, got, .. } => {
                    let opt = |v: Option<u64>| v.map_or("none".to_owned(), |v| v.to_string());
                    let what = format!("prev_change_id {} where {} was expected", opt(got), opt(expected));
                    self.gap.get_or_insert((at, channel.to_string(), what));
                }
                DeribitEvent::Order(o) => {
                    let state = format!("{:?}", o.order.order_state).to_lowercase();
                    self.orders.push((at, o.order.label.clone(), format!("{} {state}", o.order.order_id), o.source));
                }
                DeribitEvent::OrderNotPlaced { label } => self.problems.push(format!("order {label} not placed")),
                DeribitEvent::BookResyncFailed { channel, reason } => {
                    self.problems.push(format!("resync of {channel} failed: {reason}"));
                }
                DeribitEvent::ReconciliationFailed(e) => self.problems.push(format!("reconciliation failed: {e}")),
                DeribitEvent::Client(ClientEvent::Error(e)) => tracing::warn!(error = %e, "client error"),
                DeribitEvent::Client(ClientEvent::Closed { error: Some(e) }) => {
                    self.problems.push(format!("the client closed: {e}"));
                }
                _ => {}
            },
        }
    }
}

/// One fault's outcome, for the summary.
struct FaultResult {
    name: &'static str,
    detect: Option<Duration>,
    restore: Option<Duration>,
    ok: bool,
}

struct Demo {
    sim: DeribitSim,
    deribit: DeribitClient,
    notes: mpsc::UnboundedReceiver<(Instant, Note)>,
    screen: Arc<Screen>,
    tally: Arc<Mutex<Tally>>,
    /// Every channel the client holds (ours, and `platform_state` that the façade adds).
    expected: Vec<String>,
    results: Vec<FaultResult>,
    problems: Vec<String>,
    hung: u64,
    lost_subscriptions: u64,
    duplicated_subscriptions: u64,
    gaps_injected: u64,
    gaps_detected: u64,
    gaps_resynced: u64,
    lost_order_reports: Option<String>,
    placed_and_cancelled: bool,
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl Demo {
    /// Runs `f` with a deadline of [`HUNG`]; past it the request counts as hung.
    async fn call<T>(&mut self, what: &str, f: impl Future<Output = Result<T, DeribitError>>) -> Option<T> {
        match tokio::time::timeout(HUNG, f).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.problems.push(format!("{what} failed: {e}"));
                None
            }
            Err(_) => {
                self.hung += 1;
                self.problems.push(format!("{what} hung for {HUNG:?}"));
                None
            }
        }
    }

    /// Lets market data flow for a moment (the status line shows it), watching for the
    /// unexpected.
    async fn settle(&mut self) {
        let until = Instant::now() + SETTLE;
        let mut seen = Seen::default();
        while let Ok(Some((at, note))) = tokio::time::timeout_at(until, self.notes.recv()).await {
            seen.take(at, note);
        }
        if let Some((_, reason)) = seen.disconnected {
            self.problems.push(format!("disconnected when no fault was injected ({reason})"));
        }
        self.problems.extend(seen.problems);
    }

    /// Reads notes into `seen` until `done` says so or [`PHASE`] after `t0` passes.
    async fn collect(&mut self, t0: Instant, seen: &mut Seen, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = t0 + PHASE;
        while !done(seen) {
            match tokio::time::timeout_at(deadline, self.notes.recv()).await {
                Ok(Some((at, note))) => seen.take(at, note),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    fn books(&self) -> Vec<String> {
        INSTRUMENTS.iter().map(|i| format!("book.{i}.100ms")).collect()
    }

    /// Checks a restore against what the client asked for and what the venue lists.
    fn check_restore(&mut self, confirmed: &[String], refused: &[String]) -> String {
        let unique: HashSet<&String> = confirmed.iter().collect();
        let duplicated = (confirmed.len() - unique.len()) as u64;
        let lost_client: Vec<&String> = self.expected.iter().filter(|c| !unique.contains(c)).collect();
        // The venue's own view of our connection (the newest one of our account).
        let venue: Vec<String> = self
            .sim
            .connections_info()
            .into_iter()
            .filter(|c| c.client_id.as_deref() == Some(CLIENT_ID) && !c.channels.is_empty())
            .max_by_key(|c| c.id)
            .map(|c| c.channels)
            .unwrap_or_default();
        let lost_venue: Vec<&String> = self.expected.iter().filter(|c| !venue.contains(c)).collect();
        let lost = lost_client.len().max(lost_venue.len()) as u64 + refused.len() as u64;
        self.lost_subscriptions += lost;
        self.duplicated_subscriptions += duplicated;
        if lost > 0 || duplicated > 0 {
            self.problems.push(format!(
                "subscriptions: missing from the client's restore {lost_client:?}, from the venue {lost_venue:?}, refused {refused:?}, {duplicated} duplicated"
            ));
        }
        format!(
            "{} channels confirmed by the venue ({} listed on its side), {lost} lost, {duplicated} duplicated",
            confirmed.len(),
            venue.len()
        )
    }

    /// A fault that ends the connection: detection, reconnection, re-authentication,
    /// restoration (subscriptions and fresh book snapshots), reconciliation.
    async fn connection_fault(
        &mut self,
        name: &'static str,
        what: &str,
        apply: impl FnOnce(&DeribitSim),
    ) -> Result<(), DemoError> {
        self.screen.step("fault", what)?;
        let grants = self.deribit.auth_info().map_or(0, |a| a.grants);
        let t0 = Instant::now();
        apply(&self.sim);
        let mut seen = Seen::default();
        let books = self.books();
        let complete = self
            .collect(t0, &mut seen, |s| {
                s.restored.is_some()
                    && s.reconciled.is_some()
                    && books.iter().all(|b| {
                        s.snapshots.get(b).is_some_and(|at| s.reconnected.as_ref().is_some_and(|r| *at >= r.0))
                    })
            })
            .await;
        self.finish_connection_phase(name, t0, grants, seen, complete, None)
    }

    fn finish_connection_phase(
        &mut self,
        name: &'static str,
        t0: Instant,
        grants: u64,
        mut seen: Seen,
        complete: bool,
        detected: Option<(Instant, String)>,
    ) -> Result<(), DemoError> {
        let detected = detected.or_else(|| seen.disconnected.clone());
        match &detected {
            Some((at, reason)) => {
                self.screen.step("detect", format_args!("{reason} ({} after the fault)", ms(*at - t0)))?
            }
            None => self.screen.step("detect", "NOT DETECTED")?,
        }
        if let (Some(d), Some(at)) = (&seen.disconnected, detected.as_ref().map(|d| d.0))
            && d.0 > at
        {
            self.screen.step("down", format_args!("{} ({} after the fault)", d.1, ms(d.0 - t0)))?;
        }
        let reconnected = seen.reconnected.clone();
        match &reconnected {
            Some((at, how)) => self
                .screen
                .step("reconnect", format_args!("session up again ({how}), {} after the fault", ms(*at - t0)))?,
            None => self.screen.step("reconnect", "DID NOT RECONNECT")?,
        }
        let auth = self.deribit.auth_info();
        let reauthenticated = auth.as_ref().is_some_and(|a| a.grants > grants);
        match &auth {
            Some(a) if reauthenticated => self.screen.step(
                "reauth",
                format_args!("authenticated again before the restore (grant {}, scope {:?})", a.grants, a.scope),
            )?,
            _ => self.screen.step("reauth", "NOT AUTHENTICATED AGAIN")?,
        }
        let mut restored_ok = false;
        if let Some((_, confirmed, refused)) = seen.restored.take() {
            let line = self.check_restore(&confirmed, &refused);
            self.screen.step("restore", line)?;
            restored_ok = true;
        } else {
            self.screen.step("restore", "NO RESTORE")?;
        }
        let books = self.books();
        let last_snapshot = books.iter().filter_map(|b| seen.snapshots.get(b)).max().copied();
        if let Some(at) = last_snapshot {
            self.screen
                .step("books", format_args!("fresh snapshots of both books, {} after the fault", ms(at - t0)))?;
        }
        match seen.reconciled {
            Some((at, open, resolved)) => self.screen.step(
                "reconcile",
                format_args!(
                    "{open} open orders read back, {resolved} unknown outcomes resolved ({} after the fault)",
                    ms(at - t0)
                ),
            )?,
            None => self.screen.step("reconcile", "NO RECONCILIATION")?,
        }
        for p in seen.problems.drain(..) {
            self.problems.push(format!("{name}: {p}"));
        }
        let ok = complete && detected.is_some() && reconnected.is_some() && reauthenticated && restored_ok;
        if !ok {
            self.problems.push(format!("{name}: not detected and recovered within {PHASE:?}"));
        }
        let restore = reconnected.map(|r| r.0).max(last_snapshot).map(|at| at - t0);
        self.results.push(FaultResult { name, detect: detected.map(|d| d.0 - t0), restore, ok });
        Ok(())
    }

    async fn book_gap(&mut self, instrument: &str, fault: BookFault) -> Result<(), DemoError> {
        let channel = format!("book.{instrument}.100ms");
        self.screen.step(
            "fault",
            format_args!("the venue will {} the next change of {channel} (a gap)", format!("{fault:?}").to_lowercase()),
        )?;
        let withheld_before = lock(&self.tally).broken_deliveries;
        let t0 = Instant::now();
        self.sim.book_fault(instrument, fault);
        self.gaps_injected += 1;
        let mut seen = Seen::default();
        let ch = channel.clone();
        let complete = self
            .collect(t0, &mut seen, |s| {
                s.gap.as_ref().is_some_and(|g| s.snapshots.get(&ch).is_some_and(|at| *at >= g.0))
            })
            .await;
        let detect = seen.gap.as_ref().map(|g| g.0 - t0);
        match &seen.gap {
            Some((at, ch, what)) => {
                self.gaps_detected += 1;
                self.screen.step("detect", format_args!("gap on {ch}: {what} ({} after the fault)", ms(*at - t0)))?;
            }
            None => self.screen.step("detect", "GAP NOT DETECTED")?,
        }
        let restore =
            seen.snapshots.get(&channel).filter(|at| seen.gap.as_ref().is_some_and(|g| **at >= g.0)).map(|at| *at - t0);
        match restore {
            Some(d) => {
                self.gaps_resynced += 1;
                self.screen.step(
                    "resync",
                    format_args!("{channel} unsubscribed and subscribed again: new snapshot {} after the fault", ms(d)),
                )?;
            }
            None => self.screen.step("resync", "NOT RESYNCED")?,
        }
        let broken = lock(&self.tally).broken_deliveries - withheld_before;
        self.screen.step("integrity", format_args!("{broken} changes delivered from the broken book"))?;
        for p in seen.problems.drain(..) {
            self.problems.push(format!("book gap: {p}"));
        }
        let ok = complete && broken == 0;
        self.results.push(FaultResult { name: "book gap", detect, restore, ok });
        Ok(())
    }

    async fn token_expiry(&mut self) -> Result<(), DemoError> {
        self.screen.step("fault", "the venue expires the access token now")?;
        let before = self.deribit.auth_info();
        let t0 = Instant::now();
        self.sim.expire_tokens(Some(CLIENT_ID));
        let plain =
            tokio::time::timeout(HUNG, self.deribit.client().request("private/get_open_orders", json!({}))).await;
        let detect = match plain {
            Ok(Err(ClientError::Rpc { error, .. })) => {
                self.screen.step(
                    "detect",
                    format_args!(
                        "private/get_open_orders refused: {} {} ({} after the fault)",
                        error.code,
                        error.message,
                        ms(t0.elapsed())
                    ),
                )?;
                Some(t0.elapsed())
            }
            Ok(Ok(_)) => {
                self.screen.step("detect", "the token was renewed before the first private call")?;
                Some(t0.elapsed())
            }
            Ok(Err(e)) => {
                self.problems.push(format!("token expiry: {e}"));
                None
            }
            Err(_) => {
                self.hung += 1;
                None
            }
        };
        let deribit = self.deribit.clone();
        let orders = self.call("private/get_open_orders after the expiry", deribit.get_open_orders()).await;
        let restore = orders.as_ref().map(|_| t0.elapsed());
        let after = self.deribit.auth_info();
        let renewed = match (&before, &after) {
            (Some(b), Some(a)) => a.grants > b.grants,
            _ => false,
        };
        if let Some(a) = &after {
            self.screen.step(
                "reauth",
                format_args!("renewed with the refresh token (grants {}, refreshes {})", a.grants, a.refreshes),
            )?;
        }
        if let Some(d) = restore {
            self.screen.step(
                "restore",
                format_args!("private calls work again, {} after the fault; the connection stayed up", ms(d)),
            )?;
        }
        // The session must not have dropped for it.
        let mut seen = Seen::default();
        while let Ok((at, note)) = self.notes.try_recv() {
            seen.take(at, note);
        }
        let stayed_up = seen.disconnected.is_none();
        if !stayed_up {
            self.problems.push("token expiry: the connection dropped".into());
        }
        let ok = detect.is_some() && restore.is_some() && renewed && stayed_up;
        if !ok {
            self.problems.push("token expiry: not recovered".into());
        }
        self.results.push(FaultResult { name: "token expiry", detect, restore, ok });
        Ok(())
    }

    /// A resting buy under the market, on the tick.
    async fn resting_bid(&mut self) -> Option<f64> {
        let deribit = self.deribit.clone();
        let ticker = self.call("public/ticker", deribit.ticker(INSTRUMENTS[0])).await?;
        let tick = 0.5;
        Some(((ticker.mark_price * 0.97) / tick).round() * tick)
    }

    async fn lost_order_response(&mut self) -> Result<(), DemoError> {
        let Some(price) = self.resting_bid().await else {
            self.results.push(FaultResult { name: "lost order response", detect: None, restore: None, ok: false });
            return Ok(());
        };
        self.screen
            .step("fault", "the venue will process the next private/buy and reset the connection before answering")?;
        self.sim.cut_before_response(RequestMatch::method("private/buy"), Fault::Reset);
        let grants = self.deribit.auth_info().map_or(0, |a| a.grants);
        let t0 = Instant::now();
        let deribit = self.deribit.clone();
        let answer = tokio::time::timeout(HUNG, deribit.buy(OrderRequest::limit(INSTRUMENTS[0], 10.0, price))).await;
        let (label, detected) = match answer {
            Ok(Err(DeribitError::OutcomeUnknown { label, source })) => {
                let what = format!("buy {} at {price}: outcome unknown ({source}), label {label}", INSTRUMENTS[0]);
                (Some(label), Some((Instant::now(), what)))
            }
            Ok(Ok(r)) => {
                self.problems.push(format!("lost order response: the answer arrived ({})", r.order.order_id));
                (None, None)
            }
            Ok(Err(e)) => {
                self.problems.push(format!("lost order response: {e}"));
                (None, None)
            }
            Err(_) => {
                self.hung += 1;
                (None, None)
            }
        };
        let mut seen = Seen::default();
        let books = self.books();
        let l = label.clone();
        let complete = self
            .collect(t0, &mut seen, |s| {
                s.restored.is_some()
                    && s.reconciled.is_some()
                    && l.as_ref().is_some_and(|l| s.orders.iter().any(|o| &o.1 == l))
                    && books.iter().all(|b| {
                        s.snapshots.get(b).is_some_and(|at| s.reconnected.as_ref().is_some_and(|r| *at >= r.0))
                    })
            })
            .await;
        let found = label.as_ref().and_then(|l| seen.orders.iter().find(|o| &o.1 == l).cloned());
        self.finish_connection_phase("lost order response", t0, grants, seen, complete, detected)?;
        match (&label, found) {
            (Some(label), Some((at, _, order, source))) => {
                self.screen.step(
                    "reconcile",
                    format_args!(
                        "found by its label {label}: order {order} ({source:?}), {} after the fault",
                        ms(at - t0)
                    ),
                )?;
                self.lost_order_reports = Some(label.clone());
                let id = order.split(' ').next().unwrap_or_default().to_owned();
                let deribit = self.deribit.clone();
                if let Some(o) = self.call("private/cancel", deribit.cancel(&id)).await {
                    self.screen.step("cancel", format_args!("order {} {:?}", o.order_id, o.order_state))?;
                }
            }
            _ => {
                self.problems.push("lost order response: the order was not found by its label".into());
                if let Some(r) = self.results.last_mut() {
                    r.ok = false;
                }
            }
        }
        Ok(())
    }

    async fn place_and_cancel(&mut self) -> Result<(), DemoError> {
        let Some(price) = self.resting_bid().await else { return Ok(()) };
        let deribit = self.deribit.clone();
        let Some(placed) =
            self.call("private/buy", deribit.buy(OrderRequest::limit(INSTRUMENTS[0], 10.0, price))).await
        else {
            return Ok(());
        };
        let o = &placed.order;
        self.screen.step(
            "order",
            format_args!(
                "buy 10 {} at {price}: {} {:?} (label {})",
                INSTRUMENTS[0], o.order_id, o.order_state, o.label
            ),
        )?;
        let id = o.order_id.clone();
        let deribit = self.deribit.clone();
        if let Some(c) = self.call("private/cancel", deribit.cancel(&id)).await {
            self.screen.step("cancel", format_args!("{} {:?}", c.order_id, c.order_state))?;
            self.placed_and_cancelled =
                placed.order.order_state == OrderState::Open && c.order_state == OrderState::Cancelled;
        }
        Ok(())
    }
}

fn status_line(deribit: &DeribitClient, tally: &Mutex<Tally>, last: &mut (Instant, u64)) -> String {
    let stats = deribit.client().stats();
    let messages = lock(tally).messages;
    let now = Instant::now();
    let rate = (messages - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
    *last = (now, messages);
    let state = match deribit.client().state() {
        ClientState::Connecting => "connecting",
        ClientState::Connected => "connected",
        ClientState::Reconnecting => "reconnecting",
        ClientState::Closed => "closed",
    };
    let q = |d: Option<Duration>| d.map_or("-".to_owned(), ms);
    format!(
        "{messages} messages ({rate:.0}/s) | requests p50 {} p99 {} | {state} | {} reconnects",
        q(stats.requests.p50),
        q(stats.requests.p99),
        stats.reconnects
    )
}

fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied()
}

/// Runs the demo; `tty` says whether stdout is a terminal, `colour` whether it takes colour.
pub(crate) async fn run(args: DemoArgs, tty: bool, colour: bool) -> Result<(), DemoError> {
    let started = Instant::now();
    let screen = Arc::new(Screen { json: args.json, tty, colour: colour && !args.json, failed: Mutex::new(None) });
    let secret = format!(
        "demo-{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    let sim = DeribitSim::builder()
        .tls(true)
        .seed(19)
        .market_interval(Duration::from_millis(MARKET_STEP_MS))
        .account(CLIENT_ID, secret.clone())
        .start()
        .await
        .map_err(DemoError::Sim)?;
    screen.step(
        "venue",
        format_args!("Deribit simulator on {} (TLS, CA made at start), account {CLIENT_ID}", sim.url()),
    )?;

    let mut tls = TlsOptions::default();
    if let Some(pem) = sim.ca_pem() {
        tls = tls.add_ca_pem(pem)?;
    }
    let recorder = match &args.record {
        Some(path) => Some(Arc::new(Recorder::open(path, RecordOptions::default())?)),
        None => None,
    };
    let mut builder = ClientConfig::builder()
        .tls(tls)
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(2),
        })
        // Market data flows every few ms: 1.5 s without any frame is a dead peer (a ping
        // goes out after 0.5 s of silence). Deribit's own heartbeat: 10 s, its minimum.
        .dead_after(Some(Duration::from_millis(500)), Duration::from_millis(1500))
        .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
        .request_timeout(REQUEST_TIMEOUT);
    if let Some(r) = &recorder {
        builder = builder.record(r.clone());
    }
    let config = builder.build().map_err(ClientError::from)?;
    let credentials = Credentials::new(CLIENT_ID, secret);
    let t0 = Instant::now();
    let (deribit, events) = DeribitClient::connect(&sim.url(), config, Some(credentials))?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (tx, notes) = mpsc::unbounded_channel();
    let pump = tokio::spawn(pump(events, tally.clone(), tx));

    let status = {
        let (screen, deribit, tally) = (screen.clone(), deribit.clone(), tally.clone());
        tokio::spawn(async move {
            let every = if screen.tty { Duration::from_millis(250) } else { Duration::from_secs(1) };
            let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
            let mut last = (Instant::now(), 0);
            loop {
                ticker.tick().await;
                if screen.status(&status_line(&deribit, &tally, &mut last)).is_err() {
                    return;
                }
            }
        })
    };

    let mut channels: Vec<String> = Vec::new();
    for i in INSTRUMENTS {
        channels.extend([format!("ticker.{i}.100ms"), format!("book.{i}.100ms"), format!("trades.{i}.100ms")]);
    }
    let mut demo = Demo {
        sim,
        deribit: deribit.clone(),
        notes,
        screen: screen.clone(),
        tally: tally.clone(),
        expected: channels.iter().cloned().chain(["platform_state".to_owned()]).collect(),
        results: Vec::new(),
        problems: Vec::new(),
        hung: 0,
        lost_subscriptions: 0,
        duplicated_subscriptions: 0,
        gaps_injected: 0,
        gaps_detected: 0,
        gaps_resynced: 0,
        lost_order_reports: None,
        placed_and_cancelled: false,
    };

    // Connected, authenticated, reconciled.
    let mut seen = Seen::default();
    let up = demo.collect(t0, &mut seen, |s| s.reconnected.is_some() && s.reconciled.is_some()).await;
    if let (true, Some((at, how))) = (up, &seen.reconnected) {
        let auth = demo.deribit.auth_info();
        screen.step("connect", format_args!("session up ({how}) in {}", ms(*at - t0)))?;
        if let Some(a) = auth {
            screen.step(
                "auth",
                format_args!("authenticated by client credentials (scope {:?}, token for {} s)", a.scope, a.expires_in),
            )?;
        }
    } else {
        demo.problems.push("the first connection did not come up".into());
    }
    let refs: Vec<&str> = channels.iter().map(String::as_str).collect();
    let deribit2 = deribit.clone();
    if let Some(out) = demo.call("subscribe", deribit2.subscribe(&refs)).await {
        screen.step(
            "subscribe",
            format_args!("{} channels confirmed by the venue: {}", out.confirmed.len(), out.confirmed.join(", ")),
        )?;
        if !out.refused.is_empty() || out.confirmed.len() != channels.len() {
            demo.problems.push(format!("subscribe: refused {:?}", out.refused));
        }
    }
    let books = demo.books();
    let mut seen = Seen::default();
    let now = Instant::now();
    if demo.collect(now, &mut seen, |s| books.iter().all(|b| s.snapshots.contains_key(b))).await {
        screen.step("books", "snapshots of both books; changes follow by prev_change_id")?;
    }

    demo.settle().await;
    demo.connection_fault("clean close", "the venue closes the connection cleanly (close frame 1000)", |sim| {
        sim.fault_all(Fault::Close { code: 1000, reason: "demo: clean close".into() });
    })
    .await?;
    demo.settle().await;
    demo.connection_fault("tcp reset", "the venue resets the TCP connection (RST)", |sim| {
        sim.fault_all(Fault::Reset);
    })
    .await?;
    demo.settle().await;
    demo.connection_fault(
        "half-open",
        "the connection goes silently half-open (no FIN, no RST, nothing more arrives)",
        |sim| {
            sim.fault_all(Fault::HalfOpen);
        },
    )
    .await?;
    demo.settle().await;
    demo.book_gap(INSTRUMENTS[0], BookFault::Withhold).await?;
    demo.settle().await;
    demo.token_expiry().await?;
    demo.settle().await;
    demo.lost_order_response().await?;
    demo.settle().await;
    demo.place_and_cancel().await?;

    if let Some(total) = args.duration {
        let until = started + total;
        if Instant::now() < until {
            screen.step("stream", format_args!("market data until {} s have passed", total.as_secs_f64()))?;
            // Keep reading (the pump counts), watching for the unexpected.
            let mut seen = Seen::default();
            while let Ok(Some((at, note))) = tokio::time::timeout_at(until, demo.notes.recv()).await {
                seen.take(at, note);
            }
            if let Some((_, reason)) = seen.disconnected {
                demo.problems.push(format!("streaming: disconnected unexpectedly ({reason})"));
            }
            demo.problems.extend(seen.problems);
        }
    }

    // The end: nothing pending, then close.
    let stats = deribit.client().stats();
    if stats.pending > 0 {
        demo.hung += stats.pending as u64;
        demo.problems.push(format!("{} requests still pending at the end", stats.pending));
    }
    status.abort();
    let _ = status.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), deribit.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
    drop(deribit);
    let elapsed = started.elapsed();
    summary(demo, stats, elapsed, recorder, args.record.as_ref())
}

fn summary(
    demo: Demo,
    stats: moorline_client::Stats,
    elapsed: Duration,
    recorder: Option<Arc<Recorder>>,
    path: Option<&PathBuf>,
) -> Result<(), DemoError> {
    // The last handle on the client goes: its recorder (if nothing else holds it) is
    // finished, so the counts below are the file's.
    drop(demo.deribit);
    let recorded: Option<RecorderStats> = recorder
        .map(|r| match Arc::try_unwrap(r) {
            Ok(r) => r.finish(),
            Err(shared) => Ok(shared.stats()),
        })
        .transpose()?;
    let t = lock(&demo.tally);
    let mut broken: Vec<String> = Vec::new();
    let failed: Vec<&str> = demo.results.iter().filter(|r| !r.ok).map(|r| r.name).collect();
    if !failed.is_empty() || demo.results.len() < 6 {
        broken.push(format!("every fault detected and recovered (failed: {failed:?})"));
    }
    if demo.gaps_detected != demo.gaps_injected || demo.gaps_resynced != demo.gaps_injected {
        broken.push(format!(
            "book gaps detected and resynced ({} injected, {} detected, {} resynced)",
            demo.gaps_injected, demo.gaps_detected, demo.gaps_resynced
        ));
    }
    if t.broken_deliveries > 0 {
        broken.push(format!("no delta from a broken book ({} delivered)", t.broken_deliveries));
    }
    if demo.lost_subscriptions > 0 || demo.duplicated_subscriptions > 0 {
        broken.push(format!(
            "no subscription lost or duplicated ({} lost, {} duplicated)",
            demo.lost_subscriptions, demo.duplicated_subscriptions
        ));
    }
    if demo.hung > 0 {
        broken.push(format!("no request hung ({} hung)", demo.hung));
    }
    let reports = demo.lost_order_reports.as_ref().and_then(|l| t.order_reports.get(l)).copied().unwrap_or(0);
    if reports != 1 {
        broken.push(format!("the lost order reported exactly once (reported {reports} times)"));
    }
    if !demo.placed_and_cancelled {
        broken.push("an order placed and cancelled".into());
    }
    let detects: Vec<Duration> = demo.results.iter().filter_map(|r| r.detect).collect();
    let restores: Vec<Duration> = demo.results.iter().filter_map(|r| r.restore).collect();
    let q = |v: &[Duration], x: f64| quantile(v, x).map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
    let record = recorded
        .map(|s| json!({ "path": path.map(|p| p.display().to_string()), "written": s.written, "dropped": s.dropped }));
    let ok = broken.is_empty();
    let object = json!({
        "ok": ok,
        "broken_promises": broken,
        "duration_ms": elapsed.as_millis() as u64,
        "messages": t.messages,
        "book_gaps": { "injected": demo.gaps_injected, "detected": demo.gaps_detected, "resynced": demo.gaps_resynced },
        "deltas_from_broken_books": t.broken_deliveries,
        "subscriptions": { "lost": demo.lost_subscriptions, "duplicated": demo.duplicated_subscriptions },
        "hung_requests": demo.hung,
        "reconnects": stats.reconnects,
        "detect_ms": { "p50": q(&detects, 0.5), "max": q(&detects, 1.0) },
        "restore_ms": { "p50": q(&restores, 0.5), "max": q(&restores, 1.0) },
        "latency_ms": {
            "p50": stats.requests.p50.map(|d| d.as_secs_f64() * 1e3),
            "p99": stats.requests.p99.map(|d| d.as_secs_f64() * 1e3),
            "requests": stats.requests.count,
        },
        "faults": demo.results.iter().map(|r| json!({
            "fault": r.name,
            "ok": r.ok,
            "detect_ms": r.detect.map(|d| d.as_secs_f64() * 1e3),
            "restore_ms": r.restore.map(|d| d.as_secs_f64() * 1e3),
        })).collect::<Vec<Value>>(),
        "problems": demo.problems,
        "record": record,
    });
    let screen = &demo.screen;
    if screen.json {
        screen.plain(&object)?;
    } else {
        let pm = |v: &[Duration]| match (quantile(v, 0.5), quantile(v, 1.0)) {
            (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
            _ => "-".into(),
        };
        let opt = |d: Option<Duration>| d.map_or("-".to_owned(), ms);
        screen.plain("")?;
        screen.plain(format_args!(
            "{:<34} {}",
            "summary",
            if ok { "every promise held" } else { "PROMISES BROKEN" }
        ))?;
        for (k, v) in [
            ("messages delivered", t.messages.to_string()),
            (
                "book gaps detected / resynced",
                format!("{} / {} (of {} injected)", demo.gaps_detected, demo.gaps_resynced, demo.gaps_injected),
            ),
            ("deltas from a broken book", t.broken_deliveries.to_string()),
            (
                "subscriptions lost / duplicated",
                format!("{} / {}", demo.lost_subscriptions, demo.duplicated_subscriptions),
            ),
            ("hung requests", demo.hung.to_string()),
            ("reconnects", stats.reconnects.to_string()),
            ("time to detect p50 / max", pm(&detects)),
            ("time to restore p50 / max", pm(&restores)),
            (
                "request latency p50 / p99",
                format!(
                    "{} / {} ({} requests)",
                    opt(stats.requests.p50),
                    opt(stats.requests.p99),
                    stats.requests.count
                ),
            ),
            ("run time", ms(elapsed)),
        ] {
            screen.plain(format_args!("  {k:<32} {v}"))?;
        }
        for r in &demo.results {
            screen.plain(format_args!(
                "  {:<32} {} (detected {}, restored {})",
                format!("fault: {}", r.name),
                if r.ok { "recovered" } else { "FAILED" },
                opt(r.detect),
                opt(r.restore)
            ))?;
        }
        if let (Some(s), Some(p)) = (recorded, path) {
            screen.plain(format_args!(
                "  {:<32} {} frames to {} ({} dropped)",
                "recording",
                s.written,
                p.display(),
                s.dropped
            ))?;
        }
        for p in &demo.problems {
            screen.plain(format_args!("  problem: {p}"))?;
        }
    }
    if ok { Ok(()) } else { Err(DemoError::Broken(broken)) }
}
