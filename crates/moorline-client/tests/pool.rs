//! `ClientPool` in sharded mode against the test kit's Deribit simulator (real loopback
//! connections): requests go to the healthiest member (fewest in flight, fewest recent errors,
//! lowest p99, connected first), fail over when a member's connection is cut mid-request
//! (reset, stall) without hanging, and fail with a typed error only when every member failed;
//! subscriptions are sharded under the per-connection limit (as the simulator sees them) and a
//! call past the capacity is refused whole; the merged event stream carries each member's
//! index, stays within its byte ceiling under a flood, and reports every drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, Overflow, RetryConfig};
use moorline_client::dialect::{Deribit, Dialect};
use moorline_client::pool::{ClientPool, Failover, PoolConfig, PoolError, PoolEvent, PoolEvents};
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientError, ClientEvent, ClientState};
use moorline_testkit::deribit::{DeribitSim, Fault, RateLimit, RequestMatch};
use serde_json::json;
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

fn config() -> ClientConfig {
    ClientConfig::builder()
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_millis(30),
            cap: Duration::from_millis(200),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(5),
        })
        .request_timeout(Duration::from_secs(5))
        .dead_after(Some(Duration::from_millis(200)), Duration::from_millis(800))
        .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn sim() -> DeribitSim {
    DeribitSim::builder().manual_market().rate_limit(RateLimit::unlimited()).start().await.unwrap()
}

async fn until_client(rx: &mut EventStream, pred: impl Fn(&ClientEvent) -> bool) {
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.expect("no event in time").expect("stream ended");
        if pred(&ev) {
            return;
        }
    }
}

/// `n` clients started one after the other (each connected before the next starts), with the
/// simulator's id of each one's connection.
async fn members(sim: &DeribitSim, n: usize) -> (Vec<(Client, EventStream)>, Vec<u64>) {
    let (mut out, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (client, mut rx) = Client::connect(&sim.url(), config(), Deribit::new()).unwrap();
        until_client(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
        let id = sim.connections_info().iter().map(|c| c.id).filter(|id| !ids.contains(id)).max().unwrap();
        ids.push(id);
        out.push((client, rx));
    }
    (out, ids)
}

/// The next pool event matching `pred`; the others read on the way are returned too.
async fn until(rx: &mut PoolEvents, pred: impl Fn(&PoolEvent) -> bool) -> (PoolEvent, Vec<PoolEvent>) {
    let mut skipped = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event within {WAIT:?}; skipped {skipped:#?}"))
            .expect("the pool's stream ended");
        if pred(&ev) {
            return (ev, skipped);
        }
        skipped.push(ev);
    }
}

/// What `drain` saw of each member: up (connected and restored) or not, and its reconnections.
#[derive(Debug, Clone)]
struct Members {
    up: Vec<bool>,
    reconnects: Vec<u32>,
}

/// Keeps reading the pool's events in the background (so no member is held back), following
/// each member's state; every member starts up (`members` waited for that).
fn drain(mut rx: PoolEvents, n: usize) -> tokio::sync::watch::Receiver<Members> {
    let (tx, watch) = tokio::sync::watch::channel(Members { up: vec![true; n], reconnects: vec![0; n] });
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            tx.send_modify(|s| match e.event {
                ClientEvent::Disconnected { .. } => s.up[e.member] = false,
                ClientEvent::Reconnected { .. } => {
                    s.up[e.member] = true;
                    s.reconnects[e.member] += 1;
                }
                _ => {}
            });
        }
    });
    watch
}

async fn get_time(pool: &ClientPool, failover: Failover) -> Result<usize, PoolError> {
    let params = serde_json::value::to_raw_value(&json!({})).unwrap();
    pool.request_raw("public/get_time", Some(&params), failover).await.map(|a| a.member)
}

/// Sequential requests spread by health: a member with a request in flight is passed over; a
/// slow member (its p99) is passed over; a member with recent errors is passed over, before
/// latency; a member that is not connected is never chosen while another is; equal members
/// take turns. The venue's error answer is returned as it is, from one member only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_healthiest_member() {
    bounded(async {
        let sim = sim().await;
        let (clients, ids) = members(&sim, 3).await;
        let pc = PoolConfig::sharded().health(Duration::from_secs(60), Duration::from_millis(100));
        let (pool, events) = ClientPool::from_clients(clients, pc).unwrap();
        let mut members_seen = drain(events, 3);

        // Equal members take turns.
        let mut picks = Vec::new();
        for _ in 0..6 {
            picks.push(get_time(&pool, Failover::Unsent).await.unwrap());
        }
        assert_eq!(picks.iter().collect::<HashSet<_>>().len(), 3, "{picks:?}");

        // Member 0's next answer takes 1.5 s: while it is in flight, member 0 is passed over.
        let slow = RequestMatch { method: "public/get_time".into(), params: None, conn: Some(ids[0]) };
        sim.delay_response(slow, Duration::from_millis(1500));
        let slow_call = {
            let pool = pool.clone();
            // Equal members take turns: member 0 takes one of the next three calls.
            tokio::spawn(async move { while get_time(&pool, Failover::Unsent).await.unwrap() != 0 {} })
        };
        let deadline = Instant::now() + WAIT;
        while pool.health()[0].in_flight == 0 {
            assert!(Instant::now() < deadline, "member 0 never took the slow request");
            tokio::task::yield_now().await;
        }
        let mut others = Vec::new();
        for _ in 0..10 {
            others.push(get_time(&pool, Failover::Unsent).await.unwrap());
        }
        assert!(!others.contains(&0), "a member with a request in flight was chosen: {others:?}");
        tokio::time::timeout(WAIT, slow_call).await.unwrap().unwrap();

        // Member 0's p99 is now 1.5 s: passed over though nothing is in flight.
        assert!(pool.health()[0].p99.unwrap() >= Duration::from_millis(1000), "{:?}", pool.health());
        let picks: Vec<usize> = {
            let mut v = Vec::new();
            for _ in 0..12 {
                v.push(get_time(&pool, Failover::Unsent).await.unwrap());
            }
            v
        };
        assert!(!picks.contains(&0), "the slow member was chosen: {picks:?}");
        assert!(picks.contains(&1) && picks.contains(&2), "equal members take turns: {picks:?}");

        // Errors outrank latency: member 1 reconnects (a disconnect counts against it).
        pool.members()[1].reconnect().await.unwrap();
        tokio::time::timeout(WAIT, members_seen.wait_for(|s| s.reconnects[1] >= 1)).await.unwrap().unwrap();
        assert!(pool.health()[1].recent_errors >= 1, "{:?}", pool.health());
        for _ in 0..6 {
            assert_eq!(get_time(&pool, Failover::Unsent).await.unwrap(), 2);
        }

        // A member that is not connected is never chosen while another is: member 2 closed.
        // Of the two left, the slow one is chosen over the one with errors.
        pool.members()[2].close().await.unwrap();
        assert_eq!(pool.members()[2].state(), ClientState::Closed);
        let picks: Vec<usize> = {
            let mut v = Vec::new();
            for _ in 0..6 {
                v.push(get_time(&pool, Failover::Unsent).await.unwrap());
            }
            v
        };
        assert!(picks.iter().all(|&m| m == 0), "{picks:?}");

        // The venue's error answer is an answer: one member asked, no failover.
        let before: u64 = pool.members().iter().map(|c| c.stats().requests.count).sum();
        let e = pool.request("public/no_such_method", json!({})).await.unwrap_err();
        assert_eq!(e.rpc().map(|r| r.code), Some(-32601), "{e:?}");
        let after: u64 = pool.members().iter().map(|c| c.stats().requests.count).sum();
        assert_eq!(after, before + 1, "asked once");
        let health = pool.health();
        assert!(health.iter().all(|h| h.in_flight == 0), "{health:?}");
        pool.close().await;
    })
    .await;
}

/// A member's connection cut while it holds a request: an idempotent request goes on to
/// another member at once (reset) or after its attempt's deadline (stalled connection), and
/// is answered; a non-idempotent one fails with the member's `Disconnected { sent: true }`
/// (it may have been processed) instead of hanging; with every member cut, the error lists
/// every member. Nothing waits for the 5 s request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_a_members_connection_is_cut_mid_request() {
    bounded(async {
        let sim = sim().await;
        let (clients, _) = members(&sim, 3).await;
        let pc = PoolConfig::sharded().request_timeout(Duration::from_secs(8), Duration::from_millis(700));
        let (pool, events) = ClientPool::from_clients(clients, pc).unwrap();
        let mut members_seen = drain(events, 3);
        let get_time_match = || RequestMatch::method("public/get_time");

        // Reset after the request was processed: idempotent goes on, answered by another member.
        sim.cut_before_response(get_time_match(), Fault::Reset);
        let started = Instant::now();
        let params = serde_json::value::to_raw_value(&json!({})).unwrap();
        let answer = pool.request_raw("public/get_time", Some(&params), Failover::Always).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(600), "{:?}", started.elapsed());
        assert!(answer.result.get().parse::<u64>().is_ok());
        let cut: Vec<usize> = pool.health().iter().filter(|h| h.recent_errors > 0).map(|h| h.member).collect();
        assert_eq!(cut.len(), 1, "{:?}", pool.health());
        assert_ne!(answer.member, cut[0]);

        // The same cut, not idempotent: the member's typed error, at once.
        sim.cut_before_response(get_time_match(), Fault::Reset);
        let started = Instant::now();
        let e = pool.request("public/get_time", json!({})).await.unwrap_err();
        assert!(
            matches!(&e, PoolError::Member { error, .. } if matches!(**error, ClientError::Disconnected { sent: true })),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(600), "{:?}", started.elapsed());

        // A stalled connection (the answer never comes): the attempt's deadline, then the next.
        sim.cut_before_response(get_time_match(), Fault::StallAfter { bytes: 0 });
        let started = Instant::now();
        let answer = pool.request_raw("public/get_time", Some(&params), Failover::Always).await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(650) && took < Duration::from_millis(2000), "{took:?}");
        assert!(answer.result.get().parse::<u64>().is_ok());

        // Every member cut in turn: all failed, each one named, in the order tried.
        for _ in 0..3 {
            sim.cut_before_response(get_time_match(), Fault::Reset);
        }
        // The members cut above reconnect within a few hundred ms: all three up again.
        tokio::time::timeout(WAIT, members_seen.wait_for(|s| s.up.iter().all(|&u| u) && s.reconnects.iter().sum::<u32>() == 3))
            .await
            .unwrap()
            .unwrap();
        assert!(pool.members().iter().all(|c| c.state() == ClientState::Connected));
        let started = Instant::now();
        let e = pool.request_raw("public/get_time", Some(&params), Failover::Always).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
        let PoolError::AllMembersFailed { failures } = &e else { panic!("{e:?}") };
        let tried: HashSet<usize> = failures.iter().map(|(m, _)| *m).collect();
        assert_eq!(tried.len(), 3, "{e}");
        assert!(failures.iter().all(|(_, e)| matches!(e, ClientError::Disconnected { sent: true })), "{e}");

        // The venue gone: every member fails at once, not sent.
        drop(sim);
        tokio::time::timeout(WAIT, members_seen.wait_for(|s| s.up.iter().all(|&u| !u))).await.unwrap().unwrap();
        let e = pool.request("public/get_time", json!({})).await.unwrap_err();
        let PoolError::AllMembersFailed { failures } = &e else { panic!("{e:?}") };
        assert_eq!(failures.len(), 3, "{e}");
        assert!(failures.iter().all(|(_, e)| matches!(e, ClientError::Disconnected { sent: false })), "{e}");
        assert!(pool.health().iter().all(|h| h.in_flight == 0));
        pool.close().await;
    })
    .await;
}

/// Channels are sharded under the per-connection limit, as the simulator sees the
/// subscriptions; a call past the capacity is refused whole (nothing subscribed); data comes
/// with the index of the member holding its channel; a member's reconnect restores its own
/// channels only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharding_respects_the_per_connection_limit() {
    bounded(async {
        let sim = sim().await;
        let (clients, ids) = members(&sim, 3).await;
        let (pool, mut events) =
            ClientPool::from_clients(clients, PoolConfig::sharded().channels_per_connection(4)).unwrap();
        assert_eq!(pool.capacity(), 12);
        let mut names = Vec::new();
        for instrument in ["BTC-PERPETUAL", "ETH-PERPETUAL", "BTC-25DEC26"] {
            for kind in ["book", "ticker", "trades"] {
                for interval in ["100ms", "agg2"] {
                    names.push(format!("{kind}.{instrument}.{interval}"));
                }
            }
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let on_venue = |sim: &DeribitSim| -> HashMap<u64, Vec<String>> {
            sim.connections_info().into_iter().map(|c| (c.id, c.channels)).collect()
        };

        let out = pool.subscribe(&names[..10]).await.unwrap();
        assert_eq!(out.confirmed.len(), 10, "{out:?}");
        let venue = on_venue(&sim);
        assert!(venue.values().all(|c| c.len() <= 4), "{venue:?}");
        for (member, id) in ids.iter().enumerate() {
            for channel in &venue[id] {
                assert_eq!(pool.owner(channel), Some(member), "{channel}");
            }
        }
        assert_eq!(venue.values().map(Vec::len).sum::<usize>(), 10);

        // Three more do not fit in the two places left: refused whole.
        let e = pool.subscribe(&names[10..13]).await.unwrap_err();
        assert!(matches!(e, PoolError::CapacityFull { requested: 3, free: 2, per_connection: 4, members: 3 }), "{e:?}");
        assert_eq!(on_venue(&sim).values().map(Vec::len).sum::<usize>(), 10, "nothing of it subscribed");
        // Asking again for held channels takes no room.
        assert_eq!(pool.subscribe(&names[..10]).await.unwrap().confirmed.len(), 10);
        assert_eq!(pool.subscribe(&names[10..12]).await.unwrap().confirmed.len(), 2);
        assert!(on_venue(&sim).values().all(|c| c.len() == 4));
        let out = pool.unsubscribe(&[names[0], "never.subscribed"]).await.unwrap();
        assert_eq!(out.confirmed.len(), 2, "{out:?}");
        assert_eq!(pool.subscribe(&[names[12]]).await.unwrap().confirmed.len(), 1);
        assert_eq!(pool.channels(), 12);
        assert!(on_venue(&sim).values().all(|c| c.len() == 4));
        assert!(pool.health().iter().all(|h| h.channels == 4));

        // Data carries the index of the member holding its channel.
        sim.step_market(30);
        let mut seen = HashSet::new();
        while seen.len() < 3 {
            let (e, _) = until(&mut events, |e| matches!(e.event, ClientEvent::Message { .. })).await;
            let ClientEvent::Message { channel: Some(channel), .. } = &e.event else { panic!("{e:?}") };
            if &**channel == names[0] {
                continue; // its snapshot, read only now: no longer held
            }
            assert_eq!(pool.owner(channel), Some(e.member), "{channel}");
            seen.insert(e.member);
        }

        // Member 1's connection reset: it restores its own four channels, nobody else's.
        let before = on_venue(&sim)[&ids[1]].clone();
        assert!(sim.fault(ids[1], Fault::Reset));
        let (e, _) = until(&mut events, |e| e.member == 1 && matches!(e.event, ClientEvent::Restored { .. })).await;
        let ClientEvent::Restored { confirmed, .. } = &e.event else { unreachable!() };
        assert_eq!(confirmed.len(), 4);
        let venue = on_venue(&sim);
        let new_id = venue.keys().copied().find(|id| !ids.contains(id)).unwrap();
        let mut after = venue[&new_id].clone();
        after.sort();
        let mut before = before;
        before.sort();
        assert_eq!(after, before);
        assert!(venue.values().all(|c| c.len() == 4));
        pool.close().await;
    })
    .await;
}

/// A reader that does not read while the market runs at full rate: the merged queue stays
/// within its ceiling (`DropOldest`), and every notification the simulator sent the members
/// (its publication log) is either delivered or reported dropped, against the member it came
/// from. Then the stream ends
/// after every member's `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_stream_flood_is_bounded_and_every_drop_reported() {
    bounded(async {
        // The simulator's log of what it published: every notification, with its recipients.
        let sim = DeribitSim::builder()
            .manual_market()
            .rate_limit(RateLimit::unlimited())
            .publication_log(1 << 20)
            .start()
            .await
            .unwrap();
        let limit = 16 << 10;
        let pc = PoolConfig::sharded().event_buffer(limit, Overflow::DropOldest);
        let (pool, mut events) =
            ClientPool::connect(&[&sim.url()], 2, config(), |_| Arc::new(Deribit::new()) as Arc<dyn Dialect>, pc)
                .unwrap();
        for _ in 0..2 {
            until(&mut events, |e| matches!(e.event, ClientEvent::Connected { .. })).await;
        }
        let channels = [
            "book.BTC-PERPETUAL.100ms",
            "book.ETH-PERPETUAL.100ms",
            "trades.BTC-PERPETUAL.100ms",
            "ticker.BTC-PERPETUAL.100ms",
        ];
        pool.subscribe(&channels).await.unwrap();
        assert!((0..2).all(|m| pool.health()[m].channels == 2));
        let mut peak = 0;
        for _ in 0..40 {
            sim.step_market(50);
            tokio::time::sleep(Duration::from_millis(5)).await;
            peak = peak.max(events.queued_bytes());
        }
        assert!(peak <= limit, "{peak}");
        // Read on: every notification the venue sent the members is delivered or reported
        // dropped, against its member (the members' own queues apply backpressure: they drop
        // nothing).
        let received = || sim.publications().iter().map(|p| p.recipients as u64).sum::<u64>();
        let (mut delivered, mut dropped) = (0u64, [0u64; 2]);
        while delivered + dropped[0] + dropped[1] < received() {
            let e = tokio::time::timeout(WAIT, events.recv())
                .await
                .unwrap_or_else(|_| panic!("lost: {delivered} + {dropped:?} of {}", received()))
                .unwrap();
            match e.event {
                ClientEvent::Message { .. } => delivered += 1,
                ClientEvent::Dropped { messages, .. } => dropped[e.member] += messages,
                _ => {}
            }
        }
        assert_eq!(delivered + dropped[0] + dropped[1], received(), "nothing lost silently");
        assert!(received() > 2_000, "{}", received());
        assert!(dropped[0] > 0 && dropped[1] > 0, "{dropped:?}");
        assert_eq!(events.dropped(), dropped[0] + dropped[1]);
        assert!(pool.members().iter().all(|c| c.stats().drops == 0));
        pool.close().await;
        let mut closed = 0;
        while let Some(e) = tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            assert!(!matches!(e.event, ClientEvent::Message { .. } | ClientEvent::Dropped { .. }), "{e:?}");
            closed += usize::from(matches!(e.event, ClientEvent::Closed { .. }));
        }
        assert_eq!(closed, 2, "the stream ends after every member's last event");
    })
    .await;
}
