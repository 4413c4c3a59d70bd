//! The owner's WebSocket tap (`Connection::set_ws_tap`), against the test kit's server over
//! loopback: it takes the messages it wants straight from the worker, hands the others back
//! to `Events`, and is offered a message only once the owner has handled every event before
//! it, so the two together see the server's order exactly, on a multi-threaded runtime
//! where the worker and the owner run at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use moorline::ws::{self, Message, WsOptions};
use moorline::{ConnectOptions, Event, WsTap};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_tap_and_the_owner_together_see_the_servers_order() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = MockServer::builder().start().await.unwrap();
        let s = ws::connect(&server.url(), ConnectOptions::default(), WsOptions::default(), T).await.unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        s.conn.set_ws_tap(&s.stream, Some(Arc::new(Taker(log.clone()))));
        // Mostly tap-able messages, with one for the owner now and then, in bursts; the
        // owner is slow on some of its own (a tap that overtook it would show in the log).
        // Then 200 one at a time, while the owner is idle: those are the tap's.
        let sent: Vec<String> = (0..20_000u32)
            .map(|i| if i % 37 == 0 { format!("o{i}") } else { format!("t{i}") })
            .chain((0..200).map(|i| format!("t-single-{i}")))
            .collect();
        let owner = tokio::spawn({
            let log = log.clone();
            let total = sent.len();
            async move {
                let mut events = s.events;
                let mut handled = 0u32;
                while log.lock().unwrap().len() < total {
                    let Ok(ev) = tokio::time::timeout(Duration::from_millis(20), events.next()).await else { continue };
                    let Event::Ws { message: Message::Text(t), .. } = ev.unwrap() else { continue };
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
        s.conn.set_ws_tap(&s.stream, None);
        server.inject(Frame::text("t-last"));
        loop {
            let ev = tokio::time::timeout(T, events.next()).await.unwrap().unwrap();
            if let Event::Ws { message: Message::Text(t), .. } = ev {
                assert_eq!(t.as_str(), "t-last");
                break;
            }
        }
        s.conn.close();
    })
    .await
    .unwrap();
}
