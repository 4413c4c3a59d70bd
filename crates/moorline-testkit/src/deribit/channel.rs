//! Subscription channel names: parsing and formatting.

use std::fmt;

use super::instrument::{INSTRUMENTS, index_of};

/// Price groupings of the grouped book channel (`none` is 0), as on Deribit.
const GROUPS: [u32; 8] = [0, 1, 2, 5, 10, 25, 100, 250];
/// Depths of the grouped book channel.
const DEPTHS: [u8; 3] = [1, 10, 20];

/// What a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// `ticker.{instrument}.{interval}`.
    Ticker,
    /// `book.{instrument}.{interval}`: a snapshot, then changes chained by `prev_change_id`.
    Book,
    /// `book.{instrument}.{group}.{depth}.{interval}`: whole (grouped, cut) books, no chain.
    GroupedBook {
        /// Price grouping in ticks of the instrument (0: `none`).
        group: u32,
        /// Levels per side.
        depth: u8,
    },
    /// `trades.{instrument}.{interval}`.
    Trades,
    /// `platform_state` (no instrument, no interval).
    PlatformState,
    /// `user.orders.{instrument}.{interval}` (private).
    UserOrders,
    /// `user.trades.{instrument}.{interval}` (private).
    UserTrades,
    /// `user.changes.{instrument}.{interval}` (private): orders, trades and positions together.
    UserChanges,
}

/// Notification interval. Every interval gets every event as it happens (the
/// simulator does not aggregate); `raw` and the others differ only in shape
/// where Deribit's do (`user.orders` data is a list except on `raw`), and in that
/// `raw` needs an authenticated connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Interval {
    /// `raw`.
    Raw,
    /// `100ms`.
    Ms100,
    /// `agg2`.
    Agg2,
}

impl Interval {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(Self::Raw),
            "100ms" => Some(Self::Ms100),
            "agg2" => Some(Self::Agg2),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Ms100 => "100ms",
            Self::Agg2 => "agg2",
        }
    }
}

/// A valid channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Channel {
    pub(crate) kind: Kind,
    /// Index into [`INSTRUMENTS`] (0 for `platform_state`).
    pub(crate) instrument: usize,
    pub(crate) interval: Interval,
}

fn group_of(s: &str) -> Option<u32> {
    let group = if s == "none" { 0 } else { s.parse().ok().filter(|g| *g != 0)? };
    GROUPS.contains(&group).then_some(group)
}

impl Channel {
    /// Parses a channel name; `None` for anything the simulator does not serve.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        if name == "platform_state" {
            return Some(Self { kind: Kind::PlatformState, instrument: 0, interval: Interval::Raw });
        }
        let parts: Vec<&str> = name.split('.').collect();
        let (kind, instrument, interval) = match parts.as_slice() {
            ["ticker", i, n] => (Kind::Ticker, i, n),
            ["book", i, n] => (Kind::Book, i, n),
            ["book", i, g, d, n] => {
                let depth = d.parse().ok().filter(|d| DEPTHS.contains(d))?;
                (Kind::GroupedBook { group: group_of(g)?, depth }, i, n)
            }
            ["trades", i, n] => (Kind::Trades, i, n),
            ["user", "orders", i, n] => (Kind::UserOrders, i, n),
            ["user", "trades", i, n] => (Kind::UserTrades, i, n),
            ["user", "changes", i, n] => (Kind::UserChanges, i, n),
            _ => return None,
        };
        Some(Self { kind, instrument: index_of(instrument)?, interval: Interval::parse(interval)? })
    }

    /// Whether only authenticated connections may subscribe (via `private/subscribe`).
    pub(crate) fn is_private(&self) -> bool {
        matches!(self.kind, Kind::UserOrders | Kind::UserTrades | Kind::UserChanges)
    }

    /// Whether this is a public `raw` channel, which Deribit serves to authenticated
    /// connections only (`13778` otherwise).
    pub(crate) fn is_public_raw(&self) -> bool {
        self.interval == Interval::Raw && !self.is_private() && self.kind != Kind::PlatformState
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let instrument = INSTRUMENTS.get(self.instrument).map_or("?", |i| i.name);
        let interval = self.interval.as_str();
        match self.kind {
            Kind::PlatformState => f.write_str("platform_state"),
            Kind::GroupedBook { group, depth } => {
                let group = if group == 0 { "none".to_owned() } else { group.to_string() };
                write!(f, "book.{instrument}.{group}.{depth}.{interval}")
            }
            kind => {
                let kind = match kind {
                    Kind::Ticker => "ticker",
                    Kind::Trades => "trades",
                    Kind::UserOrders => "user.orders",
                    Kind::UserTrades => "user.trades",
                    Kind::UserChanges => "user.changes",
                    _ => "book",
                };
                write!(f, "{kind}.{instrument}.{interval}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Channel, Interval, Kind};

    #[test]
    fn round_trip_and_rejects() {
        for name in [
            "ticker.BTC-PERPETUAL.100ms",
            "book.ETH-PERPETUAL.raw",
            "book.BTC-PERPETUAL.none.10.100ms",
            "book.ETH-PERPETUAL.5.20.agg2",
            "trades.BTC-PERPETUAL.agg2",
            "user.orders.ETH-PERPETUAL.raw",
            "user.trades.BTC-PERPETUAL.100ms",
            "user.changes.BTC-PERPETUAL.raw",
            "platform_state",
        ] {
            assert_eq!(Channel::parse(name).map(|c| c.to_string()).as_deref(), Some(name));
        }
        let c = Channel::parse("user.orders.BTC-PERPETUAL.raw");
        assert_eq!(c, Some(Channel { kind: Kind::UserOrders, instrument: 0, interval: Interval::Raw }));
        assert!(c.is_some_and(|c| c.is_private() && !c.is_public_raw()));
        assert!(Channel::parse("book.BTC-PERPETUAL.raw").is_some_and(|c| c.is_public_raw()));
        assert!(Channel::parse("platform_state").is_some_and(|c| !c.is_public_raw()));
        for bad in [
            "",
            "book",
            "book.DOGE-PERPETUAL.raw",
            "book.BTC-PERPETUAL.1s",
            "book.BTC-PERPETUAL.3.10.100ms",
            "book.BTC-PERPETUAL.none.7.100ms",
            "book.BTC-PERPETUAL.0.10.100ms",
            "candles.BTC-PERPETUAL.raw",
            "x.y.z.w.v",
        ] {
            assert_eq!(Channel::parse(bad), None, "{bad}");
        }
    }
}
