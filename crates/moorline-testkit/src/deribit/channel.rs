//! Subscription channel names: parsing and formatting.

use std::fmt;

use super::instrument::{INSTRUMENTS, index_of};

/// What a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// `ticker.{instrument}.{interval}`.
    Ticker,
    /// `book.{instrument}.{interval}`.
    Book,
    /// `trades.{instrument}.{interval}`.
    Trades,
    /// `user.orders.{instrument}.{interval}` (private).
    UserOrders,
    /// `user.trades.{instrument}.{interval}` (private).
    UserTrades,
}

/// Notification interval. Every interval gets every event as it happens (the
/// simulator does not aggregate); `raw` and the others differ only in shape
/// where Deribit's do (`user.*` data is a list except on `raw`).
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
    /// Index into [`INSTRUMENTS`].
    pub(crate) instrument: usize,
    pub(crate) interval: Interval,
}

impl Channel {
    /// Parses a channel name; `None` for anything the simulator does not serve.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        let parts: Vec<&str> = name.split('.').collect();
        let (kind, instrument, interval) = match parts.as_slice() {
            ["ticker", i, n] => (Kind::Ticker, i, n),
            ["book", i, n] => (Kind::Book, i, n),
            ["trades", i, n] => (Kind::Trades, i, n),
            ["user", "orders", i, n] => (Kind::UserOrders, i, n),
            ["user", "trades", i, n] => (Kind::UserTrades, i, n),
            _ => return None,
        };
        Some(Self { kind, instrument: index_of(instrument)?, interval: Interval::parse(interval)? })
    }

    /// Whether only authenticated connections may subscribe (via `private/subscribe`).
    pub(crate) fn is_private(&self) -> bool {
        matches!(self.kind, Kind::UserOrders | Kind::UserTrades)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Ticker => "ticker",
            Kind::Book => "book",
            Kind::Trades => "trades",
            Kind::UserOrders => "user.orders",
            Kind::UserTrades => "user.trades",
        };
        let instrument = INSTRUMENTS.get(self.instrument).map_or("?", |i| i.name);
        write!(f, "{kind}.{instrument}.{}", self.interval.as_str())
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
            "trades.BTC-PERPETUAL.agg2",
            "user.orders.ETH-PERPETUAL.raw",
            "user.trades.BTC-PERPETUAL.100ms",
        ] {
            assert_eq!(Channel::parse(name).map(|c| c.to_string()).as_deref(), Some(name));
        }
        let c = Channel::parse("user.orders.BTC-PERPETUAL.raw");
        assert_eq!(c, Some(Channel { kind: Kind::UserOrders, instrument: 0, interval: Interval::Raw }));
        assert!(c.is_some_and(|c| c.is_private()));
        for bad in
            ["", "book", "book.DOGE-PERPETUAL.raw", "book.BTC-PERPETUAL.1s", "candles.BTC-PERPETUAL.raw", "x.y.z.w.v"]
        {
            assert_eq!(Channel::parse(bad), None, "{bad}");
        }
    }
}
