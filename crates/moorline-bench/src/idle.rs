//! Memory per idle trading client: N clients with heartbeats on, connected to one loopback
//! server, each client kind in a process of its own, against tokio-tungstenite in the same run.
//!
//! The kinds:
//! - `moorline-client`: `Client::connect` with the `Raw` dialect and the default
//!   configuration except the ping interval (a WebSocket ping after the interval of silence,
//!   dead after 30 s without a frame), so every client pings and measures the round trip
//!   during the measurement; its event stream is held, not read (nothing arrives on an idle
//!   feed);
//! - `tokio-tungstenite`: a raw WebSocket held without polling: the floor (no heartbeat, no
//!   pong, no liveness: what an idle connection costs when nobody watches it);
//! - `tokio-tungstenite+heartbeat`: the same, plus what a user writes to get heartbeats: one
//!   task per connection that reads (answering the server) and sends a ping every interval.
//!
//! How: the running executable is started again as the server (tokio-websockets, every
//! connection read on its own task, pings answered) and then once per kind and run as a
//! client process ([`crate::child_main`] picks the role). A client process raises its file
//! limit, measures its resident set (`/proc/self/statm`) and its live heap (the executable's
//! global allocator must be [`crate::Counting`]), opens N clients (100 at a time, each
//! counted once its session is up), lets three ping intervals pass (so every timer has fired
//! and every heartbeat has been answered at least twice), measures again and prints the
//! difference per client. Figures are medians over runs; the ratio columns are against
//! `tokio-tungstenite`, measured in the same run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use moorline_client::dialect::Raw;
use moorline_client::{Client, ClientConfig, ClientEvent};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{BenchError, ROLE_ENV, live_heap, median, ratio};

/// The kinds measured, in table order.
pub const KINDS: [&str; 3] = ["moorline-client", "tokio-tungstenite", "tokio-tungstenite+heartbeat"];
/// What the ratios are against.
pub const REFERENCE: &str = "tokio-tungstenite";
/// Clients opened concurrently.
const WAVE: usize = 100;

const ADDR_ENV: &str = "MOORLINE_BENCH_ADDR";
const KIND_ENV: &str = "MOORLINE_BENCH_KIND";
const N_ENV: &str = "MOORLINE_BENCH_N";
const PING_ENV: &str = "MOORLINE_BENCH_PING_MS";

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleOptions {
    /// Clients per process.
    pub clients: usize,
    /// Runs (a process per kind and run).
    pub runs: usize,
    /// The heartbeat interval.
    pub ping_ms: u64,
    /// The kinds to run; `None`: all.
    pub kinds: Option<Vec<String>>,
}

impl Default for IdleOptions {
    fn default() -> Self {
        Self { clients: 10_000, runs: 3, ping_ms: 1000, kinds: None }
    }
}

impl IdleOptions {
    /// The options `cargo bench --bench client_idle` reads from its environment:
    /// `CLIENT_IDLE_N`, `CLIENT_IDLE_RUNS`, `CLIENT_IDLE_PING_MS`, `CLIENT_IDLE_CLIENTS`.
    pub fn from_env() -> Self {
        let d = Self::default();
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Self {
            clients: env("CLIENT_IDLE_N").map_or(d.clients, |n| n as usize).max(1),
            runs: env("CLIENT_IDLE_RUNS").map_or(d.runs, |n| n as usize).max(1),
            ping_ms: env("CLIENT_IDLE_PING_MS").unwrap_or(d.ping_ms).max(1),
            kinds: std::env::var("CLIENT_IDLE_CLIENTS")
                .ok()
                .map(|l| l.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()),
        }
    }
}

/// One kind's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleRow {
    /// The kind.
    pub client: String,
    /// Resident bytes per client (median over runs).
    pub resident_bytes: f64,
    /// Live heap bytes per client.
    pub heap_bytes: f64,
    /// Resident ratio to tokio-tungstenite's (`None` when it was not measured).
    pub resident_vs_reference: Option<f64>,
    /// Heap ratio to tokio-tungstenite's.
    pub heap_vs_reference: Option<f64>,
    /// Runs whose process failed (with the last line it wrote on stderr).
    pub failures: Vec<String>,
}

/// Everything one idle benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleReport {
    /// Clients per process.
    pub clients: usize,
    /// Runs.
    pub runs: usize,
    /// The heartbeat interval.
    pub ping_ms: u64,
    /// One row per kind.
    pub rows: Vec<IdleRow>,
}

impl IdleReport {
    /// The report as a Markdown table with its heading.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "idle trading clients, heartbeat every {} ms: {} per client process, {} runs, medians; server: tokio-websockets\n",
            self.ping_ms, self.clients, self.runs
        );
        let _ = writeln!(
            s,
            "| client | resident bytes / client | heap bytes / client | resident vs {REFERENCE} | heap vs {REFERENCE} |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {} | {} |",
                r.client,
                r.resident_bytes,
                r.heap_bytes,
                ratio(r.resident_vs_reference),
                ratio(r.heap_vs_reference)
            );
            for f in &r.failures {
                let _ = writeln!(s, "  ({} failed: {f})", r.client);
            }
        }
        s
    }
}

/// One kind's name, its (resident, heap) per client of each run, and its failed runs.
type PerKind = (String, Vec<(f64, f64)>, Vec<String>);

/// Runs the server and every client process (started from `exe`, which must call
/// [`crate::child_main`] first thing); `progress` hears of each process as it ends.
pub fn run(exe: &Path, opts: &IdleOptions, progress: &mut dyn FnMut(&str)) -> Result<IdleReport, BenchError> {
    let kinds: Vec<String> = match &opts.kinds {
        Some(list) => list.clone(),
        None => KINDS.iter().map(|c| (*c).to_owned()).collect(),
    };
    if let Some(unknown) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(BenchError::UnknownClient { name: unknown.clone(), known: KINDS.join(", ") });
    }
    let mut server = Command::new(exe)
        .env(ROLE_ENV, "idle-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| BenchError::Spawn { what: "the idle server", source })?;
    let addr = server
        .stdout
        .take()
        .and_then(|out| BufReader::new(out).lines().next())
        .and_then(Result::ok)
        .map(|l| l.trim().to_owned())
        .filter(|l| l.parse::<SocketAddr>().is_ok());
    let Some(addr) = addr else {
        let _ = server.kill();
        let _ = server.wait();
        return Err(BenchError::Child { what: "the idle server".into(), detail: "it announced no address".into() });
    };
    let mut figures: Vec<PerKind> = kinds.iter().map(|c| (c.clone(), Vec::new(), Vec::new())).collect();
    let result = (|| {
        for run in 0..opts.runs.max(1) {
            for (kind, out, failures) in &mut figures {
                let output = Command::new(exe)
                    .env(ROLE_ENV, "idle-client")
                    .env(KIND_ENV, kind.as_str())
                    .env(ADDR_ENV, &addr)
                    .env(N_ENV, opts.clients.to_string())
                    .env(PING_ENV, opts.ping_ms.to_string())
                    .output()
                    .map_err(|source| BenchError::Spawn { what: "an idle client process", source })?;
                let text = String::from_utf8_lossy(&output.stdout);
                match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
                    Some(r) => {
                        let mut it = r.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
                        out.push((it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)));
                        progress(&format!("run {}/{}: {kind} done", run + 1, opts.runs.max(1)));
                    }
                    None => {
                        let why = String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("").to_owned();
                        progress(&format!("run {}/{}: {kind} failed: {why}", run + 1, opts.runs.max(1)));
                        failures.push(format!("run {}: {}", run + 1, why));
                    }
                }
            }
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result?;
    let of = |v: &[(f64, f64)]| (median(v.iter().map(|f| f.0).collect()), median(v.iter().map(|f| f.1).collect()));
    let reference = figures.iter().find(|(c, v, _)| c == REFERENCE && !v.is_empty()).map(|(_, v, _)| of(v));
    let rows = figures
        .iter()
        .map(|(kind, v, failures)| {
            let (r, h) = of(v);
            IdleRow {
                client: kind.clone(),
                resident_bytes: r,
                heap_bytes: h,
                resident_vs_reference: reference.map(|(rr, _)| r / rr),
                heap_vs_reference: reference.map(|(_, hr)| h / hr),
                failures: failures.clone(),
            }
        })
        .collect();
    Ok(IdleReport { clients: opts.clients, runs: opts.runs.max(1), ping_ms: opts.ping_ms, rows })
}

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The server role: tokio-websockets, every connection read on its own task (pings answered).
pub(crate) fn server() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else { return };
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
}

/// The client role: N idle clients of one kind; prints `RESULT rss heap` per client.
pub(crate) fn client_process() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let kind = var(KIND_ENV);
    let addr: SocketAddr = var(ADDR_ENV).parse().unwrap();
    let n: usize = var(N_ENV).parse().unwrap_or(10_000);
    let ping = Duration::from_millis(var(PING_ENV).parse().unwrap_or(1000).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        // Warm the runtime and the allocator's first arenas before the baseline.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (rss0, heap0) = (rss(), live_heap());
        let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(n);
        while keep.len() < n {
            let wave = WAVE.min(n - keep.len());
            let opened = futures_util::future::join_all((0..wave).map(|_| open(&kind, addr, ping))).await;
            keep.extend(opened);
        }
        tokio::time::sleep(ping * 3).await;
        let (rss1, heap1) = (rss(), live_heap());
        let per = |a: f64, b: f64| (b - a) / n as f64;
        println!("RESULT {:.0} {:.0}", per(rss0 as f64, rss1 as f64), per(heap0 as f64, heap1 as f64));
        drop(keep);
    });
}

/// Opens one client of `kind`; what must be kept alive.
async fn open(kind: &str, addr: SocketAddr, ping: Duration) -> Box<dyn std::any::Any + Send> {
    let url = format!("ws://{addr}/");
    match kind {
        "moorline-client" => {
            let config = ClientConfig::builder().dead_after(Some(ping), Duration::from_secs(30)).build().unwrap();
            let (client, mut events) = Client::connect(&url, config, Raw).unwrap();
            loop {
                match tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap() {
                    Some(ClientEvent::Restored { .. }) => break,
                    Some(ClientEvent::Connected { .. }) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            Box::new((client, events))
        }
        "tokio-tungstenite" => Box::new(tungstenite_open(&url, addr).await),
        "tokio-tungstenite+heartbeat" => {
            let mut ws = tungstenite_open(&url, addr).await;
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
                loop {
                    tokio::select! {
                        m = ws.next() => if !matches!(m, Some(Ok(_))) { return },
                        _ = tick.tick() => {
                            if ws.send(tungstenite::Message::Ping(Default::default())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            Box::new(AbortOnDrop(task))
        }
        other => panic!("unknown client kind {other}"),
    }
}

async fn tungstenite_open(
    url: &str,
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
    ws
}

/// A connection task, ended with its holder.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
