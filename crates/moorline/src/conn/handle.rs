//! The cloneable handle and `open`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::sync::{mpsc, oneshot};

use moorline_proto::ws::{ClientHandshake, check_outgoing};

use super::command::{Command, InChannel, ReqBody, Request, WsUpgrade};
use super::delivery::Budget;
use super::info::{Info, State, StreamInfo};
use super::owner::Events;
use super::shared::Shared;
use super::worker;
use crate::dial::Target;
use crate::error::{Error, OptionsError};
use crate::ids::StreamRef;
use crate::options::ConnectOptions;
use crate::sync::lock;
use crate::wsio::{CloseCode, CloseFrame, Message, WsOptions, refused};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Chunks a streamed body may have queued ahead of the socket.
const BODY_CHANNEL: usize = 4;

/// The sending half of a streamed request body, from [`Connection::headers`]. It belongs to
/// exactly one stream, so body data can never go to the wrong one. Dropping it before
/// [`RequestBody::finish`] abandons the request (the stream is reset on HTTP/2; on HTTP/1.1
/// the connection is closed, as a half-sent request cannot be recovered).
pub struct RequestBody {
    stream: StreamRef,
    tx: mpsc::Sender<(Bytes, bool)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").field("stream", &self.stream).finish()
    }
}

impl RequestBody {
    /// The stream this body belongs to.
    pub fn stream(&self) -> StreamRef {
        self.stream
    }

    /// Send a chunk; waits while the connection cannot take more (flow control).
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.tx.send((data.into(), false)).await.map_err(|_| self.closed())
    }

    /// Send the last chunk (may be empty) and end the body.
    pub async fn finish(self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.tx.send((data.into(), true)).await.map_err(|_| self.closed())
    }

    fn closed(&self) -> Error {
        match self.shared.exit_reason() {
            Some(r) => Error::Exited(Some(r)),
            None => Error::StreamClosed(self.stream),
        }
    }
}

/// A handle to a connection. Clone it freely: any task may send commands; events go to the
/// single owner holding the [`Events`].
///
/// Dropping every handle closes the connection (nobody could command it any more); so does
/// dropping the owner's [`Events`] (nobody could hear it), as with Gun's owner monitor.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    cmd: mpsc::Sender<Command>,
    /// `set_owner` requests: a channel of their own, served even while the worker waits
    /// on a stalled owner.
    owner: mpsc::Sender<oneshot::Sender<Events>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id", &self.shared.id).finish()
    }
}

/// Open a connection to `host:port`. It returns at once: the worker connects in the
/// background and the owner hears `Up` (or, after the retries, `Exit`) on the returned
/// [`Events`]. Options are checked first: bad ones are refused here with a reason.
///
/// Must be called inside a tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), moorline::Error> {
/// use std::time::Duration;
/// let (conn, mut events) = moorline::open("example.org", 443, moorline::ConnectOptions::default())?;
/// let protocol = events.await_up(Duration::from_secs(5)).await?;
/// let stream = conn.get("/", moorline::http::HeaderMap::new()).await?;
/// let response = events.await_response(&stream, Duration::from_secs(5)).await?;
/// let body = events.await_body(&stream, Duration::from_secs(5)).await?;
/// println!("{protocol}: {} with {} bytes", response.status, body.data.len());
/// # Ok(()) }
/// ```
pub fn open(host: &str, port: u16, options: ConnectOptions) -> Result<(Connection, Events), Error> {
    let rt = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let target = Target::new(host, port, &options)?;
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (ev_tx, ev_rx) = mpsc::channel(options.event_buffer);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (owner_tx, owner_rx) = mpsc::channel(4);
    let budget = Arc::new(Budget::new(options.event_buffer_bytes));
    let info = Info {
        id,
        host: host.to_owned(),
        port,
        transport: target.transport,
        state: State::Connecting,
        protocol: None,
        peer: None,
        local: None,
        connects: 0,
        failures: 0,
        last_failure: None,
        exit: None,
    };
    let shared = Arc::new(Shared::new(id, ev_tx.clone(), info, budget.clone()));
    worker::spawn(&rt, shared.clone(), target, options, cmd_rx, owner_rx, ev_tx);
    Ok((Connection { shared: shared.clone(), cmd: cmd_tx, owner: owner_tx }, Events::new(shared, ev_rx, budget)))
}

impl Connection {
    /// The connection's identity (as in [`StreamRef::connection_id`]).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    fn check(&self, stream: &StreamRef) -> Result<(), Error> {
        if stream.conn != self.shared.id { Err(Error::ForeignStream(*stream)) } else { Ok(()) }
    }

    async fn send(&self, cmd: Command) -> Result<(), Error> {
        // Room in the channel (the usual case): no waiting machinery.
        let cmd = match self.cmd.try_send(cmd) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(cmd)) => cmd,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::Exited(self.shared.exit_reason())),
        };
        self.cmd.send(cmd).await.map_err(|_| Error::Exited(self.shared.exit_reason()))
    }

    /// Send a request with a complete body (empty for none). `target` is the path and query.
    pub async fn request(
        &self,
        method: Method,
        target: &str,
        headers: HeaderMap,
        body: impl Into<Bytes>,
    ) -> Result<StreamRef, Error> {
        let stream = self.shared.new_stream();
        let req = Request { stream, method, target: target.to_owned(), headers, body: ReqBody::Full(body.into()) };
        self.send(Command::Request(Box::new(req))).await?;
        Ok(stream)
    }

    /// `GET target`.
    pub async fn get(&self, target: &str, headers: HeaderMap) -> Result<StreamRef, Error> {
        self.request(Method::GET, target, headers, Bytes::new()).await
    }

    /// Start a request whose body follows through the returned [`RequestBody`]. Without a
    /// `content-length` header the body is sent chunked on HTTP/1.1.
    pub async fn headers(
        &self,
        method: Method,
        target: &str,
        headers: HeaderMap,
    ) -> Result<(StreamRef, RequestBody), Error> {
        let stream = self.shared.new_stream();
        let (tx, rx) = mpsc::channel(BODY_CHANNEL);
        let req = Request { stream, method, target: target.to_owned(), headers, body: ReqBody::Streaming(rx) };
        self.send(Command::Request(Box::new(req))).await?;
        Ok((stream, RequestBody { stream, tx, shared: self.shared.clone() }))
    }

    /// Start a WebSocket on `target` (path and query). Over HTTP/1.1 the connection becomes
    /// the WebSocket (RFC 6455); over HTTP/2 the WebSocket is one stream among others
    /// (RFC 8441, when the server allows it). The owner gets [`Event::WsUpgraded`](crate::Event::WsUpgraded)
    /// (see [`Events::await_ws_upgrade`](crate::Events::await_ws_upgrade)), then the messages.
    ///
    /// A WebSocket does not survive a reconnection: after `Down`, upgrade again.
    ///
    /// ```no_run
    /// # async fn demo(conn: moorline::Connection, mut events: moorline::Events) -> Result<(), moorline::Error> {
    /// use std::time::Duration;
    /// use moorline::ws::{Message, WsOptions};
    ///
    /// let ws = conn.ws_upgrade("/ws/api/v2", WsOptions::default()).await?;
    /// events.await_ws_upgrade(&ws, Duration::from_secs(5)).await?;
    /// conn.ws_send(&ws, Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"public/test"}"#)).await?;
    /// let answer = events.await_ws(&ws, Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ws_upgrade(&self, target: &str, options: WsOptions) -> Result<StreamRef, Error> {
        options.validate()?;
        let handshake = ClientHandshake::new(rand::random(), options.protocols.clone(), options.deflate)
            .map_err(|e| Error::InvalidOptions(OptionsError::WebSocket(e)))?;
        let stream = self.shared.new_stream();
        let upgrade = WsUpgrade { stream, target: target.to_owned(), options, handshake };
        self.send(Command::WsUpgrade(Box::new(upgrade))).await?;
        Ok(stream)
    }

    /// Send a message on a WebSocket stream, written at once (with anything queued by
    /// [`Connection::ws_feed`] before it). Messages go out in the order sent.
    ///
    /// It returns when the message is written or queued for writing; while a server does
    /// not read and 256 KiB are already queued, it waits (over HTTP/1.1 and HTTP/2 alike;
    /// over HTTP/2 only this WebSocket's senders wait, the connection's other streams go
    /// on). The calling task encodes the message and hands it on itself, with no hop through
    /// the connection's worker: over HTTP/1.1 it writes the socket, over HTTP/2 it gives h2
    /// a DATA frame within the stream's flow-control window (the rest follows as the server
    /// grants more).
    ///
    /// Errors known at once are returned: control payloads over 125 bytes, close codes that
    /// may not be sent, a message after our close frame ([`StreamError::WsClosed`](crate::StreamError::WsClosed)). A send
    /// on a WebSocket that has ended is refused with how it ended: after its closing
    /// handshake [`Error::Stream`]`(`[`StreamError::WsClosed`](crate::StreamError::WsClosed)`)`, after a failure of the
    /// stream alone (HTTP/2) that [`Error::Stream`], and after the connection went down
    /// [`Error::Down`] with the reason of the `Down` (also during the backoff and once a new
    /// connection is up: a WebSocket does not survive a reconnection). The stream is known
    /// to have ended before the owner hears of it, so a send made after the owner saw the
    /// end never reports success. (`Ok` means written or queued: a message queued when the
    /// connection dies is lost with it, as the `Down` says.) Other errors the worker finds
    /// later (the stream was never a WebSocket, or not upgraded yet) reach the owner as
    /// [`Event::StreamError`](crate::Event::StreamError).
    pub async fn ws_send(&self, stream: &StreamRef, message: Message) -> Result<(), Error> {
        self.ws_queue(stream, message, true).await
    }

    /// Writes what [`Connection::ws_feed`] queued on `stream` now: from the caller's task
    /// when it is a little (as `ws_send` would), otherwise the worker, woken already, writes
    /// it. A no-op when nothing is queued or the stream is not a live HTTP/1.1 WebSocket (an
    /// HTTP/2 stream's messages leave as its stream task runs).
    ///
    /// ```no_run
    /// # async fn demo(conn: moorline::Connection, ws: moorline::StreamRef) -> Result<(), moorline::Error> {
    /// use moorline::ws::Message;
    /// for i in 0..10 {
    ///     conn.ws_feed(&ws, Message::text(format!("{{\"id\":{i}}}"))).await?;
    /// }
    /// conn.ws_flush(&ws);
    /// # Ok(()) }
    /// ```
    pub fn ws_flush(&self, stream: &StreamRef) {
        if self.check(stream).is_ok() {
            self.shared.ws_write_fed(stream);
        }
    }

    /// Installs (or, with `None`, removes) the owner's [`WsTap`](crate::WsTap) on a
    /// WebSocket (HTTP/1.1 or HTTP/2): the worker offers it each message it decodes once the owner has
    /// handled every event before it, and queues for the owner only what the tap hands back.
    /// For owners that read with [`Events::next`](crate::Events::next) /
    /// [`Events::try_next`](crate::Events::try_next) and never hand the connection to another
    /// owner (a new owner starts without a tap).
    ///
    /// ```no_run
    /// # async fn demo(conn: moorline::Connection, ws: moorline::StreamRef, tap: std::sync::Arc<dyn moorline::WsTap>) {
    /// conn.set_ws_tap(&ws, Some(tap));
    /// # }
    /// ```
    pub fn set_ws_tap(&self, stream: &StreamRef, tap: Option<std::sync::Arc<dyn crate::WsTap>>) {
        if self.check(stream).is_ok() {
            self.shared.tap.set(tap.map(|t| (*stream, t)));
        }
    }

    /// Queue a message on a WebSocket stream without writing it yet: it leaves with the next
    /// [`Connection::ws_send`], when the owner's [`Events::await_ws`] has handed out a few
    /// more messages (four) or goes for the next batch, or when the connection's worker next
    /// runs (at the latest once the calling task waits). A burst of messages fed one by one
    /// thus leaves in a few writes, as with `SinkExt::feed` and `flush`, and replies fed
    /// while working through received messages leave without waiting for the whole burst.
    /// Errors as for [`Connection::ws_send`].
    ///
    /// ```no_run
    /// # async fn demo(conn: moorline::Connection, ws: moorline::StreamRef) -> Result<(), moorline::Error> {
    /// use moorline::ws::Message;
    /// for i in 0..10 {
    ///     conn.ws_feed(&ws, Message::text(format!("{{\"id\":{i}}}"))).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ws_feed(&self, stream: &StreamRef, message: Message) -> Result<(), Error> {
        self.ws_queue(stream, message, false).await
    }

    async fn ws_queue(&self, stream: &StreamRef, message: Message, now: bool) -> Result<(), Error> {
        self.check(stream)?;
        // Refused before anything else: a message that can never be sent.
        check_outgoing(&message).map_err(|e| Error::Stream(refused(e)))?;
        if let Some(sent) = self.shared.ws_direct(stream, &message, now).await {
            return sent;
        }
        // Not a live HTTP/1.1 WebSocket (HTTP/2, not upgraded yet, or over): one that ended
        // says how, rather than a message vanishing behind an `Ok`.
        if let Some(error) = self.shared.ws_end_error(stream) {
            return Err(error);
        }
        let in_channel = InChannel::new(&self.shared.ws_in_channel);
        self.send(Command::WsSend(*stream, Box::new(message), in_channel)).await
    }

    /// Start the closing handshake of a WebSocket with `code` and `reason` (at most 123
    /// bytes; longer is cut at a character boundary). The server's close frame arrives as
    /// [`Event::Ws`](crate::Event::Ws) with [`Message::Close`].
    ///
    /// Over HTTP/1.1 the connection is the WebSocket, so it ends too: once the server
    /// answered (or `close_timeout` passed) the owner gets
    /// [`Event::Exit`](crate::Event::Exit) with [`ExitReason::WsClosed`](crate::ExitReason::WsClosed), and there is no
    /// reconnection. Over HTTP/2 only the stream ends.
    pub async fn ws_close(&self, stream: &StreamRef, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.ws_send(stream, Message::Close(Some(CloseFrame::new(code, reason)))).await
    }

    /// Cancel a stream: no more events come for it. On HTTP/2 the stream is reset; on
    /// HTTP/1.1 a response in flight is read and discarded (or the connection is closed if
    /// the request body was half sent).
    pub async fn cancel(&self, stream: &StreamRef) -> Result<(), Error> {
        self.check(stream)?;
        self.send(Command::Cancel(*stream)).await
    }

    /// Close abruptly: no protocol closing handshake. The owner receives `Exit { Closed }`.
    pub fn close(&self) {
        if let Some(abort) = lock(&self.shared.abort).as_ref() {
            abort.abort();
        }
    }

    /// Shut down gracefully: new streams are refused, streams in flight finish, then the
    /// connection closes and the owner receives `Exit { Shutdown }`.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.send(Command::Shutdown).await
    }

    /// Make the caller the new owner: events go to the returned receiver from now on, and
    /// the previous receiver gets [`Event::OwnerChanged`](crate::Event::OwnerChanged) as its last event.
    pub async fn set_owner(&self) -> Result<Events, Error> {
        let (tx, rx) = oneshot::channel();
        self.owner.send(tx).await.map_err(|_| Error::Exited(self.shared.exit_reason()))?;
        rx.await.map_err(|_| Error::Exited(self.shared.exit_reason()))
    }

    /// Vouch for the current connection: it works (say, the venue confirmed the
    /// subscriptions made on it), so the failures before it are forgiven now rather than
    /// after [`ConnectOptions::healthy_after`]: the retry count is back to zero
    /// ([`Info::failures`] shows it shortly) and the next failure is attempt 1 of the retry
    /// policy again.
    ///
    /// It applies to the connection that is up when the worker hears of it; made while no
    /// connection is up (connecting, waiting to retry, after the worker exited) it does
    /// nothing. Calling it again is harmless. A client that calls it once its session is
    /// really usable keeps a server that accepts connections and then fails them (closes
    /// at once, refuses every upgrade or login) from being retried forever.
    ///
    /// ```no_run
    /// # async fn demo(conn: moorline::Connection, mut events: moorline::Events) -> Result<(), moorline::Error> {
    /// use std::time::Duration;
    /// events.await_up(Duration::from_secs(5)).await?;
    /// // ... subscribe, and wait for the venue to confirm ...
    /// conn.mark_healthy();
    /// # Ok(()) }
    /// ```
    pub fn mark_healthy(&self) {
        self.shared.healthy.notify_one();
    }

    /// A snapshot of the connection. Works even after the worker exited.
    pub fn info(&self) -> Info {
        lock(&self.shared.info).clone()
    }

    /// A snapshot of one stream, or `None` if it is not (or no longer) in flight.
    pub async fn stream_info(&self, stream: &StreamRef) -> Result<Option<StreamInfo>, Error> {
        self.check(stream)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::StreamInfo(*stream, tx)).await?;
        rx.await.map_err(|_| Error::Exited(self.shared.exit_reason()))
    }
}
