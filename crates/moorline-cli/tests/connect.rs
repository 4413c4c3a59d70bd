//! `moorline connect` as a user runs it, against `moorline serve deribit` over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn moorline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moorline"))
}

/// Waits for the child, at most 30 s.
fn finish(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the simulator; its URL.
fn deribit() -> (Sim, String) {
    let mut child = moorline()
        .args(["serve", "deribit", "--json", "--market-interval-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    (Sim(child), v["url"].as_str().unwrap().to_owned())
}

#[test]
fn connect_json_subscribes_reports_refused_and_counts_messages() {
    let (_sim, url) = deribit();
    let child = moorline()
        .args([
            "connect",
            &url,
            "--dialect",
            "deribit",
            "--subscribe",
            "trades.BTC-PERPETUAL.raw",
            "--subscribe",
            "book.BTC-PERPETUAL.100ms",
            "--subscribe",
            "nope.channel",
            "--heartbeat",
            "10",
            "--count",
            "3",
            "--json",
        ])
        .env("MOORLINE_CLIENT_ID", "moorline-test-client")
        .env("MOORLINE_CLIENT_SECRET", "moorline-test-secret")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, "moorline connect");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(lines.iter().all(|l| l["ts_ms"].is_u64() && l["event"].is_string()));
    assert_eq!(lines[0]["event"], "connected");
    let restored = lines.iter().find(|l| l["event"] == "restored").unwrap();
    assert_eq!(restored["refused"][0]["channel"], "nope.channel");
    assert_eq!(restored["channels"].as_array().unwrap().len(), 2);
    let messages: Vec<_> = lines.iter().filter(|l| l["event"] == "message").collect();
    assert_eq!(messages.len(), 3, "--count 3");
    assert!(messages.iter().all(|m| m["channel"].is_string() && m["data"].is_string()));
}

#[test]
fn connect_exits_non_zero_when_retries_run_out() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = moorline()
        .args(["connect", &format!("ws://127.0.0.1:{port}/"), "--max-retries", "1", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, "moorline connect");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gave up after 2 failed attempts"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l.contains("\"reconnecting\"")), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.contains("\"closed\"")), "{stdout}");
}

#[test]
fn connect_refuses_half_credentials_bad_headers_and_bad_urls() {
    let out = moorline()
        .args(["connect", "ws://127.0.0.1:9/", "--dialect", "deribit"])
        .env("MOORLINE_CLIENT_ID", "x")
        .env_remove("MOORLINE_CLIENT_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOORLINE_CLIENT_SECRET"));
    // Bad arguments are usage errors (exit 2), named, before anything connects.
    for (args, named) in [
        (&["connect", "ws://127.0.0.1:9/", "--header", "no-colon"][..], "no-colon"),
        (&["connect", "ws://127.0.0.1:9/", "--header", "bad name: v"], "invalid name"),
        (&["connect", "ws://127.0.0.1:9/", "--header", "Sec-WebSocket-Key: x"], "handshake"),
        (&["connect", "http://x/"], "http://x/"),
        (&["connect", "wss://"], "wss://"),
    ] {
        let out = moorline().args(args).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

/// A running child's stdout, one JSON object per line, read as it comes.
struct Lines {
    rx: std::sync::mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Lines {
    fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// The next line that matches, within 20 s.
    fn until(&mut self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.rx.recv_timeout(left).unwrap_or_else(|e| {
                let tail: Vec<_> = self.seen.iter().rev().take(10).collect();
                panic!("no {what} within 20 s ({e}); last lines: {tail:#?}")
            });
            self.seen.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }
}

fn is_book(l: &serde_json::Value) -> bool {
    l["event"] == "message" && l["channel"] == "book.BTC-PERPETUAL.100ms"
}

/// `moorline connect --dialect deribit --signature --json` against `moorline serve
/// deribit`: authenticated by client signature, a book change withheld through the control
/// endpoint shows as `book_gap` and the next book line is the resync's snapshot; an order
/// placed from stdin and cancelled by the venue shows as `order` events; after a reset the
/// reconciliation reports.
#[test]
fn connect_deribit_signature_book_gaps_and_order_events() {
    let sim = common::serve_deribit(&["--market-interval-ms", "20"]);
    let mut child = moorline()
        .args(["connect", &sim.url, "--dialect", "deribit", "--signature", "--json", "--duration", "60"])
        .args(["--subscribe", "book.BTC-PERPETUAL.100ms", "--subscribe", "user.orders.BTC-PERPETUAL.raw"])
        .env("MOORLINE_CLIENT_ID", common::CLIENT_ID)
        .env("MOORLINE_CLIENT_SECRET", common::CLIENT_SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = Lines::of(&mut child);
    out.until("connected", |l| l["event"] == "connected");
    let reconciled = out.until("reconciled", |l| l["event"] == "reconciled");
    assert_eq!(reconciled["open"], 0);
    let conns = sim.connections();
    assert_eq!(conns[0]["client_id"], common::CLIENT_ID, "authenticated: {conns}");

    // Book integrity: a withheld change is a gap; nothing until the resync's snapshot.
    let first = out.until("a book line", is_book);
    let data: serde_json::Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
    assert!(data["change_id"].is_u64(), "{data}");
    sim.hook_ok(serde_json::json!({"hook": "book_fault", "instrument_name": "BTC-PERPETUAL", "fault": "withhold"}));
    let gap = out.until("book_gap", |l| l["event"] == "book_gap");
    assert_eq!(
        (gap["channel"].as_str(), gap["instrument"].as_str()),
        (Some("book.BTC-PERPETUAL.100ms"), Some("BTC-PERPETUAL"))
    );
    assert!(gap["expected"].is_u64() && gap["got"].is_u64() && gap["expected"] != gap["got"], "{gap}");
    let next = out.until("a book line after the gap", is_book);
    let data: serde_json::Value = serde_json::from_str(next["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["type"], "snapshot", "the first line after a gap is the resync's snapshot: {data}");

    // An order from stdin (a raw JSON-RPC request), then cancelled by the venue.
    let buy = serde_json::json!({"jsonrpc": "2.0", "id": 900_001, "method": "private/buy", "params":
        {"instrument_name": "BTC-PERPETUAL", "amount": 10, "type": "limit", "price": 55_000, "label": "cli-1"}});
    writeln!(stdin, "{buy}").unwrap();
    stdin.flush().unwrap();
    let open = out.until("the order, open", |l| l["event"] == "order" && l["order"]["label"] == "cli-1");
    assert_eq!((open["source"].as_str(), open["order"]["order_state"].as_str()), (Some("notification"), Some("open")));
    let id = open["order"]["order_id"].as_str().unwrap().to_owned();
    sim.hook_ok(serde_json::json!({"hook": "cancel_order", "order_id": id}));
    let cancelled =
        out.until("the order, cancelled", |l| l["event"] == "order" && l["order"]["order_id"] == id.as_str());
    assert_eq!(cancelled["order"]["order_state"], "cancelled");

    // A reset: reconnected, reconciled again (the cancelled order not reported again).
    sim.hook_ok(serde_json::json!({"hook": "fault", "fault": {"kind": "reset"}}));
    out.until("reconnected", |l| l["event"] == "reconnected");
    let again = out.until("reconciled", |l| l["event"] == "reconciled");
    assert_eq!(again["open"], 0);
    let orders = out.seen.iter().filter(|l| l["event"] == "order").count();
    assert_eq!(orders, 2, "each order state once");
    let _ = child.kill();
    let _ = child.wait();
}

/// `--signature` with a wrong secret: the venue refuses the signature (13004), the command
/// exits 1 without ever being connected.
#[test]
fn connect_deribit_signature_with_a_wrong_secret_fails() {
    let sim = common::serve_deribit(&["--market-interval-ms", "0"]);
    let child = moorline()
        .args(["connect", &sim.url, "--dialect", "deribit", "--signature", "--json"])
        .env("MOORLINE_CLIENT_ID", common::CLIENT_ID)
        .env("MOORLINE_CLIENT_SECRET", "not-the-secret")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, "moorline connect");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("13004"), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("\"connected\""), "{stdout}");
    let out = moorline()
        .args(["connect", &sim.url, "--dialect", "deribit", "--signature"])
        .env_remove("MOORLINE_CLIENT_ID")
        .env_remove("MOORLINE_CLIENT_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--signature needs"));
}
