//! What an idle WebSocket costs the client in heap, and that a burst's buffers go back.
//!
//! The counting allocator counts only allocations made on threads that asked to be counted:
//! the client's runtime (a current-thread runtime on the test's own thread) is, the test
//! kit's echo server (a runtime on a thread of its own) is not, so the figure is the client's
//! alone. `benches/ws_idle.rs` measures the same with 10,000 connections and the peers.
//!
//! The bounds are the measured figures with some room (13.9 KB per idle connection with
//! default options when written: see the README's performance section); an idle connection
//! holds no read buffer at all (it held 4 KiB before), and one that read a 200 KiB message
//! gives its 256 KiB read room back once idle again.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use moorline::ConnectOptions;
use moorline::ws::{self, Message, WsOptions, WsSession};
use moorline::{Keepalive, RetryPolicy};
use moorline_testkit::ws::{Matcher, MockServer, Reply};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONNECTIONS: usize = 200;
/// Heap per idle connection, bytes: measured 13.9 KB (default options), with room.
const IDLE_BOUND: isize = 16 * 1024;
const T: Duration = Duration::from_secs(10);

/// An echo server on a thread and runtime of its own (not counted); its URL.
fn server() -> (String, std::sync::mpsc::Sender<()>) {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let server = MockServer::builder()
                .on(Matcher::any(), Reply::with(|frame| Some(frame.clone())))
                .start()
                .await
                .unwrap();
            url_tx.send(server.url()).unwrap();
            // Kept alive until the test says so.
            tokio::task::spawn_blocking(move || stop_rx.recv()).await.ok();
            drop(server);
        });
    });
    (url_rx.recv_timeout(T).unwrap(), stop_tx)
}

fn options() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never)
}

/// One measurement at a time: the counter is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` on a current-thread runtime whose allocations are counted.
fn counted_runtime<F: std::future::Future<Output = ()>>(f: F) {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    COUNTED.with(|c| c.set(true));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out") });
    drop(rt);
    COUNTED.with(|c| c.set(false));
}

async fn settle() {
    // Let the workers run until they wait on their sockets (and free what a read left).
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[test]
fn an_idle_websocket_costs_under_16_kib_of_heap() {
    let (url, stop) = server();
    counted_runtime(async move {
        // One first, so what is allocated once per process (the runtime's, TLS roots...) is
        // not charged to the connections.
        let first = ws::connect(&url, options(), WsOptions::default(), T).await.unwrap();
        settle().await;
        let before = LIVE.load(Ordering::Relaxed);
        let mut sessions: Vec<WsSession> = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            sessions.push(ws::connect(&url, options(), WsOptions::default(), T).await.unwrap());
        }
        settle().await;
        let after = LIVE.load(Ordering::Relaxed);
        // The vector of sessions is the test's, not the connections'.
        let own = (CONNECTIONS * std::mem::size_of::<WsSession>()) as isize;
        let per = (after - before - own) / CONNECTIONS as isize;
        eprintln!("heap per idle WebSocket: {per} bytes");
        assert!(per > 0, "the counter counts the client's thread: {per}");
        assert!(per <= IDLE_BOUND, "an idle WebSocket holds {per} bytes of heap, over {IDLE_BOUND}");
        drop(sessions);
        drop(first);
    });
    let _ = stop.send(());
}

#[test]
fn a_burst_s_read_room_goes_back_once_idle() {
    let (url, stop) = server();
    counted_runtime(async move {
        // A short keepalive: its silence is what brings the read room back down.
        let ws_options =
            || WsOptions::default().keepalive(Some(Keepalive { interval: Duration::from_millis(300), timeout: T }));
        let mut idle = ws::connect(&url, options(), ws_options(), T).await.unwrap();
        let mut busy = ws::connect(&url, options(), ws_options(), T).await.unwrap();
        // Both have exchanged one small message, so both are in the same state but for the burst.
        for s in [&mut idle, &mut busy] {
            s.conn.ws_send(&s.stream, Message::text("warm")).await.unwrap();
            assert_eq!(s.events.await_ws(&s.stream, T).await.unwrap(), Message::text("warm"));
        }
        settle().await;
        let quiet = LIVE.load(Ordering::Relaxed);
        // A burst: 200 KiB messages echoed, read in large reads (the read room grows to 256 KiB).
        let big = Message::text("x".repeat(200 * 1024));
        for _ in 0..8 {
            busy.conn.ws_send(&busy.stream, big.clone()).await.unwrap();
        }
        for _ in 0..8 {
            let m = busy.events.await_ws(&busy.stream, T).await.unwrap();
            assert_eq!(m.len(), 200 * 1024);
        }
        drop(big);
        // Then a few small ones, and silence past the keepalive's interval.
        for _ in 0..4 {
            busy.conn.ws_send(&busy.stream, Message::text("small")).await.unwrap();
            assert_eq!(busy.events.await_ws(&busy.stream, T).await.unwrap(), Message::text("small"));
        }
        settle().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = LIVE.load(Ordering::Relaxed) - quiet;
        eprintln!("heap the burst left behind: {grown} bytes");
        // Channel blocks, a larger outbox: a few KiB at most; never the 256 KiB read room.
        assert!(grown < 32 * 1024, "after the burst the connection still holds {grown} bytes more");
        drop(idle);
        drop(busy);
    });
    let _ = stop.send(());
}
