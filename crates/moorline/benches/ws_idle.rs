//! Memory per idle WebSocket connection: N clients connected to one loopback server, each
//! client library in a process of its own, against the peers in the same run.
//!
//! `cargo bench -p moorline --bench ws_idle`. Environment: `WS_IDLE_N` (connections per
//! client, 10000), `WS_IDLE_CLIENTS` (a comma list: `moorline`, `tokio-tungstenite`,
//! `tokio-websockets`, the default, and `moorline-h2`: moorline over RFC 8441 against the test
//! kit's HTTP/2 WebSocket server, which resets connections past a few thousand: use it with
//! `WS_IDLE_N=2000`), `WS_IDLE_RUNS` (3).
//!
//! How: the bench re-executes itself as the echo server (tokio-websockets, which reads every
//! connection and answers pings) and then once per client and run as a client process. A
//! client process raises its file limit, measures its resident set (`/proc/self/statm`) and
//! its live heap (a counting global allocator), opens N WebSockets one after another (each
//! returns once its upgrade is answered), lets 2 s pass (timers, first keepalive sleeps),
//! measures again and prints the difference per connection. Connections stay idle: no
//! message is sent, nothing is read by the user (moorline's worker reads on its own; the
//! peers are held without polling, which is what an idle peer connection costs). Figures are
//! medians over runs; the ratio column is against tokio-websockets, measured in the same run.
//! Default options for everyone (moorline: `ConnectOptions::default()`, `WsOptions::default()`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
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

const CLIENTS: [&str; 3] = ["moorline", "tokio-tungstenite", "tokio-websockets"];

fn main() {
    raise_file_limit();
    match std::env::var("WS_IDLE_ROLE").as_deref() {
        Ok("server") => server(),
        Ok(client) => {
            let addr: SocketAddr = std::env::var("WS_IDLE_ADDR").unwrap().parse().unwrap();
            let n: usize = std::env::var("WS_IDLE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
            client_process(client, addr, n);
        }
        Err(_) => lead(),
    }
}

fn raise_file_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the file limit: {e}");
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
    let n: usize = std::env::var("WS_IDLE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let runs: usize = std::env::var("WS_IDLE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let clients: Vec<String> = match std::env::var("WS_IDLE_CLIENTS") {
        Ok(list) => list.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect(),
        Err(_) => CLIENTS.iter().map(|c| (*c).to_owned()).collect(),
    };
    let me = std::env::current_exe().unwrap();
    let mut server = Command::new(&me)
        .env("WS_IDLE_ROLE", "server")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = lines.next().unwrap().unwrap().trim().to_owned();
    let h2_addr = lines.next().unwrap().unwrap().trim().to_owned();

    // figures[client] = [(rss per conn, heap per conn)] per run
    let mut figures: Vec<(String, Vec<(f64, f64)>)> = clients.iter().map(|c| (c.clone(), Vec::new())).collect();
    for run in 0..runs {
        for (client, out) in &mut figures {
            let output = Command::new(&me)
                .env("WS_IDLE_ROLE", client.as_str())
                .env("WS_IDLE_ADDR", &addr)
                .env("WS_IDLE_H2_ADDR", &h2_addr)
                .env("WS_IDLE_N", n.to_string())
                .output()
                .expect("run a client process");
            let text = String::from_utf8_lossy(&output.stdout);
            match text.lines().find_map(|l| l.strip_prefix("RESULT ")) {
                Some(r) => {
                    let mut it = r.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
                    out.push((it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)));
                }
                None => eprintln!(
                    "run {run}: {client} failed: {}{}",
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
    let reference = figures
        .iter()
        .find(|(c, _)| c == "tokio-websockets")
        .map(|(_, v)| (median(v.iter().map(|f| f.0).collect()), median(v.iter().map(|f| f.1).collect())));
    println!("idle WebSocket connections: {n} per client process, {runs} runs, medians; server: tokio-websockets");
    println!();
    println!(
        "| client | resident bytes / conn | heap bytes / conn | resident vs tokio-websockets | heap vs tokio-websockets |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (client, v) in &figures {
        let r = median(v.iter().map(|f| f.0).collect());
        let h = median(v.iter().map(|f| f.1).collect());
        let (rr, hr) = reference.map_or((f64::NAN, f64::NAN), |(rr, hr)| (r / rr, h / hr));
        println!("| {client} | {r:.0} | {h:.0} | {rr:.2}x | {hr:.2}x |");
    }
}

/// The echo server: tokio-websockets, every connection read on its own task.
fn server() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        let h2_addr = {
            // An RFC 8441 endpoint for `moorline-h2`: the test kit's WebSocket server.
            let server = moorline_testkit::ws::MockServer::builder().http2(true).start().await.unwrap();
            let addr = server.addr();
            std::mem::forget(server);
            addr
        };
        println!("{h2_addr}");
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

/// One client process: N idle connections of one library; prints `RESULT rss heap` per connection.
fn client_process(client: &str, addr: SocketAddr, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        // Warm the runtime and the allocator's first arenas before the baseline.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (rss0, heap0) = (rss(), LIVE.load(Ordering::Relaxed));
        let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(n);
        for _ in 0..n {
            keep.push(open(client, addr).await);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss1, heap1) = (rss(), LIVE.load(Ordering::Relaxed));
        let per = |a: usize, b: usize| (b as f64 - a as f64) / n as f64;
        println!("RESULT {:.0} {:.0}", per(rss0, rss1), (heap1 - heap0) as f64 / n as f64);
        drop(keep);
    });
}

async fn open(client: &str, addr: SocketAddr) -> Box<dyn std::any::Any + Send> {
    let url = format!("ws://{addr}/");
    match client {
        "moorline" => {
            let s = moorline::ws::connect(
                &url,
                moorline::ConnectOptions::default(),
                moorline::ws::WsOptions::default(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            Box::new(s)
        }
        "moorline-h2" => {
            // The server process also runs the test kit's RFC 8441 server; the lead passes
            // its address on.
            let h2: SocketAddr = std::env::var("WS_IDLE_H2_ADDR").unwrap().parse().unwrap();
            let s = moorline::ws::connect(
                &format!("ws://{h2}/"),
                moorline::ConnectOptions::default().protocols(&[moorline::Protocol::Http2]),
                moorline::ws::WsOptions::default().http2(true),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            Box::new(s)
        }
        "tokio-tungstenite" => {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
            Box::new(ws)
        }
        "tokio-websockets" => {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let uri = url.parse::<http::Uri>().unwrap();
            let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri).connect_on(tcp).await.unwrap();
            Box::new(ws)
        }
        other => panic!("unknown client {other}"),
    }
}
