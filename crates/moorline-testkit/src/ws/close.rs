//! Failing a WebSocket connection as RFC 6455 (7.1.7, 7.4.1) says: a close frame whose code
//! names the reason (1002 protocol error, 1007 invalid UTF-8, 1009 message too big), then
//! the TCP connection closed, instead of dropping it (which the peer sees as 1006).
//! Shared by the mock server and the Deribit simulator.

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::stream::{SplitSink, SplitStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::net::discard_until_eof;

/// Close code of a server going away (shutdown).
pub(crate) const GOING_AWAY: u16 = 1001;

/// Longest close reason on the wire (125 bytes of payload minus the 2-byte code).
const MAX_REASON: usize = 123;

/// The close frame that answers a read error, or `None` when the error is not the peer's
/// fault or nothing can be sent any more (I/O error, connection closed or reset).
pub(crate) fn close_for(error: &Error) -> Option<CloseFrame> {
    let code = match error {
        Error::Utf8(_) => CloseCode::Invalid,
        Error::Capacity(_) => CloseCode::Size,
        Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::ReceivedAfterClosing
            | ProtocolError::SendAfterClosing,
        ) => return None,
        Error::Protocol(_) => CloseCode::Protocol,
        _ => return None,
    };
    Some(CloseFrame { code, reason: truncate(&error.to_string()).into() })
}

/// `text` cut to at most [`MAX_REASON`] bytes at a character boundary.
fn truncate(text: &str) -> &str {
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Sends `frame`, then ends the connection: FIN, and what the peer still sends is read and
/// discarded until it closes (its close frame included: after a read error the stream
/// cannot be parsed any more), each step bounded by `grace`.
pub(crate) async fn fail<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    stream: SplitStream<WebSocketStream<S>>,
    frame: CloseFrame,
    grace: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(code = u16::from(frame.code), reason = %frame.reason, "failing the WebSocket connection");
    match tokio::time::timeout(grace, sink.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "sending the close frame failed"),
        Err(_) => tracing::debug!("sending the close frame timed out"),
    }
    let Ok(mut ws) = stream.reunite(sink) else { return };
    let io = ws.get_mut();
    let _ = tokio::time::timeout(grace, async {
        if io.shutdown().await.is_ok() {
            discard_until_eof(io).await;
        }
    })
    .await;
}
