//! The `moorline` command-line tool.

mod demo;

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
    let result = match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args, std::io::stdout().is_terminal())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moorline: {e}");
            ExitCode::FAILURE
        }
    }
}
