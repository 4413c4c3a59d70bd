//! Request round trips through the connection layer, against hyper's client connection
//! (the peer a user would otherwise pick) on the same loopback test server in the same run.
//!
//! `cargo bench -p moorline --bench requests`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use moorline::{ConnectOptions, Protocol, RetryPolicy};
use moorline_testkit::http::TestServer;

const T: Duration = Duration::from_secs(10);
/// Requests kept in flight for the multiplexed HTTP/2 workload.
const IN_FLIGHT: usize = 64;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn moorline_conn(server: &TestServer, p: Protocol) -> (moorline::Connection, moorline::Events) {
    let opts = ConnectOptions::default().protocols(&[p]).retry(RetryPolicy::Never).keepalive(None);
    let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts).unwrap();
    events.await_up(T).await.unwrap();
    (conn, events)
}

fn uri(server: &TestServer) -> String {
    format!("http://127.0.0.1:{}/hello", server.port())
}

fn sequential(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("sequential GET /hello");
    for (name, p, h2) in [("http1", Protocol::Http1, false), ("http2", Protocol::Http2, true)] {
        let server = rt.block_on(TestServer::builder().h2(h2).start()).unwrap();
        g.bench_function(format!("moorline/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let (conn, mut events) = moorline_conn(&server, p).await;
                    let start = Instant::now();
                    for _ in 0..iters {
                        let s = conn.get("/hello", http::HeaderMap::new()).await.unwrap();
                        let body = events.await_body(&s, T).await.unwrap();
                        assert_eq!(body.data.len(), 5);
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function(format!("hyper/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let io = TokioIo::new(tcp);
                    let start;
                    if h2 {
                        let (mut send, conn) =
                            hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), io)
                                .await
                                .unwrap();
                        tokio::spawn(conn);
                        start = Instant::now();
                        for _ in 0..iters {
                            let req = http::Request::get(uri(&server)).body(Empty::new()).unwrap();
                            let resp = send.send_request(req).await.unwrap();
                            let body = resp.into_body().collect().await.unwrap().to_bytes();
                            assert_eq!(body.len(), 5);
                        }
                    } else {
                        let (mut send, conn) =
                            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await.unwrap();
                        tokio::spawn(conn);
                        start = Instant::now();
                        for _ in 0..iters {
                            send.ready().await.unwrap();
                            let req =
                                http::Request::get("/hello").header("host", "127.0.0.1").body(Empty::new()).unwrap();
                            let resp = send.send_request(req).await.unwrap();
                            let body = resp.into_body().collect().await.unwrap().to_bytes();
                            assert_eq!(body.len(), 5);
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn multiplexed(c: &mut Criterion) {
    let rt = rt();
    let server = rt.block_on(TestServer::builder().h2(true).start()).unwrap();
    let mut g = c.benchmark_group(format!("http2 {IN_FLIGHT} GETs in flight"));
    g.throughput(criterion::Throughput::Elements(IN_FLIGHT as u64));
    g.bench_function("moorline", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (conn, mut events) = moorline_conn(&server, Protocol::Http2).await;
                let start = Instant::now();
                for _ in 0..iters {
                    let mut streams = Vec::with_capacity(IN_FLIGHT);
                    for _ in 0..IN_FLIGHT {
                        streams.push(conn.get("/hello", http::HeaderMap::new()).await.unwrap());
                    }
                    for s in &streams {
                        events.await_body(s, T).await.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("hyper", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
                    TokioExecutor::new(),
                    TokioIo::new(tcp),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                let start = Instant::now();
                for _ in 0..iters {
                    let mut tasks = Vec::with_capacity(IN_FLIGHT);
                    for _ in 0..IN_FLIGHT {
                        let mut send = send.clone();
                        let req = http::Request::get(uri(&server)).body(Empty::new()).unwrap();
                        tasks.push(tokio::spawn(async move {
                            let resp = send.send_request(req).await.unwrap();
                            resp.into_body().collect().await.unwrap().to_bytes().len()
                        }));
                    }
                    for t in tasks {
                        assert_eq!(t.await.unwrap(), 5);
                    }
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(30);
    targets = sequential, multiplexed
}
criterion_main!(benches);
