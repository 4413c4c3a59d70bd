//! Socket plumbing shared by the servers: binding the loopback listener (with the address
//! in the error), duplicating an accepted socket so it can be closed or reset from outside
//! its task, FIN with a drain, RST.

use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;

/// How long a connection closed with FIN keeps reading (and discarding), so that unread
/// peer bytes do not turn the close into a RST.
pub(crate) const DRAIN_AFTER_FIN: Duration = Duration::from_millis(1000);

/// Binds a listener on `127.0.0.1:port` (0: an ephemeral port). The error names the
/// address ("cannot listen on 127.0.0.1:8080: Address already in use").
pub(crate) async fn bind_loopback(port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr).await.map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Splits an accepted socket into a duplicate (same kernel socket, other descriptor) for
/// control from outside, and the stream the connection task owns.
pub(crate) fn duplicate(tcp: TcpStream) -> io::Result<(std::net::TcpStream, TcpStream)> {
    let std = tcp.into_std()?;
    let dup = std.try_clone()?;
    Ok((dup, TcpStream::from_std(std)?))
}

/// Sends FIN on `socket` now, then discards what arrives for at most [`DRAIN_AFTER_FIN`]
/// (on `runtime`) before closing the descriptor.
pub(crate) fn fin_and_drain(runtime: &Handle, socket: std::net::TcpStream) {
    if let Err(e) = socket.shutdown(Shutdown::Write) {
        tracing::debug!(error = %e, "shutdown(write) failed");
    }
    runtime.spawn(async move {
        if let Ok(mut tcp) = TcpStream::from_std(socket) {
            let _ = tokio::time::timeout(DRAIN_AFTER_FIN, discard_until_eof(&mut tcp)).await;
        }
    });
}

/// Sets `SO_LINGER` 0 and closes this descriptor: once the connection's other descriptor
/// is gone too (its task aborted), the kernel sends RST.
pub(crate) fn reset(socket: std::net::TcpStream) {
    let socket = TcpSocket::from_std_stream(socket);
    if let Err(e) = socket.set_zero_linger() {
        tracing::debug!(error = %e, "setting SO_LINGER 0 failed");
    }
}

/// Reads and discards everything until EOF or an error.
pub(crate) async fn discard_until_eof<R: AsyncRead + Unpin + ?Sized>(io: &mut R) {
    let mut scratch = [0u8; 4096];
    loop {
        match io.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
