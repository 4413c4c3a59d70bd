//! Commands sent by [`crate::Connection`] handles to the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::sync::{mpsc, oneshot};

use super::info::StreamInfo;
use crate::ids::StreamRef;
use crate::wsio::{Message, WsOptions};
use moorline_proto::ws::ClientHandshake;

/// A request body as given by the caller.
#[derive(Debug)]
pub(crate) enum ReqBody {
    /// The whole body is here (possibly empty).
    Full(Bytes),
    /// The body follows through a [`crate::RequestBody`], the last chunk with `fin`.
    Streaming(mpsc::Receiver<(Bytes, bool)>),
}

/// A request to start.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) stream: StreamRef,
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: ReqBody,
}

/// A WebSocket upgrade to start.
#[derive(Debug)]
pub(crate) struct WsUpgrade {
    pub(crate) stream: StreamRef,
    pub(crate) target: String,
    pub(crate) options: WsOptions,
    pub(crate) handshake: ClientHandshake,
}

/// What a handle can ask of the worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Boxed: commands travel by value through the channel, and a WebSocket send (the hot
    /// path) should not copy the room a request takes.
    Request(Box<Request>),
    WsUpgrade(Box<WsUpgrade>),
    /// The message boxed too: this is the fallback path (sends are written by the caller
    /// when they can), and the channel allocates 32 slots per connection up front.
    WsSend(StreamRef, Box<Message>, InChannel),
    Cancel(StreamRef),
    StreamInfo(StreamRef, oneshot::Sender<Option<StreamInfo>>),
    Shutdown,
}

/// Rides with a WebSocket message sent through the command channel. While any is on its way,
/// handles send through the channel too rather than write directly, so a caller's messages
/// keep their order. It is dropped after its message was encoded (or refused), which lets
/// direct sends resume.
#[derive(Debug)]
pub(crate) struct InChannel(Arc<AtomicUsize>);

impl InChannel {
    /// Counts one more message on its way through `count`.
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InChannel {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
