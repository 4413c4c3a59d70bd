//! Why a WebSocket opening handshake failed.

/// A WebSocket opening handshake the server answered wrongly, or a bad configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with another status than 101 (HTTP/1.1) or 2xx (HTTP/2).
    #[error("the server refused the WebSocket handshake with status {status}")]
    Status {
        /// The status it sent.
        status: u16,
    },
    /// `Upgrade: websocket` is missing from a 101 response.
    #[error("the 101 response lacks `upgrade: websocket`")]
    MissingUpgrade,
    /// `Connection: upgrade` is missing from a 101 response.
    #[error("the 101 response lacks `connection: upgrade`")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is missing or not the hash of our key.
    #[error("bad sec-websocket-accept: expected {expected:?}, got {got:?}")]
    BadAccept {
        /// What RFC 6455 §4.2.2 says it must be for our key.
        expected: String,
        /// What the server sent (`None`: nothing).
        got: Option<String>,
    },
    /// The server chose a subprotocol we did not offer (or sent several).
    #[error("the server chose subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// The server answered with an extension we did not offer, or a bad one.
    #[error("bad sec-websocket-extensions: {0}")]
    BadExtension(String),
    /// A header value is not visible ASCII.
    #[error("header {0} is not valid text")]
    BadHeaderValue(&'static str),
    /// The handshake options are invalid.
    #[error("invalid WebSocket options: {0}")]
    BadConfig(String),
}
