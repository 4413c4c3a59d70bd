//! [`FaultyIo`]: the byte stream under tungstenite, able to stall and drip writes.

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::sync::lock;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A bidirectional byte stream a connection is served over (TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

#[derive(Debug, Default, Clone, Copy)]
struct WriteFaults {
    /// Bytes still allowed out; `None` = unlimited, `Some(0)` = stalled for good.
    budget: Option<usize>,
    /// Delay between single-byte writes.
    drip: Option<Duration>,
}

/// The write faults of one connection, changed from outside its task.
#[derive(Debug, Default)]
pub(crate) struct IoControl {
    faults: Mutex<WriteFaults>,
}

impl IoControl {
    fn lock(&self) -> MutexGuard<'_, WriteFaults> {
        lock(&self.faults)
    }

    /// Lets `bytes` more bytes out, then stalls writes for good.
    pub(crate) fn stall_after(&self, bytes: usize) {
        self.lock().budget = Some(bytes);
    }

    /// Writes one byte at a time with `delay` in between from now on.
    pub(crate) fn drip(&self, delay: Duration) {
        self.lock().drip = Some(delay);
    }

    fn snapshot(&self) -> WriteFaults {
        *self.lock()
    }

    fn consumed(&self, n: usize) {
        if let Some(b) = self.lock().budget.as_mut() {
            *b = b.saturating_sub(n);
        }
    }
}

/// Wraps the connection's stream; reads pass through, writes obey [`IoControl`].
///
/// A stalled write returns `Pending` forever (nothing will wake it): the
/// writing side of the connection hangs while reads go on.
pub(crate) struct FaultyIo {
    inner: Box<dyn Io>,
    control: std::sync::Arc<IoControl>,
    /// Armed after a dripped byte: no write before it fires.
    next_drip: Option<Pin<Box<Sleep>>>,
}

impl FaultyIo {
    pub(crate) fn new(inner: Box<dyn Io>, control: std::sync::Arc<IoControl>) -> Self {
        Self { inner, control, next_drip: None }
    }
}

impl AsyncRead for FaultyIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultyIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let faults = self.control.snapshot();
        let mut max = buf.len();
        if let Some(budget) = faults.budget {
            if budget == 0 {
                tracing::trace!("write stalled");
                return Poll::Pending;
            }
            max = max.min(budget);
        }
        if faults.drip.is_some() {
            if let Some(sleep) = self.next_drip.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.next_drip = None;
            }
            max = 1;
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..max]))?;
        self.control.consumed(n);
        if let Some(delay) = faults.drip {
            self.next_drip = Some(Box::pin(tokio::time::sleep(delay)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
