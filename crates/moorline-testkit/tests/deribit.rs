//! The Deribit simulator, driven by real WebSocket clients over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod raw_ws;

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use moorline_testkit::deribit::{DeribitSim, RateLimit, TEST_CLIENT_ID, TEST_CLIENT_SECRET, codes};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bound on any single wait for a message.
const WAIT: Duration = Duration::from_secs(3);

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("test timed out")
}

struct Client {
    ws: Ws,
    id: u64,
    /// Messages read while waiting for something else.
    backlog: VecDeque<Value>,
}

impl Client {
    async fn connect(sim: &DeribitSim) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(sim.url()).await.unwrap();
        Self { ws, id: 0, backlog: VecDeque::new() }
    }

    async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    /// The next text message, as JSON.
    async fn recv(&mut self) -> Value {
        loop {
            let message =
                tokio::time::timeout(WAIT, self.ws.next()).await.expect("no message").expect("closed").unwrap();
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The response to the next raw text sent (anything else is kept in the backlog).
    async fn raw_call(&mut self, text: &str) -> Value {
        self.send_text(text).await;
        loop {
            let v = self.recv().await;
            if v.get("usIn").is_some() {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        self.send_text(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()).await;
        loop {
            let v = self.recv().await;
            if v["id"] == json!(id) {
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    async fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(response.get("result").is_some(), "{method}: {response}");
        response["result"].clone()
    }

    async fn error_code(&mut self, method: &str, params: Value) -> i64 {
        let response = self.call(method, params).await;
        response["error"]["code"].as_i64().unwrap_or_else(|| panic!("{method}: no error in {response}"))
    }

    async fn auth(&mut self) -> Value {
        let params = json!({"grant_type": "client_credentials", "client_id": TEST_CLIENT_ID, "client_secret": TEST_CLIENT_SECRET});
        self.result("public/auth", params).await
    }

    /// The data of the next notification on `channel` (others are skipped).
    async fn notification(&mut self, channel: &str) -> Value {
        if let Some(pos) = self.backlog.iter().position(|v| v["params"]["channel"] == channel) {
            let v = self.backlog.remove(pos).unwrap();
            self.backlog.drain(..pos);
            return v["params"]["data"].clone();
        }
        self.backlog.clear();
        loop {
            let v = self.recv().await;
            if v["method"] == "subscription" && v["params"]["channel"] == channel {
                return v["params"]["data"].clone();
            }
        }
    }

    /// Every notification already sent: everything read before the answer to a fresh `public/test`.
    async fn drain(&mut self) -> Vec<Value> {
        self.call("public/test", json!({})).await;
        self.backlog.drain(..).collect()
    }
}

fn manual_sim(seed: u64) -> moorline_testkit::deribit::DeribitSimBuilder {
    DeribitSim::builder().seed(seed).manual_market()
}

#[tokio::test]
async fn public_methods_answer_as_documented() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        assert_eq!(sim.url(), format!("ws://{}/ws/api/v2", sim.addr()));
        let mut c = Client::connect(&sim).await;
        let response = c.call("public/test", json!({})).await;
        assert_eq!(response["jsonrpc"], "2.0");
        assert_eq!(response["result"], json!({"version": "1.2.26"}));
        assert_eq!(response["testnet"], true);
        for field in ["usIn", "usOut", "usDiff"] {
            assert!(response[field].is_u64(), "{field} in {response}");
        }
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let time = c.result("public/get_time", json!({})).await.as_i64().unwrap();
        assert!((time - now_ms).abs() < 5_000, "{time} vs {now_ms}");
        assert_eq!(
            c.result("public/hello", json!({"client_name": "t", "client_version": "1"})).await["version"],
            "1.2.26"
        );

        let btc = c.result("public/get_instruments", json!({"currency": "BTC", "kind": "future"})).await;
        assert_eq!(btc.as_array().unwrap().len(), 2);
        assert_eq!(btc[1]["instrument_name"], "BTC-25DEC26");
        assert_eq!(btc[1]["settlement_period"], "month");
        assert_eq!(
            (btc[0]["instrument_name"].as_str(), btc[0]["tick_size"].as_f64()),
            (Some("BTC-PERPETUAL"), Some(0.5))
        );
        assert_eq!(btc[0]["contract_size"], json!(10.0));
        let all = c.result("public/get_instruments", json!({"currency": "any"})).await;
        assert_eq!(all.as_array().unwrap().len(), 3);
        assert_eq!(all[1]["tick_size"], json!(0.05));
        assert_eq!(c.error_code("public/get_instruments", json!({"currency": "XYZ"})).await, codes::INVALID_PARAMS);

        let ticker = c.result("public/ticker", json!({"instrument_name": "ETH-PERPETUAL"})).await;
        assert_eq!(ticker["state"], "open");
        assert!(ticker["best_bid_price"].as_f64().unwrap() < ticker["best_ask_price"].as_f64().unwrap());
        let book = c.result("public/get_order_book", json!({"instrument_name": "BTC-PERPETUAL", "depth": 3})).await;
        assert_eq!(book["bids"].as_array().unwrap().len(), 3);
        assert_eq!(book["bids"][0][0], ticker_best(&sim, "BTC-PERPETUAL", true));
        assert_eq!(c.error_code("public/nope", json!({})).await, codes::METHOD_NOT_FOUND);
        assert_eq!(c.error_code("private/nope", json!({})).await, codes::METHOD_NOT_FOUND);
        assert_eq!(c.result("public/disable_heartbeat", json!({})).await, "ok");
        assert_eq!(sim.connections(), 1);
    })
    .await;
}

fn ticker_best(sim: &DeribitSim, instrument: &str, bid: bool) -> Value {
    let book = sim.book_snapshot(instrument).unwrap();
    json!(if bid { book.best_bid() } else { book.best_ask() }.unwrap().price)
}

#[tokio::test]
async fn other_paths_are_rejected_with_404() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        for path in ["/", "/ws/api/v1", "/ws/api/v2/extra"] {
            let err = tokio_tungstenite::connect_async(format!("ws://{}{path}", sim.addr())).await.unwrap_err();
            match err {
                tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 404, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert_eq!(sim.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn auth_unlocks_private_methods() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let open_orders = json!({"instrument_name": "BTC-PERPETUAL"});
        assert_eq!(
            c.error_code("private/get_open_orders_by_instrument", open_orders.clone()).await,
            codes::UNAUTHORIZED
        );
        let response =
            c.call("private/buy", json!({"instrument_name": "BTC-PERPETUAL", "amount": 10, "type": "market"})).await;
        assert_eq!(response["error"]["code"], codes::UNAUTHORIZED);
        assert_eq!(response["error"]["message"], "unauthorized");
        let wrong = json!({"grant_type": "client_credentials", "client_id": TEST_CLIENT_ID, "client_secret": "wrong"});
        assert_eq!(c.error_code("public/auth", wrong).await, codes::INVALID_CREDENTIALS);
        assert_eq!(c.error_code("public/auth", json!({"grant_type": "password"})).await, codes::INVALID_PARAMS);
        assert_eq!(
            c.error_code("public/auth", json!({"grant_type": "client_credentials"})).await,
            codes::INVALID_PARAMS
        );

        let grant = c.auth().await;
        assert_eq!(grant["token_type"], "bearer");
        assert_eq!(grant["expires_in"], 900);
        assert!(grant["access_token"].is_string() && grant["refresh_token"].is_string() && grant["scope"].is_string());
        assert_eq!(c.result("private/get_open_orders_by_instrument", open_orders.clone()).await, json!([]));

        // Connection scope (the default): the tokens work on this connection only.
        let mut other = Client::connect(&sim).await;
        let refresh = json!({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]});
        assert_eq!(other.error_code("public/auth", refresh.clone()).await, codes::INVALID_CREDENTIALS);
        let with_token = json!({"instrument_name": "BTC-PERPETUAL", "access_token": grant["access_token"]});
        assert_eq!(other.error_code("private/get_open_orders_by_instrument", with_token).await, codes::UNAUTHORIZED);
        // The refresh token grant works once and gives a usable token.
        let fresh = c.result("public/auth", refresh.clone()).await;
        assert_ne!(fresh["access_token"], grant["access_token"]);
        assert_eq!(c.result("private/get_open_orders_by_instrument", open_orders.clone()).await, json!([]));
        assert_eq!(c.error_code("public/auth", refresh).await, codes::INVALID_CREDENTIALS);
        let bogus = json!({"instrument_name": "BTC-PERPETUAL", "access_token": "bogus"});
        assert_eq!(other.error_code("private/get_open_orders_by_instrument", bogus).await, codes::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn expired_token_is_unauthorized() {
    bounded(async {
        // A lifetime no loaded machine outlasts between the grant and the first call (the
        // expiry rule itself is unit-tested in the simulator, with time passed in).
        let lifetime = Duration::from_secs(3);
        let sim = manual_sim(1).token_lifetime(lifetime).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let before = tokio::time::Instant::now();
        let grant = c.auth().await;
        assert_eq!(grant["expires_in"], 3);
        let params = json!({"instrument_name": "ETH-PERPETUAL"});
        c.result("private/get_open_orders_by_instrument", params.clone()).await;
        // Wait for the expiry itself: refused, and no earlier than the lifetime after the grant.
        loop {
            let response = c.call("private/get_open_orders_by_instrument", params.clone()).await;
            if response.get("error").is_some() {
                assert_eq!(response["error"]["code"].as_i64(), Some(codes::UNAUTHORIZED), "{response}");
                break;
            }
            assert!(before.elapsed() < lifetime + WAIT, "the token never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(before.elapsed() >= lifetime, "expired after {:?}", before.elapsed());
        c.result("public/auth", json!({"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})).await;
        c.result("private/get_open_orders_by_instrument", params).await;
    })
    .await;
}

#[tokio::test]
async fn answered_heartbeats_keep_the_connection_alive() {
    bounded(async {
        let sim = manual_sim(1).min_heartbeat_interval(Duration::from_millis(100)).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        assert_eq!(c.error_code("public/set_heartbeat", json!({"interval": 0.05})).await, codes::INVALID_PARAMS);
        assert_eq!(c.error_code("public/set_heartbeat", json!({})).await, codes::INVALID_PARAMS);
        // An interval a loaded machine answers within (an unanswered request closes the
        // connection at the next one; the rule itself is unit-tested in the simulator).
        let interval = Duration::from_secs(1);
        assert_eq!(c.result("public/set_heartbeat", json!({"interval": 1})).await, "ok");
        // Every interval brings a heartbeat: a plain one after activity, a test_request after
        // silence; answered test_requests keep the connection open.
        let mut kinds = Vec::new();
        for _ in 0..4 {
            let v = c.recv().await;
            assert_eq!((v["jsonrpc"].as_str(), v["method"].as_str()), (Some("2.0"), Some("heartbeat")), "{v}");
            let kind = v["params"]["type"].as_str().unwrap().to_owned();
            if kind == "test_request" {
                c.result("public/test", json!({})).await;
            }
            kinds.push(kind);
        }
        assert_eq!(kinds[0], "test_request", "silent since set_heartbeat: {kinds:?}");
        assert_eq!(kinds[1], "heartbeat", "active (public/test) since: {kinds:?}");
        c.result("public/get_time", json!({})).await;
        assert_eq!(sim.connections(), 1);
        // Disabled heartbeats send nothing more, for longer than an interval.
        c.result("public/disable_heartbeat", json!({})).await;
        c.backlog.clear();
        tokio::time::sleep(interval + Duration::from_millis(500)).await;
        assert!(c.drain().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn unanswered_heartbeat_closes_the_connection() {
    bounded(async {
        let sim = manual_sim(1).min_heartbeat_interval(Duration::from_millis(100)).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let set_at = tokio::time::Instant::now();
        c.result("public/set_heartbeat", json!({"interval": 0.2})).await;
        assert_eq!(c.recv().await["params"]["type"], "test_request");
        // Not answered: the next interval closes the connection.
        let close = tokio::time::timeout(WAIT, c.ws.next()).await.unwrap().unwrap().unwrap();
        let Message::Close(Some(frame)) = close else { panic!("expected a close frame, got {close:?}") };
        assert_eq!(u16::from(frame.code), 1000);
        assert!(frame.reason.contains("heartbeat"), "{}", frame.reason);
        // Not before the second interval (how soon after is bounded by the waits above).
        let elapsed = set_at.elapsed();
        assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
        // Then the stream ends (tungstenite answered the close; the server drops TCP).
        let end = tokio::time::timeout(WAIT, c.ws.next()).await.unwrap();
        assert!(end.is_none() || end.is_some_and(|r| r.is_err()));
        assert!(sim.wait_for_connections(0, WAIT).await);
    })
    .await;
}

#[tokio::test]
async fn book_snapshot_then_chained_changes() {
    bounded(async {
        let sim = DeribitSim::builder().seed(9).market_interval(Duration::from_millis(10)).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let channels = ["book.BTC-PERPETUAL.100ms", "book.ETH-PERPETUAL.raw"];
        c.auth().await; // `raw` channels need authentication
        assert_eq!(c.result("public/subscribe", json!({"channels": channels})).await, json!(channels));
        for channel in channels {
            let snapshot = c.notification(channel).await;
            assert_eq!(snapshot["type"], "snapshot");
            let (bids, asks) = (snapshot["bids"].as_array().unwrap(), snapshot["asks"].as_array().unwrap());
            assert!(bids.len() >= 5 && asks.len() >= 5);
            assert!(bids.iter().chain(asks).all(|l| l[0] == "new"));
            assert!(bids[0][1].as_f64().unwrap() < asks[0][1].as_f64().unwrap());
            assert!(bids[0][1].as_f64().unwrap() > bids[1][1].as_f64().unwrap(), "bids best first");
            assert!(asks[0][1].as_f64().unwrap() < asks[1][1].as_f64().unwrap(), "asks best first");
        }
        // Re-subscribing keeps the subscription (and sends no second snapshot).
        c.result("public/subscribe", json!({"channels": ["book.BTC-PERPETUAL.100ms"]})).await;
        let mut previous = None;
        for _ in 0..20 {
            let change = c.notification("book.BTC-PERPETUAL.100ms").await;
            if let Some(prev) = previous {
                assert_eq!(change["type"], "change", "{change}");
                assert_eq!(change["prev_change_id"], prev, "{change}");
            }
            assert_eq!(change["instrument_name"], "BTC-PERPETUAL");
            for level in change["bids"].as_array().unwrap().iter().chain(change["asks"].as_array().unwrap()) {
                let action = level[0].as_str().unwrap();
                assert!(["new", "change", "delete"].contains(&action), "{level}");
                assert_eq!(action == "delete", level[2] == json!(0.0), "{level}");
            }
            previous = Some(change["change_id"].clone());
        }
    })
    .await;
}

#[tokio::test]
async fn ticker_and_trades_notifications_have_deribit_shapes() {
    bounded(async {
        let sim = DeribitSim::builder().seed(4).market_interval(Duration::from_millis(10)).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let channels =
            ["ticker.ETH-PERPETUAL.100ms", "trades.ETH-PERPETUAL.raw", "bogus.channel", "book.DOGE-PERPETUAL.raw"];
        c.auth().await; // `raw` channels need authentication
        let subscribed = c.result("public/subscribe", json!({"channels": channels})).await;
        assert_eq!(subscribed, json!(["ticker.ETH-PERPETUAL.100ms", "trades.ETH-PERPETUAL.raw"]));
        let ticker = c.notification("ticker.ETH-PERPETUAL.100ms").await;
        for field in [
            "timestamp",
            "best_bid_price",
            "best_ask_price",
            "best_bid_amount",
            "best_ask_amount",
            "last_price",
            "mark_price",
            "index_price",
            "open_interest",
        ] {
            assert!(ticker[field].is_number(), "{field} in {ticker}");
        }
        assert_eq!(
            (ticker["instrument_name"].as_str(), ticker["state"].as_str()),
            (Some("ETH-PERPETUAL"), Some("open"))
        );
        assert!(ticker["stats"]["volume"].is_number() && ticker["stats"]["high"].is_number());
        let trades = c.notification("trades.ETH-PERPETUAL.raw").await;
        let trade = &trades[0];
        for field in ["trade_seq", "timestamp", "price", "amount", "tick_direction", "index_price", "mark_price"] {
            assert!(trade[field].is_number(), "{field} in {trade}");
        }
        assert!(trade["trade_id"].as_str().unwrap().starts_with("ETH-"));
        assert!(["buy", "sell"].contains(&trade["direction"].as_str().unwrap()));
        assert_eq!(trade["instrument_name"], "ETH-PERPETUAL");
        let later = c.notification("trades.ETH-PERPETUAL.raw").await;
        assert!(later[0]["trade_seq"].as_u64() > trades.as_array().unwrap().last().unwrap()["trade_seq"].as_u64());
        // Unsubscribing stops the flow.
        let removed = c.result("public/unsubscribe", json!({"channels": ["ticker.ETH-PERPETUAL.100ms", "x"]})).await;
        assert_eq!(removed, json!(["ticker.ETH-PERPETUAL.100ms"]));
        assert_eq!(c.result("public/unsubscribe_all", json!({})).await, "ok");
        c.drain().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(c.drain().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn private_channels_need_private_subscribe() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let channels = json!({"channels": ["user.orders.BTC-PERPETUAL.raw", "ticker.BTC-PERPETUAL.100ms"]});
        assert_eq!(c.result("public/subscribe", channels.clone()).await, json!(["ticker.BTC-PERPETUAL.100ms"]));
        assert_eq!(c.error_code("private/subscribe", channels.clone()).await, codes::UNAUTHORIZED);
        c.auth().await;
        assert_eq!(c.result("private/subscribe", channels.clone()).await, channels["channels"]);
        assert_eq!(c.error_code("public/subscribe", json!({"channels": "book"})).await, codes::INVALID_PARAMS);
    })
    .await;
}

async fn place(c: &mut Client, method: &str, params: Value) -> Value {
    c.result(method, params).await
}

#[tokio::test]
async fn buy_crossing_a_resting_sell_fills_and_notifies() {
    bounded(async {
        let sim = manual_sim(11).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let channels = ["user.orders.BTC-PERPETUAL.raw", "trades.BTC-PERPETUAL.raw", "user.trades.BTC-PERPETUAL.100ms"];
        assert_eq!(c.result("private/subscribe", json!({"channels": channels})).await, json!(channels));
        let book = sim.book_snapshot("BTC-PERPETUAL").unwrap();
        let price = book.best_ask().unwrap().price - 0.5;
        assert!(price > book.best_bid().unwrap().price, "spread too narrow for the test: {book:?}");

        let sell = place(
            &mut c,
            "private/sell",
            json!({"instrument_name": "BTC-PERPETUAL", "amount": 40, "price": price, "label": "ask"}),
        )
        .await;
        let maker = sell["order"].clone();
        assert_eq!(maker["order_state"], "open");
        assert_eq!((maker["direction"].as_str(), maker["label"].as_str()), (Some("sell"), Some("ask")));
        assert_eq!(sell["trades"], json!([]));
        assert_eq!(c.notification("user.orders.BTC-PERPETUAL.raw").await["order_id"], maker["order_id"]);
        assert_eq!(sim.book_snapshot("BTC-PERPETUAL").unwrap().best_ask().unwrap().price, price);

        let buy = place(
            &mut c,
            "private/buy",
            json!({"instrument_name": "BTC-PERPETUAL", "amount": 40, "price": price, "type": "limit"}),
        )
        .await;
        let taker = &buy["order"];
        assert_eq!(taker["order_state"], "filled");
        assert_eq!(taker["filled_amount"], json!(40.0));
        assert_eq!(taker["average_price"], json!(price));
        let trades = buy["trades"].as_array().unwrap();
        assert_eq!(trades.len(), 1);
        assert_eq!((trades[0]["price"].clone(), trades[0]["amount"].clone()), (json!(price), json!(40.0)));
        assert_eq!(
            (trades[0]["order_id"].clone(), trades[0]["liquidity"].as_str()),
            (taker["order_id"].clone(), Some("T"))
        );
        assert_eq!(trades[0]["self_trade"], true);

        // user.orders: the taker order, then the maker order, now filled.
        let notes = c.drain().await;
        let orders: Vec<&Value> = notes
            .iter()
            .filter(|v| v["params"]["channel"] == "user.orders.BTC-PERPETUAL.raw")
            .map(|v| &v["params"]["data"])
            .collect();
        assert!(
            orders.iter().any(|o| o["order_id"] == taker["order_id"] && o["order_state"] == "filled"),
            "{orders:?}"
        );
        assert!(
            orders.iter().any(|o| o["order_id"] == maker["order_id"] && o["order_state"] == "filled"),
            "{orders:?}"
        );
        let public: Vec<&Value> = notes
            .iter()
            .filter(|v| v["params"]["channel"] == "trades.BTC-PERPETUAL.raw")
            .map(|v| &v["params"]["data"])
            .collect();
        assert_eq!(public.len(), 1);
        assert_eq!((public[0][0]["price"].clone(), public[0][0]["direction"].as_str()), (json!(price), Some("buy")));
        let user_trades: Vec<&Value> = notes
            .iter()
            .filter(|v| v["params"]["channel"] == "user.trades.BTC-PERPETUAL.100ms")
            .map(|v| &v["params"]["data"])
            .collect();
        assert_eq!(user_trades.len(), 2, "taker and maker side: {user_trades:?}");
        assert_ne!(sim.book_snapshot("BTC-PERPETUAL").unwrap().best_ask().unwrap().price, price);
        assert_eq!(
            c.result("private/get_open_orders_by_instrument", json!({"instrument_name": "BTC-PERPETUAL"})).await,
            json!([])
        );
    })
    .await;
}

#[tokio::test]
async fn cancel_and_open_orders() {
    bounded(async {
        let sim = manual_sim(2).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        let instrument = json!({"instrument_name": "ETH-PERPETUAL"});
        let first =
            place(&mut c, "private/buy", json!({"instrument_name": "ETH-PERPETUAL", "amount": 5, "price": 1000.05}))
                .await;
        let second = place(
            &mut c,
            "private/sell",
            json!({"instrument_name": "ETH-PERPETUAL", "amount": 7, "price": 9000.0, "label": "far"}),
        )
        .await;
        let open = c.result("private/get_open_orders_by_instrument", instrument.clone()).await;
        let ids: Vec<&Value> = open.as_array().unwrap().iter().map(|o| &o["order_id"]).collect();
        assert_eq!(ids, vec![&first["order"]["order_id"], &second["order"]["order_id"]]);
        assert_eq!(open[0]["price"], json!(1000.05));
        assert_eq!(
            c.result("private/get_open_orders_by_instrument", json!({"instrument_name": "BTC-PERPETUAL"})).await,
            json!([])
        );

        let id = first["order"]["order_id"].clone();
        let cancelled = c.result("private/cancel", json!({"order_id": id})).await;
        assert_eq!((cancelled["order_id"].clone(), cancelled["order_state"].as_str()), (id.clone(), Some("cancelled")));
        let state = c.result("private/get_order_state", json!({"order_id": id})).await;
        assert_eq!(state["order_state"], "cancelled");
        assert_eq!(c.error_code("private/cancel", json!({"order_id": id})).await, codes::NOT_OPEN_ORDER);
        let unknown = c.call("private/cancel", json!({"order_id": "ETH-999"})).await;
        assert_eq!(
            (unknown["error"]["code"].as_i64(), unknown["error"]["message"].as_str()),
            (Some(codes::NOT_OPEN_ORDER), Some("not_open_order"))
        );
        assert_eq!(c.error_code("private/get_order_state", json!({"order_id": "1"})).await, codes::ORDER_NOT_FOUND);
        let open = c.result("private/get_open_orders_by_instrument", instrument).await;
        assert_eq!(open.as_array().unwrap().len(), 1);
        assert_eq!(open[0]["label"], "far");
        assert_eq!(c.result("private/cancel_all_by_instrument", json!({"instrument_name": "ETH-PERPETUAL"})).await, 1);
    })
    .await;
}

#[tokio::test]
async fn invalid_orders_are_rejected() {
    bounded(async {
        let sim = manual_sim(2).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.auth().await;
        for params in [
            json!({"instrument_name": "BTC-PERPETUAL", "amount": 5, "price": 50000.0}),
            json!({"instrument_name": "BTC-PERPETUAL", "amount": 10, "price": 50000.3}),
            json!({"instrument_name": "ETH-PERPETUAL", "amount": 1.5, "price": 3000.0}),
            json!({"instrument_name": "ETH-PERPETUAL", "amount": 1, "price": 3000.01}),
            json!({"instrument_name": "ETH-PERPETUAL", "amount": "1", "price": 3000.0}),
            json!({"instrument_name": "ETH-PERPETUAL", "amount": 1}),
            json!({"instrument_name": "XRP-PERPETUAL", "amount": 1, "type": "market"}),
            json!({"amount": 1, "type": "market"}),
        ] {
            let response = c.call("private/buy", params.clone()).await;
            assert_eq!(response["error"]["code"], codes::INVALID_PARAMS, "{params}: {response}");
            assert!(response["error"]["data"]["param"].is_string(), "{response}");
        }
    })
    .await;
}

#[tokio::test]
async fn rate_limit_trips_too_many_requests() {
    bounded(async {
        let limit = RateLimit {
            max_credits: 2_000,
            refill_per_second: 0,
            cost: 500,
            matching_engine_cost: 1_000,
            ..RateLimit::default()
        };
        let sim = manual_sim(1).rate_limit(limit).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        for _ in 0..4 {
            c.result("public/test", json!({})).await;
        }
        let response = c.call("public/test", json!({})).await;
        assert_eq!(response["error"], json!({"code": 10028, "message": "too_many_requests"}));
        // As on Deribit, 10028 ends the session: a close frame follows the error.
        let end = tokio::time::timeout(WAIT, c.ws.next()).await.unwrap();
        match end {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1008, "too_many_requests"))
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(sim.wait_for_connections(1, WAIT).await || sim.wait_for_connections(0, WAIT).await);
        // Unauthenticated, the limit is per connection.
        let mut other = Client::connect(&sim).await;
        other.result("public/get_time", json!({})).await;
    })
    .await;
}

#[tokio::test]
async fn garbage_gets_json_rpc_errors_and_the_connection_stays_usable() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        let cases: [(&str, Value, i64); 9] = [
            ("hello there", Value::Null, codes::PARSE_ERROR),
            ("{\"id\": 1, \"method\": ", Value::Null, codes::PARSE_ERROR),
            ("{\"id\": 1e999, \"method\": \"public/test\"}", Value::Null, codes::PARSE_ERROR),
            ("[1, 2]", Value::Null, codes::INVALID_REQUEST),
            ("{\"id\": {\"a\": 1}, \"method\": \"public/test\"}", Value::Null, codes::INVALID_REQUEST),
            ("{\"jsonrpc\": \"2.0\", \"id\": 5}", json!(5), codes::INVALID_REQUEST),
            ("{\"id\": 6, \"method\": [\"x\"]}", json!(6), codes::INVALID_REQUEST),
            ("{\"id\": \"s\", \"method\": \"public/test\", \"params\": [1]}", json!("s"), codes::INVALID_PARAMS),
            (
                "{\"id\": 7, \"method\": \"public/set_heartbeat\", \"params\": {\"interval\": \"ten\"}}",
                json!(7),
                codes::INVALID_PARAMS,
            ),
        ];
        for (text, id, code) in cases {
            let response = c.raw_call(text).await;
            assert_eq!(
                (response["id"].clone(), response["error"]["code"].as_i64()),
                (id, Some(code)),
                "{text}: {response}"
            );
            assert_eq!(response["jsonrpc"], "2.0");
        }
        c.ws.send(Message::binary(vec![0u8, 159, 146, 150])).await.unwrap();
        let response = c.recv().await;
        assert_eq!(
            (response["id"].clone(), response["error"]["code"].as_i64()),
            (Value::Null, Some(codes::INVALID_REQUEST))
        );
        // Huge ids are echoed as numbers; requests without id are answered without one.
        let response = c.raw_call("{\"id\": 123456789012345678901234567890, \"method\": \"public/test\"}").await;
        assert!(response["id"].is_number() && response["result"].is_object(), "{response}");
        let response = c.raw_call("{\"jsonrpc\": \"2.0\", \"method\": \"public/test\"}").await;
        assert!(response.get("id").is_none() && response["result"].is_object(), "{response}");
        assert_eq!(c.result("public/test", json!({})).await["version"], "1.2.26");
        assert_eq!(sim.connections(), 1);
    })
    .await;
}

/// Every notification the first `steps` market steps send to a client
/// subscribed to all public channels, timestamps removed.
async fn market_sequence(seed: u64, steps: usize) -> Vec<Value> {
    let sim = manual_sim(seed).start().await.unwrap();
    let mut c = Client::connect(&sim).await;
    let channels = [
        "book.BTC-PERPETUAL.raw",
        "book.ETH-PERPETUAL.100ms",
        "trades.BTC-PERPETUAL.100ms",
        "trades.ETH-PERPETUAL.raw",
        "ticker.BTC-PERPETUAL.100ms",
    ];
    c.auth().await; // `raw` channels need authentication
    c.result("public/subscribe", json!({"channels": channels})).await;
    sim.step_market(steps);
    let mut notes = c.drain().await;
    for note in &mut notes {
        strip_timestamps(note);
    }
    notes
}

fn strip_timestamps(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("timestamp");
            map.values_mut().for_each(strip_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_timestamps),
        _ => {}
    }
}

#[tokio::test]
async fn same_seed_same_market_sequence() {
    bounded(async {
        let a = market_sequence(42, 50).await;
        let kinds = |notes: &[Value], channel: &str| notes.iter().filter(|n| n["params"]["channel"] == channel).count();
        assert!(kinds(&a, "book.BTC-PERPETUAL.raw") > 10 && kinds(&a, "trades.ETH-PERPETUAL.raw") > 5, "{}", a.len());
        assert_eq!(kinds(&a, "ticker.BTC-PERPETUAL.100ms"), 50);
        assert_eq!(a, market_sequence(42, 50).await);
        assert_ne!(a, market_sequence(43, 50).await);
    })
    .await;
}

#[tokio::test]
async fn dropping_the_simulator_closes_connections() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        let mut c = Client::connect(&sim).await;
        c.result("public/test", json!({})).await;
        assert!(sim.wait_for_connections(1, WAIT).await);
        drop(sim);
        let end = tokio::time::timeout(WAIT, c.ws.next()).await.expect("connection not closed");
        assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    })
    .await;
}

#[tokio::test]
async fn shutdown_sends_going_away_to_every_client() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        let addr = sim.addr();
        let mut a = Client::connect(&sim).await;
        let mut b = Client::connect(&sim).await;
        a.result("public/test", json!({})).await;
        b.result("public/test", json!({})).await;
        assert!(sim.wait_for_connections(2, WAIT).await);
        let shutdown = tokio::spawn(sim.shutdown());
        for c in [&mut a, &mut b] {
            let end = tokio::time::timeout(WAIT, c.ws.next()).await.expect("no close frame");
            match end {
                Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001, "{frame:?}"),
                other => panic!("expected close 1001, got {other:?}"),
            }
        }
        shutdown.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
    })
    .await;
}

#[tokio::test]
async fn client_violations_are_closed_with_their_code() {
    bounded(async {
        let sim = manual_sim(1).start().await.unwrap();
        let cases: [(&str, Vec<u8>, u16); 4] = [
            ("reserved bit without an extension", raw_ws::client_frame(0xC1, b"{}"), 1002),
            ("unknown opcode", raw_ws::client_frame(0x83, b"{}"), 1002),
            ("invalid UTF-8 in a text message", raw_ws::client_frame(0x81, &[b'{', 0xFF, b'}']), 1007),
            ("a frame over 1 MiB (from its header)", raw_ws::client_header(0x81, (1 << 20) + 1), 1009),
        ];
        for (what, bytes, code) in cases {
            let mut tcp = raw_ws::upgrade(sim.addr(), moorline_testkit::deribit::WS_PATH).await;
            tcp.write_all(&bytes).await.unwrap();
            assert_eq!(raw_ws::close_code(&mut tcp).await, Ok(Some(code)), "{what}");
            raw_ws::assert_ends(&mut tcp).await;
        }
    })
    .await;
}

/// A notification as the publication log describes it: channel, change_id, trade_seqs, timestamp.
type Seen = (String, Option<u64>, Vec<u64>, Option<u64>);

/// The publication log: every notification two subscribers received is in it, in the order
/// they received them, once per channel with the number of recipients; snapshots are marked;
/// a small log keeps its last records and counts the evicted ones.
#[tokio::test]
async fn publication_log_records_what_was_sent() {
    bounded(async {
        let sim = manual_sim(11).publication_log(10_000).start().await.unwrap();
        let channels = ["book.BTC-PERPETUAL.100ms", "trades.BTC-PERPETUAL.100ms", "ticker.BTC-PERPETUAL.100ms"];
        let mut a = Client::connect(&sim).await;
        let mut b = Client::connect(&sim).await;
        for c in [&mut a, &mut b] {
            c.result("public/subscribe", json!({ "channels": channels })).await;
        }
        sim.step_market(200);
        let log = sim.publications();
        assert_eq!(sim.publications_evicted(), 0);
        // Two snapshots (one per subscriber), then every notification went to both.
        let snapshots: Vec<_> = log.iter().filter(|p| p.snapshot).collect();
        assert_eq!(snapshots.len(), 2, "{snapshots:?}");
        assert!(snapshots.iter().all(|p| p.recipients == 1 && p.change_id.is_some()));
        assert!(log.iter().filter(|p| !p.snapshot).all(|p| p.recipients == 2));
        assert!(log.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        for c in [&mut a, &mut b] {
            let received: Vec<Seen> = c
                .drain()
                .await
                .into_iter()
                .filter(|v| v["method"] == "subscription")
                .map(|v| {
                    let data = &v["params"]["data"];
                    let seqs = data.as_array().map(|t| t.iter().filter_map(|t| t["trade_seq"].as_u64()).collect());
                    (
                        v["params"]["channel"].as_str().unwrap().to_owned(),
                        data["change_id"].as_u64(),
                        seqs.unwrap_or_default(),
                        data["timestamp"].as_u64(),
                    )
                })
                .collect();
            let first_snapshot = received.iter().position(|r| r.0.starts_with("book.")).unwrap();
            // What this connection got from its snapshot on is the log's non-snapshot records
            // from the same point, in the same order.
            let expected: Vec<_> = log
                .iter()
                .filter(|p| !p.snapshot)
                .map(|p| (p.channel.clone(), p.change_id, p.trade_seqs.clone(), p.timestamp))
                .collect();
            let got = &received[first_snapshot + 1..];
            assert!(got.len() > 300, "{}", got.len());
            assert_eq!(got, &expected[expected.len() - got.len()..]);
            assert!(got.iter().any(|r| r.0.starts_with("trades.") && !r.2.is_empty()));
        }
        let small = manual_sim(11).publication_log(5).start().await.unwrap();
        let mut c = Client::connect(&small).await;
        c.result("public/subscribe", json!({ "channels": channels })).await;
        small.step_market(20);
        let log = small.publications();
        assert_eq!(log.len(), 5);
        assert_eq!(small.publications_evicted(), log[0].seq);
        assert!(log[0].seq > 20, "{log:?}");
        assert!(DeribitSim::builder().manual_market().start().await.unwrap().publications().is_empty());
    })
    .await;
}
