//! `moorline bench`: the trading client's benchmarks against the raw peers
//! (tokio-tungstenite, fastwebsockets, tokio-websockets), the same harness as `cargo bench -p
//! moorline-client --bench client_echo|client_idle` (`moorline_bench`), run from this binary:
//! each measurement in a child process of `moorline` itself.

use std::io::{IsTerminal, Write};

use moorline_bench::echo::EchoOptions;
use moorline_bench::idle::IdleOptions;
use moorline_bench::{BenchError, run_echo};
use serde_json::json;

use crate::out::{self, OutputError};

/// Which benchmark `moorline bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Which {
    /// Echo through the whole client: throughput (64 B, 16 KiB), round trips, CPU per message.
    Echo,
    /// Resident memory and heap per idle client with heartbeats.
    Idle,
    /// Both.
    All,
}

/// Options of `moorline bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The benchmark.
    #[arg(value_enum, default_value = "all")]
    pub(crate) which: Which,
    /// Runs: each client once per run (echo), a process per client kind and run (idle);
    /// figures are medians over runs, ratios paired per run.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true, value_parser = crate::args::positive)]
    pub(crate) runs: u64,
    /// Echo: messages per throughput run (default 50,000 at 64 B, 10,000 at 16 KiB).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = crate::args::positive)]
    pub(crate) messages: Option<u64>,
    /// Echo: round trips per latency run.
    #[arg(long, value_name = "N", default_value_t = 2_000, allow_negative_numbers = true, value_parser = crate::args::positive)]
    pub(crate) samples: u64,
    /// Echo: only `throughput`, `latency`, `64` or `16384`.
    #[arg(long, value_parser = ["throughput", "latency", "64", "16384"])]
    pub(crate) only: Option<String>,
    /// Idle: clients per process.
    #[arg(long, value_name = "N", default_value_t = 2_000, allow_negative_numbers = true, value_parser = crate::args::positive)]
    pub(crate) clients: u64,
    /// Idle: the heartbeat interval in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1_000, allow_negative_numbers = true, value_parser = crate::args::positive)]
    pub(crate) ping_ms: u64,
    /// Print one JSON object with every row (figures and ratios) instead of the tables.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Why `moorline bench` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchCliError {
    /// The path of this executable, to start the measuring processes from.
    #[error("cannot find this executable to start the benchmark processes: {0}")]
    Exe(#[source] std::io::Error),
    /// A benchmark failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// Writing the result.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Runs `moorline bench`.
pub(crate) fn run(args: &BenchArgs) -> Result<(), BenchCliError> {
    let exe = std::env::current_exe().map_err(BenchCliError::Exe)?;
    let terminal = std::io::stderr().is_terminal();
    let note = |text: &str| {
        if terminal {
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    };
    if cfg!(debug_assertions) {
        // Always said: figures from an unoptimised build are not figures.
        let _ = writeln!(
            std::io::stderr(),
            "moorline: warning: this build is not optimised; measure with `cargo run --release -p moorline-cli -- bench`"
        );
    }
    let runs = usize::try_from(args.runs).unwrap_or(usize::MAX);
    let echo = if matches!(args.which, Which::Echo | Which::All) {
        note(&format!("echo: {runs} runs of every client (a minute or so on 2 cores)..."));
        let opts = EchoOptions {
            runs,
            only: args.only.clone().unwrap_or_default(),
            clients: None,
            messages: args.messages.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            samples: usize::try_from(args.samples).unwrap_or(usize::MAX),
        };
        Some(run_echo(&exe, &opts)?)
    } else {
        None
    };
    let idle = if matches!(args.which, Which::Idle | Which::All) {
        note(&format!("idle: {} clients per process, {runs} runs...", args.clients));
        let opts = IdleOptions {
            clients: usize::try_from(args.clients).unwrap_or(usize::MAX),
            runs,
            ping_ms: args.ping_ms,
            kinds: None,
        };
        Some(moorline_bench::idle::run(&exe, &opts, &mut |line| note(line))?)
    } else {
        None
    };
    if args.json {
        out::line(json!({ "optimised": !cfg!(debug_assertions), "echo": echo, "idle": idle }))?;
    } else {
        if let Some(e) = &echo {
            out::line(e.table())?;
        }
        if let Some(i) = &idle {
            out::line(i.table())?;
        }
    }
    Ok(())
}
