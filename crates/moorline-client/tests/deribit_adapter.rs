//! The Deribit adapter against the test kit's Deribit simulator and its fault hooks:
//! authentication (client credentials and signature, refresh before expiry, tokens expired
//! or revoked mid-session, a `session:NAME` scope kept across reconnects), book integrity
//! (a gap per kind detected, resynced, nothing delivered from a broken book, the book equal
//! to the venue's after), reconciliation (a lost order answer reconciled to exactly one
//! order, a lost edit or cancel by label, a fill while away once; cancel-on-disconnect asked
//! for before `Reconnected` and seen after the reconnect), a restore of 200 channels paced
//! by the subscribe pool (never 10028), maintenance pausing and resuming trading, and the
//! typed helpers (order book, sell, order state, cancel all) decoding what the venue sends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::deribit::book::Kind;
use moorline_client::deribit::errors::ErrorClass;
use moorline_client::deribit::types::{Direction, EditRequest, OrderRequest, OrderState, currency_of};
use moorline_client::deribit::{DeribitClient, DeribitError, DeribitEvent, DeribitEvents, OrderSource};
use moorline_client::dialect::Credentials;
use moorline_client::{ClientConfig, ClientError, ClientEvent};
use moorline_testkit::deribit::{
    BookFault, DeribitSim, Fault, RequestMatch, TEST_CLIENT_ID, TEST_CLIENT_SECRET, codes,
};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);
const BOOK: &str = "book.BTC-PERPETUAL.100ms";

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

/// Reads events until one matches; returns it and those read before it.
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

/// Reads whatever arrives within `d`.
async fn drain_for(rx: &mut DeribitEvents, d: Duration) -> Vec<DeribitEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(ev);
    }
    out
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

fn creds() -> Credentials {
    Credentials::new(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
}

fn is_connected(e: &DeribitEvent) -> bool {
    matches!(e, DeribitEvent::Client(ClientEvent::Connected { .. }))
}

fn is_reconnected(e: &DeribitEvent) -> bool {
    matches!(e, DeribitEvent::Client(ClientEvent::Reconnected { .. }))
}

fn is_reconciled(e: &DeribitEvent) -> bool {
    matches!(e, DeribitEvent::Reconciled { .. })
}

/// A buy limit price well under the market (rests, passes the margin check), on the tick.
async fn resting_bid(d: &DeribitClient) -> f64 {
    let tick = d.get_instruments("BTC", None).await.unwrap()[0].tick_size;
    let t = d.ticker("BTC-PERPETUAL").await.unwrap();
    ((t.mark_price * 0.97) / tick).round() * tick
}

/// Tokens expired, then revoked, mid-session: the client re-authenticates (with the refresh
/// token, then with the credentials when the refresh token is revoked too) and private
/// calls work again, through the façade (made again once) and the plain client.
#[tokio::test]
async fn token_expiry_and_revocation_mid_session() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        d.get_open_orders().await.unwrap();
        let before = d.auth_info().unwrap();
        assert_eq!((before.grants, before.refreshes), (1, 0));

        // Expired: the façade's call is refused with 13009, the client refreshes, the call is made again.
        assert_eq!(sim.expire_tokens(None), Some(1));
        let orders = d.get_open_orders().await.unwrap();
        assert!(orders.is_empty());
        let after = d.auth_info().unwrap();
        assert_eq!((after.grants, after.refreshes), (2, 1), "renewed with the refresh token");

        // The plain client sees the 13009 itself, and the client renews on its own.
        sim.expire_tokens(None);
        let e = d.client().request("private/get_open_orders", json!({})).await.unwrap_err();
        assert!(matches!(&e, ClientError::Rpc { error, .. } if error.code == 13009), "{e:?}");
        assert_eq!(DeribitError::from(e).class(), ErrorClass::Reauthenticate);
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                if d.client().request("private/get_open_orders", json!({})).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "private calls never worked again");
        assert_eq!(d.auth_info().unwrap().refreshes, 2);

        // Revoked: the refresh token is refused too; the credentials then.
        assert!(sim.revoke_tokens(None).unwrap() >= 2);
        d.get_open_orders().await.unwrap();
        let revoked = d.auth_info().unwrap();
        assert_eq!((revoked.grants, revoked.refreshes), (4, 2), "refresh refused, credentials granted");
        // The session never dropped for it.
        let events = drain_for(&mut rx, Duration::from_millis(200)).await;
        assert!(
            !events.iter().any(|e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))),
            "{events:#?}"
        );
        d.close().await.unwrap();
    })
    .await;
}

/// Tokens that live 2 s: the client refreshes them before they expire, so private calls
/// made all along never see 13009.
#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().token_lifetime(Duration::from_secs(2)).start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_millis(4500) {
            let r = d.client().request("private/get_open_orders", json!({})).await;
            assert!(r.is_ok(), "{r:?} after {:?}", started.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let info = d.auth_info().unwrap();
        assert!(info.refreshes >= 2, "{info:?}");
        assert_eq!(info.grants, info.refreshes + 1, "{info:?}");
        d.close().await.unwrap();
    })
    .await;
}

/// A `session:NAME` scope is asked for again on every reconnect: the new connection is in
/// the same named session (same `sid`), authenticated before `user.*` is restored.
#[tokio::test]
async fn session_scope_survives_a_reconnect() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let credentials = creds().scope("session:bot");
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(credentials)).unwrap();
        until(&mut rx, is_reconciled).await;
        d.subscribe(&["user.orders.BTC-PERPETUAL.raw"]).await.unwrap();
        let first = d.auth_info().unwrap();
        assert!(first.scope.starts_with("session:bot"), "{first:?}");
        let sid = first.sid.clone().expect("a named session has a sid");
        let conns = sim.connections_info();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].session.as_deref(), Some("bot"));
        let old = conns[0].id;

        sim.fault_all(Fault::Reset);
        let (ev, _) = until(&mut rx, |e| matches!(e, DeribitEvent::Client(ClientEvent::Restored { .. }))).await;
        let DeribitEvent::Client(ClientEvent::Restored { confirmed, refused }) = ev else { unreachable!() };
        assert_eq!(confirmed.len(), 2, "platform_state and user.orders: {confirmed:?} {refused:?}");
        let conns = sim.connections_info();
        assert_eq!(conns.len(), 1);
        assert_ne!(conns[0].id, old);
        assert_eq!(conns[0].session.as_deref(), Some("bot"));
        assert!(conns[0].channels.iter().any(|c| c == "user.orders.BTC-PERPETUAL.raw"), "{conns:?}");
        let again = d.auth_info().unwrap();
        assert_eq!(again.sid.as_deref(), Some(sid.as_str()));
        assert_eq!(again.grants, 2);
        d.get_open_orders().await.unwrap();
        d.close().await.unwrap();
    })
    .await;
}

/// Client signature: the secret is never sent, the simulator checks the HMAC; a wrong
/// secret is fatal (13004).
#[tokio::test]
async fn client_signature_authentication() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds().signed())).unwrap();
        until(&mut rx, is_reconciled).await;
        assert_eq!(sim.connections_info()[0].client_id.as_deref(), Some(TEST_CLIENT_ID));
        d.get_open_orders().await.unwrap();
        d.close().await.unwrap();

        let wrong = Credentials::new(TEST_CLIENT_ID, "not-the-secret").signed();
        let (_d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(wrong)).unwrap();
        let (ev, skipped) = until(&mut rx, |e| matches!(e, DeribitEvent::Client(ClientEvent::Closed { .. }))).await;
        assert!(
            matches!(&ev, DeribitEvent::Client(ClientEvent::Closed { error: Some(ClientError::Rpc { error, .. }) }) if error.code == 13004),
            "{ev:?}"
        );
        assert!(!skipped.iter().any(is_connected), "{skipped:#?}");
    })
    .await;
}

/// One book fault: armed, detected as a gap, resynced; no update of the broken book is
/// delivered; after the resync the delivered book equals the venue's.
async fn book_gap(fault: BookFault) {
    let sim = DeribitSim::builder().manual_market().seed(7).start().await.unwrap();
    let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), None).unwrap();
    until(&mut rx, is_reconciled).await;
    d.subscribe(&[BOOK]).await.unwrap();
    until(&mut rx, |e| matches!(e, DeribitEvent::Book { update, .. } if update.kind == Kind::Snapshot)).await;
    // A few changes in sequence first.
    let mut changes = 0;
    while changes < 3 {
        sim.step_market(1);
        for e in drain_for(&mut rx, Duration::from_millis(30)).await {
            if matches!(e, DeribitEvent::Book { ref update, .. } if update.kind == Kind::Change) {
                changes += 1;
            }
        }
    }
    assert!(sim.book_fault("BTC-PERPETUAL", fault));
    // Step until the gap shows; every delivered change must follow the last delivered update.
    let mut last = rx.book(BOOK).unwrap().last_change_id().unwrap();
    let mut gap = None;
    let mut after_gap: Vec<DeribitEvent> = Vec::new();
    let mut mended = false;
    let give_up = tokio::time::Instant::now() + WAIT;
    while !mended && tokio::time::Instant::now() < give_up {
        sim.step_market(1);
        for e in drain_for(&mut rx, Duration::from_millis(30)).await {
            match &e {
                DeribitEvent::BookGap { .. } => {
                    assert!(gap.is_none(), "one gap reported, not one per refused change: {e:?}");
                    gap = Some(e.clone());
                }
                DeribitEvent::Book { update, .. } => {
                    if gap.is_some() {
                        // The first update after a gap must be the resync's snapshot.
                        assert!(
                            mended || update.kind == Kind::Snapshot,
                            "a change of a broken book was delivered: {update:?}"
                        );
                        mended = true;
                    } else {
                        assert_eq!(update.prev_change_id, Some(last), "delivered out of sequence: {update:?}");
                    }
                    last = update.change_id;
                    after_gap.push(e.clone());
                }
                DeribitEvent::BookResyncFailed { .. } => panic!("{e:?}"),
                _ => {}
            }
        }
    }
    let Some(DeribitEvent::BookGap { channel, instrument, expected, got, change_id }) = gap else {
        panic!("no gap detected for {fault:?}")
    };
    assert_eq!((&*channel, instrument.as_str()), (BOOK, "BTC-PERPETUAL"));
    assert!(expected.is_some() && got != expected, "{fault:?}: expected {expected:?}, got {got:?} ({change_id})");
    assert!(mended, "{fault:?}: no snapshot after the resync");
    assert!(rx.withheld() >= 1, "{fault:?}");
    // More changes after the resync, then the delivered book against the venue's.
    for _ in 0..5 {
        sim.step_market(1);
        drain_for(&mut rx, Duration::from_millis(30)).await;
    }
    let venue = sim.book_snapshot("BTC-PERPETUAL").unwrap();
    let ok = tokio::time::timeout(WAIT, async {
        while rx.book(BOOK).and_then(|b| b.last_change_id()) != Some(venue.change_id) {
            drain_for(&mut rx, Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{fault:?}: the book never caught up with change {}", venue.change_id);
    let book = rx.book(BOOK).unwrap();
    assert!(!book.is_broken());
    let bids: Vec<(f64, f64)> = book.bids().collect();
    let asks: Vec<(f64, f64)> = book.asks().collect();
    let want_bids: Vec<(f64, f64)> = venue.bids.iter().map(|l| (l.price, l.amount)).collect();
    let want_asks: Vec<(f64, f64)> = venue.asks.iter().map(|l| (l.price, l.amount)).collect();
    assert_eq!((bids, asks), (want_bids, want_asks), "{fault:?}");
    d.close().await.unwrap();
}

#[tokio::test]
async fn book_gap_withheld_change() {
    bounded(book_gap(BookFault::Withhold)).await;
}

#[tokio::test]
async fn book_gap_duplicated_change() {
    bounded(book_gap(BookFault::Duplicate)).await;
}

#[tokio::test]
async fn book_gap_reordered_change() {
    bounded(book_gap(BookFault::Reorder)).await;
}

/// The venue processes a buy and the connection is cut before its answer: the caller hears
/// the outcome is unknown (with the order's label); after the reconnect the reconciliation
/// finds exactly one order with that label and reports it once, and never again.
#[tokio::test]
async fn a_lost_order_answer_is_reconciled_to_exactly_one_order() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let price = resting_bid(&d).await;
        sim.cut_before_response(RequestMatch::method("private/buy"), Fault::Reset);
        let e = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await.unwrap_err();
        let DeribitError::OutcomeUnknown { label, .. } = &e else { panic!("{e:?}") };
        assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
        assert!(!label.is_empty() && label.len() <= 64, "{label}");
        let label = label.clone();

        until(&mut rx, is_reconnected).await;
        let (_, seen) = until(&mut rx, is_reconciled).await;
        let mine: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                DeribitEvent::Order(o) if o.order.label == label => Some(o.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(mine.len(), 1, "{seen:#?}");
        assert_eq!((mine[0].source, mine[0].order.order_state), (OrderSource::Reconciled, OrderState::Open));
        assert!(!seen.iter().any(|e| matches!(e, DeribitEvent::OrderNotPlaced { .. })), "{seen:#?}");
        let on_venue = d.get_order_state_by_label(currency_of("BTC-PERPETUAL"), &label).await.unwrap();
        assert_eq!(on_venue.len(), 1);
        assert_eq!(on_venue[0].order_id, mine[0].order.order_id);

        // Another reconnect: the order is reconciled again, and not reported again.
        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        let (ev, seen) = until(&mut rx, is_reconciled).await;
        assert!(matches!(ev, DeribitEvent::Reconciled { open: 1, .. }), "{ev:?}");
        assert!(!seen.iter().any(|e| matches!(e, DeribitEvent::Order(_))), "{seen:#?}");
        d.close().await.unwrap();
    })
    .await;
}

/// An order request that was never sent: not placed, said so; one whose answer was delayed
/// past the deadline: found at once (the connection is still up).
#[tokio::test]
async fn a_timed_out_order_is_looked_up_at_once() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let config = ClientConfig::builder()
            .request_timeout(Duration::from_millis(500))
            .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
            .build()
            .unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config, Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let price = resting_bid(&d).await;
        sim.delay_response(RequestMatch::method("private/buy"), Duration::from_secs(2));
        let e = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price).label("slow-1")).await.unwrap_err();
        assert!(matches!(&e, DeribitError::OutcomeUnknown { label, source: ClientError::Timeout { .. } } if label == "slow-1"), "{e:?}");
        let (ev, _) = until(&mut rx, |e| matches!(e, DeribitEvent::Order(o) if o.order.label == "slow-1")).await;
        assert!(matches!(ev, DeribitEvent::Order(ref o) if o.source == OrderSource::Reconciled));
        let (ev, _) = until(&mut rx, is_reconciled).await;
        assert!(matches!(ev, DeribitEvent::Reconciled { resolved: 1, .. }), "{ev:?}");
        // Nothing more about it, even when the late answer comes.
        let later = drain_for(&mut rx, Duration::from_millis(2500)).await;
        assert!(!later.iter().any(|e| matches!(e, DeribitEvent::Order(_))), "{later:#?}");
        d.close().await.unwrap();
    })
    .await;
}

/// Cancel-on-disconnect: the venue cancels the resting order when the connection drops; the
/// reconciliation after the reconnect reports it cancelled, once, and asks for
/// cancel-on-disconnect again on the new connection.
#[tokio::test]
async fn cancel_on_disconnect_is_seen_after_the_reconnect() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        d.enable_cancel_on_disconnect().await.unwrap();
        let price = resting_bid(&d).await;
        let placed = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await.unwrap();
        assert_eq!(placed.order.order_state, OrderState::Open);
        assert!(placed.order.label.starts_with("ml"), "a label is generated: {}", placed.order.label);

        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        let (ev, seen) = until(&mut rx, is_reconciled).await;
        assert!(matches!(ev, DeribitEvent::Reconciled { open: 0, .. }), "{ev:?}");
        let orders: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                DeribitEvent::Order(o) => Some(o.order.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(orders.len(), 1, "{seen:#?}");
        assert_eq!(orders[0].order_id, placed.order.order_id);
        assert_eq!(orders[0].order_state, OrderState::Cancelled);
        assert_eq!(orders[0].cancel_reason.as_deref(), Some("cancel_on_disconnect"));
        let enabled: Value = d.call("private/get_cancel_on_disconnect", json!({"scope": "connection"})).await.unwrap();
        assert_eq!(enabled["enabled"], json!(true), "asked again on the new connection");

        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        let (_, seen) = until(&mut rx, is_reconciled).await;
        assert!(!seen.iter().any(|e| matches!(e, DeribitEvent::Order(_))), "reported once: {seen:#?}");
        d.close().await.unwrap();
    })
    .await;
}

/// 200 distinct channels (199 and `platform_state`, among the simulator's 271, over its
/// three instruments) subscribed with 20 requests that drain the account's subscribe pool
/// (the simulator's real credit pools, 10028 ending the session), then the connection drops
/// at once: the restore of all 200 waits for credits, every one is confirmed again, and
/// 10028 never happens.
#[tokio::test]
async fn restoring_200_channels_never_trips_10028() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let mut names: Vec<String> = Vec::new();
        for i in ["BTC-PERPETUAL", "ETH-PERPETUAL", "BTC-25DEC26"] {
            for n in ["raw", "100ms", "agg2"] {
                for k in ["ticker", "book", "trades", "user.orders", "user.trades", "user.changes"] {
                    names.push(format!("{k}.{i}.{n}"));
                }
                for g in ["none", "1", "2", "5", "10", "25", "100", "250"] {
                    for depth in [1, 10, 20] {
                        names.push(format!("book.{i}.{g}.{depth}.{n}"));
                    }
                }
            }
        }
        assert_eq!(names.len() + 1, 271, "every channel the simulator serves, and platform_state");
        // Spread over the instruments and kinds, 199 of them.
        let step = names.len() as f64 / 199.0;
        let names: Vec<String> = (0..199).map(|k| names[(k as f64 * step) as usize].clone()).collect();
        let served = 200;
        let mut calls = tokio::task::JoinSet::new();
        for chunk in names.chunks(10) {
            let d = d.clone();
            let chunk: Vec<String> = chunk.to_vec();
            calls.spawn(async move {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                d.subscribe(&refs).await.unwrap()
            });
        }
        let (mut confirmed, mut refused) = (0, 0);
        while let Some(out) = calls.join_next().await {
            let out = out.unwrap();
            confirmed += out.confirmed.len();
            refused += out.refused.len();
        }
        assert_eq!((confirmed, refused), (199, 0));
        // The pool is about empty now; the restore needs two more requests.
        let waits_before = d.client().stats().rate_limit.unwrap().waits;
        sim.fault_all(Fault::Reset);
        let (ev, seen) = until(&mut rx, |e| matches!(e, DeribitEvent::Client(ClientEvent::Restored { .. }))).await;
        let DeribitEvent::Client(ClientEvent::Restored { confirmed, refused }) = ev else { unreachable!() };
        assert_eq!((confirmed.len(), refused.len()), (served, 0), "{refused:?}");
        let disconnects = seen.iter().filter(|e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. })));
        assert_eq!(disconnects.count(), 1, "only ours: {seen:#?}");
        let rate_errors = seen.iter().filter(|e| format!("{e:?}").contains("10028"));
        assert_eq!(rate_errors.count(), 0);
        let conns = sim.connections_info();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].channels.len(), served);
        let stats = d.client().stats();
        assert!(stats.rate_limit.is_some_and(|r| r.waits > waits_before), "the restore waited for credits: {stats:?}");
        d.get_time().await.unwrap();
        let later = drain_for(&mut rx, Duration::from_millis(300)).await;
        assert!(!later.iter().any(|e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))));
        d.close().await.unwrap();
    })
    .await;
}

/// Maintenance: `platform_state` says locked, a buy waits; unlocked, it goes through. A buy
/// the venue refuses with 11051 is retryable.
#[tokio::test]
async fn maintenance_pauses_and_resumes_trading() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let price = resting_bid(&d).await;
        sim.set_platform_locked(true);
        until(&mut rx, |e| matches!(e, DeribitEvent::PlatformState { locked: true })).await;
        assert!(d.is_locked());
        let buyer = d.clone();
        let buy = tokio::spawn(async move { buyer.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await });
        let paused = drain_for(&mut rx, Duration::from_millis(600)).await;
        assert!(!buy.is_finished(), "the buy waits while locked: {paused:#?}");
        assert!(d.get_open_orders().await.unwrap().is_empty());
        sim.set_platform_locked(false);
        until(&mut rx, |e| matches!(e, DeribitEvent::PlatformState { locked: false })).await;
        let placed = tokio::time::timeout(WAIT, buy).await.unwrap().unwrap().unwrap();
        assert_eq!(placed.order.order_state, OrderState::Open);

        // Locked without the façade having heard: the venue refuses a valid buy with 11051
        // (system_maintenance), retryable, and places nothing.
        sim.set_platform_locked(true);
        let raw = d
            .client()
            .request("private/buy", json!({"instrument_name": "BTC-PERPETUAL", "amount": 10.0, "price": price}))
            .await
            .unwrap_err();
        assert!(matches!(&raw, ClientError::Rpc { error, .. } if error.code == codes::SYSTEM_MAINTENANCE), "{raw:?}");
        let err = DeribitError::from(raw);
        assert_eq!((err.code(), err.class()), (Some(11051), ErrorClass::Retryable));
        sim.set_platform_locked(false);
        let open = d.get_open_orders().await.unwrap();
        assert_eq!(open.iter().map(|o| &o.order_id).collect::<Vec<_>>(), vec![&placed.order.order_id]);
        d.close().await.unwrap();
    })
    .await;
}

/// Cancel-on-disconnect is asked for again by the session sequence itself (after the
/// authentication, before the restore): when `Reconnected` arrives the venue already covers
/// the new connection, so an order placed at once is cancelled when that one drops too.
#[tokio::test]
async fn cancel_on_disconnect_is_on_before_reconnected() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        assert!(!sim.connections_info()[0].cancel_on_disconnect);
        d.enable_cancel_on_disconnect().await.unwrap();
        assert!(sim.connections_info()[0].cancel_on_disconnect);
        let price = resting_bid(&d).await;
        let old = sim.connections_info()[0].id;

        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        // Nothing else read yet, no call of ours made: the new connection is covered already.
        let conns = sim.connections_info();
        assert_eq!(conns.len(), 1);
        assert_ne!(conns[0].id, old);
        assert!(conns[0].cancel_on_disconnect, "asked for before Reconnected: {conns:?}");
        let placed = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await.unwrap();
        until(&mut rx, is_reconciled).await;

        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        let (_, seen) = until(&mut rx, is_reconciled).await;
        let mine: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                DeribitEvent::Order(o) if o.order.order_id == placed.order.order_id => Some(o.order.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(mine.len(), 1, "{seen:#?}");
        assert_eq!(mine[0].order_state, OrderState::Cancelled);
        assert_eq!(mine[0].cancel_reason.as_deref(), Some("cancel_on_disconnect"));

        // Disabled: not asked for any more.
        d.disable_cancel_on_disconnect().await.unwrap();
        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        assert!(!sim.connections_info()[0].cancel_on_disconnect);
        d.close().await.unwrap();
    })
    .await;
}

/// A client that reconnects slowly (so it is away a while).
fn slow_config() -> ClientConfig {
    ClientConfig::builder()
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(1),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(5),
        })
        .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The venue fills a resting order while its client is away: the reconciliation after the
/// reconnect reports it filled, once, and never again.
#[tokio::test]
async fn an_order_filled_while_away_is_reported_once() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), slow_config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        d.subscribe(&["user.orders.BTC-PERPETUAL.raw"]).await.unwrap();
        let price = resting_bid(&d).await;
        let placed = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await.unwrap();
        assert_eq!(placed.order.order_state, OrderState::Open);

        sim.fault_all(Fault::Reset);
        until(&mut rx, |e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))).await;
        assert!(sim.wait_for_connections(0, Duration::from_millis(900)).await, "away");
        assert!(sim.fill_order(&placed.order.order_id));
        until(&mut rx, is_reconnected).await;
        let (ev, seen) = until(&mut rx, is_reconciled).await;
        assert!(matches!(ev, DeribitEvent::Reconciled { open: 0, .. }), "{ev:?}");
        let mine: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                DeribitEvent::Order(o) if o.order.order_id == placed.order.order_id => Some(o.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(mine.len(), 1, "{seen:#?}");
        assert_eq!((mine[0].source, mine[0].order.order_state), (OrderSource::Reconciled, OrderState::Filled));
        assert_eq!(mine[0].order.filled_amount, 10.0);

        // Nothing more about it: not from the stream, not after another reconnect.
        let later = drain_for(&mut rx, Duration::from_millis(300)).await;
        assert!(!later.iter().any(|e| matches!(e, DeribitEvent::Order(_))), "{later:#?}");
        sim.fault_all(Fault::Reset);
        until(&mut rx, is_reconnected).await;
        let (_, seen) = until(&mut rx, is_reconciled).await;
        assert!(!seen.iter().any(|e| matches!(e, DeribitEvent::Order(_))), "reported once: {seen:#?}");
        d.close().await.unwrap();
    })
    .await;
}

/// The venue processes an edit, then a cancel, and the connection is cut before each
/// answer: each caller hears the outcome is unknown (with the order's label); after each
/// reconnect the reconciliation reports the order's new state once.
#[tokio::test]
async fn lost_edit_and_cancel_answers_are_reconciled_by_label() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let price = resting_bid(&d).await;
        let placed = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price).label("amend-me")).await.unwrap();
        let id = placed.order.order_id.clone();
        let lower = price - 50.0;

        sim.cut_before_response(RequestMatch::method("private/edit"), Fault::Reset);
        let edit = EditRequest { order_id: id.clone(), amount: 20.0, price: Some(lower) };
        let e = d.edit(edit).await.unwrap_err();
        assert!(matches!(&e, DeribitError::OutcomeUnknown { label, .. } if label == "amend-me"), "{e:?}");
        until(&mut rx, is_reconnected).await;
        let (ev, seen) = until(&mut rx, is_reconciled).await;
        assert!(matches!(ev, DeribitEvent::Reconciled { open: 1, resolved: 1 }), "{ev:?}");
        let mine: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                DeribitEvent::Order(o) if o.order.order_id == id => Some(o.order.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(mine.len(), 1, "the edit, once: {seen:#?}");
        assert_eq!((mine[0].price, mine[0].amount, mine[0].order_state), (Some(lower), 20.0, OrderState::Open));
        assert!(!seen.iter().any(|e| matches!(e, DeribitEvent::OrderNotPlaced { .. })), "{seen:#?}");

        sim.cut_before_response(RequestMatch::method("private/cancel"), Fault::Reset);
        let e = d.cancel(&id).await.unwrap_err();
        assert!(matches!(&e, DeribitError::OutcomeUnknown { label, .. } if label == "amend-me"), "{e:?}");
        until(&mut rx, is_reconnected).await;
        let (ev, seen) = until(&mut rx, is_reconciled).await;
        assert!(matches!(ev, DeribitEvent::Reconciled { open: 0, resolved: 1 }), "{ev:?}");
        let mine: Vec<_> = seen
            .iter()
            .filter_map(|e| match e {
                DeribitEvent::Order(o) if o.order.order_id == id => Some(o.order.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(mine.len(), 1, "the cancel, once: {seen:#?}");
        assert_eq!(mine[0].order_state, OrderState::Cancelled);
        assert!(d.get_open_orders().await.unwrap().is_empty());
        d.close().await.unwrap();
    })
    .await;
}

/// The façade's rate-limit preset prices requests as the simulator (and Deribit) does:
/// orders and cancels from the matching-engine pool (bursts of 20, 5 a second), every other
/// call from the non-matching credits (bursts of 100, 20 a second). 25 buys, 25 cancels and
/// 160 ordinary calls, all at once, at full rate under the simulator's real pools (10028
/// ending the session): every one succeeds, the client waited its turn, the session never
/// dropped.
#[tokio::test]
async fn orders_and_calls_at_full_rate_never_trip_10028() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        let config = ClientConfig::builder()
            .request_timeout(Duration::from_secs(30))
            .venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5))
            .build()
            .unwrap();
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config, Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;
        let price = resting_bid(&d).await;
        let conn = sim.connections_info()[0].id;

        let mut orders = tokio::task::JoinSet::new();
        for _ in 0..25 {
            let d = d.clone();
            orders.spawn(async move {
                let placed = d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, price)).await?;
                d.cancel(&placed.order.order_id).await
            });
        }
        let mut calls = tokio::task::JoinSet::new();
        for k in 0..160 {
            let d = d.clone();
            calls.spawn(async move {
                if k % 2 == 0 { d.get_time().await.map(|_| ()) } else { d.ticker("ETH-PERPETUAL").await.map(|_| ()) }
            });
        }
        while let Some(r) = orders.join_next().await {
            let cancelled = r.unwrap().unwrap();
            assert_eq!(cancelled.order_state, OrderState::Cancelled);
        }
        while let Some(r) = calls.join_next().await {
            r.unwrap().unwrap();
        }
        let events = drain_for(&mut rx, Duration::from_millis(200)).await;
        assert!(
            !events.iter().any(|e| matches!(e, DeribitEvent::Client(ClientEvent::Disconnected { .. }))),
            "{events:#?}"
        );
        let conns = sim.connections_info();
        assert_eq!((conns.len(), conns[0].id), (1, conn), "the same session all along");
        let stats = d.client().stats().rate_limit.unwrap();
        assert!(stats.waits >= 40, "the orders and calls past the bursts waited: {stats:?}");
        assert_eq!(stats.refusals, 0, "{stats:?}");
        assert!(d.get_open_orders().await.unwrap().is_empty());
        d.close().await.unwrap();
    })
    .await;
}

/// The typed helpers not exercised elsewhere: `get_order_book` decodes the venue's book
/// (the same levels and `change_id` as the simulator's own view), `sell` places a sell,
/// `get_order_state` reads it back, `cancel_all` cancels exactly the open orders and says how
/// many.
#[tokio::test]
async fn order_book_sell_order_state_and_cancel_all() {
    bounded(async {
        let sim = DeribitSim::builder().manual_market().start().await.unwrap();
        sim.step_market(5);
        let (d, mut rx) = DeribitClient::connect(&sim.url(), config(), Some(creds())).unwrap();
        until(&mut rx, is_reconciled).await;

        let venue = sim.book_snapshot("BTC-PERPETUAL").unwrap();
        let book = d.get_order_book("BTC-PERPETUAL", Some(5)).await.unwrap();
        assert_eq!((book.instrument_name.as_str(), book.change_id), ("BTC-PERPETUAL", venue.change_id));
        assert!(!book.bids.is_empty() && book.bids.len() <= 5, "{book:?}");
        assert!(!book.asks.is_empty() && book.asks.len() <= 5, "{book:?}");
        assert!(book.bids.windows(2).all(|w| w[0].0 > w[1].0), "bids best first: {:?}", book.bids);
        assert!(book.asks.windows(2).all(|w| w[0].0 < w[1].0), "asks best first: {:?}", book.asks);
        assert!(book.bids[0].0 < book.asks[0].0, "not crossed: {book:?}");
        let level = |l: &moorline_testkit::deribit::BookLevel| (l.price, l.amount);
        let venue_bids: Vec<(f64, f64)> = venue.bids.iter().take(5).map(level).collect();
        let venue_asks: Vec<(f64, f64)> = venue.asks.iter().take(5).map(level).collect();
        assert_eq!((book.bids.clone(), book.asks.clone()), (venue_bids, venue_asks));
        assert!(book.timestamp > 0 && book.mark_price > 0.0, "{book:?}");
        let deeper = d.get_order_book("ETH-PERPETUAL", None).await.unwrap();
        assert_eq!(deeper.change_id, sim.book_snapshot("ETH-PERPETUAL").unwrap().change_id);

        // A sell well above the market rests; its state reads back as placed.
        let tick = d.get_instruments("BTC", None).await.unwrap()[0].tick_size;
        let ask = ((book.asks[0].0 * 1.03) / tick).round() * tick;
        let sold = d.sell(OrderRequest::limit("BTC-PERPETUAL", 20.0, ask).label("ask-1")).await.unwrap();
        assert_eq!((sold.order.direction, sold.order.order_state), (Direction::Sell, OrderState::Open));
        assert!(sold.trades.is_empty());
        let state = d.get_order_state(&sold.order.order_id).await.unwrap();
        assert_eq!(
            (state.direction, state.order_state, state.price, state.amount),
            (Direction::Sell, OrderState::Open, Some(ask), 20.0)
        );
        assert_eq!(state.label, "ask-1");
        let e = d.get_order_state("no-such-order").await.unwrap_err();
        assert_eq!(e.code(), Some(codes::ORDER_NOT_FOUND), "{e}");

        // Two bids and another sell: cancel_all cancels the four and says so.
        let bid = resting_bid(&d).await;
        d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, bid)).await.unwrap();
        d.buy(OrderRequest::limit("BTC-PERPETUAL", 10.0, bid - tick)).await.unwrap();
        d.sell(OrderRequest::limit("BTC-PERPETUAL", 10.0, ask + tick)).await.unwrap();
        assert_eq!(d.get_open_orders().await.unwrap().len(), 4);
        assert_eq!(d.cancel_all().await.unwrap(), 4);
        assert!(d.get_open_orders().await.unwrap().is_empty());
        assert_eq!(d.get_order_state(&sold.order.order_id).await.unwrap().order_state, OrderState::Cancelled);
        assert_eq!(d.cancel_all().await.unwrap(), 0, "nothing left to cancel");
        d.close().await.unwrap();
    })
    .await;
}
