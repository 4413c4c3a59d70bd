//! Raw clients shared by the test server's tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moorline_testkit::http::TestServer;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Bound for every test body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `fut` with [`TEST_TIMEOUT`].
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, fut).await.expect("test timed out")
}

/// Writes `request` on a fresh connection and reads until the server closes.
pub async fn h1_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    out
}

/// Decodes a chunked body; returns (data, trailer section).
pub fn dechunk(mut body: &[u8]) -> (Vec<u8>, String) {
    let mut data = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return (data, String::from_utf8(body.to_vec()).unwrap());
        }
        data.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

/// Splits an HTTP/1.1 response into head and body at the first blank line.
pub fn split_head(response: &[u8]) -> (String, Vec<u8>) {
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of head");
    (String::from_utf8(response[..at + 4].to_vec()).unwrap(), response[at + 4..].to_vec())
}

/// TLS-connects to the server for `localhost` with the given ALPN.
pub async fn tls_connect(server: &TestServer, alpn: &[&str]) -> TlsStream<TcpStream> {
    let config = server.client_tls_config(alpn).unwrap();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// An h2 client on top of `io`, with its connection driven in the background.
pub async fn h2_client<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Sends a bodyless GET over h2 and returns (status, body, trailers).
pub async fn h2_get(
    client: &mut h2::client::SendRequest<Bytes>,
    authority: &str,
    path: &str,
) -> Result<(http::StatusCode, Vec<u8>, Option<http::HeaderMap>), h2::Error> {
    let request = http::Request::get(format!("https://{authority}{path}")).body(()).unwrap();
    let mut ready = client.clone().ready().await?;
    let (response, _) = ready.send_request(request, true)?;
    let response = response.await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(piece) = body.data().await {
        let piece = piece?;
        let _ = body.flow_control().release_capacity(piece.len());
        data.extend_from_slice(&piece);
    }
    let trailers = body.trailers().await?;
    Ok((status, data, trailers))
}

/// Encodes one raw HTTP/2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads one raw HTTP/2 frame: (type, flags, stream, payload); `None` on EOF.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}
