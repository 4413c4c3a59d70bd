//! The `moorline` command-line tool.
#![forbid(unsafe_code)]

mod args;
mod bench;
mod connect;
mod demo;
mod out;
mod replay;
mod serve;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

// The benchmark children (`moorline bench`) read the live heap from it; one relaxed atomic
// add per allocation otherwise.
#[global_allocator]
static HEAP: moorline_bench::Counting = moorline_bench::Counting;

/// moorline keeps connections to trading venues alive and correct.
#[derive(Debug, Parser)]
#[command(name = "moorline", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    /// Diagnostics on stderr: a level (off, error, warn, info, debug, trace) or directives
    /// such as `moorline=debug,warn`. Default: info for `serve` (which logs what clients send),
    /// warn otherwise. Colour only on a terminal and without `NO_COLOR`.
    #[arg(long, global = true, env = "MOORLINE_LOG", value_name = "FILTER", value_parser = args::log_filter)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the trading client surviving real faults, on the built-in Deribit simulator (TLS,
    /// 127.0.0.1, no network): a clean close, a TCP reset, a silent half-open, a book gap,
    /// token expiry and a lost order response, each detected and recovered; an order placed
    /// and cancelled; a summary of the promises kept. Exit 0 only if every one held.
    /// `moorline demo http`: the connection layer's demo.
    Demo(demo::DemoArgs),
    /// Print a recording (JSONL, from `--record`) with its metadata: counts in and out,
    /// duration, gaps between frames.
    Replay(replay::ReplayArgs),
    /// Run one of the test kit's servers on 127.0.0.1 until Ctrl-C, to try clients against it.
    #[command(subcommand)]
    Serve(ServeCommand),
    /// Connect the trading client to a venue: heartbeats, reconnection and subscriptions
    /// handled; stdin lines sent as text messages, events printed (`--json`: one object per
    /// line). Credentials from MOORLINE_CLIENT_ID and MOORLINE_CLIENT_SECRET.
    Connect(connect::ConnectArgs),
    /// Measure the trading client against the raw WebSocket peers (tokio-tungstenite,
    /// fastwebsockets, tokio-websockets) on loopback: echo throughput, round trips and CPU
    /// per message; memory per idle client with heartbeats. Build with --release.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(bench::BenchArgs),
}

/// Examples and exit codes, after the top-level help.
const EXAMPLES: &str = "\
Examples:
  moorline demo                          the trading client surviving faults, on the simulator
  moorline demo --json --duration 60     a longer run, the summary as one JSON object
  moorline serve deribit --tls --control-port 0
                                         the Deribit simulator, with its fault hooks over HTTP
  moorline connect wss://127.0.0.1:PORT/ws/api/v2 --dialect deribit --ca ca.pem \\
      --subscribe ticker.BTC-PERPETUAL.100ms --count 10 --json
  moorline replay session.jsonl --json   a recording's counts, duration and gaps
  moorline bench echo --runs 5           the client against the raw peers

Exit status:
  0  success (also when the reader of stdout goes away, as with `| head`)
  1  failure: a broken promise in `demo`, a fatal connection error or retries run out in
     `connect`, a server that could not start, an unreadable recording, a failed benchmark
  2  usage error: an unknown option or a value out of range (the message names it)";

/// Examples of `moorline bench`.
const BENCH_EXAMPLES: &str = "\
Examples:
  moorline bench                         both, defaults (about a minute on 2 cores)
  moorline bench echo --only latency --samples 10000
  moorline bench idle --clients 10000 --json";

/// The servers `moorline serve` runs.
#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// The WebSocket mock server: logs what clients send (at info, the default level of
    /// `serve`), echoes or replays on request, accepts any path; HTTP/1.1 upgrades, and HTTP/2
    /// extended CONNECT with --http2. Ctrl-C closes every client with 1001 (going away).
    Mock(ServeMockArgs),
    /// The Deribit-compatible simulator: JSON-RPC 2.0 over WebSocket on /ws/api/v2 (public/auth
    /// with the test credentials, heartbeats, subscriptions, a seeded market and matching book).
    /// Ctrl-C closes every client with 1001 (going away).
    Deribit(ServeDeribitArgs),
}

/// Options of `moorline serve deribit`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeDeribitArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = args::port)]
    pub(crate) port: u16,
    /// Seed of the simulated market: the same seed gives the same market.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = args::whole_number)]
    pub(crate) seed: u64,
    /// Milliseconds between market steps (ticker, book changes, trades); 0 stops the market.
    #[arg(long, value_name = "MS", default_value_t = 100, allow_negative_numbers = true, value_parser = args::whole_number)]
    pub(crate) market_interval_ms: u64,
    /// Lifetime of access tokens in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900, allow_negative_numbers = true, value_parser = args::whole_number)]
    pub(crate) token_lifetime: u64,
    /// Smallest heartbeat interval accepted by public/set_heartbeat, in seconds (Deribit: 10;
    /// fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "10", allow_negative_numbers = true, value_parser = args::seconds)]
    pub(crate) min_heartbeat: Duration,
    /// Close connections the client sent no frame on for this many seconds (fractions
    /// allowed; 0: never); cancel-on-disconnect fires as for any close.
    #[arg(long, value_name = "SECONDS", default_value = "600", allow_negative_numbers = true, value_parser = args::seconds)]
    pub(crate) idle_timeout: Duration,
    /// Turn the credit-based rate limit off.
    #[arg(long)]
    pub(crate) no_rate_limit: bool,
    /// Keep the session open after error 10028 (Deribit ends it).
    #[arg(long)]
    pub(crate) keep_session_on_rate_limit: bool,
    /// Serve wss:// with a certificate signed by a CA generated at start.
    #[arg(long)]
    pub(crate) tls: bool,
    /// With --tls: write the CA certificate (PEM) to this file.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca_out: Option<std::path::PathBuf>,
    /// Serve the HTTP control endpoint (hooks: faults, book gaps, token expiry, lost responses...)
    /// on this port of 127.0.0.1 (0 picks a free one; the URL is printed). GET /connections,
    /// POST /hook with a JSON hook; see the README.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true, value_parser = args::port)]
    pub(crate) control_port: Option<u16>,
    /// Announce the server as one JSON object on stdout (url, credentials) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Options of `moorline serve mock`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeMockArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = args::port)]
    pub(crate) port: u16,
    /// Serve wss:// with a certificate signed by a CA generated at start.
    #[arg(long)]
    pub(crate) tls: bool,
    /// Also serve WebSockets over HTTP/2 (RFC 8441).
    #[arg(long)]
    pub(crate) http2: bool,
    /// Answer every text and binary message with the same message.
    #[arg(long)]
    pub(crate) echo: bool,
    /// Play this recorded session (JSONL) to the clients that connect: a recording of one
    /// connection to every client, one with reconnects connection by connection (the n-th
    /// client gets what the n-th recorded connection got).
    #[arg(long, value_name = "FILE")]
    pub(crate) replay: Option<std::path::PathBuf>,
    /// Replay this many times faster than recorded (a positive number; 0.5 is half speed).
    #[arg(long, default_value_t = 1.0, requires = "replay", allow_negative_numbers = true, value_parser = args::speed)]
    pub(crate) speed: f64,
    /// Write the CA certificate (PEM) to this file (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca_out: Option<std::path::PathBuf>,
    /// Announce the server as one JSON object on stdout (url, ca_pem) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Everything that ends a command with an error.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// `moorline demo` failed.
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    /// `moorline demo http` failed.
    #[error(transparent)]
    DemoHttp(#[from] demo::http::DemoError),
    /// `moorline replay` failed.
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    /// `moorline serve` failed.
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
    /// `moorline connect` failed.
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    /// `moorline bench` failed.
    #[error(transparent)]
    Bench(#[from] bench::BenchCliError),
}

impl CliError {
    /// Whether the command stopped because the reader of stdout went away
    /// (`moorline demo | head -1`): a normal end for a command-line tool, as with SIGPIPE.
    fn is_stdout_closed(&self) -> bool {
        matches!(
            self,
            CliError::Demo(demo::DemoError::Output(out::OutputError::Closed))
                | CliError::DemoHttp(demo::http::DemoError::Output(out::OutputError::Closed))
                | CliError::Replay(replay::ReplayError::Output(out::OutputError::Closed))
                | CliError::Serve(serve::ServeError::Output(out::OutputError::Closed))
                | CliError::Connect(connect::ConnectError::Output(out::OutputError::Closed))
                | CliError::Bench(bench::BenchCliError::Output(out::OutputError::Closed))
        )
    }
}

/// Whether to colour output written to a terminal or not: only to a terminal, and never
/// when `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
fn colour(is_terminal: bool, no_color: Option<OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Writes `moorline: {message}` to stderr; a closed stderr is ignored (nowhere left to say it).
fn report(message: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "moorline: {message}");
}

fn main() -> ExitCode {
    // A child process of `moorline bench` does its measurement and nothing else.
    if let Some(code) = moorline_bench::child_main() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Serve(_) => "info",
        Command::Demo(_) | Command::Connect(_) | Command::Replay(_) | Command::Bench(_) => "warn",
    };
    let filter = cli.log.as_deref().unwrap_or(default_log);
    // Validated by `args::log_filter`; fall back to the default rather than fail twice.
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| default_log.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report(format_args!("cannot start the async runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let stdout_colour = colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR"));
    let result: Result<(), CliError> = match cli.command {
        Command::Demo(demo::DemoArgs { command: Some(demo::DemoCommand::Http(args)), .. }) => {
            runtime.block_on(demo::http::run(args, stdout_colour)).map_err(Into::into)
        }
        Command::Demo(args) => {
            runtime.block_on(demo::run(args, std::io::stdout().is_terminal(), stdout_colour)).map_err(Into::into)
        }
        Command::Replay(args) => replay::run(&args).map_err(Into::into),
        Command::Serve(ServeCommand::Mock(args)) => runtime.block_on(serve::mock(args)).map_err(Into::into),
        Command::Serve(ServeCommand::Deribit(args)) => runtime.block_on(serve::deribit(args)).map_err(Into::into),
        Command::Connect(args) => runtime.block_on(connect::run(args)).map_err(Into::into),
        Command::Bench(args) => bench::run(&args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_stdout_closed() => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_and_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())), "an empty NO_COLOR does not count");
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
