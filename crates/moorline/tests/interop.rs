//! Interop with WebSocket servers nobody at moorline wrote: Python `websockets` and Node
//! `ws` over HTTP/1.1, Hypercorn over TLS with HTTP/2 (RFC 8441).
//!
//! The peers are installed by `scripts/test.sh` (the README's test command, which `.ci/run` calls):
//! `pip install websockets hypercorn` into a virtual environment at `target/interop-venv` (found
//! through `MOORLINE_PYTHON`, or at that path), and `npm ci` in `crates/moorline/tests/interop`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{T, bounded, next_matching};
use moorline::ws::{CloseCode, DeflateConfig, Message, WsOptions};
use moorline::{ConnectOptions, DownReason, Event, ExitReason, Protocol, RetryPolicy, TlsOptions, Transport};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// A peer server process, killed when dropped. Its stderr goes to a file, shown only if
/// the test fails (Hypercorn prints tracebacks for its own known bug, see below).
struct Peer {
    child: Child,
    port: u16,
    stderr: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            eprintln!("--- peer stderr ({}):\n{log}", self.stderr.display());
        }
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The Python with the interop peers installed: `MOORLINE_PYTHON` (set by scripts/test.sh),
/// else the virtual environment scripts/test.sh makes in the target directory, else `python3`.
fn python() -> OsString {
    if let Some(python) = std::env::var_os("MOORLINE_PYTHON").filter(|p| !p.is_empty()) {
        return python;
    }
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(|target| target.join("interop-venv/bin/python"));
    match venv {
        Some(venv) if venv.is_file() => venv.into_os_string(),
        _ => "python3".into(),
    }
}

/// Starts `program args` in the interop folder and reads its `PORT <n>` line.
fn peer(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Peer {
    let program = program.as_ref();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stderr = std::env::temp_dir().join(format!("moorline-interop-{}-{n}.stderr", std::process::id()));
    let log = std::fs::File::create(&stderr).unwrap();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program:?}: {e} (scripts/test.sh installs the interop peers)"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        panic!(
            "{program:?} {args:?} did not start (printed {line:?}, stderr {:?}); install the peers with \
             scripts/test.sh (pip install websockets hypercorn into target/interop-venv; \
             npm ci --prefix crates/moorline/tests/interop)",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    Peer { child, port, stderr }
}

fn python_peer() -> Peer {
    peer(python(), &["py_ws_server.py"])
}

fn node_peer() -> Peer {
    assert!(
        interop_dir().join("node_modules/ws").is_dir(),
        "Node ws is not installed: npm ci --prefix crates/moorline/tests/interop (scripts/test.sh does it)"
    );
    peer("node", &["node_ws_server.js"])
}

fn plain() -> ConnectOptions {
    ConnectOptions::default().retry(RetryPolicy::Never)
}

fn payload(len: usize) -> String {
    (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
}

/// The same checks against any HTTP/1.1 peer.
async fn http1_suite(port: u16, peer_name: &str) {
    // Subprotocol and permessage-deflate negotiated; echoes of every size class, both types.
    let (conn, mut events) = moorline::open("127.0.0.1", port, plain()).unwrap();
    events.await_up(T).await.unwrap();
    let options = WsOptions::default().protocols(["other", "chat.v1"]).deflate(DeflateConfig::default());
    let ws = conn.ws_upgrade("/", options).await.unwrap();
    let up = events.await_ws_upgrade(&ws, T).await.unwrap();
    assert_eq!(up.protocol.as_deref(), Some("chat.v1"), "{peer_name}");
    assert!(up.deflate.is_some(), "{peer_name}: permessage-deflate not negotiated");
    for len in [0usize, 1, 125, 126, 65_535, 65_536, 1 << 20] {
        let text = payload(len);
        conn.ws_send(&ws, Message::text(text.clone())).await.unwrap();
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text(text), "{peer_name}: text of {len}");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        conn.ws_send(&ws, Message::binary(bytes.clone())).await.unwrap();
        assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::binary(bytes), "{peer_name}: binary of {len}");
    }
    // The server closes: its close frame, then Down.
    conn.ws_send(&ws, Message::text("close-me")).await.unwrap();
    match events.await_ws(&ws, T).await.unwrap() {
        Message::Close(Some(c)) => assert_eq!((c.code, c.reason.as_str()), (CloseCode(4000), "bye"), "{peer_name}"),
        other => panic!("{peer_name}: {other:?}"),
    }
    match next_matching(&mut events, |e| matches!(e, Event::Down { .. })).await {
        Event::Down { reason: DownReason::WsClosed { by_us: false, .. }, .. } => {}
        other => panic!("{peer_name}: {other:?}"),
    }

    // Fragmented sends without compression, a server ping surfaced, and our close.
    let (conn, mut events) = moorline::open("127.0.0.1", port, plain()).unwrap();
    events.await_up(T).await.unwrap();
    let options = WsOptions::default().protocols(["chat.v1"]).max_frame_payload(Some(1000)).surface_control(true);
    let ws = conn.ws_upgrade("/", options).await.unwrap();
    assert!(events.await_ws_upgrade(&ws, T).await.unwrap().deflate.is_none());
    let text = payload(10_000);
    conn.ws_send(&ws, Message::text(text.clone())).await.unwrap();
    assert_eq!(events.await_ws(&ws, T).await.unwrap(), Message::text(text), "{peer_name}: fragmented");
    conn.ws_send(&ws, Message::text("ping-me")).await.unwrap();
    assert!(matches!(events.await_ws(&ws, T).await.unwrap(), Message::Ping(_)), "{peer_name}: ping");
    conn.ws_close(&ws, CloseCode::NORMAL, "done").await.unwrap();
    assert!(matches!(events.await_ws(&ws, T).await.unwrap(), Message::Close(Some(c)) if c.code == CloseCode::NORMAL));
    // Our own close ends the connection (no `Down`, no reconnection).
    match next_matching(&mut events, |e| matches!(e, Event::Down { .. } | Event::Exit { .. })).await {
        Event::Exit { reason: ExitReason::WsClosed { completed: true } } => {}
        other => panic!("{peer_name}: {other:?}"),
    }
}

#[tokio::test]
async fn python_websockets_over_http1() {
    let peer = python_peer();
    bounded(http1_suite(peer.port, "python websockets")).await;
}

#[tokio::test]
async fn node_ws_over_http1() {
    let peer = node_peer();
    bounded(http1_suite(peer.port, "node ws")).await;
}

#[tokio::test]
async fn hypercorn_over_tls_and_http2() {
    let dir = std::env::temp_dir().join(format!("moorline-hypercorn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = moorline_testkit::localhost_certificates().unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &certs.cert_pem).unwrap();
    std::fs::write(&key, &certs.key_pem).unwrap();
    let peer = peer(python(), &["hypercorn_ws_app.py", cert.to_str().unwrap(), key.to_str().unwrap()]);
    bounded(async {
        let opts = ConnectOptions::default()
            .transport(Transport::Tls)
            .protocols(&[Protocol::Http2])
            .tls(TlsOptions::default().add_ca_pem(&certs.ca_pem).unwrap())
            .retry(RetryPolicy::Never);
        let (conn, mut events) = moorline::open("127.0.0.1", peer.port, opts.clone()).unwrap();
        assert_eq!(events.await_up(T).await.unwrap(), Protocol::Http2);
        let options = WsOptions::default().protocols(["chat.v1"]);
        let a = conn.ws_upgrade("/a", options.clone()).await.unwrap();
        let b = conn.ws_upgrade("/b", options).await.unwrap();
        assert_eq!(events.await_ws_upgrade(&a, T).await.unwrap().protocol.as_deref(), Some("chat.v1"));
        events.await_ws_upgrade(&b, T).await.unwrap();
        // An ordinary request beside the WebSockets.
        let get = conn.get("/", http::HeaderMap::new()).await.unwrap();
        assert_eq!(events.await_body(&get, T).await.unwrap().data, "ok");
        for len in [0usize, 126, 70_000, 1 << 20] {
            let text = payload(len);
            conn.ws_send(&a, Message::text(text.clone())).await.unwrap();
            conn.ws_send(&b, Message::binary(text.clone().into_bytes())).await.unwrap();
            assert_eq!(events.await_ws(&a, T).await.unwrap(), Message::text(text.clone()), "text of {len}");
            assert_eq!(events.await_ws(&b, T).await.unwrap(), Message::binary(text.into_bytes()), "binary of {len}");
        }
        // Hypercorn 0.18 drops the whole connection when a DATA frame (even our empty
        // END_STREAM after a finished closing handshake) reaches a stream it has already
        // forgotten (pgjones/hypercorn#329; fixes in PRs #312, #334, #365, unreleased). So
        // each closing handshake is the last thing on its connection.
        // We close b: Hypercorn answers with its close frame.
        conn.ws_close(&b, CloseCode::NORMAL, "").await.unwrap();
        match events.await_ws(&b, T).await.unwrap() {
            Message::Close(Some(c)) => assert_eq!(c.code, CloseCode::NORMAL),
            other => panic!("{other:?}"),
        }
        // Hypercorn closes a WebSocket with a code of its own, on a fresh connection.
        let (conn, mut events) = moorline::open("127.0.0.1", peer.port, opts).unwrap();
        events.await_up(T).await.unwrap();
        let c = conn.ws_upgrade("/c", WsOptions::default()).await.unwrap();
        assert_eq!(events.await_ws_upgrade(&c, T).await.unwrap().protocol, None);
        conn.ws_send(&c, Message::text("before")).await.unwrap();
        assert_eq!(events.await_ws(&c, T).await.unwrap(), Message::text("before"));
        conn.ws_send(&c, Message::text("close-me")).await.unwrap();
        match events.await_ws(&c, T).await.unwrap() {
            Message::Close(Some(c)) => assert_eq!((c.code, c.reason.as_str()), (CloseCode(4000), "bye")),
            other => panic!("{other:?}"),
        }
    })
    .await;
    drop(peer);
    let _ = std::fs::remove_dir_all(&dir);
}
