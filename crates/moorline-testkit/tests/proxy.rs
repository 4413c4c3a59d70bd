//! The fault-injecting TCP proxy, in front of small test upstreams.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use moorline_testkit::proxy::{Direction, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(300);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("test timed out")
}

/// An upstream handing each accepted connection to the test.
async fn upstream() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if tx.send(tcp).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// An upstream echoing everything back on every connection.
async fn echo_upstream() -> SocketAddr {
    let (addr, mut conns) = upstream().await;
    tokio::spawn(async move {
        while let Some(mut tcp) = conns.recv().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A client connected through the proxy, and the upstream's side of that connection.
async fn pair(proxy: &Proxy, conns: &mut mpsc::UnboundedReceiver<TcpStream>) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(proxy.addr()).await.unwrap();
    let server = tokio::time::timeout(WAIT, conns.recv()).await.unwrap().unwrap();
    (client, server)
}

/// Round trip of one small message through an echo path.
async fn round_trip(tcp: &mut TcpStream) -> Duration {
    let start = Instant::now();
    tcp.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    start.elapsed()
}

#[tokio::test]
async fn data_passes_unchanged_and_is_counted() {
    bounded(async {
        let proxy = Proxy::start(echo_upstream().await).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut r, mut w) = client.split();
        let write = async {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let read = r.read_to_end(&mut back);
        let ((), got) = tokio::join!(write, read);
        got.unwrap();
        assert_eq!(back, data);
        assert_eq!(proxy.bytes(Direction::Upstream), data.len() as u64);
        assert_eq!(proxy.bytes(Direction::Downstream), data.len() as u64);
        assert_eq!(proxy.connections_accepted(), 1);
        assert!(proxy.wait_for_open_connections(0, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn latency_delays_each_direction() {
    bounded(async {
        let proxy = Proxy::start(echo_upstream().await).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let baseline = round_trip(&mut client).await;
        proxy.set_latency(Direction::Upstream, Duration::from_millis(60));
        proxy.set_latency(Direction::Downstream, Duration::from_millis(90));
        // Both directions are delayed (either alone would be under 150 ms); only a hang makes
        // it take seconds (CI is a loaded machine).
        let delayed = round_trip(&mut client).await;
        assert!(delayed >= Duration::from_millis(150), "{delayed:?}");
        assert!(delayed <= baseline + Duration::from_secs(3), "{delayed:?} (baseline {baseline:?})");
        proxy.set_latency(Direction::Upstream, Duration::ZERO);
        proxy.set_latency(Direction::Downstream, Duration::ZERO);
        // Back to no delay: 20 round trips take less than the 3 s they would take delayed.
        let mut back = Duration::ZERO;
        for _ in 0..20 {
            back += round_trip(&mut client).await;
        }
        assert!(back < Duration::from_millis(150) * 20, "{back:?}");
    })
    .await;
}

/// Time for the upstream to send 256 KiB to a client through the proxy at `limit` bytes/s.
async fn transfer(proxy: &Proxy, conns: &mut mpsc::UnboundedReceiver<TcpStream>, limit: Option<u64>) -> Duration {
    const SIZE: usize = 256 * 1024;
    proxy.set_bandwidth(Direction::Downstream, limit);
    let (mut client, mut server) = pair(proxy, conns).await;
    let start = Instant::now();
    tokio::spawn(async move {
        server.write_all(&vec![7u8; SIZE]).await.unwrap();
        server.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), SIZE);
    start.elapsed()
}

#[tokio::test]
async fn bandwidth_limit_slows_a_transfer_to_the_rate() {
    bounded(async {
        let (addr, mut conns) = upstream().await;
        let proxy = Proxy::start(addr).await.unwrap();
        // Unlimited, 256 KiB go through far faster than the seconds a limit would take...
        let fast = transfer(&proxy, &mut conns, None).await;
        assert!(fast < Duration::from_secs(3), "{fast:?}");
        // ...and at 256 KiB/s they take about a second: not less, and more only by what a
        // loaded machine adds.
        let slow = transfer(&proxy, &mut conns, Some(256 * 1024)).await;
        assert!(slow >= Duration::from_millis(850) && slow <= Duration::from_secs(5), "{slow:?}");
    })
    .await;
}

#[tokio::test]
async fn cut_sends_fin_both_ways() {
    bounded(async {
        let (addr, mut conns) = upstream().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let (mut client, mut server) = pair(&proxy, &mut conns).await;
        assert!(proxy.wait_for_open_connections(1, WAIT).await);
        proxy.cut();
        let mut rest = Vec::new();
        assert_eq!(tokio::time::timeout(WAIT, client.read_to_end(&mut rest)).await.unwrap().unwrap(), 0);
        assert_eq!(tokio::time::timeout(WAIT, server.read_to_end(&mut rest)).await.unwrap().unwrap(), 0);
        assert_eq!(proxy.open_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn reset_sends_rst_both_ways() {
    bounded(async {
        let (addr, mut conns) = upstream().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let (mut client, mut server) = pair(&proxy, &mut conns).await;
        assert!(proxy.wait_for_open_connections(1, WAIT).await);
        proxy.reset();
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(WAIT, client.read(&mut buf)).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        let err = tokio::time::timeout(WAIT, server.read(&mut buf)).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    })
    .await;
}

#[tokio::test]
async fn blackhole_stops_forwarding_but_keeps_sockets_open() {
    bounded(async {
        let (addr, mut conns) = upstream().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let (mut client, mut server) = pair(&proxy, &mut conns).await;
        proxy.blackhole(true);
        client.write_all(b"up").await.unwrap();
        server.write_all(b"down").await.unwrap();
        let mut buf = [0u8; 8];
        // Neither side sees data, EOF or an error.
        assert!(tokio::time::timeout(QUIET, server.read(&mut buf)).await.is_err());
        assert!(tokio::time::timeout(QUIET, client.read(&mut buf)).await.is_err());
        assert_eq!(proxy.bytes(Direction::Upstream) + proxy.bytes(Direction::Downstream), 0);
        proxy.blackhole(false);
        let mut up = [0u8; 2];
        server.read_exact(&mut up).await.unwrap();
        assert_eq!(&up, b"up");
        let mut down = [0u8; 4];
        client.read_exact(&mut down).await.unwrap();
        assert_eq!(&down, b"down");
    })
    .await;
}

#[tokio::test]
async fn reset_after_n_bytes() {
    bounded(async {
        let proxy = Proxy::start(echo_upstream().await).await.unwrap();
        proxy.reset_after(Some(300));
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(&[1u8; 1000]).await.unwrap();
        let mut got = Vec::new();
        let err = loop {
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(WAIT, client.read(&mut buf)).await.unwrap() {
                Ok(0) => panic!("EOF instead of RST after {} bytes", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        assert!(got.len() <= 150, "{}", got.len());
        assert_eq!(proxy.bytes(Direction::Upstream) + proxy.bytes(Direction::Downstream), 300);
        assert!(proxy.wait_for_open_connections(0, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn refuse_new_connections() {
    bounded(async {
        let proxy = Proxy::start(echo_upstream().await).await.unwrap();
        let mut existing = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut existing).await;
        proxy.refuse_connections(true);
        loop {
            match TcpStream::connect(proxy.addr()).await {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        round_trip(&mut existing).await;
        proxy.refuse_connections(false);
        let mut fresh = loop {
            match TcpStream::connect(proxy.addr()).await {
                Ok(tcp) => break tcp,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        round_trip(&mut fresh).await;
    })
    .await;
}
