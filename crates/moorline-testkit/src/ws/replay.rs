//! Recorded sessions ([`Recording`]) parsed from JSONL, for replay to clients.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::frame::Frame;
use super::rfc3339;

/// A recorded JSONL session could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A line is not a JSON object with the expected fields.
    #[error("line {line}: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A field has a value outside the format.
    #[error("line {line}: {message}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
struct Line {
    ts: Value,
    dir: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<String>,
}

/// The messages a recorded client received (`"dir": "in"` lines), with their timing.
///
/// See the [module documentation](super#recorded-sessions-jsonl) for the format.
///
/// ```
/// use std::time::Duration;
/// use moorline_testkit::ws::{Frame, Recording};
///
/// let jsonl = r#"
/// {"ts": 0, "dir": "out", "type": "text", "data": "{\"method\":\"subscribe\"}"}
/// {"ts": 10, "dir": "in", "type": "text", "data": "{\"result\":\"ok\"}"}
/// {"ts": 60, "dir": "in", "type": "binary", "data": "AAEC"}
/// "#;
/// let rec = Recording::from_jsonl(jsonl)?;
/// assert_eq!(rec.entries()[1], (Duration::from_millis(60), Frame::binary(vec![0u8, 1, 2])));
/// # Ok::<(), moorline_testkit::ws::ReplayError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recording {
    entries: Vec<(Duration, Frame)>,
    /// The recorded connections: where each one's frames start in `entries`, and the offset
    /// its own replay counts from (see [`Recording::sessions`]).
    sessions: Vec<(usize, Duration)>,
}

impl Recording {
    /// Parses JSONL text (blank lines are skipped).
    pub fn from_jsonl(text: &str) -> Result<Self, ReplayError> {
        let mut entries = Vec::new();
        let mut sessions: Vec<(usize, Duration)> = Vec::new();
        // The last frame played was a close: the next one belongs to a new connection.
        let mut after_close = false;
        // Whether timestamps are RFC 3339 (and the first one seen, in Unix ms), or numbers.
        let mut rfc3339_origin: Option<f64> = None;
        let mut numeric: Option<bool> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let invalid = |message: String| ReplayError::Invalid { line, message };
            let parsed: Line = serde_json::from_str(raw).map_err(|source| ReplayError::Json { line, source })?;
            let (ms, is_number) = match &parsed.ts {
                Value::Number(n) => (n.as_f64().ok_or_else(|| invalid(format!("bad ts {n}")))?, true),
                Value::String(s) => {
                    (rfc3339::parse_ms(s).ok_or_else(|| invalid(format!("ts {s:?} is not RFC 3339")))?, false)
                }
                other => return Err(invalid(format!("ts must be a number or a string, got {other}"))),
            };
            if *numeric.get_or_insert(is_number) != is_number {
                return Err(invalid("numeric and RFC 3339 timestamps mixed".to_owned()));
            }
            let offset_ms = if is_number { ms } else { ms - *rfc3339_origin.get_or_insert(ms) };
            let offset = Duration::try_from_secs_f64(offset_ms.max(0.0) / 1000.0)
                .map_err(|e| invalid(format!("bad ts: {e}")))?;
            match parsed.dir.as_str() {
                "in" => {}
                "out" => continue,
                // A new connection starts here; other notes are skipped (later kinds).
                "meta" => {
                    if parsed.kind == "connected" {
                        sessions.push((entries.len(), offset));
                        after_close = false;
                    }
                    continue;
                }
                other => return Err(invalid(format!("dir must be \"in\", \"out\" or \"meta\", got {other:?}"))),
            }
            let frame = decode(&parsed.kind, parsed.data.as_deref().unwrap_or("")).map_err(invalid)?;
            if sessions.is_empty() {
                // Frames before any marker: the first connection, timed from the file's start.
                sessions.push((0, Duration::ZERO));
            } else if after_close {
                // No marker after the server's close frame: the next connection starts here.
                sessions.push((entries.len(), offset));
            }
            after_close = matches!(frame, Frame::Close(_));
            entries.push((offset, frame));
        }
        Ok(Self { entries, sessions })
    }

    /// How many connections the recording holds: one per `"dir":"meta","type":"connected"`
    /// line (which the client's recorder writes at every connect), and a new one after an
    /// inbound close frame that no such line follows. A file with neither holds one.
    pub fn sessions(&self) -> usize {
        self.sessions.len().max(1)
    }

    /// The frames connection `index` received, each with its offset from that connection's
    /// start (its `connected` line, or its first frame); empty past the last connection.
    pub fn session(&self, index: usize) -> Vec<(Duration, Frame)> {
        if self.sessions.is_empty() {
            return if index == 0 { self.entries.clone() } else { Vec::new() };
        }
        let Some(&(start, origin)) = self.sessions.get(index) else { return Vec::new() };
        let end = self.sessions.get(index + 1).map_or(self.entries.len(), |s| s.0);
        self.entries[start..end].iter().map(|(at, f)| (at.saturating_sub(origin), f.clone())).collect()
    }

    /// The frames to play, each with its offset from the start of the replay, in file order.
    pub fn entries(&self) -> &[(Duration, Frame)] {
        &self.entries
    }

    /// Number of frames to play.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing to play.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn decode(kind: &str, data: &str) -> Result<Frame, String> {
    let bytes = || BASE64.decode(data).map(Bytes::from).map_err(|e| format!("bad base64 data: {e}"));
    Ok(match kind {
        "text" => Frame::Text(data.to_owned()),
        "binary" => Frame::Binary(bytes()?),
        "ping" => Frame::Ping(bytes()?),
        "pong" => Frame::Pong(bytes()?),
        "close" if data.trim().is_empty() => Frame::Close(None),
        "close" => {
            let (code, reason) = data.split_once(' ').unwrap_or((data, ""));
            let code = code.parse::<u16>().map_err(|_| format!("bad close code {code:?}"))?;
            Frame::Close(Some((code, reason.to_owned())))
        }
        other => return Err(format!("unknown type {other:?}")),
    })
}

/// Latest offset a replayed frame is scheduled at (a year: "never" in a test).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// When each entry is due, relative to the start of the replay, at `speed` (2.0 = twice as fast).
pub(crate) fn schedule(recording: &Recording, speed: f64) -> Vec<(Duration, Frame)> {
    scale(recording.entries.clone(), speed)
}

/// `entries` with their offsets divided by `speed` (capped at a year).
pub(crate) fn scale(entries: Vec<(Duration, Frame)>, speed: f64) -> Vec<(Duration, Frame)> {
    let speed = if speed.is_finite() && speed > 0.0 { speed } else { 1.0 };
    let scaled = |at: Duration| Duration::try_from_secs_f64(at.as_secs_f64() / speed).map_or(FAR, |d| d.min(FAR));
    entries.into_iter().map(|(at, frame)| (scaled(at), frame)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_relative_to_first_line_and_out_lines_are_skipped() {
        let rec = Recording::from_jsonl(concat!(
            r#"{"ts":"2024-01-01T00:00:00Z","dir":"out","type":"text","data":"sub"}"#,
            "\n",
            r#"{"ts":"2024-01-01T00:00:00.500Z","dir":"in","type":"close","data":"4000 bye now"}"#,
        ))
        .unwrap();
        assert_eq!(rec.entries(), &[(Duration::from_millis(500), Frame::close(4000, "bye now"))]);
        assert_eq!(schedule(&rec, 2.0)[0].0, Duration::from_millis(250));
    }

    #[test]
    fn connections_split_at_markers_and_at_a_close_without_one() {
        let rec = Recording::from_jsonl(concat!(
            r#"{"ts":0,"dir":"meta","type":"connected","data":"attempt 1"}"#,
            "\n",
            r#"{"ts":5,"dir":"in","type":"text","data":"a1"}"#,
            "\n",
            r#"{"ts":9,"dir":"in","type":"close","data":"1001 going away"}"#,
            "\n",
            r#"{"ts":100,"dir":"in","type":"text","data":"b1"}"#,
            "\n",
            r#"{"ts":300,"dir":"meta","type":"connected","data":"attempt 3"}"#,
            "\n",
            r#"{"ts":310,"dir":"out","type":"text","data":"sub"}"#,
            "\n",
            r#"{"ts":320,"dir":"meta","type":"later-kind","data":"skipped"}"#,
            "\n",
            r#"{"ts":330,"dir":"in","type":"text","data":"c1"}"#,
        ))
        .unwrap();
        assert_eq!(rec.len(), 4, "every inbound frame, as before");
        assert_eq!(rec.sessions(), 3);
        let ms = Duration::from_millis;
        assert_eq!(
            rec.session(0),
            [(ms(5), Frame::text("a1")), (ms(9), Frame::Close(Some((1001, "going away".into()))))]
        );
        assert_eq!(rec.session(1), [(ms(0), Frame::text("b1"))], "after the close: a connection of its own");
        assert_eq!(rec.session(2), [(ms(30), Frame::text("c1"))], "timed from its marker");
        assert!(rec.session(3).is_empty());
        // Without markers or closes: one connection, timed from the file's start.
        let one = Recording::from_jsonl(r#"{"ts":7,"dir":"in","type":"text","data":"x"}"#).unwrap();
        assert_eq!((one.sessions(), one.session(0)), (1, vec![(ms(7), Frame::text("x"))]));
    }

    #[test]
    fn errors_name_the_line() {
        let err = Recording::from_jsonl("\n{\"ts\":1,\"dir\":\"in\",\"type\":\"nope\"}").unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        assert!(Recording::from_jsonl("{\"ts\":1,\"dir\":\"in\",\"type\":\"binary\",\"data\":\"!!\"}").is_err());
        assert!(Recording::from_jsonl("not json").is_err());
    }
}
