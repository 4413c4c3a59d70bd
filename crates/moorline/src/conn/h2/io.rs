//! The h2 IO task: the transport seen through a frame watcher ([`WatchedIo`]), and the
//! handshake that starts the h2 connection task ([`handshake`], [`H2Parts`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::client::SendRequest;
use moorline_proto::h2watch::FrameWatcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use super::goaway::GoAwaySlot;
use crate::dial::BoxIo;
use crate::error::{ConnectError, Http2Failure, Http2HandshakeFailure};
use crate::options::Http2Options;
use crate::sync::lock;

/// The transport seen through a [`FrameWatcher`], so that GOAWAY's last-stream-id is known.
pub(crate) struct WatchedIo {
    pub(super) inner: BoxIo,
    pub(super) watcher: FrameWatcher,
    pub(super) slot: Arc<GoAwaySlot>,
    /// SETTINGS frames already signalled through `slot.settings`.
    pub(super) settings_signalled: u64,
    /// The HEADERS frame count at which the read path next lets other tasks run.
    pub(super) yield_at: u64,
    /// The small DATA overhead at which it does (see [`SMALL_DATA_PER_SLICE`]).
    pub(super) yield_at_data: u64,
    /// The next read returns `Pending` first, until this yield is over: tokio's own
    /// (`yield_now`), which lets the other tasks run before this one again (a task that
    /// just wakes itself may run again at once, from its worker's LIFO slot).
    pub(super) yielding: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

/// After this many HEADERS frames, the connection task lets other tasks run before it
/// reads on. h2 keeps every 1xx HEADERS of a stream until the stream task polls it (they are
/// not flow-controlled), and it parses a whole scheduling slice of reads (128 reads,
/// about 1 MiB of 14-byte 1xx frames, some 75 000 responses) in one go; yielding lets the
/// stream task take them (and refuse them past the 1xx limit) as they come. A response has
/// one or two HEADERS frames: ordinary traffic never comes near.
pub(super) const HEADERS_PER_SLICE: u64 = 64;

/// After this much framing overhead of small DATA frames (as h2 counts it: 256 less the
/// payload, per frame under 256 bytes), the connection task lets other tasks run before it
/// reads on, for the same reason: h2 charges the small frames it holds against a budget
/// (at least 25,600, half the connection window by default) and ends the connection with
/// `ENHANCE_YOUR_CALM` once they exhaust it, and a whole slice of reads of 64-byte
/// WebSocket messages is far more than that. Yielding every 8,192 (some 40 such frames)
/// lets the stream tasks take them as they come (they always do, see `RecvHold`).
pub(super) const SMALL_DATA_PER_SLICE: u64 = 8192;

impl AsyncRead for WatchedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // h2 reads again only once it has handled every whole frame it holds, and it applies
        // a peer's SETTINGS before it handles the next frame: so SETTINGS frames read before
        // this call are in force now.
        let settings = self.watcher.settings_seen();
        if settings != self.settings_signalled {
            self.settings_signalled = settings;
            self.slot.settings.notify_one();
        }
        if let Some(y) = &mut self.yielding {
            if y.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.yielding = None;
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &res
            && crate::dial::is_tls_error(e)
        {
            *lock(&self.slot.tls) = Some(crate::dial::tls_failure(e));
        }
        if let Poll::Ready(Ok(())) = res {
            let this = &mut *self;
            let goaway = this.watcher.observe(&buf.filled()[before..]);
            if let Some(g) = goaway {
                *lock(&this.slot.last) = Some(g);
                this.slot.notify.notify_one();
            }
            if this.watcher.headers_seen() >= this.yield_at {
                this.yield_at = this.watcher.headers_seen() + HEADERS_PER_SLICE;
                this.yield_soon();
            }
            if this.watcher.small_data_overhead() >= this.yield_at_data {
                this.yield_at_data = this.watcher.small_data_overhead() + SMALL_DATA_PER_SLICE;
                this.yield_soon();
            }
        }
        res
    }
}

impl WatchedIo {
    /// The next read lets the other tasks run first.
    fn yield_soon(&mut self) {
        if self.yielding.is_none() {
            self.yielding = Some(Box::pin(tokio::task::yield_now()));
        }
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An HTTP/2 connection after the client preface was sent.
pub(crate) struct H2Parts {
    pub(super) send: SendRequest<Bytes>,
    pub(super) conn_task: TaskGuard<Result<(), h2::Error>>,
    pub(super) ping: Option<h2::PingPong>,
    pub(super) goaway: Arc<GoAwaySlot>,
}

/// Start HTTP/2 on a connected transport: send our preface, then wait (at most `timeout`)
/// until h2 has applied the server's first frame, its SETTINGS, so that `Up` means the peer
/// really speaks HTTP/2 and its limits (MAX_CONCURRENT_STREAMS) are known. Over TLS 1.3 this
/// is also where a server that refuses our client certificate says so.
pub(crate) async fn handshake(
    io: BoxIo,
    opts: &Http2Options,
    timeout: std::time::Duration,
    server_name: String,
) -> Result<H2Parts, ConnectError> {
    let goaway = Arc::new(GoAwaySlot::default());
    let io = WatchedIo {
        inner: io,
        watcher: FrameWatcher::new(),
        slot: goaway.clone(),
        yield_at: HEADERS_PER_SLICE,
        yield_at_data: SMALL_DATA_PER_SLICE,
        yielding: None,
        settings_signalled: 0,
    };
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(opts.stream_window)
        .initial_connection_window_size(opts.connection_window)
        .data_frame_budget(opts.small_frame_budget)
        .max_header_list_size(opts.max_header_list_size)
        .enable_push(opts.enable_push)
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Http2Handshake(Http2HandshakeFailure::Http2(Http2Failure::new(e))))?;
    let mut conn = conn;
    let ping = conn.ping_pong();
    let mut conn_task = TaskGuard(tokio::spawn(conn));
    tokio::select! {
        () = goaway.settings.notified() => Ok(H2Parts { send, conn_task, ping, goaway }),
        r = &mut conn_task.0 => Err(match r {
            Ok(Err(e)) => match lock(&goaway.tls).take() {
                Some(cause) => ConnectError::Tls { server_name, cause },
                None => ConnectError::Http2Handshake(Http2HandshakeFailure::Http2(Http2Failure::new(e))),
            },
            Ok(Ok(())) => ConnectError::Http2Handshake(Http2HandshakeFailure::ClosedBeforeSettings),
            Err(e) => ConnectError::Http2Handshake(Http2HandshakeFailure::TaskFailed { panicked: e.is_panic() }),
        }),
        () = tokio::time::sleep(timeout) => Err(ConnectError::Http2Handshake(Http2HandshakeFailure::NoSettings(timeout))),
    }
}

/// Aborts the task when dropped.
pub(super) struct TaskGuard<T>(pub(super) JoinHandle<T>);
impl<T> Drop for TaskGuard<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
