//! Unit tests of the sans-IO venue as a whole: requests in, deliveries out, fixed clocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::auth::{TEST_CLIENT_ID, TEST_CLIENT_SECRET};
use super::error::{
    INVALID_PARAMS, INVALID_REQUEST, NOT_OPEN_ORDER, RAW_SUBSCRIPTIONS_NEED_AUTH, TOO_MANY_REQUESTS, UNAUTHORIZED,
};
use super::ratelimit::RateLimit;
use super::time::Now;
use super::venue::{Config, ConnId, Delivery, Outgoing, Venue};

fn config(seed: u64) -> Config {
    Config {
        seed,
        token_lifetime: Duration::from_secs(10),
        refresh_token_lifetime: Duration::from_secs(100),
        min_heartbeat_interval: Duration::from_secs(1),
        idle_timeout: Some(Duration::from_secs(30)),
        rate_limit: RateLimit::unlimited(),
        credentials: vec![(TEST_CLIENT_ID.to_owned(), TEST_CLIENT_SECRET.to_owned()), ("b".to_owned(), "s".to_owned())],
        end_session_on_rate_limit: true,
        publication_log: None,
    }
}

struct Harness {
    venue: Venue,
    now: Now,
    next_id: u64,
    next_conn: ConnId,
}

impl Harness {
    fn new(config: Config) -> Self {
        let t0 = Instant::now();
        Self {
            venue: Venue::new(config),
            now: Now { instant: t0, unix_us: 1_700_000_000_000_000 },
            next_id: 1,
            next_conn: 1,
        }
    }

    fn connect(&mut self) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.venue.connect(conn, self.now);
        conn
    }

    /// The venue's answer to `text` (the clock says 7 µs passed while handling it).
    fn send(&mut self, conn: ConnId, text: &str) -> Vec<Delivery> {
        let done = self.now.unix_us + 7;
        self.venue.on_text(conn, text, self.now, &mut || done)
    }

    fn advance(&mut self, by: Duration) {
        self.now.instant += by;
        self.now.unix_us += u64::try_from(by.as_micros()).unwrap();
    }

    /// Sends a request; returns the response and every other delivery (as (conn, JSON)).
    fn call(&mut self, conn: ConnId, method: &str, params: Value) -> (Value, Vec<(ConnId, Value)>) {
        self.next_id += 1;
        let text = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}).to_string();
        let mut out = texts(self.send(conn, &text)).into_iter();
        let (to, response) = out.next().unwrap();
        assert_eq!(to, conn);
        assert_eq!(response["id"], json!(self.next_id));
        (response, out.collect())
    }

    fn auth(&mut self, conn: ConnId) -> String {
        let params = json!({"grant_type": "client_credentials", "client_id": TEST_CLIENT_ID, "client_secret": TEST_CLIENT_SECRET});
        let (r, _) = self.call(conn, "public/auth", params);
        r["result"]["access_token"].as_str().unwrap().to_owned()
    }

    fn step(&mut self) -> Vec<(ConnId, Value)> {
        texts(self.venue.step_market(self.now))
    }
}

fn texts(deliveries: Vec<Delivery>) -> Vec<(ConnId, Value)> {
    deliveries
        .into_iter()
        .map(|d| match d.out {
            Outgoing::Text(t) => (d.conn, serde_json::from_str(&t).unwrap()),
            Outgoing::Close { code, reason } => (d.conn, json!({"close": code, "reason": reason})),
        })
        .collect()
}

fn error_code(response: &Value) -> i64 {
    response["error"]["code"].as_i64().unwrap_or(0)
}

const ALL_PUBLIC: [&str; 6] = [
    "book.BTC-PERPETUAL.100ms",
    "book.ETH-PERPETUAL.raw",
    "trades.BTC-PERPETUAL.raw",
    "trades.ETH-PERPETUAL.100ms",
    "ticker.BTC-PERPETUAL.100ms",
    "ticker.ETH-PERPETUAL.raw",
];

fn market_log(seed: u64, steps: usize) -> Vec<String> {
    let mut h = Harness::new(config(seed));
    let conn = h.connect();
    // `raw` channels need an authenticated connection.
    let (r, _) = h.call(conn, "public/subscribe", json!({ "channels": ALL_PUBLIC }));
    assert_eq!(error_code(&r), RAW_SUBSCRIPTIONS_NEED_AUTH);
    h.auth(conn);
    let (r, mut log) = h.call(conn, "public/subscribe", json!({ "channels": ALL_PUBLIC }));
    assert_eq!(r["result"].as_array().map(Vec::len), Some(6));
    for _ in 0..steps {
        log.extend(h.step());
    }
    log.iter().map(|(_, v)| v.to_string()).collect()
}

#[test]
fn same_seed_same_market_events() {
    let a = market_log(42, 200);
    assert!(a.len() > 400, "{}", a.len());
    assert_eq!(a, market_log(42, 200));
    assert_ne!(a, market_log(7, 200));
}

#[test]
fn book_changes_chain_and_book_never_crosses_with_account_orders() {
    let mut h = Harness::new(config(3));
    let conn = h.connect();
    h.auth(conn);
    let (_, mut log) = h.call(conn, "public/subscribe", json!({"channels": ["book.ETH-PERPETUAL.raw"]}));
    for i in 0..2_000u64 {
        log.extend(h.step());
        if i % 7 == 0 {
            // Aggressive and passive account orders around the book.
            let book = h.venue.book_snapshot("ETH-PERPETUAL").unwrap();
            let mid = (book.best_bid().unwrap().price + book.best_ask().unwrap().price) / 2.0;
            let offset = ((i % 11) as f64 - 5.0) * 0.05;
            let method = if i % 2 == 0 { "private/buy" } else { "private/sell" };
            let price = ((mid + offset) * 20.0).round() / 20.0;
            let (r, notes) =
                h.call(conn, method, json!({"instrument_name": "ETH-PERPETUAL", "amount": 3, "price": price}));
            assert!(r.get("result").is_some(), "{r}");
            log.extend(notes);
        }
        let book = h.venue.book_snapshot("ETH-PERPETUAL").unwrap();
        let (bid, ask) = (book.best_bid().unwrap().price, book.best_ask().unwrap().price);
        assert!(bid < ask, "crossed at step {i}: {bid} >= {ask}");
    }
    let books: Vec<&Value> = log
        .iter()
        .filter(|(_, v)| v["params"]["channel"] == "book.ETH-PERPETUAL.raw")
        .map(|(_, v)| &v["params"]["data"])
        .collect();
    assert_eq!(books[0]["type"], "snapshot");
    assert!(books.len() > 1000);
    let mut strides = std::collections::BTreeSet::new();
    for pair in books.windows(2) {
        assert_eq!(pair[1]["type"], "change");
        assert_eq!(pair[1]["prev_change_id"], pair[0]["change_id"]);
        strides.insert(pair[1]["change_id"].as_u64().unwrap() - pair[0]["change_id"].as_u64().unwrap());
    }
    // `change_id` advances by random strides, never always by one.
    assert!(strides.len() > 3 && !strides.contains(&0), "{strides:?}");
}

#[test]
fn private_methods_need_a_valid_token() {
    let mut h = Harness::new(config(1));
    let conn = h.connect();
    let params = json!({"instrument_name": "BTC-PERPETUAL"});
    let (r, _) = h.call(conn, "private/get_open_orders_by_instrument", params.clone());
    assert_eq!(error_code(&r), UNAUTHORIZED);
    let token = h.auth(conn);
    let (r, _) = h.call(conn, "private/get_open_orders_by_instrument", params.clone());
    assert_eq!(r["result"], json!([]));
    // A connection-scoped token is no good on another connection.
    let other = h.connect();
    let with_token = json!({"instrument_name": "BTC-PERPETUAL", "access_token": token});
    assert_eq!(error_code(&h.call(other, "private/get_open_orders_by_instrument", with_token).0), UNAUTHORIZED);
    // A session-scoped one is, and subscribing with it binds the other connection to the account.
    let params = json!({"grant_type": "client_credentials", "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET, "scope": "session:bot"});
    let (r, _) = h.call(conn, "public/auth", params);
    assert_eq!(
        (r["result"]["scope"].as_str(), r["result"]["sid"].as_str()),
        (Some("session:bot mainaccount"), Some("ws-1"))
    );
    let token = r["result"]["access_token"].clone();
    let with_token = json!({"instrument_name": "BTC-PERPETUAL", "access_token": token});
    assert_eq!(h.call(other, "private/get_open_orders_by_instrument", with_token.clone()).0["result"], json!([]));
    let channels = json!({"channels": ["user.orders.ETH-PERPETUAL.raw"], "access_token": token});
    assert_eq!(h.call(other, "private/subscribe", channels).0["result"], json!(["user.orders.ETH-PERPETUAL.raw"]));
    let buy = json!({"instrument_name": "ETH-PERPETUAL", "amount": 1, "price": 100.0});
    let (_, notes) = h.call(conn, "private/buy", buy);
    assert!(notes.iter().any(|(c, v)| *c == other && v["params"]["data"]["order_state"] == "open"), "{notes:?}");
    // The session survives its connection; connection-scoped tokens do not.
    let first = h.auth(conn);
    h.venue.disconnect(conn, h.now);
    let third = h.connect();
    let with_first = json!({"instrument_name": "BTC-PERPETUAL", "access_token": first});
    assert_eq!(error_code(&h.call(third, "private/get_open_orders_by_instrument", with_first).0), UNAUTHORIZED);
    assert_eq!(h.call(third, "private/get_open_orders_by_instrument", with_token.clone()).0["result"], json!([]));
    h.advance(Duration::from_secs(11));
    assert_eq!(error_code(&h.call(other, "private/get_open_orders_by_instrument", with_token).0), UNAUTHORIZED);
}

#[test]
fn heartbeat_requests_then_closes() {
    let mut h = Harness::new(config(1));
    let conn = h.connect();
    assert_eq!(error_code(&h.call(conn, "public/set_heartbeat", json!({"interval": 0.5})).0), INVALID_PARAMS);
    assert_eq!(error_code(&h.call(conn, "public/set_heartbeat", json!({"interval": "x"})).0), INVALID_PARAMS);
    assert_eq!(h.call(conn, "public/set_heartbeat", json!({"interval": 1})).0["result"], "ok");
    assert_eq!(h.venue.deadline(conn), Some(h.now.instant + Duration::from_secs(1)));
    h.advance(Duration::from_secs(1));
    let out = texts(h.venue.on_timer(conn, h.now));
    assert_eq!(out[0].1, json!({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}));
    h.call(conn, "public/test", json!({}));
    h.advance(Duration::from_secs(1));
    // The client was active: a plain heartbeat; then silent: a test_request.
    assert_eq!(texts(h.venue.on_timer(conn, h.now))[0].1["params"]["type"], "heartbeat");
    h.advance(Duration::from_secs(1));
    assert_eq!(texts(h.venue.on_timer(conn, h.now))[0].1["params"]["type"], "test_request");
    h.advance(Duration::from_secs(1));
    assert_eq!(texts(h.venue.on_timer(conn, h.now))[0].1["close"], 1000);
    assert!(h.send(conn, "{}").is_empty(), "closed sessions are gone");
}

#[test]
fn rate_limit_trips_and_ends_the_session() {
    let mut c = config(1);
    c.rate_limit = RateLimit { max_credits: 1_000, refill_per_second: 500, cost: 500, ..RateLimit::default() };
    let mut h = Harness::new(c.clone());
    let conn = h.connect();
    assert!(h.call(conn, "public/test", json!({})).0.get("result").is_some());
    assert!(h.call(conn, "public/test", json!({})).0.get("result").is_some());
    let out = texts(h.send(conn, r#"{"id": 1, "method": "public/test"}"#));
    assert_eq!(error_code(&out[0].1), TOO_MANY_REQUESTS);
    assert_eq!((out[1].1["close"].as_u64(), out[1].1["reason"].as_str()), (Some(1008), Some("too_many_requests")));
    assert!(h.send(conn, "{}").is_empty(), "the session ended");

    // Configured not to end it: the connection stays usable after the refill.
    c.end_session_on_rate_limit = false;
    let mut h = Harness::new(c);
    let conn = h.connect();
    for _ in 0..2 {
        h.call(conn, "public/test", json!({}));
    }
    let out = texts(h.send(conn, r#"{"id": 1, "method": "public/test"}"#));
    assert_eq!((error_code(&out[0].1), out.len()), (TOO_MANY_REQUESTS, 1));
    h.advance(Duration::from_secs(1));
    assert!(h.call(conn, "public/get_time", json!({})).0["result"].is_u64());
}

#[test]
fn account_pools_persist_across_connections_and_subscribe_has_its_own() {
    let mut c = config(1);
    c.rate_limit = RateLimit {
        max_credits: 2_000,
        refill_per_second: 0,
        cost: 500,
        subscribe_max_credits: 6_000,
        subscribe_refill_per_second: 0,
        subscribe_cost: 3_000,
        ..RateLimit::default()
    };
    c.end_session_on_rate_limit = false;
    let mut h = Harness::new(c);
    let a = h.connect();
    h.auth(a); // spent from the connection's own pool
    let subscribe = json!({"channels": ["ticker.BTC-PERPETUAL.100ms"]});
    assert!(h.call(a, "public/subscribe", subscribe.clone()).0.get("result").is_some());
    assert!(h.call(a, "public/subscribe", subscribe.clone()).0.get("result").is_some());
    assert_eq!(error_code(&h.call(a, "public/subscribe", subscribe.clone()).0), TOO_MANY_REQUESTS);
    // Subscribing did not touch the general pool: four plain requests still go through.
    for _ in 0..4 {
        assert!(h.call(a, "public/test", json!({})).0.get("result").is_some());
    }
    assert_eq!(error_code(&h.call(a, "public/test", json!({})).0), TOO_MANY_REQUESTS);
    // A new connection of the same account finds the account's pools as they were.
    h.venue.disconnect(a, h.now);
    let b = h.connect();
    h.auth(b);
    assert_eq!(error_code(&h.call(b, "public/test", json!({})).0), TOO_MANY_REQUESTS);
    assert_eq!(error_code(&h.call(b, "public/subscribe", subscribe).0), TOO_MANY_REQUESTS);
}

#[test]
fn oversized_requests_and_timing() {
    let mut h = Harness::new(config(1));
    let conn = h.connect();
    let big = format!(r#"{{"id": 1, "method": "public/test", "params": {{"pad": "{}"}}}}"#, "x".repeat(32 * 1024));
    let out = texts(h.send(conn, &big));
    assert_eq!(out[0].1["error"]["code"], json!(INVALID_REQUEST));
    assert_eq!(out[0].1["error"]["message"], "request entity too large");
    let (r, _) = h.call(conn, "public/test", json!({}));
    assert_eq!(r["usDiff"], json!(7), "usOut - usIn, from the clock read when the response is ready");
    assert_eq!(r["usOut"].as_u64().unwrap() - r["usIn"].as_u64().unwrap(), 7);
}

#[test]
fn crossing_orders_fill_and_notify_both_accounts() {
    let mut h = Harness::new(config(5));
    let (seller, buyer) = (h.connect(), h.connect());
    h.auth(seller);
    let (r, _) = h.call(
        buyer,
        "public/auth",
        json!({"grant_type": "client_credentials", "client_id": "b", "client_secret": "s"}),
    );
    assert!(r["result"]["access_token"].is_string());
    h.call(
        seller,
        "private/subscribe",
        json!({"channels": ["user.orders.BTC-PERPETUAL.raw", "user.trades.BTC-PERPETUAL.raw"]}),
    );
    let book = h.venue.book_snapshot("BTC-PERPETUAL").unwrap();
    let price = book.best_ask().unwrap().price - 0.5;
    assert!(price > book.best_bid().unwrap().price);
    let sell = json!({"instrument_name": "BTC-PERPETUAL", "amount": 50, "price": price, "label": "maker"});
    let (r, _) = h.call(seller, "private/sell", sell);
    let order = &r["result"]["order"];
    assert_eq!((order["order_state"].as_str(), order["filled_amount"].as_f64()), (Some("open"), Some(0.0)));
    let maker_id = order["order_id"].as_str().unwrap().to_owned();
    let (r, notes) =
        h.call(buyer, "private/buy", json!({"instrument_name": "BTC-PERPETUAL", "amount": 30, "type": "market"}));
    let result = &r["result"];
    assert_eq!(result["order"]["order_state"], "filled");
    assert_eq!(result["trades"][0]["price"], json!(price));
    assert_eq!(result["trades"][0]["liquidity"], "T");
    let to_seller: Vec<&Value> = notes.iter().filter(|(c, _)| *c == seller).map(|(_, v)| v).collect();
    let order_note = to_seller.iter().find(|v| v["params"]["channel"] == "user.orders.BTC-PERPETUAL.raw").unwrap();
    assert_eq!(order_note["params"]["data"]["filled_amount"], json!(30.0));
    assert_eq!(order_note["params"]["data"]["order_id"], json!(maker_id));
    let trade_note = to_seller.iter().find(|v| v["params"]["channel"] == "user.trades.BTC-PERPETUAL.raw").unwrap();
    assert_eq!(trade_note["params"]["data"][0]["liquidity"], "M");
    // The rest can be cancelled once, then it is no longer open.
    let (r, _) = h.call(seller, "private/get_open_orders_by_instrument", json!({"instrument_name": "BTC-PERPETUAL"}));
    assert_eq!(r["result"][0]["filled_amount"], json!(30.0));
    let (r, _) = h.call(buyer, "private/cancel", json!({"order_id": maker_id}));
    assert_eq!(error_code(&r), NOT_OPEN_ORDER, "someone else's order");
    let (r, _) = h.call(seller, "private/cancel", json!({"order_id": maker_id}));
    assert_eq!(r["result"]["order_state"], "cancelled");
    assert_eq!(error_code(&h.call(seller, "private/cancel", json!({"order_id": maker_id})).0), NOT_OPEN_ORDER);
    assert_eq!(error_code(&h.call(seller, "private/cancel", json!({"order_id": "nope"})).0), NOT_OPEN_ORDER);
}

#[test]
fn order_validation() {
    let mut h = Harness::new(config(1));
    let conn = h.connect();
    h.auth(conn);
    for params in [
        json!({"instrument_name": "BTC-PERPETUAL", "amount": 15, "price": 100.0}),
        json!({"instrument_name": "BTC-PERPETUAL", "amount": 10, "price": 100.25}),
        json!({"instrument_name": "BTC-PERPETUAL", "amount": 10}),
        json!({"instrument_name": "BTC-PERPETUAL", "amount": -10, "type": "market"}),
        json!({"instrument_name": "BTC-PERPETUAL", "amount": 10, "type": "stop_limit", "price": 1.0}),
        json!({"instrument_name": "DOGE-PERPETUAL", "amount": 10, "type": "market"}),
        json!({"instrument_name": 5, "amount": 10, "type": "market"}),
        json!({"instrument_name": "ETH-PERPETUAL", "amount": 1, "price": 1e300}),
    ] {
        assert_eq!(error_code(&h.call(conn, "private/buy", params.clone()).0), INVALID_PARAMS, "{params}");
    }
    // Post-only: moved out of the spread, or rejected.
    let ask = h.venue.book_snapshot("ETH-PERPETUAL").unwrap().best_ask().unwrap().price;
    let crossing = json!({"instrument_name": "ETH-PERPETUAL", "amount": 1, "price": ask + 1.0, "post_only": true});
    let (r, _) = h.call(conn, "private/buy", crossing.clone());
    assert_eq!(r["result"]["order"]["order_state"], "open");
    assert!((r["result"]["order"]["price"].as_f64().unwrap() - (ask - 0.05)).abs() < 1e-9);
    let mut reject = crossing;
    reject["reject_post_only"] = json!(true);
    assert_eq!(error_code(&h.call(conn, "private/buy", reject).0), super::error::POST_ONLY_REJECT);
    // Fill-or-kill that cannot fill entirely does nothing.
    let fok = json!({"instrument_name": "ETH-PERPETUAL", "amount": 1_000_000, "price": ask + 5.0, "time_in_force": "fill_or_kill"});
    let (r, _) = h.call(conn, "private/buy", fok);
    assert_eq!(
        (r["result"]["order"]["order_state"].as_str(), r["result"]["trades"].as_array().map(Vec::len)),
        (Some("cancelled"), Some(0))
    );
    let (r, _) = h.call(conn, "private/cancel_all", json!({}));
    assert_eq!(r["result"], json!(1));
}

#[test]
fn idle_connections_close_and_any_frame_keeps_them_open() {
    let mut c = config(1);
    c.idle_timeout = Some(Duration::from_secs(5));
    let mut h = Harness::new(c);
    let conn = h.connect();
    assert_eq!(h.venue.deadline(conn), Some(h.now.instant + Duration::from_secs(5)));
    h.advance(Duration::from_secs(4));
    // A request, a binary frame and a ping each push the deadline.
    h.call(conn, "public/test", json!({}));
    assert_eq!(h.venue.deadline(conn), Some(h.now.instant + Duration::from_secs(5)));
    h.advance(Duration::from_secs(4));
    h.venue.on_binary(conn, h.now);
    h.advance(Duration::from_secs(4));
    h.venue.on_frame(conn, h.now);
    h.advance(Duration::from_secs(4));
    assert!(h.venue.on_timer(conn, h.now).is_empty(), "a frame 4 s ago: not idle");
    // With a heartbeat, the earlier of the two deadlines.
    assert_eq!(h.call(conn, "public/set_heartbeat", json!({"interval": 10})).0["result"], "ok");
    assert_eq!(h.venue.deadline(conn), Some(h.now.instant + Duration::from_secs(5)));
    h.advance(Duration::from_secs(5));
    assert_eq!(texts(h.venue.on_timer(conn, h.now)), vec![(conn, json!({"close": 1000, "reason": "idle timeout"}))]);
    assert_eq!(h.venue.deadline(conn), None);
    assert!(h.send(conn, "{}").is_empty(), "closed sessions are gone");

    // No idle timeout: only the heartbeat's deadline.
    let mut c = config(1);
    c.idle_timeout = None;
    let mut h = Harness::new(c);
    let conn = h.connect();
    assert_eq!(h.venue.deadline(conn), None);
    h.advance(Duration::from_secs(3600));
    assert!(h.venue.on_timer(conn, h.now).is_empty());
}
