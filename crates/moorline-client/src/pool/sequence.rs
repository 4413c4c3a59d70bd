//! Sequence keys: what redundant mode deduplicates data messages by. A
//! [`SequenceExtractor`] reads a message's key (a number that grows along its channel and is
//! the same on every connection); [`DeribitSequence`] knows Deribit's channels.

use serde::Deserialize;

use crate::event::Payload;
use crate::jsonrpc;

/// Reads the sequence key of a data message: a number that is the same for the same message
/// on every connection and grows along the channel (a later message has a larger key). Redundant
/// mode delivers each `(channel, key)` once; a message without a key (`None`) is deduplicated
/// by its content instead (see [`Dedup`](super::Dedup)).
///
/// Any `Fn(&str, &Payload) -> Option<u64>` is an extractor:
///
/// ```
/// use moorline_client::Payload;
/// use moorline_client::pool::SequenceExtractor;
///
/// // A venue whose messages start with their sequence number: "42 {...}".
/// let leading_number = |_channel: &str, data: &Payload| -> Option<u64> {
///     data.as_text()?.split(' ').next()?.parse().ok()
/// };
/// assert_eq!(leading_number.key("feed", &Payload::Text("42 {}".into())), Some(42));
/// ```
pub trait SequenceExtractor: Send + Sync + 'static {
    /// The key of a data message of `channel`, or `None` if it has none.
    fn key(&self, channel: &str, data: &Payload) -> Option<u64>;
}

impl<F> SequenceExtractor for F
where
    F: Fn(&str, &Payload) -> Option<u64> + Send + Sync + 'static,
{
    fn key(&self, channel: &str, data: &Payload) -> Option<u64> {
        self(channel, data)
    }
}

/// Which field of a Deribit notification is its sequence key ([`DeribitSequence::field`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceField {
    /// `change_id`: `book.{instrument}.{interval}` and the grouped
    /// `book.{instrument}.{group}.{depth}.{interval}`. Deribit's change ids grow along an
    /// instrument's book and are the same on every connection.
    ChangeId,
    /// The largest `trade_seq` of the notification's trades: `trades.{instrument}.{interval}`.
    /// `trade_seq` counts an instrument's trades; one notification carries a list of trades.
    LastTradeSeq,
    /// `timestamp` in milliseconds: `ticker.*`, `incremental_ticker.*`, `quote.*`,
    /// `deribit_price_index.*`.
    Timestamp,
}

/// The sequence keys of Deribit's public market data channels:
///
/// | channel | key |
/// |---|---|
/// | `book.{instrument}.{interval}`, `book.{instrument}.{group}.{depth}.{interval}` | `change_id` |
/// | `trades.{instrument}.{interval}` | the largest `trade_seq` of the notification |
/// | `ticker.*`, `incremental_ticker.*`, `quote.*`, `deribit_price_index.*` | `timestamp` (ms) |
/// | anything else (`user.*`, `platform_state`, `trades.{kind}.{currency}.*`, announcements...) | none: deduplicated by content |
///
/// Trades: a notification is one message, delivered whole or not at all, keyed by its last
/// (largest) `trade_seq`. Every connection gets the same notifications on `raw` (one per
/// matching event); should two connections group an aggregated interval's trades differently, a
/// notification that overlaps what was delivered but ends later is delivered whole (its first
/// trades a second time: nothing is lost; compare `trade_seq` if that matters), and one that
/// ends at or before what was delivered is a duplicate. `trades.{kind}.{currency}.*` spans
/// instruments, whose `trade_seq`s are unrelated: no key.
///
/// Tickers: two different tickers of one channel stamped the same millisecond have the same
/// key, and the second is taken for a duplicate. Deribit's `100ms` tickers are 100 ms apart;
/// on `raw`, use a channel keyed by `change_id` where a gap matters.
///
/// ```
/// use moorline_client::Payload;
/// use moorline_client::pool::{DeribitSequence, SequenceExtractor, SequenceField};
///
/// let book = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms",
///     "data":{"type":"change","change_id":1007,"prev_change_id":1001,"bids":[],"asks":[]}}}"#;
/// assert_eq!(DeribitSequence.key("book.BTC-PERPETUAL.100ms", &Payload::Text(book.into())), Some(1007));
/// let trades = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw",
///     "data":[{"trade_seq":30,"price":1},{"trade_seq":31,"price":2}]}}"#;
/// assert_eq!(DeribitSequence.key("trades.BTC-PERPETUAL.raw", &Payload::Text(trades.into())), Some(31));
/// assert_eq!(DeribitSequence::field("user.orders.BTC-PERPETUAL.raw"), None);
/// assert_eq!(DeribitSequence::field("ticker.BTC-PERPETUAL.100ms"), Some(SequenceField::Timestamp));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DeribitSequence;

impl DeribitSequence {
    /// Which field keys `channel`'s messages, if any (see the table above).
    pub fn field(channel: &str) -> Option<SequenceField> {
        let parts = channel.split('.').count();
        let (kind, _) = channel.split_once('.')?;
        match (kind, parts) {
            ("book", 3 | 5) => Some(SequenceField::ChangeId),
            ("trades", 3) => Some(SequenceField::LastTradeSeq),
            ("ticker" | "incremental_ticker" | "quote" | "deribit_price_index", _) => Some(SequenceField::Timestamp),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ChangeId {
    change_id: u64,
}

#[derive(Deserialize)]
struct TradeSeq {
    trade_seq: u64,
}

#[derive(Deserialize)]
struct Timestamp {
    timestamp: u64,
}

impl SequenceExtractor for DeribitSequence {
    fn key(&self, channel: &str, data: &Payload) -> Option<u64> {
        let field = Self::field(channel)?;
        let data = jsonrpc::notification_data(data.as_text()?)?;
        match field {
            SequenceField::ChangeId => serde_json::from_str::<ChangeId>(data).ok().map(|d| d.change_id),
            SequenceField::LastTradeSeq => {
                serde_json::from_str::<Vec<TradeSeq>>(data).ok()?.iter().map(|t| t.trade_seq).max()
            }
            SequenceField::Timestamp => serde_json::from_str::<Timestamp>(data).ok().map(|d| d.timestamp),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn note(channel: &str, data: &str) -> Payload {
        Payload::Text(
            format!(r#"{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{channel}","data":{data}}}}}"#)
                .into(),
        )
    }

    #[test]
    fn deribit_channels_and_their_keys() {
        let d = DeribitSequence;
        let book = note("book.ETH-PERPETUAL.raw", r#"{"type":"snapshot","change_id":5,"bids":[],"asks":[]}"#);
        assert_eq!(d.key("book.ETH-PERPETUAL.raw", &book), Some(5));
        let grouped = note("book.ETH-PERPETUAL.none.10.100ms", r#"{"change_id":9,"timestamp":3}"#);
        assert_eq!(d.key("book.ETH-PERPETUAL.none.10.100ms", &grouped), Some(9));
        let trades = note("trades.ETH-PERPETUAL.100ms", r#"[{"trade_seq":12},{"trade_seq":14},{"trade_seq":13}]"#);
        assert_eq!(d.key("trades.ETH-PERPETUAL.100ms", &trades), Some(14), "the largest");
        assert_eq!(d.key("trades.ETH-PERPETUAL.100ms", &note("trades.ETH-PERPETUAL.100ms", "[]")), None);
        let ticker = note("ticker.ETH-PERPETUAL.100ms", r#"{"timestamp":1700000000123,"last_price":1}"#);
        assert_eq!(d.key("ticker.ETH-PERPETUAL.100ms", &ticker), Some(1_700_000_000_123));
        for unkeyed in [
            "user.orders.BTC-PERPETUAL.raw",
            "user.trades.BTC-PERPETUAL.raw",
            "platform_state",
            "trades.future.BTC.100ms",
            "book.BTC-PERPETUAL",
            "announcements",
        ] {
            assert_eq!(DeribitSequence::field(unkeyed), None, "{unkeyed}");
        }
        // Whatever cannot be read has no key (and is then deduplicated by content).
        assert_eq!(d.key("book.X.raw", &Payload::Text("not json".into())), None);
        assert_eq!(d.key("book.X.raw", &note("book.X.raw", r#"{"change_id":"7"}"#)), None);
        assert_eq!(d.key("book.X.raw", &Payload::Binary(bytes::Bytes::from_static(b"{}"))), None);
        assert_eq!(d.key("book.X.raw", &note("book.X.raw", r#"{"change_id":-1}"#)), None);
    }
}
