//! A dialect of your own: a venue that subscribes with `{"op":"subscribe","args":[..],"id":N}`,
//! confirms with `{"id":N,"ok":true}`, sends data as `{"topic":"..","data":..}` and pings with
//! `{"op":"ping"}` (answered `{"op":"pong"}`). Four methods are required (`name`, `classify`,
//! `subscription_request`, `confirm`); the rest have defaults.
//!
//! Run: `cargo run -p moorline-client --example custom_dialect` (it prints how frames are read).

use std::borrow::Cow;

use moorline_client::dialect::{Confirmation, Dialect, DialectError, Frame, Heartbeat, Inbound, OutRequest, SubOp};
use moorline_client::jsonrpc::{RawValue, RpcError};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug)]
struct MyVenue;

/// What the venue sends: every member optional, `data` left unparsed.
#[derive(Deserialize)]
struct Wire<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    ok: Option<&'a RawValue>,
    op: Option<&'a str>,
    topic: Option<&'a str>,
    error: Option<&'a str>,
}

impl Dialect for MyVenue {
    fn name(&self) -> &'static str {
        "my-venue"
    }

    fn classify<'a>(&self, frame: Frame<'a>) -> Inbound<'a> {
        let Frame::Text(text) = frame else { return Inbound::Data { channel: None } };
        let Ok(w) = serde_json::from_str::<Wire<'a>>(text) else { return Inbound::Data { channel: None } };
        match (w.id, w.op, w.topic) {
            (Some(id), _, _) => {
                let outcome = match (w.ok, w.error) {
                    (Some(ok), _) if ok.get() == "true" => Ok(ok),
                    (_, error) => Err(RpcError { code: 1, message: error.unwrap_or("refused").to_owned(), data: None }),
                };
                Inbound::Response { id, outcome }
            }
            (None, Some("ping"), _) => Inbound::Heartbeat(Heartbeat::TestRequest),
            (None, _, topic) => Inbound::Data { channel: topic.map(Cow::Borrowed) },
        }
    }

    fn subscription_request(&self, op: SubOp, id: u64, channels: &[&str]) -> Result<OutRequest, DialectError> {
        let op = if op == SubOp::Subscribe { "subscribe" } else { "unsubscribe" };
        let text = json!({"op": op, "args": channels, "id": id}).to_string();
        Ok(OutRequest { id, method: Cow::Borrowed(op), text })
    }

    fn confirm(&self, _op: SubOp, requested: &[&str], reply: Result<&RawValue, &RpcError>) -> Confirmation {
        match reply {
            Ok(_) => Confirmation::all_confirmed(requested),
            Err(e) => Confirmation::all_refused(requested, &e.message),
        }
    }

    fn answer_heartbeat(&self, _beat: Heartbeat, id: u64) -> Option<Result<OutRequest, DialectError>> {
        Some(Ok(OutRequest { id, method: Cow::Borrowed("pong"), text: r#"{"op":"pong"}"#.to_owned() }))
    }
}

fn main() {
    let venue: std::sync::Arc<dyn Dialect> = std::sync::Arc::new(MyVenue);
    let sub = venue.subscription_request(SubOp::Subscribe, 1, &["trades.BTC", "book.BTC"]);
    println!("subscribe: {sub:?}");
    for frame in [r#"{"id":1,"ok":true}"#, r#"{"op":"ping"}"#, r#"{"topic":"trades.BTC","data":[1,2]}"#, "garbage"] {
        println!("{frame} -> {:?}", venue.classify(Frame::Text(frame)));
    }
    println!("pong: {:?}", venue.answer_heartbeat(Heartbeat::TestRequest, 2));
}
