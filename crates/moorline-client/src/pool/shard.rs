//! Where subscriptions go (sans-IO): in sharded mode each channel is placed on one member,
//! the one with the fewest channels among those with room (connected members first), under
//! the per-connection limit; in redundant mode every channel is on every member, so the pool
//! holds at most the limit. A call that would pass the pool's capacity is refused whole.

use std::collections::HashMap;

use crate::event::Channel;

/// The pool has no room for the channels asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    pub requested: usize,
    pub free: usize,
}

/// Which member holds each channel.
#[derive(Debug)]
pub(crate) struct Placement {
    limit: usize,
    /// Every member holds every channel (redundant mode).
    replicated: bool,
    owner: HashMap<Channel, usize>,
    counts: Vec<usize>,
}

impl Placement {
    pub(crate) fn new(members: usize, limit: usize, replicated: bool) -> Self {
        Self { limit, replicated, owner: HashMap::new(), counts: vec![0; members] }
    }

    /// Places `channels` (the names, deduplicated; those already placed keep their member)
    /// and returns, per member, the channels to subscribe there (the already placed ones
    /// included: asking again is harmless). `connected[m]`: member `m` is preferred.
    /// Nothing is placed when there is not room for all the new ones.
    pub(crate) fn place(&mut self, channels: &[Channel], connected: &[bool]) -> Result<Vec<Vec<Channel>>, Full> {
        let mut fresh: Vec<Channel> = Vec::new();
        for c in channels {
            if !self.owner.contains_key(c) && !fresh.contains(c) {
                fresh.push(c.clone());
            }
        }
        let free = self.free();
        if fresh.len() > free {
            return Err(Full { requested: fresh.len(), free });
        }
        let mut plan: Vec<Vec<Channel>> = vec![Vec::new(); self.counts.len()];
        for c in channels {
            if let Some(&m) = self.owner.get(c)
                && !plan[m].contains(c)
            {
                if self.replicated {
                    for p in &mut plan {
                        p.push(c.clone());
                    }
                } else {
                    plan[m].push(c.clone());
                }
            }
        }
        for c in fresh {
            let m = if self.replicated {
                for p in &mut plan {
                    p.push(c.clone());
                }
                0
            } else {
                let Some(m) = (0..self.counts.len())
                    .filter(|&m| self.counts[m] < self.limit)
                    .min_by_key(|&m| (!connected.get(m).copied().unwrap_or(false), self.counts[m], m))
                else {
                    break; // cannot happen: there was room for every one
                };
                plan[m].push(c.clone());
                m
            };
            self.counts[m] += 1;
            self.owner.insert(c, m);
        }
        Ok(plan)
    }

    /// Takes `channel` off its member; `false` if it was not placed.
    pub(crate) fn release(&mut self, channel: &str) -> bool {
        let Some(m) = self.owner.remove(channel) else { return false };
        if let Some(n) = self.counts.get_mut(m) {
            *n = n.saturating_sub(1);
        }
        true
    }

    /// The member holding `channel` (redundant mode: 0, as every member does).
    pub(crate) fn owner(&self, channel: &str) -> Option<usize> {
        self.owner.get(channel).copied()
    }

    /// Channels placed on `member` (redundant mode: every channel is on every member).
    pub(crate) fn count(&self, member: usize) -> usize {
        if self.replicated { self.owner.len() } else { self.counts.get(member).copied().unwrap_or(0) }
    }

    /// Channels the pool holds.
    pub(crate) fn len(&self) -> usize {
        self.owner.len()
    }

    /// How many distinct channels the pool can hold.
    pub(crate) fn capacity(&self) -> usize {
        if self.replicated { self.limit } else { self.limit.saturating_mul(self.counts.len()) }
    }

    /// Room for this many more channels.
    pub(crate) fn free(&self) -> usize {
        self.capacity().saturating_sub(self.owner.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<Channel> {
        (0..n).map(|i| Arc::from(format!("{prefix}{i}").as_str())).collect()
    }

    #[test]
    fn sharded_spreads_under_the_limit_and_refuses_whole_calls_past_it() {
        let mut p = Placement::new(3, 4, false);
        let plan = p.place(&names("a", 5), &[true, true, true]).unwrap();
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        // A disconnected member gets nothing while another has room.
        let plan = p.place(&names("b", 4), &[true, false, true]).unwrap();
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [2, 0, 2]);
        assert_eq!((p.count(0), p.count(1), p.count(2)), (4, 2, 3));
        // 9 placed of 12: three more fit, four do not (and nothing of them is placed).
        assert_eq!(p.place(&names("c", 4), &[true; 3]), Err(Full { requested: 4, free: 3 }));
        assert_eq!(p.len(), 9);
        // The full member is skipped even when it is the only connected one.
        let plan = p.place(&names("c", 3), &[true, false, false]).unwrap();
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [0, 2, 1]);
        assert!((0..3).all(|m| p.count(m) == 4));
        assert_eq!(p.free(), 0);
        // Asking again for placed channels is no new room, and goes to their member.
        let again = p.place(&[Arc::from("a0"), Arc::from("a0")], &[true; 3]).unwrap();
        assert_eq!(again[p.owner("a0").unwrap()].len(), 1);
        assert!(p.release("a0"));
        assert!(!p.release("a0"));
        assert_eq!(p.free(), 1);
    }

    #[test]
    fn replicated_holds_the_limit_on_every_member() {
        let mut p = Placement::new(2, 3, true);
        let plan = p.place(&names("a", 2), &[true, false]).unwrap();
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
        assert_eq!(p.place(&names("b", 2), &[true, true]), Err(Full { requested: 2, free: 1 }));
        let plan = p.place(&[Arc::from("a1"), Arc::from("b0")], &[true, true]).unwrap();
        assert_eq!(plan, vec![vec![Arc::from("a1"), Arc::from("b0")]; 2]);
        assert_eq!((p.capacity(), p.count(1), p.free()), (3, 3, 0));
    }
}
