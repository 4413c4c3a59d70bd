//! The stream tasks: one per stream, sending its body under flow control, receiving 1xx,
//! head, data, trailers and pushes, and reporting to the session through [`Msg`]s.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{Reason, RecvStream, SendStream};
use tokio::sync::mpsc;

use moorline_proto::ws::ClientHandshake;

use crate::conn::command::ReqBody;
use crate::conn::delivery::Charge;
use crate::conn::recv_hold::RecvHold;
use crate::conn::shared::Shared;
use crate::conn::shared::WsRegistration;
use crate::conn::ws_h2::{self, WsEnd, WsSend};
use crate::error::{DownReason, Error, Http2Failure, ProtocolFailure, RequestError, StreamError};
use crate::event::Event;
use crate::ids::StreamRef;
use crate::instrument::{Emitter, Step};
use crate::wsio::{Message, Outbox, WsOptions};

/// How a stream task ended.
pub(super) enum Outcome {
    /// The response completed.
    Complete,
    /// The connection failed under the stream: the session's `Down` reports it.
    ConnectionLost,
    /// The stream alone failed.
    Failed(StreamError),
    /// The stream found the connection silently dead (WebSocket keepalive): the session
    /// takes it down with this reason.
    Dead(DownReason),
}

/// A pushed stream's task, started by the session once the stream is registered.
pub(super) type PushedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Reports from stream tasks to the session.
pub(super) enum Msg {
    /// An event and its payload bytes, taken from the owner's budget before it was sent (so
    /// a task stops, and releases no flow-control capacity, while the owner is behind).
    Event(Event, Charge),
    /// Messages of one WebSocket decoded in one go (two or more, within one delivery's
    /// limits), their bytes taken as for an event: one channel operation for all of them.
    WsBatch(StreamRef, Vec<Message>, Charge),
    Sent(StreamRef),
    Pushed {
        pushed: StreamRef,
        task: PushedTask,
    },
    Finished(StreamRef, Outcome),
}

/// One stream's task: send its body, receive its response, report in order.
pub(super) struct StreamTask {
    pub(super) stream: StreamRef,
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) em: Emitter,
    /// The most bytes of 1xx heads accepted before the final response (the header list
    /// limit), counted as HTTP/2 counts header lists.
    pub(super) max_informational: usize,
    pub(super) shared: Arc<Shared>,
    pub(super) push: bool,
}

impl ws_h2::Report for StreamTask {
    async fn event(&self, ev: Event) -> Result<(), WsEnd> {
        self.send_event(ev).await.map_err(|_| WsEnd::Cancelled)
    }

    async fn messages(&self, stream: StreamRef, mut messages: Vec<Message>) -> Result<(), WsEnd> {
        if messages.len() == 1
            && let Some(message) = messages.pop()
        {
            return self.send_event(Event::Ws { stream, message }).await.map_err(|()| WsEnd::Cancelled);
        }
        if messages.is_empty() {
            return Ok(());
        }
        let n = messages.iter().map(Message::len).sum();
        let charge = Charge::take_bytes(|| self.shared.budget(), n).await;
        self.tx.send(Msg::WsBatch(stream, messages, charge)).await.map_err(|_| WsEnd::Cancelled)
    }

    fn ended(&self, error: Error) {
        self.shared.ws_ended(self.stream, error);
    }

    fn register(&self, out: Arc<Outbox>) -> WsRegistration {
        WsRegistration::new(&self.shared, self.stream, out)
    }
}

impl StreamTask {
    /// A WebSocket stream's task (RFC 8441).
    pub(super) async fn run_ws(
        self,
        resp: ResponseFuture,
        send: SendStream<Bytes>,
        handshake: ClientHandshake,
        options: WsOptions,
        outgoing: mpsc::Receiver<WsSend>,
    ) {
        let stream = self.stream;
        let mut registration = None;
        let run = ws_h2::run(&self, stream, resp, send, handshake, options, outgoing, &mut registration).await;
        let outcome = match run {
            Ok(()) => Outcome::Complete,
            Err(WsEnd::H2(e)) => classify(&e),
            Err(WsEnd::Failed(error)) => Outcome::Failed(error),
            Err(WsEnd::KeepaliveTimeout(timeout)) => Outcome::Dead(DownReason::WsKeepaliveTimeout(timeout)),
            Err(WsEnd::Cancelled) => return,
        };
        // Before the session tells the owner: a send on the stream now says how it ended.
        match &outcome {
            Outcome::Complete => ws_h2::Report::ended(&self, Error::Stream(StreamError::WsClosed)),
            Outcome::Failed(error) => ws_h2::Report::ended(&self, Error::Stream(error.clone())),
            Outcome::ConnectionLost | Outcome::Dead(_) => {}
        }
        drop(registration);
        let _ = self.tx.send(Msg::Finished(stream, outcome)).await;
    }

    pub(super) async fn run(self, resp: ResponseFuture, send: SendStream<Bytes>, body: Option<ReqBody>) {
        let stream = self.stream;
        let sender = {
            let tx = self.tx.clone();
            async move {
                if let Some(body) = body {
                    match send_body(send, body).await {
                        Ok(()) => {
                            let _ = tx.send(Msg::Sent(stream)).await;
                        }
                        Err(SendFailure::Abandoned) => {
                            return Outcome::Failed(StreamError::InvalidRequest(RequestError::BodyDropped));
                        }
                        // The server may have answered early and reset our upload (RFC 9113
                        // §8.1): the receiving side says how the stream ended.
                        Err(SendFailure::H2(e)) => tracing::debug!(?stream, error = %e, "request body not sent"),
                    }
                }
                std::future::pending().await
            }
        };
        let outcome = tokio::select! {
            r = self.receive(resp) => match r {
                Ok(()) => Outcome::Complete,
                Err(RecvError::H2(e)) => classify(&e),
                Err(RecvError::Informational(limit)) => {
                    Outcome::Failed(StreamError::Protocol(ProtocolFailure::InformationalTooLarge { limit }))
                }
            },
            o = sender => o,
        };
        let _ = self.tx.send(Msg::Finished(stream, outcome)).await;
    }

    async fn event(&self, ev: Event) -> Result<(), h2::Error> {
        self.send_event(ev).await.map_err(|()| h2::Error::from(Reason::CANCEL))
    }

    /// Hands `ev` to the session once the owner's byte budget has room for it: until then
    /// the task reads no more (and so releases no flow-control capacity).
    async fn send_event(&self, ev: Event) -> Result<(), ()> {
        let charge = Charge::take(|| self.shared.budget(), &ev).await;
        self.tx.send(Msg::Event(ev, charge)).await.map_err(|_| ())
    }

    async fn receive(&self, mut resp: ResponseFuture) -> Result<(), RecvError> {
        let mut pushes = resp.push_promises();
        let mut pushes_open = self.push;
        let work = self.head_and_body(resp);
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                p = pushes.push_promise(), if pushes_open => match p {
                    Some(Ok(p)) => self.pushed(p).await?,
                    Some(Err(e)) => return Err(e.into()),
                    None => pushes_open = false,
                },
                r = &mut work => {
                    r?;
                    break;
                }
            }
        }
        // Promises precede the end of their stream: take those already received.
        while pushes_open {
            let next = poll_fn(|cx| match pushes.poll_push_promise(cx) {
                Poll::Pending => Poll::Ready(None),
                other => other,
            })
            .await;
            match next {
                Some(p) => self.pushed(p?).await?,
                None => pushes_open = false,
            }
        }
        Ok(())
    }

    async fn head_and_body(&self, mut resp: ResponseFuture) -> Result<(), RecvError> {
        let stream = self.stream;
        enum Head {
            Inform(http::Response<()>),
            Final(Result<http::Response<RecvStream>, h2::Error>),
        }
        enum Wake {
            Head(Head),
            Delivered,
        }
        // h2 keeps every 1xx of a stream until it is polled (HEADERS frames are not
        // flow-controlled): they are taken as they arrive, also while the owner is behind,
        // and counted; past the limit the stream fails (dropping it resets it).
        let mut informs: VecDeque<http::Response<()>> = VecDeque::new();
        let mut inform_bytes = 0usize;
        let response = loop {
            let next = poll_fn(|cx| {
                if let Poll::Ready(Some(r)) = resp.poll_informational(cx) {
                    return Poll::Ready(r.map(Head::Inform));
                }
                Pin::new(&mut resp).poll(cx).map(|r| Ok(Head::Final(r)))
            });
            let deliver = async {
                match informs.front() {
                    Some(r) => self.event(inform_event(stream, r)).await,
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                biased;
                h = next => Wake::Head(h?),
                r = deliver => {
                    r?;
                    Wake::Delivered
                }
            };
            match step {
                Wake::Head(Head::Inform(r)) => {
                    inform_bytes = inform_bytes.saturating_add(informational_size(&r));
                    if inform_bytes > self.max_informational {
                        return Err(RecvError::Informational(self.max_informational));
                    }
                    self.em.emit(Step::ResponseInform { stream, status: r.status() });
                    informs.push_back(r);
                }
                Wake::Head(Head::Final(r)) => break r?,
                Wake::Delivered => {
                    informs.pop_front();
                }
            }
        };
        for r in &informs {
            self.event(inform_event(stream, r)).await?;
        }
        self.em.emit(Step::ResponseHeaders { stream, status: response.status() });
        let (parts, body) = response.into_parts();
        let fin = body.is_end_stream();
        self.event(Event::Response { stream, status: parts.status, headers: parts.headers, fin }).await?;
        if !fin {
            self.body(stream, body).await?;
        }
        self.em.emit(Step::ResponseEnd { stream });
        Ok(())
    }

    /// The body's chunks as `Data` events. While one waits for the owner, the DATA that
    /// comes is taken into a [`RecvHold`] (h2 would end the connection over many small
    /// frames left with it) and goes next (runs of small frames joined into one chunk).
    async fn body(&self, stream: StreamRef, mut body: RecvStream) -> Result<(), h2::Error> {
        let mut hold = RecvHold::default();
        loop {
            // What was held first, then how the body ended while held, then h2's.
            let chunk = if let Some(chunk) = hold.take_bytes() {
                chunk
            } else if let Some(end) = hold.take_end() {
                end?;
                break;
            } else {
                match body.data().await {
                    Some(chunk) => chunk?,
                    None => break,
                }
            };
            let len = chunk.len();
            // The last chunk: nothing held behind it, nothing more in h2, no trailers.
            let fin = !hold.has_bytes() && body.is_end_stream();
            hold.during(&mut body, self.event(Event::Data { stream, data: chunk, fin })).await?;
            // Capacity goes back to the server only once the owner's side took the chunk.
            let _ = body.flow_control().release_capacity(len);
            if fin {
                return Ok(());
            }
        }
        match body.trailers().await? {
            Some(headers) => self.event(Event::Trailers { stream, headers }).await,
            None => self.event(Event::Data { stream, data: Bytes::new(), fin: true }).await,
        }
    }

    async fn pushed(&self, p: h2::client::PushPromise) -> Result<(), h2::Error> {
        let (req, fut) = p.into_parts();
        let pushed = self.shared.new_stream();
        let (parts, ()) = req.into_parts();
        self.event(Event::Push {
            stream: self.stream,
            pushed,
            method: parts.method,
            uri: Box::new(parts.uri),
            headers: Box::new(parts.headers),
        })
        .await?;
        let child = StreamTask {
            stream: pushed,
            tx: self.tx.clone(),
            em: self.em.clone(),
            max_informational: self.max_informational,
            shared: self.shared.clone(),
            push: false,
        };
        let tx = self.tx.clone();
        let task = Box::pin(async move {
            let outcome = match fut.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let fin = body.is_end_stream();
                    let r = async {
                        child
                            .event(Event::Response {
                                stream: pushed,
                                status: parts.status,
                                headers: parts.headers,
                                fin,
                            })
                            .await?;
                        if !fin {
                            child.body(pushed, body).await?;
                        }
                        Ok::<(), h2::Error>(())
                    }
                    .await;
                    match r {
                        Ok(()) => Outcome::Complete,
                        Err(e) => classify(&e),
                    }
                }
                Err(e) => classify(&e),
            };
            let _ = tx.send(Msg::Finished(pushed, outcome)).await;
        });
        self.tx.send(Msg::Pushed { pushed, task }).await.map_err(|_| h2::Error::from(Reason::CANCEL))
    }
}

/// Why receiving a response failed.
pub(super) enum RecvError {
    H2(h2::Error),
    /// More than this many bytes of 1xx heads came before the final response.
    Informational(usize),
}

impl From<h2::Error> for RecvError {
    fn from(e: h2::Error) -> Self {
        RecvError::H2(e)
    }
}

/// The owner's event for a 1xx response.
pub(super) fn inform_event(stream: StreamRef, r: &http::Response<()>) -> Event {
    Event::Inform { stream, status: r.status(), headers: r.headers().clone() }
}

/// A 1xx head's size as HTTP/2 counts header lists (RFC 9113 §6.5.2: name, value and 32
/// bytes per field), `:status` included.
pub(super) fn informational_size(r: &http::Response<()>) -> usize {
    let fields: usize = r.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 32).sum();
    fields + ":status".len() + 3 + 32
}

/// Why a request body was not sent whole.
pub(super) enum SendFailure {
    /// The caller dropped its [`crate::RequestBody`] before `finish()`.
    Abandoned,
    /// h2 refused (stream reset, connection lost...).
    H2(h2::Error),
}

impl From<h2::Error> for SendFailure {
    fn from(e: h2::Error) -> Self {
        SendFailure::H2(e)
    }
}

/// Send a request body under HTTP/2 flow control, never buffering more than the window.
pub(super) async fn send_body(mut send: SendStream<Bytes>, body: ReqBody) -> Result<(), SendFailure> {
    match body {
        ReqBody::Full(data) => Ok(send_chunk(&mut send, data, true).await?),
        ReqBody::Streaming(mut rx) => loop {
            match rx.recv().await {
                Some((data, fin)) => {
                    send_chunk(&mut send, data, fin).await?;
                    if fin {
                        return Ok(());
                    }
                }
                None => {
                    // The body sender was dropped without finishing: abandon the stream.
                    send.send_reset(Reason::CANCEL);
                    return Err(SendFailure::Abandoned);
                }
            }
        },
    }
}

pub(super) async fn send_chunk(send: &mut SendStream<Bytes>, mut data: Bytes, fin: bool) -> Result<(), h2::Error> {
    if data.is_empty() {
        return send.send_data(data, fin);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(r) => r?,
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, fin && data.is_empty())?;
    }
    Ok(())
}

/// Sort a stream's h2 error into "the connection failed" and "this stream failed".
pub(super) fn classify(e: &h2::Error) -> Outcome {
    if e.is_go_away() || e.is_io() {
        return Outcome::ConnectionLost;
    }
    match e.reason() {
        Some(Reason::REFUSED_STREAM) if e.is_remote() => Outcome::Failed(StreamError::Refused),
        Some(r) if e.is_reset() && e.is_remote() => Outcome::Failed(StreamError::Reset(r.into())),
        _ => Outcome::Failed(StreamError::Protocol(ProtocolFailure::Http2(Http2Failure::new_ref(e)))),
    }
}
