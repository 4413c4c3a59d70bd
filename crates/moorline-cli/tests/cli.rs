//! The `moorline` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moorline"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("moorline {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn steps(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn demo_json_reports_down_lists_and_reconnects() {
    for protocol in ["http1", "http2"] {
        let out = run(&["demo", "--json", "--protocol", protocol]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let steps = steps(&out);
        let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(names.iter().filter(|n| **n == "up").count(), 2, "{names:?}");
        let down = steps.iter().find(|s| s["step"] == "down").unwrap();
        assert_eq!(down["detail"]["possibly_processed"][0], "/stall");
        if protocol == "http1" {
            // Queued behind the stalled request, never written: not processed.
            assert_eq!(down["detail"]["unprocessed"][0], "/hello");
        }
        assert_eq!(names.last(), Some(&"exit"));
    }
}

#[test]
fn help_and_bad_arguments() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo"));
    let out = run(&["demo", "--protocol", "gopher"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gopher"));
    let out = run(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn text_output_has_no_colour_when_not_a_terminal() {
    let out = run(&["demo"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "escape codes in piped output");
    assert!(text.contains("reconnected"));
}

/// A running `moorline serve ...`, killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `moorline serve <args> --json` and returns it with its announcement.
fn serve(args: &[&str]) -> (Served, serde_json::Value) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_moorline"))
        .arg("serve")
        .args(args)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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

#[test]
fn serve_mock_echoes_and_stops_on_sigterm() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut served, announced) = serve(&["mock", "--echo"]);
    assert_eq!(announced["server"], "mock");
    let url = announced["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
            ws.send(Message::text("hello")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        })
        .await
        .expect("echo timed out");
    });
    let pid = served.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = served.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_mock_rejects_bad_options_and_files() {
    let out = run(&["serve", "mock", "--ca-out", "/tmp/x.pem"]);
    assert_eq!(out.status.code(), Some(2), "--ca-out needs --tls");
    let out = run(&["serve", "mock", "--replay", "/nonexistent/session.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/session.jsonl"));
    let dir = std::env::temp_dir().join(format!("moorline-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"ts\": 0, \"dir\": \"in\", \"type\": \"text\"}\nnot json\n").unwrap();
    let out = run(&["serve", "mock", "--replay", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_mock_tls_writes_the_ca() {
    let dir = std::env::temp_dir().join(format!("moorline-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let (_served, announced) = serve(&["mock", "--tls", "--http2", "--ca-out", ca.to_str().unwrap()]);
    assert!(announced["url"].as_str().unwrap().starts_with("wss://127.0.0.1:"));
    let pem = std::fs::read_to_string(&ca).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(announced["ca_pem"].as_str(), Some(pem.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_deribit_answers_json_rpc_and_is_deterministic_from_its_seed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (_served, announced) = serve(&["deribit", "--seed", "7", "--market-interval-ms", "20"]);
    assert_eq!(announced["server"], "deribit");
    assert_eq!(announced["seed"], 7);
    let url = announced["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws/api/v2"), "{url}");
    let (id, secret) = (announced["client_id"].as_str().unwrap(), announced["client_secret"].as_str().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
            let mut call = async |request: serde_json::Value| {
                ws.send(Message::text(request.to_string())).await.unwrap();
                loop {
                    let Message::Text(t) = ws.next().await.unwrap().unwrap() else { continue };
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if v["id"] == request["id"] {
                        return v;
                    }
                }
            };
            let test = call(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"public/test","params":{}})).await;
            assert!(test["result"]["version"].is_string(), "{test}");
            let auth = call(serde_json::json!({"jsonrpc":"2.0","id":2,"method":"public/auth",
                "params":{"grant_type":"client_credentials","client_id":id,"client_secret":secret}}))
            .await;
            assert_eq!(auth["result"]["token_type"], "bearer", "{auth}");
            let unknown = call(serde_json::json!({"jsonrpc":"2.0","id":3,"method":"public/nope"})).await;
            assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
        })
        .await
        .expect("JSON-RPC calls timed out");
    });
}

#[test]
fn serve_deribit_rejects_a_bad_heartbeat_floor() {
    let out = run(&["serve", "deribit", "--min-heartbeat=-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-heartbeat"));
}
