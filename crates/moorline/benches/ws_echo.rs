//! End-to-end WebSocket echo over loopback: throughput with 64 messages in flight (64 B and
//! 16 KiB text) and round-trip latency (64 B, one in flight, p50/p99), for moorline's
//! `Connection` against tokio-tungstenite, fastwebsockets and tokio-websockets as clients,
//! all in the same run against the same echo server (tokio-websockets' server on its own
//! thread). Each figure is the median of several runs; clients take turns within a run, and
//! the ratios are paired: per run, against the peer with the best median, then the median.
//! The row `moorline (HTTP/2)` is moorline's WebSocket over HTTP/2 (RFC 8441) against the
//! same server, which serves HTTP/2 connections with h2 and the same batching echo per
//! stream (none of the peers speaks RFC 8441, so its ratio is to the same best peer over
//! HTTP/1.1).
//!
//! `cargo bench -p moorline --bench ws_echo`. Environment: `WS_ECHO_RUNS` (run count, 5), `WS_ECHO_ONLY`
//! (`64`, `16384`, `throughput` or `latency`), `WS_ECHO_CLIENTS` (a comma list of client names) and
//! `WS_ECHO_SCALE` (N times as many messages per run, for profiling).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use moorline::ws::{Message, WsOptions};
use moorline::{ConnectOptions, Protocol, RetryPolicy};
use tokio::net::{TcpListener, TcpStream};

const IN_FLIGHT: usize = 64;
const T: Duration = Duration::from_secs(30);

/// The shared echo server. An HTTP/2 connection (the client preface in clear text) is served
/// by [`serve_h2`]. Otherwise tokio-websockets answers the upgrade; then a plain loop echoes
/// with moorline-proto's server-role codec: it reads what is there, decodes every complete
/// message and writes all the replies with one write. (Echoing through tokio-websockets'
/// `Stream`/`Sink` wrote one frame per syscall, since its `poll_next` flushes: the server,
/// not the client under test, set the pace.) Every client talks to this same server.
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
                    let mut preface = [0u8; 14];
                    if tcp.peek(&mut preface).await.is_ok_and(|n| n == 14) && &preface == b"PRI * HTTP/2.0" {
                        return serve_h2(tcp).await;
                    }
                    let Ok((_, ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else {
                        return;
                    };
                    let _ = echo(ws.into_inner()).await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// Echoes text and binary messages, answers pings, returns after the close handshake.
async fn echo(mut tcp: TcpStream) -> std::io::Result<()> {
    use moorline_proto::ws::{Decoder, EncodeOptions, Encoder, Limits, Message as M, Role};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
    let mut encoder = Encoder::new(Role::Server, EncodeOptions::default(), None);
    let (mut rbuf, mut wbuf) = (bytes::BytesMut::with_capacity(256 << 10), bytes::BytesMut::new());
    loop {
        if rbuf.capacity() - rbuf.len() < 64 << 10 {
            rbuf.reserve(256 << 10);
        }
        if tcp.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        let mut closing = false;
        while let Some(m) = decoder.decode(&mut rbuf).map_err(std::io::Error::other)? {
            let reply = match m {
                M::Text(_) | M::Binary(_) => m,
                M::Ping(p) => M::Pong(p),
                M::Pong(_) => continue,
                M::Close(_) => {
                    closing = true;
                    M::Close(None)
                }
            };
            encoder.encode(&reply, &mut || [0; 4], &mut wbuf).map_err(std::io::Error::other)?;
        }
        tcp.write_all(&wbuf).await?;
        wbuf.clear();
        if closing {
            return Ok(());
        }
    }
}

/// An HTTP/2 connection: every extended CONNECT (RFC 8441) is answered `200` and echoed by
/// [`echo_h2`] on its own task. Windows of 1 MiB per stream and 4 MiB per connection: 64
/// messages of 16 KiB in flight fit, so the server's flow control does not set the pace.
async fn serve_h2(tcp: TcpStream) {
    let Ok(mut conn) = h2::server::Builder::new()
        .enable_connect_protocol()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
    else {
        return;
    };
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        let Ok(send) = respond.send_response(http::Response::new(()), false) else { continue };
        tokio::spawn(async move {
            let _ = echo_h2(request.into_body(), send).await;
        });
    }
}

/// [`echo`] over one HTTP/2 stream: takes the DATA that is there, decodes every complete
/// message and sends all the replies at once (as DATA within flow control).
async fn echo_h2(mut body: h2::RecvStream, mut send: h2::SendStream<bytes::Bytes>) -> Result<(), h2::Error> {
    use moorline_proto::ws::{Decoder, EncodeOptions, Encoder, Limits, Message as M, Role};
    use std::future::poll_fn;
    let mut decoder = Decoder::new(Role::Server, Limits::default(), None);
    let mut encoder = Encoder::new(Role::Server, EncodeOptions::default(), None);
    let (mut rbuf, mut wbuf) = (bytes::BytesMut::new(), bytes::BytesMut::new());
    loop {
        let Some(data) = body.data().await else { return Ok(()) };
        let mut data = Some(data?);
        while let Some(d) = data.take() {
            let _ = body.flow_control().release_capacity(d.len());
            rbuf.extend_from_slice(&d);
            if let Some(Some(more)) = body.data().now_or_never() {
                data = Some(more?);
            }
        }
        let mut closing = false;
        while let Ok(Some(m)) = decoder.decode(&mut rbuf) {
            let reply = match m {
                M::Text(_) | M::Binary(_) => m,
                M::Ping(p) => M::Pong(p),
                M::Pong(_) => continue,
                M::Close(_) => {
                    closing = true;
                    M::Close(None)
                }
            };
            let _ = encoder.encode(&reply, &mut || [0; 4], &mut wbuf);
        }
        while !wbuf.is_empty() {
            send.reserve_capacity(wbuf.len());
            let capacity = send.capacity();
            if capacity > 0 {
                send.send_data(wbuf.split_to(capacity.min(wbuf.len())).freeze(), false)?;
                continue;
            }
            match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
        if closing {
            let _ = send.send_data(bytes::Bytes::new(), true);
            return Ok(());
        }
    }
}

fn text(len: usize) -> String {
    "x".repeat(len)
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One client under test: `throughput(addr, size, total)` returns the time to echo `total`
/// messages with `IN_FLIGHT` outstanding; `latency(addr, size, n)` the round-trip times.
struct Client {
    name: &'static str,
    /// moorline itself (over either protocol), not a peer to compare with.
    ours: bool,
    throughput: fn(SocketAddr, usize, usize) -> BoxFut<'static, Duration>,
    latency: fn(SocketAddr, usize, usize) -> BoxFut<'static, Vec<Duration>>,
}

// ---- moorline

async fn moorline_open(
    addr: SocketAddr,
    protocol: Protocol,
) -> (moorline::Connection, moorline::Events, moorline::StreamRef) {
    let opts = ConnectOptions::default().protocols(&[protocol]).retry(RetryPolicy::Never).keepalive(None);
    let (conn, mut events) = moorline::open("127.0.0.1", addr.port(), opts).unwrap();
    events.await_up(T).await.unwrap();
    let ws = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
    events.await_ws_upgrade(&ws, T).await.unwrap();
    (conn, events, ws)
}

fn moorline_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<'static, Duration> {
    moorline_throughput_over(Protocol::Http1, addr, size, total)
}

fn moorline_h2_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<'static, Duration> {
    moorline_throughput_over(Protocol::Http2, addr, size, total)
}

fn moorline_throughput_over(
    protocol: Protocol,
    addr: SocketAddr,
    size: usize,
    total: usize,
) -> BoxFut<'static, Duration> {
    Box::pin(async move {
        let (conn, mut events, ws) = moorline_open(addr, protocol).await;
        let message = Message::text(text(size));
        let start = Instant::now();
        let mut sent = 0;
        // `ws_feed` queues; what is fed leaves in one write once this task waits (the
        // `feed`-then-`flush` of the Sink clients below).
        while sent < IN_FLIGHT.min(total) {
            conn.ws_feed(&ws, message.clone()).await.unwrap();
            sent += 1;
        }
        for _ in 0..total {
            let m = events.await_ws(&ws, T).await.unwrap();
            debug_assert!(matches!(m, Message::Text(_)));
            if sent < total {
                conn.ws_feed(&ws, message.clone()).await.unwrap();
                sent += 1;
            }
        }
        start.elapsed()
    })
}

fn moorline_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<'static, Vec<Duration>> {
    moorline_latency_over(Protocol::Http1, addr, size, n)
}

fn moorline_h2_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<'static, Vec<Duration>> {
    moorline_latency_over(Protocol::Http2, addr, size, n)
}

fn moorline_latency_over(
    protocol: Protocol,
    addr: SocketAddr,
    size: usize,
    n: usize,
) -> BoxFut<'static, Vec<Duration>> {
    Box::pin(async move {
        let (conn, mut events, ws) = moorline_open(addr, protocol).await;
        let message = Message::text(text(size));
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            conn.ws_send(&ws, message.clone()).await.unwrap();
            events.await_ws(&ws, T).await.unwrap();
            out.push(start.elapsed());
        }
        out
    })
}

// ---- Sink + Stream clients (tokio-tungstenite, tokio-websockets) share these loops.

/// Echoes `total` messages with `IN_FLIGHT` outstanding. Replies already here are taken
/// together and their replacements sent with one flush: the batching a careful user of a
/// `Sink`/`Stream` would do.
async fn sink_stream_throughput<W, M, R, E>(ws: &mut W, message: M, total: usize) -> Duration
where
    W: Sink<M> + Stream<Item = Result<R, E>> + Unpin,
    <W as Sink<M>>::Error: std::fmt::Debug,
    M: Clone,
    E: std::fmt::Debug,
{
    let start = Instant::now();
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
    start.elapsed()
}

/// `n` round trips of `message`, one in flight.
async fn sink_stream_latency<W, M, R, E>(ws: &mut W, message: M, n: usize) -> Vec<Duration>
where
    W: Sink<M> + Stream<Item = Result<R, E>> + Unpin,
    <W as Sink<M>>::Error: std::fmt::Debug,
    M: Clone,
    E: std::fmt::Debug,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        ws.send(message.clone()).await.unwrap();
        ws.next().await.unwrap().unwrap();
        out.push(start.elapsed());
    }
    out
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

fn tungstenite_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<'static, Duration> {
    Box::pin(async move {
        let mut ws = tungstenite_open(addr).await;
        sink_stream_throughput(&mut ws, tungstenite::Message::text(text(size)), total).await
    })
}

fn tungstenite_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<'static, Vec<Duration>> {
    Box::pin(async move {
        let mut ws = tungstenite_open(addr).await;
        sink_stream_latency(&mut ws, tungstenite::Message::text(text(size)), n).await
    })
}

// ---- fastwebsockets (handshake done by hand: its client handshake needs hyper)

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
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client);
    fastwebsockets::FragmentCollector::new(ws)
}

fn fast_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<'static, Duration> {
    Box::pin(async move {
        let mut ws = fast_open(addr).await;
        let payload = text(size).into_bytes();
        let frame = || fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(&payload));
        let start = Instant::now();
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
        start.elapsed()
    })
}

fn fast_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<'static, Vec<Duration>> {
    Box::pin(async move {
        let mut ws = fast_open(addr).await;
        let payload = text(size).into_bytes();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            ws.write_frame(fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(&payload))).await.unwrap();
            ws.read_frame().await.unwrap();
            out.push(start.elapsed());
        }
        out
    })
}

// ---- tokio-websockets

async fn twss_open(addr: SocketAddr) -> tokio_websockets::WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let uri = http::Uri::try_from(format!("ws://{addr}/")).unwrap();
    let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri).connect_on(tcp).await.unwrap();
    ws
}

fn twss_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<'static, Duration> {
    Box::pin(async move {
        let mut ws = twss_open(addr).await;
        sink_stream_throughput(&mut ws, tokio_websockets::Message::text(text(size)), total).await
    })
}

fn twss_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<'static, Vec<Duration>> {
    Box::pin(async move {
        let mut ws = twss_open(addr).await;
        sink_stream_latency(&mut ws, tokio_websockets::Message::text(text(size)), n).await
    })
}

/// Runs a client as a spawned task, as applications run their connection code (not as the
/// runtime's `block_on` future, which tokio schedules differently), the same for every client.
fn spawned<T: Send + 'static>(rt: &tokio::runtime::Runtime, f: BoxFut<'static, T>) -> T {
    rt.block_on(async { tokio::spawn(f).await.unwrap() })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The index of the peer (not moorline) with the best median: the highest when
/// `higher_is_better`, else the lowest.
fn best_peer(clients: &[Client], medians: &[f64], higher_is_better: bool) -> usize {
    let mut peers = (0..medians.len()).filter(|&i| !clients[i].ours);
    let mut best = peers.next().expect("a peer");
    for i in peers {
        if (medians[i] > medians[best]) == higher_is_better && medians[i] != medians[best] {
            best = i;
        }
    }
    best
}

/// Paired ratio: the median over runs of `per_run[i][run] / per_run[best][run]`. Clients of
/// one run ran back to back, so the host's drift between runs cancels out.
fn paired_ratio(per_run: &[Vec<f64>], i: usize, best: usize) -> f64 {
    median(per_run[i].iter().zip(&per_run[best]).map(|(a, b)| a / b).collect())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing useful either.
    let runs: usize = std::env::var("WS_ECHO_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let clients = [
        Client { name: "moorline", ours: true, throughput: moorline_throughput, latency: moorline_latency },
        Client {
            name: "moorline (HTTP/2)",
            ours: true,
            throughput: moorline_h2_throughput,
            latency: moorline_h2_latency,
        },
        Client {
            name: "tokio-tungstenite",
            ours: false,
            throughput: tungstenite_throughput,
            latency: tungstenite_latency,
        },
        Client { name: "fastwebsockets", ours: false, throughput: fast_throughput, latency: fast_latency },
        Client { name: "tokio-websockets", ours: false, throughput: twss_throughput, latency: twss_latency },
    ];
    // `WS_ECHO_CLIENTS=moorline,fastwebsockets` measures only those (profiling one client).
    let clients: Vec<Client> = match std::env::var("WS_ECHO_CLIENTS") {
        Ok(list) => clients.into_iter().filter(|c| list.split(',').any(|n| n == c.name)).collect(),
        Err(_) => clients.into_iter().collect(),
    };
    let addr = start_server();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let has_peers = clients.iter().any(|c| c.ours) && clients.iter().any(|c| !c.ours);

    // `WS_ECHO_ONLY=latency` or `=throughput` runs one half; `=64` or `=16384` one size.
    let only = std::env::var("WS_ECHO_ONLY").unwrap_or_default();
    println!("WebSocket echo over loopback, {runs} runs; server: batching echo on its own thread");
    println!("figures: median over runs; \"vs best peer\": median over runs of the ratio to the peer with");
    println!("the best median, measured in the same run (paired)\n");
    let sizes = [("64 B", 64, 50_000), ("16 KiB", 16 << 10, 10_000)];
    let sizes = sizes.iter().filter(|(_, size, _)| match only.as_str() {
        "" | "throughput" => true,
        "latency" => false,
        only => only == size.to_string(),
    });
    // `WS_ECHO_SCALE=10` sends ten times as many messages per run (profiling).
    let scale: usize = std::env::var("WS_ECHO_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    for &(label, size, total) in sizes {
        let total = total * scale.max(1);
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
        for run in 0..runs {
            for k in 0..clients.len() {
                let i = (k + run) % clients.len();
                let elapsed = spawned(&rt, (clients[i].throughput)(addr, size, total));
                rates[i].push(total as f64 / elapsed.as_secs_f64());
            }
        }
        let medians: Vec<f64> = rates.iter().cloned().map(median).collect();
        println!("throughput, {label} text, {IN_FLIGHT} in flight, {total} messages");
        println!("| client | msg/s | MB/s | vs best peer |");
        println!("|---|---:|---:|---:|");
        let best = has_peers.then(|| best_peer(&clients, &medians, true));
        for (i, (c, m)) in clients.iter().zip(&medians).enumerate() {
            let ratio = best.map_or("-".to_string(), |b| format!("{:.2}x", paired_ratio(&rates, i, b)));
            println!("| {} | {:.0} | {:.1} | {ratio} |", c.name, m, m * size as f64 / 1e6);
        }
        println!();
    }

    if !only.is_empty() && only != "latency" {
        return;
    }
    let n = 5_000;
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for run in 0..runs {
        for k in 0..clients.len() {
            let i = (k + run) % clients.len();
            let mut samples = spawned(&rt, (clients[i].latency)(addr, 64, n));
            samples.sort();
            p50s[i].push(percentile(&samples, 0.50).as_secs_f64() * 1e6);
            p99s[i].push(percentile(&samples, 0.99).as_secs_f64() * 1e6);
        }
    }
    let p50: Vec<f64> = p50s.iter().cloned().map(median).collect();
    let p99: Vec<f64> = p99s.iter().cloned().map(median).collect();
    let best50 = has_peers.then(|| best_peer(&clients, &p50, false));
    let best99 = has_peers.then(|| best_peer(&clients, &p99, false));
    println!("round-trip latency, 64 B text, one in flight, {n} samples per run");
    println!("| client | p50 µs | p99 µs | p50 vs best peer | p99 vs best peer |");
    println!("|---|---:|---:|---:|---:|");
    for (i, c) in clients.iter().enumerate() {
        let r50 = best50.map_or("-".to_string(), |b| format!("{:.2}x", paired_ratio(&p50s, i, b)));
        let r99 = best99.map_or("-".to_string(), |b| format!("{:.2}x", paired_ratio(&p99s, i, b)));
        println!("| {} | {:.1} | {:.1} | {r50} | {r99} |", c.name, p50[i], p99[i]);
    }
}
