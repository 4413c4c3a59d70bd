#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use super::*;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn first() -> Attempt {
    Attempt::default().next()
}

/// SplitMix64: a deterministic random source for the property tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn dead_peer_fires_after_silence_and_any_frame_postpones_it() {
    let t0 = Instant::now();
    let a = first();
    let mut live = Liveness::new(LivenessConfig { dead_after: s(10), ..LivenessConfig::default() });
    assert_eq!(live.next_deadline(), None, "nothing open");
    live.on_open(a, t0);
    assert_eq!(live.next_deadline(), Some(t0 + s(10)));
    assert!(live.on_frame(a, t0 + s(4)));
    assert_eq!(live.next_deadline(), Some(t0 + s(14)));
    assert_eq!(live.on_timeout(t0 + s(10)), None, "the old deadline no longer holds");
    assert!(live.on_data(a, t0 + s(6)));
    assert!(live.on_heartbeat(a, t0 + s(7)));
    assert_eq!(live.next_deadline(), Some(t0 + s(17)));
    assert_eq!(
        live.on_timeout(t0 + s(17)),
        Some(LivenessAction::Reconnect { attempt: a, reason: Dead::NoFrame { last: t0 + s(7) } })
    );
    // Spent: nothing more until the next attempt.
    assert_eq!(live.next_deadline(), None);
    assert_eq!(live.on_timeout(t0 + s(100)), None);
    assert!(!live.on_frame(a, t0 + s(18)));
    assert_eq!(live.attempt(), None);
}

#[test]
fn idle_feed_is_reported_once_per_silence_and_control_frames_do_not_count() {
    let t0 = Instant::now();
    let a = first();
    let mut live = Liveness::new(LivenessConfig { dead_after: s(60), idle_after: s(5), ..LivenessConfig::default() });
    live.on_open(a, t0);
    live.on_frame(a, t0 + s(3)); // a pong: not data
    assert_eq!(live.next_deadline(), Some(t0 + s(5)));
    assert_eq!(live.on_timeout(t0 + s(5)), Some(LivenessAction::Idle { attempt: a, last: t0 }));
    assert_eq!(live.on_timeout(t0 + s(6)), None, "once per silence");
    assert_eq!(live.next_deadline(), Some(t0 + s(63)), "only the dead-peer timer is left");
    live.on_data(a, t0 + s(8));
    assert_eq!(live.next_deadline(), Some(t0 + s(13)), "armed again by data");
    assert_eq!(live.on_timeout(t0 + s(13)), Some(LivenessAction::Idle { attempt: a, last: t0 + s(8) }));
    assert_eq!(live.attempt(), Some(a), "an idle event does not spend the attempt");
}

#[test]
fn idle_feed_can_ask_for_a_reconnect() {
    let t0 = Instant::now();
    let a = first();
    let mut live = Liveness::new(LivenessConfig {
        dead_after: s(60),
        idle_after: s(5),
        idle_reconnect: true,
        ..LivenessConfig::default()
    });
    live.on_open(a, t0);
    live.on_heartbeat(a, t0 + s(4));
    assert_eq!(
        live.on_timeout(t0 + s(5)),
        Some(LivenessAction::Reconnect { attempt: a, reason: Dead::IdleFeed { last: t0 } })
    );
    assert_eq!(live.next_deadline(), None);
}

#[test]
fn heartbeat_is_expected_only_once_promised_and_only_heartbeats_feed_it() {
    let t0 = Instant::now();
    let a = first();
    let mut live = Liveness::new(LivenessConfig {
        dead_after: Duration::MAX,
        heartbeat_timeout: s(2),
        ..LivenessConfig::default()
    });
    live.on_open(a, t0);
    assert_eq!(live.next_deadline(), None, "no promise, dead-peer timer off");
    assert!(live.expect_heartbeat(a, s(10), t0 + s(1)));
    assert_eq!(live.next_deadline(), Some(t0 + s(13)));
    live.on_data(a, t0 + s(12)); // data does not prove the venue's heartbeat runs
    assert_eq!(live.next_deadline(), Some(t0 + s(13)));
    live.on_heartbeat(a, t0 + s(12));
    assert_eq!(live.next_deadline(), Some(t0 + s(24)));
    assert!(live.stop_heartbeat(a));
    assert_eq!(live.next_deadline(), None);
}

/// The bound, as a property: over many random runs (heartbeats arriving anywhere
/// within their allowance, then the connection going half-open at a random moment), the
/// half-open connection is detected exactly `interval + timeout` after the last heartbeat it
/// delivered, so never later than `interval + timeout` after it went half-open, and never
/// while heartbeats still came in time.
#[test]
fn half_open_is_detected_within_one_interval_plus_timeout_every_time() {
    let mut rng = Rng(17);
    for run in 0..2_000 {
        let t0 = Instant::now();
        let a = Attempt::default().next();
        let interval = ms(100 + rng.below(30_000));
        let timeout = ms(rng.below(10_000));
        let bound = interval + timeout;
        let mut live = Liveness::new(LivenessConfig {
            dead_after: Duration::MAX,
            heartbeat_timeout: timeout,
            ..LivenessConfig::default()
        });
        live.on_open(a, t0);
        live.expect_heartbeat(a, interval, t0);
        // Healthy phase: heartbeats come, each within the allowance (jittered, sometimes late).
        let beats = rng.below(50);
        let mut last = t0;
        for _ in 0..beats {
            let gap = ms(rng.below(bound.as_millis() as u64));
            let at = last + gap;
            // The shell wakes at every deadline before the heartbeat arrives: no false alarm.
            while let Some(d) = live.next_deadline().filter(|d| *d < at) {
                assert_eq!(live.on_timeout(d), None, "run {run}: false alarm");
            }
            live.on_heartbeat(a, at);
            last = at;
        }
        // Half-open: the venue's side is gone at some moment after the last heartbeat.
        let half_open = last + ms(rng.below(bound.as_millis() as u64));
        let detected = live.next_deadline().expect("a deadline while a heartbeat is expected");
        assert_eq!(detected, last + bound, "run {run}");
        assert!(detected <= half_open + bound, "run {run}: detected too late");
        assert_eq!(
            live.on_timeout(detected),
            Some(LivenessAction::Reconnect { attempt: a, reason: Dead::HeartbeatMissed { interval, last } }),
            "run {run}"
        );
    }
}

#[test]
fn a_timer_of_an_old_attempt_never_acts_on_a_later_one() {
    let t0 = Instant::now();
    let a1 = first();
    let a2 = a1.next();
    let mut live = Liveness::new(LivenessConfig { dead_after: s(10), idle_after: s(3), ..LivenessConfig::default() });
    live.on_open(a1, t0);
    live.expect_heartbeat(a1, s(1), t0);
    let old_deadline = live.next_deadline().expect("armed");
    assert_eq!(old_deadline, t0 + s(3), "idle first; the heartbeat is due at 1 + 5 s");
    live.on_close();
    assert_eq!(live.next_deadline(), None, "closed: no timer");
    assert_eq!(live.on_timeout(old_deadline), None, "the old attempt's sleep wakes: nothing happens");
    assert_eq!(live.on_timeout(t0 + s(6)), None, "nor at its heartbeat deadline");
    // The next attempt opens later; the old attempt's late inputs are ignored.
    live.on_open(a2, t0 + s(20));
    assert!(!live.on_frame(a1, t0 + s(21)));
    assert!(!live.on_data(a1, t0 + s(21)));
    assert!(!live.on_heartbeat(a1, t0 + s(21)));
    assert!(!live.expect_heartbeat(a1, s(1), t0 + s(21)));
    assert_eq!(live.on_timeout(t0 + s(21)), None, "the old heartbeat expectation is gone");
    assert_eq!(live.next_deadline(), Some(t0 + s(23)), "a2's own timers only (idle first)");
    assert_eq!(live.on_timeout(t0 + s(23)), Some(LivenessAction::Idle { attempt: a2, last: t0 + s(20) }));
    assert_eq!(
        live.on_timeout(t0 + s(30)),
        Some(LivenessAction::Reconnect { attempt: a2, reason: Dead::NoFrame { last: t0 + s(20) } })
    );
    // And a reopen without a close (the shell skipped it) still forgets the old attempt.
    live.on_open(a2.next(), t0 + s(40));
    assert!(!live.on_frame(a2, t0 + s(41)));
    assert_eq!(live.attempt(), Some(a2.next()));
}

#[test]
fn duration_max_settings_never_panic_and_mean_never() {
    let t0 = Instant::now();
    let a = first();
    let mut live = Liveness::new(LivenessConfig {
        dead_after: Duration::MAX,
        idle_after: Duration::MAX,
        idle_reconnect: true,
        heartbeat_timeout: Duration::MAX,
    });
    live.on_open(a, t0);
    live.expect_heartbeat(a, Duration::MAX, t0);
    assert_eq!(live.next_deadline(), None);
    assert_eq!(live.on_timeout(t0 + s(86_400 * 365)), None);
    live.expect_heartbeat(a, s(1), t0);
    assert_eq!(live.next_deadline(), None, "interval + MAX timeout saturates");
}

#[test]
fn several_timers_due_at_once_give_the_reconnect_first() {
    let t0 = Instant::now();
    let a = first();
    let mut live = Liveness::new(LivenessConfig {
        dead_after: s(5),
        idle_after: s(5),
        heartbeat_timeout: s(0),
        ..LivenessConfig::default()
    });
    live.on_open(a, t0);
    live.expect_heartbeat(a, s(5), t0);
    assert!(matches!(
        live.on_timeout(t0 + s(5)),
        Some(LivenessAction::Reconnect { reason: Dead::HeartbeatMissed { .. }, .. })
    ));
    assert_eq!(live.on_timeout(t0 + s(5)), None);
}

#[test]
fn a_clock_going_backwards_does_not_move_timers_back() {
    let t0 = Instant::now() + s(100);
    let a = first();
    let mut live = Liveness::new(LivenessConfig { dead_after: s(10), ..LivenessConfig::default() });
    live.on_open(a, t0);
    live.on_frame(a, t0 + s(5));
    live.on_frame(a, t0 + s(1));
    assert_eq!(live.next_deadline(), Some(t0 + s(15)));
}
