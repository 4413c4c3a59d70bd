//! End-to-end echo through the whole trading client against tokio-tungstenite, fastwebsockets
//! and tokio-websockets used raw, in the same run (the harness: `moorline_bench::echo`, shared
//! with `moorline bench echo`).
//!
//! `cargo bench -p moorline-client --bench client_echo`. Environment: `CLIENT_ECHO_RUNS` (5),
//! `CLIENT_ECHO_ONLY` (`64`, `16384`, `throughput` or `latency`), `CLIENT_ECHO_CLIENTS` (a comma
//! list of client names), `CLIENT_ECHO_MESSAGES` (messages per throughput run: 50,000 at 64 B,
//! 10,000 at 16 KiB by default) and `CLIENT_ECHO_SAMPLES` (round trips per run, 5,000). A quick
//! look: `CLIENT_ECHO_RUNS=1 CLIENT_ECHO_MESSAGES=2000 CLIENT_ECHO_SAMPLES=500`.
#![allow(missing_docs)]

#[global_allocator]
static HEAP: moorline_bench::Counting = moorline_bench::Counting;

fn main() -> std::process::ExitCode {
    if let Some(code) = moorline_bench::child_main() {
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let result = std::env::current_exe()
        .map_err(|source| moorline_bench::BenchError::Spawn { what: "itself", source })
        .and_then(|exe| moorline_bench::run_echo(&exe, &moorline_bench::echo::EchoOptions::from_env()));
    match result {
        Ok(report) => {
            print!("{}", report.table());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client_echo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
