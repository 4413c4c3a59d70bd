//! `moorline serve`: the test kit's servers as standalone processes on 127.0.0.1,
//! for trying a client (ours or anybody's) against them by hand or from other tools.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moorline_testkit::ws::{Frame, Matcher, MockServer, Recording, Reply};
use serde_json::json;

use crate::out::{self, OutputError};
use crate::{ServeDeribitArgs, ServeMockArgs};

/// Everything that can stop `serve` before Ctrl-C.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// The server could not start (port taken, no certificate, ...).
    #[error("cannot start the server: {0}")]
    Start(#[source] std::io::Error),
    /// A file named on the command line could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The recording to replay is malformed.
    #[error("{path}: {source}")]
    Recording {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: moorline_testkit::ws::ReplayError,
    },
    /// Waiting for Ctrl-C failed.
    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(#[source] std::io::Error),
    /// Stdout could not be written (or its reader went away).
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Where a started server is announced: one line of text, or one JSON object.
pub(crate) struct Announcement<'a> {
    pub(crate) server: &'a str,
    pub(crate) url: String,
    pub(crate) ca_pem: Option<&'a str>,
}

/// Prints the announcement and writes the CA certificate, if asked.
pub(crate) fn announce(a: &Announcement<'_>, json: bool, ca_out: Option<&Path>) -> Result<(), ServeError> {
    if let (Some(path), Some(pem)) = (ca_out, a.ca_pem) {
        std::fs::write(path, pem).map_err(|source| ServeError::File { path: path.to_owned(), source })?;
    }
    if json {
        out::line(json!({ "server": a.server, "url": a.url, "ca_pem": a.ca_pem }))?;
    } else {
        out::line(format_args!("{} server listening on {} (Ctrl-C to stop)", a.server, a.url))?;
        if let Some(path) = ca_out.filter(|_| a.ca_pem.is_some()) {
            out::line(format_args!("CA certificate written to {}", path.display()))?;
        }
    }
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub(crate) async fn until_interrupted() -> Result<(), ServeError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(ServeError::Signal),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(ServeError::Signal)
    }
}

/// `moorline serve mock`.
pub(crate) async fn mock(args: ServeMockArgs) -> Result<(), ServeError> {
    let mut builder = MockServer::builder()
        .port(args.port)
        .tls(args.tls)
        .http2(args.http2)
        .on_received(|r| tracing::info!(client = %r.client, "received {}", r.frame));
    if args.echo {
        builder = builder.on(
            Matcher::any(),
            Reply::with(|frame| matches!(frame, Frame::Text(_) | Frame::Binary(_)).then(|| frame.clone())),
        );
    }
    if let Some(path) = &args.replay {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::File { path: path.clone(), source })?;
        let recording =
            Recording::from_jsonl(&text).map_err(|source| ServeError::Recording { path: path.clone(), source })?;
        builder = builder.replay_on_connect(recording, args.speed);
    }
    let server = builder.start().await.map_err(ServeError::Start)?;
    let announcement = Announcement { server: "mock", url: server.url(), ca_pem: args.tls.then(|| server.ca_pem()) };
    let result = match announce(&announcement, args.json, args.ca_out.as_deref()) {
        Ok(()) => until_interrupted().await,
        Err(e) => Err(e),
    };
    tracing::info!(connections = server.connections_accepted(), "mock server stopping: closing clients (1001)");
    server.shutdown().await;
    result
}

/// `moorline serve deribit`.
pub(crate) async fn deribit(args: ServeDeribitArgs) -> Result<(), ServeError> {
    use moorline_testkit::deribit::{DeribitSim, RateLimit, TEST_CLIENT_ID, TEST_CLIENT_SECRET};
    let mut builder = DeribitSim::builder()
        .port(args.port)
        .seed(args.seed)
        .market_interval(Duration::from_millis(args.market_interval_ms))
        .token_lifetime(Duration::from_secs(args.token_lifetime))
        .min_heartbeat_interval(args.min_heartbeat)
        .idle_timeout(args.idle_timeout)
        .end_session_on_rate_limit(!args.keep_session_on_rate_limit)
        .tls(args.tls);
    if args.no_rate_limit {
        builder = builder.rate_limit(RateLimit::unlimited());
    }
    if let Some(port) = args.control_port {
        builder = builder.control_port(port);
    }
    let sim = builder.start().await.map_err(ServeError::Start)?;
    if let (Some(path), Some(pem)) = (&args.ca_out, sim.ca_pem()) {
        std::fs::write(path, pem).map_err(|source| ServeError::File { path: path.clone(), source })?;
    }
    let announced = if args.json {
        out::line(json!({
            "server": "deribit",
            "url": sim.url(),
            "seed": args.seed,
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
            "control_url": sim.control_url(),
            "ca_pem": sim.ca_pem(),
        }))
    } else {
        out::line(format_args!("deribit simulator listening on {} (seed {}; Ctrl-C to stop)", sim.url(), args.seed))
            .and_then(|()| {
                out::line(format_args!(
                    "test credentials: client_id={TEST_CLIENT_ID} client_secret={TEST_CLIENT_SECRET}"
                ))
            })
            .and_then(|()| match sim.control_url() {
                Some(url) => out::line(format_args!("control endpoint: {url} (GET /connections, POST /hook)")),
                None => Ok(()),
            })
            .and_then(|()| match &args.ca_out {
                Some(path) if sim.ca_pem().is_some() => {
                    out::line(format_args!("CA certificate written to {}", path.display()))
                }
                _ => Ok(()),
            })
    };
    let result = match announced {
        Ok(()) => until_interrupted().await,
        Err(e) => Err(e.into()),
    };
    tracing::info!(connections = sim.connections(), "deribit simulator stopping: closing clients (1001)");
    sim.shutdown().await;
    result
}
