//! [`Raw`]: no protocol above WebSocket.

use super::{Confirmation, Dialect, DialectError, Frame, Inbound, OutRequest, SubOp};
use crate::jsonrpc::{RawValue, RpcError};

/// No protocol: every frame is data without a channel, nothing is subscribed or correlated.
/// `subscribe` and `request` fail with [`DialectError::Unsupported`]; the client still
/// reconnects, watches liveness and bounds its buffers.
///
/// ```
/// use moorline_client::dialect::{Dialect, Frame, Inbound, Raw};
///
/// assert!(matches!(Raw.classify(Frame::Text("{\"id\":1,\"result\":2}")), Inbound::Data { channel: None }));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Dialect for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn classify<'a>(&self, _frame: Frame<'a>) -> Inbound<'a> {
        Inbound::Data { channel: None }
    }

    fn subscription_request(&self, op: SubOp, _id: u64, _channels: &[&str]) -> Result<OutRequest, DialectError> {
        Err(DialectError::Unsupported {
            dialect: "raw",
            operation: match op {
                SubOp::Subscribe => "subscriptions",
                SubOp::Unsubscribe => "unsubscriptions",
            },
        })
    }

    fn confirm(&self, _op: SubOp, requested: &[&str], _reply: Result<&RawValue, &RpcError>) -> Confirmation {
        Confirmation::all_refused(requested, "the raw dialect has no subscriptions")
    }

    fn request(&self, _id: u64, _method: &str, _params: Option<&RawValue>) -> Result<OutRequest, DialectError> {
        Err(DialectError::Unsupported { dialect: "raw", operation: "requests (no correlation): use send_text" })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn raw_has_no_protocol() {
        assert!(matches!(Raw.classify(Frame::Binary(&[1, 2])), Inbound::Data { channel: None }));
        let e = Raw.subscription_request(SubOp::Subscribe, 1, &["a"]).unwrap_err();
        assert_eq!(e.to_string(), "the raw dialect does not support subscriptions");
        assert!(Raw.request(1, "m", None).is_err());
        assert!(Raw.handshake(&super::super::SessionContext { heartbeat: None }, &mut || 1).unwrap().is_empty());
        assert!(Raw.authenticate(1).is_none());
    }
}
