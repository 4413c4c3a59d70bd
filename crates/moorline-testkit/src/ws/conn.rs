//! One connection: optional TLS, the WebSocket upgrade (HTTP/1.1, or HTTP/2 handed to
//! `h2.rs`), then the session (`session.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::client::ClientInfo;
use super::io::{FaultyIo, Io};
use super::session::serve_session;
use super::shared::{ConnParts, Shared};

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
