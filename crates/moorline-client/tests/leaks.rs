//! No memory leaked over reconnects and over whole clients: the live heap (a counting global
//! allocator) after 40 reconnect cycles (each with a subscription restore, a request, a
//! request failed by the drop) and after 40 clients opened and closed grows by less than 256
//! bytes per cycle (measured: a few bytes in all) over
//! what it was after a few warm-up cycles. Alone in its binary: the allocator counts
//! this process only, and the test kit's server runs in it too (its log of received frames is
//! cleared each cycle).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use moorline_client::config::{Attempts, Jitter, RetryConfig};
use moorline_client::dialect::JsonRpc;
use moorline_client::queue::EventStream;
use moorline_client::{Client, ClientConfig, ClientError, ClientEvent, running_tasks};
use moorline_testkit::ws::{Fault, Frame, Matcher, MockServer, Reply};
use serde_json::{Value, json};

// The benchmarks' counting allocator (moorline_bench::Counting): live heap bytes of this process.
#[global_allocator]
static GLOBAL: moorline_bench::Counting = moorline_bench::Counting;

const BOUND: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(15);

async fn venue() -> MockServer {
    MockServer::builder()
        .on(
            Matcher::any(),
            Reply::with(|frame| {
                let v: Value = serde_json::from_str(frame.as_text()?).ok()?;
                let id = v.get("id")?.clone();
                let result = match v["method"].as_str()? {
                    "subscribe" => v["params"]["channels"].clone(),
                    "echo" => v["params"].clone(),
                    _ => return None,
                };
                Some(Frame::text(json!({"jsonrpc":"2.0","id":id,"result":result}).to_string()))
            }),
        )
        .start()
        .await
        .unwrap()
}

fn config() -> ClientConfig {
    ClientConfig::builder()
        .retry(RetryConfig {
            attempts: Attempts::Unlimited,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
            jitter: Jitter::None,
            healthy_after: Duration::from_secs(5),
        })
        .build()
        .unwrap()
}

async fn restored(rx: &mut EventStream) {
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.expect("an event in time").expect("stream open");
        if matches!(ev, ClientEvent::Restored { .. }) {
            return;
        }
    }
}

/// One reconnect cycle: a request left pending, the connection reset, the session restored,
/// a message routed, a request answered.
async fn cycle(server: &MockServer, client: &Client, rx: &mut EventStream) {
    let c = client.clone();
    let pending = tokio::spawn(async move { c.request("silent", json!({})).await });
    while client.stats().pending == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.fault(Fault::Reset);
    assert!(matches!(pending.await.unwrap(), Err(ClientError::Disconnected { sent: true })));
    restored(rx).await;
    assert!(server.wait_for_open_connections(1, WAIT).await);
    server.inject(Frame::text(r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"a","data":1}}"#));
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        if matches!(ev, ClientEvent::Message { .. }) {
            break;
        }
    }
    client.request("echo", json!({"x": 1})).await.unwrap();
    server.clear_received();
}

#[tokio::test]
async fn no_memory_leaked_over_reconnects_and_clients() {
    tokio::time::timeout(BOUND, async {
        let server = venue().await;
        let (client, mut rx) = Client::connect(&server.url(), config(), JsonRpc::new()).unwrap();
        restored(&mut rx).await;
        client.subscribe(&["a", "b"]).await.unwrap();
        for _ in 0..5 {
            cycle(&server, &client, &mut rx).await;
        }
        let before = moorline_bench::live_heap();
        const CYCLES: isize = 40;
        for _ in 0..CYCLES {
            cycle(&server, &client, &mut rx).await;
        }
        let grown = moorline_bench::live_heap() - before;
        assert!(grown < 256 * CYCLES, "the heap grew {grown} bytes over {CYCLES} reconnects");
        assert_eq!(client.stats().reconnects, 45);
        client.close().await.unwrap();
        drop((client, rx));

        // Whole clients, opened, used and closed one after another.
        let open_close = || async {
            let (client, mut rx) = Client::connect(&server.url(), config(), JsonRpc::new()).unwrap();
            restored(&mut rx).await;
            client.subscribe(&["a"]).await.unwrap();
            client.request("echo", json!({})).await.unwrap();
            client.close().await.unwrap();
            while rx.recv().await.is_some() {}
            server.clear_received();
        };
        for _ in 0..5 {
            open_close().await;
        }
        assert!(server.wait_for_open_connections(0, WAIT).await);
        let before = moorline_bench::live_heap();
        const CLIENTS: isize = 40;
        for _ in 0..CLIENTS {
            open_close().await;
        }
        assert!(server.wait_for_open_connections(0, WAIT).await);
        tokio::time::timeout(WAIT, async {
            while running_tasks() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every client task ended");
        let grown = moorline_bench::live_heap() - before;
        assert!(grown < 256 * CLIENTS, "the heap grew {grown} bytes over {CLIENTS} clients");
    })
    .await
    .expect("bounded");
}
