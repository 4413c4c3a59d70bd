//! The client side of the WebSocket opening handshake, over HTTP/1.1 (RFC 6455 §4)
//! and over HTTP/2 extended CONNECT (RFC 8441 §4): the request headers to send and
//! the checks on the response.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue, UPGRADE};
use sha1::{Digest, Sha1};

use super::error::HandshakeError;
use super::extension::{DeflateConfig, DeflateParams, parse_extensions};

/// The GUID of RFC 6455 §1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `sec-websocket-key`.
pub const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// `sec-websocket-accept`.
pub const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
/// `sec-websocket-version`.
pub const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
/// `sec-websocket-protocol`.
pub const SEC_WEBSOCKET_PROTOCOL: HeaderName = HeaderName::from_static("sec-websocket-protocol");
/// `sec-websocket-extensions`.
pub const SEC_WEBSOCKET_EXTENSIONS: HeaderName = HeaderName::from_static("sec-websocket-extensions");

/// The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 §4.2.2).
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(moorline_proto::ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Which HTTP carries the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `GET` with `Upgrade: websocket`; success is `101`.
    Http1,
    /// Extended CONNECT with `:protocol websocket`; success is any `2xx`.
    Http2,
}

/// What the handshake agreed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// permessage-deflate parameters, if the server accepted it.
    pub deflate: Option<DeflateParams>,
}

/// One client handshake: built from a nonce, it writes the request headers and
/// checks the response.
///
/// ```
/// use http::{HeaderMap, HeaderValue, StatusCode};
/// use moorline_proto::ws::{Carrier, ClientHandshake, accept_key};
///
/// let hs = ClientHandshake::new([7; 16], vec!["json.v1".into()], None).unwrap();
/// let mut request = HeaderMap::new();
/// hs.write_headers(Carrier::Http1, &mut request);
/// assert_eq!(request["sec-websocket-protocol"], "json.v1");
///
/// let mut response = HeaderMap::new();
/// response.insert("upgrade", HeaderValue::from_static("websocket"));
/// response.insert("connection", HeaderValue::from_static("Upgrade"));
/// response.insert("sec-websocket-accept", accept_key(hs.key()).parse().unwrap());
/// response.insert("sec-websocket-protocol", HeaderValue::from_static("json.v1"));
/// let agreed = hs.check_response(Carrier::Http1, StatusCode::SWITCHING_PROTOCOLS, &response).unwrap();
/// assert_eq!(agreed.protocol.as_deref(), Some("json.v1"));
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

impl ClientHandshake {
    /// A handshake with key `base64(nonce)` (the nonce must be random: RFC 6455 §4.1),
    /// offering `protocols` (tokens, in preference order) and permessage-deflate if given.
    pub fn new(
        nonce: [u8; 16],
        protocols: Vec<String>,
        deflate: Option<DeflateConfig>,
    ) -> Result<Self, HandshakeError> {
        if let Some(bad) = protocols.iter().find(|p| !is_token(p)) {
            return Err(HandshakeError::BadConfig(format!("subprotocol {bad:?} is not an HTTP token")));
        }
        if let Some(config) = &deflate {
            config.validate()?;
        }
        Ok(Self { key: STANDARD.encode(nonce), protocols, deflate })
    }

    /// The `Sec-WebSocket-Key` (HTTP/1.1 only).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Adds the handshake's headers to a request's `headers` (which may already hold
    /// the user's extra headers; ours replace any of the same name).
    pub fn write_headers(&self, carrier: Carrier, headers: &mut HeaderMap) {
        if carrier == Carrier::Http1 {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(key) = HeaderValue::from_str(&self.key) {
                headers.insert(SEC_WEBSOCKET_KEY, key);
            }
        }
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.remove(SEC_WEBSOCKET_PROTOCOL);
        if !self.protocols.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.protocols.join(", "))
        {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, v);
        }
        headers.remove(SEC_WEBSOCKET_EXTENSIONS);
        if let Some(config) = &self.deflate
            && let Ok(v) = HeaderValue::from_str(&config.offer())
        {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, v);
        }
    }

    /// Checks the server's response and returns what was agreed.
    pub fn check_response(
        &self,
        carrier: Carrier,
        status: http::StatusCode,
        headers: &HeaderMap,
    ) -> Result<Negotiated, HandshakeError> {
        match carrier {
            Carrier::Http1 => {
                if status != http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(HandshakeError::Status { status: status.as_u16() });
                }
                if !has_token(headers, &UPGRADE, "websocket") {
                    return Err(HandshakeError::MissingUpgrade);
                }
                if !has_token(headers, &CONNECTION, "upgrade") {
                    return Err(HandshakeError::MissingConnectionUpgrade);
                }
                let expected = accept_key(&self.key);
                let mut got = headers.get_all(SEC_WEBSOCKET_ACCEPT).iter();
                let first = got.next().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                if first.as_deref().map(str::trim) != Some(expected.as_str()) || got.next().is_some() {
                    return Err(HandshakeError::BadAccept { expected, got: first });
                }
            }
            Carrier::Http2 => {
                if !status.is_success() {
                    return Err(HandshakeError::Status { status: status.as_u16() });
                }
            }
        }
        Ok(Negotiated { protocol: self.check_protocol(headers)?, deflate: self.check_extensions(headers)? })
    }

    fn check_protocol(&self, headers: &HeaderMap) -> Result<Option<String>, HandshakeError> {
        let mut values = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
        let Some(value) = values.next() else { return Ok(None) };
        let value = value.to_str().map_err(|_| HandshakeError::BadHeaderValue("sec-websocket-protocol"))?.trim();
        if values.next().is_some() || !self.protocols.iter().any(|p| p == value) {
            return Err(HandshakeError::UnofferedProtocol(value.to_owned()));
        }
        Ok(Some(value.to_owned()))
    }

    fn check_extensions(&self, headers: &HeaderMap) -> Result<Option<DeflateParams>, HandshakeError> {
        let values = headers
            .get_all(SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(|v| v.to_str().map_err(|_| HandshakeError::BadHeaderValue("sec-websocket-extensions")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut agreed = None;
        for ext in parse_extensions(values)? {
            match (&self.deflate, ext.name.as_str()) {
                (Some(config), "permessage-deflate") if agreed.is_none() => agreed = Some(config.accept(&ext.params)?),
                (Some(_), "permessage-deflate") => {
                    return Err(HandshakeError::BadExtension("permessage-deflate accepted twice".into()));
                }
                _ => return Err(HandshakeError::BadExtension(format!("{ext} was not offered"))),
            }
        }
        Ok(agreed)
    }
}

/// Whether a comma-separated header holds `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
