//! Answering one request: the method table, authentication, heartbeat settings, and the
//! small public methods. Trading is in [`super::trading`] and [`super::account`],
//! subscriptions in [`super::subscribe`].

use std::time::Duration;

use serde_json::{Value, json};

use super::auth::{Binding, Grant, SignedRequest, parse_scope};
use super::error::RpcError;
use super::instrument::{INSTRUMENTS, index_of, price_indices};
use super::payload;
use super::rpc::{Params, Request};
use super::time::Now;
use super::venue::{API_VERSION, ConnId, Venue};

impl Venue {
    pub(super) fn dispatch(&mut self, conn: ConnId, request: &Request, now: Now) -> Result<Value, RpcError> {
        let p = Params(&request.params);
        match request.method.as_str() {
            "public/auth" => self.authenticate(conn, p, now),
            "public/test" | "public/hello" => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.heartbeat.answered();
                }
                Ok(json!({ "version": API_VERSION }))
            }
            "public/get_time" => Ok(json!(now.ms())),
            "public/status" => Ok(self.status()),
            "public/set_heartbeat" => self.set_heartbeat(conn, p, now),
            "public/disable_heartbeat" => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.heartbeat.disable();
                }
                Ok(json!("ok"))
            }
            "public/subscribe" => self.subscribe(conn, p, false, now),
            "private/subscribe" => {
                let account = self.account(conn, p, now)?;
                // Subscribing with an `access_token` parameter binds an unauthenticated
                // connection to that account, so `user.*` notifications reach it.
                if let (Some(token), Some(session)) = (p.opt_str("access_token")?, self.sessions.get_mut(&conn)) {
                    session.auth.get_or_insert_with(|| (account, token.to_owned()));
                }
                self.subscribe(conn, p, true, now)
            }
            "public/unsubscribe" => self.unsubscribe(conn, p),
            "private/unsubscribe" => {
                self.account(conn, p, now)?;
                self.unsubscribe(conn, p)
            }
            "public/unsubscribe_all" => self.unsubscribe_all(conn),
            "private/unsubscribe_all" => {
                self.account(conn, p, now)?;
                self.unsubscribe_all(conn)
            }
            "public/get_instruments" => instruments(p),
            "public/ticker" => {
                let idx = instrument_param(p)?;
                Ok(payload::ticker(&self.markets[idx], now.ms()))
            }
            "public/get_order_book" => {
                let idx = instrument_param(p)?;
                let depth = match p.opt_f64("depth")? {
                    None => 20,
                    Some(d) if (1.0..=10_000.0).contains(&d) => d as usize,
                    Some(_) => return Err(RpcError::invalid_params("depth", "must be between 1 and 10000")),
                };
                Ok(payload::order_book(&self.markets[idx], depth, now.ms()))
            }
            "private/enable_cancel_on_disconnect" | "private/disable_cancel_on_disconnect" => {
                let account = self.account(conn, p, now)?;
                let enable = request.method.as_str() == "private/enable_cancel_on_disconnect";
                self.set_cancel_on_disconnect(conn, account, enable, p)
            }
            "private/get_cancel_on_disconnect" => {
                let account = self.account(conn, p, now)?;
                self.get_cancel_on_disconnect(conn, account, p)
            }
            method => {
                let Some(private) = method.strip_prefix("private/") else { return Err(RpcError::method_not_found()) };
                if !super::trading::is_trading_method(private) {
                    return Err(RpcError::method_not_found());
                }
                let account = self.account(conn, p, now)?;
                self.trade(account, private, p, now)
            }
        }
    }

    /// The account a private call acts for: the `access_token` parameter if
    /// given, else the connection's authentication. `13009` unless valid, unexpired, not
    /// revoked, and (connection scope) granted on this connection.
    pub(super) fn account(&self, conn: ConnId, p: Params<'_>, now: Now) -> Result<usize, RpcError> {
        if let Some(token) = p.opt_str("access_token")? {
            return self.auth.check(token, conn, now.instant);
        }
        match self.sessions.get(&conn).and_then(|s| s.auth.as_ref()) {
            Some((_, token)) => self.auth.check(token, conn, now.instant),
            None => Err(RpcError::unauthorized("not authenticated")),
        }
    }

    fn authenticate(&mut self, conn: ConnId, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let grant: Grant = match p.str("grant_type")? {
            "client_credentials" => {
                let (id, secret) = (p.str("client_id")?, p.str("client_secret")?);
                let scope = parse_scope(p.opt_str("scope")?, conn)?;
                self.auth.client_credentials(id, secret, scope, now.instant, now.ms())?
            }
            "client_signature" => {
                let timestamp = p.f64("timestamp")?;
                if !(timestamp.is_finite() && timestamp >= 0.0 && timestamp.fract() == 0.0) {
                    return Err(RpcError::invalid_params("timestamp", "milliseconds since the epoch"));
                }
                let signed = SignedRequest {
                    timestamp: timestamp as u64,
                    nonce: p.opt_str("nonce")?.unwrap_or(""),
                    data: p.opt_str("data")?.unwrap_or(""),
                    signature: p.str("signature")?,
                };
                let scope = parse_scope(p.opt_str("scope")?, conn)?;
                self.auth.client_signature(p.str("client_id")?, &signed, scope, now.instant, now.ms())?
            }
            "refresh_token" => self.auth.refresh(p.str("refresh_token")?, conn, now.instant, now.ms())?,
            _ => {
                return Err(RpcError::invalid_params(
                    "grant_type",
                    "supported: client_credentials, client_signature, refresh_token",
                ));
            }
        };
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.auth = Some((grant.account, grant.access_token.clone()));
        }
        tracing::debug!(conn, account = grant.account, scope = %grant.scope, "authenticated");
        let mut result = json!({
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_in": grant.expires_in,
            "scope": grant.scope,
            "token_type": "bearer",
            "enabled_features": [],
        });
        if let (Some(sid), Some(map)) = (grant.sid, result.as_object_mut()) {
            map.insert("sid".to_owned(), json!(sid));
        }
        Ok(result)
    }

    fn set_heartbeat(&mut self, conn: ConnId, p: Params<'_>, now: Now) -> Result<Value, RpcError> {
        let secs = p.f64("interval")?;
        let min = self.min_heartbeat;
        let interval = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| *d >= min && *d > Duration::ZERO)
            .ok_or_else(|| RpcError::invalid_params("interval", format!("must be at least {}", min.as_secs_f64())))?;
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.heartbeat.enable(interval, now.instant);
        }
        Ok(json!("ok"))
    }

    /// `public/status`: `{locked: "true"|"false", locked_indices}`.
    fn status(&self) -> Value {
        let indices: Vec<String> = if self.hooks.locked { price_indices() } else { Vec::new() };
        json!({ "locked": if self.hooks.locked { "true" } else { "false" }, "locked_indices": indices })
    }

    fn set_cancel_on_disconnect(
        &mut self,
        conn: ConnId,
        account: usize,
        enable: bool,
        p: Params<'_>,
    ) -> Result<Value, RpcError> {
        match p.opt_str("scope")?.unwrap_or("connection") {
            "connection" => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.cancel_on_disconnect = enable;
                }
            }
            "account" => {
                if enable {
                    self.account_cancel_on_disconnect.insert(account);
                } else {
                    self.account_cancel_on_disconnect.remove(&account);
                }
            }
            _ => return Err(RpcError::invalid_params("scope", "connection or account")),
        }
        Ok(json!("ok"))
    }

    fn get_cancel_on_disconnect(&self, conn: ConnId, account: usize, p: Params<'_>) -> Result<Value, RpcError> {
        let scope = p.opt_str("scope")?.unwrap_or("connection");
        let enabled = match scope {
            "connection" => self.sessions.get(&conn).is_some_and(|s| s.cancel_on_disconnect),
            "account" => self.account_cancel_on_disconnect.contains(&account),
            _ => return Err(RpcError::invalid_params("scope", "connection or account")),
        };
        Ok(json!({ "scope": scope, "enabled": enabled }))
    }

    /// Whether `conn` is authenticated with a token that is still good.
    pub(super) fn is_authenticated(&self, conn: ConnId, now: Now) -> bool {
        self.sessions
            .get(&conn)
            .and_then(|s| s.auth.as_ref())
            .is_some_and(|(_, token)| self.auth.check(token, conn, now.instant).is_ok())
    }

    /// The named session (`session:NAME` scope) `conn` is authenticated with, if any.
    pub(super) fn session_name(&self, conn: ConnId) -> Option<String> {
        let token = &self.sessions.get(&conn)?.auth.as_ref()?.1;
        match self.auth.binding(token)? {
            Binding::Session(name) => Some(name.clone()),
            Binding::Connection(_) => None,
        }
    }
}

/// `instrument_name` parameter as an index into [`INSTRUMENTS`].
pub(super) fn instrument_param(p: Params<'_>) -> Result<usize, RpcError> {
    let name = p.str("instrument_name")?;
    index_of(name).ok_or_else(|| RpcError::invalid_params("instrument_name", format!("unknown instrument {name:?}")))
}

/// `public/get_instruments`.
fn instruments(p: Params<'_>) -> Result<Value, RpcError> {
    let currency = p.str("currency")?;
    if !matches!(currency, "BTC" | "ETH" | "USDC" | "USDT" | "EURR" | "any") {
        return Err(RpcError::invalid_params("currency", "unknown currency"));
    }
    let kind_ok = p.opt_str("kind")?.is_none_or(|k| k == "future");
    let expired = p.opt_bool("expired")?.unwrap_or(false);
    let list: Vec<Value> = INSTRUMENTS
        .iter()
        .filter(|i| kind_ok && !expired && (currency == "any" || currency == i.currency))
        .map(payload::instrument)
        .collect();
    Ok(Value::Array(list))
}
