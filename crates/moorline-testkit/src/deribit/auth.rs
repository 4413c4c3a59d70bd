//! Test accounts and the access/refresh tokens `public/auth` hands out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::error::RpcError;
use super::rng::SplitMix64;

/// Client id of the built-in test account (grant `client_credentials`).
pub const TEST_CLIENT_ID: &str = "moorline-test-client";
/// Client secret of the built-in test account.
pub const TEST_CLIENT_SECRET: &str = "moorline-test-secret";

/// What a successful `public/auth` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) account: usize,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// Access token lifetime, whole seconds rounded up.
    pub(crate) expires_in: u64,
}

/// Credentials by account index, and the tokens issued so far.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    credentials: Vec<(String, String)>,
    rng: SplitMix64,
    access: HashMap<String, (usize, Instant)>,
    refresh: HashMap<String, (usize, Instant)>,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
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
        Self { credentials, rng, access: HashMap::new(), refresh: HashMap::new(), access_lifetime, refresh_lifetime }
    }

    fn token(&mut self, now_ms: u64) -> String {
        format!("{now_ms}.{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64())
    }

    fn issue(&mut self, account: usize, now: Instant, now_ms: u64) -> Grant {
        self.access.retain(|_, (_, until)| *until > now);
        self.refresh.retain(|_, (_, until)| *until > now);
        let (access_token, refresh_token) = (self.token(now_ms), self.token(now_ms));
        let far = now + Duration::from_secs(100 * 365 * 86_400);
        self.access.insert(access_token.clone(), (account, now.checked_add(self.access_lifetime).unwrap_or(far)));
        self.refresh.insert(refresh_token.clone(), (account, now.checked_add(self.refresh_lifetime).unwrap_or(far)));
        let expires_in = self.access_lifetime.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX);
        Grant { account, access_token, refresh_token, expires_in }
    }

    /// Grant `client_credentials`: `13004` unless the id and secret match an account.
    pub(crate) fn client_credentials(
        &mut self,
        client_id: &str,
        client_secret: &str,
        now: Instant,
        now_ms: u64,
    ) -> Result<Grant, RpcError> {
        let account = self
            .credentials
            .iter()
            .position(|(id, secret)| id == client_id && secret == client_secret)
            .ok_or_else(RpcError::invalid_credentials)?;
        Ok(self.issue(account, now, now_ms))
    }

    /// Grant `refresh_token`: the old refresh token is used up; `13004` if it is
    /// unknown, used or expired.
    pub(crate) fn refresh(&mut self, refresh_token: &str, now: Instant, now_ms: u64) -> Result<Grant, RpcError> {
        match self.refresh.remove(refresh_token) {
            Some((account, until)) if until > now => Ok(self.issue(account, now, now_ms)),
            _ => Err(RpcError::invalid_credentials()),
        }
    }

    /// The account an access token belongs to; `13009` if unknown or expired.
    pub(crate) fn check(&self, access_token: &str, now: Instant) -> Result<usize, RpcError> {
        match self.access.get(access_token) {
            Some(&(account, until)) if until > now => Ok(account),
            Some(_) => Err(RpcError::unauthorized("access token expired")),
            None => Err(RpcError::unauthorized("invalid access token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Auth, TEST_CLIENT_ID, TEST_CLIENT_SECRET};
    use crate::deribit::error::{INVALID_CREDENTIALS, UNAUTHORIZED};
    use std::time::{Duration, Instant};

    fn auth() -> Auth {
        let creds = vec![(TEST_CLIENT_ID.to_owned(), TEST_CLIENT_SECRET.to_owned()), ("b".to_owned(), "s".to_owned())];
        Auth::new(creds, 1, Duration::from_millis(1500), Duration::from_secs(10))
    }

    #[test]
    fn credentials_tokens_and_expiry() {
        let t0 = Instant::now();
        let mut auth = auth();
        fn code<T>(r: Result<T, crate::deribit::error::RpcError>) -> Option<i64> {
            r.err().map(|e| e.code)
        }
        assert_eq!(code(auth.client_credentials(TEST_CLIENT_ID, "wrong", t0, 0)), Some(INVALID_CREDENTIALS));
        assert_eq!(code(auth.client_credentials("nobody", TEST_CLIENT_SECRET, t0, 0)), Some(INVALID_CREDENTIALS));
        let Ok(grant) = auth.client_credentials("b", "s", t0, 0) else { panic!("auth failed") };
        assert_eq!((grant.account, grant.expires_in), (1, 2));
        assert_eq!(auth.check(&grant.access_token, t0), Ok(1));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(code(auth.check(&grant.access_token, later)), Some(UNAUTHORIZED));
        assert_eq!(code(auth.check("made-up", t0)), Some(UNAUTHORIZED));
        let Ok(fresh) = auth.refresh(&grant.refresh_token, later, 0) else { panic!("refresh failed") };
        assert_eq!(auth.check(&fresh.access_token, later), Ok(1));
        assert_ne!(fresh.access_token, grant.access_token);
        // A refresh token works once.
        assert_eq!(code(auth.refresh(&grant.refresh_token, later, 0)), Some(INVALID_CREDENTIALS));
    }
}
