//! One connection attempt: DNS lookup, TCP connect, TLS handshake, each under its own timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::{AlpnMismatch, ConnectError, Error, OptionsError, TlsFailure};
use crate::ids::Protocol;
use crate::instrument::{Emitter, Step};
use crate::options::{ConnectOptions, Transport};

/// A byte stream the protocol layer can run on.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed byte stream.
pub(crate) type BoxIo = Box<dyn Io>;

/// A connected transport and what was negotiated on it.
pub(crate) struct Dialed {
    pub(crate) io: BoxIo,
    pub(crate) protocol: Protocol,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

/// Everything an attempt needs, computed once at `open`.
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Target {
    pub(crate) fn new(host: &str, port: u16, opts: &ConnectOptions) -> Result<Self, Error> {
        opts.validate(port)?;
        if host.is_empty() {
            return Err(Error::InvalidOptions(OptionsError::EmptyHost));
        }
        let transport = opts.transport_for(port);
        let protocols = opts.protocols_for(transport);
        let tls = match transport {
            Transport::Tcp => None,
            Transport::Tls => {
                let config = crate::tls::client_config(&opts.tls, &protocols)?;
                let name = opts.tls.server_name.clone().unwrap_or_else(|| host.to_owned());
                let name = ServerName::try_from(name.clone())
                    .map_err(|_| Error::InvalidOptions(OptionsError::ServerName { name: name.clone() }))?;
                Some((config, name))
            }
        };
        Ok(Self { host: host.to_owned(), port, transport, protocols, tls })
    }

    pub(crate) fn server_name(&self) -> String {
        match &self.tls {
            Some((_, name)) => name.to_str().into_owned(),
            None => self.host.clone(),
        }
    }
}

/// Make one attempt.
pub(crate) async fn dial(t: &Target, opts: &ConnectOptions, em: &Emitter) -> Result<Dialed, ConnectError> {
    let addrs = lookup(t, opts, em).await?;
    let tcp = connect(&addrs, opts, em).await?;
    let peer = tcp.peer_addr().map_err(|e| connect_err(addrs[0], e))?;
    let local = tcp.local_addr().map_err(|e| connect_err(peer, e))?;
    // Latency matters more than segment count for our traffic.
    let _ = tcp.set_nodelay(true);
    match &t.tls {
        None => Ok(Dialed { io: Box::new(tcp), protocol: t.protocols[0], peer, local }),
        Some((config, name)) => {
            let server_name = t.server_name();
            em.emit(Step::TlsStart { server_name: server_name.clone() });
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let handshake = timeout(opts.tls_handshake_timeout, connector.connect(name.clone(), tcp)).await;
            let stream = match handshake {
                Err(_) => {
                    em.emit(Step::TlsEnd { result: Err("timeout".into()) });
                    return Err(ConnectError::TlsHandshakeTimeout { server_name, timeout: opts.tls_handshake_timeout });
                }
                Ok(Err(e)) => {
                    let cause = tls_failure(&e);
                    em.emit(Step::TlsEnd { result: Err(cause.to_string()) });
                    return Err(ConnectError::Tls { server_name, cause });
                }
                Ok(Ok(s)) => s,
            };
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            em.emit(Step::TlsEnd { result: Ok(alpn.clone()) });
            let protocol = match alpn.as_deref() {
                None if t.protocols.contains(&Protocol::Http1) => Protocol::Http1,
                None => {
                    return Err(ConnectError::Alpn(AlpnMismatch { offered: t.protocols.clone(), selected: None }));
                }
                Some(p) => match t.protocols.iter().find(|proto| proto.alpn() == p) {
                    Some(proto) => *proto,
                    None => {
                        return Err(ConnectError::Alpn(AlpnMismatch {
                            offered: t.protocols.clone(),
                            selected: Some(p.to_vec()),
                        }));
                    }
                },
            };
            Ok(Dialed { io: Box::new(stream), protocol, peer, local })
        }
    }
}

async fn lookup(t: &Target, opts: &ConnectOptions, em: &Emitter) -> Result<Vec<SocketAddr>, ConnectError> {
    em.emit(Step::LookupStart { host: t.host.clone() });
    let host = t.host.trim_start_matches('[').trim_end_matches(']');
    let res = match &opts.resolver {
        Some(resolve) => timeout(opts.lookup_timeout, resolve(host.to_owned(), t.port)).await,
        None => {
            timeout(opts.lookup_timeout, async {
                tokio::net::lookup_host((host, t.port)).await.map(Iterator::collect::<Vec<_>>)
            })
            .await
        }
    };
    let result = match res {
        Err(_) => Err(ConnectError::LookupTimeout { host: t.host.clone(), timeout: opts.lookup_timeout }),
        Ok(Err(e)) => Err(ConnectError::Lookup { host: t.host.clone(), source: Arc::new(e) }),
        Ok(Ok(addrs)) if addrs.is_empty() => Err(ConnectError::NoAddress { host: t.host.clone() }),
        Ok(Ok(addrs)) => Ok(addrs),
    };
    em.emit(Step::LookupEnd { host: t.host.clone(), result: result.clone().map_err(|e| e.to_string()) });
    result
}

async fn connect(addrs: &[SocketAddr], opts: &ConnectOptions, em: &Emitter) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    for &addr in addrs {
        em.emit(Step::ConnectStart { addr });
        let err = match timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                em.emit(Step::ConnectEnd { addr, result: Ok(()) });
                return Ok(s);
            }
            Ok(Err(e)) => connect_err(addr, e),
            Err(_) => ConnectError::ConnectTimeout { addr, timeout: opts.connect_timeout },
        };
        em.emit(Step::ConnectEnd { addr, result: Err(err.to_string()) });
        last = Some(err);
    }
    Err(last.unwrap_or(ConnectError::NoAddress { host: String::new() }))
}

fn connect_err(addr: SocketAddr, e: io::Error) -> ConnectError {
    ConnectError::Connect { addr, source: Arc::new(e) }
}

/// Whether an I/O error carries a rustls error.
pub(crate) fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<rustls::Error>())
}

/// Translate a handshake error into words a user can act on.
pub(crate) fn tls_failure(e: &io::Error) -> TlsFailure {
    use rustls::CertificateError as C;
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return TlsFailure::ClosedDuringHandshake;
        }
        return TlsFailure::Io(Arc::new(io::Error::new(e.kind(), e.to_string())));
    };
    match inner {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => TlsFailure::UnknownIssuer,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                TlsFailure::Expired
            }
            other => TlsFailure::BadCertificate(other.clone()),
        },
        rustls::Error::AlertReceived(a) => TlsFailure::Alert(*a),
        other => TlsFailure::Protocol(other.clone()),
    }
}
