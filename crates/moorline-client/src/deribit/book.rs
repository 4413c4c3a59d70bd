//! Order-book integrity for Deribit's `book.*` channels: a book that skipped a change is
//! never shown as whole.
//!
//! Deribit sends a snapshot first, then changes; every change carries its own `change_id`
//! and the `prev_change_id` of the change before it. A change applies only when its
//! `prev_change_id` equals the last applied `change_id` (never "`+1`": ids advance by
//! strides). Anything else (a change withheld, duplicated or reordered on the way) is a
//! [`BookGap`]: the book is **broken** from then on and refuses every further change until a
//! new snapshot arrives (the client resubscribes, which makes Deribit send one). No delta of a
//! broken book reaches the user: [`OrderBook::apply`] says which updates may be delivered.
//!
//! The grouped channel `book.{instrument}.{group}.{depth}.{interval}` sends a whole (partial
//! depth) book in every message, with `change_id` but no `type`/`prev_change_id`: each is
//! applied as a snapshot.
//!
//! Pure: no IO, no clock; the caller feeds parsed notifications and acts on the result.
//!
//! ```
//! use moorline_client::deribit::book::{BookUpdate, OrderBook, Applied};
//!
//! let mut book = OrderBook::new();
//! let snap = BookUpdate::parse(r#"{"type":"snapshot","timestamp":1,"instrument_name":"BTC-PERPETUAL",
//!     "change_id":100,"bids":[["new",99.5,10.0]],"asks":[["new",100.0,5.0]]}"#).unwrap();
//! assert_eq!(book.apply(&snap), Ok(Applied::Snapshot));
//! let change = BookUpdate::parse(r#"{"type":"change","timestamp":2,"instrument_name":"BTC-PERPETUAL",
//!     "change_id":107,"prev_change_id":100,"bids":[["change",99.5,4.0]],"asks":[["delete",100.0,0.0]]}"#).unwrap();
//! assert_eq!(book.apply(&change), Ok(Applied::Change));
//! assert_eq!(book.best_bid(), Some((99.5, 4.0)));
//! assert_eq!(book.best_ask(), None);
//! // A change whose predecessor never arrived breaks the book.
//! let late = BookUpdate::parse(r#"{"type":"change","timestamp":3,"instrument_name":"BTC-PERPETUAL",
//!     "change_id":120,"prev_change_id":112,"bids":[],"asks":[]}"#).unwrap();
//! assert!(book.apply(&late).is_err());
//! assert!(book.is_broken());
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// What one level entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new price level.
    New,
    /// A level's amount changed.
    Change,
    /// A level is gone.
    Delete,
}

/// One `[action, price, amount]` entry (or `[price, amount]` in grouped books: `New`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// What to do.
    pub action: Action,
    /// The price (finite, not negative).
    pub price: f64,
    /// The amount at that price.
    pub amount: f64,
}

/// Whether a notification is a whole book or a change to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A whole book: replaces everything.
    Snapshot,
    /// A change to the previous book.
    Change,
}

/// One `book.*` notification's `data`, parsed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BookUpdate {
    /// Snapshot or change (grouped books: absent, a snapshot).
    #[serde(rename = "type", default = "snapshot")]
    pub kind: Kind,
    /// Milliseconds since the epoch (Deribit's clock).
    pub timestamp: u64,
    /// The instrument.
    pub instrument_name: String,
    /// This update's id.
    pub change_id: u64,
    /// The id of the update before it (changes only).
    #[serde(default)]
    pub prev_change_id: Option<u64>,
    /// Bid levels.
    pub bids: Vec<Level>,
    /// Ask levels.
    pub asks: Vec<Level>,
}

fn snapshot() -> Kind {
    Kind::Snapshot
}

/// A `book.*` notification that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed Deribit book notification: {0}")]
pub struct MalformedBook(#[from] serde_json::Error);

impl BookUpdate {
    /// Parses a notification's `data` (the JSON object under `params.data`).
    pub fn parse(data: &str) -> Result<Self, MalformedBook> {
        Ok(serde_json::from_str(data)?)
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LevelVisitor;
        impl<'de> Visitor<'de> for LevelVisitor {
            type Value = Level;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[action, price, amount] or [price, amount]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Level, A::Error> {
                let first: serde_json::Value =
                    seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let (action, price) = match first {
                    serde_json::Value::String(a) => {
                        let action = match a.as_str() {
                            "new" => Action::New,
                            "change" => Action::Change,
                            "delete" => Action::Delete,
                            other => return Err(de::Error::unknown_variant(other, &["new", "change", "delete"])),
                        };
                        let price: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                        (action, price)
                    }
                    serde_json::Value::Number(n) => {
                        (Action::New, n.as_f64().ok_or_else(|| de::Error::custom("price is not a number"))?)
                    }
                    _ => return Err(de::Error::custom("a level starts with an action or a price")),
                };
                let amount: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("a level has at most three entries"));
                }
                if !price.is_finite() || price < 0.0 || !amount.is_finite() {
                    return Err(de::Error::custom("price and amount must be finite, the price not negative"));
                }
                Ok(Level { action, price, amount })
            }
        }
        d.deserialize_seq(LevelVisitor)
    }
}

/// The book skipped a change: what it expected and what came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BookGap {
    /// A change's `prev_change_id` is not the last applied `change_id`: a change was
    /// withheld, duplicated or reordered.
    #[error("book gap: expected a change following {expected}, got one following {got:?} (change {change_id})")]
    Mismatch {
        /// The last applied `change_id`.
        expected: u64,
        /// The change's `prev_change_id` (`None`: it had none).
        got: Option<u64>,
        /// The change's own id.
        change_id: u64,
    },
    /// A change arrived before any snapshot.
    #[error("book gap: change {change_id} arrived before a snapshot")]
    NoSnapshot {
        /// The change's id.
        change_id: u64,
    },
    /// The book is broken since an earlier gap; only a snapshot mends it.
    #[error("the book is broken since an earlier gap: change {change_id} refused until a new snapshot")]
    Broken {
        /// The refused change's id.
        change_id: u64,
    },
}

/// What [`OrderBook::apply`] did: the update may be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A snapshot replaced the book (and mended it, if it was broken).
    Snapshot,
    /// A change applied in sequence.
    Change,
}

/// A price as an ordered key: for finite non-negative floats the bit pattern orders as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Price(u64);

impl Price {
    fn of(p: f64) -> Self {
        // `+ 0.0` turns -0.0 into 0.0, so both keys are the same.
        Price((p + 0.0).to_bits())
    }
    fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// One instrument's order book, kept whole or marked broken.
#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    bids: BTreeMap<Price, f64>,
    asks: BTreeMap<Price, f64>,
    last: Option<u64>,
    broken: bool,
    gaps: u64,
}

impl OrderBook {
    /// An empty book waiting for its snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `update` if it follows the book; otherwise marks the book broken and says why.
    /// An `Err` means: deliver nothing of this update, and resubscribe for a new snapshot.
    pub fn apply(&mut self, update: &BookUpdate) -> Result<Applied, BookGap> {
        match update.kind {
            Kind::Snapshot => {
                self.bids.clear();
                self.asks.clear();
                apply_levels(&mut self.bids, &update.bids);
                apply_levels(&mut self.asks, &update.asks);
                self.last = Some(update.change_id);
                self.broken = false;
                Ok(Applied::Snapshot)
            }
            Kind::Change => {
                let change_id = update.change_id;
                if self.broken {
                    return Err(BookGap::Broken { change_id });
                }
                let Some(expected) = self.last else {
                    self.broken = true;
                    self.gaps += 1;
                    return Err(BookGap::NoSnapshot { change_id });
                };
                if update.prev_change_id != Some(expected) {
                    self.broken = true;
                    self.gaps += 1;
                    return Err(BookGap::Mismatch { expected, got: update.prev_change_id, change_id });
                }
                apply_levels(&mut self.bids, &update.bids);
                apply_levels(&mut self.asks, &update.asks);
                self.last = Some(change_id);
                Ok(Applied::Change)
            }
        }
    }

    /// Whether a gap broke the book (until the next snapshot).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Gaps seen so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// The last applied `change_id`.
    pub fn last_change_id(&self) -> Option<u64> {
        self.last
    }

    /// The highest bid (price, amount), while the book is whole.
    pub fn best_bid(&self) -> Option<(f64, f64)> {
        if self.broken {
            return None;
        }
        self.bids.iter().next_back().map(|(p, a)| (p.get(), *a))
    }

    /// The lowest ask (price, amount), while the book is whole.
    pub fn best_ask(&self) -> Option<(f64, f64)> {
        if self.broken {
            return None;
        }
        self.asks.iter().next().map(|(p, a)| (p.get(), *a))
    }

    /// Bids from the best down, while the book is whole (empty when broken).
    pub fn bids(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.bids.iter().rev().filter(|_| !self.broken).map(|(p, a)| (p.get(), *a))
    }

    /// Asks from the best up, while the book is whole (empty when broken).
    pub fn asks(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.asks.iter().filter(|_| !self.broken).map(|(p, a)| (p.get(), *a))
    }
}

fn apply_levels(side: &mut BTreeMap<Price, f64>, levels: &[Level]) {
    for l in levels {
        match l.action {
            Action::Delete => {
                side.remove(&Price::of(l.price));
            }
            Action::New | Action::Change if l.amount == 0.0 => {
                side.remove(&Price::of(l.price));
            }
            Action::New | Action::Change => {
                side.insert(Price::of(l.price), l.amount);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn change(id: u64, prev: u64, bids: &str) -> BookUpdate {
        BookUpdate::parse(&format!(
            r#"{{"type":"change","timestamp":1,"instrument_name":"X","change_id":{id},"prev_change_id":{prev},"bids":{bids},"asks":[]}}"#
        ))
        .unwrap()
    }

    fn snap(id: u64) -> BookUpdate {
        BookUpdate::parse(&format!(
            r#"{{"type":"snapshot","timestamp":1,"instrument_name":"X","change_id":{id},"bids":[["new",10.0,1.0],["new",9.0,2.0]],"asks":[["new",11.0,3.0]]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn changes_follow_by_prev_change_id_not_by_plus_one() {
        let mut b = OrderBook::new();
        b.apply(&snap(1000)).unwrap();
        // Strides of any size are fine; what matters is the link.
        assert_eq!(b.apply(&change(1013, 1000, r#"[["change",10.0,5.0]]"#)), Ok(Applied::Change));
        assert_eq!(b.apply(&change(1014, 1013, r#"[["delete",9.0,0.0]]"#)), Ok(Applied::Change));
        assert_eq!(b.apply(&change(2000, 1014, r#"[["new",10.5,1.0]]"#)), Ok(Applied::Change));
        assert_eq!(b.bids().collect::<Vec<_>>(), vec![(10.5, 1.0), (10.0, 5.0)]);
        assert_eq!(b.best_ask(), Some((11.0, 3.0)));
        assert_eq!((b.last_change_id(), b.gaps()), (Some(2000), 0));
    }

    /// Withheld, duplicated and reordered changes all break the link; the book refuses every
    /// change until a snapshot, and shows nothing meanwhile.
    #[test]
    fn withheld_duplicated_and_reordered_changes_are_gaps() {
        let c1 = change(11, 10, r#"[["change",10.0,5.0]]"#);
        let c2 = change(15, 11, r#"[["change",10.0,6.0]]"#);
        let c3 = change(16, 15, r#"[["change",10.0,7.0]]"#);
        for (name, seq) in
            [("withheld", vec![&c1, &c3]), ("duplicated", vec![&c1, &c2, &c2]), ("reordered", vec![&c2, &c1])]
        {
            let mut b = OrderBook::new();
            b.apply(&snap(10)).unwrap();
            let results: Vec<_> = seq.iter().map(|u| b.apply(u)).collect();
            let first_err = results.iter().position(Result::is_err).unwrap_or_else(|| panic!("{name}: no gap"));
            assert!(matches!(results[first_err], Err(BookGap::Mismatch { .. })), "{name}: {:?}", results[first_err]);
            assert!(b.is_broken(), "{name}");
            assert_eq!((b.best_bid(), b.bids().count()), (None, 0), "{name}: nothing shown from a broken book");
            // Even the right next change is refused until a snapshot.
            assert!(matches!(b.apply(&c3), Err(BookGap::Broken { .. })), "{name}");
            assert_eq!(b.apply(&snap(20)), Ok(Applied::Snapshot));
            assert!(!b.is_broken());
            assert_eq!(b.apply(&change(21, 20, "[]")), Ok(Applied::Change));
            assert_eq!(b.gaps(), 1, "{name}");
        }
    }

    #[test]
    fn a_change_before_any_snapshot_is_a_gap() {
        let mut b = OrderBook::new();
        assert_eq!(b.apply(&change(5, 4, "[]")), Err(BookGap::NoSnapshot { change_id: 5 }));
    }

    #[test]
    fn grouped_books_are_snapshots_and_malformed_levels_are_typed_errors() {
        let g = BookUpdate::parse(
            r#"{"timestamp":1,"instrument_name":"BTC-PERPETUAL","change_id":7,"bids":[[100.0,1.5]],"asks":[[101.0,2.0]]}"#,
        )
        .unwrap();
        assert_eq!(g.kind, Kind::Snapshot);
        let mut b = OrderBook::new();
        assert_eq!(b.apply(&g), Ok(Applied::Snapshot));
        assert_eq!((b.best_bid(), b.best_ask()), (Some((100.0, 1.5)), Some((101.0, 2.0))));
        for bad in [
            r#"{"timestamp":1,"instrument_name":"X","change_id":1,"bids":[["sell",1.0,1.0]],"asks":[]}"#,
            r#"{"timestamp":1,"instrument_name":"X","change_id":1,"bids":[[-1.0,1.0]],"asks":[]}"#,
            r#"{"timestamp":1,"instrument_name":"X","change_id":1,"bids":[["new",1.0]],"asks":[]}"#,
            r#"{"timestamp":1,"instrument_name":"X","change_id":1,"bids":[["new",1.0,1.0,9]],"asks":[]}"#,
            r#"{"timestamp":1,"instrument_name":"X","bids":[],"asks":[]}"#,
            "not json",
        ] {
            assert!(BookUpdate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_zero_amount_removes_the_level() {
        let mut b = OrderBook::new();
        b.apply(&snap(1)).unwrap();
        b.apply(&change(2, 1, r#"[["change",10.0,0.0]]"#)).unwrap();
        assert_eq!(b.best_bid(), Some((9.0, 2.0)));
    }
}
