//! The HTTP/2 keepalive loop: PING on an interval, down when one goes unanswered.

use crate::error::{DownReason, Http2Failure, ProtocolFailure};
use crate::options::Keepalive;

/// Ping on an interval; return when a ping goes unanswered.
pub(super) async fn keepalive_loop(mut ping: h2::PingPong, k: Keepalive) -> DownReason {
    loop {
        tokio::time::sleep(k.interval).await;
        match tokio::time::timeout(k.timeout, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return DownReason::Protocol(ProtocolFailure::Http2(Http2Failure::new(e))),
            Err(_) => return DownReason::KeepaliveTimeout(k.timeout),
        }
    }
}
