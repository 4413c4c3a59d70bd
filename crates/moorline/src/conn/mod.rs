//! The connection: a worker task owning one socket, a cloneable command handle, and the
//! single owner's event receiver.

pub(crate) mod command;
pub(crate) mod ctx;
pub(crate) mod delivery;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod handle;
pub(crate) mod info;
pub(crate) mod owner;
pub(crate) mod recv_hold;
pub(crate) mod shared;
pub(crate) mod tap;
pub(crate) mod worker;
pub(crate) mod ws_h1;
pub(crate) mod ws_h2;

/// The instant `timeout` from now, saturated: a timeout too large for the clock ("wait
/// forever", `Duration::MAX`) becomes a deadline about 30 years ahead instead of a panic.
pub(crate) fn deadline(timeout: std::time::Duration) -> tokio::time::Instant {
    /// As far ahead as tokio's own "far future".
    const FAR: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);
    let now = tokio::time::Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::deadline;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_is_the_timeout_from_now_and_saturates_instead_of_overflowing() {
        let now = tokio::time::Instant::now();
        assert_eq!(deadline(Duration::ZERO), now);
        assert_eq!(deadline(Duration::from_millis(1500)) - now, Duration::from_millis(1500));
        // "Wait for ever": about 30 years ahead, never a panic.
        let far = deadline(Duration::MAX) - now;
        assert_eq!(far, Duration::from_secs(86_400 * 365 * 30));
        assert_eq!(deadline(far + Duration::from_secs(1)) - now, far);
    }
}
