//! GOAWAY bookkeeping: what the read path learns of the server's GOAWAY and SETTINGS
//! ([`GoAwaySlot`]), and what a connection-level h2 error means for the owner.

use std::io;
use std::sync::{Arc, Mutex};

use moorline_proto::h2watch::GoAway;
use tokio::sync::Notify;

use crate::error::{DownReason, Http2Failure, ProtocolFailure};

/// What the read path learns for the session: the last GOAWAY seen on the wire, and when
/// the server's SETTINGS took effect.
#[derive(Default)]
pub(crate) struct GoAwaySlot {
    pub(super) last: Mutex<Option<GoAway>>,
    pub(super) notify: Notify,
    /// Signalled when h2 has applied a SETTINGS frame of the server (the first one, its
    /// preface, and any later one: MAX_CONCURRENT_STREAMS may have changed).
    pub(super) settings: Notify,
    /// A TLS failure seen on the read path (h2 keeps only the text of I/O errors).
    pub(super) tls: Mutex<Option<crate::error::TlsFailure>>,
}

/// What a connection-level h2 error means for the owner.
pub(super) fn conn_error_reason(e: &h2::Error, goaway: Option<GoAway>) -> DownReason {
    if let (true, Some(g)) = (e.is_go_away() && e.is_remote(), goaway) {
        return DownReason::GoAway { error_code: g.error_code, last_stream_id: g.last_stream_id };
    }
    if let Some(io) = e.get_io() {
        if io.kind() == io::ErrorKind::UnexpectedEof {
            return DownReason::Closed;
        }
        return DownReason::Io(Arc::new(io::Error::new(io.kind(), io.to_string())));
    }
    DownReason::Protocol(ProtocolFailure::Http2(Http2Failure::new_ref(e)))
}
