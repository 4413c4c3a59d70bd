//! Hand-written HTTP/2 framing for faults `h2` would never commit:
//! [`Fault::GoAwayAfter`](super::Fault::GoAwayAfter) and
//! [`Fault::InvalidH2Frames`](super::Fault::InvalidH2Frames).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::ctx::{ConnCtx, PREFACE};
use super::error::Error;
use super::io::{BoxIo, discard_until_eof, graceful_close};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
/// How long the connection stays open (still reading) after the GOAWAY.
const LINGER_AFTER_GOAWAY: Duration = Duration::from_millis(200);

/// A frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    len: u32,
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Encodes one frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).min(0x00ff_ffff);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
    out
}

/// Reads and checks the 24-byte client preface.
async fn read_preface<R: AsyncRead + Unpin + ?Sized>(io: &mut R) -> Result<(), Error> {
    let mut preface = [0u8; 24];
    io.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(Error::BadRequest("bad HTTP/2 client preface"));
    }
    Ok(())
}

/// Reads a frame header; `None` on EOF.
async fn read_header<R: AsyncRead + Unpin + ?Sized>(io: &mut R) -> Result<Option<Header>, Error> {
    let mut raw = [0u8; 9];
    match io.read_exact(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    Ok(Some(Header {
        len: u32::from_be_bytes([0, raw[0], raw[1], raw[2]]),
        kind: raw[3],
        flags: raw[4],
        stream: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
    }))
}

/// Reads one frame and answers SETTINGS and PING; returns its header, `None` on EOF.
async fn next_frame(io: &mut BoxIo) -> Result<Option<Header>, Error> {
    let Some(header) = read_header(io).await? else {
        return Ok(None);
    };
    if header.kind == PING && header.len == 8 {
        let mut opaque = [0u8; 8];
        io.read_exact(&mut opaque).await?;
        if header.flags & ACK == 0 {
            io.write_all(&frame(PING, ACK, 0, &opaque)).await?;
            io.flush().await?;
        }
    } else {
        let skipped = tokio::io::copy(&mut (&mut *io).take(u64::from(header.len)), &mut tokio::io::sink()).await?;
        if skipped < u64::from(header.len) {
            return Ok(None);
        }
        if header.kind == SETTINGS && header.flags & ACK == 0 {
            io.write_all(&frame(SETTINGS, ACK, 0, &[])).await?;
            io.flush().await?;
        }
    }
    Ok(Some(header))
}

/// [`Fault::GoAwayAfter`](super::Fault::GoAwayAfter): see its documentation.
pub(crate) async fn go_away_after(
    mut io: BoxIo,
    streams: usize,
    last_stream_id: u32,
    ctx: &ConnCtx,
) -> Result<(), Error> {
    read_preface(&mut io).await?;
    io.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
    io.flush().await?;
    let mut goaway = [0u8; 8];
    goaway[..4].copy_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
    // Error code NO_ERROR (0) in the last four bytes.
    let mut deadline = None;
    if streams == 0 {
        io.write_all(&frame(GOAWAY, 0, 0, &goaway)).await?;
        io.flush().await?;
        deadline = Some(Instant::now() + LINGER_AFTER_GOAWAY);
    }
    let mut seen = 0usize;
    loop {
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, next_frame(&mut io)).await {
                Ok(next) => next?,
                Err(_) => break,
            },
            None => next_frame(&mut io).await?,
        };
        let Some(header) = next else { break };
        if header.kind == HEADERS && header.stream % 2 == 1 {
            seen += 1;
            ctx.shared.request_seen();
            tracing::debug!(stream = header.stream, seen, "raw HTTP/2 HEADERS");
            if deadline.is_none() && seen >= streams {
                tracing::debug!(last_stream_id, "sending GOAWAY");
                io.write_all(&frame(GOAWAY, 0, 0, &goaway)).await?;
                io.flush().await?;
                deadline = Some(Instant::now() + LINGER_AFTER_GOAWAY);
            }
        }
    }
    graceful_close(&mut io).await;
    Ok(())
}

/// [`Fault::InvalidH2Frames`](super::Fault::InvalidH2Frames): see its documentation.
pub(crate) async fn invalid_frames(mut io: BoxIo) -> Result<(), Error> {
    read_preface(&mut io).await?;
    let mut out = frame(SETTINGS, 0, 0, &[]);
    out.extend_from_slice(&frame(DATA, 0, 0, b"oops"));
    io.write_all(&out).await?;
    io.flush().await?;
    discard_until_eof(&mut io).await;
    Ok(())
}
