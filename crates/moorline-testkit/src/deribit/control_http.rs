//! The HTTP control endpoint (`127.0.0.1`, plain HTTP/1.1, one request per connection):
//! `GET /connections` lists the open connections; `POST /hook` applies the [`Hook`] in the
//! JSON body and answers its JSON result (`200`), or `{"error": ...}` with `400` (not a
//! hook), `404` (unknown route) or `422` (the hook could not be applied).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::hook_spec::Hook;
use super::shared::Shared;

/// Largest request head accepted, in bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;
/// How long the rest of a rejected request is read and discarded after the answer.
const DRAIN: Duration = Duration::from_secs(1);
/// How long one control request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `127.0.0.1:port` and serves the control endpoint until the task is aborted.
pub(crate) async fn serve(shared: Arc<Shared>, port: u16) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = crate::net::bind_loopback(port).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        if tokio::time::timeout(REQUEST_TIMEOUT, handle(&shared, tcp)).await.is_err() {
                            tracing::debug!("control request timed out");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });
    tracing::debug!(%addr, "Deribit simulator control endpoint started");
    Ok((addr, task))
}

async fn handle(shared: &Shared, mut tcp: TcpStream) {
    let (status, body) = match read_request(&mut tcp).await {
        Ok((method, path, body)) => route(shared, &method, &path, &body),
        Err((status, reason)) => (status, json!({ "error": reason })),
    };
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Unprocessable Entity",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = tcp.write_all(response.as_bytes()).await {
        tracing::debug!(error = %e, "control response not written");
    }
    // FIN, then read what the client still sends (a rejected flood), so the close is not a RST.
    if tcp.shutdown().await.is_ok() {
        let _ = tokio::time::timeout(DRAIN, crate::net::discard_until_eof(&mut tcp)).await;
    }
}

fn route(shared: &Shared, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    match (method, path) {
        ("GET", "/connections") => (200, json!(shared.connections_info())),
        ("POST", "/hook") => match serde_json::from_slice::<Hook>(body) {
            Ok(hook) => match shared.apply(hook) {
                Ok(result) => (200, result),
                Err(e) => (422, json!({ "error": e.to_string() })),
            },
            Err(e) => (400, json!({ "error": format!("not a hook: {e}") })),
        },
        _ => (404, json!({ "error": "routes: GET /connections, POST /hook" })),
    }
}

/// Reads one request: method, path and body (by `content-length`), within the ceilings.
async fn read_request(tcp: &mut TcpStream) -> Result<(String, String, Vec<u8>), (u16, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(|e| (400, e.to_string()))?;
        if n == 0 {
            return Err((400, "connection closed before the request was complete".to_owned()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let method = request.method.unwrap_or("").to_owned();
                let path = request.path.unwrap_or("").to_owned();
                let length = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()))
                    .unwrap_or(Some(0))
                    .ok_or((400, "bad content-length".to_owned()))?;
                if length > MAX_BODY {
                    return Err((413, format!("bodies are at most {MAX_BODY} bytes")));
                }
                let mut body = buf.split_off(head);
                while body.len() < length {
                    let n = tcp.read(&mut chunk).await.map_err(|e| (400, e.to_string()))?;
                    if n == 0 {
                        return Err((400, "connection closed before the body was complete".to_owned()));
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
                return Ok((method, path, body));
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err((413, format!("request heads are at most {MAX_HEAD} bytes"))),
            Err(e) => return Err((400, format!("not an HTTP request: {e}"))),
        }
    }
}
