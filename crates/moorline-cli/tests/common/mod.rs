//! A running `moorline serve deribit` with its control endpoint, for the CLI tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The test kit's account (`moorline serve deribit` knows it).
pub const CLIENT_ID: &str = "moorline-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "moorline-test-secret";

pub fn moorline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moorline"))
}

/// The simulator's process, killed when dropped.
pub struct Served {
    pub child: Child,
    /// `ws://127.0.0.1:PORT/ws/api/v2`.
    pub url: String,
    /// Its control endpoint.
    pub control: Control,
}

/// The control endpoint (`127.0.0.1:PORT`); blocking sockets.
#[derive(Debug, Clone)]
pub struct Control(pub String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moorline serve deribit --json --control-port 0` with `extra` arguments.
pub fn serve_deribit(extra: &[&str]) -> Served {
    let mut child = moorline()
        .args(["serve", "deribit", "--json", "--control-port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let control = v["control_url"].as_str().unwrap().trim_start_matches("http://").trim_end_matches('/').to_owned();
    Served { child, url: v["url"].as_str().unwrap().to_owned(), control: Control(control) }
}

impl Served {
    /// See [`Control::hook`].
    pub fn hook(&self, hook: serde_json::Value) -> (u16, serde_json::Value) {
        self.control.hook(hook)
    }

    /// See [`Control::hook_ok`].
    pub fn hook_ok(&self, hook: serde_json::Value) -> serde_json::Value {
        self.control.hook_ok(hook)
    }

    /// See [`Control::connections`].
    pub fn connections(&self) -> serde_json::Value {
        self.control.connections()
    }
}

impl Control {
    fn http(&self, request: String) -> (u16, serde_json::Value) {
        let mut tcp = std::net::TcpStream::connect(&self.0).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        (text[9..12].parse().unwrap(), serde_json::from_str(body).unwrap())
    }

    /// `POST /hook` with `hook`: the status and the JSON answer.
    pub fn hook(&self, hook: serde_json::Value) -> (u16, serde_json::Value) {
        let body = hook.to_string();
        self.http(format!("POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len()))
    }

    /// `POST /hook`, which must succeed: its JSON answer.
    pub fn hook_ok(&self, hook: serde_json::Value) -> serde_json::Value {
        let (status, answer) = self.hook(hook.clone());
        assert_eq!(status, 200, "{hook} -> {answer}");
        answer
    }

    /// `GET /connections`.
    pub fn connections(&self) -> serde_json::Value {
        let (status, list) = self.http("GET /connections HTTP/1.1\r\nhost: x\r\n\r\n".to_owned());
        assert_eq!(status, 200, "{list}");
        list
    }
}
