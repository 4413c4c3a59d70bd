//! [`Upgraded`]: what a successful WebSocket upgrade agreed.

use moorline_proto::ws::DeflateParams;

/// What a successful upgrade agreed, as returned by
/// [`Events::await_ws_upgrade`](crate::Events::await_ws_upgrade).
#[derive(Debug, Clone)]
pub struct Upgraded {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// permessage-deflate parameters, if negotiated.
    pub deflate: Option<DeflateParams>,
    /// The response headers.
    pub headers: http::HeaderMap,
}
