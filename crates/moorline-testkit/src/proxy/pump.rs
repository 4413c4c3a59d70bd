//! Forwarding of one direction of one connection: read, delay, pace, write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::limiter::{MAX_PIECE, Pacer, due_at, piece_len};
use super::settings::{Allowance, Budget, Direction, Settings};

/// Chunks read but not yet written, per direction (backpressure beyond that).
const QUEUE: usize = 64;

/// How a direction ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The source closed (EOF) and the FIN was passed on.
    Eof,
    /// An I/O error on either side.
    Failed,
    /// The `reset_after` budget is spent.
    BudgetSpent,
}

enum Item {
    Data(Instant, Bytes),
    Eof,
}

/// Everything one direction's pump reads.
pub(crate) struct PumpCtx<'a> {
    pub(crate) dir: Direction,
    pub(crate) settings: watch::Receiver<Settings>,
    pub(crate) budget: &'a Budget,
    pub(crate) counter: Arc<AtomicU64>,
}

/// Waits while the proxy is blackholed (returns at once if the settings are gone).
async fn while_blackholed(settings: &mut watch::Receiver<Settings>) {
    let _ = settings.wait_for(|s| !s.blackhole).await;
}

/// Forwards `src` to `dst` until EOF, an error, or the budget is spent.
pub(crate) async fn pump<R, W>(src: R, dst: W, ctx: PumpCtx<'_>) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = read_side(src, tx, ctx.settings.clone(), ctx.dir);
    let writer = write_side(dst, rx, ctx);
    tokio::pin!(reader, writer);
    // The writer decides the outcome; the reader only fails early on a read error.
    tokio::select! {
        outcome = &mut writer => outcome,
        read_ok = &mut reader => {
            if read_ok { writer.await } else { Outcome::Failed }
        }
    }
}

/// Reads chunks and queues them with their due time; `false` on a read error.
async fn read_side<R: AsyncRead + Unpin>(
    mut src: R,
    tx: mpsc::Sender<Item>,
    mut settings: watch::Receiver<Settings>,
    dir: Direction,
) -> bool {
    loop {
        while_blackholed(&mut settings).await;
        let mut buf = BytesMut::with_capacity(MAX_PIECE);
        match src.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(Item::Eof).await;
                return true;
            }
            Ok(_) => {
                let latency = settings.borrow().latency[dir.index()];
                if tx.send(Item::Data(due_at(Instant::now(), latency), buf.freeze())).await.is_err() {
                    return true;
                }
            }
            Err(e) => {
                tracing::debug!(?dir, error = %e, "proxy read failed");
                return false;
            }
        }
    }
}

/// Writes queued chunks when due, paced and within the budget.
async fn write_side<W: AsyncWrite + Unpin>(mut dst: W, mut rx: mpsc::Receiver<Item>, ctx: PumpCtx<'_>) -> Outcome {
    let PumpCtx { dir, mut settings, budget, counter } = ctx;
    let mut pacer = Pacer::default();
    while let Some(item) = rx.recv().await {
        let (due, mut data) = match item {
            Item::Data(due, data) => (due, data),
            Item::Eof => {
                if let Err(e) = dst.shutdown().await {
                    tracing::debug!(?dir, error = %e, "passing FIN on failed");
                }
                return Outcome::Eof;
            }
        };
        tokio::time::sleep_until(due).await;
        while !data.is_empty() {
            while_blackholed(&mut settings).await;
            let rate = settings.borrow().bandwidth[dir.index()];
            let n = match budget.take(piece_len(rate).min(data.len())) {
                Allowance::Bytes(n) => n,
                Allowance::Exhausted => return Outcome::BudgetSpent,
            };
            let piece = data.split_to(n);
            tokio::time::sleep_until(pacer.reserve(Instant::now(), n, rate)).await;
            if let Err(e) = dst.write_all(&piece).await {
                tracing::debug!(?dir, error = %e, "proxy write failed");
                return Outcome::Failed;
            }
            counter.fetch_add(n as u64, Ordering::SeqCst);
            if budget.exhausted() {
                return Outcome::BudgetSpent;
            }
        }
    }
    Outcome::Eof
}
