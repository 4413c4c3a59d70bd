//! The Deribit simulator's hooks and fidelity, driven by real WebSocket clients over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use moorline_testkit::deribit::{
    BookFault, DeribitSim, Fault, Hook, RequestMatch, TEST_CLIENT_ID, TEST_CLIENT_SECRET, codes,
};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Bound on any single wait for a message.
const WAIT: Duration = Duration::from_secs(3);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("test timed out")
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Client {
    ws: WebSocketStream<Box<dyn Io>>,
    id: u64,
    backlog: VecDeque<Value>,
}

impl Client {
    async fn connect(sim: &DeribitSim) -> Self {
        let tcp = TcpStream::connect(sim.addr()).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(sim.url(), Box::new(tcp) as Box<dyn Io>).await.unwrap();
        Self { ws, id: 0, backlog: VecDeque::new() }
    }

    async fn send(&mut self, method: &str, params: Value) -> u64 {
        self.id += 1;
        let text = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(text)).await.unwrap();
        self.id
    }

    /// The next message: `Ok(text as JSON)`, or `Err(what ended the connection)`.
    async fn next(&mut self) -> Result<Value, String> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return Err("nothing within the wait".to_owned()),
                Ok(None) => return Err("end of stream".to_owned()),
                Ok(Some(Err(e))) => return Err(format!("error: {e}")),
                Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Some(Ok(Message::Close(frame)))) => return Err(format!("close {frame:?}")),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn recv(&mut self) -> Value {
        self.next().await.unwrap()
    }

    async fn wait_for(&mut self, id: u64) -> Value {
        loop {
            let v = self.recv().await;
            if v["id"] == json!(id) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        self.wait_for(id).await
    }

    async fn result(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        assert!(r.get("result").is_some(), "{method}: {r}");
        r["result"].clone()
    }

    async fn error_code(&mut self, method: &str, params: Value) -> i64 {
        let r = self.call(method, params).await;
        r["error"]["code"].as_i64().unwrap_or_else(|| panic!("{method}: no error in {r}"))
    }

    async fn auth_scope(&mut self, scope: &str) -> Value {
        let params = json!({"grant_type": "client_credentials", "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET, "scope": scope});
        self.result("public/auth", params).await
    }

    async fn auth(&mut self) -> Value {
        self.auth_scope("").await
    }

    /// The data of the next notification on `channel` (others are dropped).
    async fn notification(&mut self, channel: &str) -> Value {
        while let Some(v) = self.backlog.pop_front() {
            if v["params"]["channel"] == channel {
                return v["params"]["data"].clone();
            }
        }
        loop {
            let v = self.recv().await;
            if v["method"] == "subscription" && v["params"]["channel"] == channel {
                return v["params"]["data"].clone();
            }
        }
    }
}

fn manual() -> moorline_testkit::deribit::DeribitSimBuilder {
    DeribitSim::builder().seed(3).manual_market()
}

/// A limit buy far below the market (it rests), with `label`.
fn resting_buy(label: &str) -> Value {
    json!({"instrument_name": "ETH-PERPETUAL", "amount": 1, "price": 1000.0, "label": label})
}

#[tokio::test]
async fn faults_act_on_one_connection_or_all_and_connections_are_listed() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let (mut a, mut b, mut c) =
            (Client::connect(&sim).await, Client::connect(&sim).await, Client::connect(&sim).await);
        a.auth_scope("session:alpha").await;
        b.result("public/subscribe", json!({"channels": ["ticker.BTC-PERPETUAL.100ms"]})).await;
        c.result("public/test", json!({})).await;
        let list = sim.connections_info();
        assert_eq!(list.len(), 3, "{list:?}");
        assert_eq!((list[0].client_id.as_deref(), list[0].session.as_deref()), (Some(TEST_CLIENT_ID), Some("alpha")));
        assert_eq!(list[1].channels, vec!["ticker.BTC-PERPETUAL.100ms".to_owned()]);
        let ids: Vec<u64> = list.iter().map(|c| c.id).collect();

        // RST on a: its next read fails; b and c do not notice.
        assert!(sim.fault(ids[0], Fault::Reset));
        let end = a.next().await.unwrap_err();
        assert!(end.contains("error") || end.contains("end of stream"), "{end}");
        assert!(!sim.fault(ids[0], Fault::Fin), "already gone");
        b.result("public/test", json!({})).await;
        // FIN on b: end of stream without a close frame.
        assert!(sim.fault(ids[1], Fault::Fin));
        let end = b.next().await.unwrap_err();
        assert!(!end.starts_with("close") && !end.contains("nothing"), "{end}");
        // A stall: requests are read and answered, but nothing arrives.
        assert!(sim.fault(ids[2], Fault::StallAfter { bytes: 0 }));
        c.send("public/test", json!({})).await;
        assert_eq!(c.next().await.unwrap_err(), "nothing within the wait");
        assert!(sim.wait_for_connections(1, WAIT).await);

        // Every connection at once: a close frame with our code.
        let (mut d, mut e) = (Client::connect(&sim).await, Client::connect(&sim).await);
        d.result("public/test", json!({})).await;
        e.result("public/test", json!({})).await;
        assert_eq!(sim.fault_all(Fault::Close { code: 4001, reason: "test".to_owned() }), 3);
        for client in [&mut d, &mut e] {
            let end = client.next().await.unwrap_err();
            assert!(end.contains("4001"), "{end}");
        }
    })
    .await;
}

#[tokio::test]
async fn half_open_goes_silent_and_ends_the_session() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut a = Client::connect(&sim).await;
        a.result("public/test", json!({})).await;
        let id = sim.connections_info()[0].id;
        assert!(sim.fault(id, Fault::HalfOpen));
        a.send("public/test", json!({})).await;
        assert_eq!(a.next().await.unwrap_err(), "nothing within the wait", "no FIN, no RST, no answer");
        assert!(sim.wait_for_connections(0, WAIT).await, "the venue ended the session");
    })
    .await;
}

/// Book changes of `channel` until `n` have arrived (stepping the market).
async fn book_changes(sim: &DeribitSim, c: &mut Client, channel: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        sim.step_market(1);
        let id = c.send("public/test", json!({})).await;
        loop {
            let v = c.recv().await;
            if v["id"] == json!(id) {
                break;
            }
            if v["params"]["channel"] == channel {
                out.push(v["params"]["data"].clone());
            }
        }
    }
    out
}

#[tokio::test]
async fn book_faults_make_gaps_a_client_can_see() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let channel = "book.BTC-PERPETUAL.100ms";
        c.result("public/subscribe", json!({"channels": [channel]})).await;
        let snapshot = c.notification(channel).await;
        assert_eq!(snapshot["type"], "snapshot");
        let mut last = snapshot["change_id"].as_u64().unwrap();
        let chained = |changes: &[Value], mut last: u64| -> (bool, u64) {
            let mut ok = true;
            for ch in changes {
                ok &= ch["prev_change_id"].as_u64() == Some(last);
                last = ch["change_id"].as_u64().unwrap();
            }
            (ok, last)
        };
        let clean = book_changes(&sim, &mut c, channel, 3).await;
        let (ok, l) = chained(&clean, last);
        assert!(ok, "{clean:?}");
        last = l;

        // Withheld: the next change's prev_change_id was never seen.
        assert!(sim.book_fault("BTC-PERPETUAL", BookFault::Withhold));
        let after = book_changes(&sim, &mut c, channel, 1).await;
        assert_ne!(after[0]["prev_change_id"].as_u64(), Some(last), "a gap");
        last = after[0]["change_id"].as_u64().unwrap();

        // Duplicated: the same change twice.
        assert!(sim.book_fault("BTC-PERPETUAL", BookFault::Duplicate));
        let dup = book_changes(&sim, &mut c, channel, 2).await;
        assert_eq!(dup[0], dup[1]);
        assert_eq!(dup[0]["prev_change_id"].as_u64(), Some(last));
        last = dup[0]["change_id"].as_u64().unwrap();

        // Reordered: the later change first, then the earlier one.
        assert!(sim.book_fault("BTC-PERPETUAL", BookFault::Reorder));
        let swapped = book_changes(&sim, &mut c, channel, 2).await;
        assert_eq!(swapped[1]["prev_change_id"].as_u64(), Some(last));
        assert_eq!(swapped[0]["prev_change_id"], swapped[1]["change_id"]);
        assert!(!sim.book_fault("DOGE-PERPETUAL", BookFault::Withhold));
    })
    .await;
}

#[tokio::test]
async fn tokens_expire_or_are_revoked_on_demand() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let grant = c.auth().await;
        let open = json!({"instrument_name": "BTC-PERPETUAL"});
        c.result("private/get_open_orders_by_instrument", open.clone()).await;
        assert_eq!(sim.expire_tokens(Some(TEST_CLIENT_ID)), Some(1));
        assert_eq!(c.error_code("private/get_open_orders_by_instrument", open.clone()).await, codes::UNAUTHORIZED);
        // The refresh token still works.
        let fresh = c
            .result("public/auth", json!({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}))
            .await;
        c.result("private/get_open_orders_by_instrument", open.clone()).await;
        assert!(sim.revoke_tokens(None).unwrap() >= 2);
        assert_eq!(c.error_code("private/get_open_orders_by_instrument", open).await, codes::UNAUTHORIZED);
        let refresh = json!({"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]});
        assert_eq!(c.error_code("public/auth", refresh).await, codes::INVALID_CREDENTIALS);
        assert_eq!(sim.expire_tokens(Some("nobody")), None);
    })
    .await;
}

#[tokio::test]
async fn a_request_processed_then_cut_before_its_response() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let mut req = RequestMatch::method("private/buy");
        req.params = Some(json!({"label": "lost-1"}));
        sim.cut_before_response(req, Fault::Reset);
        // A request that does not match goes through.
        c.result("private/buy", resting_buy("other")).await;
        c.send("private/buy", resting_buy("lost-1")).await;
        let end = c.next().await.unwrap_err();
        assert!(!end.contains("nothing"), "connection cut: {end}");
        // The order exists: exactly one, found by its label after reconnecting.
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let orders = c.result("private/get_order_state_by_label", json!({"label": "lost-1", "currency": "ETH"})).await;
        assert_eq!(orders.as_array().unwrap().len(), 1, "{orders}");
        assert_eq!(orders[0]["order_state"], "open");
        let open = c.result("private/get_open_orders_by_label", json!({"label": "lost-1", "currency": "ETH"})).await;
        assert_eq!(open.as_array().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_response_can_be_delayed() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        sim.delay_response(RequestMatch::method("public/get_time"), Duration::from_millis(400));
        let slow = c.send("public/get_time", json!({})).await;
        let fast = c.send("public/test", json!({})).await;
        assert_eq!(c.recv().await["id"], json!(fast), "the delayed response comes second");
        assert_eq!(c.recv().await["id"], json!(slow));
        // One-shot: the next is not delayed.
        let again = c.send("public/get_time", json!({})).await;
        let fast = c.send("public/test", json!({})).await;
        assert_eq!(c.recv().await["id"], json!(again));
        assert_eq!(c.recv().await["id"], json!(fast));
    })
    .await;
}

#[tokio::test]
async fn orders_fill_or_cancel_while_their_client_is_away() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let a = c.result("private/buy", resting_buy("a")).await["order"]["order_id"].as_str().unwrap().to_owned();
        let b = c.result("private/buy", resting_buy("b")).await["order"]["order_id"].as_str().unwrap().to_owned();
        drop(c);
        assert!(sim.wait_for_connections(0, WAIT).await);
        assert!(sim.fill_order(&a));
        assert!(sim.cancel_order(&b));
        assert!(!sim.fill_order(&a) && !sim.cancel_order("nope"));
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let state = c.result("private/get_order_state", json!({"order_id": a})).await;
        assert_eq!((state["order_state"].as_str(), state["filled_amount"].as_f64()), (Some("filled"), Some(1.0)));
        assert_eq!(c.result("private/get_order_state", json!({"order_id": b})).await["order_state"], "cancelled");
        let trades =
            c.result("private/get_user_trades_by_instrument", json!({"instrument_name": "ETH-PERPETUAL"})).await;
        assert_eq!(trades["trades"][0]["order_id"], json!(a));
        let positions = c.result("private/get_positions", json!({"currency": "ETH"})).await;
        assert_eq!((positions[0]["size"].as_f64(), positions[0]["direction"].as_str()), (Some(1.0), Some("buy")));
    })
    .await;
}

#[tokio::test]
async fn platform_lock_pauses_trading_and_is_announced() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        assert_eq!(c.result("public/status", json!({})).await["locked"], "false");
        c.result("public/subscribe", json!({"channels": ["platform_state"]})).await;
        sim.set_platform_locked(true);
        // One notification per price index.
        for index in ["btc_usd", "eth_usd"] {
            let note = c.notification("platform_state").await;
            assert_eq!((note["price_index"].as_str(), note["locked"].as_bool()), (Some(index), Some(true)));
        }
        assert_eq!(c.result("public/status", json!({})).await["locked"], "true");
        assert_eq!(c.error_code("private/buy", resting_buy("x")).await, codes::SYSTEM_MAINTENANCE);
        sim.set_platform_locked(false);
        assert_eq!(c.notification("platform_state").await["locked"], false);
        c.result("private/buy", resting_buy("x")).await;
    })
    .await;
}

#[tokio::test]
async fn a_method_fails_with_a_given_code() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        sim.fail_method("private/buy", 10040, Some(2));
        for _ in 0..2 {
            let r = c.call("private/buy", resting_buy("x")).await;
            assert_eq!(r["error"], json!({"code": 10040, "message": "retry"}));
        }
        c.result("private/buy", resting_buy("x")).await;
        sim.fail_method("public/get_time", 13028, None);
        for _ in 0..3 {
            assert_eq!(c.error_code("public/get_time", json!({})).await, 13028);
        }
        sim.fail_method("public/get_time", 0, Some(0));
        c.result("public/get_time", json!({})).await;
    })
    .await;
}

#[tokio::test]
async fn cancel_on_disconnect_fires_on_close_but_not_on_logout() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut watcher = Client::connect(&sim).await;
        watcher.auth().await;
        watcher.result("private/subscribe", json!({"channels": ["user.orders.ETH-PERPETUAL.raw"]})).await;

        let mut c = Client::connect(&sim).await;
        c.auth().await;
        assert_eq!(c.result("private/enable_cancel_on_disconnect", json!({"scope": "connection"})).await, "ok");
        assert_eq!(c.result("private/get_cancel_on_disconnect", json!({})).await["enabled"], true);
        let id = c.result("private/buy", resting_buy("cod")).await["order"]["order_id"].clone();
        assert_eq!(watcher.notification("user.orders.ETH-PERPETUAL.raw").await["order_state"], "open");
        // A connection that dies (RST) cancels its orders.
        let conn = sim.connections_info()[1].id;
        assert!(sim.fault(conn, Fault::Reset));
        let cancelled = watcher.notification("user.orders.ETH-PERPETUAL.raw").await;
        assert_eq!((cancelled["order_id"].clone(), cancelled["order_state"].as_str()), (id, Some("cancelled")));
        assert_eq!(cancelled["cancel_reason"], "cancel_on_disconnect");

        // Logout does not.
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        c.result("private/enable_cancel_on_disconnect", json!({})).await;
        let id = c.result("private/buy", resting_buy("kept")).await["order"]["order_id"].clone();
        c.send("private/logout", json!({})).await;
        let end = c.next().await.unwrap_err();
        assert!(end.contains("close"), "{end}");
        assert!(sim.wait_for_connections(1, WAIT).await);
        assert_eq!(watcher.result("private/get_order_state", json!({"order_id": id})).await["order_state"], "open");
    })
    .await;
}

/// A watcher on `user.orders.ETH-PERPETUAL.raw`, and a client with cancel-on-disconnect on
/// (scope `connection`) and one resting order (its id), seen open by the watcher.
async fn cod_setup(sim: &DeribitSim) -> (Client, Client, Value) {
    let mut watcher = Client::connect(sim).await;
    watcher.auth().await;
    watcher.result("private/subscribe", json!({"channels": ["user.orders.ETH-PERPETUAL.raw"]})).await;
    let mut c = Client::connect(sim).await;
    c.auth().await;
    assert_eq!(c.result("private/enable_cancel_on_disconnect", json!({"scope": "connection"})).await, "ok");
    let id = c.result("private/buy", resting_buy("cod")).await["order"]["order_id"].clone();
    assert_eq!(watcher.notification("user.orders.ETH-PERPETUAL.raw").await["order_state"], "open");
    (watcher, c, id)
}

/// The watcher sees order `id` cancelled by cancel-on-disconnect.
async fn assert_cancelled_on_disconnect(watcher: &mut Client, id: &Value) {
    let cancelled = watcher.notification("user.orders.ETH-PERPETUAL.raw").await;
    assert_eq!((&cancelled["order_id"], cancelled["order_state"].as_str()), (id, Some("cancelled")), "{cancelled}");
    assert_eq!(cancelled["cancel_reason"], "cancel_on_disconnect");
}

#[tokio::test]
async fn cancel_on_disconnect_fires_on_a_failed_heartbeat() {
    bounded(async {
        let sim = manual().min_heartbeat_interval(Duration::from_millis(200)).start().await.unwrap();
        let (mut watcher, mut c, id) = cod_setup(&sim).await;
        assert_eq!(c.result("public/set_heartbeat", json!({"interval": 0.2})).await, "ok");
        // The client stops answering: a test_request, then the venue closes.
        let request = c.recv().await;
        assert_eq!(request["params"]["type"], "test_request", "{request}");
        let end = c.next().await.unwrap_err();
        assert!(end.contains("test_request not answered"), "{end}");
        assert_cancelled_on_disconnect(&mut watcher, &id).await;
        assert_eq!(
            watcher.result("private/get_order_state", json!({"order_id": id})).await["order_state"],
            "cancelled"
        );
    })
    .await;
}

#[tokio::test]
async fn cancel_on_disconnect_fires_on_a_half_open_connection() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let (mut watcher, mut c, id) = cod_setup(&sim).await;
        let conn = sim.connections_info()[1].id;
        assert!(sim.fault(conn, Fault::HalfOpen));
        // Nothing reaches the client (no FIN, no RST), but the venue ended its session.
        c.send("public/test", json!({})).await;
        assert_cancelled_on_disconnect(&mut watcher, &id).await;
        assert_eq!(c.next().await.unwrap_err(), "nothing within the wait");
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_cancel_on_disconnect_fires() {
    bounded(async {
        let idle = Duration::from_millis(400);
        let sim = manual().idle_timeout(idle).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        c.result("private/enable_cancel_on_disconnect", json!({"scope": "connection"})).await;
        let id = c.result("private/buy", resting_buy("idle")).await["order"]["order_id"].clone();
        let silent_since = tokio::time::Instant::now();
        // Two clients that keep talking, one with requests, one with pings only, for three
        // times the timeout: neither is idle.
        let (mut talker, mut pinger) = (Client::connect(&sim).await, Client::connect(&sim).await);
        for _ in 0..12 {
            talker.result("public/test", json!({})).await;
            pinger.ws.send(Message::Ping(Vec::new().into())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The silent one was closed, not before the timeout, and its order cancelled.
        let end = c.next().await.unwrap_err();
        assert!(end.contains("idle timeout"), "{end}");
        assert!(silent_since.elapsed() >= idle);
        assert!(
            sim.wait_for_connections(2, WAIT).await,
            "the talker and the pinger stay: {:?}",
            sim.connections_info()
        );
        talker.auth().await;
        let order = talker.result("private/get_order_state", json!({"order_id": id})).await;
        assert_eq!(
            (order["order_state"].as_str(), order["cancel_reason"].as_str()),
            (Some("cancelled"), Some("cancel_on_disconnect"))
        );
        // The pinger still gets answers (its pings kept it open).
        pinger.result("public/test", json!({})).await;
    })
    .await;
}

#[tokio::test]
async fn fidelity_of_sessions_prices_sizes_and_timing() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        // Unauthenticated raw: 13778.
        let raw = json!({"channels": ["book.BTC-PERPETUAL.raw"]});
        assert_eq!(c.error_code("public/subscribe", raw.clone()).await, codes::RAW_SUBSCRIPTIONS_NEED_AUTH);
        // Over 32 KiB: -32600 request entity too large, and the connection stays.
        let big =
            json!({"jsonrpc": "2.0", "id": 99, "method": "public/test", "params": {"pad": "x".repeat(33 * 1024)}});
        c.ws.send(Message::text(big.to_string())).await.unwrap();
        let r = c.recv().await;
        assert_eq!(
            (r["error"]["code"].as_i64(), r["error"]["message"].as_str()),
            (Some(-32600), Some("request entity too large"))
        );
        // usDiff is usOut - usIn.
        let r = c.call("public/get_order_book", json!({"instrument_name": "BTC-PERPETUAL", "depth": 100})).await;
        assert_eq!(r["usDiff"].as_u64().unwrap(), r["usOut"].as_u64().unwrap() - r["usIn"].as_u64().unwrap());
        // A session-scoped token is echoed with its sid and survives the connection.
        let grant = c.auth_scope("session:desk").await;
        assert_eq!(grant["scope"], "session:desk mainaccount");
        let sid = grant["sid"].clone();
        assert!(sid.is_string());
        c.result("public/subscribe", raw).await;
        drop(c);
        assert!(sim.wait_for_connections(0, WAIT).await);
        let mut c = Client::connect(&sim).await;
        let with_token = json!({"instrument_name": "BTC-PERPETUAL", "access_token": grant["access_token"]});
        c.result("private/get_open_orders_by_instrument", with_token).await;
        let again = c
            .result("public/auth", json!({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}))
            .await;
        assert_eq!((again["scope"].clone(), again["sid"].clone()), (grant["scope"].clone(), sid));
        // A filled market order reports a number as its price.
        let r =
            c.result("private/buy", json!({"instrument_name": "BTC-PERPETUAL", "amount": 10, "type": "market"})).await;
        assert_eq!(r["order"]["order_state"], "filled");
        assert!(r["order"]["price"].as_f64().unwrap() > 0.0, "{}", r["order"]);
        // An absurd order: 10009.
        let absurd = json!({"instrument_name": "BTC-PERPETUAL", "amount": 1_000_000_000, "type": "market"});
        assert_eq!(c.error_code("private/buy", absurd).await, codes::NOT_ENOUGH_FUNDS);
        let summary = c.result("private/get_account_summary", json!({"currency": "BTC"})).await;
        assert!(summary["equity"].as_f64().unwrap() > 0.0 && summary["initial_margin"].as_f64().unwrap() > 0.0);
    })
    .await;
}

#[tokio::test]
async fn edit_grouped_book_and_user_changes() {
    bounded(async {
        let sim = manual().start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let channels = json!({"channels": ["user.changes.ETH-PERPETUAL.raw", "book.ETH-PERPETUAL.none.10.100ms"]});
        assert_eq!(c.result("private/subscribe", channels.clone()).await, channels["channels"]);
        let grouped = c.notification("book.ETH-PERPETUAL.none.10.100ms").await;
        assert_eq!(grouped["bids"].as_array().unwrap().len(), 10);
        assert!(grouped["bids"][0].as_array().unwrap().len() == 2 && grouped.get("prev_change_id").is_none());
        let order = c.result("private/buy", resting_buy("e")).await["order"].clone();
        let change = c.notification("user.changes.ETH-PERPETUAL.raw").await;
        assert_eq!(change["orders"][0]["order_id"], order["order_id"]);
        assert!(change["positions"].is_array() && change["trades"].is_array());
        let edited =
            c.result("private/edit", json!({"order_id": order["order_id"], "amount": 2, "price": 1001.0})).await;
        assert_eq!((edited["order"]["amount"].as_f64(), edited["order"]["price"].as_f64()), (Some(2.0), Some(1001.0)));
        assert_eq!(edited["order"]["replaced"], true);
        assert_eq!(
            c.error_code("private/edit", json!({"order_id": "ETH-1", "amount": 1, "price": 1.0})).await,
            codes::NOT_OPEN_ORDER
        );
    })
    .await;
}

#[tokio::test]
async fn wss_with_the_kit_certificate() {
    bounded(async {
        let sim = manual().tls(true).start().await.unwrap();
        assert!(sim.url().starts_with("wss://127.0.0.1:"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(sim.ca_der().unwrap().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(sim.addr()).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(sim.url(), Box::new(tls) as Box<dyn Io>).await.unwrap();
        let mut c = Client { ws, id: 0, backlog: VecDeque::new() };
        assert_eq!(c.result("public/test", json!({})).await["version"], "1.2.26");
        assert!(sim.ca_pem().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    })
    .await;
}

async fn http(addr: &str, request: &str) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

fn post(hook: &Value) -> String {
    let body = hook.to_string();
    format!("POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len())
}

#[tokio::test]
async fn every_hook_is_reachable_over_the_control_endpoint() {
    bounded(async {
        let sim = manual().control_port(0).start().await.unwrap();
        let url = sim.control_url().unwrap();
        let addr = url.trim_start_matches("http://").to_owned();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let (status, list) = http(&addr, "GET /connections HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert_eq!(status, 200);
        assert_eq!(list[0]["client_id"], TEST_CLIENT_ID);
        let conn = list[0]["id"].as_u64().unwrap();
        let order = c.result("private/buy", resting_buy("h")).await["order"]["order_id"].clone();
        for (hook, expected) in [
            (json!({"hook": "book_fault", "instrument_name": "ETH-PERPETUAL", "fault": "reorder"}), json!("armed")),
            (json!({"hook": "fail_method", "method": "public/get_time", "code": 10047, "times": 1}), json!("armed")),
            (json!({"hook": "delay_response", "request": {"method": "public/test"}, "delay_ms": 1}), json!("armed")),
            (json!({"hook": "platform_state", "locked": false}), json!({"locked": false})),
            (json!({"hook": "step_market", "steps": 2}), json!({"steps": 2})),
            (json!({"hook": "fill_order", "order_id": order}), json!("filled")),
            (json!({"hook": "expire_tokens", "client_id": TEST_CLIENT_ID}), json!({"expired": 1})),
        ] {
            assert_eq!(http(&addr, &post(&hook)).await, (200, expected), "{hook}");
        }
        assert_eq!(c.error_code("public/get_time", json!({})).await, 10047);
        assert_eq!(c.error_code("private/get_open_orders", json!({})).await, codes::UNAUTHORIZED);
        let (status, _) = http(&addr, &post(&json!({"hook": "revoke_tokens"}))).await;
        assert_eq!(status, 200);
        let cut =
            json!({"hook": "cut_before_response", "request": {"method": "public/get_time"}, "fault": {"kind": "fin"}});
        assert_eq!(http(&addr, &post(&cut)).await.0, 200);
        c.send("public/get_time", json!({})).await;
        assert!(!c.next().await.unwrap_err().contains("nothing"));
        // Faults by id, errors explained.
        let mut d = Client::connect(&sim).await;
        d.result("public/test", json!({})).await;
        let conn_d = sim.connections_info()[0].id;
        let fault = json!({"hook": "fault", "conn": conn_d, "fault": {"kind": "close", "code": 4002}});
        assert_eq!(http(&addr, &post(&fault)).await, (200, json!({"faulted": 1})));
        assert!(d.next().await.unwrap_err().contains("4002"));
        let (status, body) =
            http(&addr, &post(&json!({"hook": "fault", "conn": conn, "fault": {"kind": "reset"}}))).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["error"].as_str().unwrap().contains("no open connection"));
        let (status, body) = http(&addr, &post(&json!({"hook": "explode"}))).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(http(&addr, "GET /nope HTTP/1.1\r\n\r\n").await.0, 404);
        let (status, _) = http(&addr, "POST /hook HTTP/1.1\r\ncontent-length: 999999\r\n\r\n").await;
        assert_eq!(status, 413);
        // A head that never ends is cut at its ceiling (16 KiB), not buffered.
        let flood = format!("GET /connections HTTP/1.1\r\nx-flood: {}", "a".repeat(64 * 1024));
        assert_eq!(http(&addr, &flood).await.0, 413);
        // The same hooks from Rust.
        assert_eq!(sim.apply(Hook::StepMarket { steps: 1 }).unwrap(), json!({"steps": 1}));
    })
    .await;
}
