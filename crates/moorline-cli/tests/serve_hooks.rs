//! Every simulator hook driven through the control endpoint of a running `moorline serve
//! deribit` (`POST /hook`, `GET /connections`), its effect observed through a client (the
//! Deribit façade of moorline-client), one test per hook kind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::time::Duration;

use common::Served;
use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::deribit::book::Kind;
use moorline_client::deribit::types::{OrderRequest, OrderState};
use moorline_client::deribit::{DeribitClient, DeribitError, DeribitEvent, DeribitEvents, OrderSource};
use moorline_client::dialect::Credentials;
use moorline_client::{ClientConfig, ClientError, ClientEvent};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(30);
const BOOK: &str = "book.BTC-PERPETUAL.100ms";

/// The simulator with its market stopped (`step_market` moves it).
fn manual() -> Served {
    common::serve_deribit(&["--market-interval-ms", "0"])
}

fn run<F: Future<Output = ()>>(f: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async { tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound") });
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
        .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A façade authenticated as the test account, once reconciled.
async fn client(sim: &Served, config: ClientConfig) -> (DeribitClient, DeribitEvents) {
    let credentials = Credentials::new(common::CLIENT_ID, common::CLIENT_SECRET);
    let (d, mut rx) = DeribitClient::connect(&sim.url, config, Some(credentials)).unwrap();
    until(&mut rx, |e| matches!(e, DeribitEvent::Reconciled { .. })).await;
    (d, rx)
}

async fn until(rx: &mut DeribitEvents, pred: impl Fn(&DeribitEvent) -> bool) -> (DeribitEvent, Vec<DeribitEvent>) {
    let mut skipped = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event within {WAIT:?}; read {skipped:#?}"))
            .unwrap_or_else(|| panic!("stream ended; read {skipped:#?}"));
        if pred(&ev) {
            return (ev, skipped);
        }
        skipped.push(ev);
    }
}

fn is_reconnected(e: &DeribitEvent) -> bool {
    matches!(e, DeribitEvent::Client(ClientEvent::Reconnected { .. }))
}

/// A buy price well under the market: the order rests.
async fn resting_bid(d: &DeribitClient) -> f64 {
    let t = d.ticker("BTC-PERPETUAL").await.unwrap();
    ((t.mark_price * 0.97) * 2.0).round() / 2.0
}

/// `POST /hook`, which must succeed (the control endpoint is read with blocking sockets:
/// off the runtime's threads).
async fn hook(sim: &Served, hook: Value) -> Value {
    let control = sim.control.clone();
    tokio::task::spawn_blocking(move || control.hook_ok(hook)).await.unwrap()
}

/// `POST /hook`: status and answer.
async fn hook_status(sim: &Served, hook: Value) -> (u16, Value) {
    let control = sim.control.clone();
    tokio::task::spawn_blocking(move || control.hook(hook)).await.unwrap()
}

async fn connections(sim: &Served) -> Value {
    let control = sim.control.clone();
    tokio::task::spawn_blocking(move || control.connections()).await.unwrap()
}

/// `GET /connections` lists the client (account, channels); `fault` with each connection
/// fault kind that ends a connection (close with a code, FIN, RST, half-open) drops it: the
/// client sees the disconnect and is back (half-open: found dead by Deribit's own heartbeat
/// cadence, 10 s + 5 s of grace).
#[test]
fn hook_fault_and_connections() {
    let sim = manual();
    run(async {
        let (d, mut rx) = client(&sim, config()).await;
        d.subscribe(&["ticker.BTC-PERPETUAL.100ms"]).await.unwrap();
        let list = connections(&sim).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["client_id"], common::CLIENT_ID);
        assert!(list[0]["channels"].as_array().unwrap().iter().any(|c| c == "ticker.BTC-PERPETUAL.100ms"), "{list}");
        let conn = list[0]["id"].clone();
        let answer = hook(&sim, json!({"hook": "fault", "conn": conn, "fault": {"kind": "close", "code": 4003}})).await;
        assert_eq!(answer, json!({"faulted": 1}));
        let (ev, _) = until(&mut rx, |e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))).await;
        let DeribitEvent::Client(ClientEvent::Disconnected { reason }) = ev else { unreachable!() };
        assert!(format!("{reason:?}").contains("4003"), "closed with the code asked for: {reason:?}");
        until(&mut rx, is_reconnected).await;
        for kind in ["fin", "reset", "half_open"] {
            let answer = hook(&sim, json!({"hook": "fault", "fault": {"kind": kind}})).await;
            assert_eq!(answer, json!({"faulted": 1}), "{kind}");
            let (_, seen) = until(&mut rx, is_reconnected).await;
            assert!(
                seen.iter().any(|e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))),
                "{kind}: {seen:#?}"
            );
        }
        d.get_time().await.unwrap();
        d.close().await.unwrap();
    });
}

/// `fault` with `stall_after` (0 bytes) on the client's connection: the venue writes nothing
/// more but keeps the connection (still listed); a call gets no answer; the client finds the
/// connection dead by Deribit's heartbeat cadence (10 s + 5 s of grace), reconnects on a new
/// connection, and calls are answered again.
#[test]
fn hook_fault_stall_after() {
    let sim = manual();
    run(async {
        let (d, mut rx) = client(&sim, config()).await;
        d.get_time().await.unwrap();
        let conn = connections(&sim).await[0]["id"].clone();
        let stall = json!({"hook": "fault", "conn": conn, "fault": {"kind": "stall_after", "bytes": 0}});
        assert_eq!(hook(&sim, stall).await, json!({"faulted": 1}));
        let stalled = tokio::time::timeout(Duration::from_secs(2), d.get_time()).await;
        assert!(stalled.is_err(), "answered through a stalled connection: {stalled:?}");
        let list = connections(&sim).await;
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list[0]["id"], conn, "the stalled connection is still open on the venue's side");
        let (_, seen) = until(&mut rx, is_reconnected).await;
        assert!(seen.iter().any(|e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))), "{seen:#?}");
        d.get_time().await.unwrap();
        let list = connections(&sim).await;
        assert!(list.as_array().unwrap().iter().any(|c| c["id"] != conn), "reconnected on a new connection: {list}");
        d.close().await.unwrap();
    });
}

/// `book_fault` (withhold, duplicate, reorder), with `step_market` moving the market: each
/// is a gap the client reports, then the resync's snapshot.
#[test]
fn hook_book_fault_and_step_market() {
    let sim = manual();
    run(async {
        let (d, mut rx) = client(&sim, config()).await;
        d.subscribe(&[BOOK]).await.unwrap();
        until(&mut rx, |e| matches!(e, DeribitEvent::Book { update, .. } if update.kind == Kind::Snapshot)).await;
        let answer = hook(&sim, json!({"hook": "step_market", "steps": 3})).await;
        assert!(answer.is_object(), "{answer}");
        until(&mut rx, |e| matches!(e, DeribitEvent::Book { update, .. } if update.kind == Kind::Change)).await;
        for fault in ["withhold", "duplicate", "reorder"] {
            hook(&sim, json!({"hook": "book_fault", "instrument_name": "BTC-PERPETUAL", "fault": fault})).await;
            let gap = tokio::time::timeout(WAIT, async {
                loop {
                    hook(&sim, json!({"hook": "step_market", "steps": 1})).await;
                    let more = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
                    if let Ok(Some(ev @ DeribitEvent::BookGap { .. })) = more {
                        return ev;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{fault}: no gap"));
            assert!(
                matches!(&gap, DeribitEvent::BookGap { instrument, .. } if instrument == "BTC-PERPETUAL"),
                "{gap:?}"
            );
            let (ev, _) = until(&mut rx, |e| matches!(e, DeribitEvent::Book { .. })).await;
            assert!(
                matches!(ev, DeribitEvent::Book { ref update, .. } if update.kind == Kind::Snapshot),
                "{fault}: {ev:?}"
            );
        }
        let unknown = json!({"hook": "book_fault", "instrument_name": "DOGE-PERPETUAL", "fault": "withhold"});
        let (status, answer) = hook_status(&sim, unknown).await;
        assert_eq!(status, 422, "{answer}");
        d.close().await.unwrap();
    });
}

/// `expire_tokens` then `revoke_tokens`: the next private call is refused (13009); the
/// client renews, with the refresh token after an expiry, with the credentials after a
/// revocation (the refresh token is revoked too), and calls work again.
#[test]
fn hook_expire_and_revoke_tokens() {
    let sim = manual();
    run(async {
        let (d, _rx) = client(&sim, config()).await;
        let before = d.auth_info().unwrap();
        let mut counts = vec![];
        for hook_name in ["expire_tokens", "revoke_tokens"] {
            let answer = hook(&sim, json!({"hook": hook_name, "client_id": common::CLIENT_ID})).await;
            assert!(answer.is_object(), "{answer}");
            let e = d.client().request("private/get_open_orders", json!({})).await.unwrap_err();
            assert!(matches!(&e, ClientError::Rpc { error, .. } if error.code == 13009), "{hook_name}: {e:?}");
            d.get_open_orders().await.unwrap();
            let info = d.auth_info().unwrap();
            counts.push((info.grants - before.grants, info.refreshes - before.refreshes));
        }
        // Expired: renewed with the refresh token. Revoked: the refresh refused, then the
        // credentials. (The 13009 answer and the façade's retry may both start a renewal, so
        // the counts are lower bounds: what matters is which grant brought calls back.)
        let (grants_expired, refreshes_expired) = counts[0];
        let (grants_revoked, refreshes_revoked) = counts[1];
        assert!(refreshes_expired >= 1 && grants_expired >= 1, "{counts:?}");
        let credential_grants = |(grants, refreshes): (u64, u64)| grants - refreshes;
        assert!(
            credential_grants((grants_revoked, refreshes_revoked))
                > credential_grants((grants_expired, refreshes_expired)),
            "a revoked token is renewed with the credentials: {counts:?}"
        );
        d.close().await.unwrap();
    });
}

/// `cut_before_response`: the buy is processed, the connection cut before its answer; the
/// caller hears the outcome is unknown, the reconciliation reports the order once.
#[test]
fn hook_cut_before_response() {
    let sim = manual();
    run(async {
        let (d, mut rx) = client(&sim, config()).await;
        let price = resting_bid(&d).await;
        hook(&sim, json!({"hook": "cut_before_response", "request": {"method": "private/buy"}})).await;
        let e = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price).label("cut-1")).await.unwrap_err();
        assert!(matches!(&e, DeribitError::OutcomeUnknown { label, .. } if label == "cut-1"), "{e:?}");
        until(&mut rx, is_reconnected).await;
        let (_, seen) = until(&mut rx, |e| matches!(e, DeribitEvent::Reconciled { .. })).await;
        let mine = seen.iter().filter(|e| matches!(e, DeribitEvent::Order(o) if o.order.label == "cut-1")).count();
        assert_eq!(mine, 1, "{seen:#?}");
        d.close().await.unwrap();
    });
}

/// `delay_response`: the answer comes no sooner than asked.
#[test]
fn hook_delay_response() {
    let sim = manual();
    run(async {
        let (d, _rx) = client(&sim, config()).await;
        hook(&sim, json!({"hook": "delay_response", "request": {"method": "public/get_time"}, "delay_ms": 700})).await;
        let started = tokio::time::Instant::now();
        d.get_time().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
        // One-shot: the next is not delayed by it (no upper bound asserted; just answered).
        d.get_time().await.unwrap();
        d.close().await.unwrap();
    });
}

/// `fill_order` and `cancel_order`: the client sees each as an order event (`user.orders`).
#[test]
fn hook_fill_and_cancel_order() {
    let sim = manual();
    run(async {
        let (d, mut rx) = client(&sim, config()).await;
        d.subscribe(&["user.orders.BTC-PERPETUAL.raw"]).await.unwrap();
        let price = resting_bid(&d).await;
        for (hook_name, state) in [("fill_order", OrderState::Filled), ("cancel_order", OrderState::Cancelled)] {
            let placed = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await.unwrap();
            let id = placed.order.order_id.clone();
            hook(&sim, json!({"hook": hook_name, "order_id": id})).await;
            let (ev, _) = until(
                &mut rx,
                |e| matches!(e, DeribitEvent::Order(o) if o.order.order_id == id && !o.order.order_state.is_live()),
            )
            .await;
            let DeribitEvent::Order(o) = ev else { unreachable!() };
            assert_eq!((o.source, o.order.order_state), (OrderSource::Notification, state), "{hook_name}");
        }
        assert!(d.get_open_orders().await.unwrap().is_empty());
        d.close().await.unwrap();
    });
}

/// `platform_state`: locked, the client hears it and a buy waits; unlocked, it goes through.
#[test]
fn hook_platform_state() {
    let sim = manual();
    run(async {
        let (d, mut rx) = client(&sim, config()).await;
        let price = resting_bid(&d).await;
        hook(&sim, json!({"hook": "platform_state", "locked": true})).await;
        until(&mut rx, |e| matches!(e, DeribitEvent::PlatformState { locked: true })).await;
        assert!(d.status().await.unwrap().is_locked());
        let buyer = d.clone();
        let buy = tokio::spawn(async move { buyer.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!buy.is_finished(), "the buy waits while locked");
        hook(&sim, json!({"hook": "platform_state", "locked": false})).await;
        until(&mut rx, |e| matches!(e, DeribitEvent::PlatformState { locked: false })).await;
        let placed = tokio::time::timeout(WAIT, buy).await.unwrap().unwrap().unwrap();
        assert_eq!(placed.order.order_state, OrderState::Open);
        d.close().await.unwrap();
    });
}

/// `fail_method`: the next requests for a method fail with the code asked for, then not.
#[test]
fn hook_fail_method() {
    let sim = manual();
    run(async {
        let (d, _rx) = client(&sim, config()).await;
        hook(&sim, json!({"hook": "fail_method", "method": "public/ticker", "code": 10040, "times": 2})).await;
        for _ in 0..2 {
            let e = d.ticker("BTC-PERPETUAL").await.unwrap_err();
            assert_eq!(e.code(), Some(10040), "{e:?}");
        }
        d.ticker("BTC-PERPETUAL").await.unwrap();
        d.close().await.unwrap();
    });
}
