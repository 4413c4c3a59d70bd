//! Deribit's error codes sorted into what a client does about them.
//!
//! Deribit answers a failed request with a JSON-RPC error (`code`, `message`, `data`); the
//! code decides the reaction, not the text. The classes follow Deribit's documentation and
//! the codes trading clients treat as transient (NautilusTrader's set, `../shared/anchors.md`):
//!
//! | class | codes | what to do |
//! |---|---|---|
//! | [`ErrorClass::Retryable`] | 10028 `too_many_requests`, 10040 retry, 10041 settlement in progress, 10047 matching engine queue full, 10066 too many concurrent requests, 11051 system maintenance, 11094 internal error, 13028 temporarily unavailable, 13888 timed out | retry after a delay (10028: let the rate limiter refill) |
//! | [`ErrorClass::Reauthenticate`] | 10000 `authorization_required`, 13009 `invalid_token` (expired), 13010 `token_revoked` | authenticate again, then retry |
//! | [`ErrorClass::Permanent`] | everything else: 10009, 13004 `invalid_credentials`, -32602 invalid params, 13778 `.raw` channels without authentication... | report: the same request fails the same way |
//!
//! ```
//! use moorline_client::deribit::errors::{classify, ErrorClass};
//! assert_eq!(classify(10028), ErrorClass::Retryable);
//! assert_eq!(classify(13009), ErrorClass::Reauthenticate);
//! assert_eq!(classify(10009), ErrorClass::Permanent);
//! ```

use crate::jsonrpc::RpcError;

/// The codes worth retrying as they are.
pub const RETRYABLE: &[i64] = &[10028, 10040, 10041, 10047, 10066, 11051, 11094, 13028, 13888];

/// The codes that ask for a new authentication.
pub const REAUTHENTICATE: &[i64] = &[10000, 13009, 13010];

/// What a client does about a Deribit error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retry after a delay.
    Retryable,
    /// The token is missing, expired or revoked: authenticate again, then retry.
    Reauthenticate,
    /// The request itself is wrong or refused: retrying fails the same way.
    Permanent,
}

/// The class of a Deribit error code.
pub fn classify(code: i64) -> ErrorClass {
    if RETRYABLE.contains(&code) {
        ErrorClass::Retryable
    } else if REAUTHENTICATE.contains(&code) {
        ErrorClass::Reauthenticate
    } else {
        ErrorClass::Permanent
    }
}

/// A Deribit error with its class.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Deribit error {} ({:?}): {}", .error.code, .class, .error.message)]
pub struct DeribitError {
    /// The JSON-RPC error as Deribit sent it.
    pub error: RpcError,
    /// What to do about it.
    pub class: ErrorClass,
}

impl From<RpcError> for DeribitError {
    fn from(error: RpcError) -> Self {
        let class = classify(error.code);
        Self { error, class }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_code_has_its_class_and_the_rest_is_permanent() {
        for code in RETRYABLE {
            assert_eq!(classify(*code), ErrorClass::Retryable, "{code}");
        }
        for code in REAUTHENTICATE {
            assert_eq!(classify(*code), ErrorClass::Reauthenticate, "{code}");
        }
        for code in [10009, 13004, 13778, -32602, -32600, 0] {
            assert_eq!(classify(code), ErrorClass::Permanent, "{code}");
        }
        let e = DeribitError::from(RpcError { code: 10028, message: "too_many_requests".into(), data: None });
        assert_eq!(e.to_string(), "Deribit error 10028 (Retryable): too_many_requests");
    }
}
