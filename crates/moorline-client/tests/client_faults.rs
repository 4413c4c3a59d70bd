//! The client against the test kit's WebSocket server and its faults, over loopback: every
//! fault while idle, streaming, with requests pending and during restoration; refused
//! subscriptions; upgrades refused (delays grow; retries run out; fatal statuses stop);
//! half-open detection; a slow reader. Each test bounds its time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, Overflow, RetryConfig};
use moorline_client::dialect::JsonRpc;
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientError, ClientEvent, ClientState, DisconnectReason};
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer, Reply};
use serde_json::{Value, json};
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

/// A JSON-RPC venue: `subscribe` confirms every channel not starting with `bad.`, `echo`
/// answers its params, `silent` is never answered.
async fn venue() -> MockServer {
    venue_over(false).await
}

/// The venue, also answering WebSockets over HTTP/2 (RFC 8441, prior knowledge) when `http2`.
async fn venue_over(http2: bool) -> MockServer {
    MockServer::builder()
        .http2(http2)
        .on(
            Matcher::any(),
            Reply::with(|frame| {
                let text = frame.as_text()?;
                let v: Value = serde_json::from_str(text).ok()?;
                let id = v.get("id")?.clone();
                let params = v.get("params").cloned().unwrap_or(Value::Null);
                let result = match v.get("method")?.as_str()? {
                    "subscribe" => {
                        let list: Vec<Value> = params["channels"]
                            .as_array()?
                            .iter()
                            .filter(|c| !c.as_str().unwrap_or("").starts_with("bad."))
                            .cloned()
                            .collect();
                        Value::Array(list)
                    }
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

fn notification(channel: &str, n: u64) -> Frame {
    Frame::text(json!({"jsonrpc":"2.0","method":"subscription","params":{"channel": channel, "data": n}}).to_string())
}

fn config() -> moorline_client::ClientConfigBuilder {
    ClientConfig::builder()
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(5),
        })
        .request_timeout(Duration::from_secs(5))
        .dead_after(Some(Duration::from_millis(300)), Duration::from_secs(2))
}

/// The next event matching `pred`, with the events skipped on the way.
async fn until(rx: &mut EventStream, pred: impl Fn(&ClientEvent) -> bool) -> (ClientEvent, Vec<ClientEvent>) {
    let mut skipped = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event within {WAIT:?}; skipped {skipped:#?}"))
            .unwrap_or_else(|| panic!("stream ended; skipped {skipped:#?}"));
        if pred(&ev) {
            return (ev, skipped);
        }
        skipped.push(ev);
    }
}

fn restored(ev: &ClientEvent) -> bool {
    matches!(ev, ClientEvent::Restored { .. })
}

/// How many times the server was asked to subscribe `channel`, over all connections.
fn subscribe_requests(server: &MockServer, channel: &str) -> usize {
    server
        .received()
        .iter()
        .filter_map(|r| r.frame.as_text().and_then(|t| serde_json::from_str::<Value>(t).ok()))
        .filter(|v| v["method"] == "subscribe")
        .map(|v| v["params"]["channels"].as_array().unwrap().iter().filter(|c| *c == channel).count())
        .sum()
}

/// Connects and subscribes to `a` and `b`; returns after the subscribe resolved.
async fn connected(server: &MockServer, config: ClientConfig) -> (Client, EventStream) {
    connected_over(server, config, moorline::Protocol::Http1).await
}

/// [`connected`], checking the connection's protocol.
async fn connected_over(
    server: &MockServer,
    config: ClientConfig,
    protocol: moorline::Protocol,
) -> (Client, EventStream) {
    let (client, mut rx) = Client::connect(&server.url(), config, JsonRpc::new()).unwrap();
    let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
    assert!(matches!(ev, ClientEvent::Connected { protocol: p, .. } if p == protocol), "{ev:?}");
    until(&mut rx, restored).await;
    let out = client.subscribe(&["a", "b", "bad.c"]).await.unwrap();
    assert_eq!(out.confirmed.iter().map(|c| &**c).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(out.refused.len(), 1);
    assert_eq!(&*out.refused[0].channel, "bad.c");
    assert_eq!(client.state(), ClientState::Connected);
    (client, rx)
}

/// After a fault (its `Disconnected` read): reconnecting, reconnected, the same channels restored exactly once, and a
/// message injected on the new connection routed with its channel.
async fn recovers(server: &MockServer, client: &Client, rx: &mut EventStream, connections: usize) {
    let (_, skipped) = until(rx, |e| matches!(e, ClientEvent::Reconnected { .. })).await;
    assert!(skipped.iter().any(|e| matches!(e, ClientEvent::Reconnecting { .. })), "{skipped:#?}");
    let (ev, _) = until(rx, restored).await;
    let ClientEvent::Restored { confirmed, refused } = ev else { unreachable!() };
    let mut names: Vec<&str> = confirmed.iter().map(|c| &**c).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"], "no subscription lost, none doubled");
    assert!(refused.is_empty(), "a refused channel is not asked for again: {refused:?}");
    assert_eq!(client.state(), ClientState::Connected);
    assert_eq!(subscribe_requests(server, "a"), connections, "one subscribe of `a` per connection");
    assert_eq!(subscribe_requests(server, "bad.c"), 1, "a refused channel is not restored");
    assert!(server.wait_for_open_connections(1, WAIT).await);
    server.inject(notification("a", 42));
    let (ev, _) = until(rx, |e| matches!(e, ClientEvent::Message { .. })).await;
    let ClientEvent::Message { data, channel } = ev else { unreachable!() };
    assert_eq!(channel.as_deref(), Some("a"));
    assert!(data.as_text().unwrap().contains("42"));
    // Requests work on the new connection.
    let echoed = client.request("echo", json!({"x": 1})).await.unwrap();
    assert_eq!(echoed.get(), r#"{"x":1}"#);
}

async fn fault_while_idle(fault: Fault) {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        assert_eq!(server.fault(fault.clone()), 1);
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        if matches!(fault, Fault::StallAfter(_)) {
            assert!(matches!(ev, ClientEvent::Disconnected { reason: DisconnectReason::DeadPeer(_) }), "{ev:?}");
        }
        recovers(&server, &client, &mut rx, 2).await;
        client.close().await.unwrap();
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Closed { .. })).await;
        assert!(matches!(ev, ClientEvent::Closed { error: None }), "{ev:?}");
        assert!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap().is_none(), "the stream ends after Closed");
    })
    .await;
}

#[tokio::test]
async fn close_frame_while_idle() {
    fault_while_idle(Fault::Close { code: 1001, reason: "going away".into() }).await;
}

#[tokio::test]
async fn fin_while_idle() {
    fault_while_idle(Fault::Fin).await;
}

#[tokio::test]
async fn reset_while_idle() {
    fault_while_idle(Fault::Reset).await;
}

#[tokio::test]
async fn stall_while_idle_is_a_dead_peer() {
    fault_while_idle(Fault::StallAfter(0)).await;
}

/// Half-open: nothing arrives, nothing fails. The dead-peer timer (pings after 300 ms of
/// silence, dead after 2 s without any frame) detects it within its bound.
#[tokio::test]
async fn half_open_is_detected_within_the_bound() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        let t0 = Instant::now();
        server.fault(Fault::HalfOpen);
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        let took = t0.elapsed();
        assert!(matches!(ev, ClientEvent::Disconnected { reason: DisconnectReason::DeadPeer(_) }), "{ev:?}");
        // The bound is dead_after (2 s) after the last frame; generous slack for a busy machine.
        assert!(took >= Duration::from_millis(1500), "declared dead too early: {took:?}");
        recovers(&server, &client, &mut rx, 2).await;
        client.close().await.unwrap();
    })
    .await;
}

/// A fault while the venue streams at full rate: recovered, every message routed with its
/// channel before and after.
#[tokio::test]
async fn reset_while_streaming() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        for i in 0..2000 {
            server.inject(notification(if i % 2 == 0 { "a" } else { "b" }, i));
        }
        server.fault(Fault::Reset);
        let (_, skipped) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        for e in &skipped {
            if let ClientEvent::Message { channel, .. } = e {
                assert!(matches!(channel.as_deref(), Some("a" | "b")), "{channel:?}");
            }
        }
        recovers(&server, &client, &mut rx, 2).await;
        client.close().await.unwrap();
    })
    .await;
}

/// Requests pending when the connection drops fail at once with a typed error, none hangs.
#[tokio::test]
async fn pending_requests_fail_at_once_on_a_drop() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        let mut calls = Vec::new();
        for _ in 0..10 {
            let c = client.clone();
            calls.push(tokio::spawn(async move { c.request("silent", json!({})).await }));
        }
        // All ten are on the wire before the fault.
        for _ in 0..100 {
            if client.stats().pending == 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(client.stats().pending, 10);
        let t0 = Instant::now();
        server.fault(Fault::Fin);
        for call in calls {
            let r = call.await.unwrap();
            assert!(matches!(r, Err(ClientError::Disconnected { sent: true })), "{r:?}");
        }
        assert!(t0.elapsed() < Duration::from_secs(4), "failed at the drop, not at the 5 s deadline");
        assert_eq!(client.stats().pending, 0);
        recovers(&server, &client, &mut rx, 2).await;
        client.close().await.unwrap();
    })
    .await;
}

/// A request nobody answers times out at its deadline with a typed error.
#[tokio::test]
async fn unanswered_request_times_out() {
    bounded(async {
        let server = venue().await;
        let config = config().request_timeout(Duration::from_millis(500)).build().unwrap();
        let (client, _rx) = connected(&server, config).await;
        let r = client.request("silent", json!({})).await;
        assert!(matches!(r, Err(ClientError::Timeout { .. })), "{r:?}");
        assert_eq!(client.stats().pending, 0, "the entry left with its caller");
        client.close().await.unwrap();
    })
    .await;
}

/// A drop during restoration (the subscribe reply never comes: the server drops the
/// connection as it arrives): the restore starts over on the next connection, every channel
/// still asked for once per connection, confirmed in the end.
#[tokio::test]
async fn fault_during_restoration() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        // The next subscribe requests are not answered and the connection dies.
        server.clear_replies();
        server.fault(Fault::Fin);
        let (_, _) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        // Second connection: the restore's subscribe goes unanswered; kill it mid-restore.
        let received = server
            .expect_received(Matcher::predicate(|f| f.as_text().is_some_and(|t| t.contains("\"subscribe\""))), WAIT)
            .await;
        assert!(received.is_ok());
        server.fault(Fault::Reset);
        let (_, skipped) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        assert!(!skipped.iter().any(|e| matches!(e, ClientEvent::Reconnected { .. })), "not restored: no Reconnected");
        // Third connection: answered again.
        let fresh = venue().await;
        drop(fresh);
        server.on(Matcher::any(), {
            Reply::with(|frame| {
                let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                let id = v.get("id")?.clone();
                (v["method"] == "subscribe")
                    .then(|| Frame::text(json!({"jsonrpc":"2.0","id":id,"result":v["params"]["channels"]}).to_string()))
            })
        });
        let (ev, _) = until(&mut rx, restored).await;
        let ClientEvent::Restored { confirmed, .. } = ev else { unreachable!() };
        let mut names: Vec<&str> = confirmed.iter().map(|c| &**c).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(subscribe_requests(&server, "a"), 3, "once per connection");
        client.close().await.unwrap();
    })
    .await;
}

/// Subscribe calls made while disconnected join the restore.
#[tokio::test]
async fn subscribe_while_disconnected_joins_the_restore() {
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RejectUpgrade(503));
        let (client, mut rx) = Client::connect(&server.url(), config().build().unwrap(), JsonRpc::new()).unwrap();
        until(&mut rx, |e| matches!(e, ClientEvent::Reconnecting { .. })).await;
        let c = client.clone();
        let sub = tokio::spawn(async move { c.subscribe(&["a"]).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.clear_faults();
        let out = sub.await.unwrap().unwrap();
        assert_eq!(out.confirmed.len(), 1);
        let (ev, _) = until(&mut rx, restored).await;
        assert!(matches!(ev, ClientEvent::Restored { ref confirmed, .. } if confirmed.len() == 1), "{ev:?}");
        assert_eq!(subscribe_requests(&server, "a"), 1);
        client.close().await.unwrap();
    })
    .await;
}

/// A server that accepts TCP and refuses every upgrade: the delays grow (no jitter here), and
/// the retries run out with a typed error.
#[tokio::test]
async fn refused_upgrades_back_off_then_give_up() {
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RejectUpgrade(503));
        let config = config()
            .retry(RetryConfig {
                attempts: Attempts::Limited(4),
                base: Duration::from_millis(50),
                cap: Duration::from_secs(1),
                jitter: Jitter::None,
                healthy_after: Duration::from_secs(5),
            })
            .build()
            .unwrap();
        let (client, mut rx) = Client::connect(&server.url(), config, JsonRpc::new()).unwrap();
        let (ev, skipped) = until(&mut rx, |e| matches!(e, ClientEvent::Closed { .. })).await;
        let delays: Vec<Duration> = skipped
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Reconnecting { delay, .. } => Some(*delay),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 4, "{skipped:#?}");
        assert!(delays.windows(2).all(|w| w[1] > w[0]), "delays grow: {delays:?}");
        assert!(
            matches!(ev, ClientEvent::Closed { error: Some(ClientError::RetriesExhausted { attempts: 5, .. }) }),
            "{ev:?}"
        );
        assert_eq!(server.connections_accepted(), 0);
        assert!(server.tcp_connections_accepted() >= 5);
        assert_eq!(client.state(), ClientState::Closed);
        let r = client.send_text("x").await;
        assert!(matches!(r, Err(ClientError::Closed)), "{r:?}");
    })
    .await;
}

/// A 401 on the upgrade is fatal: reported, not retried.
#[tokio::test]
async fn unauthorized_upgrade_is_fatal() {
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RejectUpgrade(401));
        let (_client, mut rx) = Client::connect(&server.url(), config().build().unwrap(), JsonRpc::new()).unwrap();
        let (ev, skipped) = until(&mut rx, |e| matches!(e, ClientEvent::Closed { .. })).await;
        assert!(matches!(ev, ClientEvent::Closed { error: Some(ClientError::FatalConnect { .. }) }), "{ev:?}");
        assert!(!skipped.iter().any(|e| matches!(e, ClientEvent::Reconnecting { .. })), "{skipped:#?}");
        assert_eq!(server.tcp_connections_accepted(), 1);
    })
    .await;
}

/// The first connect's failure is retried too: the venue comes up later.
#[tokio::test]
async fn first_connect_failure_is_retried() {
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RefuseConnections(Duration::from_millis(400)));
        let (client, mut rx) = Client::connect(&server.url(), config().build().unwrap(), JsonRpc::new()).unwrap();
        let (_, skipped) = until(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
        assert!(skipped.iter().any(|e| matches!(e, ClientEvent::Reconnecting { .. })), "{skipped:#?}");
        client.close().await.unwrap();
    })
    .await;
}

/// Sends while disconnected fail at once (the default `OfflineSends::Fail`).
#[tokio::test]
async fn sends_while_disconnected_fail_at_once() {
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RejectUpgrade(503));
        let (client, _rx) = Client::connect(&server.url(), config().build().unwrap(), JsonRpc::new()).unwrap();
        let r = client.send_text("hello").await;
        assert!(matches!(r, Err(ClientError::Disconnected { sent: false })), "{r:?}");
        let r = client.request("echo", json!({})).await;
        assert!(matches!(r, Err(ClientError::Disconnected { sent: false })), "{r:?}");
        client.close().await.unwrap();
    })
    .await;
}

/// A reader that stops reading while the venue floods and pings: the client keeps reading
/// (side buffer), then stops (backpressure), and never declares the live venue dead.
#[tokio::test]
async fn slow_reader_never_causes_a_false_timeout() {
    bounded(async {
        let server = venue().await;
        let config = config().incoming_buffer(64 << 10, Overflow::Backpressure).build().unwrap();
        let (client, mut rx) = connected(&server, config).await;
        let payload = "x".repeat(1000);
        for i in 0..3000u64 {
            server.inject(Frame::text(
                json!({"jsonrpc":"2.0","method":"subscription","params":{"channel":"a","data":payload,"n":i}})
                    .to_string(),
            ));
        }
        // Not reading for well past dead_after (2 s).
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(client.state(), ClientState::Connected, "a slow reader is not a dead peer");
        let mut n = 0u64;
        while n < 3000 {
            let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            match ev {
                ClientEvent::Message { data, .. } => {
                    let v: Value = serde_json::from_str(data.as_text().unwrap()).unwrap();
                    assert_eq!(v["params"]["n"], n, "in order, none lost");
                    n += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(client.stats().drops, 0);
        client.close().await.unwrap();
    })
    .await;
}

/// Drop-oldest: a flood nobody reads is dropped and counted, never silently.
#[tokio::test]
async fn drop_oldest_counts_every_drop() {
    bounded(async {
        let server = venue().await;
        let config = config().incoming_buffer(16 << 10, Overflow::DropOldest).build().unwrap();
        let (client, mut rx) = connected(&server, config).await;
        for i in 0..500u64 {
            server.inject(notification("a", i));
        }
        let (_, _) = tokio::time::timeout(WAIT, async {
            loop {
                if client.stats().messages_in >= 500 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map(|()| ((), ()))
        .unwrap();
        let mut got = 0u64;
        let mut dropped = 0u64;
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            match ev {
                ClientEvent::Message { .. } => got += 1,
                ClientEvent::Dropped { messages, .. } => dropped += messages,
                _ => {}
            }
        }
        assert!(dropped > 0);
        assert_eq!(got + dropped, 500, "every message delivered or counted");
        client.close().await.unwrap();
    })
    .await;
}

/// `reconnect()` drops the connection and restores the session on a new one.
#[tokio::test]
async fn explicit_reconnect_restores() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        client.reconnect().await.unwrap();
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        assert!(matches!(ev, ClientEvent::Disconnected { reason: DisconnectReason::Requested }), "{ev:?}");
        recovers(&server, &client, &mut rx, 2).await;
        assert_eq!(client.stats().reconnects, 1);
        client.close().await.unwrap();
        let _ = Arc::new(());
    })
    .await;
}

/// The client task panicking (here: inside the user's callback, which runs in the task):
/// nothing is left waiting: the pending request fails with `Panicked`, the client is closed.
#[tokio::test]
async fn task_panic_fails_everything_waiting() {
    bounded(async {
        let server = venue().await;
        let (tx, mut connected) = tokio::sync::mpsc::unbounded_channel();
        let handler = move |e: ClientEvent| {
            if let ClientEvent::Message { channel: Some(c), .. } = &e
                && &**c == "boom"
            {
                panic!("a bug in the user's handler");
            }
            let _ = tx.send(e);
        };
        let client =
            Client::connect_with_handler(&server.url(), config().build().unwrap(), Arc::new(JsonRpc::new()), handler)
                .unwrap();
        while !matches!(
            tokio::time::timeout(WAIT, connected.recv()).await.unwrap(),
            Some(ClientEvent::Connected { .. })
        ) {}
        let c = client.clone();
        let call = tokio::spawn(async move { c.request("silent", json!({})).await });
        for _ in 0..100 {
            if client.stats().pending == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.inject(notification("boom", 1));
        let r = call.await.unwrap();
        assert!(matches!(r, Err(ClientError::Panicked(_))), "{r:?}");
        assert_eq!(client.state(), ClientState::Closed);
        assert!(matches!(client.send_text("x").await, Err(ClientError::Closed)));
        assert!(matches!(client.subscribe(&["a"]).await, Err(ClientError::Closed)));
    })
    .await;
}

/// An idle feed (no data message within the limit) is an event; with reconnect on, a
/// reconnection that restores the session.
#[tokio::test]
async fn idle_feed_is_reported_then_reconnects_when_asked() {
    bounded(async {
        let server = venue().await;
        let quiet = config().idle_after(Some(Duration::from_millis(800)), false).build().unwrap();
        let (client, mut rx) = connected(&server, quiet).await;
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Idle { .. })).await;
        assert!(matches!(ev, ClientEvent::Idle { silent_for } if silent_for >= Duration::from_millis(800)), "{ev:?}");
        assert_eq!(client.state(), ClientState::Connected, "an idle feed alone does not reconnect");
        client.close().await.unwrap();

        let reconnecting = config().idle_after(Some(Duration::from_millis(800)), true).build().unwrap();
        let (client, mut rx) = connected(&server, reconnecting).await;
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        assert!(matches!(ev, ClientEvent::Disconnected { reason: DisconnectReason::Idle(_) }), "{ev:?}");
        until(&mut rx, |e| matches!(e, ClientEvent::Reconnected { .. })).await;
        client.close().await.unwrap();
    })
    .await;
}

/// Opt-in resend: an idempotent request pending over a drop is sent again after the restore
/// (under a new id) and answered; an ordinary one fails at once.
#[tokio::test]
async fn idempotent_request_is_resent_after_the_restore() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        let c = client.clone();
        let kept = tokio::spawn(async move { c.request_idempotent("later", json!({"k": 7})).await });
        let c = client.clone();
        let failed = tokio::spawn(async move { c.request("silent", json!({})).await });
        for _ in 0..100 {
            if client.stats().pending == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(client.stats().pending, 2);
        // From now on `later` is answered (the copy already received is not).
        server.clear_replies();
        server.on(
            Matcher::any(),
            Reply::with(|frame| {
                let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                let id = v.get("id")?.clone();
                let result = match v["method"].as_str()? {
                    "subscribe" => v["params"]["channels"].clone(),
                    "later" => json!({"answered": v["params"]["k"]}),
                    _ => return None,
                };
                Some(Frame::text(json!({"jsonrpc":"2.0","id":id,"result":result}).to_string()))
            }),
        );
        server.fault(Fault::Fin);
        let r = failed.await.unwrap();
        assert!(matches!(r, Err(ClientError::Disconnected { sent: true })), "{r:?}");
        let answer = kept.await.unwrap().unwrap();
        assert_eq!(answer.get(), r#"{"answered":7}"#);
        let later: Vec<u64> = server
            .received()
            .iter()
            .filter_map(|r| r.frame.as_text().and_then(|t| serde_json::from_str::<Value>(t).ok()))
            .filter(|v| v["method"] == "later")
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        assert_eq!(later.len(), 2, "sent once per connection");
        assert!(later[1] > later[0], "under a new id: {later:?}");
        until(&mut rx, |e| matches!(e, ClientEvent::Reconnected { .. })).await;
        client.close().await.unwrap();
    })
    .await;
}

/// The client-side rate limit refuses (mode `Refuse`) with when there will be room, and the
/// pressure shows in the statistics.
#[tokio::test]
async fn rate_limit_refuses_and_counts() {
    use moorline_client::config::{LimitMode, RateLimit};
    bounded(async {
        let server = venue().await;
        let config = config().rate_limit(Some(RateLimit::per_second(1, 2, LimitMode::Refuse))).build().unwrap();
        let (client, _rx) = Client::connect(&server.url(), config, JsonRpc::new()).unwrap();
        let mut status = 0;
        while client.state() != ClientState::Connected && status < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            status += 1;
        }
        // The restore's subscribe requests cost nothing here (none wanted); two requests fit.
        client.request("echo", json!({})).await.unwrap();
        client.request("echo", json!({})).await.unwrap();
        let r = client.request("echo", json!({})).await;
        let Err(ClientError::RateLimited { pool, retry_after }) = r else { panic!("{r:?}") };
        assert_eq!(pool, "requests");
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1), "{retry_after:?}");
        let stats = client.stats().rate_limit.unwrap();
        assert_eq!((stats.granted, stats.refusals), (2, 1));
        client.close().await.unwrap();
    })
    .await;
}

/// `OfflineSends::Queue`: a send made while disconnected waits (bounded in bytes and time)
/// and goes out once the session is restored.
#[tokio::test]
async fn offline_sends_queue_until_restored() {
    use moorline_client::config::OfflineSends;
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RejectUpgrade(503));
        let config = config()
            .offline_sends(OfflineSends::Queue { deadline: Duration::from_secs(10), max_bytes: 1024 })
            .build()
            .unwrap();
        let (client, _rx) = Client::connect(&server.url(), config, JsonRpc::new()).unwrap();
        let c = client.clone();
        let send = tokio::spawn(async move { c.send_text("queued while down").await });
        let big = client.send_text("x".repeat(2000)).await;
        assert!(matches!(big, Err(ClientError::QueueFull { .. })), "{big:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.clear_faults();
        send.await.unwrap().unwrap();
        server.expect_received(Matcher::predicate(|f| f.as_text() == Some("queued while down")), WAIT).await.unwrap();
        client.close().await.unwrap();
    })
    .await;
}

/// The venue refusing one restored subscription (confirmed before the drop, left out of the
/// confirmation after it): `Restored` reports it refused with the reason and the other
/// confirmed, data on the confirmed one is still routed, and the refused one is not asked
/// for again on the next reconnect.
#[tokio::test]
async fn venue_refusing_one_restored_subscription() {
    use std::sync::atomic::{AtomicBool, Ordering};
    bounded(async {
        let refuse_b = Arc::new(AtomicBool::new(false));
        let flag = refuse_b.clone();
        let server = MockServer::builder()
            .on(
                Matcher::any(),
                Reply::with(move |frame| {
                    let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                    let id = v.get("id")?.clone();
                    let result = match v["method"].as_str()? {
                        "subscribe" => Value::Array(
                            v["params"]["channels"]
                                .as_array()?
                                .iter()
                                .filter(|c| !(flag.load(Ordering::SeqCst) && *c == "b"))
                                .cloned()
                                .collect(),
                        ),
                        _ => return None,
                    };
                    Some(Frame::text(json!({"jsonrpc":"2.0","id":id,"result":result}).to_string()))
                }),
            )
            .start()
            .await
            .unwrap();
        let (client, mut rx) = Client::connect(&server.url(), config().build().unwrap(), JsonRpc::new()).unwrap();
        until(&mut rx, restored).await;
        let out = client.subscribe(&["a", "b"]).await.unwrap();
        assert_eq!(out.confirmed.len(), 2);

        refuse_b.store(true, Ordering::SeqCst);
        server.fault(Fault::Fin);
        let (ev, _) = until(&mut rx, restored).await;
        let ClientEvent::Restored { confirmed, refused } = ev else { unreachable!() };
        assert_eq!(confirmed.iter().map(|c| &**c).collect::<Vec<_>>(), ["a"]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(&*refused[0].channel, "b");
        assert!(refused[0].reason.contains("confirmation"), "{:?}", refused[0].reason);
        assert!(server.wait_for_open_connections(1, WAIT).await);
        server.inject(notification("a", 7));
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Message { .. })).await;
        assert!(matches!(ev, ClientEvent::Message { channel: Some(ref c), .. } if &**c == "a"), "{ev:?}");

        server.clear_received();
        server.fault(Fault::Fin);
        let (ev, _) = until(&mut rx, restored).await;
        assert!(
            matches!(ev, ClientEvent::Restored { ref confirmed, ref refused } if confirmed.len() == 1 && refused.is_empty()),
            "{ev:?}"
        );
        assert_eq!(subscribe_requests(&server, "b"), 0, "a refused channel is not asked for again");
        assert_eq!(subscribe_requests(&server, "a"), 1);
        client.close().await.unwrap();
    })
    .await;
}

/// Mode `Refuse` and the restore: subscription requests the limiter has no room for wait
/// for it, in order, and spend their credits when they go: every subscribe request the venue
/// received was granted by the limiter (none went out unpaid), on the first subscribe and on
/// the restore after a reconnect, and every channel is confirmed.
#[tokio::test]
async fn refused_restore_requests_spend_their_credits_when_sent() {
    use moorline_client::config::{LimitMode, RateLimit};
    bounded(async {
        let server = venue().await;
        // 2 requests at once, then one every 50 ms.
        let config = config().rate_limit(Some(RateLimit::per_second(20, 2, LimitMode::Refuse))).build().unwrap();
        let dialect = JsonRpc::new().max_request_bytes(120);
        let (client, mut rx) = Client::connect(&server.url(), config, dialect).unwrap();
        until(&mut rx, restored).await;
        let names: Vec<String> = (0..16).map(|i| format!("chan.{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = client.subscribe(&names).await.unwrap();
        assert_eq!(out.confirmed.len(), 16, "{out:?}");
        let subscribes = |server: &MockServer| {
            server
                .received()
                .iter()
                .filter(|r| r.frame.as_text().is_some_and(|t| t.contains(r#""method":"subscribe""#)))
                .count() as u64
        };
        let first = subscribes(&server);
        assert!(first >= 4, "split into several requests: {first}");
        let stats = client.stats().rate_limit.unwrap();
        assert_eq!(stats.granted, first, "every request sent was paid for: {stats:?}");
        assert!(stats.refusals >= 1, "{stats:?}");

        server.fault(Fault::Fin);
        let (ev, _) = until(&mut rx, restored).await;
        let ClientEvent::Restored { confirmed, refused } = ev else { unreachable!() };
        assert_eq!((confirmed.len(), refused.len()), (16, 0));
        let total = subscribes(&server);
        assert_eq!(total, 2 * first, "the same requests again");
        let stats = client.stats().rate_limit.unwrap();
        assert_eq!(stats.granted, total, "the restore's requests paid for too: {stats:?}");
        client.close().await.unwrap();
    })
    .await;
}

/// `OfflineSends::Queue` is strictly FIFO between concurrent senders: 40 tasks on two worker
/// threads queue one message each (every fifth a request) while the venue refuses upgrades,
/// each in the queue before the next starts; then one more once they are through. The venue receives them in that order, every request is answered, and the queue is
/// empty afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_is_fifo_between_concurrent_senders() {
    use moorline_client::config::OfflineSends;
    bounded(async {
        let server = venue().await;
        server.fault(Fault::RejectUpgrade(503));
        let config = config()
            .offline_sends(OfflineSends::Queue { deadline: Duration::from_secs(30), max_bytes: 64 << 10 })
            .build()
            .unwrap();
        let (client, _rx) = Client::connect(&server.url(), config, JsonRpc::new()).unwrap();
        const N: usize = 40;
        let mut tasks = Vec::new();
        for i in 0..N {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                if i % 5 == 4 {
                    let answer = c.request("echo", json!({"n": i})).await?;
                    assert_eq!(answer.get(), format!(r#"{{"n":{i}}}"#));
                    Ok(())
                } else {
                    c.send_text(format!("q{i}")).await
                }
            }));
            tokio::time::timeout(WAIT, async {
                while client.stats().offline_waiting != i + 1 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("send {i} never queued: {:?}", client.stats()));
        }
        assert_eq!(client.state(), ClientState::Connecting);
        server.clear_faults();
        for t in tasks {
            tokio::time::timeout(WAIT, t).await.expect("a queued send hangs").unwrap().unwrap();
        }
        client.send_text(format!("q{N}")).await.unwrap();
        let last = format!("q{N}");
        server.expect_received(Matcher::predicate(move |f| f.as_text() == Some(&last)), WAIT).await.unwrap();
        let order: Vec<usize> = server
            .received()
            .iter()
            .filter_map(|r| {
                let text = r.frame.as_text()?;
                match text.strip_prefix('q') {
                    Some(n) => n.parse().ok(),
                    None => serde_json::from_str::<Value>(text).ok()?["params"]["n"].as_u64().map(|n| n as usize),
                }
            })
            .collect();
        assert_eq!(order, (0..=N).collect::<Vec<_>>(), "the order the sends were made in");
        let stats = client.stats();
        assert_eq!((stats.offline_waiting, stats.pending), (0, 0));
        client.close().await.unwrap();
    })
    .await;
}

/// A quiet but live venue: pinged after `ping_interval` of silence, it answers, and stays
/// connected well past `dead_after`; the ping round trips are measured.
#[tokio::test]
async fn quiet_live_venue_is_pinged_and_stays_connected() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(client.state(), ClientState::Connected);
        assert!(rx.try_recv().is_none(), "no event: nothing happened");
        let hb = client.stats().heartbeats;
        assert!(hb.count >= 3, "{hb:?}");
        assert!(hb.p50.is_some() && hb.p99.is_some() && hb.last.is_some());
        client.close().await.unwrap();
    })
    .await;
}

/// The venue's own heartbeat (a JSON-RPC dialect with one): while it beats the connection
/// lives; once the connection is half-open the missing beat is detected after its interval
/// plus grace (1.5 s here), long before the dead-peer limit (30 s).
#[tokio::test]
async fn missing_venue_heartbeat_is_half_open() {
    bounded(async {
        let server = venue().await;
        let config = ClientConfig::builder()
            .dead_after(Some(Duration::from_secs(10)), Duration::from_secs(30))
            .venue_heartbeat(Some(Duration::from_secs(1)), Duration::from_millis(500))
            .build()
            .unwrap();
        let dialect = JsonRpc::new().heartbeat("heartbeat", Some("pong"));
        let (client, mut rx) = Client::connect(&server.url(), config, dialect).unwrap();
        until(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
        let beat = || Frame::text(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{}}"#);
        for _ in 0..8 {
            server.inject(beat());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(client.state(), ClientState::Connected, "a beating venue is alive");
        server
            .expect_received(Matcher::predicate(|f| f.as_text().is_some_and(|t| t.contains("\"pong\""))), WAIT)
            .await
            .unwrap();
        let t0 = Instant::now();
        server.fault(Fault::HalfOpen);
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
        assert!(matches!(ev, ClientEvent::Disconnected { reason: DisconnectReason::HeartbeatMissed(_) }), "{ev:?}");
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_secs(10), "detected by the heartbeat, not the 30 s dead-peer limit: {took:?}");
        client.close().await.unwrap();
    })
    .await;
}

/// Bad frames from the venue, in the middle of a feed: none is dropped, none stops the
/// client, and each is what it is. Text that is not JSON and a cut notification are delivered
/// without a channel, each followed by a typed `BadReply` naming the problem; a notification
/// whose envelope is sound but whose `data` holds a broken token is routed by its channel
/// (its `data` is the reader's to parse: the client does not read it); an error answer to
/// no request is a typed RPC error. Messages around them keep their order and channel.
#[tokio::test]
async fn bad_frames_are_delivered_and_explained_never_dropped() {
    bounded(async {
        let server = venue().await;
        let (client, mut rx) = connected(&server, config().build().unwrap()).await;
        let frames = [
            notification("a", 1),
            Frame::text("<html>502 Bad Gateway</html>"),
            notification("b", 2),
            Frame::text(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"a","data":[1,2"#),
            Frame::text(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"b","data":[1 tru]}}"#),
            Frame::text(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#),
            notification("a", 3),
        ];
        for f in frames {
            server.inject(f);
        }
        let mut seen = Vec::new();
        while seen.len() < 9 {
            let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            seen.push(match ev {
                ClientEvent::Message { data, channel } => {
                    format!("message {} {}", channel.as_deref().unwrap_or("-"), data.as_text().unwrap_or("?").len())
                }
                ClientEvent::Error(ClientError::BadReply(why)) => {
                    assert!(why.contains("JSON"), "{why}");
                    "bad reply".to_owned()
                }
                ClientEvent::Error(ClientError::Rpc { error, .. }) => format!("rpc {}", error.code),
                other => panic!("unexpected {other:?}"),
            });
        }
        let lens: Vec<usize> = [
            notification("a", 1),
            Frame::text("<html>502 Bad Gateway</html>"),
            notification("b", 2),
            Frame::text(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"a","data":[1,2"#),
            Frame::text(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"b","data":[1 tru]}}"#),
        ]
        .iter()
        .map(|f| f.as_text().unwrap().len())
        .collect();
        assert_eq!(
            seen,
            [
                format!("message a {}", lens[0]),
                format!("message - {}", lens[1]),
                "bad reply".to_owned(),
                format!("message b {}", lens[2]),
                format!("message - {}", lens[3]),
                "bad reply".to_owned(),
                format!("message b {}", lens[4]),
                "rpc -32700".to_owned(),
                format!("message a {}", lens[0]),
            ]
        );
        assert_eq!(client.state(), ClientState::Connected);
        client.close().await.unwrap();
    })
    .await;
}

/// What the user saw of `ev`, as the venue sent it: a data message by its number, a bad
/// frame by its text (with its `BadReply` after it), an unanswered error by its message.
fn observed(ev: ClientEvent, out: &mut Vec<String>) {
    match ev {
        ClientEvent::Message { data, channel } => {
            let text = data.as_text().unwrap().to_owned();
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    let n = v["params"]["data"].as_u64().unwrap();
                    let want = if n % 2 == 0 { "a" } else { "b" };
                    assert_eq!(channel.as_deref(), Some(want), "{text}");
                    out.push(format!("d{n}"));
                }
                Err(_) => {
                    assert!(channel.is_none());
                    out.push(text);
                }
            }
        }
        ClientEvent::Error(ClientError::BadReply(_)) => out.push("bad".into()),
        ClientEvent::Error(ClientError::Rpc { error, .. }) => out.push(error.message),
        other => panic!("unexpected {other:?}"),
    }
}

/// Data goes from the connection's worker straight to the user's queue (no task hop) while
/// the task has nothing else to do; frames the task must see (bad frames, unanswered
/// errors, pings) go through it. On a multi-threaded runtime, where the worker, the task and
/// the reader run at once, everything arrives in the order the venue sent it, each message
/// with its channel, none lost or doubled; and the direct path was taken (counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn direct_data_and_routed_frames_keep_the_venues_order() {
    bounded(venues_order(false)).await;
}

/// The same over HTTP/2 (the client opts in; its messages reach the connection's worker from
/// the stream's task).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn direct_data_and_routed_frames_keep_the_venues_order_over_http2() {
    bounded(venues_order(true)).await;
}

async fn venues_order(http2: bool) {
    let server = venue_over(http2).await;
    let protocol = if http2 { moorline::Protocol::Http2 } else { moorline::Protocol::Http1 };
    let (client, mut rx) = connected_over(&server, config().http2(http2).build().unwrap(), protocol).await;
    let mut sent = Vec::new();
    for round in 0..4u64 {
        for i in round * 5_000..(round + 1) * 5_000 {
            server.inject(notification(if i % 2 == 0 { "a" } else { "b" }, i));
            sent.push(format!("d{i}"));
            if i % 97 == 0 {
                server.inject(Frame::text(format!("garbage {i}")));
                sent.extend([format!("garbage {i}"), "bad".into()]);
            }
            if i % 251 == 0 {
                let error = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":format!("e{i}")}});
                server.inject(Frame::text(error.to_string()));
                sent.push(format!("e{i}"));
            }
            if i % 61 == 0 {
                server.inject(Frame::Ping(bytes::Bytes::from_static(b"p")));
            }
        }
        // Read part of it while the rest streams (the reader, the task and the worker at once).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut seen = Vec::new();
    while seen.len() < sent.len() {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        observed(ev, &mut seen);
    }
    assert_eq!(seen.len(), sent.len());
    if let Some(i) = seen.iter().zip(&sent).position(|(a, b)| a != b) {
        panic!(
            "order differs at {i}: saw {:?}, sent {:?}",
            &seen[i..(i + 5).min(seen.len())],
            &sent[i..(i + 5).min(sent.len())]
        );
    }
    let stats = client.stats();
    // Data messages only (bad frames are delivered as data too; answers are not counted).
    assert_eq!(stats.messages_in, 20_000 + (0..20_000).filter(|i| i % 97 == 0).count() as u64, "{stats:?}");
    assert!(stats.messages_direct > 0, "the direct path was never taken: {stats:?}");
    assert!(stats.messages_direct < stats.messages_in, "{stats:?}");
    client.close().await.unwrap();
}

/// Fed messages leave in the order they were fed: those flushed at once, those not flushed
/// as soon as the feeding task waits (the connection's worker writes them), and a send after
/// feeds takes them along.
#[tokio::test]
async fn fed_messages_leave_in_order_with_or_without_flush() {
    bounded(async {
        let server = venue().await;
        let (client, _rx) = connected(&server, config().build().unwrap()).await;
        let out_before = client.stats().messages_out;
        for i in 0..100 {
            client.feed_text(format!("f{i}")).await.unwrap();
        }
        client.flush();
        for i in 100..199 {
            client.feed_text(format!("f{i}")).await.unwrap();
        }
        client.send_text("f199").await.unwrap();
        for i in 200..300 {
            client.feed_text(format!("f{i}")).await.unwrap();
        }
        let fed = || -> Vec<String> {
            server
                .received()
                .iter()
                .filter_map(|r| r.frame.as_text().filter(|t| t.starts_with('f')).map(str::to_owned))
                .collect()
        };
        let deadline = Instant::now() + WAIT;
        while fed().len() < 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(fed(), (0..300).map(|i| format!("f{i}")).collect::<Vec<_>>());
        assert_eq!(client.stats().messages_out - out_before, 300);
        client.close().await.unwrap();
    })
    .await;
}

/// Data that comes only the direct way (the worker straight to the user's queue, the task
/// not woken) still counts for the liveness timers: a steady trickle under an idle-feed limit
/// that reconnects, and pings after a short silence, neither reports an idle feed nor
/// reconnects, and no ping is needed while data flows.
#[tokio::test]
async fn direct_data_keeps_the_liveness_timers_fed() {
    bounded(async {
        let server = venue().await;
        let strict = config().idle_after(Some(Duration::from_millis(400)), true).build().unwrap();
        let (client, mut rx) = connected(&server, strict).await;
        let direct_before = client.stats().messages_direct;
        for i in 0..40u64 {
            server.inject(notification("a", i * 2));
            let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            assert!(matches!(ev, ClientEvent::Message { .. }), "{ev:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing else came: no idle report, no reconnect.
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            panic!("unexpected {ev:?}");
        }
        let stats = client.stats();
        assert_eq!(stats.reconnects, 0, "{stats:?}");
        assert!(stats.messages_direct - direct_before >= 30, "{stats:?}");
        assert_eq!(client.state(), ClientState::Connected);
        client.close().await.unwrap();
    })
    .await;
}

/// A reader slower than the feed, under backpressure with a small queue: the direct path
/// meets a full queue (the message goes through the task, which parks it), and when the
/// reader catches up data comes the direct way again; every message arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_full_queue_sends_data_through_the_task_in_order() {
    bounded(async {
        let server = venue().await;
        let small = config().incoming_buffer(4 << 10, Overflow::Backpressure).build().unwrap();
        let (client, mut rx) = connected(&server, small).await;
        for i in 0..3000u64 {
            server.inject(notification(if i % 2 == 0 { "a" } else { "b" }, i));
        }
        let mut next = 0u64;
        while next < 3000 {
            let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            let ClientEvent::Message { data, .. } = ev else { panic!("unexpected {ev:?}") };
            let v: Value = serde_json::from_str(data.as_text().unwrap()).unwrap();
            assert_eq!(v["params"]["data"].as_u64(), Some(next));
            next += 1;
            if next.is_multiple_of(100) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        // Caught up: a trickle goes the direct way.
        let before = client.stats().messages_direct;
        for i in 0..20u64 {
            server.inject(notification("a", 4000 + 2 * i));
            tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        }
        assert!(client.stats().messages_direct > before, "{:?}", client.stats());
        assert_eq!(client.stats().drops, 0);
        client.close().await.unwrap();
    })
    .await;
}
