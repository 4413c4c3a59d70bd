//! One instrument's market: its book, index price, trade tape state and the
//! seeded generator that moves it (passive quotes, cancels, aggressive takers).

use super::book::{Book, Fill, Levels, Owner, Resting, Side};
use super::instrument::InstrumentSpec;
use super::rng::SplitMix64;

/// The generator keeps at least this many price levels on each side.
const MIN_LEVELS: usize = 5;
/// ... and trims its own orders beyond this many.
const MAX_LEVELS: usize = 12;
/// Levels per side the book starts with.
const START_LEVELS: usize = 10;
/// Passive quotes go this many ticks (at most) away from the index.
const QUOTE_SPREAD: i64 = 20;

/// Venue-wide id counters (order and trade ids are unique across instruments).
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    next_order: u64,
    next_trade: u64,
}

impl Ids {
    /// Counters starting at plausible-looking values.
    pub(crate) fn new() -> Self {
        Self { next_order: 3_000_000_001, next_trade: 200_000_001 }
    }

    /// A fresh order id.
    pub(crate) fn order(&mut self) -> u64 {
        let id = self.next_order;
        self.next_order += 1;
        id
    }

    fn trade(&mut self) -> u64 {
        let id = self.next_trade;
        self.next_trade += 1;
        id
    }
}

/// A trade as printed on the tape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TradeRecord {
    pub(crate) trade_id: u64,
    pub(crate) trade_seq: u64,
    pub(crate) price: i64,
    pub(crate) amount: u64,
    /// The taker's side (Deribit's `direction`).
    pub(crate) taker: Side,
    /// 0 plus tick, 1 zero-plus tick, 2 minus tick, 3 zero-minus tick.
    pub(crate) tick_direction: u8,
    pub(crate) index: i64,
    pub(crate) mark: i64,
}

/// A fill and the trade it printed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Execution {
    pub(crate) fill: Fill,
    pub(crate) trade: TradeRecord,
}

/// 24h-style statistics (since the simulator started).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stats {
    pub(crate) high: i64,
    pub(crate) low: i64,
    pub(crate) volume_usd: u64,
    /// In the base currency.
    pub(crate) volume: f64,
}

/// The market of one instrument.
#[derive(Debug, Clone)]
pub(crate) struct Market {
    pub(crate) spec: InstrumentSpec,
    pub(crate) book: Book,
    /// Index price, in ticks (a random walk).
    pub(crate) index: i64,
    start: i64,
    pub(crate) change_id: u64,
    pub(crate) trade_seq: u64,
    pub(crate) last_price: i64,
    last_tick_direction: u8,
    pub(crate) stats: Stats,
    pub(crate) open_interest: u64,
}

impl Market {
    /// A market around the instrument's start price with a seeded book.
    pub(crate) fn new(spec: InstrumentSpec, rng: &mut SplitMix64, ids: &mut Ids) -> Self {
        let start = spec.ticks(spec.start_price).unwrap_or(1);
        let mut market = Self {
            spec,
            book: Book::default(),
            index: start,
            start,
            change_id: 1,
            trade_seq: 1,
            last_price: start,
            last_tick_direction: 0,
            stats: Stats { high: start, low: start, volume_usd: 0, volume: 0.0 },
            open_interest: 50_000_000 * spec.contract_size,
        };
        for side in [Side::Buy, Side::Sell] {
            let mut price = start;
            for _ in 0..START_LEVELS {
                price += if side == Side::Buy { -rng.range_i64(1, 3) } else { rng.range_i64(1, 3) };
                market.quote(rng, ids, side, price);
            }
        }
        market
    }

    /// Mark price in ticks: the mid when both sides are quoted, else the index.
    pub(crate) fn mark(&self) -> i64 {
        match (self.book.best_bid(), self.book.best_ask()) {
            (Some(b), Some(a)) => (b + a).div_euclid(2),
            _ => self.index,
        }
    }

    /// Both sides' aggregated levels (bids, asks).
    pub(crate) fn levels(&self) -> (Levels, Levels) {
        (self.book.levels(Side::Buy), self.book.levels(Side::Sell))
    }

    /// Price change since the start, in percent.
    pub(crate) fn price_change(&self) -> f64 {
        let pct = (self.last_price - self.start) as f64 * 100.0 / self.start as f64;
        (pct * 10_000.0).round() / 10_000.0
    }

    /// Prints a trade on the tape and updates statistics.
    pub(crate) fn record_trade(&mut self, ids: &mut Ids, price: i64, amount: u64, taker: Side) -> TradeRecord {
        let tick_direction = if price > self.last_price {
            0
        } else if price < self.last_price {
            2
        } else if self.last_tick_direction <= 1 {
            1
        } else {
            3
        };
        self.last_tick_direction = tick_direction;
        self.last_price = price;
        self.trade_seq += 1;
        self.stats.high = self.stats.high.max(price);
        self.stats.low = self.stats.low.min(price);
        self.stats.volume_usd = self.stats.volume_usd.saturating_add(amount);
        self.stats.volume += amount as f64 / self.spec.price(price);
        self.open_interest = match taker {
            Side::Buy => self.open_interest.saturating_add(amount),
            Side::Sell => self.open_interest.saturating_sub(amount),
        };
        TradeRecord {
            trade_id: ids.trade(),
            trade_seq: self.trade_seq,
            price,
            amount,
            taker,
            tick_direction,
            index: self.index,
            mark: self.mark(),
        }
    }

    /// Takes liquidity for an incoming order and prints the trades.
    pub(crate) fn execute(&mut self, ids: &mut Ids, side: Side, limit: Option<i64>, amount: u64) -> Vec<Execution> {
        let fills = self.book.take(side, limit, amount);
        fills
            .into_iter()
            .map(|fill| {
                let trade = self.record_trade(ids, fill.price, fill.amount, side);
                Execution { fill, trade }
            })
            .collect()
    }

    /// Rests a simulated passive order at `price` (moved away from the spread
    /// if it would cross).
    fn quote(&mut self, rng: &mut SplitMix64, ids: &mut Ids, side: Side, price: i64) {
        let price = match side {
            Side::Buy => self.book.best_ask().map_or(price, |a| price.min(a - 1)),
            Side::Sell => self.book.best_bid().map_or(price, |b| price.max(b + 1)),
        }
        .max(1);
        if self.book.crosses(side, price) {
            return;
        }
        let amount = self.spec.contract_size * (1 + rng.below(50));
        self.book.insert(Resting { id: ids.order(), owner: Owner::Market, side, price, remaining: amount });
    }

    /// One step of simulated market activity. Returns the trades it caused
    /// (fills of account orders among them).
    pub(crate) fn step(&mut self, rng: &mut SplitMix64, ids: &mut Ids) -> Vec<Execution> {
        self.index = (self.index + rng.range_i64(-2, 2)).max(1);
        let mut executions = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let side = if rng.chance(50) { Side::Buy } else { Side::Sell };
            match rng.below(10) {
                0..=4 => {
                    let offset = rng.range_i64(1, QUOTE_SPREAD);
                    let price = if side == Side::Buy { self.index - offset } else { self.index + offset };
                    self.quote(rng, ids, side, price);
                }
                5..=6 => self.cancel_one(rng, side),
                _ => {
                    // Takers lean towards the index, pulling the book after it.
                    let side = match self.index.cmp(&self.mark()) {
                        std::cmp::Ordering::Greater if rng.chance(70) => Side::Buy,
                        std::cmp::Ordering::Less if rng.chance(70) => Side::Sell,
                        _ => side,
                    };
                    let amount = self.spec.contract_size * (1 + rng.below(30));
                    executions.extend(self.execute(ids, side, None, amount));
                }
            }
        }
        self.maintain(rng, ids);
        executions
    }

    /// Cancels one simulated order on `side`: a random one or the one furthest from the index.
    fn cancel_one(&mut self, rng: &mut SplitMix64, side: Side) {
        let ids = self.book.ids_of(Owner::Market, side);
        if ids.is_empty() {
            return;
        }
        let victim = if rng.chance(50) {
            usize::try_from(rng.below(ids.len() as u64)).ok().and_then(|i| ids.get(i).copied())
        } else {
            let distance = |id: &u64| self.book.get(*id).map_or(0, |o| (o.price - self.index).abs());
            ids.iter().copied().max_by_key(distance)
        };
        if let Some(id) = victim {
            self.book.remove(id);
        }
    }

    /// Keeps between [`MIN_LEVELS`] and [`MAX_LEVELS`] levels per side.
    fn maintain(&mut self, rng: &mut SplitMix64, ids: &mut Ids) {
        for side in [Side::Buy, Side::Sell] {
            for _ in 0..2 * MIN_LEVELS {
                if self.book.level_count(side) >= MIN_LEVELS {
                    break;
                }
                let gap = rng.range_i64(1, 3);
                let price = match (side, self.book.worst(side)) {
                    (Side::Buy, Some(w)) => w - gap,
                    (Side::Sell, Some(w)) => w + gap,
                    (Side::Buy, None) => self.index - gap,
                    (Side::Sell, None) => self.index + gap,
                };
                self.quote(rng, ids, side, price);
            }
            while self.book.level_count(side) > MAX_LEVELS {
                let Some(worst) = self.book.worst(side) else { break };
                let ours: Vec<u64> = self
                    .book
                    .queue(side, worst)
                    .into_iter()
                    .filter(|id| self.book.get(*id).is_some_and(|o| o.owner == Owner::Market))
                    .collect();
                if ours.is_empty() {
                    break;
                }
                for id in ours {
                    self.book.remove(id);
                }
                if self.book.worst(side) == Some(worst) {
                    break; // an account order keeps this level alive
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Ids, MIN_LEVELS, Market};
    use crate::deribit::book::Side;
    use crate::deribit::instrument::INSTRUMENTS;
    use crate::deribit::rng::SplitMix64;

    fn run(seed: u64, steps: usize) -> Vec<String> {
        let (mut rng, mut ids) = (SplitMix64::new(seed), Ids::new());
        let mut market = Market::new(INSTRUMENTS[0], &mut rng, &mut ids);
        (0..steps).map(|_| format!("{:?} {:?}", market.step(&mut rng, &mut ids), market.levels())).collect()
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(run(42, 300), run(42, 300));
        assert_ne!(run(42, 300), run(43, 300));
    }

    #[test]
    fn book_never_crossed_and_stays_populated() {
        for (seed, spec) in [(1, INSTRUMENTS[0]), (2, INSTRUMENTS[1]), (3, INSTRUMENTS[0])] {
            let (mut rng, mut ids) = (SplitMix64::new(seed), Ids::new());
            let mut market = Market::new(spec, &mut rng, &mut ids);
            let mut trades = 0;
            let mut last_seq = market.trade_seq;
            for step in 0..5_000 {
                for e in market.step(&mut rng, &mut ids) {
                    trades += 1;
                    assert!(e.trade.trade_seq > last_seq);
                    last_seq = e.trade.trade_seq;
                    assert_eq!(e.trade.amount % spec.contract_size, 0);
                }
                let (bid, ask) = (market.book.best_bid(), market.book.best_ask());
                assert!(matches!((bid, ask), (Some(b), Some(a)) if b < a), "crossed at step {step}: {bid:?} {ask:?}");
                assert!(market.book.level_count(Side::Buy) >= MIN_LEVELS);
                assert!(market.book.level_count(Side::Sell) >= MIN_LEVELS);
                assert!(market.book.level_count(Side::Sell) <= 3 * MIN_LEVELS);
            }
            assert!(trades > 500, "{trades}");
            // The book follows the index instead of drifting apart from it.
            assert!((market.mark() - market.index).abs() < 200, "{} {}", market.mark(), market.index);
        }
    }
}
