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
        let out = run(&["demo", "--json", "--protocol", protocol]);
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
    let out = run(&["demo", "--protocol", "gopher"]);
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
    assert!(text.contains("reconnected"));
}
