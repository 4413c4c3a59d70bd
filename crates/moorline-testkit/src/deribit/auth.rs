//! Test accounts and the access/refresh tokens `public/auth` hands out.
//!
//! Tokens are bound as on Deribit: a *connection*-scoped token (the default) works only on
//! the connection it was granted on and dies with it; a `session:NAME`-scoped token works
//! on any connection and survives reconnects, until it expires or is revoked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::error::RpcError;
use super::rng::SplitMix64;

/// Client id of the built-in test account (grant `client_credentials`).
pub const TEST_CLIENT_ID: &str = "moorline-test-client";
/// Client secret of the built-in test account.
pub const TEST_CLIENT_SECRET: &str = "moorline-test-secret";

/// Identifies a connection inside the venue.
pub(crate) type ConnId = u64;

/// What a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// Scope `connection` (the default): valid on this connection only, gone when it closes.
    Connection(ConnId),
    /// Scope `session:NAME`: valid on any connection of the account, survives reconnects.
    Session(String),
}

/// What a successful `public/auth` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) account: usize,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// Access token lifetime, whole seconds rounded up.
    pub(crate) expires_in: u64,
    /// The `scope` string of the answer (`connection mainaccount`, `session:NAME mainaccount`, ...).
    pub(crate) scope: String,
    /// The named session's id (`session:NAME` scope only).
    pub(crate) sid: Option<String>,
}

#[derive(Debug, Clone)]
struct Token {
    account: usize,
    until: Instant,
    binding: Binding,
    /// The scope words asked for besides the binding (echoed on refresh too).
    extra: Vec<String>,
}

/// The signed part of a `client_signature` grant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedRequest<'a> {
    pub(crate) timestamp: u64,
    pub(crate) nonce: &'a str,
    pub(crate) data: &'a str,
    pub(crate) signature: &'a str,
}

/// Credentials by account index, and the tokens issued so far.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    credentials: Vec<(String, String)>,
    rng: SplitMix64,
    access: HashMap<String, Token>,
    refresh: HashMap<String, Token>,
    /// `sid` of each named session, by (account, name).
    sessions: HashMap<(usize, String), String>,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
}

/// The binding and other words of a `scope` parameter (space separated).
pub(crate) fn parse_scope(scope: Option<&str>, conn: ConnId) -> Result<(Binding, Vec<String>), RpcError> {
    let mut binding = Binding::Connection(conn);
    let mut extra = Vec::new();
    for word in scope.unwrap_or("").split_whitespace() {
        if let Some(name) = word.strip_prefix("session:") {
            if name.is_empty() || name.len() > 64 {
                return Err(RpcError::invalid_params("scope", "session:NAME needs a name of 1 to 64 characters"));
            }
            binding = Binding::Session(name.to_owned());
        } else if word == "connection" {
            binding = Binding::Connection(conn);
        } else if word != "mainaccount" && !extra.iter().any(|w| w == word) {
            extra.push(word.to_owned());
        }
    }
    Ok((binding, extra))
}

impl Auth {
    /// `credentials[i]` is account `i`'s (client id, client secret).
    pub(crate) fn new(
        credentials: Vec<(String, String)>,
        seed: u64,
        access_lifetime: Duration,
        refresh_lifetime: Duration,
    ) -> Self {
        let rng = SplitMix64::fork(seed, 0x70_6b_65_6e);
        Self {
            credentials,
            rng,
            access: HashMap::new(),
            refresh: HashMap::new(),
            sessions: HashMap::new(),
            access_lifetime,
            refresh_lifetime,
        }
    }

    /// The client id of `account`.
    pub(crate) fn client_id(&self, account: usize) -> Option<&str> {
        self.credentials.get(account).map(|(id, _)| id.as_str())
    }

    /// The account whose client id is `client_id`.
    pub(crate) fn account_of(&self, client_id: &str) -> Option<usize> {
        self.credentials.iter().position(|(id, _)| id == client_id)
    }

    fn token(&mut self, now_ms: u64) -> String {
        format!("{now_ms}.{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64())
    }

    fn issue(&mut self, account: usize, binding: Binding, extra: Vec<String>, now: Instant, now_ms: u64) -> Grant {
        self.access.retain(|_, t| t.until > now);
        self.refresh.retain(|_, t| t.until > now);
        let (access_token, refresh_token) = (self.token(now_ms), self.token(now_ms));
        let far = now + Duration::from_secs(100 * 365 * 86_400);
        let token = |lifetime: Duration| Token {
            account,
            until: now.checked_add(lifetime).unwrap_or(far),
            binding: binding.clone(),
            extra: extra.clone(),
        };
        self.access.insert(access_token.clone(), token(self.access_lifetime));
        self.refresh.insert(refresh_token.clone(), token(self.refresh_lifetime));
        let expires_in = self.access_lifetime.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX);
        let (mut scope, sid) = match &binding {
            Binding::Connection(_) => ("connection".to_owned(), None),
            Binding::Session(name) => {
                let next = self.sessions.len() + 1;
                let sid = self.sessions.entry((account, name.clone())).or_insert_with(|| format!("ws-{next}")).clone();
                (format!("session:{name}"), Some(sid))
            }
        };
        for word in extra.iter().map(String::as_str).chain(["mainaccount"]) {
            scope.push(' ');
            scope.push_str(word);
        }
        Grant { account, access_token, refresh_token, expires_in, scope, sid }
    }

    /// Grant `client_credentials`: `13004` unless the id and secret match an account.
    pub(crate) fn client_credentials(
        &mut self,
        client_id: &str,
        client_secret: &str,
        scope: (Binding, Vec<String>),
        now: Instant,
        now_ms: u64,
    ) -> Result<Grant, RpcError> {
        let account = self
            .credentials
            .iter()
            .position(|(id, secret)| id == client_id && secret == client_secret)
            .ok_or_else(RpcError::invalid_credentials)?;
        Ok(self.issue(account, scope.0, scope.1, now, now_ms))
    }

    /// Grant `client_signature`: `signature` must be the lower-case hex HMAC-SHA256, under
    /// the account's secret, of `timestamp + "\n" + nonce + "\n" + data` (Deribit's
    /// `StringToSign`); `13004` otherwise (the secret itself is never sent).
    pub(crate) fn client_signature(
        &mut self,
        client_id: &str,
        signed: &SignedRequest<'_>,
        scope: (Binding, Vec<String>),
        now: Instant,
        now_ms: u64,
    ) -> Result<Grant, RpcError> {
        use hmac::{KeyInit, Mac};
        let account = self.account_of(client_id).ok_or_else(RpcError::invalid_credentials)?;
        let secret = &self.credentials[account].1;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| RpcError::invalid_credentials())?;
        mac.update(format!("{}\n{}\n{}", signed.timestamp, signed.nonce, signed.data).as_bytes());
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        if !expected.eq_ignore_ascii_case(signed.signature) {
            return Err(RpcError::invalid_credentials());
        }
        Ok(self.issue(account, scope.0, scope.1, now, now_ms))
    }

    /// Grant `refresh_token` on connection `conn`: the old refresh token is used up; `13004`
    /// if it is unknown, used, expired, revoked or bound to another connection. The new
    /// tokens keep the old binding and scope.
    pub(crate) fn refresh(
        &mut self,
        refresh_token: &str,
        conn: ConnId,
        now: Instant,
        now_ms: u64,
    ) -> Result<Grant, RpcError> {
        match self.refresh.get(refresh_token) {
            Some(t) if t.until > now && usable_on(&t.binding, conn) => {}
            _ => return Err(RpcError::invalid_credentials()),
        }
        let Some(old) = self.refresh.remove(refresh_token) else { return Err(RpcError::invalid_credentials()) };
        Ok(self.issue(old.account, old.binding, old.extra, now, now_ms))
    }

    /// The account an access token belongs to, used on connection `conn`; `13009` if
    /// unknown, expired, revoked or bound to another connection.
    pub(crate) fn check(&self, access_token: &str, conn: ConnId, now: Instant) -> Result<usize, RpcError> {
        match self.access.get(access_token) {
            Some(t) if !usable_on(&t.binding, conn) => {
                Err(RpcError::unauthorized("the token is bound to another connection"))
            }
            Some(t) if t.until > now => Ok(t.account),
            Some(_) => Err(RpcError::unauthorized("access token expired")),
            None => Err(RpcError::unauthorized("invalid access token")),
        }
    }

    /// The binding of a known access token.
    pub(crate) fn binding(&self, access_token: &str) -> Option<&Binding> {
        self.access.get(access_token).map(|t| &t.binding)
    }

    /// Connection `conn` closed: its connection-scoped tokens die with it.
    pub(crate) fn connection_closed(&mut self, conn: ConnId) {
        let bound = |t: &Token| t.binding == Binding::Connection(conn);
        self.access.retain(|_, t| !bound(t));
        self.refresh.retain(|_, t| !bound(t));
    }

    /// Expires the access tokens of `account` (all accounts: `None`) now; refresh tokens stay
    /// valid. Returns how many.
    pub(crate) fn expire(&mut self, account: Option<usize>, now: Instant) -> usize {
        let mut n = 0;
        for t in self.access.values_mut().filter(|t| account.is_none_or(|a| a == t.account) && t.until > now) {
            t.until = now;
            n += 1;
        }
        n
    }

    /// Revokes every token (access and refresh) of `account` (all: `None`) now. Returns how many.
    pub(crate) fn revoke(&mut self, account: Option<usize>) -> usize {
        let before = self.access.len() + self.refresh.len();
        self.access.retain(|_, t| account.is_some_and(|a| a != t.account));
        self.refresh.retain(|_, t| account.is_some_and(|a| a != t.account));
        before - self.access.len() - self.refresh.len()
    }
}

fn usable_on(binding: &Binding, conn: ConnId) -> bool {
    match binding {
        Binding::Connection(c) => *c == conn,
        Binding::Session(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::{Auth, Binding, SignedRequest, TEST_CLIENT_ID, TEST_CLIENT_SECRET, parse_scope};
    use crate::deribit::error::{INVALID_CREDENTIALS, INVALID_PARAMS, UNAUTHORIZED};
    use std::time::{Duration, Instant};

    fn auth() -> Auth {
        let creds = vec![(TEST_CLIENT_ID.to_owned(), TEST_CLIENT_SECRET.to_owned()), ("b".to_owned(), "s".to_owned())];
        Auth::new(creds, 1, Duration::from_millis(1500), Duration::from_secs(10))
    }

    fn code<T>(r: Result<T, crate::deribit::error::RpcError>) -> Option<i64> {
        r.err().map(|e| e.code)
    }

    fn conn_scope(conn: u64) -> (Binding, Vec<String>) {
        (Binding::Connection(conn), Vec::new())
    }

    #[test]
    fn credentials_tokens_and_expiry() {
        let t0 = Instant::now();
        let mut auth = auth();
        assert_eq!(
            code(auth.client_credentials(TEST_CLIENT_ID, "wrong", conn_scope(1), t0, 0)),
            Some(INVALID_CREDENTIALS)
        );
        assert_eq!(
            code(auth.client_credentials("nobody", TEST_CLIENT_SECRET, conn_scope(1), t0, 0)),
            Some(INVALID_CREDENTIALS)
        );
        let Ok(grant) = auth.client_credentials("b", "s", conn_scope(1), t0, 0) else { panic!("auth failed") };
        assert_eq!((grant.account, grant.expires_in, grant.scope.as_str()), (1, 2, "connection mainaccount"));
        assert_eq!(auth.check(&grant.access_token, 1, t0), Ok(1));
        // Connection scope: no other connection may use it.
        assert_eq!(code(auth.check(&grant.access_token, 2, t0)), Some(UNAUTHORIZED));
        assert_eq!(code(auth.refresh(&grant.refresh_token, 2, t0, 0)), Some(INVALID_CREDENTIALS));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(code(auth.check(&grant.access_token, 1, later)), Some(UNAUTHORIZED));
        assert_eq!(code(auth.check("made-up", 1, t0)), Some(UNAUTHORIZED));
        let Ok(fresh) = auth.refresh(&grant.refresh_token, 1, later, 0) else { panic!("refresh failed") };
        assert_eq!(auth.check(&fresh.access_token, 1, later), Ok(1));
        assert_ne!(fresh.access_token, grant.access_token);
        // A refresh token works once.
        assert_eq!(code(auth.refresh(&grant.refresh_token, 1, later, 0)), Some(INVALID_CREDENTIALS));
        // The connection closes: its tokens die.
        auth.connection_closed(1);
        assert_eq!(code(auth.check(&fresh.access_token, 1, later)), Some(UNAUTHORIZED));
        assert_eq!(code(auth.refresh(&fresh.refresh_token, 1, later, 0)), Some(INVALID_CREDENTIALS));
    }

    #[test]
    fn session_scope_survives_connections_and_keeps_its_sid() {
        let t0 = Instant::now();
        let mut auth = auth();
        let scope = parse_scope(Some("session:bot trade:read_write"), 1).unwrap_or_else(|e| panic!("{e}"));
        let Ok(a) = auth.client_credentials("b", "s", scope.clone(), t0, 0) else { panic!("auth failed") };
        assert_eq!(a.scope, "session:bot trade:read_write mainaccount");
        assert_eq!(a.sid.as_deref(), Some("ws-1"));
        auth.connection_closed(1);
        assert_eq!(auth.check(&a.access_token, 7, t0), Ok(1));
        let Ok(b) = auth.refresh(&a.refresh_token, 7, t0, 0) else { panic!("refresh failed") };
        assert_eq!((b.scope.as_str(), b.sid.as_deref()), (a.scope.as_str(), Some("ws-1")));
        assert_eq!(code(parse_scope(Some("session:"), 1)), Some(INVALID_PARAMS));
        // Expire keeps refresh tokens; revoke kills everything.
        assert_eq!(auth.expire(Some(1), t0), 2, "both access tokens of the session");
        assert_eq!(code(auth.check(&b.access_token, 7, t0)), Some(UNAUTHORIZED));
        let Ok(c) = auth.refresh(&b.refresh_token, 7, t0, 0) else { panic!("refresh after expiry failed") };
        assert_eq!(auth.revoke(None), 2);
        assert_eq!(code(auth.check(&c.access_token, 7, t0)), Some(UNAUTHORIZED));
    }

    #[test]
    fn client_signature_is_checked_against_the_secret() {
        let t0 = Instant::now();
        let mut auth = auth();
        // HMAC-SHA256("s", "1576074319000\nabc\nxyz"), as Python's hmac computes it.
        let good = "b2703871d78654b9067e0f829826e7cacbfd9a4966b450e8860dd5bf3d0daac7";
        let signed = SignedRequest { timestamp: 1_576_074_319_000, nonce: "abc", data: "xyz", signature: good };
        let Ok(grant) = auth.client_signature("b", &signed, conn_scope(1), t0, 0) else { panic!("signature refused") };
        assert_eq!(auth.check(&grant.access_token, 1, t0), Ok(1));
        for bad in [
            SignedRequest { signature: "00", ..signed },
            SignedRequest { nonce: "abd", ..signed },
            SignedRequest { timestamp: 1_576_074_319_001, ..signed },
        ] {
            assert_eq!(code(auth.client_signature("b", &bad, conn_scope(1), t0, 0)), Some(INVALID_CREDENTIALS));
        }
        assert_eq!(code(auth.client_signature("nobody", &signed, conn_scope(1), t0, 0)), Some(INVALID_CREDENTIALS));
    }
}
