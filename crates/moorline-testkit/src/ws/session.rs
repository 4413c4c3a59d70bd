//! One upgraded WebSocket session, whichever carrier it runs on (HTTP/1.1: `conn.rs`; an
//! HTTP/2 stream: `h2.rs`): reading (log + scripted replies) and writing (injected frames,
//! write faults) concurrently.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;

use super::client::ClientId;
use super::close;
use super::frame::Frame;
use super::io::IoControl;
use super::shared::{Command, Shared};

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs one upgraded WebSocket session (over HTTP/1.1 or an HTTP/2 stream)
/// until it ends: logs and answers what it reads, writes what it is told.
///
/// A protocol violation, invalid UTF-8 or an oversized message from the client is answered
/// with a close frame naming it (1002, 1007, 1009), then the connection ends.
pub(crate) async fn serve_session<S>(
    shared: &Shared,
    id: ClientId,
    ws: WebSocketStream<S>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sender: &mpsc::UnboundedSender<Command>,
    io: &IoControl,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let reader = async {
        while let Some(next) = stream.next().await {
            match next {
                Ok(message) => {
                    let Some(frame) = Frame::from_message(message) else { continue };
                    tracing::trace!(%id, %frame, "received");
                    let answer = shared.rules.answer(&frame);
                    shared.log.push(id, frame);
                    if let Some(answer) = answer {
                        let _ = sender.send(Command::Send(answer));
                    }
                }
                Err(e) => {
                    tracing::debug!(%id, error = %e, "read ended");
                    return close::close_for(&e);
                }
            }
        }
        None
    };
    let writer = async {
        while let Some(command) = commands.recv().await {
            let result = match command {
                Command::Send(frame) => sink.send(frame.into_message()).await,
                Command::StallAfter(n) => {
                    io.stall_after(n);
                    Ok(())
                }
                Command::Partial(frame, n) => {
                    io.stall_after(n);
                    sink.send(frame.into_message()).await
                }
                Command::GoAway => Ok(()),
                Command::Close(code, reason) => {
                    if let Err(e) = sink.send(Frame::close(code, reason).into_message()).await {
                        tracing::debug!(%id, error = %e, "sending close failed");
                    }
                    tokio::time::sleep(CLOSE_GRACE).await;
                    return;
                }
            };
            if let Err(e) = result {
                tracing::debug!(%id, error = %e, "write failed");
                return;
            }
        }
    };
    let failed = tokio::select! {
        close = reader => close,
        () = writer => None,
    };
    if let Some(frame) = failed {
        close::fail(sink, stream, frame, CLOSE_GRACE).await;
    }
    tracing::debug!(%id, "connection ended");
}
