//! The `Sec-WebSocket-Extensions` header (RFC 6455 §9.1) and permessage-deflate
//! negotiation (RFC 7692 §7): what a client offers and what it accepts back.

use std::fmt;

use super::error::HandshakeError;

/// The smallest and largest LZ77 window sizes (base-2 logarithm) RFC 7692 allows.
pub const WINDOW_BITS: std::ops::RangeInclusive<u8> = 8..=15;

/// What a client asks for in its permessage-deflate offer.
///
/// The defaults offer permessage-deflate with context takeover both ways and
/// announce that we accept a `client_max_window_bits` from the server (so a
/// server with little memory can ask us to use a smaller window).
///
/// ```
/// use moorline_proto::ws::DeflateConfig;
///
/// let offer = DeflateConfig::default().server_no_context_takeover(true).offer();
/// assert_eq!(offer, "permessage-deflate; server_no_context_takeover; client_max_window_bits");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateConfig {
    /// Ask the server to reset its compression context after each message.
    pub server_no_context_takeover: bool,
    /// Promise to reset our compression context after each message.
    pub client_no_context_takeover: bool,
    /// Ask the server to use at most this window (8..=15); `None`: its choice.
    pub server_max_window_bits: Option<u8>,
    /// Use at most this window ourselves (8..=15); `None`: 15, and the server may ask for less.
    pub client_max_window_bits: Option<u8>,
}

impl DeflateConfig {
    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`server_max_window_bits`](Self::server_max_window_bits).
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets [`client_max_window_bits`](Self::client_max_window_bits).
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Checks the window sizes are within 8..=15.
    pub fn validate(&self) -> Result<(), HandshakeError> {
        for (name, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if let Some(bits) = bits
                && !WINDOW_BITS.contains(&bits)
            {
                return Err(HandshakeError::BadConfig(format!("{name} must be 8..=15, got {bits}")));
            }
        }
        Ok(())
    }

    /// The offer, as one element of `Sec-WebSocket-Extensions`.
    pub fn offer(&self) -> String {
        let mut out = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        match self.client_max_window_bits {
            Some(bits) => out.push_str(&format!("; client_max_window_bits={bits}")),
            None => out.push_str("; client_max_window_bits"),
        }
        out
    }

    /// Checks the server's answer to [`offer`](Self::offer) and returns what was agreed.
    ///
    /// Fails on unknown, repeated or malformed parameters, and on values the
    /// offer does not allow (RFC 7692 §7.1).
    pub fn accept(&self, params: &[Param]) -> Result<DeflateParams, HandshakeError> {
        let mut agreed = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: 15,
            client_max_window_bits: self.client_max_window_bits.unwrap_or(15),
        };
        let mut seen: Vec<&str> = Vec::new();
        for param in params {
            let name = param.name.as_str();
            if seen.contains(&name) {
                return Err(bad(format!("parameter {name} repeated")));
            }
            seen.push(name);
            match name {
                "server_no_context_takeover" => {
                    no_value(param)?;
                    agreed.server_no_context_takeover = true;
                }
                "client_no_context_takeover" => {
                    no_value(param)?;
                    agreed.client_no_context_takeover = true;
                }
                "server_max_window_bits" => {
                    let bits = window_bits(param)?;
                    if let Some(asked) = self.server_max_window_bits
                        && bits > asked
                    {
                        return Err(bad(format!("server_max_window_bits={bits} exceeds the {asked} offered")));
                    }
                    agreed.server_max_window_bits = bits;
                }
                "client_max_window_bits" => {
                    let bits = window_bits(param)?;
                    if let Some(ours) = self.client_max_window_bits
                        && bits > ours
                    {
                        return Err(bad(format!("client_max_window_bits={bits} exceeds the {ours} offered")));
                    }
                    agreed.client_max_window_bits = bits;
                }
                other => return Err(bad(format!("unknown parameter {other}"))),
            }
        }
        if let Some(asked) = self.server_max_window_bits
            && !seen.contains(&"server_max_window_bits")
        {
            // A server that accepts an offer with server_max_window_bits must answer it.
            return Err(bad(format!("server_max_window_bits={asked} was offered but not answered")));
        }
        Ok(agreed)
    }
}

fn bad(detail: String) -> HandshakeError {
    HandshakeError::BadExtension(format!("permessage-deflate: {detail}"))
}

fn no_value(param: &Param) -> Result<(), HandshakeError> {
    match &param.value {
        None => Ok(()),
        Some(v) => Err(bad(format!("{} takes no value, got {v:?}", param.name))),
    }
}

fn window_bits(param: &Param) -> Result<u8, HandshakeError> {
    let value = param.value.as_deref().ok_or_else(|| bad(format!("{} needs a value", param.name)))?;
    // RFC 7692: 1*DIGIT without leading zeros, 8..=15.
    let bits = if value.starts_with('0') { None } else { value.parse::<u8>().ok() };
    bits.filter(|b| WINDOW_BITS.contains(b)).ok_or_else(|| bad(format!("{}={value:?} is not 8..=15", param.name)))
}

/// What client and server agreed for permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message (we may reset our inflater).
    pub server_no_context_takeover: bool,
    /// We reset our compression context after each message.
    pub client_no_context_takeover: bool,
    /// The window the server compresses with (our inflater needs at least this).
    pub server_max_window_bits: u8,
    /// The window we may compress with.
    pub client_max_window_bits: u8,
}

/// One parameter of an extension: `name` or `name=value` (quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name, lower-cased.
    pub name: String,
    /// Its value, if any.
    pub value: Option<String>,
}

/// One element of `Sec-WebSocket-Extensions`: a name and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Extension name, lower-cased (e.g. `permessage-deflate`).
    pub name: String,
    /// Its parameters, in order.
    pub params: Vec<Param>,
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for p in &self.params {
            match &p.value {
                Some(v) => write!(f, "; {}={v}", p.name)?,
                None => write!(f, "; {}", p.name)?,
            }
        }
        Ok(())
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(s: &str) -> Result<String, HandshakeError> {
    let s = s.trim();
    if s.is_empty() || !s.chars().all(is_tchar) {
        return Err(HandshakeError::BadExtension(format!("{s:?} is not a token")));
    }
    Ok(s.to_ascii_lowercase())
}

/// Splits `s` on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Result<Vec<&str>, HandshakeError> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return Err(HandshakeError::BadExtension(format!("unterminated quoted string in {s:?}")));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn param(s: &str) -> Result<Param, HandshakeError> {
    match s.split_once('=') {
        None => Ok(Param { name: token(s)?, value: None }),
        Some((name, value)) => {
            let value = value.trim();
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.replace('\\', ""),
                None => value.to_owned(),
            };
            // RFC 6455 §9.1: the value (unquoted) must be a token.
            Ok(Param { name: token(name)?, value: Some(token(&value).map(|_| value)?) })
        }
    }
}

/// Parses every `Sec-WebSocket-Extensions` header value given (in order).
///
/// ```
/// use moorline_proto::ws::parse_extensions;
///
/// let exts = parse_extensions(["permessage-deflate; client_max_window_bits=\"10\", x-foo"]).unwrap();
/// assert_eq!(exts[0].name, "permessage-deflate");
/// assert_eq!(exts[0].params[0].value.as_deref(), Some("10"));
/// assert_eq!(exts[1].name, "x-foo");
/// ```
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Extension>, HandshakeError> {
    let mut out = Vec::new();
    for value in values {
        for element in split_unquoted(value, ',')? {
            if element.trim().is_empty() {
                continue;
            }
            let mut parts = split_unquoted(element, ';')?.into_iter();
            let name = token(parts.next().unwrap_or_default())?;
            let params = parts.map(param).collect::<Result<Vec<_>, _>>()?;
            out.push(Extension { name, params });
        }
    }
    Ok(out)
}
