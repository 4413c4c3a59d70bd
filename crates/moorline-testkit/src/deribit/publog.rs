//! The opt-in publication log ([`DeribitSimBuilder::publication_log`](super::DeribitSimBuilder::publication_log)):
//! what the venue published, one record per channel and notification, with the sequence
//! fields a client deduplicates or checks gaps by (`change_id`, `trade_seq`, `timestamp`),
//! so a test can compare what a client delivered with what was sent, message by message.
//!
//! Bounded: at most `capacity` records are kept, the oldest evicted first and counted
//! ([`DeribitSim::publications_evicted`](super::DeribitSim::publications_evicted)). A record
//! is the channel name, a few integers and one `trade_seq` per trade of the notification (one
//! matching event's trades: a handful), about 100 bytes; 100 000 records are about 10 MB.

use std::collections::VecDeque;

use serde_json::Value;

/// One notification the venue published on one channel (sent to `recipients` connections
/// subscribed to it: the same text to each), as the publication log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its position in the log: 0 for the first notification recorded, counting on past
    /// evictions (so a gap in `seq` is never a lost record, only an evicted one).
    pub seq: u64,
    /// The channel, e.g. `book.BTC-PERPETUAL.100ms`.
    pub channel: String,
    /// How many connections it was sent to (at least 1: nothing is recorded for a channel
    /// nobody is subscribed to).
    pub recipients: usize,
    /// A book snapshot sent to one connection as it subscribed (not a change sent to every
    /// subscriber); its `change_id` is the book's last change's.
    pub snapshot: bool,
    /// `data.change_id` (`book.*` channels).
    pub change_id: Option<u64>,
    /// `data[].trade_seq` of each trade, in order (`trades.*` and `user.trades.*`: the data is
    /// a list of trades); empty for other channels.
    pub trade_seqs: Vec<u64>,
    /// `data.timestamp` (`ticker.*`, `book.*`...), in milliseconds.
    pub timestamp: Option<u64>,
}

/// The log: the last `capacity` publications.
#[derive(Debug)]
pub(crate) struct PublicationLog {
    records: VecDeque<Publication>,
    capacity: usize,
    next_seq: u64,
    evicted: u64,
}

impl PublicationLog {
    /// An empty log keeping at most `capacity` records (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { records: VecDeque::new(), capacity, next_seq: 0, evicted: 0 }
    }

    /// Records that `data` went out on `channel` to `recipients` connections.
    pub(crate) fn record(&mut self, channel: String, recipients: usize, snapshot: bool, data: &Value) {
        let trade_seqs = match data {
            Value::Array(items) => items.iter().filter_map(|t| t.get("trade_seq").and_then(Value::as_u64)).collect(),
            _ => Vec::new(),
        };
        let record = Publication {
            seq: self.next_seq,
            channel,
            recipients,
            snapshot,
            change_id: data.get("change_id").and_then(Value::as_u64),
            trade_seqs,
            timestamp: data.get("timestamp").and_then(Value::as_u64),
        };
        self.next_seq += 1;
        if self.records.len() == self.capacity {
            self.records.pop_front();
            self.evicted += 1;
        }
        self.records.push_back(record);
    }

    /// The records kept, oldest first.
    pub(crate) fn records(&self) -> Vec<Publication> {
        self.records.iter().cloned().collect()
    }

    /// Records evicted to keep the log within its capacity.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::PublicationLog;

    #[test]
    fn keeps_the_last_records_and_counts_the_rest() {
        let mut log = PublicationLog::new(3);
        for i in 0..5u64 {
            log.record(format!("book.X.{i}"), 2, i == 0, &json!({"change_id": 10 + i, "timestamp": 7}));
        }
        log.record("trades.X.raw".into(), 1, false, &json!([{"trade_seq": 4}, {"trade_seq": 5}]));
        let records = log.records();
        assert_eq!(log.evicted(), 3);
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(records[0].change_id, Some(13));
        assert_eq!(records[0].timestamp, Some(7));
        assert_eq!((records[2].change_id, records[2].trade_seqs.as_slice()), (None, &[4, 5][..]));
        assert_eq!(records[2].recipients, 1);
    }
}
