//! [`H2Stream`]: an HTTP/2 stream as a byte stream, for WebSockets over HTTP/2 (RFC 8441).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One HTTP/2 stream (its send and receive halves) as an
/// [`AsyncRead`] + [`AsyncWrite`] byte stream, on either side of the connection.
///
/// After an extended CONNECT (RFC 8441) the stream's DATA frames carry the
/// WebSocket bytes: wrap both halves in an `H2Stream` and hand it to any
/// WebSocket implementation that runs over a byte stream, e.g.
/// `tokio_tungstenite::WebSocketStream::from_raw_socket(stream, Role::Client, None)`.
///
/// Received data is released to HTTP/2 flow control as it is read, so a slow
/// reader slows the peer. Shutting down the write side ends the stream
/// (`END_STREAM`), and so does dropping it; a reset stream reads and writes as an I/O error.
///
/// ```no_run
/// # async fn demo(send: h2::SendStream<bytes::Bytes>, recv: h2::RecvStream) {
/// use moorline_testkit::ws::H2Stream;
/// use tokio_tungstenite::{WebSocketStream, tungstenite::protocol::Role};
///
/// let ws = WebSocketStream::from_raw_socket(H2Stream::new(send, recv), Role::Client, None).await;
/// # drop(ws);
/// # }
/// ```
#[derive(Debug)]
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received but not yet read.
    pending: Bytes,
    /// The peer ended its side.
    recv_done: bool,
    /// We ended our side.
    send_done: bool,
}

impl H2Stream {
    /// Joins the two halves of one HTTP/2 stream.
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self { send, recv, pending: Bytes::new(), recv_done: false, send_done: false }
    }
}

fn h2_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"))
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, e)
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        // End our side cleanly: h2 then flushes what is queued before it cleans the
        // stream up (a stream dropped open is reset with CANCEL, which discards queued DATA:
        // a WebSocket close frame just written would be lost).
        if !self.send_done {
            let _ = self.send.send_data(Bytes::new(), true);
        }
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.recv_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Releasing capacity lets the peer send more; it cannot fail
                    // for a length we were just given.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
                None => self.recv_done = true,
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.send_done {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "HTTP/2 stream already ended")));
        }
        self.send.reserve_capacity(buf.len());
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    self.send.send_data(Bytes::copy_from_slice(&buf[..n]), false).map_err(h2_error)?;
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
                None => return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "HTTP/2 stream closed"))),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The HTTP/2 connection task writes queued DATA frames on its own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.send_done {
            self.send_done = true;
            self.send.send_data(Bytes::new(), true).map_err(h2_error)?;
        }
        Poll::Ready(Ok(()))
    }
}
