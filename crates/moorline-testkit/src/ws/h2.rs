//! HTTP/2 connections of the mock server: WebSocket sessions over extended
//! CONNECT (RFC 8441), several per connection, each a client of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use h2::RecvStream;
use h2::ext::Protocol;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::client::{ClientId, ClientInfo};
use super::h2_stream::H2Stream;
use super::io::{FaultyIo, Io};
use super::session::serve_session;
use super::shared::{Command, SessionParts, Shared};

/// Serves HTTP/2 connection `conn_id` (SETTINGS_ENABLE_CONNECT_PROTOCOL on)
/// until it closes; a GOAWAY command starts a graceful shutdown.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    conn_id: ClientId,
    stream: Box<dyn Io>,
    peer: SocketAddr,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut builder = h2::server::Builder::new();
    builder.enable_connect_protocol();
    let mut conn = match builder.handshake::<_, Bytes>(stream).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(id = %conn_id, error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    let mut commands_open = true;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => accept_stream(&shared, conn_id, peer, request, respond),
                Some(Err(e)) => {
                    tracing::debug!(id = %conn_id, error = %e, "HTTP/2 connection failed");
                    return;
                }
                None => {
                    tracing::debug!(id = %conn_id, "HTTP/2 connection closed");
                    return;
                }
            },
            command = commands.recv(), if commands_open => match command {
                Some(Command::GoAway) => {
                    tracing::debug!(id = %conn_id, "sending GOAWAY");
                    conn.graceful_shutdown();
                }
                Some(_) => {}
                None => commands_open = false,
            },
        }
    }
}

/// Answers a request that is not a WebSocket extended CONNECT, or a rejected one.
fn refuse(mut respond: SendResponse<Bytes>, status: StatusCode) {
    let response = Response::builder().status(status).body(());
    if let Ok(response) = response
        && let Err(e) = respond.send_response(response, true)
    {
        tracing::debug!(error = %e, "could not answer an HTTP/2 request");
    }
}

/// Accepts (or refuses) one stream and spawns its WebSocket session.
fn accept_stream(
    shared: &Arc<Shared>,
    conn_id: ClientId,
    peer: SocketAddr,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let websocket = request.method() == Method::CONNECT
        && request.extensions().get::<Protocol>().is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if !websocket {
        tracing::debug!(id = %conn_id, method = %request.method(), "not a WebSocket extended CONNECT");
        return refuse(respond, StatusCode::BAD_REQUEST);
    }
    if request.headers().get("sec-websocket-version").is_none_or(|v| v.as_bytes() != b"13") {
        tracing::debug!(id = %conn_id, "extended CONNECT without sec-websocket-version: 13");
        return refuse(respond, StatusCode::BAD_REQUEST);
    }
    if let Some(status) = shared.reject_status() {
        return refuse(respond, StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE));
    }
    let path = request.uri().path_and_query().map_or_else(|| "/".to_owned(), |p| p.to_string());
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let response = match Response::builder().status(StatusCode::OK).body(()) {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, "could not build a 200 response");
            return;
        }
    };
    let body = request.into_body();
    let session_shared = Arc::clone(shared);
    shared.spawn_session(conn_id, move |parts: SessionParts| async move {
        let SessionParts { id, commands, sender, io } = parts;
        // Listed before the 200 goes out, so a client that has its 200 always finds itself in
        // `clients()` (a failed send ends the task, which unlists it).
        tracing::debug!(%id, conn = %conn_id, %peer, %path, "HTTP/2 WebSocket client connected");
        session_shared.upgraded_client(ClientInfo { id, peer, path, headers, connected_at: Instant::now() });
        let send = match respond.send_response(response, false) {
            Ok(send) => send,
            Err(e) => {
                tracing::debug!(id = %conn_id, error = %e, "could not accept an extended CONNECT");
                return;
            }
        };
        let stream = FaultyIo::new(Box::new(H2Stream::new(send, body)), Arc::clone(&io));
        let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(session_shared.ws_config)).await;
        serve_session(&session_shared, id, ws, commands, &sender, &io).await;
    });
}
