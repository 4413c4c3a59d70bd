//! End-to-end echo through the whole trading client (`Client`: its task, liveness with
//! heartbeats on, routing, the user's event queue) against tokio-tungstenite, fastwebsockets
//! and tokio-websockets used raw, in the same run, against the same echo server.
//!
//! - The server is tokio-websockets' own server, on a thread and runtime of its own, echoing
//!   each text or binary message with `send` and answering pings itself: an ordinary server nobody tuned for any
//!   client here (unlike `moorline/benches/ws_echo.rs`, whose batching echo is ours).
//! - Every client sends the same text: a JSON-RPC notification
//!   (`{"method":"s","params":{"channel":"a","data":"xx…"}}`) padded to exactly 64 B or
//!   16 KiB. `moorline-client (raw)` uses the `Raw` dialect (every frame is data);
//!   `moorline-client (jsonrpc)` the `JsonRpc` dialect, which parses each frame and hands it
//!   out with its channel `a`, as a venue's feed would be.
//! - Throughput: 64 messages in flight (a reply taken, a message sent), messages per second.
//!   Round trip: one message in flight, p50 and p99. Client CPU: user + system time of the
//!   bench thread over the timed loop (`getrusage(RUSAGE_THREAD)`), per message: the
//!   clients' runtime runs on that thread alone (the server has its own), so this is all the
//!   CPU the client spent, its connection's tasks included.
//! - Clients take turns within a run (rotating the order); each figure is the median over
//!   runs, and each ratio is paired: per run, against the peer with the best median, then the
//!   median of those ratios.
//!
//! `cargo bench -p moorline-client --bench client_echo`. Environment: `CLIENT_ECHO_RUNS` (5),
//! `CLIENT_ECHO_ONLY` (`64`, `16384`, `throughput` or `latency`), `CLIENT_ECHO_CLIENTS` (a comma
//! list of client names), `CLIENT_ECHO_MESSAGES` (messages per throughput run: 50,000 at 64 B,
//! 10,000 at 16 KiB by default) and `CLIENT_ECHO_SAMPLES` (round trips per run, 5,000). A quick
//! look: `CLIENT_ECHO_RUNS=1 CLIENT_ECHO_MESSAGES=2000 CLIENT_ECHO_SAMPLES=500`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use moorline_client::dialect::{Dialect, JsonRpc, Raw};
use moorline_client::{Client, ClientConfig, ClientEvent, Payload};
use tokio::net::{TcpListener, TcpStream};

const IN_FLIGHT: usize = 64;
const T: Duration = Duration::from_secs(30);

/// tokio-websockets' server on its own thread: one task per connection, each message echoed.
fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let Ok((_, ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else {
                        return;
                    };
                    let _ = echo(ws).await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// Echoes text and binary messages until the client closes (tokio-websockets answers pings
/// and the close itself, and flushes queued replies whenever it reads).
async fn echo(mut ws: tokio_websockets::WebSocketStream<TcpStream>) -> Result<(), tokio_websockets::Error> {
    while let Some(m) = ws.next().await {
        let m = m?;
        if m.is_text() || m.is_binary() {
            ws.send(m).await?;
        }
    }
    Ok(())
}

/// A JSON-RPC notification of exactly `size` bytes (at least the envelope's 49).
fn payload(size: usize) -> String {
    let envelope = r#"{"method":"s","params":{"channel":"a","data":""}}"#;
    let pad = size.saturating_sub(envelope.len());
    let text = format!(r#"{{"method":"s","params":{{"channel":"a","data":"{}"}}}}"#, "x".repeat(pad));
    debug_assert!(size < envelope.len() || text.len() == size);
    text
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a valid, writable rusage; RUSAGE_THREAD is supported on Linux.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        if rc != 0 {
            return Duration::ZERO;
        }
        // SAFETY: getrusage returned 0, so it filled the struct.
        let usage = unsafe { usage.assume_init() };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Duration::ZERO
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What one throughput run measured: wall time and the client's CPU time.
#[derive(Clone, Copy)]
struct Timed {
    wall: Duration,
    cpu: Duration,
}

/// Round-trip times and the client's CPU time over them.
type Samples = (Vec<Duration>, Duration);

/// One client under test.
struct Contender {
    name: &'static str,
    /// The trading client (not a peer to compare with).
    ours: bool,
    throughput: fn(SocketAddr, usize, usize) -> BoxFut<Timed>,
    latency: fn(SocketAddr, usize, usize) -> BoxFut<Samples>,
}

// ---- moorline-client

async fn client_open(addr: SocketAddr, dialect: impl Dialect) -> (Client, moorline_client::queue::EventStream) {
    // Defaults: liveness on (a ping after 10 s of silence, dead after 30 s), 8 MiB incoming
    // queue with backpressure.
    let (client, mut rx) = Client::connect(&format!("ws://{addr}/"), ClientConfig::default(), dialect).unwrap();
    loop {
        match tokio::time::timeout(T, rx.recv()).await.unwrap() {
            Some(ClientEvent::Restored { .. }) => break,
            Some(ClientEvent::Connected { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (client, rx)
}

/// The next event, which must be a data message (with channel `a` when `channel`).
async fn client_next(rx: &mut moorline_client::queue::EventStream, channel: bool) {
    match rx.recv().await {
        Some(ClientEvent::Message { data: Payload::Text(_), channel: c }) => {
            debug_assert_eq!(c.is_some(), channel);
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

fn client_throughput(addr: SocketAddr, size: usize, total: usize, dialect: impl Dialect) -> BoxFut<Timed> {
    let channel = dialect.name() == "jsonrpc";
    Box::pin(async move {
        let (client, mut rx) = client_open(addr, dialect).await;
        let message = moorline::ws::Utf8Bytes::from(payload(size));
        let (start, cpu) = (Instant::now(), thread_cpu());
        let mut sent = 0;
        while sent < IN_FLIGHT.min(total) {
            client.send_text(message.clone()).await.unwrap();
            sent += 1;
        }
        for _ in 0..total {
            client_next(&mut rx, channel).await;
            if sent < total {
                client.send_text(message.clone()).await.unwrap();
                sent += 1;
            }
        }
        let timed = Timed { wall: start.elapsed(), cpu: thread_cpu() - cpu };
        client.close().await.unwrap();
        timed
    })
}

fn client_latency(addr: SocketAddr, size: usize, n: usize, dialect: impl Dialect) -> BoxFut<Samples> {
    let channel = dialect.name() == "jsonrpc";
    Box::pin(async move {
        let (client, mut rx) = client_open(addr, dialect).await;
        let message = moorline::ws::Utf8Bytes::from(payload(size));
        let mut out = Vec::with_capacity(n);
        let cpu = thread_cpu();
        for _ in 0..n {
            let start = Instant::now();
            client.send_text(message.clone()).await.unwrap();
            client_next(&mut rx, channel).await;
            out.push(start.elapsed());
        }
        let cpu = thread_cpu() - cpu;
        client.close().await.unwrap();
        (out, cpu)
    })
}

fn raw_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    client_throughput(addr, size, total, Raw)
}

fn raw_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Samples> {
    client_latency(addr, size, n, Raw)
}

fn jsonrpc_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    client_throughput(addr, size, total, JsonRpc::new())
}

fn jsonrpc_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Samples> {
    client_latency(addr, size, n, JsonRpc::new())
}

// ---- Sink + Stream peers (tokio-tungstenite, tokio-websockets) share these loops.

/// Echoes `total` messages with `IN_FLIGHT` outstanding; replies already here are taken
/// together and their replacements sent with one flush (what a careful user does).
async fn sink_stream_throughput<W, M, R, E>(ws: &mut W, message: M, total: usize) -> Timed
where
    W: Sink<M> + Stream<Item = Result<R, E>> + Unpin,
    <W as Sink<M>>::Error: std::fmt::Debug,
    M: Clone,
    E: std::fmt::Debug,
{
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut sent = 0;
    while sent < IN_FLIGHT.min(total) {
        ws.feed(message.clone()).await.unwrap();
        sent += 1;
    }
    ws.flush().await.unwrap();
    let mut received = 0;
    while received < total {
        ws.next().await.unwrap().unwrap();
        let mut ready = 1;
        while let Some(Some(m)) = ws.next().now_or_never() {
            m.unwrap();
            ready += 1;
        }
        received += ready;
        let refill = ready.min(total - sent);
        for _ in 0..refill {
            ws.feed(message.clone()).await.unwrap();
        }
        sent += refill;
        if refill > 0 {
            ws.flush().await.unwrap();
        }
    }
    Timed { wall: start.elapsed(), cpu: thread_cpu() - cpu }
}

/// `n` round trips of `message`, one in flight.
async fn sink_stream_latency<W, M, R, E>(ws: &mut W, message: M, n: usize) -> (Vec<Duration>, Duration)
where
    W: Sink<M> + Stream<Item = Result<R, E>> + Unpin,
    <W as Sink<M>>::Error: std::fmt::Debug,
    M: Clone,
    E: std::fmt::Debug,
{
    let mut out = Vec::with_capacity(n);
    let cpu = thread_cpu();
    for _ in 0..n {
        let start = Instant::now();
        ws.send(message.clone()).await.unwrap();
        ws.next().await.unwrap().unwrap();
        out.push(start.elapsed());
    }
    (out, thread_cpu() - cpu)
}

// ---- tokio-tungstenite

async fn tungstenite_open(
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/"), tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    ws
}

fn tungstenite_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut ws = tungstenite_open(addr).await;
        let timed = sink_stream_throughput(&mut ws, tungstenite::Message::text(payload(size)), total).await;
        let _ = ws.close(None).await;
        timed
    })
}

fn tungstenite_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Samples> {
    Box::pin(async move {
        let mut ws = tungstenite_open(addr).await;
        let out = sink_stream_latency(&mut ws, tungstenite::Message::text(payload(size)), n).await;
        let _ = ws.close(None).await;
        out
    })
}

// ---- fastwebsockets (handshake by hand: its client handshake needs hyper)

async fn fast_open(addr: SocketAddr) -> fastwebsockets::FragmentCollector<TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client);
    fastwebsockets::FragmentCollector::new(ws)
}

fn fast_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut ws = fast_open(addr).await;
        let payload = payload(size).into_bytes();
        let frame = || fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(&payload));
        let (start, cpu) = (Instant::now(), thread_cpu());
        let mut sent = 0;
        while sent < IN_FLIGHT.min(total) {
            ws.write_frame(frame()).await.unwrap();
            sent += 1;
        }
        for _ in 0..total {
            ws.read_frame().await.unwrap();
            if sent < total {
                ws.write_frame(frame()).await.unwrap();
                sent += 1;
            }
        }
        Timed { wall: start.elapsed(), cpu: thread_cpu() - cpu }
    })
}

fn fast_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Samples> {
    Box::pin(async move {
        let mut ws = fast_open(addr).await;
        let payload = payload(size).into_bytes();
        let mut out = Vec::with_capacity(n);
        let cpu = thread_cpu();
        for _ in 0..n {
            let start = Instant::now();
            ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(&payload))).await.unwrap();
            ws.read_frame().await.unwrap();
            out.push(start.elapsed());
        }
        (out, thread_cpu() - cpu)
    })
}

// ---- tokio-websockets

async fn twss_open(addr: SocketAddr) -> tokio_websockets::WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let uri = moorline::http::Uri::try_from(format!("ws://{addr}/")).unwrap();
    let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri).connect_on(tcp).await.unwrap();
    ws
}

fn twss_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut ws = twss_open(addr).await;
        let timed = sink_stream_throughput(&mut ws, tokio_websockets::Message::text(payload(size)), total).await;
        let _ = ws.close().await;
        timed
    })
}

fn twss_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Samples> {
    Box::pin(async move {
        let mut ws = twss_open(addr).await;
        let out = sink_stream_latency(&mut ws, tokio_websockets::Message::text(payload(size)), n).await;
        let _ = ws.close().await;
        out
    })
}

// ---- the run

/// Runs a client as a spawned task (as applications run their connection code), on the
/// current-thread runtime, so it and its connection's tasks run on this thread only.
fn spawned<T: Send + 'static>(rt: &tokio::runtime::Runtime, f: BoxFut<T>) -> T {
    rt.block_on(async { tokio::spawn(f).await.unwrap() })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The index of the peer with the best median (highest when `higher_is_better`, else lowest).
fn best_peer(clients: &[Contender], medians: &[f64], higher_is_better: bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for i in (0..medians.len()).filter(|&i| !clients[i].ours) {
        best = match best {
            Some(b) if (medians[i] > medians[b]) != higher_is_better || medians[i] == medians[b] => Some(b),
            _ => Some(i),
        };
    }
    best
}

/// Paired ratio: the median over runs of `per_run[i][run] / per_run[best][run]`.
fn paired_ratio(per_run: &[Vec<f64>], i: usize, best: Option<usize>) -> String {
    match best {
        Some(b) => format!("{:.2}x", median(per_run[i].iter().zip(&per_run[b]).map(|(a, b)| a / b).collect())),
        None => "-".into(),
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let runs: usize = env("CLIENT_ECHO_RUNS").unwrap_or(5).max(1);
    let contenders = [
        Contender { name: "moorline-client (raw)", ours: true, throughput: raw_throughput, latency: raw_latency },
        Contender {
            name: "moorline-client (jsonrpc)",
            ours: true,
            throughput: jsonrpc_throughput,
            latency: jsonrpc_latency,
        },
        Contender {
            name: "tokio-tungstenite",
            ours: false,
            throughput: tungstenite_throughput,
            latency: tungstenite_latency,
        },
        Contender { name: "fastwebsockets", ours: false, throughput: fast_throughput, latency: fast_latency },
        Contender { name: "tokio-websockets", ours: false, throughput: twss_throughput, latency: twss_latency },
    ];
    let clients: Vec<Contender> = match std::env::var("CLIENT_ECHO_CLIENTS") {
        Ok(list) => contenders.into_iter().filter(|c| list.split(',').any(|n| n.trim() == c.name)).collect(),
        Err(_) => contenders.into_iter().collect(),
    };
    let addr = start_server();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let only = std::env::var("CLIENT_ECHO_ONLY").unwrap_or_default();

    println!("echo through the trading client vs raw WebSocket clients, loopback, {runs} runs");
    println!("server: tokio-websockets (its Sink and Stream), its own thread; payload: a JSON-RPC notification");
    println!("figures: median over runs; \"vs best peer\": median over runs of the ratio to the peer with the");
    println!("best median in the same run (paired); CPU: the client thread's user + system time per message\n");
    let sizes = [("64 B", 64usize, 50_000usize), ("16 KiB", 16 << 10, 10_000)];
    for &(label, size, default_total) in sizes.iter().filter(|(_, size, _)| match only.as_str() {
        "" | "throughput" => true,
        "latency" => false,
        only => only == size.to_string(),
    }) {
        let total: usize = env("CLIENT_ECHO_MESSAGES").unwrap_or(default_total).max(1);
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        for run in 0..runs {
            for k in 0..clients.len() {
                let i = (k + run) % clients.len();
                let t = spawned(&rt, (clients[i].throughput)(addr, size, total));
                rates[i].push(total as f64 / t.wall.as_secs_f64());
                cpus[i].push(t.cpu.as_secs_f64() * 1e9 / total as f64);
            }
        }
        let medians: Vec<f64> = rates.iter().cloned().map(median).collect();
        let best = best_peer(&clients, &medians, true);
        let best_cpu = best_peer(&clients, &cpus.iter().cloned().map(median).collect::<Vec<_>>(), false);
        println!("throughput, {label} text, {IN_FLIGHT} in flight, {total} messages per run");
        println!("| client | msg/s | MB/s | vs best peer | client CPU ns/msg | CPU vs best peer |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (i, c) in clients.iter().enumerate() {
            println!(
                "| {} | {:.0} | {:.1} | {} | {:.0} | {} |",
                c.name,
                medians[i],
                medians[i] * size as f64 / 1e6,
                paired_ratio(&rates, i, best),
                median(cpus[i].clone()),
                paired_ratio(&cpus, i, best_cpu),
            );
        }
        println!();
    }

    if !only.is_empty() && only != "latency" {
        return;
    }
    let n: usize = env("CLIENT_ECHO_SAMPLES").unwrap_or(5_000).max(1);
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for run in 0..runs {
        for k in 0..clients.len() {
            let i = (k + run) % clients.len();
            let (mut samples, cpu) = spawned(&rt, (clients[i].latency)(addr, 64, n));
            samples.sort();
            p50s[i].push(percentile(&samples, 0.50).as_secs_f64() * 1e6);
            p99s[i].push(percentile(&samples, 0.99).as_secs_f64() * 1e6);
            cpus[i].push(cpu.as_secs_f64() * 1e9 / n as f64);
        }
    }
    let p50: Vec<f64> = p50s.iter().cloned().map(median).collect();
    let p99: Vec<f64> = p99s.iter().cloned().map(median).collect();
    let (best50, best99) = (best_peer(&clients, &p50, false), best_peer(&clients, &p99, false));
    println!("round trip, 64 B text, one in flight, {n} samples per run");
    println!("| client | p50 µs | p99 µs | p50 vs best peer | p99 vs best peer | client CPU ns/round trip |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, c) in clients.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {:.0} |",
            c.name,
            p50[i],
            p99[i],
            paired_ratio(&p50s, i, best50),
            paired_ratio(&p99s, i, best99),
            median(cpus[i].clone()),
        );
    }
}
