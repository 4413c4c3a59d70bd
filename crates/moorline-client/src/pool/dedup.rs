//! [`Dedup`]: redundant mode's deduplication, a sans-IO state machine bounded in bytes.
//!
//! **Keyed messages** (a channel the pool subscribed to, and a key from the
//! [`SequenceExtractor`](super::SequenceExtractor)): per channel, the high-water mark (the
//! largest key delivered) and a window of the last `window` keys delivered, sorted. A key
//! - above the high-water mark is new: delivered;
//! - in the window was delivered: a duplicate;
//! - below the high-water mark, not in the window but not older than it either (the window is
//!   not full yet, or the key is above its smallest) is an out-of-order arrival that was never
//!   delivered: delivered, marked *late* (e.g. a member that reconnected delivered a new
//!   snapshot before the other member's last changes arrived);
//! - below a full window is *stale*: too old to tell, taken for a duplicate (a member lagging
//!   more than `window` messages behind the other: the leader delivered those).
//!
//! **Unkeyed messages** (no key, or a channel the pool did not subscribe to): a window of the
//! last `unkeyed_window` messages, as a hash of channel and payload (keyed SipHash, random per
//! pool) and the members that delivered a copy. A copy from a member not yet in that set is a
//! duplicate; a copy from a member already in it is a new message with the same content (a
//! venue may send the same thing twice), delivered. A member lagging more than the window
//! behind the first gets its copies delivered again.
//!
//! Memory: per tracked channel `window × 8` bytes of keys, its map entry and its name; plus
//! `unkeyed_window × 16` bytes. Only channels [`track`](Dedup::track)ed take a place (the pool
//! tracks the channels it subscribed, at most its per-connection limit), so what a peer sends
//! cannot grow it. [`Dedup::memory_bytes`] counts it from the capacities.
//!
//! ```
//! use moorline_client::pool::{Dedup, Verdict};
//!
//! let mut dedup = Dedup::new(4, 16);
//! dedup.track("book.BTC-PERPETUAL.100ms".into());
//! let ch = Some("book.BTC-PERPETUAL.100ms");
//! assert_eq!(dedup.offer(0, ch, Some(10), b"a"), Verdict::New);
//! assert_eq!(dedup.offer(1, ch, Some(10), b"a"), Verdict::Duplicate); // the other member's copy
//! assert_eq!(dedup.offer(1, ch, Some(12), b"c"), Verdict::New);
//! assert_eq!(dedup.offer(0, ch, Some(11), b"b"), Verdict::Late); // never delivered: delivered now
//! assert_eq!(dedup.offer(0, ch, Some(12), b"c"), Verdict::Duplicate);
//! assert_eq!(dedup.stats().delivered, 3);
//! ```

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
    /// Keyed and older than the whole window: too old to tell; dropped as a duplicate.
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
    /// Keyed messages dropped as older than the window.
    pub stale: u64,
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

/// One tracked channel: its high-water mark and the last keys delivered, ascending.
#[derive(Debug)]
struct Track {
    recent: VecDeque<u64>,
}

impl Track {
    fn verdict(&self, key: u64, window: usize) -> Verdict {
        match self.recent.back() {
            None => Verdict::New,
            Some(&hwm) if key > hwm => Verdict::New,
            _ if self.recent.binary_search(&key).is_ok() => Verdict::Duplicate,
            _ if self.recent.len() >= window && self.recent.front().is_some_and(|&floor| key < floor) => Verdict::Stale,
            _ => Verdict::Late,
        }
    }

    fn record(&mut self, key: u64, window: usize) {
        let Err(pos) = self.recent.binary_search(&key) else { return };
        if self.recent.len() >= window {
            if pos == 0 {
                return; // older than the window: never recorded (a stale key is not delivered)
            }
            self.recent.pop_front();
            self.recent.insert(pos - 1, key);
        } else {
            self.recent.insert(pos, key);
        }
    }
}

/// An unkeyed message delivered: its hash and the members whose copy was seen (bit `m`).
#[derive(Debug, Clone, Copy)]
struct Seen {
    hash: u64,
    members: u64,
}

/// Redundant mode's deduplication; see the [module documentation](self).
#[derive(Debug)]
pub struct Dedup {
    window: usize,
    unkeyed_window: usize,
    channels: HashMap<Channel, Track>,
    unkeyed: VecDeque<Seen>,
    hasher: RandomState,
    stats: DedupStats,
}

/// Members a [`Dedup`] tells apart (a bit each in an unkeyed entry).
pub const MAX_MEMBERS: usize = 64;

impl Dedup {
    /// Keeps the last `window` keys of each tracked channel and the last `unkeyed_window`
    /// unkeyed messages (each at least 1).
    pub fn new(window: usize, unkeyed_window: usize) -> Self {
        let unkeyed_window = unkeyed_window.max(1);
        Self {
            window: window.max(1),
            unkeyed_window,
            channels: HashMap::new(),
            unkeyed: VecDeque::with_capacity(unkeyed_window),
            hasher: RandomState::new(),
            stats: DedupStats::default(),
        }
    }

    /// Starts deduplicating `channel` by key (`false` if it already was). Its window is
    /// allocated now, whole: the memory does not grow with the traffic.
    pub fn track(&mut self, channel: Channel) -> bool {
        if self.channels.contains_key(&channel) {
            return false;
        }
        self.channels.insert(channel, Track { recent: VecDeque::with_capacity(self.window) });
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

    /// What to do with a message that `member` (below [`MAX_MEMBERS`]) received on `channel`
    /// with `key`, without recording anything: a message whose delivery may still fail
    /// (a full queue) is recorded with [`commit`](Self::commit) once queued.
    pub fn probe(&self, member: usize, channel: Option<&str>, key: Option<u64>, payload: &[u8]) -> Probe {
        if let (Some(name), Some(key)) = (channel, key)
            && let Some(track) = self.channels.get(name)
        {
            return Probe { verdict: track.verdict(key, self.window), slot: Slot::Keyed { key }, member };
        }
        let hash = self.hasher.hash_one((channel.unwrap_or(""), payload));
        let bit = member_bit(member);
        let verdict = match self.unkeyed.iter().find(|s| s.hash == hash && s.members & bit == 0) {
            Some(_) => Verdict::Duplicate,
            None => Verdict::New,
        };
        Probe { verdict, slot: Slot::Unkeyed { hash }, member }
    }

    /// Records a probed message: delivered if its verdict says so, else counted as dropped.
    /// `channel` must be the one it was probed with.
    pub fn commit(&mut self, channel: Option<&str>, probe: &Probe) {
        match (probe.verdict, probe.slot) {
            (Verdict::Duplicate, Slot::Unkeyed { hash }) => {
                let bit = member_bit(probe.member);
                if let Some(seen) = self.unkeyed.iter_mut().find(|s| s.hash == hash && s.members & bit == 0) {
                    seen.members |= bit;
                }
                self.stats.duplicates += 1;
            }
            (Verdict::Duplicate, Slot::Keyed { .. }) => self.stats.duplicates += 1,
            (Verdict::Stale, _) => self.stats.stale += 1,
            (verdict, Slot::Keyed { key }) => {
                if let Some(track) = channel.and_then(|c| self.channels.get_mut(c)) {
                    track.record(key, self.window);
                }
                self.stats.delivered += 1;
                if verdict == Verdict::Late {
                    self.stats.late += 1;
                }
            }
            (_, Slot::Unkeyed { hash }) => {
                if self.unkeyed.len() >= self.unkeyed_window {
                    self.unkeyed.pop_front();
                }
                self.unkeyed.push_back(Seen { hash, members: member_bit(probe.member) });
                self.stats.delivered += 1;
                self.stats.unkeyed += 1;
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
    /// channel's window and name (counted here though shared with the pool), and the unkeyed
    /// window.
    pub fn memory_bytes(&self) -> usize {
        let table = self.channels.capacity() * (size_of::<(Channel, Track)>() + 1);
        let tracks: usize = self.channels.iter().map(|(c, t)| c.len() + 16 + t.recent.capacity() * 8).sum();
        table + tracks + self.unkeyed.capacity() * size_of::<Seen>()
    }

    /// The most [`memory_bytes`](Self::memory_bytes) can be with `channels` tracked channels
    /// whose names are at most `name_bytes` long (the map's table at its largest: twice the
    /// entries, rounded up to a power of two).
    pub fn memory_bound(window: usize, unkeyed_window: usize, channels: usize, name_bytes: usize) -> usize {
        let table = (channels * 2).next_power_of_two() * (size_of::<(Channel, Track)>() + 1);
        table + channels * (name_bytes + 16 + window.max(1) * 8) + unkeyed_window.max(1) * size_of::<Seen>()
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

    fn tracked(window: usize) -> Dedup {
        let mut d = Dedup::new(window, 8);
        assert!(d.track(Arc::from("book.A.raw")));
        assert!(!d.track(Arc::from("book.A.raw")));
        d
    }

    /// Two members with the same stream, interleaved any way: each key once, in order.
    #[test]
    fn two_copies_of_one_stream_deliver_each_key_once() {
        let mut d = tracked(16);
        let keys: Vec<u64> = (1..=200).map(|i| i * 3).collect();
        let (mut a, mut b) = (0, 0);
        let mut out = Vec::new();
        let mut turn = 0u64;
        while a < keys.len() || b < keys.len() {
            // A runs ahead for a while, then B, then A again.
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
        assert_eq!((s.delivered, s.duplicates + s.stale, s.late), (200, 200, 0));
    }

    #[test]
    fn late_arrivals_inside_the_window_are_delivered_once_older_ones_are_stale() {
        let mut d = tracked(4);
        for k in [10, 20, 30] {
            assert_eq!(d.offer(0, CH, Some(k), b""), Verdict::New);
        }
        // Not full yet: anything not delivered is late, even below the first key.
        assert_eq!(d.offer(1, CH, Some(5), b""), Verdict::Late);
        assert_eq!(d.offer(1, CH, Some(5), b""), Verdict::Duplicate);
        // Full now: [5, 10, 20, 30]. 25 is inside: late; 7 inside too; 3 is below: stale.
        assert_eq!(d.offer(1, CH, Some(25), b""), Verdict::Late); // [10, 20, 25, 30]
        assert_eq!(d.offer(1, CH, Some(7), b""), Verdict::Stale);
        assert_eq!(d.offer(1, CH, Some(15), b""), Verdict::Late); // [15, 20, 25, 30]
        assert_eq!(d.offer(0, CH, Some(10), b""), Verdict::Stale);
        assert_eq!(d.offer(0, CH, Some(30), b""), Verdict::Duplicate);
        assert_eq!(d.offer(0, CH, Some(31), b""), Verdict::New);
        let s = d.stats();
        assert_eq!((s.delivered, s.late, s.duplicates, s.stale), (7, 3, 2, 2));
    }

    /// A probe that is not committed changes nothing (the message was not queued).
    #[test]
    fn probe_alone_records_nothing() {
        let mut d = tracked(4);
        let p = d.probe(0, CH, Some(1), b"");
        assert_eq!(p.verdict(), Verdict::New);
        assert_eq!(d.probe(1, CH, Some(1), b"").verdict(), Verdict::New);
        d.commit(CH, &p);
        assert_eq!(d.probe(1, CH, Some(1), b"").verdict(), Verdict::Duplicate);
    }

    #[test]
    fn unkeyed_copies_are_matched_per_member() {
        let mut d = Dedup::new(4, 3);
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
    /// order) never takes the state past its bound, and once the windows are full it does not
    /// grow at all.
    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let (window, unkeyed_window, channels) = (32, 256, 50);
        let mut d = Dedup::new(window, unkeyed_window);
        let names: Vec<String> = (0..channels).map(|i| format!("book.INSTRUMENT-{i:04}.100ms")).collect();
        for n in &names {
            d.track(Arc::from(n.as_str()));
        }
        let bound = Dedup::memory_bound(window, unkeyed_window, channels, names[0].len());
        let mut after_warmup = None;
        let mut x = 1u64;
        for i in 0..1_000_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let member = (x % 3) as usize;
            let payload = x.to_le_bytes();
            match x % 4 {
                0 => d.offer(member, Some(&names[(x % 50) as usize]), Some(i / 2), &payload),
                1 => d.offer(member, Some(&names[(x % 50) as usize]), Some(x % 1_000_000), &payload),
                2 => d.offer(member, Some(&format!("unknown.{x}")), Some(x), &payload),
                _ => d.offer(member, None, None, &payload),
            };
            if i == 100_000 {
                after_warmup = Some(d.memory_bytes());
            }
            if i % 10_000 == 0 {
                assert!(d.memory_bytes() <= bound, "{} > {bound}", d.memory_bytes());
            }
        }
        assert_eq!(Some(d.memory_bytes()), after_warmup, "no growth after the windows filled");
        assert!(bound < 64 << 10, "{bound}");
        let s = d.stats();
        assert_eq!(s.channels, 50);
        assert!(s.delivered > 0 && s.duplicates + s.stale > 0, "{s:?}");
        for n in &names {
            assert!(d.untrack(n));
        }
        assert!(d.memory_bytes() <= bound);
    }
}
