//! `ClientPool` in redundant mode against real loopback servers: the same subscriptions on two
//! connections, each data message delivered once, deduplicated by `(channel, key)`.
//!
//! - The Deribit simulator publishes the same market to every connection (same `change_id`s,
//!   same `trade_seq`s) at full rate while connections are killed at random, one at a time
//!   (the next only once the killed one is back): close frames, TCP resets, stalls. What was
//!   delivered is compared with the simulator's publication log: nothing lost, nothing twice.
//! - Two simulators with the same seed, stepped together: two endpoints, one market.
//! - A flood of keyed, unkeyed and never-subscribed channels from the test kit's WebSocket
//!   server: the deduplication state does not grow by a byte past its bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::dialect::{Deribit, Dialect, JsonRpc};
use moorline_client::pool::{
    ClientPool, DEFAULT_DEDUP_RANGES, DEFAULT_UNKEYED_WINDOW, Dedup, DeribitSequence, PoolConfig, PoolEvents,
};
use moorline_client::queue::EventStream;
use moorline_client::{Channel, Client, ClientConfig, ClientEvent, DisconnectReason, Payload};
use moorline_testkit::deribit::{DeribitSim, Fault, Publication, RateLimit};
use moorline_testkit::ws::{Frame, Matcher, MockServer, Reply};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(40);
const WAIT: Duration = Duration::from_secs(10);

const CHANNELS: [&str; 4] = [
    "book.BTC-PERPETUAL.100ms",
    "book.ETH-PERPETUAL.100ms",
    "trades.BTC-PERPETUAL.100ms",
    "trades.ETH-PERPETUAL.100ms",
];

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

fn config() -> ClientConfig {
    ClientConfig::builder()
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(5),
        })
        // A stalled connection is dead after 1.5 s without a frame (the market never pauses;
        // shorter would risk a member starved of CPU on a busy machine being taken for dead
        // while the other is down: a real loss, but not the one this test is about).
        .dead_after(Some(Duration::from_millis(200)), Duration::from_millis(1500))
        .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn sim(seed: u64) -> DeribitSim {
    DeribitSim::builder()
        .seed(seed)
        .manual_market()
        .rate_limit(RateLimit::unlimited())
        .publication_log(1 << 21)
        .start()
        .await
        .unwrap()
}

async fn connected(rx: &mut EventStream) {
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.expect("no event in time").expect("stream ended");
        if matches!(ev, ClientEvent::Connected { .. }) {
            return;
        }
    }
}

/// What the test reads from the pool, as it goes.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Data messages: channel, key, member, late.
    delivered: Vec<(Channel, Option<u64>, usize, bool)>,
    /// The largest key delivered per channel.
    top: HashMap<String, u64>,
    /// Whether each member is up (restored since its last disconnect).
    up: [bool; 2],
    /// Restores after a disconnect, per member.
    cycles: [u32; 2],
    disconnects: [u32; 2],
    /// Member events, with how many messages were delivered before each (for failures).
    timeline: Vec<(usize, usize, String)>,
}

/// Reads the pool's events in a task of its own until the stream ends.
fn reader(mut events: PoolEvents) -> (watch::Receiver<Seen>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Seen { up: [true, true], ..Seen::default() });
    let task = tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let m = e.member;
            tx.send_modify(|s| match e.event {
                ClientEvent::Message { channel: Some(channel), .. } => {
                    if let Some(k) = e.key {
                        let top = s.top.entry(channel.to_string()).or_insert(k);
                        *top = (*top).max(k);
                    }
                    s.delivered.push((channel, e.key, m, e.late));
                }
                ClientEvent::Message { channel: None, .. } => panic!("a message without its channel"),
                ClientEvent::Dropped { .. } => panic!("nothing may be dropped: {e:?}"),
                ClientEvent::Disconnected { reason } => {
                    s.timeline.push((s.delivered.len(), m, format!("disconnected: {reason}")));
                    s.up[m] = false;
                    if !matches!(reason, DisconnectReason::Closed) {
                        s.disconnects[m] += 1; // not the pool's close at the end
                    }
                }
                ClientEvent::Restored { .. } if !s.up[m] => {
                    s.timeline.push((s.delivered.len(), m, "restored".into()));
                    s.up[m] = true;
                    s.cycles[m] += 1;
                }
                _ => {}
            });
        }
    });
    (rx, task)
}

/// The key of a published notification, as `DeribitSequence` reads it.
fn published_key(p: &Publication) -> u64 {
    p.change_id.or_else(|| p.trade_seqs.iter().copied().max()).unwrap_or_else(|| panic!("no key in {p:?}"))
}

/// Per channel, the keys published.
fn published(logs: &[Vec<Publication>]) -> HashMap<String, BTreeSet<u64>> {
    let mut out: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for p in logs.iter().flatten() {
        assert!(p.recipients >= 1);
        out.entry(p.channel.clone()).or_default().insert(published_key(p));
    }
    out
}

/// Nothing lost, nothing twice, in order but for the late ones: the delivered keys of each
/// channel against the published ones. Returns how many were delivered late.
fn check(seen: &Seen, published: &HashMap<String, BTreeSet<u64>>) -> usize {
    let mut per_channel: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut late = 0;
    for (channel, key, _, is_late) in &seen.delivered {
        let key = key.unwrap_or_else(|| panic!("{channel}: a message without a key"));
        let keys = per_channel.entry(channel).or_default();
        if *is_late {
            late += 1;
            assert!(keys.iter().any(|&k| k > key), "{channel}: {key} marked late but nothing later came before");
        } else {
            assert!(keys.iter().all(|&k| k < key), "{channel}: {key} delivered out of order, not marked late");
        }
        keys.push(key);
    }
    assert_eq!(per_channel.len(), published.len(), "channels: {:?}", per_channel.keys());
    for (channel, want) in published {
        let got = &per_channel[channel.as_str()];
        let distinct: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(distinct.len(), got.len(), "{channel}: {} delivered twice", got.len() - distinct.len());
        let lost: Vec<&u64> = want.difference(&distinct).collect();
        let extra: Vec<&u64> = distinct.difference(want).collect();
        if let (Some(&&first), Some(&&last)) = (lost.first(), lost.last()) {
            // Where the gap is: the deliveries of the channel around it, and the members' events.
            let around: Vec<String> = seen
                .delivered
                .iter()
                .enumerate()
                .filter(|(_, d)| *d.0 == **channel)
                .filter(|(_, d)| d.1.is_some_and(|k| k + 40 >= first && k <= last + 40))
                .map(|(i, d)| format!("#{i} k{} m{}{}", d.1.unwrap_or(0), d.2, if d.3 { " late" } else { "" }))
                .collect();
            panic!(
                "{channel}: {} of {} lost, {first}..={last}\naround: {around:?}\ntimeline: {:?}",
                lost.len(),
                want.len(),
                seen.timeline
            );
        }
        assert!(extra.is_empty(), "{channel}: delivered but never published: {extra:?}");
    }
    late
}

/// A small deterministic generator (xorshift), so a failing run can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Steps the market every millisecond until `running` is cleared.
fn stepper(sims: Vec<Arc<DeribitSim>>, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        let mut steps = 0;
        while running.load(Ordering::SeqCst) {
            ticks.tick().await;
            for sim in &sims {
                sim.step_market(1);
            }
            steps += 1;
        }
        steps
    })
}

/// The required test: two connections, the market at full rate, nine connections killed at
/// random (three each of close, reset, stall; one at a time, the next once the killed one is
/// back), every message counted against the simulator's log: 0 lost, 0 duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_pair_loses_nothing_and_doubles_nothing_under_faults() {
    bounded(async {
        let seed = 0x5eed_0019;
        let sim = Arc::new(sim(7).await);
        // Members one after the other, so each one's connection id is known.
        let (mut clients, mut ids) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let (client, mut rx) = Client::connect(&sim.url(), config(), Deribit::new()).unwrap();
            connected(&mut rx).await;
            ids.push(sim.connections_info().iter().map(|c| c.id).filter(|id| !ids.contains(id)).max().unwrap());
            clients.push((client, rx));
        }
        let (pool, events) = ClientPool::from_clients(clients, PoolConfig::redundant(DeribitSequence)).unwrap();
        let (mut seen, reader) = reader(events);
        let out = pool.subscribe(&CHANNELS).await.unwrap();
        assert_eq!(out.confirmed.len(), 4, "{out:?}");
        assert!(sim.connections_info().iter().all(|c| c.channels.len() == 4));

        let running = Arc::new(AtomicBool::new(true));
        let steps = stepper(vec![sim.clone()], running.clone());
        let mut rng = Rng(seed);
        let mut faults = Vec::new();
        for kind in 0..3 {
            faults.extend([kind; 3]);
        }
        for i in (1..faults.len()).rev() {
            faults.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut kills = [0u32; 2];
        for &kind in &faults {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(300))).await; // both up, data flowing
            let m = rng.below(2) as usize;
            let fault = match kind {
                0 => Fault::Close { code: 1011, reason: "killed".into() },
                1 => Fault::Reset,
                _ => Fault::StallAfter { bytes: 0 },
            };
            assert!(sim.fault(ids[m], fault.clone()), "member {m}'s connection {} is open", ids[m]);
            kills[m] += 1;
            // Back: reconnected and restored (the venue confirmed its subscriptions).
            let want = kills;
            let back = tokio::time::timeout(WAIT, seen.wait_for(|s| s.cycles == want && s.up == [true, true]))
                .await
                .is_ok_and(|r| r.is_ok());
            assert!(back, "member {m} not back after {fault:?}: {:?}", seen.borrow().cycles);
            let other = ids[1 - m];
            ids[m] = sim
                .connections_info()
                .into_iter()
                .filter(|c| c.id != other && c.channels.len() == 4)
                .map(|c| c.id)
                .max()
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // let data flow after the last
        running.store(false, Ordering::SeqCst);
        let steps = steps.await.unwrap();

        // Every channel's last published key delivered, then the pool closed and drained.
        let log = sim.publications();
        assert_eq!(sim.publications_evicted(), 0);
        let published = published(&[log]);
        let last: HashMap<String, u64> = published.iter().map(|(c, keys)| (c.clone(), *keys.last().unwrap())).collect();
        tokio::time::timeout(WAIT, seen.wait_for(|s| last.iter().all(|(c, k)| s.top.get(c) == Some(k))))
            .await
            .expect("the last keys were never delivered")
            .unwrap();
        let stats = pool.dedup_stats().unwrap();
        pool.close().await;
        tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        let seen = seen.borrow().clone();

        // Only the kills disconnected anyone: at least one member was up all along.
        assert_eq!(seen.disconnects, kills, "a member dropped by itself: {:?}", seen.timeline);
        let late = check(&seen, &published);
        let total: usize = published.values().map(BTreeSet::len).sum();
        let from: [usize; 2] = [0, 1].map(|m| seen.delivered.iter().filter(|d| d.2 == m).count());
        eprintln!(
            "seed {seed:#x}: {steps} steps, {total} keys published and delivered once ({from:?} by member), \
             {late} late, kills {kills:?}, disconnects {:?}, {stats:?}",
            seen.disconnects
        );
        assert!(total > 3_000, "full rate: {total}");
        assert_eq!(kills.iter().sum::<u32>(), 9);
        assert!(from[0] > 0 && from[1] > 0, "both members delivered: {from:?}");
        assert!(stats.duplicates + stats.stale > (total as u64) / 10, "the other copies were dropped: {stats:?}");
        let names = CHANNELS.iter().map(|c| c.len()).max().unwrap();
        let bound = Dedup::memory_bound(2, DEFAULT_DEDUP_RANGES, DEFAULT_UNKEYED_WINDOW, 4, names);
        assert!(stats.memory_bytes <= bound, "{} > {bound}", stats.memory_bytes);
    })
    .await;
}

/// Two endpoints: two simulators with the same seed, stepped together, publish the same
/// market (the same keys); one member on each. A member's connection reset midway: every
/// key of either venue delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_one_market() {
    bounded(async {
        let sims = [Arc::new(sim(3).await), Arc::new(sim(3).await)];
        let urls = [sims[0].url(), sims[1].url()];
        let endpoints: Vec<&str> = urls.iter().map(String::as_str).collect();
        let (pool, mut events) = ClientPool::connect(
            &endpoints,
            2,
            config(),
            |_| Arc::new(Deribit::new()) as Arc<dyn Dialect>,
            PoolConfig::redundant(DeribitSequence),
        )
        .unwrap();
        let mut up = 0;
        while up < 2 {
            let e = tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap();
            up += usize::from(matches!(e.event, ClientEvent::Connected { .. }));
        }
        let (mut seen, reader) = reader(events);
        assert_eq!(pool.subscribe(&CHANNELS).await.unwrap().confirmed.len(), 4);
        let running = Arc::new(AtomicBool::new(true));
        let steps = stepper(sims.to_vec(), running.clone());
        tokio::time::sleep(Duration::from_millis(300)).await; // let data flow
        assert_eq!(sims[0].fault_all(Fault::Reset), 1);
        tokio::time::timeout(WAIT, seen.wait_for(|s| s.cycles == [1, 0] && s.up == [true, true]))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await; // let data flow
        running.store(false, Ordering::SeqCst);
        steps.await.unwrap();
        let published = published(&[sims[0].publications(), sims[1].publications()]);
        // The same market: the changes and trades are the same keys on both.
        let first: HashSet<(String, u64)> = sims[1]
            .publications()
            .iter()
            .filter(|p| !p.snapshot)
            .map(|p| (p.channel.clone(), published_key(p)))
            .collect();
        assert!(
            sims[0]
                .publications()
                .iter()
                .filter(|p| !p.snapshot)
                .all(|p| first.contains(&(p.channel.clone(), published_key(p)))),
            "the two venues published different markets"
        );
        let last: HashMap<String, u64> = published.iter().map(|(c, keys)| (c.clone(), *keys.last().unwrap())).collect();
        tokio::time::timeout(WAIT, seen.wait_for(|s| last.iter().all(|(c, k)| s.top.get(c) == Some(k))))
            .await
            .unwrap()
            .unwrap();
        pool.close().await;
        tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        let seen = seen.borrow().clone();
        check(&seen, &published);
        assert!(seen.delivered.iter().any(|d| d.2 == 0) && seen.delivered.iter().any(|d| d.2 == 1));
    })
    .await;
}

/// A venue flooding both members with 40 000 messages: keyed ones on the subscribed channels
/// (in order, out of order, repeated), unkeyed ones, and ones on 10 000 channel names never
/// subscribed. The deduplication state holds exactly what it held before the flood (its
/// windows are allocated when a channel is subscribed; names it was not asked for take no
/// place), within `Dedup::memory_bound`; every copy is accounted for; each in-order key once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_memory_stays_bounded_under_a_flood() {
    bounded(async {
        let server = MockServer::builder()
            .on(
                Matcher::any(),
                Reply::with(|frame| {
                    let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                    let result = match v.get("method")?.as_str()? {
                        "subscribe" | "unsubscribe" => v["params"]["channels"].clone(),
                        _ => return None,
                    };
                    Some(Frame::text(json!({"jsonrpc": "2.0", "id": v["id"], "result": result}).to_string()))
                }),
            )
            .start()
            .await
            .unwrap();
        let seq = |_: &str, data: &Payload| -> Option<u64> {
            let v: Value = serde_json::from_str(data.as_text()?).ok()?;
            v["params"]["data"]["seq"].as_u64()
        };
        let cfg = ClientConfig::builder().venue_heartbeat(None, Duration::from_secs(5)).build().unwrap();
        let (ranges, unkeyed) = (8, 256);
        let pc = PoolConfig::redundant(seq).dedup(ranges, unkeyed);
        let (pool, events) =
            ClientPool::connect(&[&server.url()], 2, cfg, |_| Arc::new(JsonRpc::new()) as Arc<dyn Dialect>, pc)
                .unwrap();
        let names: Vec<String> = (0..20).map(|i| format!("feed.{i:02}")).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(pool.subscribe(&name_refs).await.unwrap().confirmed.len(), 20);
        assert!(server.wait_for_open_connections(2, WAIT).await);
        let (seen, reader) = reader(events);
        let before = pool.dedup_stats().unwrap();
        assert_eq!(before.channels, 20);

        let note = |channel: &str, data: Value| {
            Frame::text(
                json!({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}})
                    .to_string(),
            )
        };
        let mut rng = Rng(0xf100d);
        let total = 40_000u64;
        let mut in_order = 0;
        for i in 0..total {
            let frame = match i % 4 {
                // In order on feed.00: each once.
                0 => {
                    in_order += 1;
                    note(&names[0], json!({"seq": i}))
                }
                // Random keys on the other subscribed channels.
                1 => note(&names[1 + rng.below(19) as usize], json!({"seq": rng.below(100_000)})),
                // No key: by content.
                2 => note(&names[1 + rng.below(19) as usize], json!({"n": rng.below(1_000_000)})),
                // Never subscribed, a new name every time.
                _ => note(&format!("junk.{}", rng.next()), json!({"seq": i})),
            };
            assert_eq!(server.inject(frame), 2);
        }
        // Every copy through the deduplication: delivered, duplicate or stale.
        let deadline = Instant::now() + WAIT;
        loop {
            let s = pool.dedup_stats().unwrap();
            if s.delivered + s.duplicates + s.stale == 2 * total {
                break;
            }
            assert!(Instant::now() < deadline, "not every copy went through: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = pool.dedup_stats().unwrap();
        pool.close().await;
        tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        let seen = seen.borrow().clone();
        eprintln!("before {before:?}\nafter {after:?}");
        assert_eq!(after.memory_bytes, before.memory_bytes, "not a byte more");
        let bound = Dedup::memory_bound(2, ranges, unkeyed, 20, names[0].len());
        assert!(after.memory_bytes <= bound, "{} > {bound}", after.memory_bytes);
        assert!(bound < 32 << 10, "{bound}");
        assert_eq!(after.channels, 20, "never-subscribed names take no place");
        assert_eq!(seen.delivered.len() as u64, after.delivered);
        let feed0: Vec<u64> = seen.delivered.iter().filter(|d| *d.0 == *names[0]).map(|d| d.1.unwrap()).collect();
        assert_eq!(feed0.len(), in_order, "each in-order key once");
        assert!(feed0.windows(2).all(|w| w[0] < w[1]));
        let junk = seen.delivered.iter().filter(|d| d.0.starts_with("junk.")).count() as u64;
        assert!((total / 4..=total / 2).contains(&junk), "{junk}");
    })
    .await;
}
