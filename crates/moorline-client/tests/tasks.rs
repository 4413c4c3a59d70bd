//! The task count: one task per open client, none left after close or after every handle is
//! dropped. Alone in its binary, so no other test's clients are counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use moorline_client::dialect::Deribit;
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientEvent, running_tasks};
use moorline_testkit::ws::{Frame, Matcher, MockServer, Reply};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f).await.expect("test exceeded its time bound");
}

async fn until(rx: &mut EventStream, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.expect("an event in time").expect("stream open");
        if pred(&ev) {
            return ev;
        }
    }
}

fn config() -> ClientConfig {
    ClientConfig::builder().venue_heartbeat(Some(Duration::from_secs(10)), Duration::from_secs(5)).build().unwrap()
}

async fn fake_deribit() -> MockServer {
    MockServer::builder()
        .on(
            Matcher::any(),
            Reply::with(|frame| {
                let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                let id = v.get("id")?.clone();
                (v["method"] == "public/set_heartbeat")
                    .then(|| Frame::text(json!({"jsonrpc": "2.0", "id": id, "result": "ok"}).to_string()))
            }),
        )
        .start()
        .await
        .unwrap()
}

/// After close (and after every handle is dropped) no client task is left.
#[tokio::test]
async fn no_task_left_after_close() {
    bounded(async {
        let server = fake_deribit().await;
        let before = running_tasks();
        let mut clients = Vec::new();
        for _ in 0..5 {
            let (client, mut rx) = Client::connect(&server.url(), config(), Deribit::new()).unwrap();
            until(&mut rx, |e| matches!(e, ClientEvent::Connected { .. })).await;
            clients.push((client, rx));
        }
        assert!(running_tasks() >= before + 5);
        let (dropped, mut dropped_rx) = clients.pop().unwrap();
        drop(dropped);
        let ev = until(&mut dropped_rx, |e| matches!(e, ClientEvent::Closed { .. })).await;
        assert!(matches!(ev, ClientEvent::Closed { error: None }), "dropping every handle closes: {ev:?}");
        for (client, _) in &clients {
            client.close().await.unwrap();
        }
        tokio::time::timeout(WAIT, async {
            while running_tasks() > before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every client task ended");
        assert!(server.wait_for_open_connections(0, WAIT).await, "every connection closed");
    })
    .await;
}
