//! The owner's WebSocket tap (`Connection::set_ws_tap`), against the test kit's server over
//! loopback: it takes the messages it wants straight from the worker, hands the others back
//! to `Events`, and is offered a message only once the owner has handled every event before
//! it, so the two together see the server's order exactly, on a multi-threaded runtime
//! where the worker and the owner run at once; over HTTP/1.1 and HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moorline::ws::{self, Message, WsOptions};
use moorline::{ConnectOptions, Connection, Event, Events, Protocol, RetryPolicy, StreamRef, WsTap};
use moorline_testkit::ws::{Frame, MockServer};

const T: Duration = Duration::from_secs(10);

/// Takes text messages starting with `t` into the shared log; hands back the others.
struct Taker(Arc<Mutex<Vec<String>>>);

impl WsTap for Taker {
    fn offer(&self, message: Message) -> Result<(), Message> {
        match &message {
            Message::Text(t) if t.as_str().starts_with('t') => {
                self.0.lock().unwrap().push(t.as_str().to_owned());
                Ok(())
            }
            _ => Err(message),
        }
    }
}

/// A small event budget: bytes the tap took and the worker did not give back would stall
/// the connection long before the 20,000 messages are through.
fn options() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never).event_buffer_bytes(16 * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_tap_and_the_owner_together_see_the_servers_order() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = MockServer::builder().start().await.unwrap();
        let s = ws::connect(&server.url(), options(), WsOptions::default(), T).await.unwrap();
        assert_eq!(s.protocol, Protocol::Http1);
        order_kept(&server, s.conn, s.stream, s.events).await;
    })
    .await
    .unwrap();
}

/// Over HTTP/2 the messages reach the worker from the stream's task, some one at a time and
/// some in batches: the tap takes them the same way, in order, and their bytes go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn over_http2_too() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = MockServer::builder().http2(true).start().await.unwrap();
        let (conn, mut events) =
            moorline::open("127.0.0.1", server.addr().port(), options().protocols(&[Protocol::Http2])).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let stream = conn.ws_upgrade("/", WsOptions::default()).await.unwrap();
        events.await_ws_upgrade(&stream, T).await.unwrap();
        order_kept(&server, conn, stream, events).await;
    })
    .await
    .unwrap();
}

/// Mostly tap-able messages, with one for the owner now and then, in bursts; the owner is
/// slow on some of its own (a tap that overtook it would show in the log). Then 200 one at a
/// time, while the owner is idle: those are the tap's.
async fn order_kept(server: &MockServer, conn: Connection, stream: StreamRef, events: Events) {
    let log = Arc::new(Mutex::new(Vec::new()));
    conn.set_ws_tap(&stream, Some(Arc::new(Taker(log.clone()))));
    let sent: Vec<String> = (0..20_000u32)
        .map(|i| if i % 37 == 0 { format!("o{i}") } else { format!("t{i}") })
        .chain((0..200).map(|i| format!("t-single-{i}")))
        .collect();
    let owner = tokio::spawn({
        let log = log.clone();
        let total = sent.len();
        async move {
            let mut events = events;
            let mut handled = 0u32;
            while log.lock().unwrap().len() < total {
                let Ok(ev) = tokio::time::timeout(Duration::from_millis(20), events.next()).await else { continue };
                let ev = ev.expect("the connection stays up");
                let Event::Ws { message: Message::Text(t), .. } = ev else {
                    panic!("only messages expected, got {ev:?}");
                };
                handled += 1;
                if handled.is_multiple_of(10) {
                    std::thread::sleep(Duration::from_micros(300));
                }
                log.lock().unwrap().push(t.as_str().to_owned());
            }
            (events, handled)
        }
    });
    for chunk in sent[..20_000].chunks(500) {
        for text in chunk {
            server.inject(Frame::text(text.clone()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Once the owner has caught up, it is idle: the singles are offered to the tap.
    let deadline = tokio::time::Instant::now() + T;
    while log.lock().unwrap().len() < 20_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for text in &sent[20_000..] {
        tokio::time::sleep(Duration::from_millis(1)).await;
        server.inject(Frame::text(text.clone()));
    }
    let (mut events, handled) = tokio::time::timeout(T, owner).await.unwrap().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), sent.len());
    if let Some(i) = log.iter().zip(&sent).position(|(a, b)| a != b) {
        panic!(
            "order differs at {i}: {:?} against {:?}",
            &log[i..(i + 4).min(log.len())],
            &sent[i..(i + 4).min(sent.len())]
        );
    }
    // Some went each way: the owner's own, and whatever came while it was busy.
    let handled = handled as usize;
    assert!(handled >= sent.iter().filter(|t| t.starts_with('o')).count(), "{handled}");
    assert!(handled < sent.len() - 100, "the tap took too little: the owner handled {handled}");
    // Without a tap everything reaches the owner again.
    conn.set_ws_tap(&stream, None);
    server.inject(Frame::text("t-last"));
    loop {
        let ev = tokio::time::timeout(T, events.next()).await.unwrap().unwrap();
        if let Event::Ws { message: Message::Text(t), .. } = ev {
            assert_eq!(t.as_str(), "t-last");
            break;
        }
    }
    conn.close();
}
