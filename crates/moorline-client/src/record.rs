//! Recording a session to JSONL, off the connection's hot path, in the format the test kit
//! replays (`moorline_testkit::ws::Recording`, `moorline serve --replay`): one format for both.
//!
//! One JSON object per line:
//!
//! ```text
//! {"ts":0.000,"dir":"meta","type":"connected","data":"attempt 1"}
//! {"ts":0.000,"dir":"out","type":"text","data":"{\"method\":\"public/subscribe\",...}"}
//! {"ts":12.345,"dir":"in","type":"text","data":"{\"result\":[\"book.BTC-PERPETUAL.100ms\"]}"}
//! {"ts":250.100,"dir":"in","type":"binary","data":"AAECAw=="}
//! {"ts":900.000,"dir":"in","type":"close","data":"1001 going away"}
//! ```
//!
//! `ts` is milliseconds since the recorder was opened; `dir` is `in` (received) or `out`
//! (sent); `type` is `text`, `binary`, `ping`, `pong` or `close`; `data` is the text, standard
//! base64 of the payload for binary and control frames, or `"<code> <reason>"` for a close.
//!
//! A client records through [`ClientConfigBuilder::record`](crate::ClientConfigBuilder::record):
//! every frame in and out, across reconnects (`moorline connect --record FILE`,
//! `moorline demo --record FILE`; `moorline replay FILE` prints one).
//!
//! **Off the hot path.** [`Recorder::record`] takes the time, keeps the payload (a reference
//! count, no copy) and hands it to a writer thread through a queue bounded in bytes (payload
//! queued or in the writer's hands: at most `queue_bytes`, or one frame when it is larger); the
//! writer formats, redacts and writes through a `BufWriter`. When the queue is full (a disk
//! slower than the feed), the frame is not recorded and counted in [`RecorderStats::dropped`]:
//! recording never slows or blocks the connection.
//!
//! **Rotation.** Past [`RecordOptions::rotate_bytes`] the file is renamed `FILE.1` (older ones
//! shift to `FILE.2`..., at most [`RecordOptions::keep`] are kept) and a new `FILE` starts.
//!
//! **Secrets.** With [`RecordOptions::redact`] (the default), the values of the JSON keys
//! `client_secret`, `access_token`, `refresh_token`, `signature`, `password`, `secret` and
//! `api_key` are replaced by `"<redacted>"` in text frames, at any depth: a recording can be
//! attached to an incident report.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the venue.
    In,
    /// Sent to the venue.
    Out,
}

/// A frame's kind, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A text message.
    Text,
    /// A binary message.
    Binary,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A close frame (payload: code and reason as on the wire, or empty).
    Close,
    /// Not a frame: a new connection starts here (payload: a note, such as the attempt). It is
    /// written as `"dir":"meta","type":"connected"`, whatever the direction given; the test
    /// kit's replay plays what follows it to the next connection.
    Connected,
}

/// How a [`Recorder`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    /// Start a new file past this many bytes (default 64 MiB).
    pub rotate_bytes: u64,
    /// Rotated files kept beside the current one (default 4).
    pub keep: usize,
    /// Payload bytes waiting for the writer before frames are dropped (default 8 MiB).
    pub queue_bytes: usize,
    /// Redact credentials and tokens in text frames (default on).
    pub redact: bool,
}

/// Default [`RecordOptions::rotate_bytes`]: 64 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 << 20;
/// Default [`RecordOptions::queue_bytes`]: 8 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 8 << 20;

impl Default for RecordOptions {
    fn default() -> Self {
        Self { rotate_bytes: DEFAULT_ROTATE_BYTES, keep: 4, queue_bytes: DEFAULT_QUEUE_BYTES, redact: true }
    }
}

/// What a recorder did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Frames written.
    pub written: u64,
    /// Frames not recorded because the writer was behind by `queue_bytes`.
    pub dropped: u64,
    /// Files rotated away.
    pub rotations: u64,
    /// The most payload bytes ever waiting for the writer (queued or in its hands).
    pub peak_queued_bytes: usize,
}

/// Why a recorder could not be opened or failed while writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file could not be created or written.
    #[error("recording to {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Options that cannot work.
    #[error("record options: {0}")]
    Options(&'static str),
}

struct Entry {
    at: Duration,
    dir: Direction,
    kind: FrameKind,
    payload: Bytes,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    bytes: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    written: AtomicU64,
    dropped: AtomicU64,
    rotations: AtomicU64,
    peak: AtomicU64,
    error: Mutex<Option<io::Error>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records frames to a JSONL file from any thread or task; a writer thread does the IO.
/// Dropping it (or [`Recorder::finish`]) writes what is queued and closes the file.
pub struct Recorder {
    shared: Arc<Shared>,
    started: Instant,
    queue_bytes: usize,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("path", &self.path).field("stats", &self.stats()).finish()
    }
}

impl Recorder {
    /// Creates (or truncates) `path` and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, options: RecordOptions) -> Result<Self, RecordError> {
        if options.rotate_bytes == 0 {
            return Err(RecordError::Options("rotate_bytes must be positive"));
        }
        if options.queue_bytes == 0 {
            return Err(RecordError::Options("queue_bytes must be positive"));
        }
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| RecordError::Io { path: path.clone(), source })?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            error: Mutex::new(None),
        });
        let writer = Writer { shared: Arc::clone(&shared), path: path.clone(), options: options.clone(), size: 0 };
        let handle = std::thread::Builder::new()
            .name("moorline-recorder".into())
            .spawn(move || writer.run(BufWriter::with_capacity(64 << 10, file)))
            .map_err(|source| RecordError::Io { path: path.clone(), source })?;
        Ok(Self { shared, started: Instant::now(), queue_bytes: options.queue_bytes, writer: Some(handle), path })
    }

    /// Records one frame. Never blocks on IO: when the writer is `queue_bytes` behind, the
    /// frame is counted as dropped instead.
    pub fn record(&self, dir: Direction, kind: FrameKind, payload: Bytes) {
        let at = self.started.elapsed();
        let mut q = lock(&self.shared.queue);
        if q.closed || (q.bytes > 0 && q.bytes + payload.len() > self.queue_bytes) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += payload.len();
        let queued = q.bytes as u64;
        q.entries.push_back(Entry { at, dir, kind, payload });
        drop(q);
        self.shared.peak.fetch_max(queued, Ordering::Relaxed);
        self.shared.ready.notify_one();
    }

    /// What was written, dropped and rotated so far.
    pub fn stats(&self) -> RecorderStats {
        RecorderStats {
            written: self.shared.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            rotations: self.shared.rotations.load(Ordering::Relaxed),
            peak_queued_bytes: usize::try_from(self.shared.peak.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
        }
    }

    /// Writes what is queued, closes the file and reports the first write error, if any.
    pub fn finish(mut self) -> Result<RecorderStats, RecordError> {
        self.close();
        let stats = self.stats();
        match lock(&self.shared.error).take() {
            Some(source) => Err(RecordError::Io { path: self.path.clone(), source }),
            None => Ok(stats),
        }
    }

    fn close(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_one();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
    options: RecordOptions,
    size: u64,
}

impl Writer {
    fn run(mut self, mut out: BufWriter<File>) {
        let mut line = String::with_capacity(1024);
        loop {
            let batch: Vec<Entry> = {
                let mut q = lock(&self.shared.queue);
                while q.entries.is_empty() && !q.closed {
                    q = self.shared.ready.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if q.entries.is_empty() {
                    break;
                }
                q.entries.drain(..).collect()
            };
            let batch_bytes: usize = batch.iter().map(|e| e.payload.len()).sum();
            for entry in batch {
                line.clear();
                format_line(&entry, self.options.redact, &mut line);
                if let Err(e) = self.write(&mut out, line.as_bytes()) {
                    tracing::warn!(path = %self.path.display(), error = %e, "recording stopped");
                    *lock(&self.shared.error) = Some(e);
                    lock(&self.shared.queue).closed = true;
                    return;
                }
                self.shared.written.fetch_add(1, Ordering::Relaxed);
            }
            // Payload stays counted until written: the queue and the batch in hand share
            // `queue_bytes`.
            let mut q = lock(&self.shared.queue);
            q.bytes = q.bytes.saturating_sub(batch_bytes);
            drop(q);
            if let Err(e) = out.flush() {
                *lock(&self.shared.error) = Some(e);
                lock(&self.shared.queue).closed = true;
                return;
            }
        }
        if let Err(e) = out.flush() {
            *lock(&self.shared.error) = Some(e);
        }
    }

    fn write(&mut self, out: &mut BufWriter<File>, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.options.rotate_bytes {
            out.flush()?;
            self.rotate()?;
            *out = BufWriter::with_capacity(64 << 10, File::create(&self.path)?);
            self.size = 0;
        }
        out.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.options.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(numbered(self.options.keep));
            for n in (1..self.options.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    fs::rename(&from, numbered(n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.shared.rotations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

const SECRET_KEYS: [&str; 7] =
    ["client_secret", "access_token", "refresh_token", "signature", "password", "secret", "api_key"];

/// One JSONL line (with its newline) for `entry`.
fn format_line(entry: &Entry, redact: bool, line: &mut String) {
    use base64::Engine;
    let ms = entry.at.as_secs_f64() * 1000.0;
    let dir = match (entry.kind, entry.dir) {
        (FrameKind::Connected, _) => "meta",
        (_, Direction::In) => "in",
        (_, Direction::Out) => "out",
    };
    let (kind, data): (&str, String) = match entry.kind {
        FrameKind::Text => {
            let text = String::from_utf8_lossy(&entry.payload);
            ("text", if redact { redact_text(&text) } else { text.into_owned() })
        }
        FrameKind::Binary => ("binary", base64::engine::general_purpose::STANDARD.encode(&entry.payload)),
        FrameKind::Ping => ("ping", base64::engine::general_purpose::STANDARD.encode(&entry.payload)),
        FrameKind::Pong => ("pong", base64::engine::general_purpose::STANDARD.encode(&entry.payload)),
        FrameKind::Close => ("close", close_text(&entry.payload)),
        FrameKind::Connected => ("connected", String::from_utf8_lossy(&entry.payload).into_owned()),
    };
    let object = serde_json::json!({ "ts": (ms * 1000.0).round() / 1000.0, "dir": dir, "type": kind, "data": data });
    line.push_str(&object.to_string());
    line.push('\n');
}

/// `"<code> <reason>"` from a close payload as on the wire (empty stays empty).
fn close_text(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let reason = String::from_utf8_lossy(reason);
            if reason.is_empty() { code.to_string() } else { format!("{code} {reason}") }
        }
        _ => String::new(),
    }
}

/// `text` with the values of secret keys replaced, when it is JSON holding one; else as is.
fn redact_text(text: &str) -> String {
    if !SECRET_KEYS.iter().any(|k| text.contains(k)) {
        return text.to_owned();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        // Not JSON but it names a secret: keep nothing of it.
        Err(_) => "<redacted: not JSON, names a secret>".to_owned(),
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("moorline-record-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("session.jsonl")
    }

    #[test]
    fn lines_are_the_test_kit_format_and_replay_there() {
        let path = temp("format");
        let rec = Recorder::open(&path, RecordOptions::default()).unwrap();
        rec.record(Direction::Out, FrameKind::Text, Bytes::from_static(br#"{"method":"public/subscribe"}"#));
        rec.record(Direction::In, FrameKind::Text, Bytes::from_static(br#"{"result":["book.X.100ms"]}"#));
        rec.record(Direction::In, FrameKind::Binary, Bytes::from_static(&[0, 1, 2, 3]));
        rec.record(Direction::In, FrameKind::Ping, Bytes::from_static(b"hi"));
        rec.record(Direction::In, FrameKind::Close, Bytes::from(vec![0x03, 0xe9, b'b', b'y', b'e']));
        let stats = rec.finish().unwrap();
        assert_eq!((stats.written, stats.dropped), (5, 0));
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["dir"], "out");
        assert_eq!(lines[1]["data"], r#"{"result":["book.X.100ms"]}"#);
        assert_eq!(lines[2]["data"], "AAECAw==");
        assert_eq!(lines[4]["data"], "1001 bye");
        assert!(lines.windows(2).all(|w| w[0]["ts"].as_f64() <= w[1]["ts"].as_f64()));
        // The test kit replays it: the received frames, in order.
        let replay = moorline_testkit::ws::Recording::from_jsonl(&text).unwrap();
        assert_eq!(replay.len(), 4, "the four received frames");
    }

    #[test]
    fn connections_are_marked_and_replay_one_by_one() {
        let path = temp("connections");
        let rec = Recorder::open(&path, RecordOptions::default()).unwrap();
        rec.record(Direction::In, FrameKind::Connected, Bytes::from("attempt 1"));
        rec.record(Direction::In, FrameKind::Text, Bytes::from_static(b"first"));
        rec.record(Direction::Out, FrameKind::Connected, Bytes::from("attempt 2"));
        rec.record(Direction::In, FrameKind::Text, Bytes::from_static(b"second"));
        rec.finish().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for i in [0, 2] {
            assert_eq!((lines[i]["dir"].as_str(), lines[i]["type"].as_str()), (Some("meta"), Some("connected")));
        }
        assert_eq!(lines[2]["data"], "attempt 2");
        let replay = moorline_testkit::ws::Recording::from_jsonl(&text).unwrap();
        assert_eq!(replay.sessions(), 2);
        assert_eq!(replay.session(1).len(), 1);
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let auth = r#"{"jsonrpc":"2.0","id":1,"method":"public/auth","params":{"grant_type":"client_credentials","client_id":"me","client_secret":"s3cr3t"}}"#;
        let reply = r#"{"result":{"access_token":"tok","refresh_token":"ref","scope":"connection","nested":[{"signature":"x"}]}}"#;
        let a = redact_text(auth);
        assert!(!a.contains("s3cr3t") && a.contains("\"client_id\":\"me\"") && a.contains("<redacted>"), "{a}");
        let r = redact_text(reply);
        assert!(!r.contains("\"tok\"") && !r.contains("\"ref\"") && !r.contains("\"x\""), "{r}");
        assert!(r.contains("\"scope\":\"connection\""), "{r}");
        assert_eq!(redact_text(r#"{"price":1}"#), r#"{"price":1}"#, "untouched when nothing secret");
        assert!(!redact_text("client_secret=abc").contains("abc"));
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let path = temp("rotate");
        let options = RecordOptions { rotate_bytes: 1000, keep: 2, ..RecordOptions::default() };
        let rec = Recorder::open(&path, options).unwrap();
        for i in 0..100 {
            rec.record(Direction::In, FrameKind::Text, Bytes::from(format!("message number {i:04} ..........")));
        }
        let stats = rec.finish().unwrap();
        assert!(stats.rotations >= 3, "{stats:?}");
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(path.exists() && numbered(1).exists() && numbered(2).exists() && !numbered(3).exists());
        for p in [&path, &numbered(1), &numbered(2)] {
            assert!(fs::metadata(p).unwrap().len() <= 1000 + 120, "{p:?}");
        }
        let last = fs::read_to_string(&path).unwrap();
        assert!(last.contains("message number 0099"), "the newest file holds the last frames");
    }

    /// A writer that falls behind never blocks `record`: past `queue_bytes` frames are
    /// dropped and counted; what was written plus what was dropped is everything.
    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let path = temp("flood");
        let options = RecordOptions { queue_bytes: 64 << 10, ..RecordOptions::default() };
        let rec = Recorder::open(&path, options).unwrap();
        let payload = Bytes::from(vec![b'x'; 16 << 10]);
        let n = 2_000u64;
        for _ in 0..n {
            rec.record(Direction::In, FrameKind::Binary, payload.clone());
        }
        let stats = rec.finish().unwrap();
        assert_eq!(stats.written + stats.dropped, n, "{stats:?}");
        assert!(stats.dropped > 0, "2,000 frames of 16 KiB outran the writer: {stats:?}");
        assert!(stats.peak_queued_bytes <= 64 << 10, "the ceiling held: {stats:?}");
        let lines = fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(lines, stats.written);
    }

    #[test]
    fn bad_options_and_paths_are_typed_errors() {
        let path = temp("bad");
        assert!(matches!(
            Recorder::open(&path, RecordOptions { rotate_bytes: 0, ..RecordOptions::default() }),
            Err(RecordError::Options(_))
        ));
        let missing = path.with_file_name("no-such-dir").join("x.jsonl");
        let err = Recorder::open(&missing, RecordOptions::default()).unwrap_err();
        assert!(matches!(err, RecordError::Io { .. }) && err.to_string().contains("no-such-dir"), "{err}");
    }
}
