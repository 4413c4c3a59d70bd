//! The fast read of the frames a feed is made of: notifications.
//!
//! A market-data feed is almost only notifications (`{"method":"subscription","params":
//! {"channel":..,"data":..}}`), and the client needs three strings from each: the method,
//! `params.channel` and `params.type`. [`parse`](super::parse) checks every token of the
//! frame, `data` included, with serde_json (about 1 GB/s on an order book, 7 GB/s on one long
//! string); the user then parses the same frame again to read `data`. [`notification`] reads
//! the envelope token by token and crosses `data` (and any member the client does not use)
//! by its structure only: strings are found closed with one SIMD search (`memchr`) for their
//! quote or escape, brackets and braces are matched (nesting up to 128), and literals and
//! numbers are made of the characters they may contain. What it does not check is left to
//! whoever reads `data` (the user's deserializer, the Deribit adapter's typed events): a
//! string's escapes and control characters, the commas and colons between a container's
//! tokens, a number's exact form.
//!
//! It answers only for what it is sure of: a well-formed object with a string `method`,
//! `params` (an object, or anything else, read as no params), no `id`, `result` or `error`,
//! no key written twice, the strings it returns without escapes. Anything else, a response
//! included, is `None`: the caller reads the frame with [`parse`](super::parse), which
//! explains what is wrong. On every frame it accepts it agrees with `parse` (a property test
//! compares them on generated frames, malformed ones included).
//!
//! Measured (`cargo bench -p moorline-client --bench jsonrpc_scan`, 2026-12-05): see
//! `docs/DESIGN.md`, "JSON-RPC notifications".

use memchr::memchr2;

/// A notification, as far as routing needs it (strings borrowed from the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice<'a> {
    /// The method (`subscription`, `heartbeat`...).
    pub method: &'a str,
    /// `params.channel`, when it is a string.
    pub channel: Option<&'a str>,
    /// `params.type`, when it is a string.
    pub kind: Option<&'a str>,
    /// `params.data` as a slice of the frame, crossed by its structure but not checked
    /// token by token: read it with a deserializer (which checks it).
    pub data: Option<&'a str>,
}

/// Reads `text` as a notification; `None` when it is anything else or not sure (read it with
/// [`parse`](super::parse) then). See the [module documentation](self).
///
/// ```
/// use moorline_client::jsonrpc::scan::{Notice, notification};
///
/// let frame = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"bids":[[65000.5,10.0]],"asks":[]}}}"#;
/// assert_eq!(
///     notification(frame),
///     Some(Notice {
///         method: "subscription",
///         channel: Some("book.BTC-PERPETUAL.100ms"),
///         kind: None,
///         data: Some(r#"{"bids":[[65000.5,10.0]],"asks":[]}"#),
///     })
/// );
/// // Responses, and anything unsure, are for the full parser.
/// assert_eq!(notification(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#), None);
/// assert_eq!(notification(r#"{"method":"subscription","params":{"channel":"a","data":[1,2"#), None);
/// ```
pub fn notification(text: &str) -> Option<Notice<'_>> {
    let mut r = Reader { text, at: 0 };
    r.ws();
    r.eat(b'{')?;
    let mut method = None;
    let mut params: Option<Members<'_>> = None;
    loop {
        match r.key()? {
            "method" if method.is_none() => method = Some(r.plain_string()?),
            "params" if params.is_none() => params = Some(r.params()?),
            // Responses, and keys written twice (serde's derive refuses them), are the full
            // parser's.
            "method" | "params" | "id" | "result" | "error" => return None,
            _ => r.skip_value()?,
        }
        if !r.more()? {
            break;
        }
    }
    r.ws();
    if r.at != text.len() {
        return None;
    }
    let (channel, kind, data) = params.unwrap_or_default();
    Some(Notice { method: method?, channel, kind, data })
}

/// The index of the first `"` or `\\` at or after `from` (`memchr`'s SIMD search).
#[inline]
fn quote_or_escape(bytes: &[u8], from: usize) -> Option<usize> {
    memchr2(b'"', b'\\', bytes.get(from..)?).map(|i| from + i)
}

/// `params.channel`, `params.type` and `params.data`.
type Members<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// The deepest nesting crossed (serde_json refuses deeper than 128 too).
const MAX_DEPTH: u32 = 128;

/// A cursor over the frame's bytes.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// An object member's key and its colon, with the spaces around them.
    fn key(&mut self) -> Option<&'a str> {
        self.ws();
        let key = self.plain_string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// After a member's value: `true` for a comma (another member follows), `false` for the
    /// object's closing brace, `None` for anything else.
    fn more(&mut self) -> Option<bool> {
        self.ws();
        match self.next()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// A string without escapes or control characters, borrowed; `None` for anything else.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = quote_or_escape(self.bytes(), start)?;
        let bytes = self.bytes().get(start..end)?;
        if self.bytes()[end] != b'"' || bytes.iter().any(|&b| b < 0x20) {
            return None;
        }
        self.at = end + 1;
        self.text.get(start..end)
    }

    /// Crosses a string (the opening quote already read): its closing quote, escapes skipped.
    fn cross_string(&mut self) -> Option<()> {
        loop {
            let i = quote_or_escape(self.bytes(), self.at)?;
            if self.bytes()[i] == b'"' {
                self.at = i + 1;
                return Some(());
            }
            // An escape: the next byte is never the end of the string.
            self.at = i + 2;
        }
    }

    /// `params`: `channel` and `type` when they are strings (`None` if one has escapes or
    /// a key comes twice); any value but an object is no params, as for the full parser.
    fn params(&mut self) -> Option<Members<'a>> {
        if self.peek()? != b'{' {
            self.skip_value()?;
            return Some((None, None, None));
        }
        self.at += 1;
        let (mut channel, mut kind, mut data) = (None, None, None);
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some((None, None, None));
        }
        loop {
            match self.key()? {
                "channel" if channel.is_none() => channel = Some(self.string_or_skip()?),
                "type" if kind.is_none() => kind = Some(self.string_or_skip()?),
                "data" if data.is_none() => {
                    let start = self.at;
                    self.skip_value()?;
                    data = Some(self.text.get(start..self.at)?);
                }
                // Written twice: the full parser keeps the last one; let it.
                "channel" | "type" | "data" => return None,
                _ => self.skip_value()?,
            }
            if !self.more()? {
                return Some((channel.flatten(), kind.flatten(), data));
            }
        }
    }

    /// A member the full parser reads only when it is a string: `Some(Some(s))` for a plain
    /// string, `Some(None)` for another value, `None` for a string with escapes.
    fn string_or_skip(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'"' {
            return self.plain_string().map(Some);
        }
        self.skip_value()?;
        Some(None)
    }

    /// Crosses one value by its structure (see the module documentation).
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.cross_string()
            }
            b'{' | b'[' => self.cross_container(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => {
                let rest = self.bytes().get(self.at..)?;
                let len = rest
                    .iter()
                    .position(|&b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(rest.len());
                self.at += len;
                Some(())
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word).then_some(())?;
        self.at = end;
        Some(())
    }

    /// Crosses an object or array: brackets matched by kind on a stack of bits, strings
    /// crossed whole, every other byte one of those a JSON value may hold.
    fn cross_container(&mut self) -> Option<()> {
        let bytes = self.bytes();
        // Bit `d` of `stack`: 1 if the container at depth `d` is an object.
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        let mut i = self.at;
        loop {
            // The common bytes (digits, commas, spaces...) in a tight loop of their own.
            let class = loop {
                let class = CLASS[usize::from(*bytes.get(i)?)];
                i += 1;
                if class != OTHER {
                    break class;
                }
            };
            match class {
                OPEN_OBJECT | OPEN_ARRAY => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    let object = u128::from(class == OPEN_OBJECT);
                    stack = (stack & !(1 << depth)) | (object << depth);
                    depth += 1;
                }
                CLOSE_OBJECT | CLOSE_ARRAY => {
                    let open = depth.checked_sub(1)?;
                    if ((stack >> open) & 1 == 1) != (class == CLOSE_OBJECT) {
                        return None;
                    }
                    depth = open;
                    if depth == 0 {
                        self.at = i;
                        return Some(());
                    }
                }
                QUOTE => {
                    self.at = i;
                    self.cross_string()?;
                    i = self.at;
                }
                _ => return None,
            }
        }
    }
}

const INVALID: u8 = 0;
const OTHER: u8 = 1;
const QUOTE: u8 = 2;
const OPEN_OBJECT: u8 = 3;
const CLOSE_OBJECT: u8 = 4;
const OPEN_ARRAY: u8 = 5;
const CLOSE_ARRAY: u8 = 6;

/// What each byte is inside a container, outside strings: structure, a byte a token or the
/// space between tokens may hold, or one no JSON holds there.
const CLASS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let allowed = b"0123456789-+.eEtrufalsn,: \t\n\r";
    let mut i = 0;
    while i < allowed.len() {
        t[allowed[i] as usize] = OTHER;
        i += 1;
    }
    t[b'"' as usize] = QUOTE;
    t[b'{' as usize] = OPEN_OBJECT;
    t[b'}' as usize] = CLOSE_OBJECT;
    t[b'[' as usize] = OPEN_ARRAY;
    t[b']' as usize] = CLOSE_ARRAY;
    t
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::jsonrpc::{Incoming, parse};

    fn notice<'a>(method: &'a str, channel: Option<&'a str>, kind: Option<&'a str>) -> Option<Notice<'a>> {
        Some(Notice { method, channel, kind, data: None })
    }

    /// The notice without its data (compared on its own where it matters).
    fn routed(text: &str) -> Option<Notice<'_>> {
        notification(text).map(|n| Notice { data: None, ..n })
    }

    #[test]
    fn reads_what_venues_send() {
        let deribit = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":1,"price":3920.5,"direction":"sell","liquidation":null,"block":false,"x":-1.5e-3}]}}"#;
        assert_eq!(routed(deribit), notice("subscription", Some("trades.BTC-PERPETUAL.raw"), None));
        let beat = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
        assert_eq!(notification(beat), notice("heartbeat", None, Some("test_request")));
        let spaced =
            " {\n \"method\" : \"s\" ,\t\"params\" : { \"data\" : { \"a\" : [ ] } , \"channel\" : \"c\" } } \n";
        assert_eq!(routed(spaced), notice("s", Some("c"), None));
        assert_eq!(notification(spaced).unwrap().data, Some(r#"{ "a" : [ ] }"#));
        assert_eq!(notification(r#"{"method":"m"}"#), notice("m", None, None));
        assert_eq!(notification(r#"{"method":"m","params":[1,2]}"#), notice("m", None, None));
        assert_eq!(notification(r#"{"method":"m","params":{"channel":5}}"#), notice("m", None, None));
        // Escapes inside data are crossed, not read.
        let escaped = r#"{"method":"m","params":{"channel":"c","data":"a\"}]\\"}}"#;
        assert_eq!(routed(escaped), notice("m", Some("c"), None));
        assert_eq!(notification(escaped).unwrap().data, Some(r#""a\"}]\\""#));
    }

    #[test]
    fn leaves_to_the_full_parser_what_it_is_not_sure_of() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"result":[]}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}"#,
            r#"{"method":"m","id":3}"#,
            r#"{"method":"m\n"}"#,
            r#"{"method":"a","method":"b"}"#,
            r#"{"method":"m","params":{"channel":"a","channel":"b"}}"#,
            r#"{"method":"m","params":{"channel":"a\u0062"}}"#,
            r#"{"method":5}"#,
            r#"{"params":{}}"#,
            r#"{}"#,
            r#"[1]"#,
            r#"{"method":"m"} x"#,
            r#"{"method":"m","params":{"channel":"a","data":[1,2}}}"#,
            r#"{"method":"m","params":{"channel":"a","data":{"x":[}]}}}"#,
            r#"{"method":"m","params":{"channel":"a","data":"unterminated}}"#,
            r#"{"method":"m","params":{"channel":"a","data":<html>}}"#,
            r#"{"method":"m","params":{"channel":"a","data":tru}}"#,
            "{\"method\":\"m\",\"params\":{\"channel\":\"a\",\"data\":[\u{1}]}}",
            "",
            "{",
        ] {
            assert_eq!(notification(text), None, "{text}");
        }
        let deep = format!(r#"{{"method":"m","params":{{"data":{}{}}}}}"#, "[".repeat(129), "]".repeat(129));
        assert_eq!(notification(&deep), None);
        let fine = format!(r#"{{"method":"m","params":{{"data":{}{}}}}}"#, "[".repeat(128), "]".repeat(128));
        assert_eq!(routed(&fine), notice("m", None, None));
    }

    /// A small deterministic generator of frames, well-formed and broken, for the property
    /// that the scan never disagrees with the full parser on a frame it accepts.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
        fn value(&mut self, depth: u32) -> String {
            match self.next() % if depth > 3 { 4 } else { 6 } {
                0 => self.pick(&["1", "-2.5e3", "0", "true", "false", "null"]).to_owned(),
                1 => format!("\"{}\"", self.pick(&["a", "", "x\\\"y", "\\\\", "é€", "}]"])),
                2 => self.pick(&["\"ch\"", "\"book.BTC-PERPETUAL.100ms\""]).to_owned(),
                3 => self.pick(&["[]", "{}", "[1,2]"]).to_owned(),
                4 => {
                    let n = self.next() % 4;
                    let items: Vec<String> = (0..n).map(|_| self.value(depth + 1)).collect();
                    format!("[{}]", items.join(","))
                }
                _ => {
                    let n = self.next() % 4;
                    let items: Vec<String> = (0..n)
                        .map(|_| {
                            let k = self.pick(&["channel", "type", "data", "k", "id", "method"]);
                            format!("\"{k}\":{}", self.value(depth + 1))
                        })
                        .collect();
                    format!("{{{}}}", items.join(","))
                }
            }
        }
        fn frame(&mut self) -> String {
            let n = 1 + self.next() % 4;
            let mut members: Vec<String> = Vec::new();
            // Two frames in three start as a notification.
            if !self.next().is_multiple_of(3) {
                let method = self.pick(&["\"subscription\"", "\"heartbeat\""]);
                members.push(format!("\"method\":{method}"));
                let mut params = Vec::new();
                for k in ["channel", "type", "data", "k"] {
                    if self.next().is_multiple_of(2) {
                        params.push(format!("\"{k}\":{}", self.value(0)));
                    }
                }
                members.push(format!("\"params\":{{{}}}", params.join(",")));
            }
            let extra = self.next() % 2;
            members.extend(
                (0..n * extra)
                    .map(|_| {
                        let k = self.pick(&["method", "params", "params", "jsonrpc", "id", "result", "x"]);
                        let v = match k {
                            "method" => self.pick(&["\"subscription\"", "\"heartbeat\"", "5", "\"a\\nb\""]).to_owned(),
                            _ => self.value(0),
                        };
                        format!("\"{k}\":{v}")
                    })
                    .collect::<Vec<_>>(),
            );
            let mut text = format!("{{{}}}", members.join(","));
            // Break one in three: cut it, or change a byte.
            match self.next() % 6 {
                0 => {
                    let at = (self.next() as usize) % text.len();
                    text.truncate(text.floor_char_boundary(at));
                }
                1 => {
                    let at = text.floor_char_boundary((self.next() as usize) % text.len());
                    let with = self.pick(&["}", "]", "\"", ",", "x", " ", "{", "["]);
                    text.replace_range(at..text.ceil_char_boundary(at + 1), with);
                }
                _ => {}
            }
            text
        }
    }

    #[test]
    fn agrees_with_the_full_parser_on_every_frame_it_accepts() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut total, mut agreed) = (0, 0, 0);
        for _ in 0..200_000 {
            let text = g.frame();
            total += 1;
            let Some(n) = notification(&text) else { continue };
            accepted += 1;
            // Accepted frames are structurally sound JSON objects; where the full parser
            // accepts them it must read the same notification.
            match parse(&text) {
                Ok(Incoming::Notification { method, params }) => {
                    assert_eq!(method, n.method, "{text}");
                    assert_eq!(params.channel.as_deref(), n.channel, "{text}");
                    assert_eq!(params.kind.as_deref(), n.kind, "{text}");
                    assert_eq!(params.data.map(|d| d.get()), n.data, "{text}");
                    agreed += 1;
                }
                // The scan checks structure, not every token: a frame broken inside a value
                // it only crosses may be refused by the full parser, never read differently.
                Err(_) => assert!(serde_json::from_str::<serde_json::Value>(&text).is_err(), "{text}"),
                Ok(other) => panic!("the scan read a notification, the parser {other:?}: {text}"),
            }
        }
        // The generator must exercise both sides.
        assert!(accepted > total / 5 && accepted < total * 4 / 5, "{accepted} of {total}");
        // Most of what it accepts is valid JSON-RPC (the rest: broken inside a crossed value).
        assert!(agreed > accepted * 9 / 10, "{agreed} of {accepted}");
    }
}
