//! Run-time settings of the proxy, and the per-connection byte budget of `reset_after`.

use crate::sync::lock;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A direction of traffic through the [`Proxy`](super::Proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (connected to the proxy) to the upstream server.
    Upstream,
    /// From the upstream server to the client.
    Downstream,
}

impl Direction {
    pub(crate) fn index(self) -> usize {
        match self {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        }
    }
}

/// Settings the forwarding loops read continuously (through a `watch` channel).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    /// Added delay, by [`Direction::index`].
    pub(crate) latency: [Duration; 2],
    /// Byte rate limit, by [`Direction::index`].
    pub(crate) bandwidth: [Option<u64>; 2],
    /// Nothing is read or written while set.
    pub(crate) blackhole: bool,
}

/// Bytes a connection may still forward (both directions together) before it is reset.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    remaining: Mutex<Option<u64>>,
}

/// What [`Budget::take`] allows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Allowance {
    /// Write this many bytes (possibly fewer than asked).
    Bytes(usize),
    /// The budget is spent: reset the connection.
    Exhausted,
}

impl Budget {
    pub(crate) fn new(remaining: Option<u64>) -> Self {
        Self { remaining: Mutex::new(remaining) }
    }

    fn lock(&self) -> MutexGuard<'_, Option<u64>> {
        lock(&self.remaining)
    }

    /// Sets (or removes) the remaining budget.
    pub(crate) fn set(&self, remaining: Option<u64>) {
        *self.lock() = remaining;
    }

    /// Whether the budget is spent.
    pub(crate) fn exhausted(&self) -> bool {
        *self.lock() == Some(0)
    }

    /// Takes up to `wanted` bytes from the budget.
    pub(crate) fn take(&self, wanted: usize) -> Allowance {
        let mut remaining = self.lock();
        match remaining.as_mut() {
            None => Allowance::Bytes(wanted),
            Some(0) => Allowance::Exhausted,
            Some(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(wanted);
                *left -= n as u64;
                Allowance::Bytes(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_down_and_caps() {
        let b = Budget::new(Some(10));
        assert_eq!(b.take(4), Allowance::Bytes(4));
        assert_eq!(b.take(100), Allowance::Bytes(6));
        assert!(b.exhausted());
        assert_eq!(b.take(1), Allowance::Exhausted);
        b.set(None);
        assert_eq!(b.take(100), Allowance::Bytes(100));
    }
}
