//! Our own small HTTP/1.1 server: keep-alive, sequential processing of
//! pipelined requests, content-length and chunked request bodies, and raw
//! control over the bytes written (for faults).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ctx::ConnCtx;
use super::error::Error;
use super::fault::Fault;
use super::h1_codec::{self, BodyDecoder, Decoded, RequestHead};
use super::io::{BoxIo, discard_until_eof, graceful_close};
use super::routes::{self, BodyLen, Exchange};

/// Bytes written for [`Fault::GarbageStatusLine`].
const GARBAGE: &[u8] = b"HTTX/9.9 what\r\n\r\n";

/// The connection: the stream plus bytes read but not consumed yet.
struct H1Conn {
    io: BoxIo,
    buf: BytesMut,
}

impl H1Conn {
    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    async fn fill(&mut self) -> Result<usize, Error> {
        self.buf.reserve(8 * 1024);
        Ok(self.io.read_buf(&mut self.buf).await?)
    }

    /// Reads the next request head; `Ok(None)` on a clean EOF between requests.
    async fn read_head(&mut self) -> Result<Option<RequestHead>, Error> {
        loop {
            if !self.buf.is_empty()
                && let Some(head) = h1_codec::parse_head(&mut self.buf)?
            {
                return Ok(Some(head));
            }
            if self.fill().await? == 0 {
                return if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                    Ok(None)
                } else {
                    Err(Error::BadRequest("connection closed inside request head"))
                };
            }
        }
    }

    /// Reads and discards the rest of a request body.
    async fn drain_body(&mut self, body: &mut BodyDecoder) -> Result<(), Error> {
        loop {
            match body.decode(&mut self.buf)? {
                Decoded::Data(_) => {}
                Decoded::End => return Ok(()),
                Decoded::NeedMore => {
                    if self.fill().await? == 0 {
                        return Err(Error::BadRequest("connection closed inside request body"));
                    }
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Answers a request we could not parse, then closes the connection.
    async fn reject(&mut self, status: StatusCode) {
        let head = h1_codec::encode_head(status, &HeaderMap::new(), Some(BodyLen::Empty), true);
        if self.write(&head).await.is_ok() {
            graceful_close(&mut self.io).await;
        }
    }
}

/// Serves HTTP/1.1 requests on `io` until the connection ends.
pub(crate) async fn serve(io: BoxIo, ctx: ConnCtx) -> Result<(), Error> {
    let mut conn = H1Conn { io, buf: BytesMut::with_capacity(8 * 1024) };
    // Once set, requests are still read (and counted) but never answered.
    let mut stalling = false;
    loop {
        let head = match conn.read_head().await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(Error::HeadTooLarge) if !stalling => {
                conn.reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
                return Ok(());
            }
            Err(Error::BadRequest(why)) if !stalling => {
                tracing::debug!(reason = why, "bad HTTP/1.1 request");
                conn.reject(StatusCode::BAD_REQUEST).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        ctx.shared.request_seen();
        tracing::debug!(method = %head.method, path = %head.path, "HTTP/1.1 request");
        let mut body = match BodyDecoder::for_request(&head) {
            Ok(body) => body,
            Err(_) if stalling => {
                discard_until_eof(&mut conn.io).await;
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "bad HTTP/1.1 request body framing");
                conn.reject(StatusCode::BAD_REQUEST).await;
                return Ok(());
            }
        };
        if stalling {
            conn.drain_body(&mut body).await?;
            continue;
        }
        let fault = ctx.shared.fault();
        match fault {
            Some(Fault::GarbageStatusLine) => {
                conn.write(GARBAGE).await?;
                graceful_close(&mut conn.io).await;
                return Ok(());
            }
            Some(Fault::Stall) => {
                stalling = true;
                conn.drain_body(&mut body).await?;
                continue;
            }
            _ => {}
        }

        let mut ex = H1Exchange {
            expect_continue: head.expects_continue(),
            is_head: head.method == Method::HEAD,
            close: !head.keep_alive(),
            conn: &mut conn,
            body,
            response: Response::NotStarted,
            reset: false,
            stall: false,
        };
        let result = match fault {
            Some(Fault::OversizedHeaders(len)) => routes::serve_oversized(&mut ex, len).await,
            _ => {
                let route = routes::route(&head.method, &head.path, head.query.as_deref());
                routes::serve(&mut ex, route).await
            }
        };
        let H1Exchange { body: mut rest, response, mut close, reset, stall, expect_continue, .. } = ex;
        result?;
        if reset {
            tracing::debug!("resetting HTTP/1.1 connection on request");
            ctx.reset_connection();
            return Ok(());
        }
        if stall {
            stalling = true;
            conn.drain_body(&mut rest).await?;
            continue;
        }
        // A client waiting for 100-continue that never got it will not send
        // its body: the connection cannot be reused.
        if expect_continue && !rest.is_done() {
            close = true;
        }
        if close || response != Response::Done {
            graceful_close(&mut conn.io).await;
            return Ok(());
        }
        conn.drain_body(&mut rest).await?;
    }
}

/// Progress of the response of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Response {
    NotStarted,
    Known,
    Chunked,
    Done,
}

/// One HTTP/1.1 request/response exchange.
struct H1Exchange<'c> {
    conn: &'c mut H1Conn,
    body: BodyDecoder,
    expect_continue: bool,
    is_head: bool,
    response: Response,
    close: bool,
    reset: bool,
    stall: bool,
}

impl Exchange for H1Exchange<'_> {
    async fn read_body(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.body.decode(&mut self.conn.buf)? {
                Decoded::Data(piece) => return Ok(Some(piece)),
                Decoded::End => return Ok(None),
                Decoded::NeedMore => {
                    if self.expect_continue {
                        // Sent at most once, and only before the final response head.
                        self.expect_continue = false;
                        if self.response == Response::NotStarted {
                            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                        }
                    }
                    if self.conn.fill().await? == 0 {
                        return Err(Error::BadRequest("connection closed inside request body"));
                    }
                }
            }
        }
    }

    async fn send_informational(&mut self, status: StatusCode, headers: HeaderMap) -> Result<(), Error> {
        let head = h1_codec::encode_head(status, &headers, None, false);
        self.conn.write(&head).await
    }

    async fn send_head(&mut self, status: StatusCode, headers: HeaderMap, len: BodyLen) -> Result<(), Error> {
        if self.expect_continue && !self.body.is_done() {
            // We are about to answer and will read (or drain) the body: invite it.
            self.expect_continue = false;
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let head = h1_codec::encode_head(status, &headers, Some(len), self.close);
        self.conn.write(&head).await?;
        let bodyless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        self.response = match len {
            _ if self.is_head || bodyless => Response::Done,
            BodyLen::Empty => Response::Done,
            BodyLen::Known(_) => Response::Known,
            BodyLen::Streaming => Response::Chunked,
        };
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        match self.response {
            Response::Known => self.conn.write(&data).await,
            Response::Chunked => {
                let mut frame = Vec::with_capacity(data.len() + 16);
                frame.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                frame.extend_from_slice(&data);
                frame.extend_from_slice(b"\r\n");
                self.conn.write(&frame).await
            }
            Response::NotStarted | Response::Done => Ok(()),
        }
    }

    async fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<(), Error> {
        if self.response == Response::Chunked {
            let last = h1_codec::encode_last_chunk(trailers.as_ref());
            self.conn.write(&last).await?;
        }
        self.response = Response::Done;
        Ok(())
    }

    async fn push(&mut self, _path: &'static str, _body: &'static [u8]) -> Result<(), Error> {
        Ok(())
    }

    async fn stall(&mut self) -> Result<(), Error> {
        self.stall = true;
        Ok(())
    }

    fn is_head(&self) -> bool {
        self.is_head
    }

    fn close_after(&mut self) {
        self.close = true;
    }

    fn reset_connection(&mut self) {
        self.reset = true;
    }
}
