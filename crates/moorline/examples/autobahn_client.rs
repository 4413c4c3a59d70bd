//! The Autobahn|Testsuite client driver: runs every case of a running `wstest -m fuzzingserver`
//! (default `ws://127.0.0.1:9001`) with moorline as an echo client, then asks the server to
//! write its reports. `scripts/autobahn.sh` starts the server and prints the tally.
//!
//! `cargo run --release -p moorline --example autobahn_client -- [ws://127.0.0.1:9001] [cases]`
//! (`cases`: a comma-separated list of case numbers to run; all by default.)

use std::process::ExitCode;
use std::time::Duration;

use moorline::ws::{self, DeflateConfig, Message, WsOptions};
use moorline::{ConnectOptions, RetryPolicy};

const AGENT: &str = "moorline";
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

fn options() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never)
}

async fn case_count(base: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let mut s = ws::connect(&format!("{base}/getCaseCount"), options(), WsOptions::default(), CASE_TIMEOUT).await?;
    match s.events.await_ws(&s.stream, CASE_TIMEOUT).await? {
        Message::Text(t) => Ok(t.as_str().trim().parse()?),
        other => Err(format!("getCaseCount answered {other:?}").into()),
    }
}

/// Runs one case: echo every data message until the WebSocket or the connection ends.
async fn run_case(base: &str, case: usize) -> Result<(), moorline::Error> {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let ws_options = WsOptions::default().deflate(DeflateConfig::default()).max_message_size(64 << 20);
    let mut s = ws::connect(&url, options(), ws_options, CASE_TIMEOUT).await?;
    loop {
        match s.events.await_ws(&s.stream, CASE_TIMEOUT).await {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => s.conn.ws_send(&s.stream, m).await?,
            Ok(Message::Close(_)) => return Ok(()),
            Ok(_) => {}
            // Failing cases end with our close frame or a dropped connection: both are the
            // behaviour under test, judged by the server.
            Err(_) => return Ok(()),
        }
    }
}

async fn update_reports(base: &str) -> Result<(), moorline::Error> {
    let url = format!("{base}/updateReports?agent={AGENT}");
    let mut s = ws::connect(&url, options(), WsOptions::default(), CASE_TIMEOUT).await?;
    while !matches!(s.events.await_ws(&s.stream, CASE_TIMEOUT).await, Ok(Message::Close(_)) | Err(_)) {}
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let only: Option<Vec<usize>> =
        args.next().map(|list| list.split(',').filter_map(|c| c.trim().parse().ok()).collect());
    let count = match case_count(&base).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cases: Vec<usize> = only.unwrap_or_else(|| (1..=count).collect());
    for case in cases {
        eprint!("\rcase {case}/{count}");
        if let Err(e) = run_case(&base, case).await {
            eprintln!("\ncase {case}: {e}");
        }
    }
    eprintln!();
    if let Err(e) = update_reports(&base).await {
        eprintln!("autobahn_client: updateReports failed: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
