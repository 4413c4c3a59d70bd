//! Memory per idle trading client: N clients with heartbeats on, connected to one loopback
//! server, each client kind in a process of its own, against tokio-tungstenite in the same run
//! (the harness: `moorline_bench::idle`, shared with `moorline bench idle`).
//!
//! `cargo bench -p moorline-client --bench client_idle`. Environment: `CLIENT_IDLE_N` (clients
//! per process, 10000), `CLIENT_IDLE_RUNS` (3), `CLIENT_IDLE_PING_MS` (the heartbeat interval,
//! 1000), `CLIENT_IDLE_CLIENTS` (a comma list of: `moorline-client`, `tokio-tungstenite`,
//! `tokio-tungstenite+heartbeat`; all by default). A quick look: `CLIENT_IDLE_N=500
//! CLIENT_IDLE_RUNS=1`.
#![allow(missing_docs)]

#[global_allocator]
static HEAP: moorline_bench::Counting = moorline_bench::Counting;

fn main() -> std::process::ExitCode {
    if let Some(code) = moorline_bench::child_main() {
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let opts = moorline_bench::idle::IdleOptions::from_env();
    let result = std::env::current_exe()
        .map_err(|source| moorline_bench::BenchError::Spawn { what: "itself", source })
        .and_then(|exe| moorline_bench::idle::run(&exe, &opts, &mut |line| eprintln!("{line}")));
    match result {
        Ok(report) => {
            print!("{}", report.table());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client_idle: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
