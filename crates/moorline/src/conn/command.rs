//! Commands sent by [`crate::Connection`] handles to the worker.

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::sync::{mpsc, oneshot};

use super::info::StreamInfo;
use crate::event::StreamRef;

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

/// What a handle can ask of the worker.
#[derive(Debug)]
pub(crate) enum Command {
    Request(Request),
    Cancel(StreamRef),
    StreamInfo(StreamRef, oneshot::Sender<Option<StreamInfo>>),
    Shutdown,
}
