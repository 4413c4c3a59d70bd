//! The client with the Deribit dialect: against the test kit's Deribit simulator (real
//! subscriptions, confirmations, authentication, requests), and against the test kit's
//! WebSocket server playing Deribit, to see every frame the client sends on every
//! (re)connect: `set_heartbeat` then `auth` then the restore, each time; `test_request`
//! answered. Also the task count back to zero after close.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::dialect::{Credentials, Deribit};
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientError, ClientEvent};
use moorline_testkit::deribit::{DeribitSim, TEST_CLIENT_ID, TEST_CLIENT_SECRET};
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer, Reply};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

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

fn credentials() -> Deribit {
    Deribit::with_credentials(Credentials::new(TEST_CLIENT_ID, TEST_CLIENT_SECRET))
}

/// The simulator: authenticated session, a refused (unknown) channel reported with the
/// confirmed ones, data routed by channel, a request answered, then close: the task ends.
#[tokio::test]
async fn deribit_simulator_session() {
    bounded(async {
        let sim = DeribitSim::builder().market_interval(Duration::from_millis(20)).start().await.unwrap();
        let (client, mut rx) = Client::connect(&sim.url(), config(), credentials()).unwrap();
        until(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
        let out = client
            .subscribe(&[
                "trades.BTC-PERPETUAL.raw",
                "book.BTC-PERPETUAL.100ms",
                "user.orders.BTC-PERPETUAL.raw",
                "nope.channel",
            ])
            .await
            .unwrap();
        let mut confirmed: Vec<&str> = out.confirmed.iter().map(|c| &**c).collect();
        confirmed.sort_unstable();
        assert_eq!(
            confirmed,
            ["book.BTC-PERPETUAL.100ms", "trades.BTC-PERPETUAL.raw", "user.orders.BTC-PERPETUAL.raw"]
        );
        assert_eq!(out.refused.len(), 1, "{out:?}");
        assert_eq!(&*out.refused[0].channel, "nope.channel");
        let (ev, _) =
            until(&mut rx, |e| matches!(e, ClientEvent::Message { channel: Some(c), .. } if c.starts_with("book.")))
                .await;
        assert!(matches!(ev, ClientEvent::Message { .. }));
        let time = client.request("public/get_time", json!({})).await.unwrap();
        assert!(time.get().parse::<u64>().is_ok(), "{}", time.get());
        let e = client.request("public/no_such_method", json!({})).await.unwrap_err();
        assert!(matches!(e, ClientError::Rpc { ref error, .. } if error.code == -32601), "{e:?}");
        let stats = client.stats();
        assert!(stats.requests.count >= 2 && stats.requests.p50.is_some(), "{stats:?}");
        assert!(stats.messages_in > 0);
        client.close().await.unwrap();
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Closed { .. })).await;
        assert!(matches!(ev, ClientEvent::Closed { error: None }));
    })
    .await;
}

/// Wrong credentials are fatal: the session cannot be restored by retrying.
#[tokio::test]
async fn wrong_credentials_are_fatal() {
    bounded(async {
        let sim = DeribitSim::builder().start().await.unwrap();
        let dialect = Deribit::with_credentials(Credentials::new("who", "nope"));
        let (_client, mut rx) = Client::connect(&sim.url(), config(), dialect).unwrap();
        let (ev, skipped) = until(&mut rx, |e| matches!(e, ClientEvent::Closed { .. })).await;
        assert!(matches!(ev, ClientEvent::Closed { error: Some(ClientError::Rpc { ref error, .. }) } if error.code == 13004), "{ev:?}");
        assert!(!skipped.iter().any(|e| matches!(e, ClientEvent::Connected { .. })), "{skipped:#?}");
    })
    .await;
}

/// The test kit's server playing Deribit (answers set_heartbeat, auth, subscribe, test).
async fn fake_deribit() -> MockServer {
    MockServer::builder()
        .on(
            Matcher::any(),
            Reply::with(|frame| {
                let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                let id = v.get("id")?.clone();
                let result = match v["method"].as_str()? {
                    "public/set_heartbeat" | "public/test" => json!("ok"),
                    "public/auth" => json!({"access_token": "t", "expires_in": 900, "refresh_token": "r", "scope": "s", "token_type": "bearer"}),
                    "public/subscribe" | "private/subscribe" => v["params"]["channels"].clone(),
                    _ => return None,
                };
                Some(Frame::text(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()))
            }),
        )
        .start()
        .await
        .unwrap()
}

/// The methods the client sent, in order.
fn methods(server: &MockServer) -> Vec<String> {
    server
        .received()
        .iter()
        .filter_map(|r| r.frame.as_text().and_then(|t| serde_json::from_str::<Value>(t).ok()))
        .filter_map(|v| v["method"].as_str().map(str::to_owned))
        .collect()
}

/// On every connect and reconnect, in order: `set_heartbeat`, `auth`, then the subscriptions
/// (public and private in their own requests); `test_request` answered with `public/test`.
#[tokio::test]
async fn set_heartbeat_and_auth_on_every_reconnect() {
    bounded(async {
        let server = fake_deribit().await;
        let (client, mut rx) = Client::connect(&server.url(), config(), credentials()).unwrap();
        until(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
        client.subscribe(&["trades.BTC-PERPETUAL.raw", "user.orders.BTC-PERPETUAL.raw"]).await.unwrap();
        server.inject(Frame::text(r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#));
        server
            .expect_received(Matcher::predicate(|f| f.as_text().is_some_and(|t| t.contains("public/test"))), WAIT)
            .await
            .unwrap();
        for round in 0..2 {
            server.fault(if round == 0 { Fault::Fin } else { Fault::Reset });
            until(&mut rx, |e| matches!(e, ClientEvent::Reconnected { .. })).await;
        }
        let (ev, _) = until(&mut rx, |e| matches!(e, ClientEvent::Restored { .. })).await;
        assert!(matches!(ev, ClientEvent::Restored { ref confirmed, .. } if confirmed.len() == 2), "{ev:?}");
        let sent: Vec<String> = methods(&server).into_iter().filter(|m| m != "public/test").collect();
        let session = ["public/set_heartbeat", "public/auth"];
        assert_eq!(&sent[..2], session);
        assert_eq!(sent[2..4].iter().filter(|m| m.ends_with("/subscribe")).count(), 2, "{sent:?}");
        // Each reconnect: set_heartbeat, auth, then one public and one private subscribe.
        for chunk in sent[4..].chunks(4) {
            assert_eq!(&chunk[..2], session, "{sent:?}");
            let mut subs = chunk[2..].to_vec();
            subs.sort();
            assert_eq!(subs, ["private/subscribe", "public/subscribe"], "{sent:?}");
        }
        assert_eq!(sent.len(), 12, "{sent:?}");
        assert!(client.stats().heartbeats.count >= 1);
        client.close().await.unwrap();
    })
    .await;
}
