//! Deribit's heartbeat: after `public/set_heartbeat` the server sends something every
//! interval: a plain `heartbeat` when the client sent anything since the last one, a
//! `test_request` when it was silent; and closes the connection when a `test_request` is
//! still unanswered (by `public/test`) at the next interval.

use std::time::{Duration, Instant};

/// What the heartbeat wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatAction {
    /// Send a plain `heartbeat` notification (the client was active).
    SendHeartbeat,
    /// Send a `test_request` notification.
    SendTestRequest,
    /// The last `test_request` went unanswered: close the connection.
    Close,
}

/// The heartbeat state of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
    interval: Option<Duration>,
    next: Option<Instant>,
    outstanding: bool,
    /// The client sent something since the last interval.
    active: bool,
}

impl Heartbeat {
    /// Starts (or restarts) heartbeats every `interval`.
    pub(crate) fn enable(&mut self, interval: Duration, now: Instant) {
        self.interval = Some(interval);
        self.next = now.checked_add(interval);
        self.outstanding = false;
        self.active = false;
    }

    /// The client sent a frame.
    pub(crate) fn activity(&mut self) {
        self.active = true;
    }

    /// Stops heartbeats.
    pub(crate) fn disable(&mut self) {
        *self = Self::default();
    }

    /// The client called `public/test`.
    pub(crate) fn answered(&mut self) {
        self.outstanding = false;
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// What to do at `now`, if anything.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<HeartbeatAction> {
        let (interval, next) = (self.interval?, self.next?);
        if now < next {
            return None;
        }
        if self.outstanding {
            self.disable();
            return Some(HeartbeatAction::Close);
        }
        self.next = now.checked_add(interval);
        if std::mem::take(&mut self.active) {
            return Some(HeartbeatAction::SendHeartbeat);
        }
        self.outstanding = true;
        Some(HeartbeatAction::SendTestRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::{Heartbeat, HeartbeatAction};
    use std::time::{Duration, Instant};

    #[test]
    fn answered_requests_keep_it_alive_and_silence_closes() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::default();
        assert_eq!((hb.poll(t0 + s * 100), hb.deadline()), (None, None));
        hb.enable(s, t0);
        assert_eq!(hb.poll(t0), None);
        assert_eq!(hb.deadline(), Some(t0 + s));
        assert_eq!(hb.poll(t0 + s), Some(HeartbeatAction::SendTestRequest));
        hb.answered();
        hb.activity();
        // Active since: a plain heartbeat; silent since: a test_request.
        assert_eq!(hb.poll(t0 + s * 2), Some(HeartbeatAction::SendHeartbeat));
        assert_eq!(hb.poll(t0 + s * 2), None);
        assert_eq!(hb.poll(t0 + s * 3), Some(HeartbeatAction::SendTestRequest));
        // Activity that is not `public/test` does not answer a test_request.
        hb.activity();
        assert_eq!(hb.poll(t0 + s * 4), Some(HeartbeatAction::Close));
        assert_eq!(hb.deadline(), None);
        hb.enable(s, t0);
        assert_eq!(hb.poll(t0 + s), Some(HeartbeatAction::SendTestRequest));
        assert_eq!(hb.poll(t0 + s), None);
        assert_eq!(hb.poll(t0 + s * 2), Some(HeartbeatAction::Close));
        assert_eq!(hb.deadline(), None);
        hb.enable(s, t0);
        hb.disable();
        assert_eq!(hb.poll(t0 + s * 5), None);
    }
}
