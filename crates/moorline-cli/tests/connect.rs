//! `moorline connect` as a user runs it, against `moorline serve deribit` over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
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
fn connect_refuses_half_credentials_and_bad_headers() {
    let out = moorline()
        .args(["connect", "ws://127.0.0.1:9/", "--dialect", "deribit"])
        .env("MOORLINE_CLIENT_ID", "x")
        .env_remove("MOORLINE_CLIENT_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOORLINE_CLIENT_SECRET"));
    let out = moorline()
        .args(["connect", "ws://127.0.0.1:9/", "--header", "no-colon"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-colon"));
    let out = moorline().args(["connect", "http://x/"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://x/"));
}
