//! The route table, shared by the HTTP/1.1 and HTTP/2 front ends.
//!
//! [`route`] maps a request line to a [`Route`]; [`serve`] plays a route
//! against any protocol implementing [`Exchange`].

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, LINK, TRAILER};
use http::{HeaderMap, Method, StatusCode};

use super::error::Error;

/// Largest `size` accepted by `/stream`.
const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// Largest `chunks` accepted by `/stream`.
const MAX_CHUNKS: u64 = 1_000_000;
/// Largest `delay_ms` accepted by `/stream` and `/slow`.
const MAX_DELAY_MS: u64 = 10 * 60 * 1000;
/// Piece size used to write `/big` bodies.
const BIG_PIECE: usize = 16 * 1024;

/// How the body of a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLen {
    /// No body at all (`content-length: 0` on HTTP/1.1 where allowed).
    Empty,
    /// A body of exactly this many bytes.
    Known(u64),
    /// A body of unknown length (chunked on HTTP/1.1).
    Streaming,
}

/// One request/response exchange, as the route logic sees it.
pub(crate) trait Exchange {
    /// Next piece of the request body, `None` at its end.
    async fn read_body(&mut self) -> Result<Option<Bytes>, Error>;
    /// Sends an interim 1xx response.
    async fn send_informational(&mut self, status: StatusCode, headers: HeaderMap) -> Result<(), Error>;
    /// Sends the final response head.
    async fn send_head(&mut self, status: StatusCode, headers: HeaderMap, len: BodyLen) -> Result<(), Error>;
    /// Sends a piece of the response body (suppressed for HEAD requests).
    async fn send_data(&mut self, data: Bytes) -> Result<(), Error>;
    /// Ends the response body, optionally with trailers.
    async fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<(), Error>;
    /// Pushes `path` with a `200` response carrying `body`, when the protocol
    /// and the peer allow it; silently does nothing otherwise.
    async fn push(&mut self, path: &'static str, body: &'static [u8]) -> Result<(), Error>;
    /// Never answers: returns only once the peer abandons the request (or,
    /// on HTTP/1.1, immediately, leaving the connection in stalling mode).
    async fn stall(&mut self) -> Result<(), Error>;
    /// Whether response bodies are suppressed (the request was `HEAD`).
    fn is_head(&self) -> bool;
    /// Asks for a graceful connection close once this response is complete.
    fn close_after(&mut self);
    /// Resets the whole TCP connection, without answering.
    fn reset_connection(&mut self);
}

/// A resolved route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Hello,
    Echo,
    Stream { chunks: u64, size: usize, delay: Duration },
    Slow(Duration),
    Stall,
    StallBody,
    Inform,
    Trailers,
    Push,
    Pushed,
    Close,
    Reset,
    Big(u64),
    Status(StatusCode),
    BadRequest(&'static str),
    NotFound,
}

/// Looks up `name` in a `a=1&b=2` query string.
fn param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').filter_map(|kv| kv.split_once('=').or(Some((kv, "")))).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Parses numeric query parameter `name`, with a default and an upper bound.
fn num(query: Option<&str>, name: &str, default: u64, max: u64) -> Result<u64, &'static str> {
    match param(query, name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            Ok(_) => Err("query parameter out of range"),
            Err(_) => Err("query parameter is not a number"),
        },
    }
}

/// Resolves a request to a route. `HEAD` routes like `GET`.
pub(crate) fn route(method: &Method, path: &str, query: Option<&str>) -> Route {
    let is_get = method == Method::GET || method == Method::HEAD;
    let is_upload = method == Method::POST || method == Method::PUT;
    let resolved = match path {
        "/hello" if is_get => Ok(Route::Hello),
        "/echo" if is_upload => Ok(Route::Echo),
        "/stream" if is_get => (|| {
            let chunks = num(query, "chunks", 3, MAX_CHUNKS)?;
            let size = num(query, "size", 16, MAX_CHUNK_SIZE)?;
            let delay = num(query, "delay_ms", 0, MAX_DELAY_MS)?;
            Ok(Route::Stream {
                chunks,
                size: usize::try_from(size).map_err(|_| "size too large")?,
                delay: Duration::from_millis(delay),
            })
        })(),
        "/slow" if is_get => num(query, "delay_ms", 100, MAX_DELAY_MS).map(|d| Route::Slow(Duration::from_millis(d))),
        "/stall" if is_get => Ok(Route::Stall),
        "/stall-body" if is_get => Ok(Route::StallBody),
        "/inform" if is_get => Ok(Route::Inform),
        "/trailers" if is_get => Ok(Route::Trailers),
        "/push" if is_get => Ok(Route::Push),
        "/pushed" if is_get => Ok(Route::Pushed),
        "/close" if is_get => Ok(Route::Close),
        "/reset" if is_get => Ok(Route::Reset),
        "/big" if is_get => num(query, "bytes", 1024 * 1024, u64::MAX).map(Route::Big),
        _ if is_get && path.starts_with("/status/") => Ok(path["/status/".len()..]
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .map_or(Route::NotFound, Route::Status)),
        _ => Ok(Route::NotFound),
    };
    resolved.unwrap_or_else(Route::BadRequest)
}

fn text_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h
}

/// Sends a complete response with a fixed body.
async fn fixed<E: Exchange>(ex: &mut E, status: StatusCode, body: &'static [u8]) -> Result<(), Error> {
    ex.send_head(status, text_headers(), BodyLen::Known(body.len() as u64)).await?;
    ex.send_data(Bytes::from_static(body)).await?;
    ex.finish(None).await
}

/// Plays `route` on `ex`.
pub(crate) async fn serve<E: Exchange>(ex: &mut E, route: Route) -> Result<(), Error> {
    match route {
        Route::Hello => fixed(ex, StatusCode::OK, b"hello").await,
        Route::Echo => {
            ex.send_head(StatusCode::OK, HeaderMap::new(), BodyLen::Streaming).await?;
            while let Some(piece) = ex.read_body().await? {
                ex.send_data(piece).await?;
            }
            ex.finish(None).await
        }
        Route::Stream { chunks, size, delay } => {
            ex.send_head(StatusCode::OK, text_headers(), BodyLen::Streaming).await?;
            if ex.is_head() {
                return ex.finish(None).await;
            }
            let chunk = Bytes::from(vec![b'x'; size]);
            for i in 0..chunks {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                ex.send_data(chunk.clone()).await?;
            }
            ex.finish(None).await
        }
        Route::Slow(delay) => {
            tokio::time::sleep(delay).await;
            fixed(ex, StatusCode::OK, b"slow").await
        }
        Route::Stall => ex.stall().await,
        Route::StallBody => {
            ex.send_head(StatusCode::OK, text_headers(), BodyLen::Known(100)).await?;
            ex.send_data(Bytes::from_static(&[b'x'; 10])).await?;
            ex.stall().await
        }
        Route::Inform => {
            let mut hints = HeaderMap::new();
            hints.insert(LINK, HeaderValue::from_static("</style.css>; rel=preload"));
            ex.send_informational(StatusCode::EARLY_HINTS, hints).await?;
            fixed(ex, StatusCode::OK, b"informed").await
        }
        Route::Trailers => {
            let mut headers = text_headers();
            headers.insert(TRAILER, HeaderValue::from_static("x-checksum"));
            ex.send_head(StatusCode::OK, headers, BodyLen::Streaming).await?;
            ex.send_data(Bytes::from_static(b"body")).await?;
            let mut trailers = HeaderMap::new();
            trailers.insert(HeaderName::from_static("x-checksum"), HeaderValue::from_static("abc123"));
            ex.finish(Some(trailers)).await
        }
        Route::Push => {
            ex.push("/pushed", b"pushed").await?;
            fixed(ex, StatusCode::OK, b"push").await
        }
        Route::Pushed => fixed(ex, StatusCode::OK, b"pushed").await,
        Route::Close => {
            ex.close_after();
            fixed(ex, StatusCode::OK, b"bye").await
        }
        Route::Reset => {
            ex.reset_connection();
            Ok(())
        }
        Route::Big(bytes) => {
            ex.send_head(StatusCode::OK, HeaderMap::new(), BodyLen::Known(bytes)).await?;
            let piece = Bytes::from(vec![b'x'; BIG_PIECE]);
            let mut left = if ex.is_head() { 0 } else { bytes };
            while left > 0 {
                let n = usize::try_from(left).map_or(BIG_PIECE, |l| l.min(BIG_PIECE));
                ex.send_data(piece.slice(..n)).await?;
                left -= n as u64;
            }
            ex.finish(None).await
        }
        Route::Status(code) => {
            ex.send_head(code, HeaderMap::new(), BodyLen::Empty).await?;
            ex.finish(None).await
        }
        Route::BadRequest(why) => {
            tracing::debug!(reason = why, "bad request");
            fixed(ex, StatusCode::BAD_REQUEST, b"bad request").await
        }
        Route::NotFound => fixed(ex, StatusCode::NOT_FOUND, b"not found").await,
    }
}

/// Answers with a `200` whose head carries one `x-oversized` header of `len` bytes.
pub(crate) async fn serve_oversized<E: Exchange>(ex: &mut E, len: usize) -> Result<(), Error> {
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_maybe_shared(Bytes::from(vec![b'a'; len])).map_err(http::Error::from)?;
    headers.insert(HeaderName::from_static("x-oversized"), value);
    ex.send_head(StatusCode::OK, headers, BodyLen::Empty).await?;
    ex.finish(None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_routes() {
        assert_eq!(route(&Method::GET, "/hello", None), Route::Hello);
        assert_eq!(route(&Method::HEAD, "/hello", None), Route::Hello);
        assert_eq!(route(&Method::POST, "/hello", None), Route::NotFound);
        assert_eq!(route(&Method::PUT, "/echo", None), Route::Echo);
        assert_eq!(
            route(&Method::GET, "/stream", Some("chunks=2&size=5&delay_ms=7")),
            Route::Stream { chunks: 2, size: 5, delay: Duration::from_millis(7) }
        );
        assert!(matches!(route(&Method::GET, "/stream", Some("size=999999999999")), Route::BadRequest(_)));
        assert_eq!(route(&Method::GET, "/status/503", None), Route::Status(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(route(&Method::GET, "/status/101", None), Route::NotFound);
        assert_eq!(route(&Method::GET, "/status/abc", None), Route::NotFound);
        assert_eq!(route(&Method::GET, "/big", Some("bytes=10")), Route::Big(10));
    }
}
