//! [`Dedup`]: redundant mode's deduplication, a sans-IO state machine bounded in bytes.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::mem::size_of;

use crate::event::Channel;

/// What [`Dedup`] says of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before, in order (keyed: above the channel's high-water mark): deliver.
    New,
    /// Keyed, never delivered, but below the high-water mark: deliver, out of order.
    Late,
    /// Delivered already: drop.
    Duplicate,
    /// Keyed, at or below the channel's floor (every member's stream has passed it): dropped
    /// as a duplicate.
    Stale,
}

impl Verdict {
    /// Whether the message is to be delivered.
    pub fn deliver(self) -> bool {
        matches!(self, Verdict::New | Verdict::Late)
    }
}

/// Counters of a [`Dedup`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Messages delivered (keyed and unkeyed, late ones included).
    pub delivered: u64,
    /// Of those, keyed ones delivered late (out of order).
    pub late: u64,
    /// Of those, unkeyed ones (deduplicated by content).
    pub unkeyed: u64,
    /// Copies dropped as duplicates.
    pub duplicates: u64,
    /// Keyed messages dropped as at or below the floor.
    pub stale: u64,
    /// Closed ranges folded into the floor because there were more than `ranges` of them
    /// (their gaps forgotten).
    pub folded: u64,
    /// Channels tracked now.
    pub channels: usize,
    /// Bytes the state holds now ([`Dedup::memory_bytes`]).
    pub memory_bytes: usize,
}

/// A decision not yet recorded: [`Dedup::probe`] gives it, [`Dedup::commit`] records it (once the
/// message is queued for the user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    verdict: Verdict,
    slot: Slot,
    member: usize,
}

impl Probe {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Keyed { key: u64 },
    Unkeyed { hash: u64 },
}

/// Keys `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lo: u64,
    hi: u64,
}

impl Range {
    fn contains(&self, k: u64) -> bool {
        self.lo <= k && k <= self.hi
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.lo <= o.hi && o.lo <= self.hi
    }
}

/// One tracked channel.
#[derive(Debug)]
struct Track {
    /// Every key at or below it counts as delivered.
    floor: Option<u64>,
    /// The largest key delivered.
    top: Option<u64>,
    /// Per member: the keys its current session has seen.
    open: Vec<Option<Range>>,
    /// Ended sessions' ranges, disjoint, at most `ranges` of them (the capacity never grows).
    closed: Vec<Range>,
}

impl Track {
    fn new(members: usize, ranges: usize) -> Self {
        Self { floor: None, top: None, open: vec![None; members], closed: Vec::with_capacity(ranges) }
    }

    fn verdict(&self, key: u64) -> Verdict {
        let Some(top) = self.top else { return Verdict::New };
        if self.open.iter().flatten().chain(&self.closed).any(|r| r.contains(key)) {
            return Verdict::Duplicate;
        }
        if self.floor.is_some_and(|f| key <= f) {
            return Verdict::Stale;
        }
        if key > top { Verdict::New } else { Verdict::Late }
    }

    /// `member`'s stream has reached `key`: its range grows (absorbing closed ranges it meets).
    fn record(&mut self, member: usize, key: u64) {
        self.top = Some(self.top.map_or(key, |t| t.max(key)));
        let Some(slot) = self.open.get_mut(member) else { return };
        let starts = slot.is_none();
        let mut range = match *slot {
            None => Range { lo: key, hi: key },
            Some(r) => Range { lo: r.lo, hi: r.hi.max(key) },
        };
        self.closed.retain(|c| {
            let meets = c.overlaps(&range);
            if meets {
                range.lo = range.lo.min(c.lo);
                range.hi = range.hi.max(c.hi);
            }
            !meets
        });
        *slot = Some(range);
        if starts {
            self.fold();
        }
    }

    /// `member`'s session ended: its range is closed. Returns how many were folded for room.
    fn end_session(&mut self, member: usize, ranges: usize) -> u64 {
        let Some(mut range) = self.open.get_mut(member).and_then(Option::take) else { return 0 };
        self.closed.retain(|c| {
            let meets = c.overlaps(&range);
            if meets {
                range.lo = range.lo.min(c.lo);
                range.hi = range.hi.max(c.hi);
            }
            !meets
        });
        self.fold();
        let mut folded = 0;
        while self.closed.len() >= ranges.max(1) {
            // The lowest goes into the floor; its gap below is forgotten.
            let Some(i) = (0..self.closed.len()).min_by_key(|&i| self.closed[i].lo) else { break };
            let lowest = self.closed.swap_remove(i);
            self.floor = Some(self.floor.map_or(lowest.hi, |f| f.max(lowest.hi)));
            folded += 1;
        }
        if self.floor.is_none_or(|f| range.hi > f) {
            self.closed.push(range);
        }
        folded
    }

    /// Folds into the floor the closed ranges every member has passed. Only while every
    /// member's session is open: an open stream never goes back below its own position, and
    /// its next session starts at the venue's latest, above it; but a member between sessions
    /// may still hold, queued, a session that began long before the ranges others closed since.
    fn fold(&mut self) {
        if self.open.iter().any(Option::is_none) {
            return;
        }
        let Some(low) = self.open.iter().flatten().map(|r| r.hi).min() else { return };
        let mut floor = self.floor;
        self.closed.retain(|c| {
            let passed = c.hi <= low;
            if passed {
                floor = Some(floor.map_or(c.hi, |f| f.max(c.hi)));
            }
            !passed
        });
        self.floor = floor;
    }
}

/// An unkeyed message delivered: its hash and the members whose copy was seen (bit `m`).
#[derive(Debug, Clone, Copy)]
struct Seen {
    hash: u64,
    members: u64,
}

/// Redundant mode's deduplication: a sans-IO state machine, bounded in bytes.
///
/// **Keyed messages** (a channel the pool subscribed to, and a key from the
/// [`SequenceExtractor`](super::SequenceExtractor)). Each member's stream of a channel is in
/// key order and complete while its connection lasts (TCP, one venue session): between two
/// keys it delivered, there was nothing else. So what a member has seen since it last
/// (re)connected is one *range* of keys, `[first, last]`, and what has been delivered is the
/// union of the members' ranges: per channel, the high-water mark (the largest key
/// delivered), each member's open range, the ranges of ended sessions not yet merged, and a
/// floor below which everything counts as delivered. A key
/// - above the high-water mark is new: delivered;
/// - inside a range (or at or below the floor) was delivered: a duplicate (*stale* when only
///   the floor says so);
/// - below the high-water mark but in no range was never delivered: delivered, marked *late*.
///   This is how a member that reconnected and starts ahead of the other (its new snapshot)
///   does not make the other's backlog look old: the other's keys fall in the gap between
///   the ranges, however long its backlog, and the other's range grows until it meets.
///
/// Either way the key extends the member's own range. When a member's session ends (its
/// `Disconnected`, or a `Dropped`: its own queue lost messages) its range is closed; while
/// every member has a session open, a closed range they have all passed folds into the floor
/// (an open stream never goes back there, and a new session starts at the venue's latest; a
/// member between sessions may still have, queued, a session that began before ranges the
/// others closed since, so it holds the folding back). At most `ranges` closed ranges are kept
/// per channel; past that the lowest folds into the floor anyway, its gap below forgotten
/// (counted in [`DedupStats::folded`]): a key of that gap a lagging member still brings is then
/// taken for stale. Closed ranges pile up only while gaps stay open: every member down at once,
/// or members reconnecting again and again ahead of one lagging behind them.
///
/// A key at or below a member's own previous one, and inside its range, is a duplicate: a
/// venue that reorders one connection's stream loses the late one (Deribit does not; its book
/// integrity check would report the gap).
///
/// **Unkeyed messages** (no key, or a channel the pool did not subscribe to): a window of the
/// last `unkeyed_window` messages, as a hash of channel and payload (keyed SipHash, random per
/// pool) and the members that delivered a copy. A copy from a member not yet in that set is a
/// duplicate; a copy from a member already in it is a new message with the same content (a
/// venue may send the same thing twice), delivered. A member lagging more than the window
/// behind the first gets its copies delivered again.
///
/// Memory: per tracked channel one open range per member (24 bytes) and `ranges` closed ones
/// (16 bytes), its map entry and its name; plus `unkeyed_window × 16` bytes. All of it is allocated
/// when a channel is [`track`](Dedup::track)ed, and only channels the pool subscribed are (at
/// most its per-connection limit), so what a peer sends cannot grow it.
/// [`Dedup::memory_bytes`] counts it from the capacities.
///
/// ```
/// use moorline_client::pool::{Dedup, Verdict};
///
/// let mut dedup = Dedup::new(2, 8, 16);
/// dedup.track("book.BTC-PERPETUAL.100ms".into());
/// let ch = Some("book.BTC-PERPETUAL.100ms");
/// assert_eq!(dedup.offer(0, ch, Some(10), b"a"), Verdict::New);
/// assert_eq!(dedup.offer(1, ch, Some(10), b"a"), Verdict::Duplicate); // the other member's copy
/// dedup.end_session(0); // member 0 reconnects: its new snapshot is 30
/// assert_eq!(dedup.offer(0, ch, Some(30), b"c"), Verdict::New);
/// assert_eq!(dedup.offer(1, ch, Some(20), b"b"), Verdict::Late); // member 1's backlog: never delivered
/// assert_eq!(dedup.offer(1, ch, Some(30), b"c"), Verdict::Duplicate);
/// assert_eq!(dedup.stats().delivered, 3);
/// ```
#[derive(Debug)]
pub struct Dedup {
    members: usize,
    ranges: usize,
    unkeyed_window: usize,
    channels: HashMap<Channel, Track>,
    unkeyed: VecDeque<Seen>,
    hasher: RandomState,
    stats: DedupStats,
}

/// Members a [`Dedup`] tells apart (a bit each in an unkeyed entry).
pub const MAX_MEMBERS: usize = 64;

impl Dedup {
    /// For `members` members (at most [`MAX_MEMBERS`]), keeping at most `ranges` closed ranges
    /// per tracked channel and the last `unkeyed_window` unkeyed messages (each at least 1).
    pub fn new(members: usize, ranges: usize, unkeyed_window: usize) -> Self {
        let unkeyed_window = unkeyed_window.max(1);
        Self {
            members: members.clamp(1, MAX_MEMBERS),
            ranges: ranges.max(1),
            unkeyed_window,
            channels: HashMap::new(),
            unkeyed: VecDeque::with_capacity(unkeyed_window),
            hasher: RandomState::new(),
            stats: DedupStats::default(),
        }
    }

    /// Starts deduplicating `channel` by key (`false` if it already was). Its state is
    /// allocated now, whole: the memory does not grow with the traffic.
    pub fn track(&mut self, channel: Channel) -> bool {
        if self.channels.contains_key(&channel) {
            return false;
        }
        self.channels.insert(channel, Track::new(self.members, self.ranges));
        true
    }

    /// Stops tracking `channel` (its state is freed; later messages are unkeyed).
    pub fn untrack(&mut self, channel: &str) -> bool {
        self.channels.remove(channel).is_some()
    }

    /// Whether `channel` is tracked.
    pub fn is_tracked(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// `member`'s stream was broken (its connection ended, or messages were dropped before
    /// they reached the pool): what it sends next starts a new range on every channel.
    pub fn end_session(&mut self, member: usize) {
        let ranges = self.ranges;
        let folded: u64 = self.channels.values_mut().map(|t| t.end_session(member, ranges)).sum();
        self.stats.folded += folded;
    }

    /// What to do with a message that `member` received on `channel` with `key`, without
    /// recording anything: a message whose delivery may still fail (a full queue) is recorded
    /// with [`commit`](Self::commit) once queued.
    pub fn probe(&self, member: usize, channel: Option<&str>, key: Option<u64>, payload: &[u8]) -> Probe {
        if let (Some(name), Some(key)) = (channel, key)
            && let Some(track) = self.channels.get(name)
        {
            return Probe { verdict: track.verdict(key), slot: Slot::Keyed { key }, member };
        }
        let hash = self.hasher.hash_one((channel.unwrap_or(""), payload));
        let bit = member_bit(member);
        let verdict = match self.unkeyed.iter().find(|s| s.hash == hash && s.members & bit == 0) {
            Some(_) => Verdict::Duplicate,
            None => Verdict::New,
        };
        Probe { verdict, slot: Slot::Unkeyed { hash }, member }
    }

    /// Records a probed message: delivered if its verdict says so, else counted as dropped;
    /// a keyed one extends its member's range either way. `channel` must be the one it was
    /// probed with.
    pub fn commit(&mut self, channel: Option<&str>, probe: &Probe) {
        match probe.slot {
            Slot::Keyed { key } => {
                if let Some(track) = channel.and_then(|c| self.channels.get_mut(c)) {
                    track.record(probe.member, key);
                }
                match probe.verdict {
                    Verdict::Duplicate => self.stats.duplicates += 1,
                    Verdict::Stale => self.stats.stale += 1,
                    Verdict::New => self.stats.delivered += 1,
                    Verdict::Late => {
                        self.stats.delivered += 1;
                        self.stats.late += 1;
                    }
                }
            }
            Slot::Unkeyed { hash } => {
                let bit = member_bit(probe.member);
                if probe.verdict.deliver() {
                    if self.unkeyed.len() >= self.unkeyed_window {
                        self.unkeyed.pop_front();
                    }
                    self.unkeyed.push_back(Seen { hash, members: bit });
                    self.stats.delivered += 1;
                    self.stats.unkeyed += 1;
                } else {
                    if let Some(seen) = self.unkeyed.iter_mut().find(|s| s.hash == hash && s.members & bit == 0) {
                        seen.members |= bit;
                    }
                    self.stats.duplicates += 1;
                }
            }
        }
    }

    /// [`probe`](Self::probe) and [`commit`](Self::commit) at once.
    pub fn offer(&mut self, member: usize, channel: Option<&str>, key: Option<u64>, payload: &[u8]) -> Verdict {
        let probe = self.probe(member, channel, key, payload);
        self.commit(channel, &probe);
        probe.verdict
    }

    /// The counters, and the memory held now.
    pub fn stats(&self) -> DedupStats {
        DedupStats { channels: self.channels.len(), memory_bytes: self.memory_bytes(), ..self.stats }
    }

    /// Bytes held on the heap, from the capacities: the channel map's table, each tracked
    /// channel's ranges and name (counted here though shared with the pool), and the unkeyed
    /// window.
    pub fn memory_bytes(&self) -> usize {
        let table = self.channels.capacity() * (size_of::<(Channel, Track)>() + 1);
        let tracks: usize = self
            .channels
            .iter()
            .map(|(c, t)| {
                c.len() + 16 + t.open.capacity() * size_of::<Option<Range>>() + t.closed.capacity() * size_of::<Range>()
            })
            .sum();
        table + tracks + self.unkeyed.capacity() * size_of::<Seen>()
    }

    /// The most [`memory_bytes`](Self::memory_bytes) can be for `members` members, `ranges`
    /// closed ranges and an `unkeyed_window`, with `channels` tracked channels whose names are
    /// at most `name_bytes` long (the map's table at its largest: twice the entries, rounded
    /// up to a power of two).
    pub fn memory_bound(
        members: usize,
        ranges: usize,
        unkeyed_window: usize,
        channels: usize,
        name_bytes: usize,
    ) -> usize {
        let table = (channels * 2).next_power_of_two() * (size_of::<(Channel, Track)>() + 1);
        let per_channel = name_bytes
            + 16
            + members.clamp(1, MAX_MEMBERS) * size_of::<Option<Range>>()
            + ranges.max(1) * size_of::<Range>();
        table + channels * per_channel + unkeyed_window.max(1) * size_of::<Seen>()
    }
}

fn member_bit(member: usize) -> u64 {
    1u64.checked_shl(u32::try_from(member).unwrap_or(u32::MAX)).unwrap_or(1 << 63)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const CH: Option<&str> = Some("book.A.raw");

    fn tracked(members: usize, ranges: usize) -> Dedup {
        let mut d = Dedup::new(members, ranges, 8);
        assert!(d.track(Arc::from("book.A.raw")));
        assert!(!d.track(Arc::from("book.A.raw")));
        d
    }

    /// Keys with strides, as Deribit's change ids.
    fn keys(n: u64) -> Vec<u64> {
        (1..=n)
            .scan(0, |at, i| {
                *at += 1 + i % 7;
                Some(*at)
            })
            .collect()
    }

    /// Two members with the same stream, interleaved any way: each key once, in order.
    #[test]
    fn two_copies_of_one_stream_deliver_each_key_once() {
        let mut d = tracked(2, 4);
        let keys = keys(500);
        let (mut a, mut b) = (0, 0);
        let mut out = Vec::new();
        let mut turn = 0u64;
        while a < keys.len() || b < keys.len() {
            // One member runs ahead for a while, then the other.
            turn = turn.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let from_a = b >= keys.len() || (a < keys.len() && !(turn >> 60).is_multiple_of(3));
            let (m, i) = if from_a { (0, &mut a) } else { (1, &mut b) };
            if d.offer(m, CH, Some(keys[*i]), b"x").deliver() {
                out.push(keys[*i]);
            }
            *i += 1;
        }
        assert_eq!(out, keys);
        let s = d.stats();
        assert_eq!((s.delivered, s.duplicates, s.stale, s.late), (500, 500, 0, 0));
    }

    /// A member reconnects and starts ahead (its snapshot), far ahead of the other's backlog:
    /// the backlog is delivered late, each key once, however long it is; then both meet.
    #[test]
    fn a_reconnected_member_ahead_of_the_others_backlog_loses_nothing() {
        let mut d = tracked(2, 4);
        let keys = keys(3_000);
        let mut out = Vec::new();
        let mut offer = |d: &mut Dedup, m: usize, k: u64| {
            if d.offer(m, CH, Some(k), b"").deliver() {
                out.push(k);
            }
        };
        // Both up to 100, A on to 1 000, then A's connection drops.
        for &k in &keys[..100] {
            offer(&mut d, 1, k);
        }
        for &k in &keys[..1_000] {
            offer(&mut d, 0, k);
        }
        d.end_session(0);
        // A back with its snapshot at 2 500 and on to the end, B still at 100.
        for &k in &keys[2_499..] {
            offer(&mut d, 0, k);
        }
        for &k in &keys[100..] {
            offer(&mut d, 1, k);
        }
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, keys, "each key once");
        let s = d.stats();
        assert_eq!(s.late, 1_499, "{s:?}");
        assert_eq!(s.delivered, 3_000);
        // B met A's range: one open range each, nothing closed left behind.
        let t = &d.channels["book.A.raw"];
        assert!(t.closed.is_empty(), "{t:?}");
        assert_eq!(t.open[1], Some(Range { lo: keys[0], hi: keys[2_999] }));
    }

    /// A closed range every open stream has passed folds into the floor; past `ranges` closed
    /// ones, the lowest folds anyway (counted). At or below the floor: stale.
    #[test]
    fn closed_ranges_fold_into_the_floor() {
        let mut d = tracked(2, 2);
        // All members down between sessions: gaps nobody covers stay open.
        for k in [10, 20, 30] {
            assert_eq!(d.offer(0, CH, Some(k), b""), Verdict::New);
            d.end_session(0);
        }
        let t = &d.channels["book.A.raw"];
        assert_eq!((t.closed.len(), t.floor), (2, Some(10)));
        assert_eq!(d.stats().folded, 1);
        assert_eq!(d.offer(1, CH, Some(5), b""), Verdict::Stale);
        assert_eq!(d.offer(1, CH, Some(15), b""), Verdict::Late, "in the gap: never delivered");
        assert_eq!(d.offer(1, CH, Some(20), b""), Verdict::Duplicate);
        assert_eq!(d.offer(1, CH, Some(25), b""), Verdict::Late);
        assert_eq!(d.offer(1, CH, Some(40), b""), Verdict::New);
        // B's range [5, 40] absorbed both closed ranges; A's new session passes them all.
        assert_eq!(d.offer(0, CH, Some(45), b""), Verdict::New);
        d.end_session(1);
        d.end_session(0);
        assert_eq!(d.offer(0, CH, Some(50), b""), Verdict::New);
        d.end_session(1);
        let t = &d.channels["book.A.raw"];
        assert!(t.closed.len() <= 2, "{t:?}");
        assert_eq!(d.offer(1, CH, Some(40), b""), Verdict::Duplicate);
        assert_eq!(d.stats().folded, 1);
    }

    /// A model of the pool: a venue publishes keys; 2 or 3 members, each in sessions (killed one
    /// at a time, the others up meanwhile; a new session may start with a snapshot of the
    /// latest key, as a book's does); each member's messages wait in its own queue and the
    /// queues are drained in random bursts (backlogs of any length, either member ahead).
    /// Every key delivered exactly once, whatever the interleaving. (This model found that
    /// folding closed ranges while a member was between sessions lost keys: that member's
    /// queued session may have begun before ranges the others closed since.)
    #[test]
    fn any_interleaving_of_member_sessions_delivers_each_key_once() {
        #[derive(Debug, Clone, Copy)]
        enum Ev {
            Msg(u64),
            End,
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..300 {
            let members = 2 + (round % 2);
            let n = 2_000;
            let keys = keys(n as u64);
            // Who is down when: one member at a time, for a random spell.
            let mut down: Vec<Option<usize>> = vec![None; n];
            let mut i = 50;
            while i < n {
                let m = rand(members as u64) as usize;
                let len = 1 + rand(300) as usize;
                for d in down.iter_mut().skip(i).take(len) {
                    *d = Some(m);
                }
                i += len + 1 + rand(200) as usize;
            }
            let mut queues: Vec<VecDeque<Ev>> = vec![VecDeque::new(); members];
            for (i, &k) in keys.iter().enumerate() {
                for (m, q) in queues.iter_mut().enumerate() {
                    let was_down = i > 0 && down[i - 1] == Some(m);
                    if down[i] == Some(m) {
                        if !was_down {
                            q.push_back(Ev::End);
                        }
                        continue;
                    }
                    if was_down && rand(2) == 0 {
                        q.push_back(Ev::Msg(keys[i - 1])); // a snapshot of the latest
                    }
                    q.push_back(Ev::Msg(k));
                }
            }
            let mut d = Dedup::new(members, 64, 8);
            d.track(Arc::from("book.A.raw"));
            let mut out = Vec::new();
            while queues.iter().any(|q| !q.is_empty()) {
                let m = rand(members as u64) as usize;
                for _ in 0..1 + rand(400) {
                    match queues[m].pop_front() {
                        Some(Ev::Msg(k)) => {
                            if d.offer(m, CH, Some(k), b"").deliver() {
                                out.push(k);
                            }
                        }
                        Some(Ev::End) => d.end_session(m),
                        None => break,
                    }
                }
            }
            // Enough closed ranges never to fold one for room (that is what loses keys).
            assert_eq!(d.stats().folded, 0, "round {round}");
            let mut sorted = out.clone();
            sorted.sort_unstable();
            assert_eq!(sorted.len(), keys.len(), "round {round}: {:?}", d.stats());
            assert_eq!(sorted, keys, "round {round}: {:?}", d.stats());
        }
    }

    /// With every member's session open and past it, a closed range folds into the floor.
    #[test]
    fn a_closed_range_every_member_passed_folds() {
        let mut d = tracked(2, 4);
        for k in [1, 2, 3] {
            d.offer(0, CH, Some(k), b"");
            d.offer(1, CH, Some(k), b"");
        }
        d.end_session(1);
        assert_eq!(d.channels["book.A.raw"].closed, [Range { lo: 1, hi: 3 }]);
        // B back with a snapshot at 10: both open, both at 3 or past: [1, 3] folds.
        assert_eq!(d.offer(1, CH, Some(10), b""), Verdict::New);
        let t = &d.channels["book.A.raw"];
        assert_eq!((t.floor, t.closed.len()), (Some(3), 0));
        assert_eq!(d.offer(0, CH, Some(5), b""), Verdict::Late, "A's stream fills B's gap");
        assert_eq!(d.offer(0, CH, Some(10), b""), Verdict::Duplicate);
        assert_eq!(d.offer(1, CH, Some(2), b""), Verdict::Duplicate, "inside A's range");
        d.end_session(0);
        assert_eq!(d.channels["book.A.raw"].closed, [Range { lo: 1, hi: 10 }], "A's session, closed");
        assert_eq!(d.offer(0, CH, Some(11), b""), Verdict::New);
        assert_eq!(d.stats().folded, 0);
    }

    /// A probe that is not committed changes nothing (the message was not queued).
    #[test]
    fn probe_alone_records_nothing() {
        let mut d = tracked(2, 4);
        let p = d.probe(0, CH, Some(1), b"");
        assert_eq!(p.verdict(), Verdict::New);
        assert_eq!(d.probe(1, CH, Some(1), b"").verdict(), Verdict::New);
        d.commit(CH, &p);
        assert_eq!(d.probe(1, CH, Some(1), b"").verdict(), Verdict::Duplicate);
    }

    #[test]
    fn unkeyed_copies_are_matched_per_member() {
        let mut d = Dedup::new(2, 4, 3);
        let o = Some("user.orders.A.raw");
        assert_eq!(d.offer(0, o, None, b"filled"), Verdict::New);
        assert_eq!(d.offer(0, o, None, b"filled"), Verdict::New, "the venue sent it twice");
        assert_eq!(d.offer(1, o, None, b"filled"), Verdict::Duplicate);
        assert_eq!(d.offer(1, o, None, b"filled"), Verdict::Duplicate);
        assert_eq!(d.offer(1, o, None, b"filled"), Verdict::New, "a third one, from B first");
        assert_eq!(d.offer(0, Some("other"), None, b"filled"), Verdict::New, "the channel counts");
        // A key on a channel not tracked: by content.
        assert_eq!(d.offer(0, Some("untracked"), Some(5), b"p"), Verdict::New);
        assert_eq!(d.offer(1, Some("untracked"), Some(5), b"p"), Verdict::Duplicate);
        assert_eq!(d.stats().unkeyed, 5);
        assert_eq!(member_bit(70), 1 << 63);
    }

    /// A flood of a million messages (tracked channels, untracked ones, unkeyed, keys in every
    /// order, sessions ending) never takes the state past its bound, and after the first
    /// messages it does not grow at all.
    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let (members, ranges, unkeyed_window, channels) = (3, 8, 256, 50);
        let mut d = Dedup::new(members, ranges, unkeyed_window);
        let names: Vec<String> = (0..channels).map(|i| format!("book.INSTRUMENT-{i:04}.100ms")).collect();
        for n in &names {
            d.track(Arc::from(n.as_str()));
        }
        let bound = Dedup::memory_bound(members, ranges, unkeyed_window, channels, names[0].len());
        let start = d.memory_bytes();
        assert!(start <= bound, "{start} > {bound}");
        let mut x = 1u64;
        for i in 0..1_000_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let member = (x % members as u64) as usize;
            let payload = x.to_le_bytes();
            match x % 5 {
                0 => d.offer(member, Some(&names[(x % 50) as usize]), Some(i / 2), &payload),
                1 => d.offer(member, Some(&names[(x % 50) as usize]), Some(x % 1_000_000), &payload),
                2 => d.offer(member, Some(&format!("unknown.{x}")), Some(x), &payload),
                3 if x.is_multiple_of(7) => {
                    d.end_session(member);
                    Verdict::New
                }
                _ => d.offer(member, None, None, &payload),
            };
            if i % 10_000 == 0 {
                assert_eq!(d.memory_bytes(), start, "grew at message {i}");
            }
        }
        assert_eq!(d.memory_bytes(), start);
        assert!(bound < 64 << 10, "{bound}");
        let s = d.stats();
        assert_eq!(s.channels, 50);
        assert!(s.delivered > 0 && s.duplicates > 0, "{s:?}");
        for n in &names {
            assert!(d.untrack(n));
        }
        assert!(d.memory_bytes() <= bound);
    }
}
