//! End-to-end WebSocket echo over loopback, moorline's `Connection` against
//! tokio-tungstenite, fastwebsockets and tokio-websockets as clients, all in the same run,
//! against the same echo server, which nobody tuned for us: tokio-websockets' server, in two
//! behaviours:
//!
//! - `per-frame`: one reply per write (`send` = feed + flush for every message);
//! - `batched`: takes every message already readable, then feeds all the replies and flushes
//!   once (the burst leaves in one write).
//!
//! Binary messages of 64 B, 1 KiB, 4 KiB and 16 KiB, 64 in flight, with the same refill loop
//! for every client (wait for one reply, take the replies already here, send as many
//! replacements, flush; fastwebsockets has no readiness check or write buffer, so it writes a
//! replacement per reply), then the round trip of 64 B, one in flight.
//!
//! **Isolation.** The servers run in this process, on their own thread pinned to the last
//! core; every measurement runs in a fresh child process (this binary again) pinned to core 0
//! on a current-thread runtime, so a client's CPU time (`getrusage` over the timed loop, user +
//! system, all threads of the child) and its peak resident memory are its own.
//!
//! **Figures.** Per row the median over runs; ratios are paired: per run against the peer with
//! the best median, then the median of those per-run ratios (the host's drift between runs
//! cancels out). Throughput ratios: higher is better; CPU per message and latency ratios: lower
//! is better. The row `moorline (HTTP/2)` is moorline's WebSocket over HTTP/2 (RFC 8441) against
//! an h2 server with a batching echo per stream written with moorline-proto's codec (none of the
//! peers speaks RFC 8441, so its ratio is to the best HTTP/1.1 peer, and it has one behaviour).
//!
//! `cargo bench -p moorline --bench ws_echo`. Environment: `WS_ECHO_RUNS` (runs, 5),
//! `WS_ECHO_ONLY` (`throughput`, `latency`, or a size in bytes), `WS_ECHO_SERVER` (`per-frame` or
//! `batched`), `WS_ECHO_CLIENTS` (a comma list of client names), `WS_ECHO_SCALE` (N times as
//! many messages, for profiling), `WS_ECHO_JSON=1` (one JSON object per measurement on stdout,
//! for `scripts/ws_echo_paired.py`), `WS_ECHO_NO_PIN=1` (no CPU pinning), `WS_ECHO_WRAP` (a command
//! prefix for the client processes, e.g. `perf record -g -o FILE --`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use moorline::ws::{Message, WsOptions};
use moorline::{ConnectOptions, Event, Protocol, RetryPolicy};
use tokio::net::{TcpListener, TcpStream};

const IN_FLIGHT: usize = 64;
const T: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the host: CPU, memory, pinning

/// Pins the calling thread to one CPU (best effort: a machine with one CPU, or a refusal, leaves
/// it unpinned).
fn pin_to(cpu: usize) {
    if std::env::var_os("WS_ECHO_NO_PIN").is_some() {
        return;
    }
    // SAFETY: `set` is a plain bit set on the stack, fully initialised by CPU_ZERO; the call
    // only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU time (user + system) of this process so far, and its peak resident set in bytes.
fn usage() -> (Duration, u64) {
    // SAFETY: getrusage writes the struct it is given; zeroed is a valid `rusage`.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64 * 1024)
}

// ---------------------------------------------------------------- the servers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    PerFrame,
    Batched,
}

impl Behaviour {
    fn name(self) -> &'static str {
        match self {
            Behaviour::PerFrame => "per-frame",
            Behaviour::Batched => "batched",
        }
    }
}

/// Starts the echo servers on one thread pinned to the last core: tokio-websockets' server in
/// each behaviour, and the HTTP/2 server. Returns their addresses.
fn start_servers() -> (SocketAddr, SocketAddr, SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if cpus() > 1 {
            pin_to(cpus() - 1);
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let per_frame = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let batched = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let h2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((per_frame.local_addr().unwrap(), batched.local_addr().unwrap(), h2.local_addr().unwrap()))
                .unwrap();
            tokio::spawn(accept_ws(per_frame, Behaviour::PerFrame));
            tokio::spawn(accept_ws(batched, Behaviour::Batched));
            loop {
                let (tcp, _) = h2.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                tokio::spawn(serve_h2(tcp));
            }
        });
    });
    rx.recv().unwrap()
}

async fn accept_ws(listener: TcpListener, behaviour: Behaviour) {
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else {
                return;
            };
            let _ = match behaviour {
                Behaviour::PerFrame => echo_per_frame(&mut ws).await,
                Behaviour::Batched => echo_batched(&mut ws).await,
            };
        });
    }
}

type TwsServer = tokio_websockets::WebSocketStream<TcpStream>;

/// Data messages come back one write each; tokio-websockets answers pings and closes itself.
async fn echo_per_frame(ws: &mut TwsServer) -> Result<(), tokio_websockets::Error> {
    while let Some(m) = ws.next().await {
        let m = m?;
        if m.is_binary() || m.is_text() {
            ws.send(m).await?;
        }
    }
    Ok(())
}

/// Every message already readable is taken first (tokio-websockets' `poll_next` flushes what
/// was fed, so reading between feeds would write one frame at a time), then all the replies
/// are fed and flushed once.
async fn echo_batched(ws: &mut TwsServer) -> Result<(), tokio_websockets::Error> {
    let mut burst = Vec::with_capacity(IN_FLIGHT);
    while let Some(m) = ws.next().await {
        burst.push(m?);
        while let Some(Some(m)) = ws.next().now_or_never() {
            burst.push(m?);
        }
        for m in burst.drain(..) {
            if m.is_binary() || m.is_text() {
                ws.feed(m).await?;
            }
        }
        ws.flush().await?;
    }
    Ok(())
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

/// A batching echo over one HTTP/2 stream: takes the DATA that is there, decodes every
/// complete message and sends all the replies at once (as DATA within flow control).
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

// ---------------------------------------------------------------- the clients

fn payload(len: usize) -> bytes::Bytes {
    bytes::Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>())
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T>>>;

/// One client under test: `throughput(addr, size, total)` echoes `total` messages with
/// `IN_FLIGHT` outstanding and returns the timed loop's duration; `latency(addr, size, n)` the
/// round-trip times. Both connect first, outside the timed part.
struct Client {
    name: &'static str,
    /// moorline itself (over either protocol), not a peer to compare with.
    ours: bool,
    /// Runs against the HTTP/2 server (one behaviour) rather than tokio-websockets'.
    h2: bool,
    throughput: fn(SocketAddr, usize, usize) -> BoxFut<Timed>,
    latency: fn(SocketAddr, usize, usize) -> BoxFut<Vec<Duration>>,
}

/// A timed loop: wall time and the process's CPU time over it.
struct Timed {
    wall: Duration,
    cpu: Duration,
}

struct Clock {
    start: Instant,
    cpu: Duration,
}

impl Clock {
    fn start() -> Self {
        Clock { cpu: usage().0, start: Instant::now() }
    }
    fn stop(self) -> Timed {
        let wall = self.start.elapsed();
        Timed { wall, cpu: usage().0.saturating_sub(self.cpu) }
    }
}

const CLIENTS: [Client; 5] = [
    Client { name: "moorline", ours: true, h2: false, throughput: moorline_throughput, latency: moorline_latency },
    Client {
        name: "moorline (HTTP/2)",
        ours: true,
        h2: true,
        throughput: moorline_h2_throughput,
        latency: moorline_h2_latency,
    },
    Client {
        name: "tokio-tungstenite",
        ours: false,
        h2: false,
        throughput: tungstenite_throughput,
        latency: tungstenite_latency,
    },
    Client { name: "fastwebsockets", ours: false, h2: false, throughput: fast_throughput, latency: fast_latency },
    Client { name: "tokio-websockets", ours: false, h2: false, throughput: twss_throughput, latency: twss_latency },
];

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

fn moorline_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(moorline_throughput_over(Protocol::Http1, addr, size, total))
}

fn moorline_h2_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(moorline_throughput_over(Protocol::Http2, addr, size, total))
}

/// The refill loop: wait for one reply, take those already here (`try_next`), feed as many
/// replacements; what is fed leaves in one write once this task waits (moorline's flush).
async fn moorline_throughput_over(protocol: Protocol, addr: SocketAddr, size: usize, total: usize) -> Timed {
    let (conn, mut events, ws) = moorline_open(addr, protocol).await;
    let message = Message::binary(payload(size));
    let clock = Clock::start();
    let mut sent = 0;
    while sent < IN_FLIGHT.min(total) {
        conn.ws_feed(&ws, message.clone()).await.unwrap();
        sent += 1;
    }
    let mut received = 0;
    while received < total {
        let m = events.await_ws(&ws, T).await.unwrap();
        debug_assert!(matches!(m, Message::Binary(_)));
        let mut ready = 1;
        while let Some(event) = events.try_next() {
            match event {
                Event::Ws { message: Message::Binary(_), .. } => ready += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        received += ready;
        let refill = ready.min(total - sent);
        for _ in 0..refill {
            conn.ws_feed(&ws, message.clone()).await.unwrap();
        }
        sent += refill;
    }
    clock.stop()
}

fn moorline_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Vec<Duration>> {
    Box::pin(moorline_latency_over(Protocol::Http1, addr, size, n))
}

fn moorline_h2_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Vec<Duration>> {
    Box::pin(moorline_latency_over(Protocol::Http2, addr, size, n))
}

async fn moorline_latency_over(protocol: Protocol, addr: SocketAddr, size: usize, n: usize) -> Vec<Duration> {
    let (conn, mut events, ws) = moorline_open(addr, protocol).await;
    let message = Message::binary(payload(size));
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        conn.ws_send(&ws, message.clone()).await.unwrap();
        events.await_ws(&ws, T).await.unwrap();
        out.push(start.elapsed());
    }
    out
}

// ---- Sink + Stream clients (tokio-tungstenite, tokio-websockets) share these loops.

/// The refill loop for a `Sink`/`Stream`: wait for one reply, take the replies already here,
/// feed as many replacements and flush once.
async fn sink_stream_throughput<W, M, R, E>(ws: &mut W, message: M, total: usize) -> Timed
where
    W: Sink<M> + Stream<Item = Result<R, E>> + Unpin,
    <W as Sink<M>>::Error: std::fmt::Debug,
    M: Clone,
    E: std::fmt::Debug,
{
    let clock = Clock::start();
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
    clock.stop()
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

fn tungstenite_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut ws = tungstenite_open(addr).await;
        sink_stream_throughput(&mut ws, tungstenite::Message::binary(payload(size)), total).await
    })
}

fn tungstenite_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Vec<Duration>> {
    Box::pin(async move {
        let mut ws = tungstenite_open(addr).await;
        sink_stream_latency(&mut ws, tungstenite::Message::binary(payload(size)), n).await
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

/// fastwebsockets writes each frame as it is given (no write buffer, and no way to tell
/// whether a reply is already readable without risking a half-read frame): a replacement
/// per reply.
fn fast_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut ws = fast_open(addr).await;
        let data = payload(size);
        let frame = || fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(&data));
        let clock = Clock::start();
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
        clock.stop()
    })
}

fn fast_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Vec<Duration>> {
    Box::pin(async move {
        let mut ws = fast_open(addr).await;
        let data = payload(size);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            ws.write_frame(fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(&data))).await.unwrap();
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

fn twss_throughput(addr: SocketAddr, size: usize, total: usize) -> BoxFut<Timed> {
    Box::pin(async move {
        let mut ws = twss_open(addr).await;
        sink_stream_throughput(&mut ws, tokio_websockets::Message::binary(payload(size)), total).await
    })
}

fn twss_latency(addr: SocketAddr, size: usize, n: usize) -> BoxFut<Vec<Duration>> {
    Box::pin(async move {
        let mut ws = twss_open(addr).await;
        sink_stream_latency(&mut ws, tokio_websockets::Message::binary(payload(size)), n).await
    })
}

// ---------------------------------------------------------------- one measurement (child process)

/// What one child process measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// Throughput: messages per second; latency: p50 µs.
    a: f64,
    /// Throughput: CPU µs per message; latency: p99 µs.
    b: f64,
    /// Latency: p99.9 µs.
    c: f64,
    /// Peak resident bytes of the child.
    rss: u64,
}

/// Run in the child: `WS_ECHO_CHILD=<client>|<kind>|<addr>|<size>|<count>`; prints one line.
fn child(spec: &str) {
    pin_to(0);
    let parts: Vec<&str> = spec.split('|').collect();
    let client = CLIENTS.iter().find(|c| c.name == parts[0]).unwrap();
    let addr: SocketAddr = parts[2].parse().unwrap();
    let size: usize = parts[3].parse().unwrap();
    let count: usize = parts[4].parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Run as a spawned task, as applications run their connection code (not as the
    // runtime's `block_on` future, which tokio schedules differently).
    let line = if parts[1] == "throughput" {
        let f = (client.throughput)(addr, size, count);
        let timed = rt.block_on(
            tokio::task::LocalSet::new().run_until(async move { tokio::task::spawn_local(f).await.unwrap() }),
        );
        let rate = count as f64 / timed.wall.as_secs_f64();
        let cpu = timed.cpu.as_secs_f64() * 1e6 / count as f64;
        format!("{rate} {cpu} 0 {}", usage().1)
    } else {
        let f = (client.latency)(addr, size, count);
        let mut samples = rt.block_on(
            tokio::task::LocalSet::new().run_until(async move { tokio::task::spawn_local(f).await.unwrap() }),
        );
        samples.sort();
        let p = |q: f64| percentile(&samples, q).as_secs_f64() * 1e6;
        format!("{} {} {} {}", p(0.50), p(0.99), p(0.999), usage().1)
    };
    println!("WS_ECHO_SAMPLE {line}");
}

fn measure(client: &Client, kind: &str, addr: SocketAddr, size: usize, count: usize) -> Sample {
    let exe = std::env::current_exe().unwrap();
    let spec = format!("{}|{kind}|{addr}|{size}|{count}", client.name);
    // `WS_ECHO_WRAP="perf record -g -o FILE --"` runs the child under a profiler.
    let wrap = std::env::var("WS_ECHO_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => std::process::Command::new(exe),
    };
    let out = cmd.arg("--bench").env("WS_ECHO_CHILD", &spec).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("WS_ECHO_SAMPLE ")) else {
        panic!("{spec} failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    };
    let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    Sample { a: v[0], b: v[1], c: v[2], rss: v[3] as u64 }
}

// ---------------------------------------------------------------- figures

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The index of the peer (not moorline) with the best median: the highest when
/// `higher_is_better`, else the lowest.
fn best_peer(clients: &[&Client], medians: &[f64], higher_is_better: bool) -> Option<usize> {
    let mut peers = (0..medians.len()).filter(|&i| !clients[i].ours);
    let mut best = peers.next()?;
    for i in peers {
        if (medians[i] > medians[best]) == higher_is_better && medians[i] != medians[best] {
            best = i;
        }
    }
    Some(best)
}

/// Paired ratio: the median over runs of `per_run[i][run] / per_run[best][run]`.
fn paired_ratio(per_run: &[Vec<f64>], i: usize, best: usize) -> f64 {
    median(per_run[i].iter().zip(&per_run[best]).map(|(a, b)| a / b).collect())
}

/// One table: per client and run, the samples of one measurement.
struct Table<'a> {
    clients: Vec<&'a Client>,
    samples: Vec<Vec<Sample>>,
}

impl Table<'_> {
    fn column(&self, f: fn(&Sample) -> f64) -> Vec<Vec<f64>> {
        self.samples.iter().map(|runs| runs.iter().map(f).collect()).collect()
    }
    fn medians(&self, f: fn(&Sample) -> f64) -> Vec<f64> {
        self.column(f).into_iter().map(median).collect()
    }
    /// Per client, the paired ratio of figure `f` to the best peer's (`-` without peers).
    fn ratios(&self, f: fn(&Sample) -> f64, higher_is_better: bool) -> Vec<Option<f64>> {
        let per_run = self.column(f);
        let best = best_peer(&self.clients, &self.medians(f), higher_is_better);
        (0..self.clients.len()).map(|i| best.map(|b| paired_ratio(&per_run, i, b))).collect()
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn json_row(kind: &str, server: &str, size: usize, client: &str, fields: &[(&str, f64)]) {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v:.4}")).collect();
    println!(
        "{{\"kind\":\"{kind}\",\"server\":\"{server}\",\"size\":{size},\"client\":\"{client}\",{}}}",
        fields.join(",")
    );
}

fn main() {
    if let Ok(spec) = std::env::var("WS_ECHO_CHILD") {
        return child(&spec);
    }
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let runs: usize = env("WS_ECHO_RUNS").parse().unwrap_or(5).max(1);
    let scale: usize = env("WS_ECHO_SCALE").parse().unwrap_or(1).max(1);
    let json = env("WS_ECHO_JSON") == "1";
    let only = env("WS_ECHO_ONLY");
    let clients: Vec<&Client> = match std::env::var("WS_ECHO_CLIENTS") {
        Ok(list) => CLIENTS.iter().filter(|c| list.split(',').any(|n| n == c.name)).collect(),
        Err(_) => CLIENTS.iter().collect(),
    };
    let behaviours: Vec<Behaviour> = [Behaviour::PerFrame, Behaviour::Batched]
        .into_iter()
        .filter(|b| env("WS_ECHO_SERVER").is_empty() || env("WS_ECHO_SERVER") == b.name())
        .collect();
    let (per_frame, batched, h2) = start_servers();
    let addr_of = |c: &Client, b: Behaviour| match (c.h2, b) {
        (true, _) => h2,
        (false, Behaviour::PerFrame) => per_frame,
        (false, Behaviour::Batched) => batched,
    };
    if !json {
        println!("WebSocket echo over loopback, binary messages, {runs} runs; server: tokio-websockets");
        println!("(per-frame: one write per reply; batched: all readable messages, then one flush);");
        println!("servers pinned to the last core, each client in its own process on core 0.");
        println!("Figures: medians over runs; ratios: per run against the peer with the best median, then");
        println!("the median (paired). CPU µs/msg: the client's user + system time over the timed loop.\n");
    }

    let sizes: [(&str, usize, usize); 4] =
        [("64 B", 64, 50_000), ("1 KiB", 1 << 10, 40_000), ("4 KiB", 4 << 10, 20_000), ("16 KiB", 16 << 10, 10_000)];
    // The HTTP/2 row has one server (a batching echo): it is reported with the batched tables.
    let clients_for = |b: Behaviour| -> Vec<&Client> {
        clients.iter().copied().filter(|c| !(c.h2 && b == Behaviour::PerFrame)).collect()
    };
    for &behaviour in &behaviours {
        let clients = clients_for(behaviour);
        for &(label, size, total) in &sizes {
            let wanted = match only.as_str() {
                "" | "throughput" => true,
                "latency" => false,
                only => only == size.to_string(),
            };
            if !wanted {
                continue;
            }
            let total = total * scale;
            let mut table = Table { clients: clients.clone(), samples: vec![Vec::new(); clients.len()] };
            for run in 0..runs {
                for k in 0..clients.len() {
                    let i = (k + run) % clients.len();
                    let c = clients[i];
                    table.samples[i].push(measure(c, "throughput", addr_of(c, behaviour), size, total));
                }
            }
            let (rate, cpu, rss) = (table.medians(|s| s.a), table.medians(|s| s.b), table.medians(|s| s.rss as f64));
            let (rate_r, cpu_r) = (table.ratios(|s| s.a, true), table.ratios(|s| s.b, false));
            if json {
                for (i, c) in clients.iter().enumerate() {
                    json_row(
                        "throughput",
                        behaviour.name(),
                        size,
                        c.name,
                        &[
                            ("msg_s", rate[i]),
                            ("cpu_us_msg", cpu[i]),
                            ("rss_kib", rss[i] / 1024.0),
                            ("msg_s_ratio", rate_r[i].unwrap_or(f64::NAN)),
                            ("cpu_ratio", cpu_r[i].unwrap_or(f64::NAN)),
                        ],
                    );
                }
                continue;
            }
            println!(
                "throughput, {label} binary, server {}, {IN_FLIGHT} in flight, {total} messages",
                behaviour.name()
            );
            println!("| client | msg/s | MB/s | CPU µs/msg | peak RSS KiB | msg/s vs best peer | CPU vs best peer |");
            println!("|---|---:|---:|---:|---:|---:|---:|");
            for (i, c) in clients.iter().enumerate() {
                println!(
                    "| {} | {:.0} | {:.1} | {:.2} | {:.0} | {} | {} |",
                    c.name,
                    rate[i],
                    rate[i] * size as f64 / 1e6,
                    cpu[i],
                    rss[i] / 1024.0,
                    ratio(rate_r[i]),
                    ratio(cpu_r[i])
                );
            }
            println!();
        }
    }

    if !(only.is_empty() || only == "latency") {
        return;
    }
    let n = 5_000 * scale;
    for &behaviour in &behaviours {
        let clients = clients_for(behaviour);
        let mut table = Table { clients: clients.clone(), samples: vec![Vec::new(); clients.len()] };
        for run in 0..runs {
            for k in 0..clients.len() {
                let i = (k + run) % clients.len();
                let c = clients[i];
                table.samples[i].push(measure(c, "latency", addr_of(c, behaviour), 64, n));
            }
        }
        let (p50, p99, p999) = (table.medians(|s| s.a), table.medians(|s| s.b), table.medians(|s| s.c));
        let (r50, r99, r999) =
            (table.ratios(|s| s.a, false), table.ratios(|s| s.b, false), table.ratios(|s| s.c, false));
        if json {
            for (i, c) in clients.iter().enumerate() {
                json_row(
                    "latency",
                    behaviour.name(),
                    64,
                    c.name,
                    &[
                        ("p50_us", p50[i]),
                        ("p99_us", p99[i]),
                        ("p999_us", p999[i]),
                        ("p50_ratio", r50[i].unwrap_or(f64::NAN)),
                        ("p99_ratio", r99[i].unwrap_or(f64::NAN)),
                        ("p999_ratio", r999[i].unwrap_or(f64::NAN)),
                    ],
                );
            }
            continue;
        }
        println!("round-trip latency, 64 B binary, server {}, one in flight, {n} samples per run", behaviour.name());
        println!("| client | p50 µs | p99 µs | p99.9 µs | p50 vs best peer | p99 vs best peer | p99.9 vs best peer |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (i, c) in clients.iter().enumerate() {
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
                c.name,
                p50[i],
                p99[i],
                p999[i],
                ratio(r50[i]),
                ratio(r99[i]),
                ratio(r999[i])
            );
        }
        println!();
    }
}
