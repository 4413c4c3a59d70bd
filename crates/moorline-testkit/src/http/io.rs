//! Byte-stream plumbing shared by the protocol modules.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::net::DRAIN_AFTER_FIN;
pub(crate) use crate::net::discard_until_eof;

/// A bidirectional byte stream a connection can be served over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A type-erased connection stream (plain TCP, TLS, or [`Rewind`]).
pub(crate) type BoxIo = Box<dyn Io>;

/// A stream that first replays bytes already read from `inner`.
pub(crate) struct Rewind<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    /// Wraps `inner` so that reads first return `prefix`.
    pub(crate) fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Gracefully closes `io`: shuts down the write side (TLS close_notify + FIN),
/// then discards incoming bytes for at most [`DRAIN_AFTER_FIN`] before dropping it.
pub(crate) async fn graceful_close<T: AsyncRead + AsyncWrite + Unpin + ?Sized>(io: &mut T) {
    if let Err(e) = io.shutdown().await {
        tracing::debug!(error = %e, "shutdown during graceful close failed");
        return;
    }
    let _ = tokio::time::timeout(DRAIN_AFTER_FIN, discard_until_eof(io)).await;
}
