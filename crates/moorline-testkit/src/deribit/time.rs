//! The moment an event is handled: a monotonic instant for timers and expiry,
//! and wall-clock microseconds for Deribit's timestamps. Passed in, never read
//! inside the core, so the core is deterministic under test.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Both clocks at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    pub(crate) instant: Instant,
    /// Microseconds since the Unix epoch.
    pub(crate) unix_us: u64,
}

impl Now {
    /// The real clocks.
    pub(crate) fn system() -> Self {
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self { instant: Instant::now(), unix_us }
    }

    /// Milliseconds since the Unix epoch (Deribit's `timestamp`).
    pub(crate) fn ms(&self) -> u64 {
        self.unix_us / 1000
    }
}
