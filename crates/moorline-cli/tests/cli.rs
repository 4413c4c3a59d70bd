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
        let out = run(&["demo", "http", "--json", "--protocol", protocol]);
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
    let out = run(&["demo", "http", "--protocol", "gopher"]);
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
    assert!(text.contains("session up again"), "{text}");
    assert!(text.contains("every promise held"), "{text}");
    // Not a terminal: a plain status line per second, not one redrawn in place.
    assert!(text.lines().any(|l| l.trim_start().starts_with("status ")), "{text}");
    assert!(!text.contains('\r'), "{text}");
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
fn serve_mock_echoes_logs_and_stops_on_sigterm_with_going_away() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // The default log level shows what clients send, as the help promises.
    let (mut served, announced) = serve(&["mock", "--echo"]);
    let stderr = drain(served.0.stderr.take().unwrap());
    assert_eq!(announced["server"], "mock");
    let url = announced["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let pid = served.0.id().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
            ws.send(Message::text("hello from the cli test")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello from the cli test"));
            // Ctrl-C / SIGTERM: every client gets a close frame 1001 (going away).
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001, "{frame:?}"),
                other => panic!("expected a close frame 1001, got {other:?}"),
            }
        })
        .await
        .expect("echo or close timed out");
    });
    let status = wait_bounded(&mut served.0, "serve mock after SIGTERM");
    assert!(status.success(), "{status:?}");
    let logs = stderr.join().unwrap();
    assert!(logs.contains("hello from the cli test"), "what the client sent is logged: {logs}");
    assert!(!logs.contains('\x1b'), "{logs}");
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
    let (mut served, announced) = serve(&["deribit", "--seed", "7", "--market-interval-ms", "20"]);
    let pid = served.0.id().to_string();
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
            // SIGTERM: the client gets a close frame 1001 (going away).
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(_))) => {}
                    Some(Ok(Message::Close(Some(frame)))) => {
                        assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
                        break;
                    }
                    other => panic!("expected a close frame 1001, got {other:?}"),
                }
            }
        })
        .await
        .expect("JSON-RPC calls or the close timed out");
    });
    let status = wait_bounded(&mut served.0, "serve deribit after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_deribit_hooks_are_reachable_from_its_control_endpoint() {
    use futures_util::{SinkExt, StreamExt};
    use std::io::{Read, Write};
    use tokio_tungstenite::tungstenite::Message;
    let (served, announced) = serve(&["deribit", "--market-interval-ms", "0", "--control-port", "0"]);
    let control = announced["control_url"].as_str().unwrap().trim_start_matches("http://").to_owned();
    let url = announced["url"].as_str().unwrap().to_owned();
    let http = |request: String| -> (u16, serde_json::Value) {
        let mut tcp = std::net::TcpStream::connect(&control).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        (text[9..12].parse().unwrap(), serde_json::from_str(body).unwrap())
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
            ws.send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"public/test"}"#)).await.unwrap();
            ws.next().await.unwrap().unwrap();
            let (status, list) = http("GET /connections HTTP/1.1\r\nhost: x\r\n\r\n".to_owned());
            assert_eq!(status, 200, "{list}");
            let hook =
                serde_json::json!({"hook": "fault", "conn": list[0]["id"], "fault": {"kind": "close", "code": 4003}})
                    .to_string();
            let (status, result) =
                http(format!("POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{hook}", hook.len()));
            assert_eq!((status, result), (200, serde_json::json!({"faulted": 1})));
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4003),
                other => panic!("expected close 4003, got {other:?}"),
            }
        })
        .await
        .expect("the hook did not act in time");
    });
    drop(served);
}

#[test]
fn serve_deribit_rejects_a_bad_heartbeat_floor() {
    let out = run(&["serve", "deribit", "--min-heartbeat=-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-heartbeat"));
}

/// Drains a child's pipe on a thread; the text comes back from the handle.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Waits (at most 30 s) for `child` to exit.
fn wait_bounded(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_exits_quietly_when_its_reader_goes_away() {
    use std::io::BufRead;
    // `moorline demo | head -1`: the reader takes one line and closes the pipe.
    for (args, first_line) in [(&["demo"][..], "simulator"), (&["demo", "http", "--json"], "server")] {
        let json = args.len() > 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moorline"));
        cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = drain(child.stderr.take().unwrap());
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(first.contains(first_line), "{first:?}");
        drop(stdout);
        let status = wait_bounded(&mut child, "moorline demo | head -1");
        let stderr = stderr.join().unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(status.code(), Some(0), "json {json}: {stderr}");
        assert!(stderr.is_empty(), "a closed pipe is not an error worth a message: {stderr}");
    }
}

#[test]
fn demo_to_a_full_device_fails_with_a_message() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moorline"))
        .arg("demo")
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, "moorline demo > /dev/full");
    let stderr = stderr.join().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stdout") && stderr.contains("No space left"), "{stderr}");
}

#[test]
fn logs_have_no_colour_when_stderr_is_not_a_terminal() {
    let out = run(&["--log", "debug", "demo", "http", "--protocol", "http1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let logs = String::from_utf8(out.stderr).unwrap();
    assert!(logs.contains("DEBUG"), "debug logs expected: {logs}");
    assert!(!logs.contains('\x1b'), "escape codes in logs written to a pipe: {logs}");
}

#[test]
fn a_bad_log_filter_is_rejected() {
    for args in [&["--log", "bogus", "demo"][..], &["--log=moorline=loud", "demo"], &["--log", "", "demo"]] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--log"), "{args:?}: {stderr}");
        assert!(stderr.contains("error, warn, info, debug, trace"), "{args:?}: {stderr}");
    }
    // The environment variable goes through the same check.
    let out = Command::new(env!("CARGO_BIN_EXE_moorline")).arg("demo").env("MOORLINE_LOG", "bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // Levels and directives are accepted (the run then fails on its own bad argument).
    for filter in ["info", "WARN", "moorline=debug,warn", "off"] {
        let out = run(&["--log", filter, "demo", "http", "--protocol", "gopher"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("gopher") && !stderr.contains("--log"), "{filter}: {stderr}");
    }
}

#[test]
fn address_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for server in ["mock", "deribit"] {
        let out = run(&["serve", server, "--port", &port]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{server}: {stderr}");
        assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{server}: {stderr}");
    }
}

#[test]
fn negative_numbers_get_a_clear_message() {
    let cases: [&[&str]; 7] = [
        &["serve", "mock", "--port", "-1"],
        &["serve", "mock", "--replay", "x.jsonl", "--speed", "-2"],
        &["serve", "deribit", "--seed", "-5"],
        &["serve", "deribit", "--market-interval-ms", "-100"],
        &["serve", "deribit", "--token-lifetime", "-1"],
        &["serve", "deribit", "--min-heartbeat", "-1"],
        &["serve", "deribit", "--idle-timeout", "-1"],
    ];
    for args in cases {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{args:?}: {stderr}");
        assert!(stderr.contains(args[args.len() - 2]), "names the option: {args:?}: {stderr}");
        assert!(stderr.contains("must be"), "says what is allowed: {args:?}: {stderr}");
    }
}

#[test]
fn help_has_examples_and_exit_codes() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["Examples:", "moorline demo", "moorline bench", "Exit status:", "2  usage error"] {
        assert!(help.contains(needle), "top-level help lacks {needle:?}:\n{help}");
    }
    let out = run(&["bench", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("moorline bench echo"));
    let out = run(&["bench", "--runs", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 or more"));
}

/// Every client in every table, each with its figures and, for the peers' rows and ours, a
/// ratio to the best peer (tiny sizes: this checks the command, not the speed).
#[test]
fn bench_echo_json_has_a_row_per_client_with_ratios() {
    let out = run(&["bench", "echo", "--runs", "1", "--messages", "300", "--samples", "50", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(report["idle"].is_null());
    let echo = &report["echo"];
    let clients = [
        "moorline-client (raw)",
        "moorline-client (jsonrpc)",
        "moorline ws (no client)",
        "tokio-tungstenite",
        "fastwebsockets",
        "tokio-websockets",
    ];
    let tables = echo["throughput"].as_array().unwrap();
    assert_eq!(tables.iter().map(|t| t["size"].as_u64().unwrap()).collect::<Vec<_>>(), [64, 16384]);
    for table in tables {
        let rows = table["rows"].as_array().unwrap();
        assert_eq!(rows.iter().map(|r| r["client"].as_str().unwrap()).collect::<Vec<_>>(), clients);
        for r in rows {
            assert!(r["msg_s"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["vs_best_peer"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["cpu_ns_per_msg"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    let rows = echo["latency"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), clients.len());
    for r in rows {
        assert!(r["p99_us"].as_f64().unwrap() >= r["p50_us"].as_f64().unwrap(), "{r}");
        assert!(r["p99_vs_best_peer"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// The idle benchmark's processes (a server and one per kind) started from `moorline` itself;
/// the heap is counted (by the binary's allocator), the ratios are to tokio-tungstenite's.
#[test]
fn bench_idle_json_has_a_row_per_kind() {
    let out = run(&["bench", "idle", "--runs", "1", "--clients", "40", "--ping-ms", "100", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let rows = report["idle"]["rows"].as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["moorline-client", "tokio-tungstenite", "tokio-tungstenite+heartbeat"]);
    for r in rows {
        assert!(r["failures"].as_array().unwrap().is_empty(), "{r}");
        assert!(r["heap_bytes"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["resident_vs_reference"].as_f64().is_some(), "{r}");
    }
    assert_eq!(rows[1]["heap_vs_reference"].as_f64(), Some(1.0));
}
