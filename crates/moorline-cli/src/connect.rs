//! `moorline connect URL`: the trading client on the command line. Stdin lines are sent as
//! text messages, events printed (one JSON object per line with `--json`). Credentials of
//! authenticated dialects come from the environment (`MOORLINE_CLIENT_ID`,
//! `MOORLINE_CLIENT_SECRET`), never from arguments.
//!
//! `--dialect deribit` runs the Deribit façade ([`DeribitClient`]): its authentication
//! (client credentials, or `--signature` for a client signature), book integrity (gaps
//! reported as `book_gap`, resynced, nothing printed from a broken book), order events and
//! reconciliation after every reconnect (`order`, `order_not_placed`, `reconciled`), the
//! platform's maintenance state (`platform_state`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moorline_client::config::Attempts;
use moorline_client::deribit::book::{Action, BookUpdate, Kind, Level};
use moorline_client::deribit::{DeribitClient, DeribitEvent, DeribitEvents, OrderSource};
use moorline_client::dialect::{Binance, Credentials, Dialect, JsonRpc, Raw};
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientError, ClientEvent, ConfigError};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::out::{self, OutputError};

/// The dialects `--dialect` takes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DialectArg {
    /// Deribit JSON-RPC (set_heartbeat, test_request, auth from the environment).
    Deribit,
    /// Generic JSON-RPC 2.0 (`subscribe`/`unsubscribe` with `{"channels": [...]}`).
    Jsonrpc,
    /// Binance-style `SUBSCRIBE`/`UNSUBSCRIBE` with ids.
    Binance,
    /// No protocol: messages in and out as they are.
    Raw,
}

/// Options of `moorline connect`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// The venue: ws:// or wss://.
    #[arg(value_parser = crate::args::ws_url)]
    pub(crate) url: String,
    /// How the venue speaks.
    #[arg(long, value_enum, default_value_t = DialectArg::Raw)]
    pub(crate) dialect: DialectArg,
    /// Deribit: authenticate with a client signature (HMAC-SHA256; the secret never leaves
    /// this process) rather than sending the client secret.
    #[arg(long)]
    pub(crate) signature: bool,
    /// Subscribe to this channel (repeatable); restored after every reconnect.
    #[arg(long = "subscribe", value_name = "CHANNEL")]
    pub(crate) subscribe: Vec<String>,
    /// The venue heartbeat interval to ask for, in seconds (Deribit: 10 or more).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = crate::args::seconds)]
    pub(crate) heartbeat: Option<Duration>,
    /// An upgrade request header, `'Name: value'` (repeatable; sent on every reconnect).
    #[arg(long = "header", value_name = "'K: V'", value_parser = crate::args::header)]
    pub(crate) headers: Vec<(String, String)>,
    /// Trust this CA certificate (PEM) for wss://, besides the web's roots.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// Give up after this many consecutive failed attempts (default: never).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = crate::args::whole_number)]
    pub(crate) max_retries: Option<u64>,
    /// Exit 0 after this many data messages.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = crate::args::whole_number)]
    pub(crate) count: Option<u64>,
    /// Exit 0 after this many seconds.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = crate::args::seconds)]
    pub(crate) duration: Option<Duration>,
    /// One JSON object per line on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Record every frame in and out to this JSONL file (secrets redacted; `moorline replay`).
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<std::path::PathBuf>,
}

/// Why `moorline connect` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The CA file could not be read or used.
    #[error("--ca {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A dialect needs credentials the environment does not have.
    #[error("{0}")]
    Credentials(String),
    /// The client's configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client stopped on a fatal error, or retries ran out.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Writing to stdout failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The recording file could not be opened.
    #[error("--record: {0}")]
    Record(#[from] moorline_client::record::RecordError),
}

fn ts_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Deribit credentials from the environment (`None`: public access).
fn deribit_credentials(signature: bool) -> Result<Option<Credentials>, ConnectError> {
    let id = std::env::var("MOORLINE_CLIENT_ID").ok().filter(|s| !s.is_empty());
    let secret = std::env::var("MOORLINE_CLIENT_SECRET").ok().filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => {
            let credentials = Credentials::new(id, secret);
            Ok(Some(if signature { credentials.signed() } else { credentials }))
        }
        (None, None) if signature => {
            Err(ConnectError::Credentials("--signature needs MOORLINE_CLIENT_ID and MOORLINE_CLIENT_SECRET".into()))
        }
        (None, None) => Ok(None),
        _ => Err(ConnectError::Credentials(
            "set both MOORLINE_CLIENT_ID and MOORLINE_CLIENT_SECRET, or neither (public access)".into(),
        )),
    }
}

/// The dialect of a plain client (Deribit runs the façade instead).
fn dialect(arg: DialectArg) -> Arc<dyn Dialect> {
    match arg {
        DialectArg::Jsonrpc => Arc::new(JsonRpc::new()),
        DialectArg::Binance => Arc::new(Binance::new()),
        DialectArg::Deribit | DialectArg::Raw => Arc::new(Raw),
    }
}

fn config(args: &ConnectArgs) -> Result<ClientConfig, ConnectError> {
    let mut builder = ClientConfig::builder();
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    if let Some(path) = &args.ca {
        let ca = |reason: String| ConnectError::Ca { path: path.display().to_string(), reason };
        let pem = std::fs::read_to_string(path).map_err(|e| ca(e.to_string()))?;
        let tls = moorline::TlsOptions::default().add_ca_pem(&pem).map_err(|e| ca(e.to_string()))?;
        builder = builder.tls(tls);
    }
    if let Some(n) = args.max_retries {
        builder = builder.attempts(Attempts::Limited(u32::try_from(n).unwrap_or(u32::MAX)));
    }
    if let Some(interval) = args.heartbeat {
        builder = builder.venue_heartbeat(Some(interval), moorline_client::config::DEFAULT_HEARTBEAT_GRACE);
    }
    if let Some(path) = &args.record {
        let recorder = moorline_client::record::Recorder::open(path, Default::default())?;
        builder = builder.record(Arc::new(recorder));
    }
    Ok(builder.build()?)
}

/// One event as a line: JSON with `--json`, text otherwise. `None`: nothing to print.
fn render(event: &ClientEvent, as_json: bool) -> Option<String> {
    let ts = ts_ms();
    let names = |v: &[moorline_client::Channel]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let (value, text) = match event {
        ClientEvent::Message { data, channel } => {
            let text = match data.as_text() {
                Some(t) => t.to_owned(),
                None => format!("<{} binary bytes>", data.len()),
            };
            let mut v = json!({"event": "message", "ts_ms": ts, "data": text});
            if let Some(c) = channel {
                v["channel"] = json!(c.to_string());
            }
            let line = match channel {
                Some(c) => format!("[{c}] {text}"),
                None => text.clone(),
            };
            (v, line)
        }
        ClientEvent::Connected { attempt, protocol } => {
            (json!({"event": "connected", "ts_ms": ts}), format!("connected ({attempt}, {protocol:?})"))
        }
        ClientEvent::Reconnected { attempt, protocol } => {
            (json!({"event": "reconnected", "ts_ms": ts}), format!("reconnected ({attempt}, {protocol:?})"))
        }
        ClientEvent::Disconnected { reason } => (
            json!({"event": "disconnected", "ts_ms": ts, "reason": reason.to_string()}),
            format!("disconnected: {reason}"),
        ),
        ClientEvent::Reconnecting { attempt, delay } => (
            json!({"event": "reconnecting", "ts_ms": ts, "attempt": attempt, "delay_ms": delay.as_millis() as u64}),
            format!("reconnecting in {delay:?} (retry {attempt})"),
        ),
        ClientEvent::Restored { confirmed, refused } => {
            let refused_v: Vec<Value> =
                refused.iter().map(|r| json!({"channel": r.channel.to_string(), "reason": r.reason})).collect();
            (
                json!({"event": "restored", "ts_ms": ts, "channels": names(confirmed), "refused": refused_v}),
                format!("restored {:?}, refused {:?}", names(confirmed), refused),
            )
        }
        ClientEvent::Error(e) => {
            (json!({"event": "error", "ts_ms": ts, "error": e.to_string()}), format!("error: {e}"))
        }
        ClientEvent::Closed { error } => {
            let why = error.as_ref().map(|e| e.to_string());
            (json!({"event": "closed", "ts_ms": ts, "error": why}), "closed".to_owned())
        }
        ClientEvent::Idle { silent_for } => (
            json!({"event": "idle", "ts_ms": ts, "silent_ms": silent_for.as_millis() as u64}),
            format!("idle for {silent_for:?}"),
        ),
        ClientEvent::Dropped { messages, bytes } => (
            json!({"event": "dropped", "ts_ms": ts, "messages": messages, "bytes": bytes}),
            format!("dropped {messages} messages ({bytes} bytes): reading too slowly"),
        ),
        _ => return None,
    };
    Some(if as_json { value.to_string() } else { text })
}

fn level_json(level: &Level) -> Value {
    let action = match level.action {
        Action::New => "new",
        Action::Change => "change",
        Action::Delete => "delete",
    };
    json!([action, level.price, level.amount])
}

/// A book update as Deribit's `data` (re-encoded: only updates that follow their book are
/// printed).
fn book_data(update: &BookUpdate) -> Value {
    json!({
        "type": if update.kind == Kind::Snapshot { "snapshot" } else { "change" },
        "timestamp": update.timestamp,
        "instrument_name": update.instrument_name,
        "change_id": update.change_id,
        "prev_change_id": update.prev_change_id,
        "bids": update.bids.iter().map(level_json).collect::<Vec<_>>(),
        "asks": update.asks.iter().map(level_json).collect::<Vec<_>>(),
    })
}

/// One façade event as a line (the client's own events as [`render`] prints them).
fn render_deribit(event: &DeribitEvent, as_json: bool) -> Option<String> {
    let ts = ts_ms();
    let (value, text) = match event {
        DeribitEvent::Client(ev) => return render(ev, as_json),
        DeribitEvent::Notification { data, channel } => {
            return render(&ClientEvent::Message { data: data.clone(), channel: channel.clone() }, as_json);
        }
        DeribitEvent::Book { channel, update } => {
            let data = book_data(update).to_string();
            let line = format!("[{channel}] {data}");
            (json!({"event": "message", "ts_ms": ts, "channel": channel.to_string(), "data": data}), line)
        }
        DeribitEvent::BookGap { channel, instrument, expected, got, change_id } => (
            json!({"event": "book_gap", "ts_ms": ts, "channel": channel.to_string(), "instrument": instrument,
                   "expected": expected, "got": got, "change_id": change_id}),
            format!(
                "book gap on {channel}: expected prev_change_id {expected:?}, got {got:?} (change {change_id}); resyncing"
            ),
        ),
        DeribitEvent::BookResyncFailed { channel, reason } => (
            json!({"event": "book_resync_failed", "ts_ms": ts, "channel": channel.to_string(), "reason": reason}),
            format!("resync of {channel} failed: {reason}"),
        ),
        DeribitEvent::Order(o) => {
            let source = match o.source {
                OrderSource::Notification => "notification",
                OrderSource::Reconciled => "reconciled",
            };
            let order = serde_json::to_value(&o.order).unwrap_or(Value::Null);
            let line = format!(
                "order {} {:?} {} {}/{} ({source})",
                o.order.order_id, o.order.order_state, o.order.instrument_name, o.order.filled_amount, o.order.amount
            );
            (json!({"event": "order", "ts_ms": ts, "source": source, "order": order}), line)
        }
        DeribitEvent::OrderNotPlaced { label } => (
            json!({"event": "order_not_placed", "ts_ms": ts, "label": label}),
            format!("order {label:?} was not placed"),
        ),
        DeribitEvent::Reconciled { open, resolved } => (
            json!({"event": "reconciled", "ts_ms": ts, "open": open, "resolved": resolved}),
            format!("reconciled: {open} open orders, {resolved} unknown outcomes resolved"),
        ),
        DeribitEvent::ReconciliationFailed(e) => (
            json!({"event": "reconciliation_failed", "ts_ms": ts, "error": e.to_string()}),
            format!("reconciliation failed: {e}"),
        ),
        DeribitEvent::PlatformState { locked } => (
            json!({"event": "platform_state", "ts_ms": ts, "locked": locked}),
            format!("platform {}", if *locked { "locked (maintenance)" } else { "unlocked" }),
        ),
        _ => return None,
    };
    Some(if as_json { value.to_string() } else { text })
}

/// The event stream of either kind of client.
enum Events {
    Plain(EventStream),
    Deribit(Box<DeribitEvents>),
}

/// What one event means for the loop.
struct Seen {
    line: Option<String>,
    /// A data message (counted by `--count`).
    message: bool,
    /// The client closed (with its error, if any).
    closed: Option<Option<ClientError>>,
}

impl Events {
    async fn next(&mut self, as_json: bool) -> Option<Seen> {
        let closed = |ev: &ClientEvent| match ev {
            ClientEvent::Closed { error } => Some(error.clone()),
            _ => None,
        };
        match self {
            Events::Plain(events) => {
                let ev = events.recv().await?;
                let message = matches!(ev, ClientEvent::Message { .. });
                Some(Seen { line: render(&ev, as_json), message, closed: closed(&ev) })
            }
            Events::Deribit(events) => {
                let ev = events.recv().await?;
                let message = matches!(ev, DeribitEvent::Book { .. } | DeribitEvent::Notification { .. });
                let closed = match &ev {
                    DeribitEvent::Client(c) => closed(c),
                    _ => None,
                };
                Some(Seen { line: render_deribit(&ev, as_json), message, closed })
            }
        }
    }
}

/// Runs `moorline connect`.
pub(crate) async fn run(args: ConnectArgs) -> Result<(), ConnectError> {
    let config = config(&args)?;
    let (client, mut events) = match args.dialect {
        DialectArg::Deribit => {
            let credentials = deribit_credentials(args.signature)?;
            let (deribit, events) = DeribitClient::connect(&args.url, config, credentials)?;
            (deribit.client().clone(), Events::Deribit(Box::new(events)))
        }
        other => {
            let (client, events) = Client::connect_dyn(&args.url, config, dialect(other))?;
            (client, Events::Plain(events))
        }
    };
    if !args.subscribe.is_empty() {
        let c = client.clone();
        let channels = args.subscribe.clone();
        tokio::spawn(async move {
            let names: Vec<&str> = channels.iter().map(String::as_str).collect();
            if let Err(e) = c.subscribe(&names).await {
                tracing::warn!(error = %e, "subscribe");
            }
        });
    }
    // Stdin lines go out as text messages.
    let sender = client.clone();
    let stdin = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Err(e) = sender.send_text(line).await {
                tracing::warn!(error = %e, "send");
            }
        }
    });
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut messages = 0u64;
    let result = loop {
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let seen = tokio::select! {
            seen = events.next(args.json) => seen,
            () = timer => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let Some(seen) = seen else { break Ok(()) };
        if let Some(line) = seen.line
            && let Err(e) = out::line(line)
        {
            break Err(e.into());
        }
        if seen.message {
            messages += 1;
            if args.count.is_some_and(|n| messages >= n) {
                break Ok(());
            }
        }
        match seen.closed {
            Some(Some(e)) => break Err(e.into()),
            Some(None) => break Ok(()),
            None => {}
        }
    };
    stdin.abort();
    let _ = client.close().await;
    result
}
