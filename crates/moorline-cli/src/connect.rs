//! `moorline connect URL`: the trading client on the command line. Stdin lines are sent as
//! text messages, events printed (one JSON object per line with `--json`). Credentials of
//! authenticated dialects come from the environment (`MOORLINE_CLIENT_ID`,
//! `MOORLINE_CLIENT_SECRET`), never from arguments.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moorline_client::config::Attempts;
use moorline_client::dialect::{Binance, Credentials, Deribit, Dialect, JsonRpc, Raw};
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
    pub(crate) url: String,
    /// How the venue speaks.
    #[arg(long, value_enum, default_value_t = DialectArg::Raw)]
    pub(crate) dialect: DialectArg,
    /// Subscribe to this channel (repeatable); restored after every reconnect.
    #[arg(long = "subscribe", value_name = "CHANNEL")]
    pub(crate) subscribe: Vec<String>,
    /// The venue heartbeat interval to ask for, in seconds (Deribit: 10 or more).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = crate::args::seconds)]
    pub(crate) heartbeat: Option<Duration>,
    /// An upgrade request header, `'Name: value'` (repeatable; sent on every reconnect).
    #[arg(long = "header", value_name = "'K: V'")]
    pub(crate) headers: Vec<String>,
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
    /// A header argument is not `Name: value`.
    #[error("--header {0:?} is not `Name: value`")]
    Header(String),
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

fn dialect(arg: DialectArg) -> Result<Arc<dyn Dialect>, ConnectError> {
    Ok(match arg {
        DialectArg::Deribit => {
            let id = std::env::var("MOORLINE_CLIENT_ID").ok().filter(|s| !s.is_empty());
            let secret = std::env::var("MOORLINE_CLIENT_SECRET").ok().filter(|s| !s.is_empty());
            match (id, secret) {
                (Some(id), Some(secret)) => Arc::new(Deribit::with_credentials(Credentials::new(id, secret))),
                (None, None) => Arc::new(Deribit::new()),
                _ => {
                    return Err(ConnectError::Credentials(
                        "set both MOORLINE_CLIENT_ID and MOORLINE_CLIENT_SECRET, or neither (public access)".into(),
                    ));
                }
            }
        }
        DialectArg::Jsonrpc => Arc::new(JsonRpc::new()),
        DialectArg::Binance => Arc::new(Binance::new()),
        DialectArg::Raw => Arc::new(Raw),
    })
}

fn config(args: &ConnectArgs) -> Result<ClientConfig, ConnectError> {
    let mut builder = ClientConfig::builder();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else { return Err(ConnectError::Header(h.clone())) };
        builder = builder.header(name.trim(), value.trim());
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

/// Runs `moorline connect`.
pub(crate) async fn run(args: ConnectArgs) -> Result<(), ConnectError> {
    let config = config(&args)?;
    let (client, mut events) = Client::connect_dyn(&args.url, config, dialect(args.dialect)?)?;
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
        let event = tokio::select! {
            ev = events.recv() => ev,
            () = timer => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let Some(event) = event else { break Ok(()) };
        if let Some(line) = render(&event, args.json)
            && let Err(e) = out::line(line)
        {
            break Err(e.into());
        }
        match event {
            ClientEvent::Message { .. } => {
                messages += 1;
                if args.count.is_some_and(|n| messages >= n) {
                    break Ok(());
                }
            }
            ClientEvent::Closed { error: Some(e) } => break Err(e.into()),
            ClientEvent::Closed { error: None } => break Ok(()),
            _ => {}
        }
    };
    stdin.abort();
    let _ = client.close().await;
    result
}
