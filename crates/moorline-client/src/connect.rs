//! One connection attempt: the client's configuration turned into moorline's options, and
//! `ws::connect` with moorline's own retries off (the client owns reconnection: two layers
//! retrying would fight, anchors §2).

use std::time::Duration;

use moorline::ws::{self, WsOptions, WsSession, WsUrl};
use moorline::{ConnectOptions, RetryPolicy};

use crate::config::{ClientConfig, ConfigError};

/// Checks a venue URL (`ws://` or `wss://`), with moorline's explanation when it is not one.
pub fn check_url(url: &str) -> Result<WsUrl, ConfigError> {
    WsUrl::parse(url).map_err(|e| ConfigError::Url { url: url.to_owned(), reason: e.to_string() })
}

/// moorline's connection options for one attempt: no retries of its own, the client's
/// timeouts and TLS settings. `healthy_after` is irrelevant (no retries to forgive).
pub fn connect_options(config: &ClientConfig) -> ConnectOptions {
    ConnectOptions::default()
        .retry(RetryPolicy::Never)
        .connect_timeout(config.connect_timeout)
        .tls_handshake_timeout(config.tls_timeout)
        .tls(config.tls.clone())
}

/// moorline's WebSocket options: the headers (on every attempt), the message size limit,
/// HTTP/2 opt-in with fallback to HTTP/1.1, and moorline's keepalive off (the client's
/// liveness machine pings and decides, so one layer owns liveness).
pub fn ws_options(config: &ClientConfig) -> WsOptions {
    let mut options = WsOptions::default()
        .max_message_size(config.max_message_size)
        .max_frame_size(config.max_message_size)
        .http2(config.http2)
        .fallback_http1(config.http2)
        .keepalive(None)
        .surface_control(true);
    options.headers = config.headers.clone();
    options
}

/// How long one attempt may take in all: DNS, TCP, TLS and the upgrade.
pub fn attempt_timeout(config: &ClientConfig) -> Duration {
    config.connect_timeout.saturating_add(config.tls_timeout).saturating_add(config.handshake_timeout)
}

/// One attempt: connect and upgrade, or moorline's error (to be classified by
/// [`classify_connect_error`](crate::classify_connect_error)).
pub async fn connect_once(url: &str, config: &ClientConfig) -> Result<WsSession, moorline::Error> {
    ws::connect(url, connect_options(config), ws_options(config), attempt_timeout(config)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_the_config() {
        let config = ClientConfig::builder()
            .header("x-api-key", "k")
            .max_message_size(1 << 20)
            .http2(true)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let ws = ws_options(&config);
        assert_eq!(ws.headers["x-api-key"], "k");
        assert_eq!(ws.limits.max_message_size, 1 << 20);
        assert!(ws.http2 && ws.fallback_http1 && ws.keepalive.is_none());
        ws.validate().unwrap();
        let _ = connect_options(&config);
        assert_eq!(attempt_timeout(&config), Duration::from_secs(22));
    }

    #[test]
    fn bad_urls_are_config_errors_naming_the_url() {
        for url in ["http://x/", "ws://", "venue:443"] {
            let e = check_url(url).unwrap_err();
            assert!(matches!(&e, ConfigError::Url { url: u, .. } if u == url), "{e:?}");
            assert!(e.to_string().contains(url), "{e}");
        }
        assert_eq!(check_url("wss://www.deribit.com/ws/api/v2").unwrap().port, 443);
    }
}
