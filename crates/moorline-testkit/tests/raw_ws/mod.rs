//! A raw WebSocket client over TCP: the handshake by hand and frames as bytes, so tests can
//! send what no library would (reserved bits, invalid UTF-8, oversized lengths) and see the
//! server's close frame exactly as it is on the wire.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on each wait for the server.
const WAIT: Duration = Duration::from_secs(5);

/// Connects to `addr`, upgrades on `path` and returns the stream positioned after the `101` head.
pub async fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tokio::time::timeout(WAIT, tcp.read_u8()).await.expect("no 101").unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// The header of a masked client frame: `first` byte (FIN, RSV, opcode), a payload of `len`
/// bytes (which need not follow), and the masking key `[1, 2, 3, 4]`.
pub fn client_header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&[1, 2, 3, 4]);
    out
}

/// A whole masked client frame.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = client_header(first, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ [1u8, 2, 3, 4][i % 4]));
    out
}

/// Reads server frames until a close frame and returns its code (`None`: empty payload, which
/// the peer reports as 1005); `Err` if the connection ends first (the peer sees 1006).
pub async fn close_code(tcp: &mut TcpStream) -> Result<Option<u16>, String> {
    loop {
        let mut head = [0u8; 2];
        match tokio::time::timeout(WAIT, tcp.read_exact(&mut head)).await {
            Err(_) => return Err("no close frame within 5 s".into()),
            Ok(Err(e)) => return Err(format!("connection ended without a close frame (1006): {e}")),
            Ok(Ok(_)) => {}
        }
        let len = match head[1] & 0x7F {
            126 => u64::from(tcp.read_u16().await.map_err(|e| e.to_string())?),
            127 => tcp.read_u64().await.map_err(|e| e.to_string())?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        tcp.read_exact(&mut payload).await.map_err(|e| e.to_string())?;
        if head[0] & 0x0F == 0x8 {
            return Ok((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])));
        }
    }
}

/// Asserts that the server ends the TCP connection (EOF or reset) after its close frame.
pub async fn assert_ends(tcp: &mut TcpStream) {
    let mut scratch = [0u8; 4096];
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match tcp.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server kept the connection open after its close frame");
}
