//! `moorline demo` on the trading client, `--record`, `moorline replay`, and a recording
//! served back by `moorline serve mock --replay`: the real binary against real loopback
//! servers (the demo's simulator is in-process, on 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs `moorline args` (with `envs`) to its end, at most `bound`.
fn run_env(args: &[&str], envs: &[(&str, &str)], bound: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moorline"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (drain(child.stdout.take().unwrap()), drain(child.stderr.take().unwrap()));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("moorline {args:?} did not finish in {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn run(args: &[&str]) -> Output {
    run_env(args, &[], Duration::from_secs(60))
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// A running `moorline serve ...`, killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str]) -> (Served, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moorline"))
        .arg("serve")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("no announcement");
    (served, serde_json::from_str(&line).expect("announcement is JSON"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moorline-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("session.jsonl")
}

const SECRET_KEYS: [&str; 4] = ["client_secret", "access_token", "refresh_token", "signature"];

/// Every line of a recording, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect()
}

/// How many secret values a JSON value holds that are not redacted, and how many redacted.
fn secrets(v: &Value, plain: &mut Vec<String>, redacted: &mut usize) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if SECRET_KEYS.contains(&k.as_str()) {
                    if v == "<redacted>" {
                        *redacted += 1;
                    } else {
                        plain.push(format!("{k}: {v}"));
                    }
                } else {
                    secrets(v, plain, redacted);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| secrets(i, plain, redacted)),
        _ => {}
    }
}

/// Asserts the recording redacts every credential and token (and has some to redact).
fn assert_redacted(path: &Path, secret: Option<&str>) {
    let text = std::fs::read_to_string(path).unwrap();
    if let Some(secret) = secret {
        assert!(!text.contains(secret), "the client secret is in the recording");
    }
    let (mut plain, mut redacted) = (Vec::new(), 0);
    for line in lines(path) {
        if line["type"] == "text"
            && let Ok(v) = serde_json::from_str::<Value>(line["data"].as_str().unwrap())
        {
            secrets(&v, &mut plain, &mut redacted);
        }
    }
    assert!(plain.is_empty(), "secrets in the recording: {plain:?}");
    // public/auth out (client_secret) and its answer in (access and refresh tokens).
    assert!(redacted >= 3, "no authentication recorded? {redacted} redacted values");
}

/// The text frames a recording says the client received, in order.
fn received_texts(path: &Path) -> Vec<String> {
    lines(path)
        .into_iter()
        .filter(|l| l["dir"] == "in" && l["type"] == "text")
        .map(|l| l["data"].as_str().unwrap().to_owned())
        .collect()
}

/// Serves `path` with `moorline serve mock --replay` and reads the first `n` text frames a
/// WebSocket client gets from it.
fn served_back(path: &Path, n: usize) -> Vec<String> {
    served_back_to_each(path, &[n]).remove(0)
}

/// `moorline serve mock --replay` of `path`, a client connecting after another: the k-th gets
/// the k-th recorded connection; the first `counts[k]` text messages of each.
fn served_back_to_each(path: &Path, counts: &[usize]) -> Vec<Vec<String>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (_served, announced) = serve(&["mock", "--replay", path.to_str().unwrap(), "--speed", "20"]);
    let url = announced["url"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut all = Vec::new();
            for &n in counts {
                let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
                let mut got = Vec::new();
                while got.len() < n {
                    match ws.next().await.expect("the replay ended early").unwrap() {
                        Message::Text(t) => got.push(t.to_string()),
                        Message::Close(c) => panic!("closed after {} frames: {c:?}", got.len()),
                        _ => {}
                    }
                }
                all.push(got);
            }
            all
        })
        .await
        .expect("the replay did not arrive within 20 s")
    })
}

/// The whole demo with `--json`, `--duration` and `--record`: every promise held and said
/// so in the summary; the recording redacts secrets, `moorline replay` reads it, and the mock
/// server serves it back frame for frame.
#[test]
fn demo_keeps_every_promise_and_its_recording_replays() {
    let path = temp("demo");
    let started = Instant::now();
    let out = run(&["demo", "--json", "--duration", "5", "--record", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "--json prints one object: {stdout}");
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["ok"], true, "{s:#}");
    assert_eq!(s["broken_promises"], serde_json::json!([]), "{s:#}");
    assert_eq!(s["book_gaps"], serde_json::json!({"injected": 1, "detected": 1, "resynced": 1}), "{s:#}");
    assert_eq!(s["deltas_from_broken_books"], 0, "{s:#}");
    assert_eq!(s["subscriptions"], serde_json::json!({"lost": 0, "duplicated": 0}), "{s:#}");
    assert_eq!(s["hung_requests"], 0, "{s:#}");
    // Clean close, RST, half-open and the lost order response each cost one reconnect.
    assert_eq!(s["reconnects"], 4, "{s:#}");
    assert!(s["messages"].as_u64().unwrap() > 100, "market data flowed: {s:#}");
    let faults = s["faults"].as_array().unwrap();
    let names: Vec<&str> = faults.iter().map(|f| f["fault"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["clean close", "tcp reset", "half-open", "book gap", "token expiry", "lost order response"],
        "{s:#}"
    );
    for f in faults {
        assert_eq!(f["ok"], true, "{f}");
        assert!(f["detect_ms"].as_f64().unwrap() <= f["restore_ms"].as_f64().unwrap(), "{f}");
    }
    assert!(s["detect_ms"]["max"].as_f64().unwrap() > 0.0 && s["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let ran = s["duration_ms"].as_u64().unwrap();
    assert!(ran >= 5000 && started.elapsed() >= Duration::from_secs(5), "--duration 5 ran {ran} ms");
    assert_eq!(s["record"]["dropped"], 0, "{s:#}");
    let written = s["record"]["written"].as_u64().unwrap();
    assert_eq!(lines(&path).len() as u64, written, "the summary counts the file's frames");

    assert_redacted(&path, None);

    // `moorline replay --json`: the counts are the file's.
    let out = run(&["replay", "--json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = lines(&path);
    let count = |dir: &str| all.iter().filter(|l| l["dir"] == dir).count() as u64;
    assert_eq!(m["in"]["frames"].as_u64(), Some(count("in")), "{m:#}");
    assert_eq!(m["out"]["frames"].as_u64(), Some(count("out")), "{m:#}");
    assert_eq!(m["served_by_mock"].as_u64(), Some(count("in")), "{m:#}");
    assert!(m["in"]["by_type"]["close"].as_u64().unwrap() >= 1, "the clean close is recorded: {m:#}");
    assert!(m["duration_ms"].as_f64().unwrap() >= 4000.0, "{m:#}");
    // The half-open: 1.5 s without a frame until the client declares the peer dead.
    let gaps = m["gaps"].as_array().unwrap();
    assert!(gaps.iter().any(|g| g["gap_ms"].as_f64().unwrap() >= 1000.0), "{m:#}");

    // Text: every frame, then the metadata.
    let out = run(&["replay", path.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let shown = |dir: &str| text.lines().filter(|l| l.contains(&format!(" ms {dir} "))).count();
    assert_eq!(shown("in") + shown("out") + shown("meta"), all.len());
    assert!(text.contains("gaps") && text.contains("serve mock --replay"), "{text}");

    // Every connection is marked (the first and one per reconnect), and counted.
    assert_eq!(count("meta"), 1 + s["reconnects"].as_u64().unwrap(), "{m:#}");
    assert_eq!(m["connections"].as_u64(), Some(count("meta")), "{m:#}");

    // Served back: the first client of the mock gets what the demo's client received on its
    // first connection (ended by the venue's clean close), the second what it received on
    // its second: an incident with reconnects replays connection by connection.
    let mut sessions: Vec<Vec<String>> = Vec::new();
    for l in &all {
        if l["dir"] == "meta" {
            sessions.push(Vec::new());
        } else if l["dir"] == "in" && l["type"] == "text" {
            sessions.last_mut().expect("a marker first").push(l["data"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<Vec<String>> = sessions.into_iter().take(2).map(|s| s.into_iter().take(30).collect()).collect();
    assert!(expected.iter().all(|e| e.len() >= 10), "{expected:#?}");
    let counts: Vec<usize> = expected.iter().map(Vec::len).collect();
    assert_eq!(served_back_to_each(&path, &counts), expected);
}

/// `moorline connect --record` on `moorline serve deribit`, with credentials: the file has
/// both directions, no secret, and `moorline serve mock --replay` plays it to another client.
#[test]
fn connect_records_a_session_that_serve_mock_replays() {
    let (_deribit, announced) = serve(&["deribit", "--market-interval-ms", "20"]);
    let url = announced["url"].as_str().unwrap().to_owned();
    let (id, secret) = (announced["client_id"].as_str().unwrap(), announced["client_secret"].as_str().unwrap());
    let path = temp("connect");
    let out = run_env(
        &[
            "connect",
            &url,
            "--dialect",
            "deribit",
            "--subscribe",
            "ticker.BTC-PERPETUAL.100ms",
            "--count",
            "5",
            "--json",
            "--record",
            path.to_str().unwrap(),
        ],
        &[("MOORLINE_CLIENT_ID", id), ("MOORLINE_CLIENT_SECRET", secret)],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let all = lines(&path);
    let methods: Vec<String> = all
        .iter()
        .filter(|l| l["dir"] == "out" && l["type"] == "text")
        .filter_map(|l| serde_json::from_str::<Value>(l["data"].as_str().unwrap()).ok())
        .filter_map(|v| v["method"].as_str().map(str::to_owned))
        .collect();
    assert!(methods.contains(&"public/auth".to_owned()), "{methods:?}");
    assert!(methods.contains(&"public/subscribe".to_owned()) || methods.contains(&"private/subscribe".to_owned()));
    // The user's --count 5 ticker messages are in the file, as received.
    let received = received_texts(&path);
    let data = received.iter().filter(|t| t.contains("\"subscription\"")).count();
    assert!(data >= 5, "{received:#?}");
    assert_redacted(&path, Some(secret));

    let expected: Vec<String> = received.into_iter().take(6).collect();
    assert_eq!(served_back(&path, expected.len()), expected);
}

/// Bad files are refused with the line that is wrong; a missing file names itself.
#[test]
fn replay_refuses_what_is_not_a_recording() {
    let path = temp("bad");
    std::fs::write(
        &path,
        "{\"ts\":0,\"dir\":\"in\",\"type\":\"text\",\"data\":\"ok\"}\n{\"ts\":1,\"dir\":\"sideways\"}\n",
    )
    .unwrap();
    let out = run(&["replay", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    let out = run(&["replay", "/no/such/recording.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/recording.jsonl"));
}
