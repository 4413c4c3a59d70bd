//! The identities everything else names: a stream ([`StreamRef`]) and a protocol
//! ([`Protocol`]). At the bottom of the crate: it imports nothing of it.

/// Identifies one stream (one request/response exchange) of one connection.
///
/// It carries the identity of its connection, so it can never be confused with a stream of
/// another connection: every call that takes one checks it and refuses a foreign one at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    pub(crate) conn: u64,
    pub(crate) id: u64,
}

impl StreamRef {
    /// The identity of the connection this stream belongs to.
    pub fn connection_id(&self) -> u64 {
        self.conn
    }
    /// The stream's number, unique within its connection (not the HTTP/2 stream id).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// The application protocol negotiated on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

impl Protocol {
    /// The ALPN identifier of the protocol.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        })
    }
}
