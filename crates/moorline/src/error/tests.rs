//! The wording and the kind of every error: a user reads these.
#![allow(clippy::unwrap_used)]

use std::error::Error as _;

use moorline_proto::ws::{CloseCode, CloseFrame};

use super::*;

fn refused() -> ConnectError {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    ConnectError::Connect { addr, source: Arc::new(io::Error::from(io::ErrorKind::ConnectionRefused)) }
}

#[test]
fn connect_errors_name_what_was_tried_and_why_it_failed() {
    let text = refused().to_string();
    assert!(text.starts_with("TCP connect to 127.0.0.1:9 failed: "), "{text}");
    assert!(text.contains(&io::Error::from(io::ErrorKind::ConnectionRefused).to_string()), "{text}");
    assert!(refused().source().is_some(), "the socket error is the source");
    let t = ConnectError::LookupTimeout { host: "venue.example".into(), timeout: Duration::from_secs(2) };
    assert_eq!(t.to_string(), "DNS lookup of \"venue.example\" timed out after 2s");
    let t = ConnectError::Tls { server_name: "venue.example".into(), cause: TlsFailure::UnknownIssuer };
    let text = t.to_string();
    assert!(text.contains("\"venue.example\"") && text.contains("not signed by a trusted CA"), "{text}");
    assert_eq!(
        TlsFailure::NameMismatch.to_string(),
        "certificate verification failed: the certificate is not valid for this server name (check the URL's host, \
         or TlsOptions::server_name)"
    );
    assert!(TlsFailure::Expired.to_string().contains("expired or not yet valid"));
}

#[test]
fn a_connect_timeout_says_how_many_attempts_failed_and_the_last_cause() {
    let after = Duration::from_secs(3);
    let none = Error::ConnectTimeout { after, attempts: 0, last: None };
    assert_eq!(none.to_string(), "timed out after 3s waiting for the connection (no attempt has failed yet)");
    assert!(none.source().is_none());
    let one = Error::ConnectTimeout { after, attempts: 1, last: Some(refused().into()) };
    let text = one.to_string();
    assert!(text.starts_with("timed out after 3s waiting for the connection: 1 failed attempt; last: TCP"), "{text}");
    let source = one.source().and_then(|s| s.downcast_ref::<Failure>());
    assert!(matches!(source, Some(Failure::Connect(ConnectError::Connect { .. }))), "{one:?}");
    let three = Error::ConnectTimeout { after, attempts: 3, last: Some(DownReason::Closed.into()) };
    assert!(three.to_string().ends_with("3 failed attempts; last: the peer closed the connection"), "{three}");
}

#[test]
fn a_failure_reads_as_its_cause() {
    let f: Failure = refused().into();
    assert_eq!(f.to_string(), refused().to_string());
    let f: Failure = DownReason::KeepaliveTimeout(Duration::from_secs(10)).into();
    assert_eq!(f.to_string(), "keepalive: no PING answer within 10s");
}

#[test]
fn exits_say_why() {
    assert_eq!(
        Error::Exited(None).to_string(),
        "the connection worker has exited: reason unknown (event receiver closed)"
    );
    assert_eq!(
        Error::Exited(Some(ExitReason::Closed)).to_string(),
        "the connection worker has exited: closed by the user"
    );
    let gave_up = ExitReason::RetriesExhausted { attempts: 4, last: refused().into() };
    assert!(gave_up.to_string().starts_with("gave up after 4 failed attempts; last failure: TCP connect"), "{gave_up}");
    assert!(ExitReason::Panicked("boom".into()).to_string().ends_with("panicked: boom"));
}

#[test]
fn a_websocket_close_tells_the_code_and_who_closed_first() {
    let ours = DownReason::WsClosed { close: Some(CloseFrame::new(CloseCode(1000), "bye")), by_us: true };
    assert_eq!(ours.to_string(), "the WebSocket closed (code 1000, \"bye\"; we closed first)");
    let theirs = DownReason::WsClosed { close: None, by_us: false };
    assert_eq!(theirs.to_string(), "the WebSocket closed (no code; the server closed first)");
    let t = DownReason::GoAway { error_code: 0, last_stream_id: 7 };
    assert_eq!(t.to_string(), "the peer sent GOAWAY (error code 0, last stream 7)");
}

/// What may be retried says so: the caller acts on it.
#[test]
fn unprocessed_streams_say_a_retry_is_safe() {
    assert!(StreamError::Refused.to_string().contains("safe to retry"));
    let g = StreamError::GoAwayUnprocessed { last_stream_id: 1, error_code: 0 };
    assert!(g.to_string().contains("safe to retry") && g.to_string().contains("last stream 1"), "{g}");
    assert!(StreamError::NotConnected.to_string().contains("not sent"));
    assert!(Error::Backlog(16384).to_string().contains("read events with next()"));
}

#[test]
fn options_errors_name_the_option_the_value_and_the_rule() {
    let e = Error::InvalidOptions(OptionsError::OutOfRange {
        option: "event_buffer",
        value: "0".into(),
        expected: "1 to 1,048,576 deliveries",
    });
    assert_eq!(e.to_string(), "invalid options: event_buffer is 0, but it must be 1 to 1,048,576 deliveries");
    assert_eq!(e.kind(), ErrorKind::Fatal);
    assert!(e.source().is_some(), "the OptionsError is the source");
    let url = OptionsError::Url { url: "http://x".into(), problem: UrlProblem::Scheme("http".into()) };
    assert_eq!(url.to_string(), "URL \"http://x\": the scheme must be ws or wss, not http");
    assert_eq!(
        OptionsError::Url { url: "x".into(), problem: UrlProblem::NoScheme }.to_string(),
        "URL \"x\": no scheme: write ws:// or wss://"
    );
    assert_eq!(
        OptionsError::Pem { item: PemItem::PrivateKey, source: None }.to_string(),
        "private key PEM: no private key found"
    );
    assert_eq!(
        OptionsError::HeaderName { name: "bad name".into() }.to_string(),
        "header name \"bad name\" is not a valid HTTP field name"
    );
    assert!(OptionsError::NoTrustedRoot.to_string().contains("add a CA"));
    assert_eq!(
        OptionsError::Conflict { options: "transport, protocols", why: "over plain TCP exactly one protocol" }
            .to_string(),
        "transport, protocols: over plain TCP exactly one protocol"
    );
}

#[test]
fn tls_failures_say_what_to_check_and_verification_is_fatal() {
    assert!(TlsFailure::ClosedDuringHandshake.to_string().contains("is this port serving TLS?"));
    assert_eq!(TlsFailure::ClosedDuringHandshake.kind(), ErrorKind::Recoverable);
    let alert = TlsFailure::Alert(rustls::AlertDescription::CertificateRequired);
    assert_eq!(
        alert.to_string(),
        "the server sent TLS alert CertificateRequired (the server wants a client certificate it trusts: check \
         TlsOptions::client_cert_pem)"
    );
    assert_eq!(alert.kind(), ErrorKind::Fatal);
    assert_eq!(TlsFailure::Alert(rustls::AlertDescription::InternalError).kind(), ErrorKind::Recoverable);
    for fatal in [
        TlsFailure::UnknownIssuer,
        TlsFailure::NameMismatch,
        TlsFailure::Expired,
        TlsFailure::BadCertificate(rustls::CertificateError::Revoked),
    ] {
        assert_eq!(fatal.kind(), ErrorKind::Fatal, "{fatal}");
        let e = ConnectError::Tls { server_name: "venue".into(), cause: fatal };
        assert_eq!(Failure::from(e).kind(), ErrorKind::Fatal);
    }
    assert!(TlsFailure::BadCertificate(rustls::CertificateError::Revoked).to_string().contains("Revoked"));
    let io = TlsFailure::Io(Arc::new(io::Error::from(io::ErrorKind::ConnectionReset)));
    assert_eq!(io.kind(), ErrorKind::Recoverable);
    assert!(io.source().is_some());
}

#[test]
fn alpn_and_http2_handshake_failures_read_and_classify() {
    let none = AlpnMismatch { offered: vec![crate::Protocol::Http2], selected: None };
    let e = ConnectError::Alpn(none);
    assert_eq!(
        e.to_string(),
        "ALPN negotiation failed: the server selected no ALPN protocol and HTTP/1.1 was not offered (we offered h2; \
         allow HTTP/1.1 or check that the server speaks HTTP/2)"
    );
    assert_eq!(e.kind(), ErrorKind::Fatal);
    let odd = AlpnMismatch {
        offered: vec![crate::Protocol::Http2, crate::Protocol::Http1],
        selected: Some(b"spdy/3".to_vec()),
    };
    assert_eq!(odd.to_string(), "the server selected \"spdy/3\", which we did not offer (we offered h2, http/1.1)");
    let h = ConnectError::Http2Handshake(Http2HandshakeFailure::NoSettings(Duration::from_secs(10)));
    assert_eq!(
        h.to_string(),
        "HTTP/2 handshake failed: no HTTP/2 SETTINGS from the server within 10s (does it speak HTTP/2?)"
    );
    assert_eq!(h.kind(), ErrorKind::Recoverable);
    assert!(h.source().is_some(), "the typed cause is the source");
    let f = Http2Failure::new(h2::Error::from(h2::Reason::PROTOCOL_ERROR));
    assert_eq!(f.code, Some(1));
    let h = ConnectError::Http2Handshake(Http2HandshakeFailure::Http2(f));
    assert!(h.to_string().starts_with("HTTP/2 handshake failed: "), "{h}");
}

#[test]
fn protocol_failures_keep_the_typed_cause_as_source() {
    use moorline_proto::http1::DecodeError;
    use moorline_proto::ws::HandshakeError;
    let d = DownReason::Protocol(ProtocolFailure::Http1(DecodeError::UnexpectedResponse));
    let source = d.source().and_then(|s| s.source()).and_then(|s| s.downcast_ref::<DecodeError>());
    assert_eq!(source, Some(&DecodeError::UnexpectedResponse), "{d:?}");
    assert!(d.to_string().starts_with("protocol error: HTTP/1.1: "), "{d}");
    assert_eq!(d.kind(), ErrorKind::Recoverable);
    let s = DownReason::Protocol(ProtocolFailure::UnaskedSwitch { status: 101 });
    assert_eq!(s.to_string(), "protocol error: the server switched protocols (101) without being asked");
    let t = DownReason::TaskFailed { task: "HTTP/2 keepalive", panicked: true };
    assert_eq!(t.to_string(), "the connection's HTTP/2 keepalive task panicked (a bug: please report it)");
    assert_eq!(t.kind(), ErrorKind::Fatal);
    for (status, kind) in [
        (401, ErrorKind::Fatal),
        (403, ErrorKind::Fatal),
        (404, ErrorKind::Fatal),
        (503, ErrorKind::Recoverable),
        (429, ErrorKind::Recoverable),
    ] {
        let e = StreamError::WsHandshake(HandshakeError::Status { status });
        assert_eq!(e.kind(), kind, "{status}");
        let p = ProtocolFailure::WsHandshake(HandshakeError::Status { status });
        assert_eq!(p.kind(), kind, "{status}");
    }
    assert_eq!(StreamError::WsHandshake(HandshakeError::MissingUpgrade).kind(), ErrorKind::Fatal);
    let one_xx = StreamError::Protocol(ProtocolFailure::InformationalTooLarge { limit: 65536 });
    assert_eq!(
        one_xx.to_string(),
        "protocol error on the stream: the server sent more than 65536 bytes of 1xx informational responses before the response"
    );
}

#[test]
fn request_errors_are_fatal_and_unprocessed_streams_retryable() {
    use moorline_proto::ws::{CloseCode, SendError};
    let e = Error::Stream(StreamError::InvalidRequest(RequestError::ConnectionIsWebSocket));
    assert_eq!(
        e.to_string(),
        "stream failed: invalid request: this HTTP/1.1 connection is a WebSocket now: open another connection for \
         requests"
    );
    assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Fatal, false));
    let t = RequestError::Target { target: "x".into(), why: "it must start with '/'" };
    assert_eq!(t.to_string(), "target \"x\": it must start with '/'");
    let s = StreamError::WsSend(SendError::CloseCode(CloseCode(1005)));
    assert!(s.to_string().starts_with("WebSocket message not sent: close code 1005 may not be sent"), "{s}");
    assert_eq!(s.kind(), ErrorKind::Fatal);
    for retryable in [
        StreamError::Refused,
        StreamError::NotConnected,
        StreamError::ShuttingDown,
        StreamError::GoAwayUnprocessed { last_stream_id: 1, error_code: 0 },
    ] {
        assert!(retryable.is_retryable() && retryable.kind() == ErrorKind::Recoverable, "{retryable}");
        assert!(Error::Stream(retryable).is_retryable());
    }
    assert!(!StreamError::Reset(2).is_retryable(), "a reset may follow processing");
    assert!(!Error::Down(DownReason::Closed).is_retryable(), "possibly processed");
    assert!(!Error::Timeout(Duration::from_secs(1)).is_retryable());
    assert_eq!(Error::Timeout(Duration::from_secs(1)).kind(), ErrorKind::Recoverable);
}

/// Every wrapped cause is reachable as `source()`, down to the lower layer's own error.
#[test]
fn causes_are_chained_as_sources() {
    let io = DownReason::Io(Arc::new(io::Error::from(io::ErrorKind::ConnectionReset)));
    let e = Error::Down(io);
    let reset = e.source().and_then(|s| s.source()).and_then(|s| s.downcast_ref::<Arc<io::Error>>());
    assert_eq!(reset.map(|e| e.kind()), Some(io::ErrorKind::ConnectionReset), "{e:?}");
    let tls = ConnectError::Tls { server_name: "v".into(), cause: TlsFailure::Expired };
    assert!(tls.source().and_then(|s| s.downcast_ref::<TlsFailure>()).is_some());
    let gave_up = Error::Exited(Some(ExitReason::RetriesExhausted { attempts: 1, last: tls.into() }));
    let chain: Vec<String> = std::iter::successors(gave_up.source(), |s: &&dyn std::error::Error| (*s).source())
        .map(ToString::to_string)
        .collect();
    // `Failure` is transparent: exit -> connect error -> TLS cause.
    assert_eq!(chain.len(), 3, "{chain:?}");
    assert!(chain[2].contains("check the server's certificate, and this machine's clock"), "{chain:?}");
    let ws = Error::Stream(StreamError::WsHandshake(moorline_proto::ws::HandshakeError::Status { status: 403 }));
    assert!(ws.source().and_then(|s| s.source()).is_some_and(|s| s.to_string().contains("403")));
}

#[test]
fn every_exit_and_api_error_has_a_kind() {
    assert_eq!(ExitReason::Closed.kind(), ErrorKind::Fatal);
    assert_eq!(ExitReason::Panicked("x".into()).kind(), ErrorKind::Fatal);
    let recoverable = ExitReason::RetriesExhausted { attempts: 3, last: refused().into() };
    assert_eq!(recoverable.kind(), ErrorKind::Recoverable, "opening again later may work");
    let fatal_last = Failure::Connect(ConnectError::Tls { server_name: "v".into(), cause: TlsFailure::Expired });
    assert_eq!(ExitReason::RetriesExhausted { attempts: 1, last: fatal_last.clone() }.kind(), ErrorKind::Fatal);
    assert_eq!(Error::Exited(None).kind(), ErrorKind::Fatal);
    assert_eq!(Error::NoRuntime.kind(), ErrorKind::Fatal);
    let ct = Error::ConnectTimeout { after: Duration::from_secs(1), attempts: 1, last: Some(fatal_last) };
    assert_eq!((ct.kind(), ct.is_retryable()), (ErrorKind::Fatal, false));
    let ct = Error::ConnectTimeout { after: Duration::from_secs(1), attempts: 0, last: None };
    assert_eq!((ct.kind(), ct.is_retryable()), (ErrorKind::Recoverable, true));
    assert!(ErrorKind::Fatal.is_fatal() && !ErrorKind::Recoverable.is_fatal());
}
