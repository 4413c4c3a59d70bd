//! Redundant mode's delivery: a data message goes through the shared [`Dedup`] and, when it
//! is to be delivered, into the merged queue, under the one lock of the dedup state, so the
//! order the state records is the order the user reads. Also how the members' answers to one
//! subscribe call make the pool's.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::dedup::{Dedup, DedupStats, Verdict};
use super::events::{PoolEvent, PoolSender, TrySend};
use super::sequence::SequenceExtractor;
use crate::event::{Channel, ClientEvent, Payload, Refused};
use crate::queue::ReaderGone;
use crate::{ClientError, SubscribeOutcome};

/// The dedup state and the extractor, shared by the members' forwarders.
pub(crate) struct Redundancy {
    dedup: Mutex<Dedup>,
    extractor: Arc<dyn SequenceExtractor>,
}

impl Redundancy {
    pub(crate) fn new(extractor: Arc<dyn SequenceExtractor>, dedup: Dedup) -> Self {
        Self { dedup: Mutex::new(dedup), extractor }
    }

    fn lock(&self) -> MutexGuard<'_, Dedup> {
        // Plain data behind the lock: a panic elsewhere leaves it usable.
        self.dedup.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn track(&self, channel: &Channel) {
        self.lock().track(channel.clone());
    }

    pub(crate) fn untrack(&self, channel: &str) {
        self.lock().untrack(channel);
    }

    /// `member`'s stream was broken (disconnected, or its own queue dropped messages).
    pub(crate) fn end_session(&self, member: usize) {
        self.lock().end_session(member);
    }

    pub(crate) fn stats(&self) -> DedupStats {
        self.lock().stats()
    }

    /// Delivers `member`'s data message once: the key is read outside the lock; then, with
    /// room in the queue (waited for without the lock), the verdict and the queueing happen
    /// under it, and the verdict is recorded only once the message is queued.
    pub(crate) async fn deliver(
        &self,
        member: usize,
        tx: &PoolSender,
        data: Payload,
        channel: Option<Channel>,
    ) -> Result<(), ReaderGone> {
        let key = channel.as_deref().and_then(|c| self.extractor.key(c, &data));
        let raw: Bytes = match &data {
            Payload::Text(t) => t.clone().into_bytes(),
            Payload::Binary(b) => b.clone(),
        };
        let name = channel.clone();
        let mut event = PoolEvent { member, event: ClientEvent::Message { data, channel }, key, late: false };
        loop {
            tx.room(member, event.queued_bytes()).await?;
            let mut dedup = self.lock();
            let probe = dedup.probe(member, name.as_deref(), key, &raw);
            if !probe.verdict().deliver() {
                dedup.commit(name.as_deref(), &probe);
                return Ok(());
            }
            event.late = probe.verdict() == Verdict::Late;
            match tx.try_send(event) {
                Ok(()) => {
                    dedup.commit(name.as_deref(), &probe);
                    return Ok(());
                }
                // Another member's message took the room: wait again (the verdict may change).
                Err(TrySend::Full(back)) => event = *back,
                Err(TrySend::ReaderGone) => return Err(ReaderGone),
            }
        }
    }
}

/// The pool's answer to a redundant subscribe from each member's: a channel is confirmed if a
/// member confirmed it (the others refusing it is logged: that channel is not redundant), and
/// refused only if every member refused it or failed. Returns the outcome and the channels
/// to give up (refused everywhere).
pub(crate) fn merge_replicated(
    asked: &[Channel],
    results: Vec<(usize, Result<SubscribeOutcome, ClientError>)>,
) -> (SubscribeOutcome, Vec<Channel>) {
    let mut out = SubscribeOutcome::default();
    let mut given_up = Vec::new();
    for channel in asked {
        let mut confirmed_by = 0;
        let mut reasons: Vec<String> = Vec::new();
        for (member, result) in &results {
            match result {
                Ok(o) if o.confirmed.iter().any(|c| c == channel) => confirmed_by += 1,
                Ok(o) => match o.refused.iter().find(|r| &r.channel == channel) {
                    Some(r) => reasons.push(format!("member {member}: {}", r.reason)),
                    None => reasons.push(format!("member {member}: not in its answer")),
                },
                Err(e) => reasons.push(format!("member {member}: {e}")),
            }
        }
        if confirmed_by > 0 {
            if !reasons.is_empty() {
                tracing::warn!(%channel, confirmed_by, refused = ?reasons, "channel not on every member: not redundant");
            }
            out.confirmed.push(channel.clone());
        } else {
            out.refused.push(Refused { channel: channel.clone(), reason: reasons.join("; ") });
            given_up.push(channel.clone());
        }
    }
    (out, given_up)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_by_one_is_confirmed_refused_by_all_is_refused() {
        let a: Channel = Arc::from("a");
        let b: Channel = Arc::from("b");
        let results = vec![
            (
                0,
                Ok(SubscribeOutcome {
                    confirmed: vec![a.clone()],
                    refused: vec![Refused { channel: b.clone(), reason: "no".into() }],
                }),
            ),
            (1, Err(ClientError::Closed)),
        ];
        let (out, given_up) = merge_replicated(&[a.clone(), b.clone()], results);
        assert_eq!(out.confirmed, [a]);
        assert_eq!(out.refused.len(), 1);
        assert_eq!(out.refused[0].reason, "member 0: no; member 1: the client is closed");
        assert_eq!(given_up, [b]);
    }
}
