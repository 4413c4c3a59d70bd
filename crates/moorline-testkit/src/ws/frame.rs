//! [`Frame`]: a WebSocket message as the mock server sends and records it.

use std::fmt;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Longest text shown for one frame in error messages and `Debug` output.
const SHOWN_CHARS: usize = 200;

/// One WebSocket message (data or control frame).
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its payload (at most 125 bytes on the wire).
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
    /// A close frame: `None` for an empty close payload, else the code and reason.
    Close(Option<(u16, String)>),
}

impl Frame {
    /// A text frame.
    pub fn text(text: impl Into<String>) -> Self {
        Frame::Text(text.into())
    }

    /// A binary frame.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Frame::Binary(data.into())
    }

    /// A close frame with `code` and `reason`.
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Frame::Close(Some((code, reason.into())))
    }

    /// The text of a text frame; `None` for every other kind.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The kind of frame: `"text"`, `"binary"`, `"ping"`, `"pong"` or `"close"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Text(_) => "text",
            Frame::Binary(_) => "binary",
            Frame::Ping(_) => "ping",
            Frame::Pong(_) => "pong",
            Frame::Close(_) => "close",
        }
    }

    /// Converts a tungstenite message; `None` for raw frames (never produced by reads).
    pub(crate) fn from_message(message: Message) -> Option<Self> {
        Some(match message {
            Message::Text(t) => Frame::Text(t.as_str().to_owned()),
            Message::Binary(b) => Frame::Binary(b),
            Message::Ping(b) => Frame::Ping(b),
            Message::Pong(b) => Frame::Pong(b),
            Message::Close(c) => Frame::Close(c.map(|c| (u16::from(c.code), c.reason.as_str().to_owned()))),
            Message::Frame(_) => return None,
        })
    }

    /// Converts to a tungstenite message.
    pub(crate) fn into_message(self) -> Message {
        match self {
            Frame::Text(t) => Message::text(t),
            Frame::Binary(b) => Message::Binary(b),
            Frame::Ping(b) => Message::Ping(b),
            Frame::Pong(b) => Message::Pong(b),
            Frame::Close(c) => {
                Message::Close(c.map(|(code, reason)| CloseFrame { code: code.into(), reason: reason.into() }))
            }
        }
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Short human-readable form: kind plus (truncated) payload.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Text(t) => {
                let shown: String = t.chars().take(SHOWN_CHARS).collect();
                let more = if shown.len() < t.len() { "..." } else { "" };
                write!(f, "text {shown:?}{more}")
            }
            Frame::Binary(b) => write!(f, "binary ({} bytes)", b.len()),
            Frame::Ping(b) => write!(f, "ping ({} bytes)", b.len()),
            Frame::Pong(b) => write!(f, "pong ({} bytes)", b.len()),
            Frame::Close(None) => write!(f, "close (no payload)"),
            Frame::Close(Some((code, reason))) => write!(f, "close {code} {reason:?}"),
        }
    }
}
