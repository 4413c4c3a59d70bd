//! Memory per idle trading client: N clients with heartbeats on, connected to one loopback
//! server, each client kind in a process of its own, against tokio-tungstenite in the same run.
//!
//! `cargo bench -p moorline-client --bench client_idle`. Environment: `CLIENT_IDLE_N` (clients
//! per process, 10000), `CLIENT_IDLE_RUNS` (3), `CLIENT_IDLE_PING_MS` (the heartbeat interval,
//! 1000), `CLIENT_IDLE_CLIENTS` (a comma list of: `moorline-client`, `tokio-tungstenite`,
//! `tokio-tungstenite+heartbeat`; all by default). A quick look: `CLIENT_IDLE_N=500
//! CLIENT_IDLE_RUNS=1`.
//!
//! The kinds:
//! - `moorline-client`: `Client::connect` with the `Raw` dialect and the default
//!   configuration except the ping interval (a WebSocket ping after `CLIENT_IDLE_PING_MS` of
//!   silence, dead after 30 s without a frame), so every client pings and measures the round
//!   trip during the measurement; its event stream is held, not read (nothing arrives on an
//!   idle feed);
//! - `tokio-tungstenite`: a raw WebSocket held without polling: the floor (no heartbeat, no
//!   pong, no liveness: what an idle connection costs when nobody watches it);
//! - `tokio-tungstenite+heartbeat`: the same, plus what a user writes to get heartbeats: one
//!   task per connection that reads (answering the server) and sends a ping every interval.
//!
//! How: the bench re-executes itself as the server (tokio-websockets, every connection read
//! on its own task, pings answered) and then once per kind and run as a client process. A
//! client process raises its file limit (`rlimit`), measures its resident set
//! (`/proc/self/statm`) and its live heap (a counting global allocator), opens N clients
//! (100 at a time, each counted once its session is up), lets three ping intervals pass (so
//! every timer has fired and every heartbeat has been answered at least twice), measures
//! again and prints the difference per client. Figures are medians over runs; the ratio
//! columns are against `tokio-tungstenite`, measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use moorline_client::dialect::Raw;
use moorline_client::{Client, ClientConfig, ClientEvent};
use tokio::net::{TcpListener, TcpStream};

/// Live heap bytes of this process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KINDS: [&str; 3] = ["moorline-client", "tokio-tungstenite", "tokio-tungstenite+heartbeat"];
const REFERENCE: &str = "tokio-tungstenite";
/// Clients opened concurrently.
const WAVE: usize = 100;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the file limit: {e}");
    }
    match std::env::var("CLIENT_IDLE_ROLE").as_deref() {
        Ok("server") => server(),
        Ok(kind) => {
            let addr: SocketAddr = std::env::var("CLIENT_IDLE_ADDR").unwrap().parse().unwrap();
            client_process(kind, addr);
        }
        Err(_) => lead(),
    }
}

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Runs the server and every client process; prints the table.
fn lead() {
    let n: usize = env("CLIENT_IDLE_N").unwrap_or(10_000);
    let runs: usize = env("CLIENT_IDLE_RUNS").unwrap_or(3).max(1);
    let ping_ms: u64 = env("CLIENT_IDLE_PING_MS").unwrap_or(1000);
    let kinds: Vec<String> = match std::env::var("CLIENT_IDLE_CLIENTS") {
        Ok(list) => list.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        Err(_) => KINDS.iter().map(|c| (*c).to_owned()).collect(),
    };
    let me = std::env::current_exe().unwrap();
    let mut server =
        Command::new(&me).env("CLIENT_IDLE_ROLE", "server").stdout(Stdio::piped()).spawn().expect("start the server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = lines.next().unwrap().unwrap().trim().to_owned();

    // figures[kind] = [(resident per client, heap per client)] per run
    let mut figures: Vec<(String, Vec<(f64, f64)>)> = kinds.iter().map(|c| (c.clone(), Vec::new())).collect();
    for run in 0..runs {
        for (kind, out) in &mut figures {
            let output = Command::new(&me)
                .env("CLIENT_IDLE_ROLE", kind.as_str())
                .env("CLIENT_IDLE_ADDR", &addr)
                .env("CLIENT_IDLE_N", n.to_string())
                .env("CLIENT_IDLE_PING_MS", ping_ms.to_string())
                .output()
                .expect("run a client process");
            let text = String::from_utf8_lossy(&output.stdout);
            match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
                Some(r) => {
                    let mut it = r.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
                    out.push((it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)));
                }
                None => eprintln!(
                    "run {run}: {kind} failed: {}{}",
                    text,
                    String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
                ),
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    };
    let of = |v: &[(f64, f64)]| (median(v.iter().map(|f| f.0).collect()), median(v.iter().map(|f| f.1).collect()));
    let reference = figures.iter().find(|(c, _)| c == REFERENCE).map(|(_, v)| of(v));
    println!(
        "idle trading clients, heartbeat every {ping_ms} ms: {n} per client process, {runs} runs, medians; \
         server: tokio-websockets"
    );
    println!();
    println!(
        "| client | resident bytes / client | heap bytes / client | resident vs {REFERENCE} | heap vs {REFERENCE} |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (kind, v) in &figures {
        let (r, h) = of(v);
        let (rr, hr) = reference.map_or((f64::NAN, f64::NAN), |(rr, hr)| (r / rr, h / hr));
        println!("| {kind} | {r:.0} | {h:.0} | {rr:.2}x | {hr:.2}x |");
    }
}

/// The server: tokio-websockets, every connection read on its own task (pings answered).
fn server() {
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

/// One client process: N idle clients of one kind; prints `RESULT rss heap` per client.
fn client_process(kind: &str, addr: SocketAddr) {
    let n: usize = env("CLIENT_IDLE_N").unwrap_or(10_000);
    let ping = Duration::from_millis(env("CLIENT_IDLE_PING_MS").unwrap_or(1000).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        // Warm the runtime and the allocator's first arenas before the baseline.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (rss0, heap0) = (rss(), LIVE.load(Ordering::Relaxed));
        let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(n);
        while keep.len() < n {
            let wave = WAVE.min(n - keep.len());
            let opened = futures_util::future::join_all((0..wave).map(|_| open(kind, addr, ping))).await;
            keep.extend(opened);
        }
        tokio::time::sleep(ping * 3).await;
        let (rss1, heap1) = (rss(), LIVE.load(Ordering::Relaxed));
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
