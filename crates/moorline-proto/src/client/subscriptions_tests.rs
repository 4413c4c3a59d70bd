#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use super::*;

type Subs = Subscriptions<String, u32>;

fn a(n: u64) -> Attempt {
    (0..n).fold(Attempt::default(), |a, _| a.next())
}

fn drain(s: &mut Subs) -> Vec<SubEvent<String, u32>> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// What a Deribit client sends for a request: the real bytes, to check the budget.
fn encode(id: u64, req: &Request<String>) -> String {
    let list: Vec<String> = req.channels.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"public/subscribe\",\"params\":{{\"channels\":[{}]}}}}",
        list.join(",")
    )
}

/// 200 long channel names (about 180 bytes each: 36 KB in all, more than one 32 KiB frame).
fn channels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("book.{}.{i:04}.{}", "BTC-PERPETUAL", "x".repeat(150))).collect()
}

fn resolved(events: &[SubEvent<String, u32>]) -> BTreeMap<u32, Outcome> {
    let mut out = BTreeMap::new();
    for e in events {
        if let SubEvent::Resolved { waiter, outcome, .. } = e {
            assert!(out.insert(*waiter, outcome.clone()).is_none(), "waiter {waiter} resolved twice");
        }
    }
    out
}

#[test]
fn two_hundred_channels_are_batched_under_32_kib_each_exactly_once() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    let names = channels(200);
    for c in &names {
        s.subscribe(c.clone(), None).unwrap();
    }
    s.on_connected(a(1));
    let plan = s.restore_plan();
    assert!(plan.len() >= 2, "36 KB cannot go in one 32 KiB request");
    assert!(plan.len() <= 3, "as few requests as the budget allows: {}", plan.len());
    let mut seen = Vec::new();
    for (i, req) in plan.iter().enumerate() {
        let wire = encode(u64::MAX - i as u64, req);
        assert!(wire.len() <= 32 * 1024, "request {i}: {} bytes", wire.len());
        assert!(req.bytes >= wire.len(), "the estimate covers the real bytes");
        assert_eq!(req.kind, Kind::Subscribe);
        assert_eq!(req.attempt, a(1));
        seen.extend(req.channels.iter().cloned());
    }
    seen.sort();
    assert_eq!(seen, names, "each channel exactly once");
    assert!(s.next_request().is_none());
    for req in &plan {
        assert_eq!(s.on_reply(a(1), req.id, Reply::Confirmed(req.channels.clone())), ReplyStatus::Applied);
    }
    let events = drain(&mut s);
    let [SubEvent::Restored { attempt, confirmed, refused }] = &events[..] else { panic!("{events:?}") };
    assert_eq!((*attempt, confirmed.len(), refused.len()), (a(1), 200, 0));
    assert_eq!(s.confirmed().count(), 200);
}

#[test]
fn a_count_limit_per_request_is_honoured_too() {
    let cfg = SubscriptionsConfig { max_per_request: 7, ..SubscriptionsConfig::default() };
    let mut s = Subs::new(cfg);
    for i in 0..20 {
        s.subscribe(format!("c{i:02}"), None).unwrap();
    }
    s.on_connected(a(1));
    let sizes: Vec<usize> = s.restore_plan().iter().map(|r| r.channels.len()).collect();
    assert_eq!(sizes, [7, 7, 6]);
}

#[test]
fn a_refused_channel_is_reported_once_and_not_restored() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    s.subscribe("good".into(), Some(1)).unwrap();
    s.subscribe("bad".into(), Some(2)).unwrap();
    s.on_connected(a(1));
    let req = s.next_request().unwrap();
    s.on_reply(a(1), req.id, Reply::Confirmed(vec!["good".into(), "never-asked".into()]));
    let mut events = drain(&mut s);
    // Reconnect twice: "bad" is not asked for again, so it is never reported again.
    for n in 2..=3 {
        s.on_disconnect();
        s.on_connected(a(n));
        let req = s.next_request().unwrap();
        assert_eq!(req.channels, ["good"]);
        s.on_reply(a(n), req.id, Reply::Confirmed(vec!["good".into()]));
        events.extend(drain(&mut s));
    }
    let refusals: Vec<_> = events.iter().filter(|e| matches!(e, SubEvent::Refused { .. })).collect();
    assert_eq!(refusals, [&SubEvent::Refused { attempt: a(1), channel: "bad".into(), refusal: Refusal::NotConfirmed }]);
    let r = resolved(&events);
    assert_eq!(r[&1], Outcome::Subscribed);
    assert_eq!(r[&2], Outcome::Refused(Refusal::NotConfirmed));
    assert_eq!(s.state(&"never-asked".to_string()), None, "names not asked for are not taken in");
    let restored: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SubEvent::Restored { attempt, confirmed, refused } => Some((*attempt, confirmed.clone(), refused.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(restored[0], (a(1), vec!["good".to_string()], vec![("bad".to_string(), Refusal::NotConfirmed)]));
    assert_eq!(restored[2], (a(3), vec!["good".to_string()], vec![]));
    assert_eq!(s.waiters(), 0);
}

#[test]
fn a_reconnect_during_a_restore_neither_doubles_nor_loses_a_channel() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    let names = channels(200);
    for (i, c) in names.iter().enumerate() {
        s.subscribe(c.clone(), Some(i as u32)).unwrap();
    }
    s.on_connected(a(1));
    let first = s.restore_plan();
    // The venue answers the first request only; then the connection drops.
    s.on_reply(a(1), first[0].id, Reply::Confirmed(first[0].channels.clone()));
    let early = drain(&mut s);
    assert_eq!(resolved(&early).len(), first[0].channels.len());
    assert!(s.restoring(), "not every channel answered");
    s.on_disconnect();
    assert!(s.next_request().is_none(), "nothing is sent while disconnected");
    // A late reply of the dead connection arrives: ignored.
    assert_eq!(s.on_reply(a(1), first[1].id, Reply::Confirmed(first[1].channels.clone())), ReplyStatus::Stale);
    s.on_connected(a(2));
    assert_eq!(s.on_reply(a(1), first[1].id, Reply::All), ReplyStatus::Stale, "still stale after the reconnect");
    let second = s.restore_plan();
    let mut seen: Vec<String> = second.iter().flat_map(|r| r.channels.iter().cloned()).collect();
    seen.sort();
    assert_eq!(seen, names, "all 200 again, each once (the venue forgot them with the connection)");
    for r in &second {
        s.on_reply(a(2), r.id, Reply::Confirmed(r.channels.clone()));
    }
    let events = drain(&mut s);
    let all = resolved(&[early, events.clone()].concat());
    assert_eq!(all.len(), 200, "every waiter resolved exactly once");
    assert!(all.values().all(|o| *o == Outcome::Subscribed));
    let Some(SubEvent::Restored { attempt, confirmed, .. }) = events.last() else { panic!() };
    assert_eq!((*attempt, confirmed.len()), (a(2), 200));
    assert_eq!(s.confirmed().count(), 200);
}

#[test]
fn a_stale_reply_changes_nothing() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    s.subscribe("x".into(), Some(7)).unwrap();
    s.on_connected(a(1));
    let r1 = s.next_request().unwrap();
    s.on_disconnect();
    s.on_connected(a(2));
    let r2 = s.next_request().unwrap();
    assert_ne!(r1.id, r2.id);
    assert_eq!(s.on_reply(a(1), r1.id, Reply::Error("old".into())), ReplyStatus::Stale);
    assert_eq!(s.on_reply(a(2), r1.id, Reply::Error("old".into())), ReplyStatus::Unknown, "not of this attempt");
    assert_eq!(s.state(&"x".to_string()), Some(ChannelState::Requested));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.on_reply(a(2), r2.id, Reply::Confirmed(vec!["x".into()])), ReplyStatus::Applied);
    assert_eq!(s.on_reply(a(2), r2.id, Reply::Confirmed(vec!["x".into()])), ReplyStatus::Unknown, "answered once");
    assert_eq!(resolved(&drain(&mut s))[&7], Outcome::Subscribed);
}

#[test]
fn calls_while_disconnected_shape_the_next_restore() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    s.subscribe("a".into(), None).unwrap();
    s.subscribe("b".into(), None).unwrap();
    s.on_connected(a(1));
    let r = s.next_request().unwrap();
    s.on_reply(a(1), r.id, Reply::All);
    drain(&mut s);
    s.on_disconnect();
    s.subscribe("c".into(), Some(1)).unwrap();
    s.unsubscribe(&"a".to_string(), Some(2)).unwrap();
    assert_eq!(resolved(&drain(&mut s))[&2], Outcome::Unsubscribed, "not on any venue: done at once");
    assert_eq!(s.state(&"c".to_string()), Some(ChannelState::Wanted));
    assert_eq!(s.next_request(), None);
    s.on_connected(a(2));
    let r = s.next_request().unwrap();
    assert_eq!(r.channels, ["b", "c"]);
    s.on_reply(a(2), r.id, Reply::All);
    assert_eq!(resolved(&drain(&mut s))[&1], Outcome::Subscribed);
}

#[test]
fn unsubscribing_before_the_confirmation_withdraws_and_cleans_up_on_the_venue() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    s.on_connected(a(1));
    assert!(matches!(drain(&mut s)[..], [SubEvent::Restored { .. }]), "nothing to restore: at once");
    s.subscribe("x".into(), Some(1)).unwrap();
    let sub = s.next_request().unwrap();
    s.unsubscribe(&"x".to_string(), Some(2)).unwrap();
    assert_eq!(resolved(&drain(&mut s))[&1], Outcome::Withdrawn);
    assert_eq!(s.next_request(), None, "nothing to unsubscribe until the venue answers");
    // The venue confirms the subscription after all: it must be taken off again.
    s.on_reply(a(1), sub.id, Reply::Confirmed(vec!["x".into()]));
    let unsub = s.next_request().unwrap();
    assert_eq!((unsub.kind, unsub.channels.clone()), (Kind::Unsubscribe, vec!["x".to_string()]));
    assert_eq!(s.state(&"x".to_string()), Some(ChannelState::Unsubscribing));
    // Subscribed again while the unsubscribe is in flight: it is re-requested after it.
    s.subscribe("x".into(), Some(3)).unwrap();
    s.on_reply(a(1), unsub.id, Reply::Confirmed(vec!["x".into()]));
    let again = s.next_request().unwrap();
    assert_eq!(again.kind, Kind::Subscribe);
    s.on_reply(a(1), again.id, Reply::Confirmed(vec!["x".into()]));
    let r = resolved(&drain(&mut s));
    assert_eq!((r[&2].clone(), r[&3].clone()), (Outcome::Unsubscribed, Outcome::Subscribed));
    assert_eq!(s.waiters(), 0);
}

#[test]
fn restore_off_drops_what_the_venue_had_and_fails_its_waiters() {
    let cfg = SubscriptionsConfig { restore: false, ..SubscriptionsConfig::default() };
    let mut s = Subs::new(cfg);
    s.subscribe("on".into(), None).unwrap();
    s.subscribe("asked".into(), Some(1)).unwrap();
    s.on_connected(a(1));
    let r = s.next_request().unwrap();
    s.on_disconnect();
    s.subscribe("queued".into(), Some(2)).unwrap();
    assert_eq!(resolved(&drain(&mut s))[&1], Outcome::Failed(Failure::Disconnected));
    assert_eq!(s.len(), 1);
    s.on_connected(a(2));
    assert_eq!(s.next_request().unwrap().channels, ["queued"]);
    assert_eq!(s.on_reply(a(1), r.id, Reply::All), ReplyStatus::Stale);
}

#[test]
fn an_error_reply_refuses_the_request_and_a_refused_unsubscribe_holds() {
    let mut s = Subs::new(SubscriptionsConfig::default());
    s.subscribe("x".into(), Some(1)).unwrap();
    s.subscribe("y".into(), Some(2)).unwrap();
    s.on_connected(a(1));
    let r = s.next_request().unwrap();
    s.on_reply(a(1), r.id, Reply::Error("10028 too_many_requests".into()));
    let ev = drain(&mut s);
    let venue = Refusal::Venue("10028 too_many_requests".into());
    assert_eq!(resolved(&ev)[&1], Outcome::Refused(venue.clone()));
    assert!(matches!(ev.last(), Some(SubEvent::Restored { refused, .. }) if refused.len() == 2));
    assert!(s.is_empty());
    // A refused unsubscribe: the waiter fails, the channel is not asked about again on this
    // connection, and it is gone after the next disconnect.
    s.subscribe("z".into(), None).unwrap();
    let r = s.next_request().unwrap();
    s.on_reply(a(1), r.id, Reply::All);
    s.unsubscribe(&"z".to_string(), Some(3)).unwrap();
    let u = s.next_request().unwrap();
    s.on_reply(a(1), u.id, Reply::Error("no".into()));
    assert_eq!(resolved(&drain(&mut s))[&3], Outcome::Failed(Failure::Venue("no".into())));
    assert_eq!(s.next_request(), None);
    s.on_disconnect();
    assert!(s.is_empty());
}

#[test]
fn bounds_are_typed_errors() {
    let cfg = SubscriptionsConfig {
        max_channels: 3,
        max_waiters: 2,
        max_request_bytes: 200,
        ..SubscriptionsConfig::default()
    };
    let mut s = Subs::new(cfg);
    assert_eq!(
        s.subscribe("x".repeat(100), None),
        Err(SubscribeError::TooLarge { cost: 103, budget: 200 }),
        "cost + 128 overhead > 200"
    );
    for c in ["a", "b", "c"] {
        s.subscribe(c.into(), None).unwrap();
    }
    assert_eq!(s.subscribe("d".into(), None), Err(SubscribeError::TooManyChannels { limit: 3 }));
    assert!(s.subscribe("a".into(), Some(1)).is_ok(), "an existing channel is no new entry");
    s.subscribe("b".into(), Some(2)).unwrap();
    assert_eq!(s.subscribe("c".into(), Some(3)), Err(SubscribeError::TooManyWaiters { limit: 2 }));
    assert_eq!(s.unsubscribe(&"c".to_string(), Some(3)), Err(SubscribeError::TooManyWaiters { limit: 2 }));
    assert_eq!(s.len(), 3);
    // A flood of subscribe calls never grows past the bounds.
    for i in 0..10_000u32 {
        let _ = s.subscribe(format!("f{i}"), Some(i));
        assert!(s.len() <= 3 && s.waiters() <= 2);
    }
    s.close();
    let r = resolved(&drain(&mut s));
    assert_eq!(r.len(), 2);
    assert!(r.values().all(|o| *o == Outcome::Failed(Failure::Closed)));
    assert!(s.is_empty());
    assert_eq!(s.waiters(), 0);
}
