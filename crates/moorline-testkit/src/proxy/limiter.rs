//! Pure pacing arithmetic: bandwidth limiting and latency deadlines.

use std::time::Duration;

use tokio::time::Instant;

/// Largest piece written at once when unlimited.
pub(crate) const MAX_PIECE: usize = 16 * 1024;

/// Stand-in for "never": far enough for any test, small enough to add to an `Instant`.
pub(crate) const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// How many pieces per second a rate limit is split into (so a limited
/// transfer flows smoothly instead of in one-second bursts).
const PIECES_PER_SECOND: u64 = 50;

/// The size of the next piece to write at `rate` bytes/s (`None` = unlimited).
pub(crate) fn piece_len(rate: Option<u64>) -> usize {
    match rate {
        None => MAX_PIECE,
        Some(rate) => usize::try_from(rate / PIECES_PER_SECOND).unwrap_or(MAX_PIECE).clamp(1, MAX_PIECE),
    }
}

/// How long `bytes` take at `rate` bytes/s (at most [`FAR`]).
pub(crate) fn transmit_time(bytes: usize, rate: u64) -> Duration {
    if rate == 0 {
        return FAR;
    }
    Duration::try_from_secs_f64(bytes as f64 / rate as f64).map_or(FAR, |d| d.min(FAR))
}

/// When bytes read at `read_at` are due for delivery under `latency` (at most [`FAR`]).
pub(crate) fn due_at(read_at: Instant, latency: Duration) -> Instant {
    read_at + latency.min(FAR)
}

/// Schedules writes so that one direction never exceeds a byte rate.
///
/// Virtual-clock pacing: each reservation starts when the previous one ended
/// (or now, if the link was idle: idle time earns no burst credit) and
/// occupies `bytes / rate` seconds.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// When the link is free again.
    free_at: Option<Instant>,
}

impl Pacer {
    /// Books `bytes` at `rate` (`None` = unlimited) and returns when they may be written.
    pub(crate) fn reserve(&mut self, now: Instant, bytes: usize, rate: Option<u64>) -> Instant {
        let Some(rate) = rate else {
            self.free_at = None;
            return now;
        };
        if rate == 0 {
            return now + FAR;
        }
        let start = self.free_at.map_or(now, |free| free.max(now));
        self.free_at = Some(start + transmit_time(bytes, rate));
        start
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pieces_follow_the_rate() {
        assert_eq!(piece_len(None), MAX_PIECE);
        assert_eq!(piece_len(Some(1)), 1);
        assert_eq!(piece_len(Some(50_000)), 1000);
        assert_eq!(piece_len(Some(u64::MAX)), MAX_PIECE);
    }

    #[test]
    fn pacer_spaces_reservations_and_forgets_idle_time() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert_eq!(p.reserve(t0, 1000, Some(10_000)), t0);
        assert_eq!(p.reserve(t0, 1000, Some(10_000)), t0 + Duration::from_millis(100));
        assert_eq!(p.reserve(t0, 500, Some(10_000)), t0 + Duration::from_millis(200));
        // Idle for a second: no accumulated credit, next write goes now.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(p.reserve(later, 1000, Some(10_000)), later);
        assert_eq!(p.reserve(later, 1, None), later);
        assert_eq!(p.reserve(later, 1000, Some(10_000)), later);
    }

    #[test]
    fn deadlines_add_latency() {
        let t0 = Instant::now();
        assert_eq!(due_at(t0, Duration::from_millis(30)), t0 + Duration::from_millis(30));
        assert_eq!(transmit_time(100, 0), FAR);
        assert_eq!(due_at(t0, Duration::MAX), t0 + FAR);
        assert_eq!(Pacer::default().reserve(t0, 1, Some(0)), t0 + FAR);
    }
}
