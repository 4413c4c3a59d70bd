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

use crate::error::ClientError;
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
    /// An order request may or may not have been processed (its answer was lost): do not
    /// send it again blindly; the façade's reconciliation reports what became of it.
    OutcomeUnknown,
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

/// Why a call of the Deribit façade ([`DeribitClient`](super::DeribitClient)) failed, with
/// its [`ErrorClass`] ([`DeribitError::class`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeribitError {
    /// Deribit answered with an error.
    #[error("Deribit error {} ({:?}): {}", .error.code, .class, .error.message)]
    Venue {
        /// The JSON-RPC error as Deribit sent it.
        error: RpcError,
        /// What to do about it.
        class: ErrorClass,
    },
    /// An order request was sent and its answer lost (the connection dropped, or the
    /// deadline passed): it may have been processed. The façade finds it by its label after
    /// the reconnect (or at once after a timeout) and reports it as order events.
    #[error("the outcome of order request {label:?} is unknown ({source}); reconciliation will report it")]
    OutcomeUnknown {
        /// The order's label.
        label: String,
        /// What happened.
        #[source]
        source: ClientError,
    },
    /// Trading stayed locked (maintenance) for as long as the call could wait.
    #[error("the platform is locked for maintenance; still locked after {waited:?}")]
    Maintenance {
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// The client failed the call (not connected, timeout, closed, rate limited...).
    #[error(transparent)]
    Client(ClientError),
    /// The answer could not be read as the method's result.
    #[error("could not read the answer to {method}: {reason}")]
    Decode {
        /// The method.
        method: String,
        /// Why.
        reason: String,
    },
}

impl DeribitError {
    /// What to do about it.
    ///
    /// ```
    /// use moorline_client::deribit::errors::{DeribitError, ErrorClass};
    /// use moorline_client::jsonrpc::RpcError;
    /// use moorline_client::ClientError;
    ///
    /// let busy = DeribitError::from(RpcError { code: 10028, message: "too_many_requests".into(), data: None });
    /// assert_eq!(busy.class(), ErrorClass::Retryable);
    /// assert_eq!(DeribitError::from(ClientError::Disconnected { sent: false }).class(), ErrorClass::Retryable);
    /// assert_eq!(DeribitError::from(ClientError::Closed).class(), ErrorClass::Permanent);
    /// ```
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Venue { class, .. } => *class,
            Self::OutcomeUnknown { .. } => ErrorClass::OutcomeUnknown,
            Self::Maintenance { .. } => ErrorClass::Retryable,
            Self::Client(e) if e.is_retryable() => ErrorClass::Retryable,
            Self::Client(_) | Self::Decode { .. } => ErrorClass::Permanent,
        }
    }

    /// Whether the same call may succeed later ([`ErrorClass::Retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// Deribit's error code, when Deribit answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Venue { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

impl From<RpcError> for DeribitError {
    fn from(error: RpcError) -> Self {
        let class = classify(error.code);
        Self::Venue { error, class }
    }
}

impl From<ClientError> for DeribitError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Rpc { error, .. } => error.into(),
            other => Self::Client(other),
        }
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
        assert_eq!((e.class(), e.code()), (ErrorClass::Retryable, Some(10028)));
        for code in [10040, 10041, 10047, 11051, 13028] {
            assert!(DeribitError::from(RpcError { code, message: String::new(), data: None }).is_retryable(), "{code}");
        }
        for code in [10009, 13004] {
            let e = DeribitError::from(RpcError { code, message: String::new(), data: None });
            assert_eq!(e.class(), ErrorClass::Permanent, "{code}");
        }
        let rpc = ClientError::Rpc {
            error: RpcError { code: 13009, message: "unauthorized".into(), data: None },
            retryable: false,
        };
        assert_eq!(DeribitError::from(rpc).class(), ErrorClass::Reauthenticate);
        let lost = DeribitError::OutcomeUnknown { label: "x".into(), source: ClientError::Disconnected { sent: true } };
        assert_eq!(lost.class(), ErrorClass::OutcomeUnknown);
        assert!(!lost.is_retryable());
    }
}
