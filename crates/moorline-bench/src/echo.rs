//! End-to-end echo through the whole trading client (`Client`: its task, liveness with
//! heartbeats on, routing, the user's event queue) against tokio-tungstenite, fastwebsockets
//! and tokio-websockets used raw, in the same run, against the same echo server.
//!
//! - The server is tokio-websockets' own server, on a thread and runtime of its own, echoing
//!   each text or binary message with `send` and answering pings itself: an ordinary server
//!   nobody tuned for any client here.
//! - Every client sends the same text: a JSON-RPC notification
//!   (`{"method":"s","params":{"channel":"a","data":"xx…"}}`) padded to exactly 64 B or
//!   16 KiB. `moorline-client (raw)` uses the `Raw` dialect (every frame is data);
//!   `moorline-client (jsonrpc)` the `JsonRpc` dialect, which parses each frame and hands it
//!   out with its channel `a`, as a venue's feed would be. `moorline ws (no client)` is the
//!   connection layer alone (`moorline::ws`: its worker task, `ws_send`, `Events::await_ws`
//!   with a deadline): what the trading client adds is the difference to it.
//! - Throughput: 64 messages in flight, messages per second; the clients that can take the
//!   replies already there together write their replacements with one flush (tokio-tungstenite
//!   and tokio-websockets with `SinkExt::feed` and `flush`, moorline-client with `feed_text`
//!   and `flush`, moorline's connection layer with `ws_feed`), what a careful user does;
//!   fastwebsockets writes each frame as it goes (`write_frame`).
//!   Round trip: one message in flight, p50 and p99. Client CPU: user + system time of the
//!   measuring thread over the timed loop (`CLOCK_THREAD_CPUTIME_ID`), per message: the
//!   clients' runtime runs on that thread alone (the server has its own), so this is all the
//!   CPU the client spent, its connection's tasks included.
//! - Clients take turns within a run (rotating the order); each figure is the median over
//!   runs, and each ratio is paired: per run, against the peer with the best median, then the
//!   median of those ratios.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use moorline_client::dialect::{Dialect, JsonRpc, Raw};
use moorline_client::{Client, ClientConfig, ClientEvent, Payload};
use serde::{Deserialize, Serialize};

use crate::common::{median, ratio};
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

/// CPU time (user + system) of the calling thread, from the scheduler's own count
/// (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds). `getrusage(RUSAGE_THREAD)` was used before: on
/// kernels that sample CPU time by tick it reported 0 for a short run.
fn thread_cpu() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is supported on Linux.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return Duration::ZERO;
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
        // As the Sink + Stream peers do: the replies already here are taken together and their
        // replacements fed, then written with one flush.
        let (start, cpu) = (Instant::now(), thread_cpu());
        let mut sent = 0;
        while sent < IN_FLIGHT.min(total) {
            client.feed_text(message.clone()).await.unwrap();
            sent += 1;
        }
        client.flush();
        let mut received = 0;
        while received < total {
            client_next(&mut rx, channel).await;
            let mut ready = 1;
            while received + ready < total {
                match rx.recv().now_or_never() {
                    Some(Some(ClientEvent::Message { data: Payload::Text(_), channel: c })) => {
                        debug_assert_eq!(c.is_some(), channel);
                        ready += 1;
                    }
                    None => break,
                    other => panic!("expected a message, got {other:?}"),
                }
            }
            received += ready;
            let refill = ready.min(total - sent);
            for _ in 0..refill {
                client.feed_text(message.clone()).await.unwrap();
            }
            sent += refill;
            if refill > 0 {
                client.flush();
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

// ---- the connection layer alone (moorline::ws, no trading client): how much the client adds

async fn ws_open(addr: SocketAddr) -> moorline::ws::WsSession {
    let url = format!("ws://{addr}/");
    moorline::ws::connect(&url, moorline::ConnectOptions::default(), moorline::ws::WsOptions::default(), T)
        .await
        .unwrap()
}

fn ws_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut s = ws_open(addr).await;
        let message = moorline::ws::Message::Text(moorline::ws::Utf8Bytes::from(payload(size)));
        let (start, cpu) = (Instant::now(), thread_cpu());
        let mut sent = 0;
        while sent < IN_FLIGHT.min(total) {
            s.conn.ws_feed(&s.stream, message.clone()).await.unwrap();
            sent += 1;
        }
        for _ in 0..total {
            s.events.await_ws(&s.stream, T).await.unwrap();
            if sent < total {
                s.conn.ws_feed(&s.stream, message.clone()).await.unwrap();
                sent += 1;
            }
        }
        let timed = Timed { wall: start.elapsed(), cpu: thread_cpu() - cpu };
        s.conn.close();
        timed
    })
}

fn ws_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Samples> {
    Box::pin(async move {
        let mut s = ws_open(addr).await;
        let message = moorline::ws::Message::Text(moorline::ws::Utf8Bytes::from(payload(size)));
        let mut out = Vec::with_capacity(n);
        let cpu = thread_cpu();
        for _ in 0..n {
            let start = Instant::now();
            s.conn.ws_send(&s.stream, message.clone()).await.unwrap();
            s.events.await_ws(&s.stream, T).await.unwrap();
            out.push(start.elapsed());
        }
        let cpu = thread_cpu() - cpu;
        s.conn.close();
        (out, cpu)
    })
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
fn paired_ratio(per_run: &[Vec<f64>], i: usize, best: Option<usize>) -> Option<f64> {
    best.map(|b| median(per_run[i].iter().zip(&per_run[b]).map(|(a, b)| a / b).collect()))
}

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoOptions {
    /// Runs (each client once per run, in rotating order); at least 1.
    pub runs: usize,
    /// `""` (everything), `"throughput"`, `"latency"`, `"64"` or `"16384"`.
    pub only: String,
    /// The clients to run (names as in the table); `None`: all.
    pub clients: Option<Vec<String>>,
    /// Messages per throughput run; `None`: 50,000 at 64 B, 10,000 at 16 KiB.
    pub messages: Option<usize>,
    /// Round trips per latency run.
    pub samples: usize,
}

impl Default for EchoOptions {
    fn default() -> Self {
        Self { runs: 5, only: String::new(), clients: None, messages: None, samples: 5_000 }
    }
}

impl EchoOptions {
    /// The options `cargo bench --bench client_echo` reads from its environment:
    /// `CLIENT_ECHO_RUNS`, `CLIENT_ECHO_ONLY`, `CLIENT_ECHO_CLIENTS` (a comma list),
    /// `CLIENT_ECHO_MESSAGES`, `CLIENT_ECHO_SAMPLES`.
    pub fn from_env() -> Self {
        let d = Self::default();
        Self {
            runs: env("CLIENT_ECHO_RUNS").unwrap_or(d.runs).max(1),
            only: std::env::var("CLIENT_ECHO_ONLY").unwrap_or_default(),
            clients: std::env::var("CLIENT_ECHO_CLIENTS")
                .ok()
                .map(|l| l.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect()),
            messages: env("CLIENT_ECHO_MESSAGES"),
            samples: env("CLIENT_ECHO_SAMPLES").unwrap_or(d.samples).max(1),
        }
    }
}

/// The names of the clients measured, in table order.
pub const CLIENTS: [&str; 6] = [
    "moorline-client (raw)",
    "moorline-client (jsonrpc)",
    "moorline ws (no client)",
    "tokio-tungstenite",
    "fastwebsockets",
    "tokio-websockets",
];

/// One client's throughput row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// The client.
    pub client: String,
    /// The trading client (not a peer).
    pub ours: bool,
    /// Messages per second (median over runs).
    pub msg_s: f64,
    /// Megabytes per second.
    pub mb_s: f64,
    /// Paired ratio of msg/s to the best peer's (`None`: no peer measured).
    pub vs_best_peer: Option<f64>,
    /// Client CPU per message, nanoseconds.
    pub cpu_ns_per_msg: f64,
    /// Paired ratio of CPU per message to the best (lowest) peer's.
    pub cpu_vs_best_peer: Option<f64>,
}

/// Throughput at one message size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputTable {
    /// `64 B` or `16 KiB`.
    pub label: String,
    /// Message size in bytes.
    pub size: usize,
    /// Messages per run.
    pub messages: usize,
    /// One row per client.
    pub rows: Vec<ThroughputRow>,
}

/// One client's round-trip row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    /// The client.
    pub client: String,
    /// The trading client (not a peer).
    pub ours: bool,
    /// Median round trip, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Paired ratio of p50 to the best peer's.
    pub p50_vs_best_peer: Option<f64>,
    /// Paired ratio of p99 to the best peer's.
    pub p99_vs_best_peer: Option<f64>,
    /// Client CPU per round trip, nanoseconds.
    pub cpu_ns_per_round_trip: f64,
}

/// Round trips, 64 B, one in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// Round trips per run.
    pub samples: usize,
    /// One row per client.
    pub rows: Vec<LatencyRow>,
}

/// Everything one echo benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchoReport {
    /// Runs.
    pub runs: usize,
    /// Throughput tables, one per size measured.
    pub throughput: Vec<ThroughputTable>,
    /// The round-trip table, if measured.
    pub latency: Option<LatencyTable>,
}

impl EchoReport {
    /// The report as Markdown tables with their headings.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "echo through the trading client vs raw WebSocket clients, loopback, {} runs", self.runs);
        let _ = writeln!(
            s,
            "server: tokio-websockets (its Sink and Stream), its own thread; payload: a JSON-RPC notification"
        );
        let _ = writeln!(
            s,
            "figures: median over runs; \"vs best peer\": median over runs of the ratio to the peer with the"
        );
        let _ = writeln!(
            s,
            "best median in the same run (paired); CPU: the client thread's user + system time per message\n"
        );
        for t in &self.throughput {
            let _ = writeln!(s, "throughput, {} text, {IN_FLIGHT} in flight, {} messages per run", t.label, t.messages);
            let _ = writeln!(s, "| client | msg/s | MB/s | vs best peer | client CPU ns/msg | CPU vs best peer |");
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
            for r in &t.rows {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {:.1} | {} | {:.0} | {} |",
                    r.client,
                    r.msg_s,
                    r.mb_s,
                    ratio(r.vs_best_peer),
                    r.cpu_ns_per_msg,
                    ratio(r.cpu_vs_best_peer)
                );
            }
            let _ = writeln!(s);
        }
        if let Some(l) = &self.latency {
            let _ = writeln!(s, "round trip, 64 B text, one in flight, {} samples per run", l.samples);
            let _ = writeln!(
                s,
                "| client | p50 µs | p99 µs | p50 vs best peer | p99 vs best peer | client CPU ns/round trip |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
            for r in &l.rows {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} | {:.1} | {} | {} | {:.0} |",
                    r.client,
                    r.p50_us,
                    r.p99_us,
                    ratio(r.p50_vs_best_peer),
                    ratio(r.p99_vs_best_peer),
                    r.cpu_ns_per_round_trip
                );
            }
        }
        s
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs the echo benchmark in this process (the harness panics if a loopback peer fails:
/// [`crate::run_echo`] runs it in a child process and reports that as an error).
pub fn measure(opts: &EchoOptions) -> EchoReport {
    let runs = opts.runs.max(1);
    let contenders = [
        Contender { name: CLIENTS[0], ours: true, throughput: raw_throughput, latency: raw_latency },
        Contender { name: CLIENTS[1], ours: true, throughput: jsonrpc_throughput, latency: jsonrpc_latency },
        Contender { name: CLIENTS[2], ours: true, throughput: ws_throughput, latency: ws_latency },
        Contender { name: CLIENTS[3], ours: false, throughput: tungstenite_throughput, latency: tungstenite_latency },
        Contender { name: CLIENTS[4], ours: false, throughput: fast_throughput, latency: fast_latency },
        Contender { name: CLIENTS[5], ours: false, throughput: twss_throughput, latency: twss_latency },
    ];
    let clients: Vec<Contender> = match &opts.clients {
        Some(list) => contenders.into_iter().filter(|c| list.iter().any(|n| n == c.name)).collect(),
        None => contenders.into_iter().collect(),
    };
    let addr = start_server();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let only = opts.only.as_str();
    let mut report = EchoReport { runs, throughput: Vec::new(), latency: None };
    let sizes = [("64 B", 64usize, 50_000usize), ("16 KiB", 16 << 10, 10_000)];
    for &(label, size, default_total) in sizes.iter().filter(|(_, size, _)| match only {
        "" | "throughput" => true,
        "latency" => false,
        only => only == size.to_string(),
    }) {
        let total: usize = opts.messages.unwrap_or(default_total).max(1);
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
        let rows = clients
            .iter()
            .enumerate()
            .map(|(i, c)| ThroughputRow {
                client: c.name.to_owned(),
                ours: c.ours,
                msg_s: medians[i],
                mb_s: medians[i] * size as f64 / 1e6,
                vs_best_peer: paired_ratio(&rates, i, best),
                cpu_ns_per_msg: median(cpus[i].clone()),
                cpu_vs_best_peer: paired_ratio(&cpus, i, best_cpu),
            })
            .collect();
        report.throughput.push(ThroughputTable { label: label.to_owned(), size, messages: total, rows });
    }
    if !only.is_empty() && only != "latency" {
        return report;
    }
    let n = opts.samples.max(1);
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
    let rows = clients
        .iter()
        .enumerate()
        .map(|(i, c)| LatencyRow {
            client: c.name.to_owned(),
            ours: c.ours,
            p50_us: p50[i],
            p99_us: p99[i],
            p50_vs_best_peer: paired_ratio(&p50s, i, best50),
            p99_vs_best_peer: paired_ratio(&p99s, i, best99),
            cpu_ns_per_round_trip: median(cpus[i].clone()),
        })
        .collect();
    report.latency = Some(LatencyTable { samples: n, rows });
    report
}
