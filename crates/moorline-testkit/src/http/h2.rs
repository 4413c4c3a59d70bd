//! HTTP/2 via `h2::server`, with flow control respected in both directions.

use std::future::poll_fn;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ctx::ConnCtx;
use super::error::Error;
use super::fault::Fault;
use super::io::BoxIo;
use super::routes::{self, BodyLen, Exchange};

/// Requests a stream handler can make of its connection.
#[derive(Debug)]
enum ConnCmd {
    /// Start a graceful shutdown (GOAWAY).
    GracefulShutdown,
}

/// Serves HTTP/2 on `io` (the client preface not yet consumed).
pub(crate) async fn serve(io: BoxIo, ctx: ConnCtx) -> Result<(), Error> {
    let mut conn = h2::server::Builder::new().max_concurrent_streams(256).handshake::<_, Bytes>(io).await?;
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    // Dropping the set (when the connection ends) aborts the stream handlers.
    let mut handlers = JoinSet::new();
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    ctx.shared.request_seen();
                    tracing::debug!(method = %request.method(), uri = %request.uri(), "HTTP/2 request");
                    on_request(request, respond, &ctx, &cmd_tx, &mut handlers);
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            Some(cmd) = cmd_rx.recv() => match cmd {
                ConnCmd::GracefulShutdown => {
                    tracing::debug!(id = ctx.id, "graceful HTTP/2 shutdown");
                    conn.graceful_shutdown();
                }
            },
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
        }
    }
}

/// Applies request-level faults or spawns the route handler for one stream.
fn on_request(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    ctx: &ConnCtx,
    cmd_tx: &mpsc::UnboundedSender<ConnCmd>,
    handlers: &mut JoinSet<()>,
) {
    let fault = ctx.shared.fault();
    match fault {
        Some(Fault::RefuseStreams) => {
            tracing::debug!("refusing HTTP/2 stream");
            respond.send_reset(Reason::REFUSED_STREAM);
        }
        Some(Fault::Stall) => {
            handlers.spawn(async move {
                // Keep the stream open (unanswered) until the client gives up on it.
                let _request = request;
                let _ = poll_fn(|cx| respond.poll_reset(cx)).await;
            });
        }
        _ => {
            let (parts, body) = request.into_parts();
            let mut ex = H2Exchange {
                is_head: parts.method == Method::HEAD,
                body,
                respond,
                send: None,
                uri: parts.uri.clone(),
                push_allowed: ctx.config.push,
                close_after: false,
                ctx: ctx.clone(),
            };
            let cmd_tx = cmd_tx.clone();
            handlers.spawn(async move {
                let result = match fault {
                    Some(Fault::OversizedHeaders(len)) => routes::serve_oversized(&mut ex, len).await,
                    _ => {
                        let route = routes::route(&parts.method, parts.uri.path(), parts.uri.query());
                        routes::serve(&mut ex, route).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP/2 stream failed");
                    ex.abort(Reason::INTERNAL_ERROR);
                }
                if ex.close_after {
                    let _ = cmd_tx.send(ConnCmd::GracefulShutdown);
                }
            });
        }
    }
}

/// One HTTP/2 stream's exchange.
struct H2Exchange {
    body: RecvStream,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
    is_head: bool,
    uri: Uri,
    push_allowed: bool,
    close_after: bool,
    ctx: ConnCtx,
}

impl H2Exchange {
    /// Resets the stream (after a failure), whether or not a response was started.
    fn abort(&mut self, reason: Reason) {
        match &mut self.send {
            Some(send) => send.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }

    /// The `SendStream` of a response head sent without END_STREAM.
    fn stream(&mut self) -> Option<&mut SendStream<Bytes>> {
        self.send.as_mut()
    }
}

/// Sends `data` on `stream`, waiting for flow-control capacity as needed.
async fn send_with_capacity(stream: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let capacity = loop {
            let available = stream.capacity();
            if available > 0 {
                break available;
            }
            match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(Error::StreamClosed),
            }
        };
        let piece = data.split_to(capacity.min(data.len()));
        stream.send_data(piece, false)?;
    }
    Ok(())
}

fn response(status: StatusCode, headers: HeaderMap) -> Result<Response<()>, Error> {
    let mut resp = Response::builder().status(status).body(())?;
    *resp.headers_mut() = headers;
    Ok(resp)
}

impl Exchange for H2Exchange {
    async fn read_body(&mut self) -> Result<Option<Bytes>, Error> {
        match self.body.data().await {
            Some(Ok(piece)) => {
                let _ = self.body.flow_control().release_capacity(piece.len());
                Ok(Some(piece))
            }
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        }
    }

    async fn send_informational(&mut self, status: StatusCode, headers: HeaderMap) -> Result<(), Error> {
        self.respond.send_informational(response(status, headers)?)?;
        Ok(())
    }

    async fn send_head(&mut self, status: StatusCode, mut headers: HeaderMap, len: BodyLen) -> Result<(), Error> {
        if let BodyLen::Known(n) = len {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        let end = self.is_head || len == BodyLen::Empty;
        let send = self.respond.send_response(response(status, headers)?, end)?;
        if !end {
            self.send = Some(send);
        }
        Ok(())
    }

    async fn send_data(&mut self, data: Bytes) -> Result<(), Error> {
        match self.stream() {
            Some(stream) if !data.is_empty() => send_with_capacity(stream, data).await,
            _ => Ok(()),
        }
    }

    async fn finish(&mut self, trailers: Option<HeaderMap>) -> Result<(), Error> {
        if let Some(mut stream) = self.send.take() {
            match trailers {
                Some(trailers) => stream.send_trailers(trailers)?,
                None => stream.send_data(Bytes::new(), true)?,
            }
        }
        Ok(())
    }

    async fn push(&mut self, path: &'static str, body: &'static [u8]) -> Result<(), Error> {
        if !self.push_allowed {
            return Ok(());
        }
        let uri = Uri::builder()
            .scheme(self.uri.scheme_str().unwrap_or("https"))
            .authority(self.uri.authority().map_or("localhost", |a| a.as_str()))
            .path_and_query(path)
            .build()?;
        let request = Request::builder().method(Method::GET).uri(uri).body(())?;
        match self.respond.push_request(request) {
            Ok(mut pushed) => {
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                let mut stream = pushed.send_response(response(StatusCode::OK, headers)?, false)?;
                // The pushed body is tiny; it is buffered by h2 until the
                // stream window allows it out.
                stream.send_data(Bytes::from_static(body), true)?;
            }
            Err(e) => tracing::debug!(error = %e, "push not possible"),
        }
        Ok(())
    }

    async fn stall(&mut self) -> Result<(), Error> {
        let _ = poll_fn(|cx| match &mut self.send {
            Some(send) => send.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        })
        .await;
        Ok(())
    }

    fn is_head(&self) -> bool {
        self.is_head
    }

    fn close_after(&mut self) {
        self.close_after = true;
    }

    fn reset_connection(&mut self) {
        tracing::debug!("resetting HTTP/2 connection on request");
        self.ctx.reset_connection();
    }
}
