//! The trading client's benchmarks against raw WebSocket peers (tokio-tungstenite,
//! fastwebsockets, tokio-websockets), shared by `cargo bench -p moorline-client --bench
//! client_echo|client_idle` and by `moorline bench`.
//!
//! - [`echo`]: echo through the whole client against the peers used raw (throughput at 64 B
//!   and 16 KiB, round trips, client CPU per message, paired ratios to the best peer);
//! - [`idle`]: memory per idle client with heartbeats, against tokio-tungstenite.
//!
//! Both run their measurements in child processes of the running executable, which must call
//! [`child_main`] first thing in `main` and use [`Counting`] as its global allocator (the idle
//! benchmark reads the live heap from it). The harness code itself is a benchmark: it
//! `unwrap`s what its own loopback servers and peers do, inside those children; the parent
//! ([`run_echo`], [`idle::run`]) reports a child that failed as a [`BenchError`].
//!
//! ```no_run
//! # fn main() -> Result<(), moorline_bench::BenchError> {
//! // In `main`, before anything else:
//! if let Some(code) = moorline_bench::child_main() {
//!     std::process::exit(code);
//! }
//! let exe = std::env::current_exe().map_err(|source| moorline_bench::BenchError::Spawn { what: "itself", source })?;
//! let opts = moorline_bench::echo::EchoOptions { runs: 1, messages: Some(2_000), samples: 200, ..Default::default() };
//! let report = moorline_bench::run_echo(&exe, &opts)?;
//! print!("{}", report.table());
//! # Ok(()) }
//! ```
// The harness runs in child processes whose failure the parent reports (see above).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
pub mod echo;
pub mod idle;

use std::path::Path;
use std::process::Command;

use common::OPTIONS_ENV;
pub use common::{BenchError, Counting, ROLE_ENV, live_heap};

/// Runs the benchmark role this process was started for, if any: `Some(exit code)` when it
/// was a child (the caller exits with it), `None` otherwise (an ordinary start).
pub fn child_main() -> Option<i32> {
    let role = std::env::var(ROLE_ENV).ok()?;
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the file limit: {e}");
    }
    match role.as_str() {
        "echo" => {
            let opts: echo::EchoOptions = match std::env::var(OPTIONS_ENV).ok().map(|t| serde_json::from_str(&t)) {
                Some(Ok(o)) => o,
                _ => {
                    eprintln!("{OPTIONS_ENV} is missing or not the echo options as JSON");
                    return Some(2);
                }
            };
            let report = echo::measure(&opts);
            match serde_json::to_string(&report) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("report: {e}");
                    return Some(1);
                }
            }
            Some(0)
        }
        "idle-server" => {
            idle::server();
            Some(0)
        }
        "idle-client" => {
            idle::client_process();
            Some(0)
        }
        other => {
            eprintln!("unknown {ROLE_ENV} `{other}`");
            Some(2)
        }
    }
}

/// Runs the echo benchmark in a child process started from `exe` (which calls
/// [`child_main`] first thing) and returns what it measured.
pub fn run_echo(exe: &Path, opts: &echo::EchoOptions) -> Result<echo::EchoReport, BenchError> {
    if let Some(unknown) = opts.clients.iter().flatten().find(|c| !echo::CLIENTS.contains(&c.as_str())) {
        return Err(BenchError::UnknownClient { name: unknown.clone(), known: echo::CLIENTS.join(", ") });
    }
    let json = serde_json::to_string(opts)
        .map_err(|e| BenchError::Child { what: "the echo options".into(), detail: e.to_string() })?;
    let output = Command::new(exe)
        .env(ROLE_ENV, "echo")
        .env(OPTIONS_ENV, json)
        .output()
        .map_err(|source| BenchError::Spawn { what: "the echo benchmark", source })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_words = || String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("").to_owned();
    if !output.status.success() {
        return Err(BenchError::Child {
            what: "the echo benchmark".into(),
            detail: format!("{}: {}", output.status, last_words()),
        });
    }
    stdout.lines().rev().find(|l| l.starts_with('{')).and_then(|l| serde_json::from_str(l).ok()).ok_or_else(|| {
        BenchError::Child {
            what: "the echo benchmark".into(),
            detail: format!("no report in its output ({})", last_words()),
        }
    })
}
