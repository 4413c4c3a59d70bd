//! One connection: optional TLS, the WebSocket upgrade (only on [`WS_PATH`]), then reading
//! requests into the venue and writing its deliveries, with the heartbeat timer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::shared::Shared;
use super::time::Now;
use super::venue::{ConnId, Outgoing};
use crate::ws::close;
use crate::ws::io::{FaultyIo, Io, IoControl};

/// The only path that upgrades (anything else gets `404`).
pub const WS_PATH: &str = "/ws/api/v2";

/// Largest accepted message or frame; bigger ones end the connection (close 1009).
/// (Requests over 32 KiB but under this are answered `-32600 request entity too large`.)
const MAX_MESSAGE: usize = 1 << 20;

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Ends the connection's session when the task ends, however it ends (returned, or
/// aborted by a FIN/RST/half-open fault): the venue must see every disconnect.
struct Session {
    shared: Arc<Shared>,
    conn: ConnId,
    upgraded: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.disconnect(self.conn, self.upgraded);
        tracing::debug!(conn = self.conn, "connection ended");
    }
}

/// Serves one accepted TCP connection until it ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    conn: ConnId,
    io: Arc<IoControl>,
) {
    let mut session = Session { shared: Arc::clone(&shared), conn, upgraded: false };
    let stream: Box<dyn Io> = match tls {
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => Box::new(tls),
            Err(e) => {
                tracing::debug!(conn, %peer, error = %e, "TLS handshake failed");
                return;
            }
        },
        None => Box::new(tcp),
    };
    // The error type is imposed by tungstenite's `Callback`.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == WS_PATH {
            Ok(resp)
        } else {
            let mut response = ErrorResponse::new(Some(format!("not found; the API is at {WS_PATH}")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            Err(response)
        }
    };
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let io_stream = FaultyIo::new(stream, io);
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(io_stream, callback, Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(conn, %peer, error = %e, "WebSocket upgrade failed or was rejected");
            return;
        }
    };
    let (outbox, mut deliveries) = mpsc::unbounded_channel();
    shared.connect(conn, outbox);
    session.upgraded = true;
    tracing::debug!(conn, %peer, "client connected");
    let (mut sink, mut stream) = ws.split();
    let mut failed = None;
    loop {
        let deadline = shared.deadline(conn);
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => shared.on_text(conn, text.as_str(), Now::system()),
                Some(Ok(Message::Binary(_))) => shared.on_binary(conn),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => shared.on_control_frame(conn),
                Some(Err(e)) => {
                    tracing::debug!(conn, error = %e, "read failed");
                    failed = close::close_for(&e);
                    break;
                }
            },
            delivery = deliveries.recv() => match delivery {
                Some(Outgoing::Text(text)) => {
                    if let Err(e) = sink.send(Message::text(text)).await {
                        tracing::debug!(conn, error = %e, "write failed");
                        break;
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    if sink.send(Message::Close(Some(frame))).await.is_ok() {
                        // Wait (briefly) for the client's close frame, then drop the TCP connection.
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while let Some(Ok(m)) = stream.next().await {
                                if m.is_close() {
                                    break;
                                }
                            }
                        })
                        .await;
                    }
                    break;
                }
                None => break,
            },
            () = timer => shared.on_timer(conn),
        }
    }
    match failed {
        // A protocol violation, invalid UTF-8 or an oversized message: say which (1002, 1007, 1009).
        Some(frame) => close::fail(sink, stream, frame, CLOSE_GRACE).await,
        None => {
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        }
    }
}
