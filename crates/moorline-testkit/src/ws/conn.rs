//! One connection: optional TLS, the WebSocket upgrade, then reading (log +
//! scripted replies) and writing (injected frames, write faults) concurrently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;

use super::client::{ClientId, ClientInfo};
use super::close;
use super::frame::Frame;
use super::io::{FaultyIo, Io, IoControl};
use super::shared::{Command, ConnParts, Shared};

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves one accepted connection until it ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    http2: bool,
    peer: SocketAddr,
    parts: ConnParts,
) {
    let ConnParts { id, tcp, commands, sender, io } = parts;
    let (stream, h2): (Box<dyn Io>, bool) = match tls {
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => {
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                (Box::new(tls), h2)
            }
            Err(e) => {
                tracing::debug!(%id, error = %e, "TLS handshake failed");
                return;
            }
        },
        None => {
            // Cleartext HTTP/2 starts with the preface `PRI * HTTP/2.0`; an
            // HTTP/1.1 upgrade request with `GET`.
            let mut first = [0u8; 1];
            let h2 = http2 && matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == b'P');
            (Box::new(tcp), h2)
        }
    };
    if h2 {
        shared.mark_h2(id);
        super::h2::serve(shared, id, stream, peer, commands).await;
        return;
    }
    let reject = shared.reject_status();
    // The error type is imposed by tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match reject {
            Some(status) => {
                let mut response = ErrorResponse::new(Some(format!("upgrade rejected by test ({status})")));
                *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                Err(response)
            }
            None => {
                let path = req.uri().path_and_query().map_or_else(|| req.uri().to_string(), |p| p.to_string());
                let headers = req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                // Listed before the 101 is written, so a client that has its 101 always finds
                // itself in `clients()` (a failed write ends the task, which unlists it).
                tracing::debug!(%id, %peer, %path, "client connected");
                shared.upgraded_client(ClientInfo { id, peer, path, headers, connected_at: Instant::now() });
                Ok(resp)
            }
        }
    };
    let io_stream = FaultyIo::new(stream, Arc::clone(&io));
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(io_stream, callback, Some(shared.ws_config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%id, error = %e, "WebSocket upgrade failed or was rejected");
            return;
        }
    };
    serve_session(&shared, id, ws, commands, &sender, &io).await;
}

/// Runs one upgraded WebSocket session (over HTTP/1.1 or an HTTP/2 stream)
/// until it ends: logs and answers what it reads, writes what it is told.
///
/// A protocol violation, invalid UTF-8 or an oversized message from the client is answered
/// with a close frame naming it (1002, 1007, 1009), then the connection ends.
pub(crate) async fn serve_session<S>(
    shared: &Shared,
    id: ClientId,
    ws: WebSocketStream<S>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sender: &mpsc::UnboundedSender<Command>,
    io: &IoControl,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let reader = async {
        while let Some(next) = stream.next().await {
            match next {
                Ok(message) => {
                    let Some(frame) = Frame::from_message(message) else { continue };
                    tracing::trace!(%id, %frame, "received");
                    let answer = shared.rules.answer(&frame);
                    shared.log.push(id, frame);
                    if let Some(answer) = answer {
                        let _ = sender.send(Command::Send(answer));
                    }
                }
                Err(e) => {
                    tracing::debug!(%id, error = %e, "read ended");
                    return close::close_for(&e);
                }
            }
        }
        None
    };
    let writer = async {
        while let Some(command) = commands.recv().await {
            let result = match command {
                Command::Send(frame) => sink.send(frame.into_message()).await,
                Command::StallAfter(n) => {
                    io.stall_after(n);
                    Ok(())
                }
                Command::Partial(frame, n) => {
                    io.stall_after(n);
                    sink.send(frame.into_message()).await
                }
                Command::GoAway => Ok(()),
                Command::Close(code, reason) => {
                    if let Err(e) = sink.send(Frame::close(code, reason).into_message()).await {
                        tracing::debug!(%id, error = %e, "sending close failed");
                    }
                    tokio::time::sleep(CLOSE_GRACE).await;
                    return;
                }
            };
            if let Err(e) = result {
                tracing::debug!(%id, error = %e, "write failed");
                return;
            }
        }
    };
    let failed = tokio::select! {
        close = reader => close,
        () = writer => None,
    };
    if let Some(frame) = failed {
        close::fail(sink, stream, frame, CLOSE_GRACE).await;
    }
    tracing::debug!(%id, "connection ended");
}
