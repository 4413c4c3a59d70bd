//! [`Subscriptions`]: the channels the user wants, what the venue has confirmed on the
//! current connection, and the requests that bring the two together.
//!
//! **Per channel** ([`ChannelState`]): *wanted* (waiting for a connection or its turn),
//! *requested* (in a subscribe request the venue has not answered), *confirmed* (the venue's
//! reply named it), *unsubscribing*. A channel the venue refuses is reported once
//! ([`SubEvent::Refused`]) and leaves the set: it is not asked for again unless the user
//! subscribes again.
//!
//! **Confirmation comes only from the venue's reply** ([`Subscriptions::on_reply`]): with
//! [`Reply::Confirmed`] (the list of names the venue subscribed, as Deribit's `result`), a
//! requested name missing from the list is refused ([`Refusal::NotConfirmed`]); a venue that
//! answers the whole request (Binance's `result: null`) says [`Reply::All`]; an error reply
//! refuses every name of that request with the venue's reason.
//!
//! **Requests** ([`Subscriptions::next_request`]) are batched under a byte budget
//! ([`SubscriptionsConfig::max_request_bytes`], the venue's frame limit: 32 KiB for Deribit) by
//! the caller's cost function (the encoded size of one channel in the request) plus a fixed
//! overhead per request, and at most [`SubscriptionsConfig::max_per_request`] channels; each
//! channel is in exactly one request per connection. The shell paces them with the rate limiter.
//!
//! **(Re)connects.** [`Subscriptions::on_connected`] starts the restore of the given
//! [`Attempt`]: every wanted channel is requested again, and once the venue has answered for
//! all of them, [`SubEvent::Restored`] lists what it confirmed and refused (at once if there
//! was nothing to restore). Subscribe calls made while disconnected join that restore;
//! unsubscribe calls made while disconnected take the channel out of it. Replies carry the
//! attempt: one from an earlier attempt is ignored ([`ReplyStatus::Stale`]). With
//! [`SubscriptionsConfig::restore`] off, a disconnect drops the channels the venue had or was
//! asked for (their waiters fail with [`Failure::Disconnected`]); only those not yet requested
//! are sent on the next connection.
//!
//! **Waiters** (`W`: the shell's oneshot senders, say) are resolved exactly once, through
//! [`SubEvent::Resolved`]. The choice for a disconnect before confirmation: with restore on, a
//! subscribe waiter is **kept** and resolved by the restore's answer (the channel is still
//! wanted, and the restore confirms or refuses it); it fails only when the machine is closed
//! ([`Subscriptions::close`]: the client closes or gives up reconnecting) or, with restore off,
//! at the disconnect. A shell that bounds the user's wait drops its receiver; the token is
//! resolved later all the same, and bounded by [`SubscriptionsConfig::max_waiters`].
//!
//! ```
//! use moorline_proto::client::Attempt;
//! use moorline_proto::client::subscriptions::{
//!     ChannelState, Outcome, Refusal, Reply, SubEvent, Subscriptions, SubscriptionsConfig,
//! };
//!
//! let mut subs: Subscriptions<String, u32> = Subscriptions::new(SubscriptionsConfig::default());
//! subs.subscribe("book.BTC-PERPETUAL.100ms".into(), Some(1)).unwrap();
//! subs.subscribe("trades.NOPE.raw".into(), Some(2)).unwrap();
//! let a1 = Attempt::default().next();
//! subs.on_connected(a1);
//! let req = subs.next_request().unwrap();
//! assert_eq!(req.channels.len(), 2);
//! assert_eq!(subs.state(&"trades.NOPE.raw".to_string()), Some(ChannelState::Requested));
//! // The venue confirms one of the two.
//! subs.on_reply(a1, req.id, Reply::Confirmed(vec!["book.BTC-PERPETUAL.100ms".into()]));
//! let events: Vec<_> = std::iter::from_fn(|| subs.poll_event()).collect();
//! assert!(events.contains(&SubEvent::Resolved {
//!     waiter: 1, channel: "book.BTC-PERPETUAL.100ms".into(), outcome: Outcome::Subscribed
//! }));
//! assert!(events.contains(&SubEvent::Refused { attempt: a1, channel: "trades.NOPE.raw".into(), refusal: Refusal::NotConfirmed }));
//! assert!(matches!(events.last(), Some(SubEvent::Restored { confirmed, refused, .. }) if confirmed.len() == 1 && refused.len() == 1));
//! assert_eq!(subs.state(&"trades.NOPE.raw".to_string()), None, "a refused channel leaves the set");
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use super::Attempt;

/// The cost function: how many bytes one channel adds to a request.
pub type CostFn<C> = Arc<dyn Fn(&C) -> usize + Send + Sync>;

/// Settings.
#[derive(Clone)]
pub struct SubscriptionsConfig<C> {
    /// Restore the subscriptions on every reconnect (default `true`).
    pub restore: bool,
    /// Most channels in the set (default 10,000).
    pub max_channels: usize,
    /// Most waiters held at once (default 10,000).
    pub max_waiters: usize,
    /// The byte budget of one request (default 32 KiB, Deribit's frame limit).
    pub max_request_bytes: usize,
    /// Bytes of a request besides its channels (default 128: a JSON-RPC envelope with the
    /// method and a 20-digit id).
    pub request_overhead: usize,
    /// Most channels in one request (default: no limit but the bytes).
    pub max_per_request: usize,
    /// Bytes one channel adds to a request.
    pub cost: CostFn<C>,
}

impl<C> fmt::Debug for SubscriptionsConfig<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionsConfig")
            .field("restore", &self.restore)
            .field("max_channels", &self.max_channels)
            .field("max_waiters", &self.max_waiters)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("request_overhead", &self.request_overhead)
            .field("max_per_request", &self.max_per_request)
            .finish_non_exhaustive()
    }
}

impl<C> SubscriptionsConfig<C> {
    /// The defaults with the given cost function.
    pub fn with_cost<F: Fn(&C) -> usize + Send + Sync + 'static>(cost: F) -> Self {
        Self {
            restore: true,
            max_channels: 10_000,
            max_waiters: 10_000,
            max_request_bytes: 32 * 1024,
            request_overhead: 128,
            max_per_request: usize::MAX,
            cost: Arc::new(cost),
        }
    }
}

impl<C: AsRef<str>> Default for SubscriptionsConfig<C> {
    /// Names in a JSON list: each costs its length plus 3 (two quotes and a comma), exact for
    /// names that need no JSON escaping (venue channel names do not); give your own
    /// [`cost`](Self::cost) otherwise.
    fn default() -> Self {
        Self::with_cost(|c: &C| c.as_ref().len().saturating_add(3))
    }
}

/// Names one subscribe or unsubscribe request, unique for the life of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(u64);

impl BatchId {
    /// The number (1 for the first request).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Subscribe to the channels.
    Subscribe,
    /// Unsubscribe from them.
    Unsubscribe,
}

/// A request for the shell to encode and send (paced by the rate limiter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<C> {
    /// Give it back in [`Subscriptions::on_reply`].
    pub id: BatchId,
    /// The connection it belongs to.
    pub attempt: Attempt,
    /// Subscribe or unsubscribe.
    pub kind: Kind,
    /// The channels, each once, within the byte budget.
    pub channels: Vec<C>,
    /// The request's cost by the configured function, overhead included.
    pub bytes: usize,
}

/// The venue's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<C> {
    /// The names the venue confirmed (requested names missing from it are refused).
    Confirmed(Vec<C>),
    /// The venue accepted the whole request (no list in its reply).
    All,
    /// The venue refused the whole request, with its reason.
    Error(String),
}

/// Why a channel was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Requested, but missing from the venue's list of confirmed names.
    NotConfirmed,
    /// The venue answered the request with an error.
    Venue(String),
}

/// Why a waiter failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection dropped with restore off.
    Disconnected,
    /// The machine was closed (the client closed, or gave up reconnecting).
    Closed,
    /// The venue refused an unsubscribe, with its reason (the channel stays subscribed on
    /// this connection and is not restored).
    Venue(String),
}

/// How a waiter is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The venue confirmed the subscription.
    Subscribed,
    /// The venue refused it.
    Refused(Refusal),
    /// The user unsubscribed before the venue confirmed (a subscribe waiter).
    Withdrawn,
    /// The channel is off the venue (an unsubscribe waiter).
    Unsubscribed,
    /// It failed.
    Failed(Failure),
}

/// What the machine reports (see [`Subscriptions::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent<C, W> {
    /// A waiter's answer (each waiter exactly once).
    Resolved {
        /// The token given to `subscribe`/`unsubscribe`.
        waiter: W,
        /// The channel.
        channel: C,
        /// The answer.
        outcome: Outcome,
    },
    /// The venue refused a channel (reported once; the channel left the set).
    Refused {
        /// The connection.
        attempt: Attempt,
        /// The channel.
        channel: C,
        /// Why.
        refusal: Refusal,
    },
    /// Every channel of the restore begun by `on_connected(attempt)` is answered.
    Restored {
        /// The connection.
        attempt: Attempt,
        /// Confirmed channels.
        confirmed: Vec<C>,
        /// Refused channels with the reason.
        refused: Vec<(C, Refusal)>,
    },
}

/// Where a channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    /// Wanted, not requested on the current connection yet (or no connection).
    Wanted,
    /// In a subscribe request the venue has not answered.
    Requested,
    /// The venue confirmed it on the current connection.
    Confirmed,
    /// Being unsubscribed (or, after a refused unsubscribe, still on the venue until the
    /// connection ends).
    Unsubscribing,
}

/// Why a `subscribe`/`unsubscribe` call was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The set holds as many channels as allowed.
    #[error("too many channels: the limit is {limit}")]
    TooManyChannels {
        /// The limit.
        limit: usize,
    },
    /// As many waiters as allowed are waiting.
    #[error("too many waiting subscribe/unsubscribe calls: the limit is {limit}")]
    TooManyWaiters {
        /// The limit.
        limit: usize,
    },
    /// The channel alone would not fit one request.
    #[error(
        "the channel costs {cost} bytes, which with the request's overhead exceeds the {budget}-byte request budget"
    )]
    TooLarge {
        /// Its cost.
        cost: usize,
        /// The budget.
        budget: usize,
    },
}

/// What [`Subscriptions::on_reply`] did with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Applied.
    Applied,
    /// From an earlier attempt: ignored.
    Stale,
    /// No such request pending (already answered, or never made): ignored.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnVenue {
    Absent,
    Subscribing(BatchId),
    Subscribed,
    Unsubscribing(BatchId),
}

#[derive(Debug)]
struct Entry<W> {
    wanted: bool,
    venue: OnVenue,
    /// Part of the current restore, not answered yet.
    restoring: bool,
    /// An unsubscribe was refused on this connection: leave it until the connection ends.
    held: bool,
    sub_waiters: Vec<W>,
    unsub_waiters: Vec<W>,
}

impl<W> Entry<W> {
    fn new() -> Self {
        Self {
            wanted: false,
            venue: OnVenue::Absent,
            restoring: false,
            held: false,
            sub_waiters: Vec::new(),
            unsub_waiters: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Batch<C> {
    attempt: Attempt,
    kind: Kind,
    channels: Vec<C>,
}

#[derive(Debug)]
struct Restore<C> {
    attempt: Attempt,
    confirmed: Vec<C>,
    refused: Vec<(C, Refusal)>,
}

/// The subscription state machine (see the [module doc](self)).
pub struct Subscriptions<C, W> {
    config: SubscriptionsConfig<C>,
    entries: BTreeMap<C, Entry<W>>,
    batches: BTreeMap<BatchId, Batch<C>>,
    connected: Option<Attempt>,
    restore: Option<Restore<C>>,
    events: VecDeque<SubEvent<C, W>>,
    waiters: usize,
    last_batch: u64,
}

impl<C: fmt::Debug, W> fmt::Debug for Subscriptions<C, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriptions")
            .field("config", &self.config)
            .field("channels", &self.entries.len())
            .field("batches", &self.batches.len())
            .field("connected", &self.connected)
            .field("waiters", &self.waiters)
            .finish_non_exhaustive()
    }
}

impl<C: Ord + Clone, W> Subscriptions<C, W> {
    /// An empty set, not connected.
    pub fn new(config: SubscriptionsConfig<C>) -> Self {
        Self {
            config,
            entries: BTreeMap::new(),
            batches: BTreeMap::new(),
            connected: None,
            restore: None,
            events: VecDeque::new(),
            waiters: 0,
            last_batch: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SubscriptionsConfig<C> {
        &self.config
    }

    fn resolve(&mut self, waiter: W, channel: &C, outcome: Outcome) {
        self.waiters = self.waiters.saturating_sub(1);
        self.events.push_back(SubEvent::Resolved { waiter, channel: channel.clone(), outcome });
    }

    fn resolve_all(&mut self, waiters: Vec<W>, channel: &C, outcome: &Outcome) {
        for w in waiters {
            self.resolve(w, channel, outcome.clone());
        }
    }

    fn check_waiter(&self, waiter: &Option<W>) -> Result<(), SubscribeError> {
        if waiter.is_some() && self.waiters >= self.config.max_waiters {
            return Err(SubscribeError::TooManyWaiters { limit: self.config.max_waiters });
        }
        Ok(())
    }

    /// The user wants `channel`; `waiter` (if any) is resolved when the venue confirms or
    /// refuses it (at once if it is already confirmed). While disconnected it joins the next
    /// restore.
    pub fn subscribe(&mut self, channel: C, waiter: Option<W>) -> Result<(), SubscribeError> {
        self.check_waiter(&waiter)?;
        let exists = self.entries.contains_key(&channel);
        if !exists {
            if self.entries.len() >= self.config.max_channels {
                return Err(SubscribeError::TooManyChannels { limit: self.config.max_channels });
            }
            let cost = (self.config.cost)(&channel);
            if cost.saturating_add(self.config.request_overhead) > self.config.max_request_bytes {
                return Err(SubscribeError::TooLarge { cost, budget: self.config.max_request_bytes });
            }
        }
        let entry = self.entries.entry(channel.clone()).or_insert_with(Entry::new);
        entry.wanted = true;
        let confirmed = entry.venue == OnVenue::Subscribed;
        if let Some(w) = waiter {
            self.waiters += 1;
            if confirmed {
                self.resolve(w, &channel, Outcome::Subscribed);
            } else if let Some(e) = self.entries.get_mut(&channel) {
                e.sub_waiters.push(w);
            }
        }
        Ok(())
    }

    /// The user no longer wants `channel`; `waiter` (if any) is resolved once it is off the
    /// venue (at once when it was not on it: while disconnected it simply leaves the
    /// restore). Subscribe waiters still waiting for it are resolved [`Outcome::Withdrawn`].
    pub fn unsubscribe(&mut self, channel: &C, waiter: Option<W>) -> Result<(), SubscribeError> {
        self.check_waiter(&waiter)?;
        let Some(entry) = self.entries.get_mut(channel) else {
            if let Some(w) = waiter {
                self.waiters += 1;
                self.resolve(w, channel, Outcome::Unsubscribed);
            }
            return Ok(());
        };
        entry.wanted = false;
        let withdrawn = std::mem::take(&mut entry.sub_waiters);
        let absent = entry.venue == OnVenue::Absent;
        if let Some(w) = waiter {
            self.waiters += 1;
            if absent {
                self.resolve(w, channel, Outcome::Unsubscribed);
            } else {
                entry.unsub_waiters.push(w);
            }
        }
        self.resolve_all(withdrawn, channel, &Outcome::Withdrawn);
        if absent {
            self.drop_entry(channel);
        }
        self.check_restored();
        Ok(())
    }

    /// Removes an entry, resolving its unsubscribe waiters (it is off the venue).
    fn drop_entry(&mut self, channel: &C) {
        if let Some(e) = self.entries.remove(channel) {
            self.resolve_all(e.unsub_waiters, channel, &Outcome::Unsubscribed);
            self.resolve_all(e.sub_waiters, channel, &Outcome::Withdrawn);
        }
    }

    /// The connection of `attempt` is ready for subscriptions (after the dialect's handshake
    /// and authentication): its restore begins with every wanted channel. Ends with
    /// [`SubEvent::Restored`] once all of them are answered (at once if there are none).
    pub fn on_connected(&mut self, attempt: Attempt) {
        self.connected = Some(attempt);
        self.batches.clear();
        for e in self.entries.values_mut() {
            e.venue = OnVenue::Absent;
            e.held = false;
            e.restoring = e.wanted;
        }
        self.restore = Some(Restore { attempt, confirmed: Vec::new(), refused: Vec::new() });
        self.check_restored();
    }

    /// The connection is gone: nothing is on the venue any more; requests in flight are
    /// forgotten (their replies, if they come, are stale). With restore on, wanted channels
    /// wait for the next `on_connected`; with it off, those the venue had or was asked for
    /// are dropped and their waiters fail.
    pub fn on_disconnect(&mut self) {
        self.connected = None;
        self.batches.clear();
        self.restore = None;
        let channels: Vec<C> = self.entries.keys().cloned().collect();
        for c in channels {
            let Some(e) = self.entries.get_mut(&c) else { continue };
            let was_on = e.venue != OnVenue::Absent;
            e.venue = OnVenue::Absent;
            e.held = false;
            e.restoring = false;
            if !e.wanted {
                self.drop_entry(&c);
            } else if was_on && !self.config.restore {
                let waiters = std::mem::take(&mut e.sub_waiters);
                self.entries.remove(&c);
                self.resolve_all(waiters, &c, &Outcome::Failed(Failure::Disconnected));
            }
        }
    }

    /// The next request to send on the current connection: subscribes first (the restore,
    /// and calls made since), then unsubscribes; `None` when disconnected or nothing is due.
    pub fn next_request(&mut self) -> Option<Request<C>> {
        let attempt = self.connected?;
        let budget = self.config.max_request_bytes;
        let per = self.config.max_per_request.max(1);
        for kind in [Kind::Subscribe, Kind::Unsubscribe] {
            let mut channels = Vec::new();
            let mut bytes = self.config.request_overhead;
            for (c, e) in &self.entries {
                let due = match kind {
                    Kind::Subscribe => e.wanted && e.venue == OnVenue::Absent,
                    Kind::Unsubscribe => !e.wanted && e.venue == OnVenue::Subscribed && !e.held,
                };
                if !due {
                    continue;
                }
                let cost = (self.config.cost)(c);
                if channels.len() >= per || (!channels.is_empty() && bytes.saturating_add(cost) > budget) {
                    break;
                }
                bytes = bytes.saturating_add(cost);
                channels.push(c.clone());
            }
            if channels.is_empty() {
                continue;
            }
            self.last_batch += 1;
            let id = BatchId(self.last_batch);
            for c in &channels {
                if let Some(e) = self.entries.get_mut(c) {
                    e.venue = match kind {
                        Kind::Subscribe => OnVenue::Subscribing(id),
                        Kind::Unsubscribe => OnVenue::Unsubscribing(id),
                    };
                }
            }
            self.batches.insert(id, Batch { attempt, kind, channels: channels.clone() });
            return Some(Request { id, attempt, kind, channels, bytes });
        }
        None
    }

    /// Every request due now (the whole restore plan right after `on_connected`).
    pub fn restore_plan(&mut self) -> Vec<Request<C>> {
        std::iter::from_fn(|| self.next_request()).collect()
    }

    /// The venue answered request `id` of `attempt`.
    pub fn on_reply(&mut self, attempt: Attempt, id: BatchId, reply: Reply<C>) -> ReplyStatus {
        if self.connected != Some(attempt) {
            return ReplyStatus::Stale;
        }
        let Some(batch) = self.batches.remove(&id) else { return ReplyStatus::Unknown };
        if batch.attempt != attempt {
            return ReplyStatus::Stale;
        }
        match batch.kind {
            Kind::Subscribe => self.apply_subscribe(attempt, id, batch.channels, reply),
            Kind::Unsubscribe => self.apply_unsubscribe(id, batch.channels, reply),
        }
        self.check_restored();
        ReplyStatus::Applied
    }

    fn apply_subscribe(&mut self, attempt: Attempt, id: BatchId, channels: Vec<C>, reply: Reply<C>) {
        let (listed, error): (Option<BTreeSet<C>>, Option<String>) = match reply {
            Reply::Confirmed(names) => (Some(names.into_iter().collect()), None),
            Reply::All => (None, None),
            Reply::Error(reason) => (Some(BTreeSet::new()), Some(reason)),
        };
        for c in channels {
            let Some(e) = self.entries.get_mut(&c) else { continue };
            if e.venue != OnVenue::Subscribing(id) {
                continue;
            }
            let restoring = std::mem::take(&mut e.restoring);
            let ok = listed.as_ref().is_none_or(|l| l.contains(&c));
            if ok {
                e.venue = OnVenue::Subscribed;
                let waiters = std::mem::take(&mut e.sub_waiters);
                self.resolve_all(waiters, &c, &Outcome::Subscribed);
                if restoring && let Some(r) = &mut self.restore {
                    r.confirmed.push(c.clone());
                }
            } else {
                let refusal = error.clone().map_or(Refusal::NotConfirmed, Refusal::Venue);
                let waiters = std::mem::take(&mut e.sub_waiters);
                e.venue = OnVenue::Absent;
                self.resolve_all(waiters, &c, &Outcome::Refused(refusal.clone()));
                self.drop_entry(&c);
                if restoring && let Some(r) = &mut self.restore {
                    r.refused.push((c.clone(), refusal.clone()));
                }
                self.events.push_back(SubEvent::Refused { attempt, channel: c, refusal });
            }
        }
    }

    fn apply_unsubscribe(&mut self, id: BatchId, channels: Vec<C>, reply: Reply<C>) {
        let error = match reply {
            Reply::Error(reason) => Some(reason),
            Reply::Confirmed(_) | Reply::All => None,
        };
        for c in channels {
            let Some(e) = self.entries.get_mut(&c) else { continue };
            if e.venue != OnVenue::Unsubscribing(id) {
                continue;
            }
            if let Some(reason) = &error {
                e.venue = OnVenue::Subscribed;
                e.held = true;
                let waiters = std::mem::take(&mut e.unsub_waiters);
                self.resolve_all(waiters, &c, &Outcome::Failed(Failure::Venue(reason.clone())));
            } else {
                // Names missing from an unsubscribe reply are not on the venue either.
                e.venue = OnVenue::Absent;
                let waiters = std::mem::take(&mut e.unsub_waiters);
                let wanted = e.wanted;
                self.resolve_all(waiters, &c, &Outcome::Unsubscribed);
                if !wanted {
                    self.drop_entry(&c);
                }
            }
        }
    }

    fn check_restored(&mut self) {
        if self.restore.is_none() || self.entries.values().any(|e| e.restoring) {
            return;
        }
        if let Some(r) = self.restore.take() {
            self.events.push_back(SubEvent::Restored {
                attempt: r.attempt,
                confirmed: r.confirmed,
                refused: r.refused,
            });
        }
    }

    /// The next event to report, in order.
    pub fn poll_event(&mut self) -> Option<SubEvent<C, W>> {
        self.events.pop_front()
    }

    /// The end: every waiter fails with [`Failure::Closed`], the set is emptied.
    pub fn close(&mut self) {
        self.connected = None;
        self.batches.clear();
        self.restore = None;
        for (c, e) in std::mem::take(&mut self.entries) {
            self.resolve_all(e.sub_waiters, &c, &Outcome::Failed(Failure::Closed));
            self.resolve_all(e.unsub_waiters, &c, &Outcome::Failed(Failure::Closed));
        }
    }

    /// Where `channel` stands (`None`: not in the set).
    pub fn state(&self, channel: &C) -> Option<ChannelState> {
        let e = self.entries.get(channel)?;
        Some(match e.venue {
            OnVenue::Unsubscribing(_) => ChannelState::Unsubscribing,
            _ if !e.wanted => ChannelState::Unsubscribing,
            OnVenue::Absent => ChannelState::Wanted,
            OnVenue::Subscribing(_) => ChannelState::Requested,
            OnVenue::Subscribed => ChannelState::Confirmed,
        })
    }

    /// The wanted channels, in order.
    pub fn wanted(&self) -> impl Iterator<Item = &C> {
        self.entries.iter().filter(|(_, e)| e.wanted).map(|(c, _)| c)
    }

    /// The channels the venue confirmed on the current connection.
    pub fn confirmed(&self) -> impl Iterator<Item = &C> {
        self.entries.iter().filter(|(_, e)| e.venue == OnVenue::Subscribed).map(|(c, _)| c)
    }

    /// The connection subscriptions are sent on, if any.
    pub fn connected(&self) -> Option<Attempt> {
        self.connected
    }

    /// Whether a restore is under way (begun, not every channel answered).
    pub fn restoring(&self) -> bool {
        self.restore.is_some()
    }

    /// Channels in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Waiters not yet resolved.
    pub fn waiters(&self) -> usize {
        self.waiters
    }
}

#[cfg(test)]
#[path = "subscriptions_tests.rs"]
mod tests;
