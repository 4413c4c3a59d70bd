//! DATA taken off an HTTP/2 stream while its task waits to deliver to the owner.
//!
//! h2 keeps every DATA frame it has received and the task has not taken, and counts the
//! framing overhead of the small ones against a budget of its own (half the connection
//! window): a server that sends many small frames (a WebSocket message or a body chunk per
//! frame, 64 bytes each) to a task that waits for a slow owner exhausts it, and h2 ends the
//! whole connection with `ENHANCE_YOUR_CALM`. So while a delivery waits, the task keeps
//! taking DATA instead, without releasing its flow-control capacity: the server still slows
//! down as the owner does, and what is held never exceeds the stream's window in bytes
//! ([`Http2Options::stream_window`](crate::Http2Options)), whatever the frames' sizes.
//! Frames of [`JOIN_BELOW`] bytes or more are kept as h2 gave them (no copy: a 16 KiB
//! message is not copied once more); runs of smaller ones are joined into one buffer, so
//! their count costs nothing.

use std::collections::VecDeque;
use std::future::Future;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;

/// DATA payloads shorter than this are joined (h2 counts the overhead of frames under 256
/// bytes); longer ones are kept as they are, at most one per 256 bytes of the window.
pub(crate) const JOIN_BELOW: usize = 256;

/// The bytes and the end of a stream's body taken while a delivery waited, not yet handed on.
#[derive(Default)]
pub(crate) struct RecvHold {
    /// The chunks held, in order (before `small`).
    chunks: VecDeque<Bytes>,
    /// The run of small payloads being joined, after `chunks`.
    small: BytesMut,
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
            Some(Ok(data)) if data.len() < JOIN_BELOW => self.small.extend_from_slice(&data),
            Some(Ok(data)) => {
                if !self.small.is_empty() {
                    self.chunks.push_back(self.small.split().freeze());
                }
                self.chunks.push_back(data);
            }
            Some(Err(e)) => self.end = Some(Err(e)),
            None => self.end = Some(Ok(())),
        }
    }

    /// Whether the body's end (or an error) was taken: nothing more will come.
    pub(crate) fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// Whether bytes are held.
    pub(crate) fn has_bytes(&self) -> bool {
        !self.chunks.is_empty() || !self.small.is_empty()
    }

    /// The next chunk held, in order (its capacity still to be released by the caller).
    pub(crate) fn take_bytes(&mut self) -> Option<Bytes> {
        self.chunks.pop_front().or_else(|| (!self.small.is_empty()).then(|| self.small.split().freeze()))
    }

    /// The end held, once every chunk is taken.
    pub(crate) fn take_end(&mut self) -> Option<Result<(), h2::Error>> {
        if self.has_bytes() { None } else { self.end.take() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn small_payloads_are_joined_large_ones_kept_in_order_then_the_end() {
        let mut h = RecvHold::default();
        let big = Bytes::from(vec![7u8; 300]);
        for d in [&b"ab"[..], b"cd"] {
            h.hold(Some(Ok(Bytes::copy_from_slice(d))));
        }
        h.hold(Some(Ok(big.clone())));
        h.hold(Some(Ok(Bytes::from_static(b"ef"))));
        h.hold(None);
        assert!(h.ended());
        assert!(h.take_end().is_none(), "the end comes after the bytes");
        assert_eq!(h.take_bytes().unwrap(), &b"abcd"[..]);
        let kept = h.take_bytes().unwrap();
        assert_eq!(kept.as_ptr(), big.as_ptr(), "a large payload is not copied");
        assert_eq!(h.take_bytes().unwrap(), &b"ef"[..]);
        assert!(h.take_bytes().is_none());
        assert!(matches!(h.take_end(), Some(Ok(()))));
    }
}
