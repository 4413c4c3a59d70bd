//! The `moorline` command-line tool.

mod demo;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// moorline keeps connections to trading venues alive and correct.
#[derive(Debug, Parser)]
#[command(name = "moorline", version, about, long_about = None)]
struct Cli {
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "MOORLINE_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the connection layer at work against a built-in TLS test server on 127.0.0.1:
    /// connect, stream, survive a connection reset (Down with its stream lists), reconnect,
    /// shut down gracefully.
    Demo(DemoArgs),
    /// Run one of the test kit's servers on 127.0.0.1 until Ctrl-C, to try clients against it.
    #[command(subcommand)]
    Serve(ServeCommand),
}

/// The servers `moorline serve` runs.
#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// The WebSocket mock server: logs what clients send, echoes or replays on request,
    /// accepts any path; HTTP/1.1 upgrades, and HTTP/2 extended CONNECT with --http2.
    Mock(ServeMockArgs),
    /// The Deribit-compatible simulator: JSON-RPC 2.0 over WebSocket on /ws/api/v2 (public/auth
    /// with the test credentials, heartbeats, subscriptions, a seeded market and matching book).
    Deribit(ServeDeribitArgs),
}

/// Options of `moorline serve deribit`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeDeribitArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
    pub(crate) port: u16,
    /// Seed of the simulated market: the same seed gives the same market.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Milliseconds between market steps (ticker, book changes, trades); 0 stops the market.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub(crate) market_interval_ms: u64,
    /// Lifetime of access tokens in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub(crate) token_lifetime: u64,
    /// Smallest heartbeat interval accepted by public/set_heartbeat, in seconds (Deribit: 10).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub(crate) min_heartbeat: f64,
    /// Turn the credit-based rate limit off.
    #[arg(long)]
    pub(crate) no_rate_limit: bool,
    /// Announce the server as one JSON object on stdout (url, credentials) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Options of `moorline serve mock`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeMockArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
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
    /// Play this recorded session (JSONL) to every client that connects.
    #[arg(long, value_name = "FILE")]
    pub(crate) replay: Option<std::path::PathBuf>,
    /// Replay this many times faster than recorded.
    #[arg(long, default_value_t = 1.0, requires = "replay")]
    pub(crate) speed: f64,
    /// Write the CA certificate (PEM) to this file (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca_out: Option<std::path::PathBuf>,
    /// Announce the server as one JSON object on stdout (url, ca_pem) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Options of `moorline demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Protocol to offer by ALPN.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Http2)]
    pub(crate) protocol: ProtocolArg,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A protocol choice on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProtocolArg {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moorline: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args, std::io::stdout().is_terminal())).map_err(Into::into),
        Command::Serve(ServeCommand::Mock(args)) => runtime.block_on(serve::mock(args)).map_err(Into::into),
        Command::Serve(ServeCommand::Deribit(args)) => runtime.block_on(serve::deribit(args)).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moorline: {e}");
            ExitCode::FAILURE
        }
    }
}
