//! Reading a notification: the full parser (`jsonrpc::parse`, serde_json, every token
//! checked) against the dialects' fast path (`jsonrpc::scan::notification`, the envelope read
//! and `data` crossed by its structure), on what venues send and on the echo benchmark's
//! padded frames.
//!
//! `cargo bench -p moorline-client --bench jsonrpc_scan`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use moorline_client::jsonrpc::{self, Incoming, scan};

/// The echo benchmark's frame: one string padded to `size` bytes.
fn padded(size: usize) -> String {
    let mut s = String::from(r#"{"method":"s","params":{"channel":"a","data":""#);
    while s.len() < size - 3 {
        s.push('x');
    }
    s.push_str("\"}}");
    s
}

/// A Deribit order book change with `levels` levels on each side.
fn book(levels: usize) -> String {
    let side = |kind: &str, from: usize, up: bool| {
        (0..levels)
            .map(|i| {
                let price = if up { from + i } else { from - i };
                format!(r#"["{kind}",{price}.5,{}.0]"#, 1000 + i * 7)
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"book.BTC-PERPETUAL.100ms","data":{{"type":"change","timestamp":1733400000000,"prev_change_id":68770101,"instrument_name":"BTC-PERPETUAL","change_id":68770102,"bids":[{}],"asks":[{}]}}}}}}"#,
        side("new", 65000, false),
        side("change", 65001, true)
    )
}

const TRADE: &str = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":1966031,"trade_id":"ETH-2696055","timestamp":1590484512188,"tick_direction":2,"price":3920.5,"mark_price":3921.19,"instrument_name":"BTC-PERPETUAL","index_price":3920.98,"direction":"sell","amount":10.0}]}}"#;

fn notifications(c: &mut Criterion) {
    let frames = [
        ("padded 64 B", padded(64)),
        ("deribit trade", TRADE.to_owned()),
        ("deribit book 20 levels", book(20)),
        ("padded 16 KiB", padded(16 << 10)),
        ("deribit book 400 levels", book(400)),
    ];
    for (name, text) in &frames {
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("parse (serde_json)", |b| {
            b.iter(|| matches!(jsonrpc::parse(black_box(text)), Ok(Incoming::Notification { .. })))
        });
        g.bench_function("scan::notification", |b| b.iter(|| scan::notification(black_box(text)).is_some()));
        g.finish();
        assert!(scan::notification(text).is_some(), "{name}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = notifications
}
criterion_main!(benches);
