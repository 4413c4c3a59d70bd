//! An accept loop whose listening socket can be closed (connections refused by
//! the kernel) and reopened on the same port. Shared by the proxy and the
//! WebSocket mock server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// Pause after a failed `accept` or re-bind.
const BACKOFF: Duration = Duration::from_millis(20);

/// Listen backlog of a re-bound socket.
const BACKLOG: u32 = 1024;

/// Binds a listening socket on `addr` again (with `SO_REUSEADDR`, as the original bind).
fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections and hands them to `on_accept` (with `TCP_NODELAY` set).
///
/// While `refusing` is `true` the listening socket is closed, so connection
/// attempts get `ECONNREFUSED`; when it turns `false` again the same address is
/// bound again. Returns when the sender of `refusing` is dropped.
pub(crate) async fn accept_loop<F>(listener: TcpListener, mut refusing: watch::Receiver<bool>, mut on_accept: F)
where
    F: FnMut(TcpStream, SocketAddr),
{
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address; not accepting");
            return;
        }
    };
    let mut listener = Some(listener);
    loop {
        let refuse = *refusing.borrow_and_update();
        match (refuse, listener.as_ref()) {
            (true, Some(_)) => {
                tracing::debug!(%addr, "refusing connections: listener closed");
                listener = None;
            }
            (false, None) => match rebind(addr) {
                Ok(l) => {
                    tracing::debug!(%addr, "accepting connections again");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "re-binding the listener failed; retrying");
                    tokio::time::sleep(BACKOFF).await;
                }
            },
            (true, None) => {
                if refusing.changed().await.is_err() {
                    return;
                }
            }
            (false, Some(l)) => {
                tokio::select! {
                    accepted = l.accept() => match accepted {
                        Ok((tcp, peer)) => {
                            if let Err(e) = tcp.set_nodelay(true) {
                                tracing::debug!(error = %e, "TCP_NODELAY not set");
                            }
                            on_accept(tcp, peer);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(BACKOFF).await;
                        }
                    },
                    changed = refusing.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}
