//! [`Deribit`]: JSON-RPC 2.0 over WebSocket, as `www.deribit.com/ws/api/v2` speaks it.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{
    Confirmation, Dialect, DialectError, Frame, Heartbeat, Inbound, OutRequest, SessionContext, SubOp, channel_list,
    classify_json_rpc, within_limit,
};
use crate::config::{ClientConfig, ConfigError};
use crate::jsonrpc::{RawValue, RpcError, encode_request};

/// Deribit's smallest heartbeat interval (`public/set_heartbeat`: "not less than 10").
pub const MIN_HEARTBEAT: Duration = Duration::from_secs(10);
/// The largest heartbeat interval this dialect asks for (Deribit documents none).
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);
/// The largest request this dialect sends: Deribit answers a bigger one `-32600` "request
/// entity too large" (its limit is 32 KiB), so subscribe batches stay within it (about 1 000
/// channel names).
pub const MAX_REQUEST_BYTES: usize = 32 << 10;

/// Deribit error codes that are transient (the set NautilusTrader's adapter retries), among
/// them 10028 `too_many_requests` and 13888 `timed_out`.
use crate::deribit::errors::{ErrorClass, RETRYABLE, classify};

/// How `public/auth` proves who we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grant {
    /// `grant_type: client_credentials`: the client id and secret are sent (over TLS).
    #[default]
    ClientCredentials,
    /// `grant_type: client_signature`: the secret never leaves the process; the request
    /// carries `timestamp`, `nonce`, `data` and their HMAC-SHA256 under the secret
    /// ([`client_signature`]).
    ClientSignature,
}

/// API credentials for `public/auth` (client credentials, or a client signature), with the
/// `scope` to ask for (`session:NAME` keeps the token valid across reconnects; every
/// (re)authentication asks for the same scope). The secret never appears in `Debug` output.
///
/// ```
/// use moorline_client::dialect::{Credentials, Grant};
///
/// let c = Credentials::new("id", "secret").signed().scope("session:bot");
/// assert_eq!((c.grant(), c.requested_scope()), (Grant::ClientSignature, Some("session:bot")));
/// assert!(!format!("{c:?}").contains("secret\""));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    client_id: String,
    client_secret: String,
    grant: Grant,
    scope: Option<String>,
}

impl Credentials {
    /// Credentials from a client id and secret (grant `client_credentials`, default scope).
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), client_secret: client_secret.into(), grant: Grant::default(), scope: None }
    }

    /// Authenticate with a client signature (the secret is not sent).
    pub fn signed(mut self) -> Self {
        self.grant = Grant::ClientSignature;
        self
    }

    /// The scope to ask for on every authentication (`"session:bot"`,
    /// `"session:bot trade:read_write"`...).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The grant used.
    pub fn grant(&self) -> Grant {
        self.grant
    }

    /// The scope asked for, if any.
    pub fn requested_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("grant", &self.grant)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Deribit's client signature: `HEX(HMAC-SHA256(secret, timestamp + "\n" + nonce + "\n" + data))`,
/// lower-case hex (docs.deribit.com, "Authentication").
///
/// ```
/// use moorline_client::dialect::client_signature;
///
/// let sig = client_signature("secret", 1_576_074_319_000, "1iqt2wls", "");
/// assert_eq!(sig.len(), 64);
/// ```
pub fn client_signature(client_secret: &str, timestamp_ms: u64, nonce: &str, data: &str) -> String {
    use hmac::{KeyInit, Mac};
    use std::fmt::Write;
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(client_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{timestamp_ms}\n{nonce}\n{data}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// What the last successful `public/auth` granted (its tokens stay inside the dialect).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthInfo {
    /// The granted scope, as Deribit echoes it (`"session:bot mainaccount"`...).
    pub scope: String,
    /// The named session's id (`session:NAME` scope only).
    pub sid: Option<String>,
    /// The access token's lifetime, in seconds.
    pub expires_in: u64,
    /// How many grants so far (first authentications, refreshes, re-authentications).
    pub grants: u64,
    /// How many of them were refreshes with the refresh token.
    pub refreshes: u64,
}

#[derive(Default)]
struct AuthState {
    refresh_token: Option<String>,
    info: Option<AuthInfo>,
    /// The last request was a refresh (counted when it is answered).
    refreshing: bool,
}

/// The Deribit dialect.
///
/// - Subscriptions: `public/subscribe` (or `private/subscribe` when a batch holds a private
///   `user.*` channel; public and private channels are batched apart) with
///   `{"channels": [..]}`; the reply's `result` lists the channels subscribed, and a channel
///   left out of it is reported refused (Deribit leaves out unknown channels): confirmation
///   is read, never assumed. Unsubscribe likewise.
/// - Heartbeat: `public/set_heartbeat {"interval": secs}` on every connect and reconnect
///   (the venue forgets it with the connection); its `test_request` heartbeats are answered
///   with `public/test`.
/// - Authentication: `public/auth` with client credentials or a client signature (and the
///   configured scope) on every (re)connect, before private subscriptions are restored; at
///   80 % of the token's `expires_in` it is renewed with the `refresh_token` grant (falling
///   back to the credentials if the refresh is refused), and so is it when the venue answers
///   a request with 13009/13010/10000 (token expired, revoked, missing).
/// - Cancel-on-disconnect ([`set_cancel_on_disconnect`](Self::set_cancel_on_disconnect)):
///   `private/enable_cancel_on_disconnect` on every (re)connect right after the
///   authentication, before the restore and before `Connected`/`Reconnected`.
/// - Data: `subscription` notifications, with `params.channel`.
///
/// ```
/// use moorline_client::dialect::{Deribit, Dialect, Frame, Heartbeat, Inbound};
///
/// let d = Deribit::new();
/// let beat = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
/// assert!(matches!(d.classify(Frame::Text(beat)), Inbound::Heartbeat(Heartbeat::TestRequest)));
/// let answer = d.answer_heartbeat(Heartbeat::TestRequest, 9).unwrap().unwrap();
/// assert_eq!(answer.text, r#"{"jsonrpc":"2.0","id":9,"method":"public/test","params":{}}"#);
/// ```
#[derive(Clone, Default)]
pub struct Deribit {
    credentials: Option<Credentials>,
    /// Shared by the clones (the client task holds one, a façade another).
    auth: Arc<Mutex<AuthState>>,
    /// Cancel-on-disconnect was asked for: asked again on every (re)connect, after the
    /// authentication and before the restore. Shared by the clones.
    cancel_on_disconnect: Arc<AtomicBool>,
}

impl fmt::Debug for Deribit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deribit").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

impl Deribit {
    /// Public access only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticated with these credentials.
    pub fn with_credentials(credentials: Credentials) -> Self {
        Self { credentials: Some(credentials), ..Self::default() }
    }

    /// Whether every (re)connect asks for `private/enable_cancel_on_disconnect` (connection
    /// scope) after the authentication, before the subscriptions are restored and before
    /// `Connected`/`Reconnected` (only with credentials). The façade's
    /// `enable_cancel_on_disconnect` sets it.
    pub fn set_cancel_on_disconnect(&self, enabled: bool) {
        self.cancel_on_disconnect.store(enabled, Ordering::SeqCst);
    }

    /// Whether cancel-on-disconnect is asked for on every (re)connect.
    pub fn cancel_on_disconnect(&self) -> bool {
        self.cancel_on_disconnect.load(Ordering::SeqCst)
    }

    /// The credentials, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// What the last successful authentication granted (`None` before the first).
    pub fn auth_info(&self) -> Option<AuthInfo> {
        self.state().info.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn auth_request(&self, id: u64, params: serde_json::Value) -> Result<OutRequest, DialectError> {
        let method = "public/auth";
        Ok(OutRequest { id, method: Cow::Borrowed(method), text: encode_request(id, method, Some(&params))? })
    }
}

/// A nonce for the client signature: 16 hex digits, different on every call.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn method(op: SubOp, private: bool) -> &'static str {
    match (op, private) {
        (SubOp::Subscribe, false) => "public/subscribe",
        (SubOp::Subscribe, true) => "private/subscribe",
        (SubOp::Unsubscribe, false) => "public/unsubscribe",
        (SubOp::Unsubscribe, true) => "private/unsubscribe",
    }
}

impl Dialect for Deribit {
    fn name(&self) -> &'static str {
        "deribit"
    }

    fn check(&self, config: &ClientConfig) -> Result<(), ConfigError> {
        let Some(value) = config.liveness.venue_heartbeat else { return Ok(()) };
        if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&value) {
            return Err(ConfigError::HeartbeatOutOfRange {
                dialect: self.name().to_owned(),
                value,
                min: MIN_HEARTBEAT,
                max: MAX_HEARTBEAT,
            });
        }
        if value.subsec_nanos() != 0 {
            return Err(ConfigError::Dialect {
                dialect: self.name().to_owned(),
                reason: format!("venue_heartbeat {value:?} must be whole seconds (set_heartbeat takes seconds)"),
            });
        }
        Ok(())
    }

    fn classify<'a>(&self, frame: Frame<'a>) -> Inbound<'a> {
        let Frame::Text(text) = frame else { return Inbound::Data { channel: None } };
        classify_json_rpc(text, |method, channel, kind| match method {
            "subscription" => Inbound::Data { channel },
            "heartbeat" => match kind {
                Some("test_request") => Inbound::Heartbeat(Heartbeat::TestRequest),
                _ => Inbound::Heartbeat(Heartbeat::Beat),
            },
            // Other notifications (`announcements` come as subscriptions; anything new) go to the user.
            _ => Inbound::Data { channel: None },
        })
    }

    fn max_request_bytes(&self) -> usize {
        MAX_REQUEST_BYTES
    }

    fn request_overhead(&self) -> usize {
        // {"jsonrpc":"2.0","id":<20 digits>,"method":"private/unsubscribe","params":{"channels":[]}}
        96
    }

    fn batch_key(&self, channel: &str) -> u8 {
        u8::from(self.is_private(channel))
    }

    fn is_private(&self, channel: &str) -> bool {
        channel.starts_with("user.")
    }

    fn subscription_request(&self, op: SubOp, id: u64, channels: &[&str]) -> Result<OutRequest, DialectError> {
        if channels.is_empty() {
            return Err(DialectError::NoChannels(method(op, false)));
        }
        let method = method(op, channels.iter().any(|c| self.is_private(c)));
        let text = encode_request(id, method, Some(&json!({ "channels": channels })))?;
        within_limit(OutRequest { id, method: Cow::Borrowed(method), text }, MAX_REQUEST_BYTES)
    }

    fn confirm(&self, _op: SubOp, requested: &[&str], reply: Result<&RawValue, &RpcError>) -> Confirmation {
        match reply {
            Ok(result) => match channel_list(result) {
                Some(listed) => Confirmation::from_list(requested, &listed),
                None => Confirmation::all_refused(requested, "the venue's reply is not a list of channels"),
            },
            Err(e) => Confirmation::all_refused(requested, &e.to_string()),
        }
    }

    fn handshake(
        &self,
        ctx: &SessionContext,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Result<Vec<OutRequest>, DialectError> {
        let Some(interval) = ctx.heartbeat else { return Ok(Vec::new()) };
        let id = next_id();
        let method = "public/set_heartbeat";
        let text = encode_request(id, method, Some(&json!({ "interval": interval.as_secs() })))?;
        Ok(vec![OutRequest { id, method: Cow::Borrowed(method), text }])
    }

    fn venue_heartbeat(&self) -> bool {
        true
    }

    fn after_authentication(&self, next_id: &mut dyn FnMut() -> u64) -> Result<Vec<OutRequest>, DialectError> {
        if self.credentials.is_none() || !self.cancel_on_disconnect() {
            return Ok(Vec::new());
        }
        let id = next_id();
        let method = "private/enable_cancel_on_disconnect";
        let text = encode_request(id, method, Some(&json!({ "scope": "connection" })))?;
        Ok(vec![OutRequest { id, method: Cow::Borrowed(method), text }])
    }

    fn authenticate(&self, id: u64) -> Option<Result<OutRequest, DialectError>> {
        let c = self.credentials.as_ref()?;
        let mut params = match c.grant {
            Grant::ClientCredentials => {
                json!({"grant_type": "client_credentials", "client_id": c.client_id, "client_secret": c.client_secret})
            }
            Grant::ClientSignature => {
                let (timestamp, nonce) = (unix_ms(), nonce());
                let signature = client_signature(&c.client_secret, timestamp, &nonce, "");
                json!({"grant_type": "client_signature", "client_id": c.client_id, "timestamp": timestamp,
                       "nonce": nonce, "data": "", "signature": signature})
            }
        };
        if let (Some(scope), Some(map)) = (&c.scope, params.as_object_mut()) {
            map.insert("scope".to_owned(), json!(scope));
        }
        self.state().refreshing = false;
        Some(self.auth_request(id, params))
    }

    fn renew_authentication(&self, id: u64) -> Option<Result<OutRequest, DialectError>> {
        self.credentials.as_ref()?;
        let token = {
            let mut st = self.state();
            let token = st.refresh_token.take();
            st.refreshing = token.is_some();
            token
        };
        match token {
            // A refresh token is good once: taken now, replaced by the answer's.
            Some(token) => Some(self.auth_request(id, json!({"grant_type": "refresh_token", "refresh_token": token}))),
            None => self.authenticate(id),
        }
    }

    fn on_authenticated(&self, result: &RawValue) {
        #[derive(Deserialize)]
        struct Granted {
            #[serde(default)]
            refresh_token: Option<String>,
            #[serde(default)]
            scope: String,
            #[serde(default)]
            sid: Option<String>,
            #[serde(default)]
            expires_in: u64,
        }
        let Ok(g) = serde_json::from_str::<Granted>(result.get()) else { return };
        let mut st = self.state();
        let refreshed = std::mem::take(&mut st.refreshing);
        st.refresh_token = g.refresh_token;
        let (grants, refreshes) = st.info.as_ref().map_or((0, 0), |i| (i.grants, i.refreshes));
        st.info = Some(AuthInfo {
            scope: g.scope,
            sid: g.sid,
            expires_in: g.expires_in,
            grants: grants + 1,
            refreshes: refreshes + u64::from(refreshed),
        });
    }

    fn needs_reauthentication(&self, error: &RpcError) -> bool {
        self.credentials.is_some() && classify(error.code) == ErrorClass::Reauthenticate
    }

    fn reauthenticate_after(&self, result: &RawValue) -> Option<Duration> {
        #[derive(Deserialize)]
        struct Auth {
            expires_in: u64,
        }
        let auth: Auth = serde_json::from_str(result.get()).ok()?;
        // At 80 % of the lifetime, so a slow answer still lands before expiry.
        Some(Duration::from_secs(auth.expires_in).mul_f64(0.8))
    }

    fn answer_heartbeat(&self, beat: Heartbeat, id: u64) -> Option<Result<OutRequest, DialectError>> {
        match beat {
            Heartbeat::Beat => None,
            Heartbeat::TestRequest => {
                let method = "public/test";
                Some(
                    encode_request(id, method, Some(&json!({})))
                        .map(|text| OutRequest { id, method: Cow::Borrowed(method), text })
                        .map_err(Into::into),
                )
            }
        }
    }

    fn is_retryable(&self, error: &RpcError) -> bool {
        RETRYABLE.contains(&error.code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn subscribe_picks_public_or_private_and_reads_the_confirmation() {
        let d = Deribit::new();
        let r = d
            .subscription_request(SubOp::Subscribe, 4235, &["deribit_price_index.btc_usd", "trades.BTC-PERPETUAL.raw"])
            .unwrap();
        assert_eq!(r.method, "public/subscribe");
        assert_eq!(
            json(&r.text),
            json(
                r#"{"jsonrpc":"2.0","id":4235,"method":"public/subscribe","params":{"channels":["deribit_price_index.btc_usd","trades.BTC-PERPETUAL.raw"]}}"#
            )
        );
        let r = d.subscription_request(SubOp::Subscribe, 1, &["user.orders.BTC-PERPETUAL.raw"]).unwrap();
        assert_eq!(r.method, "private/subscribe");
        assert_eq!((d.batch_key("user.trades.any.raw"), d.batch_key("book.BTC-PERPETUAL.100ms")), (1, 0));
        let r = d.subscription_request(SubOp::Unsubscribe, 2, &["book.BTC-PERPETUAL.100ms"]).unwrap();
        assert_eq!(r.method, "public/unsubscribe");
        assert!(matches!(d.subscription_request(SubOp::Subscribe, 3, &[]), Err(DialectError::NoChannels(_))));

        // The reply as Deribit sends it: one channel was unknown and is left out.
        let reply = r#"{"jsonrpc":"2.0","id":4235,"result":["deribit_price_index.btc_usd"],"usIn":1535043730126248,"usOut":1535043730126250,"usDiff":2,"testnet":false}"#;
        let Inbound::Response { id: 4235, outcome: Ok(result) } = d.classify(Frame::Text(reply)) else { panic!() };
        let c = d.confirm(SubOp::Subscribe, &["deribit_price_index.btc_usd", "trades.NOPE.raw"], Ok(result));
        assert_eq!(c.confirmed, ["deribit_price_index.btc_usd"]);
        assert_eq!(c.refused, [("trades.NOPE.raw".to_owned(), "left out of the venue's confirmation".to_owned())]);
        // An error reply refuses the batch, with the venue's words.
        let e = RpcError { code: 13009, message: "unauthorized".into(), data: None };
        let c = d.confirm(SubOp::Subscribe, &["user.orders.any.raw"], Err(&e));
        assert_eq!(c.refused[0].1, "the venue answered with error 13009: unauthorized");
        // A result that is not a list refuses too (nothing assumed).
        let c = d.confirm(SubOp::Subscribe, &["a"], Ok(&raw("\"ok\"")));
        assert_eq!(c.refused[0].1, "the venue's reply is not a list of channels");
    }

    #[test]
    fn a_batch_over_the_frame_limit_is_refused_and_the_cost_estimate_holds() {
        let d = Deribit::new();
        let names: Vec<String> = (0..5000).map(|i| format!("book.BTC-{i}.100ms")).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let e = d.subscription_request(SubOp::Subscribe, 1, &all).unwrap_err();
        assert!(matches!(e, DialectError::TooLarge { limit: MAX_REQUEST_BYTES, .. }), "{e}");
        // A batch sized by the estimate fits, with the largest id.
        let mut budget = d.max_request_bytes() - d.request_overhead();
        let fits: Vec<&str> = all
            .iter()
            .copied()
            .take_while(|c| {
                let cost = d.channel_cost(c);
                let ok = cost <= budget;
                budget = budget.saturating_sub(cost);
                ok
            })
            .collect();
        assert!(fits.len() > 1000, "{}", fits.len());
        let r = d.subscription_request(SubOp::Unsubscribe, u64::MAX, &fits).unwrap();
        assert!(r.text.len() <= MAX_REQUEST_BYTES, "{}", r.text.len());
    }

    #[test]
    fn heartbeat_handshake_on_every_connect_and_test_request_answer() {
        let d = Deribit::new();
        let mut next = 40;
        let mut ids = || {
            next += 1;
            next
        };
        let ctx = SessionContext { heartbeat: Some(Duration::from_secs(30)) };
        let hs = d.handshake(&ctx, &mut ids).unwrap();
        assert_eq!(hs.len(), 1);
        assert_eq!(
            json(&hs[0].text),
            json(r#"{"jsonrpc":"2.0","id":41,"method":"public/set_heartbeat","params":{"interval":30}}"#)
        );
        // The same on the next connect (Nautilus forgets it after a reconnect), with a new id.
        let again = d.handshake(&ctx, &mut ids).unwrap();
        assert_eq!((again[0].id, again[0].method.as_ref()), (42, "public/set_heartbeat"));
        assert!(d.handshake(&SessionContext { heartbeat: None }, &mut ids).unwrap().is_empty());
        assert!(d.venue_heartbeat());

        let beat = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}"#;
        assert!(matches!(d.classify(Frame::Text(beat)), Inbound::Heartbeat(Heartbeat::Beat)));
        assert!(d.answer_heartbeat(Heartbeat::Beat, 1).is_none());
        let test = r#"{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}"#;
        assert!(matches!(d.classify(Frame::Text(test)), Inbound::Heartbeat(Heartbeat::TestRequest)));
    }

    #[test]
    fn heartbeat_interval_is_checked_against_what_deribit_accepts() {
        let d = Deribit::new();
        let c = |s: f64| {
            ClientConfig::builder().venue_heartbeat(Some(Duration::from_secs_f64(s)), Duration::ZERO).build().unwrap()
        };
        d.check(&c(10.0)).unwrap();
        d.check(&ClientConfig::builder().venue_heartbeat(None, Duration::ZERO).build().unwrap()).unwrap();
        let e = d.check(&c(5.0)).unwrap_err();
        assert!(matches!(e, ConfigError::HeartbeatOutOfRange { .. }));
        assert_eq!(e.to_string(), "venue_heartbeat 5s is outside what deribit accepts (10s..=3600s)");
        let e = d.check(&c(10.5)).unwrap_err();
        assert!(e.to_string().contains("must be whole seconds"), "{e}");
    }

    #[test]
    fn authentication_with_client_credentials_and_refresh_at_80_percent() {
        assert!(Deribit::new().authenticate(1).is_none());
        let d = Deribit::with_credentials(Credentials::new("id-1", "s3cret"));
        assert!(!format!("{d:?}").contains("s3cret"));
        let r = d.authenticate(7).unwrap().unwrap();
        assert_eq!(
            json(&r.text),
            json(
                r#"{"jsonrpc":"2.0","id":7,"method":"public/auth","params":{"grant_type":"client_credentials","client_id":"id-1","client_secret":"s3cret"}}"#
            )
        );
        let result = raw(
            r#"{"access_token":"x","expires_in":900,"refresh_token":"y","scope":"session:1","token_type":"bearer"}"#,
        );
        assert_eq!(d.reauthenticate_after(&result), Some(Duration::from_secs(720)));
        assert_eq!(d.reauthenticate_after(&raw("null")), None);

        // Renewal: with the refresh token of the last grant, once; without one, the credentials.
        d.on_authenticated(&result);
        let info = d.auth_info().unwrap();
        assert_eq!((info.scope.as_str(), info.expires_in, info.grants, info.refreshes), ("session:1", 900, 1, 0));
        let r = d.renew_authentication(8).unwrap().unwrap();
        assert_eq!(
            json(&r.text),
            json(
                r#"{"jsonrpc":"2.0","id":8,"method":"public/auth","params":{"grant_type":"refresh_token","refresh_token":"y"}}"#
            )
        );
        let again = d.renew_authentication(9).unwrap().unwrap();
        assert!(again.text.contains("client_credentials"), "{}", again.text);
        d.on_authenticated(&raw(r#"{"access_token":"x2","expires_in":900,"refresh_token":"z","scope":"s"}"#));
        assert_eq!(d.auth_info().unwrap().refreshes, 0, "the last request was not a refresh");
        let _ = d.renew_authentication(10);
        d.on_authenticated(&raw(r#"{"access_token":"x3","expires_in":900,"refresh_token":"w","scope":"s"}"#));
        assert_eq!((d.auth_info().unwrap().grants, d.auth_info().unwrap().refreshes), (3, 1));
        // Errors that mean "the token is gone".
        for (code, gone) in [(13009, true), (13010, true), (10000, true), (10028, false), (13004, false)] {
            let e = RpcError { code, message: String::new(), data: None };
            assert_eq!(d.needs_reauthentication(&e), gone, "{code}");
            assert!(!Deribit::new().needs_reauthentication(&e));
        }
    }

    #[test]
    fn client_signature_as_deribit_documents_it_with_the_scope() {
        // HMAC-SHA256(secret, "1576074319000\n1iqt2wls\n"), as Python's hmac computes it.
        assert_eq!(
            client_signature("moorline-test-secret", 1_576_074_319_000, "1iqt2wls", ""),
            "ae318575d76d5576f49800d53dd0e606c0b7b3a75c6f4139a5b85b53a72c253a"
        );
        let d = Deribit::with_credentials(Credentials::new("id-1", "s3cret").signed().scope("session:bot"));
        let r = d.authenticate(3).unwrap().unwrap();
        assert!(!r.text.contains("s3cret"), "the secret is never sent: {}", r.text);
        let v = json(&r.text);
        let p = &v["params"];
        assert_eq!((p["grant_type"].as_str(), p["scope"].as_str()), (Some("client_signature"), Some("session:bot")));
        let (ts, nonce) = (p["timestamp"].as_u64().unwrap(), p["nonce"].as_str().unwrap());
        assert_eq!(p["signature"].as_str().unwrap(), client_signature("s3cret", ts, nonce, ""));
        let other = json(&d.authenticate(4).unwrap().unwrap().text);
        assert_ne!(other["params"]["nonce"], p["nonce"], "a new nonce every time");
    }

    #[test]
    fn notifications_carry_their_channel_and_errors_are_typed() {
        let d = Deribit::new();
        let note = r#"{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw","data":[{"trade_seq":30289432,"trade_id":"48079254","timestamp":1590484156350,"tick_direction":0,"price":8950,"mark_price":8948.9,"instrument_name":"BTC-PERPETUAL","index_price":8955.88,"direction":"sell","amount":10}]}}"#;
        let Inbound::Data { channel: Some(c) } = d.classify(Frame::Text(note)) else { panic!() };
        assert_eq!(c, "trades.BTC-PERPETUAL.raw");
        assert!(matches!(d.classify(Frame::Binary(b"\x00")), Inbound::Data { channel: None }));
        assert!(matches!(d.classify(Frame::Text("{oops")), Inbound::Malformed(_)));
        let err = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#;
        assert!(matches!(d.classify(Frame::Text(err)), Inbound::UnmatchedError(RpcError { code: -32700, .. })));
        let busy = RpcError { code: 10028, message: "too_many_requests".into(), data: None };
        assert!(d.is_retryable(&busy));
        assert!(!d.is_retryable(&RpcError { code: 13004, message: "invalid_credentials".into(), data: None }));
    }
}
