//! Per-connection dispatch: connection-level faults, TLS handshake, and the
//! choice between HTTP/1.1, HTTP/2 (`h2`) and raw HTTP/2 fault modes.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::ctx::{ConnCtx, PREFACE};
use super::fault::Fault;
use super::io::{BoxIo, Rewind, graceful_close};
use super::{h1, h2, raw_h2};

/// The application protocol chosen for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// Serves one accepted TCP connection until it ends.
pub(crate) async fn run(tcp: TcpStream, ctx: ConnCtx) {
    let fault = ctx.shared.fault().filter(Fault::is_connection_level);
    match fault {
        Some(Fault::RefuseConnections) => {
            tracing::debug!(id = ctx.id, "refusing connection");
            let mut tcp = tcp;
            graceful_close(&mut tcp).await;
            return;
        }
        Some(Fault::ResetConnections) => {
            tracing::debug!(id = ctx.id, "resetting connection");
            ctx.reset_connection();
            drop(tcp);
            return;
        }
        Some(Fault::SilentTls | Fault::HalfOpen) => {
            tracing::debug!(id = ctx.id, "holding connection silently");
            let _tcp = tcp;
            std::future::pending::<()>().await;
            return;
        }
        _ => {}
    }
    let (io, proto) = match negotiate(tcp, &ctx).await {
        Ok(chosen) => chosen,
        Err(e) => {
            tracing::debug!(id = ctx.id, error = %e, "connection setup failed");
            return;
        }
    };
    tracing::debug!(id = ctx.id, ?proto, "serving connection");
    let result = match (proto, fault) {
        (Proto::H2, Some(Fault::GoAwayAfter { streams, last_stream_id })) => {
            raw_h2::go_away_after(io, streams, last_stream_id, &ctx).await
        }
        (Proto::H2, Some(Fault::InvalidH2Frames)) => raw_h2::invalid_frames(io).await,
        (Proto::H2, _) => h2::serve(io, ctx.clone()).await,
        (Proto::H1, _) => h1::serve(io, ctx.clone()).await,
    };
    if let Err(e) = result {
        tracing::debug!(id = ctx.id, error = %e, "connection ended with an error");
    }
}

/// Runs the TLS handshake (if any) and picks the protocol.
async fn negotiate(mut tcp: TcpStream, ctx: &ConnCtx) -> std::io::Result<(BoxIo, Proto)> {
    if let Some(acceptor) = &ctx.config.tls {
        let tls = acceptor.accept(tcp).await?;
        let proto = if tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()) { Proto::H2 } else { Proto::H1 };
        return Ok((Box::new(tls), proto));
    }
    if !ctx.config.h2 {
        return Ok((Box::new(tcp), Proto::H1));
    }
    // Prior knowledge: read while the bytes could still be the HTTP/2 preface.
    let mut seen = BytesMut::with_capacity(64);
    while seen.len() < PREFACE.len() && PREFACE.starts_with(&seen) {
        if tcp.read_buf(&mut seen).await? == 0 {
            break;
        }
    }
    let proto = if seen.starts_with(PREFACE) { Proto::H2 } else { Proto::H1 };
    Ok((Box::new(Rewind::new(seen.freeze(), tcp)), proto))
}
