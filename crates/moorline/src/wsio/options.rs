//! [`WsOptions`]: how a WebSocket is opened and run.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use moorline_proto::ws::{DeflateConfig, Limits};

use crate::error::{Error, OptionsError};
use crate::options::Keepalive;

/// The default WebSocket keepalive: a ping after 30 s without any inbound frame, 10 s to
/// hear anything back (as the HTTP/2 keepalive's defaults).
pub const DEFAULT_WS_KEEPALIVE: Keepalive =
    Keepalive { interval: Duration::from_secs(30), timeout: Duration::from_secs(10) };

/// Options of one WebSocket upgrade.
///
/// | option | default | meaning |
/// |---|---|---|
/// | `header(name, value)` | none | extra request headers (e.g. `origin`, auth) |
/// | `protocols` | none | subprotocols offered, in preference order; the chosen one is reported |
/// | `deflate` | off | offer permessage-deflate with these parameters |
/// | `max_frame_size` | 16 MiB | largest frame accepted |
/// | `max_message_size` | 64 MiB | largest message accepted (after inflation) |
/// | `max_frame_payload` | none | split outgoing messages into frames of this size |
/// | `compress_min_size` | 64 B | smaller outgoing messages are not compressed |
/// | `auto_pong` | on | answer pings with pongs (the latest of those that arrive before our pong leaves) |
/// | `surface_control` | off | also deliver pings and pongs to the owner |
/// | `close_timeout` | 5 s | how long the closing handshake may take |
/// | `keepalive` | ping after 30 s of silence, 10 s to answer | any inbound frame counts as life; no answer ends the connection with `Down { WsKeepaliveTimeout }` |
/// | `http2` | off | [`connect`](crate::ws::connect): offer HTTP/2 by ALPN and use RFC 8441 when the server allows it |
/// | `fallback_http1` | off | [`connect`](crate::ws::connect): if WebSocket over HTTP/2 is refused, retry on a fresh HTTP/1.1 connection |
///
/// ```
/// use std::time::Duration;
/// use moorline::ws::{DeflateConfig, WsOptions};
///
/// let options = WsOptions::default()
///     .protocols(["json.v2"])
///     .deflate(DeflateConfig::default())
///     .header("origin", "https://example.org")
///     .unwrap()
///     .max_message_size(1 << 20)
///     .close_timeout(Duration::from_secs(2));
/// assert_eq!(options.limits.max_message_size, 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Subprotocols offered, in preference order.
    pub protocols: Vec<String>,
    /// permessage-deflate offer (`None`: not offered).
    pub deflate: Option<DeflateConfig>,
    /// Size limits for received frames and messages.
    pub limits: Limits,
    /// Split outgoing data messages into frames of at most this many bytes.
    pub max_frame_payload: Option<usize>,
    /// With permessage-deflate, outgoing messages shorter than this are sent uncompressed.
    pub compress_min_size: usize,
    /// Answer pings with pongs. Pings that arrive while our pong has not left yet replace
    /// it: only the latest is answered (RFC 6455 §5.5.3), so a ping flood costs one pong.
    pub auto_pong: bool,
    /// Deliver pings and pongs to the owner as well.
    pub surface_control: bool,
    /// How long the closing handshake may take before the connection is dropped
    /// (`Duration::MAX`: wait for the server as long as it takes).
    pub close_timeout: Duration,
    /// Keepalive: after `interval` without any inbound frame a ping is sent; if nothing at
    /// all arrives within `timeout` after it, the connection is declared dead and goes down
    /// with [`DownReason::WsKeepaliveTimeout`](crate::DownReason::WsKeepaliveTimeout) (then
    /// reconnects per the retry policy). `None`: no pings. Default
    /// [`DEFAULT_WS_KEEPALIVE`].
    pub keepalive: Option<Keepalive>,
    /// [`connect`](crate::ws::connect) offers HTTP/2 (opt-in: proxies break WebSockets over it).
    pub http2: bool,
    /// [`connect`](crate::ws::connect) retries on a fresh HTTP/1.1 connection when the server
    /// refuses WebSockets over HTTP/2.
    pub fallback_http1: bool,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            headers: HeaderMap::new(),
            protocols: Vec::new(),
            deflate: None,
            limits: Limits::default(),
            max_frame_payload: None,
            compress_min_size: 64,
            auto_pong: true,
            surface_control: false,
            close_timeout: Duration::from_secs(5),
            keepalive: Some(DEFAULT_WS_KEEPALIVE),
            http2: false,
            fallback_http1: false,
        }
    }
}

impl WsOptions {
    /// Adds a request header; fails on an invalid name or value.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        let name = HeaderName::try_from(name)
            .map_err(|_| Error::InvalidOptions(OptionsError::HeaderName { name: name.to_owned() }))?;
        let value = HeaderValue::try_from(value)
            .map_err(|_| Error::InvalidOptions(OptionsError::HeaderValue { name: name.as_str().to_owned() }))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Sets the subprotocols offered.
    pub fn protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Offers permessage-deflate.
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Sets the largest frame accepted.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// Splits outgoing messages into frames of at most `bytes`.
    pub fn max_frame_payload(mut self, bytes: Option<usize>) -> Self {
        self.max_frame_payload = bytes;
        self
    }

    /// Lets [`connect`](crate::ws::connect) offer HTTP/2 and run the WebSocket over it (RFC 8441).
    pub fn http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }

    /// Lets [`connect`](crate::ws::connect) fall back to a fresh HTTP/1.1 connection when the
    /// server refuses WebSockets over HTTP/2.
    pub fn fallback_http1(mut self, on: bool) -> Self {
        self.fallback_http1 = on;
        self
    }

    /// Sets whether pings are answered automatically.
    pub fn auto_pong(mut self, on: bool) -> Self {
        self.auto_pong = on;
        self
    }

    /// Sets whether pings and pongs are delivered to the owner.
    pub fn surface_control(mut self, on: bool) -> Self {
        self.surface_control = on;
        self
    }

    /// Sets the closing handshake timeout.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets the keepalive (`None`: no pings); see [`WsOptions::keepalive`](Self#structfield.keepalive).
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Checks the options; [`crate::Connection::ws_upgrade`] does it too.
    pub fn validate(&self) -> Result<(), Error> {
        let out = |option: &'static str, value: &str| {
            Err(Error::InvalidOptions(OptionsError::OutOfRange {
                option,
                value: value.to_owned(),
                expected: "positive",
            }))
        };
        if self.limits.max_frame_size == 0 {
            return out("limits.max_frame_size", "0");
        }
        if self.limits.max_message_size == 0 {
            return out("limits.max_message_size", "0");
        }
        if self.max_frame_payload == Some(0) {
            return out("max_frame_payload", "0");
        }
        if self.close_timeout.is_zero() {
            return out("close_timeout", "0s");
        }
        if let Some(k) = self.keepalive {
            if k.interval.is_zero() {
                return out("keepalive.interval", "0s");
            }
            if k.timeout.is_zero() {
                return out("keepalive.timeout", "0s");
            }
        }
        if let Some(d) = &self.deflate {
            d.validate().map_err(|e| Error::InvalidOptions(OptionsError::WebSocket(e)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refusal(o: &WsOptions) -> String {
        match o.validate() {
            Err(Error::InvalidOptions(e)) => e.to_string(),
            other => panic!("{o:?}: {other:?}"),
        }
    }

    /// The defaults are the ones the table in [`WsOptions`]' documentation gives.
    #[test]
    fn the_defaults_are_the_documented_ones_and_valid() {
        let o = WsOptions::default();
        o.validate().unwrap();
        assert!(o.headers.is_empty() && o.protocols.is_empty() && o.deflate.is_none());
        assert_eq!(o.limits.max_frame_size, 16 << 20);
        assert_eq!(o.limits.max_message_size, 64 << 20);
        assert_eq!(o.max_frame_payload, None);
        assert_eq!(o.compress_min_size, 64);
        assert!(o.auto_pong && !o.surface_control);
        assert_eq!(o.close_timeout, Duration::from_secs(5));
        assert!(!o.http2 && !o.fallback_http1);
    }

    #[test]
    fn each_bad_option_is_refused_with_what_to_fix() {
        let d = WsOptions::default;
        let cases = [
            (d().max_frame_size(0), "limits.max_frame_size is 0, but it must be positive"),
            (d().max_message_size(0), "limits.max_message_size is 0, but it must be positive"),
            (d().max_frame_payload(Some(0)), "max_frame_payload is 0, but it must be positive"),
            (d().close_timeout(Duration::ZERO), "close_timeout is 0s, but it must be positive"),
            (d().deflate(DeflateConfig::default().client_max_window_bits(Some(7))), "client_max_window_bits"),
            (d().deflate(DeflateConfig::default().server_max_window_bits(Some(16))), "server_max_window_bits"),
        ];
        for (o, want) in cases {
            let got = refusal(&o);
            assert!(got.contains(want), "{got:?} does not say {want:?}");
        }
    }

    #[test]
    fn limits_at_the_edge_are_accepted() {
        let d = WsOptions::default;
        for o in [
            d().max_frame_size(1).max_message_size(1),
            d().max_frame_payload(Some(1)),
            d().close_timeout(Duration::from_nanos(1)),
            d().close_timeout(Duration::MAX),
            d().deflate(DeflateConfig::default().client_max_window_bits(Some(8)).server_max_window_bits(Some(15))),
        ] {
            o.validate().unwrap();
        }
    }

    #[test]
    fn headers_are_checked_and_appended() {
        let e = WsOptions::default().header("bad name", "x").unwrap_err();
        assert!(matches!(&e, Error::InvalidOptions(OptionsError::HeaderName { name }) if name == "bad name"), "{e:?}");
        let e = WsOptions::default().header("origin", "line\nbreak").unwrap_err();
        assert!(matches!(&e, Error::InvalidOptions(OptionsError::HeaderValue { name }) if name == "origin"), "{e:?}");
        let o = WsOptions::default().header("x-token", "a").unwrap().header("x-token", "b").unwrap();
        let values: Vec<_> = o.headers.get_all("x-token").iter().collect();
        assert_eq!(values, ["a", "b"]);
    }

    #[test]
    fn the_builders_set_what_they_name() {
        let o = WsOptions::default()
            .protocols(["a", "b"])
            .max_frame_payload(Some(4096))
            .auto_pong(false)
            .surface_control(true)
            .http2(true)
            .fallback_http1(true);
        assert_eq!(o.protocols, ["a", "b"]);
        assert_eq!(o.max_frame_payload, Some(4096));
        assert!(!o.auto_pong && o.surface_control && o.http2 && o.fallback_http1);
    }
}
