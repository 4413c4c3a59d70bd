//! A price-time priority limit order book over integer ticks and units.
//!
//! Pure data structure: no clocks, no JSON. The caller owns order ids.

use std::collections::{BTreeMap, VecDeque};

/// Which side an order is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Side {
    /// Bid.
    Buy,
    /// Ask.
    Sell,
}

impl Side {
    /// The other side.
    pub(crate) fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }

    /// Deribit's `direction`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
}

/// Who placed a resting order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Owner {
    /// The simulated market (seeded liquidity).
    Market,
    /// A test account, by index.
    Account(usize),
}

/// An order resting in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resting {
    pub(crate) id: u64,
    pub(crate) owner: Owner,
    pub(crate) side: Side,
    pub(crate) price: i64,
    pub(crate) remaining: u64,
}

/// One match between an incoming order and a resting (maker) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fill {
    pub(crate) maker_id: u64,
    pub(crate) maker_owner: Owner,
    pub(crate) price: i64,
    pub(crate) amount: u64,
    /// What the maker has left after this fill (0: it left the book).
    pub(crate) maker_remaining: u64,
}

/// Aggregated levels of one side: price in ticks -> total amount.
pub(crate) type Levels = BTreeMap<i64, u64>;

/// The order book of one instrument.
#[derive(Debug, Clone, Default)]
pub(crate) struct Book {
    orders: BTreeMap<u64, Resting>,
    bids: BTreeMap<i64, VecDeque<u64>>,
    asks: BTreeMap<i64, VecDeque<u64>>,
}

impl Book {
    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<i64, VecDeque<u64>> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn side(&self, side: Side) -> &BTreeMap<i64, VecDeque<u64>> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Highest bid.
    pub(crate) fn best_bid(&self) -> Option<i64> {
        self.bids.keys().next_back().copied()
    }

    /// Lowest ask.
    pub(crate) fn best_ask(&self) -> Option<i64> {
        self.asks.keys().next().copied()
    }

    /// Best price of `side`.
    pub(crate) fn best(&self, side: Side) -> Option<i64> {
        match side {
            Side::Buy => self.best_bid(),
            Side::Sell => self.best_ask(),
        }
    }

    /// Whether an order on `side` at `price` would trade immediately.
    pub(crate) fn crosses(&self, side: Side, price: i64) -> bool {
        match side {
            Side::Buy => self.best_ask().is_some_and(|a| price >= a),
            Side::Sell => self.best_bid().is_some_and(|b| price <= b),
        }
    }

    /// A resting order.
    pub(crate) fn get(&self, id: u64) -> Option<&Resting> {
        self.orders.get(&id)
    }

    /// Rests an order at the back of its level. The caller makes sure it does
    /// not cross (see [`crosses`](Self::crosses)); zero amounts are ignored.
    pub(crate) fn insert(&mut self, order: Resting) {
        if order.remaining == 0 || self.orders.contains_key(&order.id) {
            return;
        }
        self.side_mut(order.side).entry(order.price).or_default().push_back(order.id);
        self.orders.insert(order.id, order);
    }

    /// Takes a resting order out of the book.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Resting> {
        let order = self.orders.remove(&id)?;
        let levels = self.side_mut(order.side);
        if let Some(queue) = levels.get_mut(&order.price) {
            queue.retain(|&o| o != id);
            if queue.is_empty() {
                levels.remove(&order.price);
            }
        }
        Some(order)
    }

    /// Liquidity (up to `cap`) an order on `side` limited to `limit` (`None`:
    /// any price) could take right now.
    pub(crate) fn available(&self, side: Side, limit: Option<i64>, cap: u64) -> u64 {
        let acceptable = |p: i64| limit.is_none_or(|l| if side == Side::Buy { p <= l } else { p >= l });
        let opposite = self.side(side.opposite());
        let prices: Box<dyn Iterator<Item = (&i64, &VecDeque<u64>)>> =
            if side == Side::Buy { Box::new(opposite.iter()) } else { Box::new(opposite.iter().rev()) };
        let mut total = 0u64;
        for (&price, queue) in prices {
            if !acceptable(price) || total >= cap {
                break;
            }
            for id in queue {
                total = total.saturating_add(self.orders.get(id).map_or(0, |o| o.remaining));
            }
        }
        total.min(cap)
    }

    /// Matches an incoming order on `side` for `amount`, limited to `limit`
    /// (`None`: a market order), against resting orders in price-time
    /// priority. Returns the fills; the unfilled rest is `amount` minus their sum.
    pub(crate) fn take(&mut self, side: Side, limit: Option<i64>, amount: u64) -> Vec<Fill> {
        let mut fills = Vec::new();
        let mut left = amount;
        while left > 0 {
            let Some(price) = self.best(side.opposite()) else { break };
            if limit.is_some_and(|l| if side == Side::Buy { price > l } else { price < l }) {
                break;
            }
            let Some(&maker_id) = self.side(side.opposite()).get(&price).and_then(|q| q.front()) else {
                break;
            };
            let Some(maker) = self.orders.get_mut(&maker_id) else {
                // Unreachable by construction; drop the stale id rather than loop.
                self.drop_front(side.opposite(), price);
                continue;
            };
            let traded = left.min(maker.remaining);
            maker.remaining -= traded;
            left -= traded;
            fills.push(Fill {
                maker_id,
                maker_owner: maker.owner,
                price,
                amount: traded,
                maker_remaining: maker.remaining,
            });
            if maker.remaining == 0 {
                self.remove(maker_id);
            }
        }
        fills
    }

    fn drop_front(&mut self, side: Side, price: i64) {
        let levels = self.side_mut(side);
        if let Some(queue) = levels.get_mut(&price) {
            queue.pop_front();
            if queue.is_empty() {
                levels.remove(&price);
            }
        }
    }

    /// Aggregated amount per price on `side`.
    pub(crate) fn levels(&self, side: Side) -> Levels {
        self.side(side)
            .iter()
            .map(|(&price, queue)| (price, queue.iter().map(|id| self.orders.get(id).map_or(0, |o| o.remaining)).sum()))
            .collect()
    }

    /// Number of price levels on `side`.
    pub(crate) fn level_count(&self, side: Side) -> usize {
        self.side(side).len()
    }

    /// Worst (furthest from the spread) price on `side`.
    pub(crate) fn worst(&self, side: Side) -> Option<i64> {
        match side {
            Side::Buy => self.bids.keys().next().copied(),
            Side::Sell => self.asks.keys().next_back().copied(),
        }
    }

    /// Ids of resting orders owned by `owner` on `side`, oldest id first.
    pub(crate) fn ids_of(&self, owner: Owner, side: Side) -> Vec<u64> {
        self.orders.values().filter(|o| o.owner == owner && o.side == side).map(|o| o.id).collect()
    }

    /// Ids of the orders at `price` on `side`, in time priority.
    pub(crate) fn queue(&self, side: Side, price: i64) -> Vec<u64> {
        self.side(side).get(&price).map(|q| q.iter().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{Book, Owner, Resting, Side};

    fn order(id: u64, owner: Owner, side: Side, price: i64, remaining: u64) -> Resting {
        Resting { id, owner, side, price, remaining }
    }

    #[test]
    fn price_time_priority() {
        let mut book = Book::default();
        book.insert(order(1, Owner::Market, Side::Sell, 101, 10));
        book.insert(order(2, Owner::Account(0), Side::Sell, 100, 5));
        book.insert(order(3, Owner::Market, Side::Sell, 100, 7));
        book.insert(order(4, Owner::Market, Side::Buy, 99, 3));
        assert_eq!((book.best_bid(), book.best_ask()), (Some(99), Some(100)));
        assert_eq!(book.available(Side::Buy, Some(100), u64::MAX), 12);
        let fills = book.take(Side::Buy, Some(101), 15);
        let got: Vec<_> = fills.iter().map(|f| (f.maker_id, f.price, f.amount, f.maker_remaining)).collect();
        assert_eq!(got, vec![(2, 100, 5, 0), (3, 100, 7, 0), (1, 101, 3, 7)]);
        assert_eq!(book.best_ask(), Some(101));
        assert_eq!(book.levels(Side::Sell).into_iter().collect::<Vec<_>>(), vec![(101, 7)]);
    }

    #[test]
    fn limit_stops_matching_and_market_sweeps() {
        let mut book = Book::default();
        book.insert(order(1, Owner::Market, Side::Buy, 50, 10));
        book.insert(order(2, Owner::Market, Side::Buy, 49, 10));
        assert!(book.take(Side::Sell, Some(51), 5).is_empty());
        assert!(book.crosses(Side::Sell, 50) && !book.crosses(Side::Sell, 51));
        let fills = book.take(Side::Sell, None, 100);
        assert_eq!(fills.iter().map(|f| f.amount).sum::<u64>(), 20);
        assert_eq!(book.best_bid(), None);
    }

    #[test]
    fn remove_cleans_levels() {
        let mut book = Book::default();
        book.insert(order(1, Owner::Account(1), Side::Buy, 10, 1));
        book.insert(order(2, Owner::Account(1), Side::Buy, 10, 2));
        assert_eq!(book.queue(Side::Buy, 10), vec![1, 2]);
        assert_eq!(book.remove(1).map(|o| o.remaining), Some(1));
        assert_eq!(book.remove(1), None);
        assert_eq!(book.levels(Side::Buy).get(&10), Some(&2));
        book.remove(2);
        assert_eq!(book.level_count(Side::Buy), 0);
        assert_eq!(book.ids_of(Owner::Account(1), Side::Buy), Vec::<u64>::new());
    }
}
