//! Helpers shared by the connection-layer integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod heap;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moorline::{ConnectOptions, Connection, Event, Events, Instrument, RetryPolicy, Step, TlsOptions, Transport};
use moorline_testkit::http::TestServer;

/// Every test runs under this bound: a hang is a failure, not a stuck CI.
pub const TEST_BOUND: Duration = Duration::from_secs(30);
/// Timeout for awaits that should succeed promptly.
pub const T: Duration = Duration::from_secs(5);

/// Run a test body with a hard time bound.
pub async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_BOUND, f).await.expect("test exceeded its time bound");
}

/// Records instrumentation steps.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Instrument>>>);

impl Recorder {
    pub fn steps(&self) -> Vec<Instrument> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self, f: impl Fn(&Step) -> bool) -> usize {
        self.steps().iter().filter(|i| f(&i.step)).count()
    }
}

/// Fast-retrying options with a recorder hooked in.
pub fn opts(rec: &Recorder) -> ConnectOptions {
    let r = rec.clone();
    ConnectOptions::default()
        .retry(RetryPolicy::fixed(3, Duration::from_millis(50)))
        .hook(move |i: &Instrument| r.0.lock().unwrap().push(i.clone()))
}

/// Options for a TLS test server.
pub fn tls_opts(rec: &Recorder, server: &TestServer) -> ConnectOptions {
    opts(rec).transport(Transport::Tls).tls(TlsOptions::default().add_ca_pem(server.ca_pem()).unwrap())
}

pub async fn plain_server(h2: bool) -> TestServer {
    TestServer::builder().h2(h2).start().await.unwrap()
}

pub async fn tls_server(h2: bool) -> TestServer {
    TestServer::builder().tls(true).h2(h2).start().await.unwrap()
}

/// Open and wait for `Up`.
pub async fn connect(server: &TestServer, opts: ConnectOptions) -> (Connection, Events, moorline::Protocol) {
    let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts).unwrap();
    let p = events.await_up(T).await.unwrap();
    (conn, events, p)
}

/// Next event, bounded.
pub async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(T, events.next()).await.expect("no event in time").expect("event stream ended")
}

/// Skip events until one matches.
pub async fn next_matching(events: &mut Events, f: impl Fn(&Event) -> bool) -> Event {
    loop {
        let ev = next(events).await;
        if f(&ev) {
            return ev;
        }
    }
}
