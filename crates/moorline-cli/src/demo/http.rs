//! `moorline demo http`: the connection layer against a built-in test server.

use std::time::Duration;

use moorline::http::HeaderMap;
use moorline::{ConnectOptions, Event, Protocol, RetryPolicy, TlsOptions, Transport};
use moorline_testkit::http::TestServer;
use serde_json::json;

use crate::out::{self, OutputError};

const T: Duration = Duration::from_secs(5);

/// Everything that can end the demo early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// The connection layer failed.
    #[error(transparent)]
    Moorline(#[from] moorline::Error),
    /// The test server could not start.
    #[error("test server: {0}")]
    Server(#[from] std::io::Error),
    /// Something happened that the demo did not expect.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// Stdout could not be written (or its reader went away).
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Options of `moorline demo http`.
#[derive(Debug, clap::Args)]
pub(crate) struct HttpDemoArgs {
    /// Protocol to offer by ALPN.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Http2)]
    pub(crate) protocol: ProtocolArg,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A protocol choice on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ProtocolArg {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

struct Out {
    json: bool,
    colour: bool,
}

impl Out {
    fn say(&self, step: &str, text: String, data: serde_json::Value) -> Result<(), OutputError> {
        if self.json {
            out::line(json!({ "step": step, "detail": data }))
        } else if self.colour {
            out::line(format_args!("\x1b[1;36m{step:>10}\x1b[0m {text}"))
        } else {
            out::line(format_args!("{step:>10} {text}"))
        }
    }
}

/// Runs the demo; `colour` says whether stdout takes colour escapes.
pub(crate) async fn run(args: HttpDemoArgs, colour: bool) -> Result<(), DemoError> {
    let out = Out { json: args.json, colour: colour && !args.json };
    let h2 = matches!(args.protocol, ProtocolArg::Http2);
    let server = TestServer::builder().tls(true).h2(h2).start().await?;
    out.say("server", format!("TLS test server on {}", server.addr()), json!({ "addr": server.addr().to_string() }))?;

    let opts = ConnectOptions::default()
        .transport(Transport::Tls)
        .tls(TlsOptions::default().add_ca_pem(server.ca_pem())?)
        .retry(RetryPolicy::fixed(3, Duration::from_millis(200)));
    let (conn, mut events) = moorline::open("127.0.0.1", server.port(), opts)?;
    let protocol = events.await_up(T).await?;
    out.say("up", format!("connected, ALPN chose {protocol}"), json!({ "protocol": protocol.to_string() }))?;

    let s = conn.get("/hello", HeaderMap::new()).await?;
    let r = events.await_response(&s, T).await?;
    let b = events.await_body(&s, T).await?;
    out.say(
        "response",
        format!("GET /hello -> {} {:?}", r.status, String::from_utf8_lossy(&b.data)),
        json!({ "status": r.status.as_u16(), "body": String::from_utf8_lossy(&b.data) }),
    )?;

    let s = conn.get("/stream?chunks=4&size=256&delay_ms=50", HeaderMap::new()).await?;
    loop {
        match next(&mut events).await? {
            Event::Data { stream, data, fin } if stream == s => {
                out.say(
                    "data",
                    format!("{} bytes{}", data.len(), if fin { " (fin)" } else { "" }),
                    json!({ "bytes": data.len(), "fin": fin }),
                )?;
                if fin {
                    break;
                }
            }
            Event::Response { stream, status, .. } if stream == s => {
                out.say(
                    "response",
                    format!("GET /stream -> {status}, streaming"),
                    json!({ "status": status.as_u16() }),
                )?;
            }
            other => return Err(DemoError::Unexpected(format!("{other:?}"))),
        }
    }

    // A request the server never answers, and one queued behind it on HTTP/1.1.
    let stalled = conn.get("/stall", HeaderMap::new()).await?;
    let behind = conn.get("/hello", HeaderMap::new()).await?;
    if !server.wait_for_requests(3, T).await {
        return Err(DemoError::Unexpected("the stalled request never reached the server".into()));
    }
    out.say("fault", "the server resets every connection (TCP RST)".into(), json!({ "fault": "reset" }))?;
    server.reset_all();
    loop {
        match next(&mut events).await? {
            Event::Down { reason, possibly_processed, unprocessed, .. } => {
                let name = |v: &[moorline::StreamRef]| {
                    v.iter()
                        .map(|s| {
                            if *s == stalled {
                                "/stall"
                            } else if *s == behind {
                                "/hello"
                            } else {
                                "?"
                            }
                        })
                        .collect::<Vec<_>>()
                };
                let (p, u) = (name(&possibly_processed), name(&unprocessed));
                out.say(
                    "down",
                    format!("{reason}; possibly processed {p:?}, not processed {u:?}"),
                    json!({ "reason": reason.to_string(), "possibly_processed": p, "unprocessed": u }),
                )?;
                break;
            }
            Event::Data { .. } | Event::Response { .. } if protocol == Protocol::Http2 => {}
            other => return Err(DemoError::Unexpected(format!("{other:?}"))),
        }
    }
    let protocol = events.await_up(T).await?;
    out.say(
        "up",
        format!("reconnected on its own ({protocol})"),
        json!({ "protocol": protocol.to_string(), "connects": conn.info().connects }),
    )?;

    let s = conn.get("/hello", HeaderMap::new()).await?;
    let b = events.await_body(&s, T).await?;
    out.say(
        "response",
        format!("GET /hello -> {:?}", String::from_utf8_lossy(&b.data)),
        json!({ "body": String::from_utf8_lossy(&b.data) }),
    )?;

    let s = conn.get("/slow?delay_ms=100", HeaderMap::new()).await?;
    conn.shutdown().await?;
    out.say("shutdown", "graceful shutdown with one request in flight".into(), json!({}))?;
    let b = events.await_body(&s, T).await?;
    out.say(
        "response",
        format!("in-flight request finished: {:?}", String::from_utf8_lossy(&b.data)),
        json!({ "body": String::from_utf8_lossy(&b.data) }),
    )?;
    loop {
        if let Event::Exit { reason } = next(&mut events).await? {
            out.say("exit", reason.to_string(), json!({ "reason": reason.to_string() }))?;
            return Ok(());
        }
    }
}

async fn next(events: &mut moorline::Events) -> Result<Event, DemoError> {
    match tokio::time::timeout(T, events.next()).await {
        Ok(Some(ev)) => Ok(ev),
        Ok(None) => Err(DemoError::Unexpected("the connection's events ended".into())),
        Err(_) => Err(DemoError::Unexpected("no event within 5 s".into())),
    }
}
