//! [`connect`]: a WebSocket from a `ws://` or `wss://` URL in one call, with the protocol
//! choice a WebSocket needs (HTTP/1.1 by default, HTTP/2 opt-in, fallback on refusal).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, OptionsError, StreamError, UrlProblem};
use crate::ids::{Protocol, StreamRef};
use crate::options::{ConnectOptions, Transport};
use crate::wsio::{Upgraded, WsOptions};
use crate::{Connection, Events};

/// A parsed WebSocket URL: `ws://host[:port]/path?query` or `wss://...`.
///
/// ```
/// use moorline::ws::WsUrl;
///
/// let url = WsUrl::parse("wss://www.deribit.com/ws/api/v2").unwrap();
/// assert_eq!((url.secure, url.host.as_str(), url.port, url.target.as_str()), (true, "www.deribit.com", 443, "/ws/api/v2"));
/// assert!(WsUrl::parse("https://www.deribit.com/").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss`: over TLS.
    pub secure: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 for `ws`, 443 for `wss`).
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL; anything else is [`Error::InvalidOptions`] with a reason.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |problem: UrlProblem| Error::InvalidOptions(OptionsError::Url { url: url.to_owned(), problem });
        let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(UrlProblem::Syntax(Arc::new(e))))?;
        let secure = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            Some(other) => return Err(bad(UrlProblem::Scheme(other.to_owned()))),
            None => return Err(bad(UrlProblem::NoScheme)),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad(UrlProblem::NoHost))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let target = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/".to_owned(),
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
        };
        Ok(Self { secure, host, port, target })
    }
}

/// A WebSocket opened by [`connect`]: its connection, the owner's events, the stream and
/// what the upgrade agreed.
#[derive(Debug)]
pub struct WsSession {
    /// The connection (send with [`Connection::ws_send`], close with [`Connection::ws_close`]).
    pub conn: Connection,
    /// The owner's events (receive with [`Events::await_ws`]).
    pub events: Events,
    /// The WebSocket's stream.
    pub stream: StreamRef,
    /// Subprotocol, permessage-deflate parameters and response headers.
    pub upgraded: Upgraded,
    /// The protocol the WebSocket runs over.
    pub protocol: Protocol,
}

/// Opens a connection to `url` and upgrades it to a WebSocket, all within `timeout`.
///
/// If the connection is not up in time, the error is [`Error::ConnectTimeout`], which says
/// why the last attempt failed (refused, TLS certificate, handshake...): with the default
/// retry policy a failed attempt is retried, so the timeout is usually what ends the call.
/// `Duration::MAX` waits as long as the retry policy keeps trying.
///
/// The transport follows the scheme (`wss` is TLS). Unless `options` name protocols
/// themselves, the connection offers HTTP/1.1 only: proxies and CDNs (Cloudflare among
/// them) break WebSockets over HTTP/2, so HTTP/2 (RFC 8441) is opt-in with
/// [`WsOptions::http2`]. A server that refuses WebSockets over HTTP/2 gives
/// [`StreamError::Http2WebSocketUnsupported`] (or the refused handshake), unless
/// [`WsOptions::fallback_http1`] asks to retry on a fresh HTTP/1.1 connection.
///
/// Reconnection stays the connection's (see [`ConnectOptions::retry`]); the WebSocket
/// itself does not survive a `Down`: upgrade again.
///
/// ```no_run
/// # async fn demo() -> Result<(), moorline::Error> {
/// use std::time::Duration;
/// use moorline::ConnectOptions;
/// use moorline::ws::{self, Message, WsOptions};
///
/// let mut ws = ws::connect("wss://test.deribit.com/ws/api/v2", ConnectOptions::default(), WsOptions::default(), Duration::from_secs(10)).await?;
/// ws.conn.ws_send(&ws.stream, Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"public/test"}"#)).await?;
/// let answer = ws.events.await_ws(&ws.stream, Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str, options: ConnectOptions, ws: WsOptions, timeout: Duration) -> Result<WsSession, Error> {
    let url = WsUrl::parse(url)?;
    let deadline = crate::conn::deadline(timeout);
    let mut options = options.transport(if url.secure { Transport::Tls } else { Transport::Tcp });
    if options.protocols.is_none() {
        options = options.protocols(match (ws.http2, url.secure) {
            (false, _) => &[Protocol::Http1],
            (true, true) => &[Protocol::Http2, Protocol::Http1],
            (true, false) => &[Protocol::Http2],
        });
    }
    let result = match attempt(&url, options.clone(), &ws, deadline).await {
        Err((error, Some(Protocol::Http2))) if ws.fallback_http1 && refused_over_http2(&error) => {
            tracing::info!(host = %url.host, port = url.port, %error, "WebSocket over HTTP/2 refused; trying a fresh HTTP/1.1 connection");
            let options = options.protocols(&[Protocol::Http1]);
            attempt(&url, options, &ws, deadline).await.map_err(|(e, _)| e)
        }
        other => other.map_err(|(e, _)| e),
    };
    // The awaits were given what was left of the deadline: report the whole timeout.
    result.map_err(|e| match e {
        Error::Timeout(_) => Error::Timeout(timeout),
        Error::ConnectTimeout { attempts, last, .. } => Error::ConnectTimeout { after: timeout, attempts, last },
        other => other,
    })
}

fn refused_over_http2(error: &Error) -> bool {
    matches!(error, Error::Stream(StreamError::Http2WebSocketUnsupported | StreamError::WsHandshake(_)))
}

/// One connection and upgrade; on failure the connection is closed and the protocol it
/// reached (if it came up) is returned with the error.
async fn attempt(
    url: &WsUrl,
    options: ConnectOptions,
    ws: &WsOptions,
    deadline: Instant,
) -> Result<WsSession, (Error, Option<Protocol>)> {
    let left = || deadline.saturating_duration_since(Instant::now());
    let (conn, mut events) = crate::open(&url.host, url.port, options).map_err(|e| (e, None))?;
    let protocol = match events.await_up(left()).await {
        Ok(p) => p,
        Err(e) => {
            conn.close();
            return Err((e, None));
        }
    };
    let upgraded = async {
        let stream = conn.ws_upgrade(&url.target, ws.clone()).await?;
        let upgraded = events.await_ws_upgrade(&stream, left()).await?;
        Ok::<_, Error>((stream, upgraded))
    }
    .await;
    match upgraded {
        Ok((stream, upgraded)) => Ok(WsSession { conn, events, stream, upgraded, protocol }),
        Err(e) => {
            conn.close();
            Err((e, Some(protocol)))
        }
    }
}
