//! Every fault kind of the test kit's WebSocket server (close with a code, FIN, RST,
//! half-open, stall) injected in every phase of a client's life: idle, streaming at full
//! rate, in the middle of a heartbeat exchange (the client's WebSocket ping, and the venue's
//! `test_request` answered by the client), with requests pending, and during subscription
//! restoration. A table: each phase runs its five faults one after another, the phases run
//! side by side, the whole bounded in time.
//!
//! Each case asserts: the disconnect is seen with the fault's reason (a close's code, a dead
//! peer for the silent faults), no request is left hanging (each one pending at the fault
//! fails with `Disconnected { sent: true }`, not at its 10 s deadline), the session is
//! restored once with the same channels (none lost, none doubled: each connection asked for
//! each channel at most once, the last one exactly once, the refused one never again),
//! messages keep their order and their channel across the reconnect (no duplicate), a
//! message and a request after the reconnect are routed, nothing stays pending, and the
//! client's task ends on close. Alone in its binary, so the task count at the end is exact.
//!
//! Real loopback servers and the real clock: the faults act on kernel sockets, which a paused
//! tokio clock would race (it jumps ahead whenever the runtime waits on a socket). The
//! timers themselves are tested on passed-in clocks in `moorline_proto::client`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::dialect::JsonRpc;
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientError, ClientEvent, ClientState, DisconnectReason, running_tasks};
use moorline_testkit::ws::{ClientId, Fault, Frame, Matcher, MockServer, Reply};
use serde_json::{Value, json};
use tokio::time::Instant;

/// The whole table's bound.
const BOUND: Duration = Duration::from_secs(180);
/// One awaited event's bound.
const WAIT: Duration = Duration::from_secs(15);
/// The requests' deadline: a pending request that fails before it failed at the drop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    Streaming,
    HeartbeatPing,
    HeartbeatAnswer,
    RequestsPending,
    Restoring,
}

const PHASES: [Phase; 6] = [
    Phase::Idle,
    Phase::Streaming,
    Phase::HeartbeatPing,
    Phase::HeartbeatAnswer,
    Phase::RequestsPending,
    Phase::Restoring,
];

fn faults() -> [Fault; 5] {
    [Fault::Close { code: 4000, reason: "bye".into() }, Fault::Fin, Fault::Reset, Fault::HalfOpen, Fault::StallAfter(0)]
}

fn silent(fault: &Fault) -> bool {
    matches!(fault, Fault::HalfOpen | Fault::StallAfter(_))
}

/// A JSON-RPC venue: `subscribe` confirms every channel not starting with `bad.` (while
/// `answer_subscribe` is set), `unsubscribe` and `echo` answer, anything else (`silent`,
/// the heartbeat answer `pong`) is never answered.
async fn venue(answer_subscribe: Arc<AtomicBool>) -> MockServer {
    MockServer::builder()
        .on(
            Matcher::any(),
            Reply::with(move |frame| {
                let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                let id = v.get("id")?.clone();
                let params = v.get("params").cloned().unwrap_or(Value::Null);
                let result = match v.get("method")?.as_str()? {
                    "subscribe" if answer_subscribe.load(Ordering::SeqCst) => Value::Array(
                        params["channels"]
                            .as_array()?
                            .iter()
                            .filter(|c| !c.as_str().unwrap_or("").starts_with("bad."))
                            .cloned()
                            .collect(),
                    ),
                    "unsubscribe" => params["channels"].clone(),
                    "echo" => params,
                    _ => return None,
                };
                Some(Frame::text(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()))
            }),
        )
        .start()
        .await
        .unwrap()
}

fn notification(channel: &str, data: Value) -> Frame {
    Frame::text(
        json!({"jsonrpc":"2.0","method":"subscription","params":{"channel": channel, "data": data}}).to_string(),
    )
}

fn config() -> ClientConfig {
    ClientConfig::builder()
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(5),
        })
        .request_timeout(REQUEST_TIMEOUT)
        .dead_after(Some(Duration::from_millis(300)), Duration::from_secs(2))
        // The venue's `heartbeat` test_request is answered with `pong`; its regular beat is
        // not what this table is about (30 s: never missed within a case).
        .venue_heartbeat(Some(Duration::from_secs(30)), Duration::from_secs(5))
        .build()
        .unwrap()
}

fn dialect() -> JsonRpc {
    JsonRpc::new().heartbeat("heartbeat", Some("pong"))
}

/// The next event matching `pred`; every event read on the way is appended to `seen`.
async fn until(ctx: &str, rx: &mut EventStream, seen: &mut Vec<ClientEvent>, pred: impl Fn(&ClientEvent) -> bool) {
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{ctx}: no matching event within {WAIT:?}; last: {:#?}", tail(seen)))
            .unwrap_or_else(|| panic!("{ctx}: stream ended; last: {:#?}", tail(seen)));
        let done = pred(&ev);
        seen.push(ev);
        if done {
            return;
        }
    }
}

/// The last few events that are not data messages (for failure messages).
fn tail(seen: &[ClientEvent]) -> Vec<&ClientEvent> {
    let mut t: Vec<&ClientEvent> = seen.iter().rev().filter(|e| !e.is_message()).take(12).collect();
    t.reverse();
    t
}

fn is_text_with(frame: &Frame, needle: &str) -> bool {
    frame.as_text().is_some_and(|t| t.contains(needle))
}

/// Subscribe requests per connection: how many times each connection asked for `channel`.
fn subscribes_per_connection(server: &MockServer, channel: &str) -> HashMap<ClientId, usize> {
    let mut per: HashMap<ClientId, usize> = HashMap::new();
    for r in server.received() {
        let Some(v) = r.frame.as_text().and_then(|t| serde_json::from_str::<Value>(t).ok()) else { continue };
        if v["method"] == "subscribe" {
            let n = v["params"]["channels"].as_array().map_or(0, |l| l.iter().filter(|c| *c == channel).count());
            *per.entry(r.client).or_default() += n;
        }
    }
    per
}

/// Waits for `client`'s pending table to hold `n` entries.
async fn pending_reaches(ctx: &str, client: &Client, n: usize) {
    tokio::time::timeout(WAIT, async {
        while client.stats().pending != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{ctx}: {n} requests never pending (now {})", client.stats().pending));
}

/// Feeds the venue's stream as fast as the client takes it (at most 2,000 ahead of what it
/// has read off the socket, so the server's queue stays bounded) until `stop`.
fn stream_at_full_rate(server: Arc<MockServer>, client: Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let ahead = n.saturating_sub(client.stats().messages_in);
            if ahead >= 2000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            for _ in 0..100 {
                server.inject(notification(if n.is_multiple_of(2) { "a" } else { "b" }, json!(n)));
                n += 1;
            }
            tokio::task::yield_now().await;
        }
        n
    })
}

/// Every data message seen: a streamed one has channel `a` or `b` and a number greater than
/// the one before it (in order, none doubled, across the reconnect); the marker is counted.
fn check_messages(ctx: &str, seen: &[ClientEvent], last: &mut Option<u64>, markers: &mut usize) {
    for e in seen {
        let ClientEvent::Message { data, channel } = e else { continue };
        let v: Value = serde_json::from_str(data.as_text().unwrap()).unwrap();
        let channel = channel.as_deref().unwrap_or_else(|| panic!("{ctx}: a message without its channel: {v}"));
        assert_eq!(v["params"]["channel"], channel, "{ctx}: routed with its own channel");
        if v["params"]["data"] == "marker" {
            *markers += 1;
            continue;
        }
        let n = v["params"]["data"].as_u64().unwrap();
        assert!(matches!(channel, "a" | "b"), "{ctx}: {channel}");
        assert_eq!(channel, if n.is_multiple_of(2) { "a" } else { "b" }, "{ctx}: message {n} on the wrong channel");
        assert!(last.is_none_or(|l| n > l), "{ctx}: message {n} after {last:?}: out of order or doubled");
        *last = Some(n);
    }
}

/// One case: `fault` in `phase`.
async fn case(phase: Phase, fault: Fault) {
    let ctx = format!("{phase:?} / {fault:?}");
    let ctx = ctx.as_str();
    let answer_subscribe = Arc::new(AtomicBool::new(true));
    let server = Arc::new(venue(answer_subscribe.clone()).await);
    let (client, mut rx) = Client::connect(&server.url(), config(), dialect()).unwrap();
    let mut seen = Vec::new();
    until(ctx, &mut rx, &mut seen, |e| matches!(e, ClientEvent::Restored { .. })).await;
    let out = client.subscribe(&["a", "b", "bad.c"]).await.unwrap();
    assert_eq!(out.confirmed.iter().map(|c| &**c).collect::<Vec<_>>(), ["a", "b"], "{ctx}");
    assert_eq!(out.refused.len(), 1, "{ctx}");
    let first = server.clients()[0].id;

    // Requests pending at the fault: one in every phase, ten while "requests pending".
    let pending = if matches!(phase, Phase::RequestsPending) { 10 } else { 1 };
    let mut calls = Vec::new();
    for _ in 0..pending {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            let t0 = Instant::now();
            (c.request("silent", json!({})).await, t0.elapsed())
        }));
    }
    pending_reaches(ctx, &client, pending).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut streamer = None;
    // Disconnects expected before the session is restored again.
    let mut disconnects = 1;
    match phase {
        Phase::Idle | Phase::RequestsPending => {
            assert_eq!(server.fault(fault.clone()), 1, "{ctx}");
        }
        Phase::Streaming => {
            streamer = Some(stream_at_full_rate(server.clone(), client.clone(), stop.clone()));
            // Streaming is under way: the client has read a few thousand messages.
            tokio::time::timeout(WAIT, async {
                while client.stats().messages_in < 3000 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{ctx}: the stream did not start"));
            assert_eq!(server.fault(fault.clone()), 1, "{ctx}");
        }
        Phase::HeartbeatPing => {
            // The client pings after 300 ms of silence: the fault lands right after the
            // server reads a ping (for the silent faults: before the pong leaves).
            let t0 = std::time::Instant::now();
            tokio::time::timeout(WAIT, async {
                while !server.received().iter().any(|r| r.at >= t0 && matches!(r.frame, Frame::Ping(_))) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{ctx}: no ping"));
            assert_eq!(server.fault(fault.clone()), 1, "{ctx}");
        }
        Phase::HeartbeatAnswer => {
            // The venue's test_request; the client's answer (`pong`, a request) is read and
            // never answered: the fault lands in the middle of the exchange.
            server.inject(Frame::text(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{}}"#));
            server.expect_received(Matcher::predicate(|f| is_text_with(f, r#""method":"pong""#)), WAIT).await.unwrap();
            assert_eq!(client.stats().pending, pending + 1, "{ctx}: the heartbeat answer awaits its response");
            assert_eq!(server.fault(fault.clone()), 1, "{ctx}");
        }
        Phase::Restoring => {
            // The next connection's restore is not answered; it is cut by the fault.
            answer_subscribe.store(false, Ordering::SeqCst);
            assert_eq!(server.fault(Fault::Fin), 1, "{ctx}");
            let second = tokio::time::timeout(WAIT, async {
                loop {
                    let asked = subscribes_per_connection(&server, "a");
                    if let Some(id) = asked.keys().find(|id| **id != first) {
                        return *id;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{ctx}: the restore never asked again"));
            assert!(server.fault_to(second, fault.clone()), "{ctx}");
            answer_subscribe.store(true, Ordering::SeqCst);
            disconnects = 2;
        }
    }

    // No request hangs: each fails at the drop, typed, not at its deadline.
    for call in calls {
        let (r, took) = tokio::time::timeout(WAIT, call).await.expect("a request hangs").unwrap();
        assert!(matches!(r, Err(ClientError::Disconnected { sent: true })), "{ctx}: {r:?}");
        assert!(took < REQUEST_TIMEOUT, "{ctx}: failed at its deadline, not at the drop ({took:?})");
    }

    // The disconnects, then reconnected and restored once, with the same channels.
    let from = seen.len();
    until(ctx, &mut rx, &mut seen, |e| matches!(e, ClientEvent::Reconnected { .. })).await;
    until(ctx, &mut rx, &mut seen, |e| matches!(e, ClientEvent::Restored { .. })).await;
    let events: Vec<&ClientEvent> = seen[from..].iter().filter(|e| !e.is_message()).collect();
    let reasons: Vec<&DisconnectReason> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), disconnects, "{ctx}: {events:#?}");
    let reason = reasons[disconnects - 1];
    match &fault {
        Fault::Close { .. } => assert!(reason.to_string().contains("code 4000"), "{ctx}: {reason}"),
        f if silent(f) => assert!(matches!(reason, DisconnectReason::DeadPeer(_)), "{ctx}: {reason:?}"),
        _ => assert!(
            matches!(reason, DisconnectReason::Down(_) | DisconnectReason::Exited(_)),
            "{ctx}: detected at once, not by a timer: {reason:?}"
        ),
    }
    assert_eq!(
        events.iter().filter(|e| matches!(e, ClientEvent::Reconnecting { .. })).count(),
        disconnects,
        "{ctx}: {events:#?}"
    );
    assert_eq!(events.iter().filter(|e| matches!(e, ClientEvent::Restored { .. })).count(), 1, "{ctx}");
    let Some(ClientEvent::Restored { confirmed, refused }) = seen.last() else { unreachable!() };
    let mut names: Vec<&str> = confirmed.iter().map(|c| &**c).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"], "{ctx}: no subscription lost, none doubled");
    assert!(refused.is_empty(), "{ctx}: {refused:?}");
    assert_eq!(client.state(), ClientState::Connected, "{ctx}");
    assert_eq!(client.stats().reconnects, 1, "{ctx}: one session lost");

    // Each connection asked for each channel at most once; the live one exactly once; the
    // refused channel was never asked for again.
    assert!(server.wait_for_open_connections(1, WAIT).await, "{ctx}");
    let live = server.clients()[0].id;
    for channel in ["a", "b"] {
        let per = subscribes_per_connection(&server, channel);
        assert!(per.values().all(|n| *n <= 1), "{ctx}: `{channel}` doubled on a connection: {per:?}");
        assert_eq!(per.get(&live), Some(&1), "{ctx}: `{channel}` on the live connection: {per:?}");
        assert_eq!(per.len(), disconnects + 1, "{ctx}: `{channel}` asked for once per connection: {per:?}");
    }
    assert_eq!(subscribes_per_connection(&server, "bad.c").values().sum::<usize>(), 1, "{ctx}");

    // After the reconnect: a message routed with its channel, in order behind the stream.
    stop.store(true, Ordering::SeqCst);
    if let Some(s) = streamer {
        let sent = s.await.unwrap();
        assert!(sent >= 3000, "{ctx}");
    }
    server.inject(notification("b", json!("marker")));
    until(
        ctx,
        &mut rx,
        &mut seen,
        |e| matches!(e, ClientEvent::Message { data, .. } if data.as_text().is_some_and(|t| t.contains("marker"))),
    )
    .await;
    let (mut last, mut markers) = (None, 0);
    check_messages(ctx, &seen, &mut last, &mut markers);
    assert_eq!(markers, 1, "{ctx}");
    if matches!(phase, Phase::Streaming) {
        assert!(last.is_some_and(|l| l >= 2999), "{ctx}: the stream was read ({last:?})");
    }

    // A request on the new connection; then nothing is pending (the heartbeat answer of the
    // lost connection and the failed requests included).
    let echoed = client.request("echo", json!({"after": true})).await.unwrap();
    assert_eq!(echoed.get(), r#"{"after":true}"#, "{ctx}");
    assert_eq!(client.stats().pending, 0, "{ctx}: nothing left pending");

    client.close().await.unwrap();
    until(ctx, &mut rx, &mut seen, |e| matches!(e, ClientEvent::Closed { .. })).await;
    assert!(matches!(seen.last(), Some(ClientEvent::Closed { error: None })), "{ctx}");
    assert!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().is_none(), "{ctx}: the stream ends");
    assert_eq!(client.state(), ClientState::Closed, "{ctx}");
}

/// The table: phases side by side, each phase's faults one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_in_every_phase() {
    tokio::time::timeout(BOUND, async {
        let phases: Vec<_> = PHASES
            .into_iter()
            .map(|phase| {
                tokio::spawn(async move {
                    for fault in faults() {
                        case(phase, fault).await;
                    }
                })
            })
            .collect();
        for p in phases {
            if let Err(e) = p.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        // No client task left behind (this binary has no other test).
        tokio::time::timeout(WAIT, async {
            while running_tasks() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} client tasks still running", running_tasks()));
    })
    .await
    .expect("the table exceeded its time bound");
}
