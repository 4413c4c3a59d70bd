//! Instrumentation: every step of a connection's life, as it happens.
//!
//! A hook set in [`crate::ConnectOptions::hook`] is called synchronously by the worker for
//! each [`Instrument`] (keep it fast: count, timestamp, forward to a channel). The same steps
//! are logged through `tracing` at debug level whether or not a hook is set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::ids::{Protocol, StreamRef};

/// One step of a connection's life.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Step {
    /// A DNS lookup starts.
    LookupStart {
        /// Host to resolve.
        host: String,
    },
    /// A DNS lookup ended.
    LookupEnd {
        /// Host resolved.
        host: String,
        /// Addresses found, or the error text.
        result: Result<Vec<SocketAddr>, String>,
    },
    /// A TCP connect starts.
    ConnectStart {
        /// Address tried.
        addr: SocketAddr,
    },
    /// A TCP connect ended.
    ConnectEnd {
        /// Address tried.
        addr: SocketAddr,
        /// `Ok` or the error text.
        result: Result<(), String>,
    },
    /// A TLS handshake starts.
    TlsStart {
        /// Name the certificate is checked against.
        server_name: String,
    },
    /// A TLS handshake ended.
    TlsEnd {
        /// Negotiated ALPN protocol, or the error text.
        result: Result<Option<Vec<u8>>, String>,
    },
    /// The connection is up.
    Up {
        /// Negotiated protocol.
        protocol: Protocol,
    },
    /// A request head was handed to the socket.
    RequestStart {
        /// Stream.
        stream: StreamRef,
        /// Method.
        method: Method,
        /// Target (path and query).
        target: String,
    },
    /// The whole request (head and body) was handed to the socket.
    RequestEnd {
        /// Stream.
        stream: StreamRef,
    },
    /// A 1xx informational response arrived.
    ResponseInform {
        /// Stream.
        stream: StreamRef,
        /// Status.
        status: StatusCode,
    },
    /// A response head arrived.
    ResponseHeaders {
        /// Stream.
        stream: StreamRef,
        /// Status.
        status: StatusCode,
    },
    /// A response completed.
    ResponseEnd {
        /// Stream.
        stream: StreamRef,
    },
    /// The connection went down.
    Down {
        /// Reason, as text.
        reason: String,
    },
    /// The worker will try again after `delay`.
    Retry {
        /// The attempt number the retry policy was asked about (1-based): consecutive
        /// failures, counting failed attempts and connections lost before they proved
        /// healthy (see [`crate::ConnectOptions::healthy_after`]); back to 1 after a healthy one.
        attempt: u32,
        /// Delay before it.
        delay: Duration,
    },
    /// The worker is exiting.
    Exit {
        /// Reason, as text.
        reason: String,
    },
}

/// A step with the time it happened and the connection it belongs to.
#[derive(Debug, Clone)]
pub struct Instrument {
    /// Connection identity (as in [`StreamRef::connection_id`]).
    pub connection: u64,
    /// When the step happened.
    pub at: Instant,
    /// What happened.
    pub step: Step,
}

/// A callback receiving every [`Instrument`].
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use moorline::{ConnectOptions, Instrument};
/// let seen: Arc<Mutex<Vec<Instrument>>> = Arc::default();
/// let sink = seen.clone();
/// let opts = ConnectOptions::default().hook(move |i: &Instrument| {
///     if let Ok(mut v) = sink.lock() { v.push(i.clone()) }
/// });
/// # let _ = opts;
/// ```
pub type Hook = Arc<dyn Fn(&Instrument) + Send + Sync>;

/// Emits instrumentation steps to the hook and to `tracing`.
#[derive(Clone)]
pub(crate) struct Emitter {
    pub(crate) connection: u64,
    pub(crate) hook: Option<Hook>,
}

impl Emitter {
    pub(crate) fn emit(&self, step: Step) {
        tracing::debug!(connection = self.connection, ?step, "moorline");
        if let Some(hook) = &self.hook {
            hook(&Instrument { connection: self.connection, at: Instant::now(), step });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn the_hook_gets_each_step_with_its_connection_and_time() {
        let seen: Arc<Mutex<Vec<Instrument>>> = Arc::default();
        let sink = seen.clone();
        let em = Emitter {
            connection: 42,
            hook: Some(Arc::new(move |i: &Instrument| sink.lock().unwrap().push(i.clone()))),
        };
        let before = Instant::now();
        em.emit(Step::LookupStart { host: "venue.example".into() });
        em.emit(Step::Retry { attempt: 2, delay: Duration::from_millis(250) });
        let after = Instant::now();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|i| i.connection == 42 && before <= i.at && i.at <= after), "{seen:?}");
        assert!(seen[0].at <= seen[1].at);
        assert!(matches!(&seen[0].step, Step::LookupStart { host } if host == "venue.example"), "{seen:?}");
        assert!(matches!(seen[1].step, Step::Retry { attempt: 2, delay } if delay == Duration::from_millis(250)));
    }

    #[test]
    fn without_a_hook_emitting_costs_nothing_and_fails_nothing() {
        let em = Emitter { connection: 1, hook: None };
        em.emit(Step::Exit { reason: "closed by the user".into() });
    }

    #[test]
    fn clones_share_the_hook() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        let em = Emitter {
            connection: 7,
            hook: Some(Arc::new(move |_: &Instrument| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })),
        };
        let other = em.clone();
        em.emit(Step::Up { protocol: Protocol::Http1 });
        other.emit(Step::Down { reason: "the peer closed the connection".into() });
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
