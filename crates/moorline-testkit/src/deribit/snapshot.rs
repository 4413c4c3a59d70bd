//! Plain views of simulator state for tests ([`super::DeribitSim::book_snapshot`]).

/// One aggregated price level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BookLevel {
    /// Price in USD.
    pub price: f64,
    /// Total amount resting at this price, in USD.
    pub amount: f64,
}

/// An instrument's order book at one moment (simulated liquidity and
/// accounts' resting orders together, as the public `book` channel shows it).
#[derive(Debug, Clone, PartialEq)]
pub struct BookSnapshot {
    /// `BTC-PERPETUAL`, `ETH-PERPETUAL` or `BTC-25DEC26`.
    pub instrument_name: String,
    /// The `change_id` of the last `book` notification.
    pub change_id: u64,
    /// Bids, best (highest) first.
    pub bids: Vec<BookLevel>,
    /// Asks, best (lowest) first.
    pub asks: Vec<BookLevel>,
}

impl BookSnapshot {
    /// Highest bid.
    pub fn best_bid(&self) -> Option<BookLevel> {
        self.bids.first().copied()
    }

    /// Lowest ask.
    pub fn best_ask(&self) -> Option<BookLevel> {
        self.asks.first().copied()
    }
}
