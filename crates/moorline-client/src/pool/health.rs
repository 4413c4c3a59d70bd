//! Which member a request goes to: the members' health, and the choice (sans-IO: the time
//! and each member's state are passed in).
//!
//! Members are ranked, best first, by:
//! 1. connected (session restored) before anything else: a member that is not is never chosen
//!    while one that is has not been tried;
//! 2. fewer requests in flight through the pool;
//! 3. fewer errors within the error window (failed requests that were not the venue's answer,
//!    disconnects, the client's error events);
//! 4. lower request p99 latency (the member's [`Stats`](crate::Stats)), in steps of the
//!    latency tolerance (closer p99s are equal);
//!
//! and members equal on all four take turns.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::ClientState;

/// Errors remembered per member (the error window counts among these).
const ERRORS_KEPT: usize = 64;

/// One member's health, as [`ClientPool::health`](super::ClientPool::health) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberHealth {
    /// The member's index.
    pub member: usize,
    /// Its client's state.
    pub state: ClientState,
    /// Requests the pool has in flight on it.
    pub in_flight: usize,
    /// Its errors within the pool's error window (at most 64 are remembered).
    pub recent_errors: usize,
    /// Its request round-trip p99 ([`RoundTrips::p99`](crate::RoundTrips)).
    pub p99: Option<Duration>,
    /// Channels the pool placed on it.
    pub channels: usize,
}

/// What the choice needs to know of a member now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    pub connected: bool,
    pub p99: Option<Duration>,
}

#[derive(Debug, Default)]
struct Slot {
    in_flight: usize,
    errors: VecDeque<Instant>,
}

/// Every member's counters and the turn.
#[derive(Debug)]
pub(crate) struct Board {
    slots: Vec<Slot>,
    next: usize,
    window: Duration,
    tolerance: Duration,
}

impl Board {
    pub(crate) fn new(members: usize, window: Duration, tolerance: Duration) -> Self {
        Self { slots: (0..members).map(|_| Slot::default()).collect(), next: 0, window, tolerance }
    }

    /// The best member not yet `tried` (see the [module documentation](self)); counts a
    /// request in flight on it. `views` and `tried` have one entry per member.
    pub(crate) fn pick(&mut self, views: &[View], tried: &[bool], now: Instant) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let tolerance = self.tolerance.as_micros().max(1);
        let mut best: Option<(usize, (bool, usize, usize, u128))> = None;
        for offset in 0..n {
            let i = (self.next + offset) % n;
            if tried.get(i).copied().unwrap_or(true) {
                continue;
            }
            let Some(view) = views.get(i) else { continue };
            let rank = (
                !view.connected,
                self.slots[i].in_flight,
                self.recent_errors(i, now),
                view.p99.map_or(0, |d| d.as_micros() / tolerance),
            );
            if best.is_none_or(|(_, r)| rank < r) {
                best = Some((i, rank));
            }
        }
        let (i, _) = best?;
        self.next = i + 1;
        self.slots[i].in_flight += 1;
        Some(i)
    }

    /// A request on `member` ended.
    pub(crate) fn finish(&mut self, member: usize) {
        if let Some(s) = self.slots.get_mut(member) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    /// An error on `member` at `now`.
    pub(crate) fn record_error(&mut self, member: usize, now: Instant) {
        if let Some(s) = self.slots.get_mut(member) {
            if s.errors.len() >= ERRORS_KEPT {
                s.errors.pop_front();
            }
            s.errors.push_back(now);
        }
    }

    /// `member`'s errors within the window before `now`.
    pub(crate) fn recent_errors(&self, member: usize, now: Instant) -> usize {
        let Some(s) = self.slots.get(member) else { return 0 };
        s.errors.iter().filter(|&&t| now.saturating_duration_since(t) < self.window).count()
    }

    /// Requests in flight on `member`.
    pub(crate) fn in_flight(&self, member: usize) -> usize {
        self.slots.get(member).map_or(0, |s| s.in_flight)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn up(p99_ms: u64) -> View {
        View { connected: true, p99: Some(Duration::from_millis(p99_ms)) }
    }

    fn board(n: usize) -> Board {
        Board::new(n, Duration::from_secs(10), Duration::from_millis(2))
    }

    #[test]
    fn equal_members_take_turns() {
        let mut b = board(3);
        let views = [up(1), up(1), up(1)];
        let now = Instant::now();
        let mut picks = Vec::new();
        for _ in 0..6 {
            let i = b.pick(&views, &[false; 3], now).unwrap();
            b.finish(i);
            picks.push(i);
        }
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn in_flight_then_errors_then_latency() {
        let now = Instant::now();
        let mut b = board(3);
        // Requests in flight spread: each pick adds one to its member.
        let views = [up(50), up(1), up(1)];
        let picks: Vec<usize> = (0..6).map(|_| b.pick(&views, &[false; 3], now).unwrap()).collect();
        let mut counts = [0; 3];
        for p in picks {
            counts[p] += 1;
        }
        assert_eq!(counts, [2, 2, 2]);
        for i in 0..3 {
            for _ in 0..2 {
                b.finish(i);
            }
        }
        // Latency: the slow member is passed over; within the tolerance it is a tie.
        assert!((0..4).all(|_| {
            let i = b.pick(&views, &[false; 3], now).unwrap();
            b.finish(i);
            i != 0
        }));
        let close = [up(3), up(2), up(2)];
        let picked: Vec<usize> = (0..3)
            .map(|_| {
                let i = b.pick(&close, &[false; 3], now).unwrap();
                b.finish(i);
                i
            })
            .collect();
        assert!(picked.contains(&0), "1 ms apart: equal ({picked:?})");
        // Errors outrank latency, and age out of the window.
        b.record_error(1, now);
        b.record_error(2, now);
        let i = b.pick(&views, &[false; 3], now).unwrap();
        assert_eq!(i, 0);
        b.finish(0);
        assert_eq!(b.recent_errors(1, now + Duration::from_secs(11)), 0);
        assert_ne!(b.pick(&views, &[false; 3], now + Duration::from_secs(11)), Some(0));
    }

    #[test]
    fn a_member_not_connected_only_when_no_other_is_left() {
        let now = Instant::now();
        let mut b = board(2);
        let views = [View { connected: false, p99: None }, up(100)];
        for _ in 0..3 {
            b.record_error(1, now);
        }
        for _ in 0..5 {
            assert_eq!(b.pick(&views, &[false, false], now), Some(1), "despite its errors and load");
        }
        assert_eq!(b.in_flight(1), 5);
        assert_eq!(b.pick(&views, &[false, true], now), Some(0), "the other was tried");
        assert_eq!(b.pick(&views, &[true, true], now), None);
        for _ in 0..100 {
            b.record_error(0, now);
        }
        assert_eq!(b.recent_errors(0, now), ERRORS_KEPT, "bounded");
    }
}
