//! [`DeribitSim`]: the handle tests hold, and its builder (the tokio shell
//! around the sans-IO venue: accept loop and market clock).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::auth::{TEST_CLIENT_ID, TEST_CLIENT_SECRET};
use super::conn::{self, WS_PATH};
use super::control_http;
use super::publog::Publication;
use super::ratelimit::RateLimit;
use super::shared::Shared;
use super::snapshot::BookSnapshot;
use super::venue::{Config, Venue};

/// Pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Default of [`DeribitSimBuilder::idle_timeout`].
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long [`DeribitSim::shutdown`] waits for clients to answer the close frame.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Configures and starts a [`DeribitSim`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::time::Duration;
/// use moorline_testkit::deribit::{DeribitSim, RateLimit};
///
/// let sim = DeribitSim::builder()
///     .seed(42)
///     .market_interval(Duration::from_millis(50))
///     .token_lifetime(Duration::from_secs(2))
///     .min_heartbeat_interval(Duration::from_millis(200))
///     .rate_limit(RateLimit { max_credits: 5_000, ..RateLimit::default() })
///     .start()
///     .await?;
/// println!("connect to {}", sim.url());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DeribitSimBuilder {
    seed: u64,
    port: u16,
    market_interval: Option<Duration>,
    token_lifetime: Duration,
    refresh_token_lifetime: Duration,
    min_heartbeat_interval: Duration,
    idle_timeout: Option<Duration>,
    rate_limit: RateLimit,
    credentials: Vec<(String, String)>,
    end_session_on_rate_limit: bool,
    tls: bool,
    control_port: Option<u16>,
    publication_log: Option<usize>,
}

impl Default for DeribitSimBuilder {
    fn default() -> Self {
        Self {
            seed: 0,
            port: 0,
            market_interval: Some(Duration::from_millis(100)),
            token_lifetime: Duration::from_secs(900),
            refresh_token_lifetime: Duration::from_secs(30 * 86_400),
            min_heartbeat_interval: Duration::from_secs(10),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            rate_limit: RateLimit::default(),
            credentials: vec![(TEST_CLIENT_ID.to_owned(), TEST_CLIENT_SECRET.to_owned())],
            end_session_on_rate_limit: true,
            tls: false,
            control_port: None,
            publication_log: None,
        }
    }
}

impl DeribitSimBuilder {
    /// Seed of the market generator (default 0). The same seed and the same
    /// client actions give the same market events (prices, amounts, ids).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Listen on this port of `127.0.0.1` (default 0: an ephemeral port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Step the simulated market every `interval` (default 100 ms); each step
    /// may quote, cancel and trade on every instrument and sends one `ticker`
    /// plus any `book` change and `trades`. `Duration::ZERO` means
    /// [`manual_market`](Self::manual_market).
    pub fn market_interval(mut self, interval: Duration) -> Self {
        self.market_interval = Some(interval).filter(|d| !d.is_zero());
        self
    }

    /// Never step the market by itself: only [`DeribitSim::step_market`] does.
    pub fn manual_market(mut self) -> Self {
        self.market_interval = None;
        self
    }

    /// Lifetime of access tokens (default 900 s, as on Deribit); after it,
    /// private calls with the token answer `13009 unauthorized`.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Lifetime of refresh tokens (default 30 days).
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_token_lifetime = lifetime;
        self
    }

    /// Smallest interval `public/set_heartbeat` accepts (default 10 s, as on
    /// Deribit); smaller ones answer `-32602`. Intervals may be fractional
    /// seconds (an extension: Deribit takes whole seconds).
    pub fn min_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.min_heartbeat_interval = interval;
        self
    }

    /// Close connections the client sent no frame on (text, binary, ping or pong) for
    /// `timeout` (default 10 minutes; `Duration::ZERO`: never). Deribit closes idle
    /// connections but publishes no figure, so the default is the simulator's own, long
    /// enough that a quiet subscriber is not cut in a test. The close frame is `1000` with
    /// reason `idle timeout`, and cancel-on-disconnect fires as for any other close. A
    /// client with `public/set_heartbeat` on that answers its `test_request`s is never idle.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout).filter(|d| !d.is_zero());
        self
    }

    /// Whether `10028 too_many_requests` ends the session (default `true`, as on Deribit):
    /// the error, then a close frame `1008` with reason `too_many_requests`.
    pub fn end_session_on_rate_limit(mut self, end: bool) -> Self {
        self.end_session_on_rate_limit = end;
        self
    }

    /// Serve `wss://` with a certificate for `localhost` and `127.0.0.1` signed by a CA
    /// generated at start ([`DeribitSim::ca_pem`], [`DeribitSim::ca_der`]); default `false`.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Also serve the HTTP control endpoint on this port of `127.0.0.1` (0: an ephemeral
    /// one; see [`DeribitSim::control_url`] and the [module documentation](super)).
    pub fn control_port(mut self, port: u16) -> Self {
        self.control_port = Some(port);
        self
    }

    /// Rate limit (default [`RateLimit::default`]): per account once authenticated (the
    /// pools persist across reconnects), per connection before.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Keep a log of the last `capacity` notifications published (default: no log): one
    /// [`Publication`] per channel and notification (book changes and snapshots, trades,
    /// tickers, user channels...) with its `change_id`, `trade_seq`s and `timestamp`, read
    /// with [`DeribitSim::publications`]. Bounded: past `capacity` the oldest records are
    /// evicted and counted ([`DeribitSim::publications_evicted`]); a record is about 100 bytes.
    pub fn publication_log(mut self, capacity: usize) -> Self {
        self.publication_log = Some(capacity);
        self
    }

    /// Adds a test account with these credentials (besides
    /// [`TEST_CLIENT_ID`]/[`TEST_CLIENT_SECRET`], which always exists).
    pub fn account(mut self, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        self.credentials.push((client_id.into(), client_secret.into()));
        self
    }

    /// Binds `127.0.0.1` and starts serving (and, unless manual, stepping the
    /// market) in the current tokio runtime.
    pub async fn start(self) -> io::Result<DeribitSim> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let listener = crate::net::bind_loopback(self.port).await?;
        let addr = listener.local_addr()?;
        let certs = if self.tls { Some(crate::tls::ServerCerts::generate()?) } else { None };
        let tls = match &certs {
            Some(certs) => Some(TlsAcceptor::from(certs.server_config(false, false)?)),
            None => None,
        };
        let venue = Venue::new(Config {
            seed: self.seed,
            token_lifetime: self.token_lifetime,
            refresh_token_lifetime: self.refresh_token_lifetime,
            min_heartbeat_interval: self.min_heartbeat_interval,
            idle_timeout: self.idle_timeout,
            rate_limit: self.rate_limit,
            credentials: self.credentials,
            end_session_on_rate_limit: self.end_session_on_rate_limit,
            publication_log: self.publication_log,
        });
        let shared = Arc::new(Shared::new(venue, runtime));
        let control = match self.control_port {
            Some(port) => Some(control_http::serve(Arc::clone(&shared), port).await?),
            None => None,
        };
        let (stop, stopping) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), tls, stopping));
        let market = self.market_interval.map(|interval| tokio::spawn(market_clock(Arc::clone(&shared), interval)));
        tracing::debug!(%addr, seed = self.seed, tls = certs.is_some(), "Deribit simulator started");
        let ca = certs.map(|c| (c.ca_pem, c.ca_der));
        Ok(DeribitSim { addr, shared, accept, market, stop, ca, control })
    }
}

/// Accepts connections until `stop` turns `true`, then closes the listener, sends every
/// client a close frame 1001 (going away) and waits for the connections to end. Dropping
/// (aborting) this task aborts them all.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    shared.accept(tcp, peer, |id, tcp, io| {
                        connections.spawn(conn::run(Arc::clone(&shared), tls.clone(), tcp, peer, id, io))
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // The only change is to `true`; an error means the simulator is gone: stop as well.
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    shared.going_away();
    while connections.join_next().await.is_some() {}
}

/// Steps the market every `interval`.
async fn market_clock(shared: Arc<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        shared.step_market();
    }
}

/// A Deribit-compatible venue on `127.0.0.1`: JSON-RPC 2.0 over WebSocket
/// at [`url`](Self::url), a seeded simulated market for `BTC-PERPETUAL`,
/// `ETH-PERPETUAL` and `BTC-25DEC26`, and matching of test accounts' orders against it.
///
/// See the [module documentation](super) for the supported API. Dropping the
/// simulator stops it: the listener closes and every connection is aborted.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use moorline_testkit::deribit::DeribitSim;
///
/// let sim = DeribitSim::builder().seed(7).manual_market().start().await?;
/// assert!(sim.url().ends_with("/ws/api/v2"));
/// let before = sim.book_snapshot("ETH-PERPETUAL").expect("listed");
/// sim.step_market(10);
/// let after = sim.book_snapshot("ETH-PERPETUAL").expect("listed");
/// assert!(after.change_id > before.change_id);
/// assert!(after.best_bid().expect("bids").price < after.best_ask().expect("asks").price);
/// # Ok(())
/// # }
/// ```
pub struct DeribitSim {
    addr: SocketAddr,
    pub(super) shared: Arc<Shared>,
    accept: JoinHandle<()>,
    market: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// With TLS: the CA's PEM and DER.
    ca: Option<(String, rustls_pki_types::CertificateDer<'static>)>,
    /// The control endpoint: its address and accept task.
    control: Option<(SocketAddr, JoinHandle<()>)>,
}

impl fmt::Debug for DeribitSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeribitSim").field("addr", &self.addr).field("connections", &self.connections()).finish()
    }
}

impl DeribitSim {
    /// A builder with defaults (seed 0, ephemeral port, market step every
    /// 100 ms, Deribit's token lifetime, heartbeat minimum and rate limit).
    pub fn builder() -> DeribitSimBuilder {
        DeribitSimBuilder::default()
    }

    /// The listening address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws/api/v2` (`wss://` with [`tls`](DeribitSimBuilder::tls)),
    /// the only path that upgrades.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}{WS_PATH}", self.addr)
    }

    /// With TLS: the PEM of the CA that signed the server certificate (trust it in the client).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|(pem, _)| pem.as_str())
    }

    /// With TLS: the DER of the CA that signed the server certificate.
    pub fn ca_der(&self) -> Option<&rustls_pki_types::CertificateDer<'static>> {
        self.ca.as_ref().map(|(_, der)| der)
    }

    /// `http://127.0.0.1:PORT` of the control endpoint, if started
    /// ([`control_port`](DeribitSimBuilder::control_port)).
    pub fn control_url(&self) -> Option<String> {
        self.control.as_ref().map(|(addr, _)| format!("http://{addr}"))
    }

    /// WebSocket connections currently open.
    pub fn connections(&self) -> usize {
        self.shared.open()
    }

    /// Waits until exactly `n` connections are open; `false` on timeout.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.connections() != n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// The current book of `instrument_name` (`None` for unknown instruments).
    pub fn book_snapshot(&self, instrument_name: &str) -> Option<BookSnapshot> {
        self.shared.book_snapshot(instrument_name)
    }

    /// The publication log, oldest first (empty unless
    /// [`publication_log`](DeribitSimBuilder::publication_log) was asked for). Records are
    /// appended under the venue's lock as notifications are queued to the connections, so
    /// the log's order is the order every connection receives them in.
    pub fn publications(&self) -> Vec<Publication> {
        self.shared.lock().venue.log.as_ref().map(|l| l.records()).unwrap_or_default()
    }

    /// Records evicted from the publication log to keep it within its capacity.
    pub fn publications_evicted(&self) -> u64 {
        self.shared.lock().venue.log.as_ref().map_or(0, |l| l.evicted())
    }

    /// Steps the simulated market `steps` times right now (with or without
    /// the automatic clock), sending the resulting notifications.
    pub fn step_market(&self, steps: usize) {
        for _ in 0..steps {
            self.shared.step_market();
        }
    }

    /// Shuts the simulator down as a venue going away does: stops listening and the market,
    /// sends every client a close frame `1001` (going away), behind what it was already sent,
    /// then waits (up to 3 s) for the clients to answer and the connections to end; whatever
    /// is left then is aborted.
    ///
    /// Dropping the simulator instead aborts every connection at once, without a close frame.
    pub async fn shutdown(mut self) {
        if let Some(market) = &self.market {
            market.abort();
        }
        if let Some((_, control)) = &self.control {
            control.abort();
        }
        self.stop.send_replace(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.accept).await.is_err() {
            tracing::debug!(addr = %self.addr, left = self.connections(), "connections left after the grace; aborting");
        }
        // Drop aborts whatever is left.
    }
}

impl Drop for DeribitSim {
    fn drop(&mut self) {
        self.accept.abort();
        if let Some(market) = &self.market {
            market.abort();
        }
        if let Some((_, control)) = &self.control {
            control.abort();
        }
        self.shared.abort_all();
    }
}
