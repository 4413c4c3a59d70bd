//! The WebSocket codec alone, in memory: encoding (client frames, masked) and decoding
//! (server frames, text validated as UTF-8), for 16 KiB and 64 B text messages.
//!
//! moorline's sans-IO codec (`moorline_proto::ws::{Encoder, Decoder}`) against the peers a
//! user would otherwise pick, each through its own public API over an in-memory stream
//! (no syscalls): tungstenite (sync `WebSocket`), fastwebsockets (`WebSocket` +
//! `FragmentCollector`), tokio-websockets (`WebSocketStream`), yawc (`WebSocket::from_stream`,
//! UTF-8 checks switched on: they are off by default). Criterion reports throughput:
//! bytes/s for 16 KiB, elements (frames)/s for 64 B.
//!
//! `cargo bench -p moorline --bench ws_codec`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use moorline_proto::ws::{Decoder, EncodeOptions, Encoder, Limits, Message, Role, write_frame};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// (label, message size, messages per iteration)
const CASES: [(&str, usize, usize); 2] = [("16KiB", 16 << 10, 64), ("64B", 64, 1024)];

/// An in-memory byte stream: reads come from `input`, writes are counted and dropped.
struct Mem {
    input: Bytes,
    written: usize,
}

impl Mem {
    fn new(input: Bytes) -> Self {
        Self { input, written: 0 }
    }
}

impl io::Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input.split_to(n));
        Ok(n)
    }
}

impl io::Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Mem {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.input.len());
        buf.put_slice(&this.input.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A text payload of `len` bytes (ASCII JSON-ish with some multi-byte characters).
fn text(len: usize) -> String {
    let unit = "{\"px\":\"65432.5\",\"qty\":\"0.25\",\"side\":\"bid\",\"µ\":\"é\"},";
    let mut s = unit.repeat(len / unit.len() + 1);
    while s.len() > len {
        s.pop();
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

/// `count` unmasked server text frames of `payload`.
fn server_wire(payload: &str, count: usize) -> Bytes {
    let mut out = BytesMut::new();
    for _ in 0..count {
        write_frame(true, false, 0x1, payload.as_bytes(), None, &mut out);
    }
    out.freeze()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

fn decode(c: &mut Criterion) {
    let rt = rt();
    for (label, size, count) in CASES {
        let mut g = c.benchmark_group(format!("decode {label} text"));
        g.throughput(if size >= 1024 {
            Throughput::Bytes((size * count) as u64)
        } else {
            Throughput::Elements(count as u64)
        });
        let payload = text(size);
        let wire = server_wire(&payload, count);

        g.bench_function(BenchmarkId::from_parameter("moorline"), |b| {
            b.iter(|| {
                let mut decoder = Decoder::new(Role::Client, Limits::default(), None);
                let mut buf = BytesMut::from(&wire[..]);
                let mut n = 0;
                while let Some(m) = decoder.decode(&mut buf).unwrap() {
                    assert!(matches!(m, Message::Text(_)));
                    n += 1;
                }
                assert_eq!(n, count);
            })
        });
        g.bench_function(BenchmarkId::from_parameter("tungstenite"), |b| {
            b.iter(|| {
                let mut ws = tungstenite::WebSocket::from_raw_socket(
                    Mem::new(wire.clone()),
                    tungstenite::protocol::Role::Client,
                    None,
                );
                for _ in 0..count {
                    assert!(ws.read().unwrap().is_text());
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("fastwebsockets"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let ws = fastwebsockets::WebSocket::after_handshake(
                        Mem::new(wire.clone()),
                        fastwebsockets::Role::Client,
                    );
                    let mut ws = fastwebsockets::FragmentCollector::new(ws);
                    for _ in 0..count {
                        let f = ws.read_frame().await.unwrap();
                        assert_eq!(f.opcode, fastwebsockets::OpCode::Text);
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::from_parameter("tokio-websockets"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ws = tokio_websockets::ClientBuilder::new().take_over(Mem::new(wire.clone()));
                    for _ in 0..count {
                        assert!(ws.next().await.unwrap().unwrap().is_text());
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::from_parameter("yawc"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let options = yawc::Options::default().with_utf8();
                    let mut ws =
                        yawc::WebSocket::from_stream(Mem::new(wire.clone()), yawc::Role::Client, options).unwrap();
                    for _ in 0..count {
                        let f = ws.next().await.unwrap();
                        assert_eq!(f.opcode(), yawc::frame::OpCode::Text);
                    }
                })
            })
        });
        g.finish();
    }
}

fn encode(c: &mut Criterion) {
    let rt = rt();
    for (label, size, count) in CASES {
        let mut g = c.benchmark_group(format!("encode {label} text"));
        g.throughput(if size >= 1024 {
            Throughput::Bytes((size * count) as u64)
        } else {
            Throughput::Elements(count as u64)
        });
        let payload = text(size);
        let expected = server_wire(&payload, count).len() + 4 * count; // + mask keys

        g.bench_function(BenchmarkId::from_parameter("moorline"), |b| {
            let message = Message::text(payload.clone());
            let mut encoder = Encoder::new(Role::Client, EncodeOptions::default(), None);
            let mut rng = StdRng::from_rng(&mut rand::rng());
            let mut out = BytesMut::with_capacity(expected);
            b.iter(|| {
                out.clear();
                for _ in 0..count {
                    encoder.encode(&message, &mut || rng.random(), &mut out).unwrap();
                }
                assert_eq!(out.len(), expected);
            })
        });
        g.bench_function(BenchmarkId::from_parameter("tungstenite"), |b| {
            let message = tungstenite::Utf8Bytes::from(payload.clone());
            b.iter(|| {
                let mut ws = tungstenite::WebSocket::from_raw_socket(
                    Mem::new(Bytes::new()),
                    tungstenite::protocol::Role::Client,
                    None,
                );
                for _ in 0..count {
                    ws.write(tungstenite::Message::Text(message.clone())).unwrap();
                }
                ws.flush().unwrap();
                assert_eq!(ws.get_ref().written, expected);
            })
        });
        g.bench_function(BenchmarkId::from_parameter("fastwebsockets"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ws = fastwebsockets::WebSocket::after_handshake(
                        Mem::new(Bytes::new()),
                        fastwebsockets::Role::Client,
                    );
                    ws.set_writev(false);
                    for _ in 0..count {
                        let frame = fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(payload.as_bytes()));
                        ws.write_frame(frame).await.unwrap();
                    }
                    assert_eq!(ws.into_inner().written, expected);
                })
            })
        });
        g.bench_function(BenchmarkId::from_parameter("tokio-websockets"), |b| {
            let message = tokio_websockets::Message::text(payload.clone());
            b.iter(|| {
                rt.block_on(async {
                    let mut ws = tokio_websockets::ClientBuilder::new().take_over(Mem::new(Bytes::new()));
                    for _ in 0..count {
                        ws.feed(message.clone()).await.unwrap();
                    }
                    ws.flush().await.unwrap();
                    assert_eq!(ws.get_ref().written, expected);
                })
            })
        });
        g.bench_function(BenchmarkId::from_parameter("yawc"), |b| {
            let payload = Bytes::from(payload.clone());
            b.iter(|| {
                rt.block_on(async {
                    let mut ws = yawc::WebSocket::from_stream(
                        Mem::new(Bytes::new()),
                        yawc::Role::Client,
                        yawc::Options::default(),
                    )
                    .unwrap();
                    for _ in 0..count {
                        ws.feed(yawc::frame::Frame::text(payload.clone())).await.unwrap();
                    }
                    ws.flush().await.unwrap();
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
