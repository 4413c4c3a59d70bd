//! DATA taken off an HTTP/2 stream while its task waits to deliver to the owner.
//!
//! h2 keeps every DATA frame it has received and the task has not taken, and counts the
//! framing overhead of the small ones against a budget of its own (half the connection
//! window): a server that sends many small frames (a WebSocket message or a body chunk per
//! frame, 64 bytes each) to a task that waits for a slow owner exhausts it, and h2 ends the
//! whole connection with `ENHANCE_YOUR_CALM`. So while a delivery waits, the task keeps
//! taking DATA into one contiguous buffer instead, without releasing its flow-control
//! capacity: the server still slows down as the owner does, and what is held never exceeds
//! the stream's window in bytes ([`Http2Options::stream_window`](crate::Http2Options)),
//! whatever the frames' sizes.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;

/// The bytes and the end of a stream's body taken while a delivery waited, not yet handed on.
#[derive(Default)]
pub(crate) struct RecvHold {
    held: BytesMut,
    /// How the body ended while held (`Ok`: its end, `Err`: an h2 error): nothing more is
    /// taken once it did.
    end: Option<Result<(), h2::Error>>,
}

impl RecvHold {
    /// Runs `delivery` to its end, taking the DATA that comes meanwhile into the hold (with
    /// its flow-control capacity kept).
    pub(crate) async fn during<T>(&mut self, body: &mut RecvStream, delivery: impl Future<Output = T>) -> T {
        tokio::pin!(delivery);
        loop {
            tokio::select! {
                biased;
                out = &mut delivery => return out,
                d = body.data(), if self.end.is_none() => self.hold(d),
            }
        }
    }

    /// Holds what [`RecvStream::data`] returned (its capacity kept).
    pub(crate) fn hold(&mut self, data: Option<Result<Bytes, h2::Error>>) {
        match data {
            Some(Ok(data)) => {
                self.held.extend_from_slice(&data);
            }
            Some(Err(e)) => self.end = Some(Err(e)),
            None => self.end = Some(Ok(())),
        }
    }

    /// Whether the body's end (or an error) was taken: nothing more will come.
    pub(crate) fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// The bytes held, in one chunk (their capacity still to be released by the caller).
    pub(crate) fn take_bytes(&mut self) -> Option<Bytes> {
        (!self.held.is_empty()).then(|| self.held.split().freeze())
    }

    /// The end held, once the bytes are taken.
    pub(crate) fn take_end(&mut self) -> Option<Result<(), h2::Error>> {
        if self.held.is_empty() { self.end.take() } else { None }
    }
}
