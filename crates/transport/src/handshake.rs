//! Establishing links: the agent's [`dial`] and the edge's [`TunnelListener`].
//!
//! Both run the [`warren_proto::handshake`] exchange over the fresh TLS stream
//! (TCP) or the first QUIC stream, reading exactly the handshake's bytes so
//! that nothing after it is lost.

use crate::mux::MuxLink;
use crate::quic::{self, QuicLink};
use crate::tls::ALPN;
use crate::Link;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_proto::handshake::{self as hs, HandshakeError, Reply};
use warren_proto::{Hello, Refusal, Role, SessionConfig, Welcome};

/// Where the edge's tunnel listener is: `https://host:port` or `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Name or address (used for TLS server name checks).
    pub host: String,
    /// Port (TCP for TCP+TLS, UDP for QUIC: the edge listens on both).
    pub port: u16,
}

/// The default tunnel port.
pub const DEFAULT_PORT: u16 = 7443;

impl Endpoint {
    /// Parses `https://host[:port][/]`, `quic://...`, `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("quic://"))
            .or_else(|| s.strip_prefix("tcp://"))
            .unwrap_or(s);
        if rest.contains("://") {
            return Err(format!(
                "endpoint `{s}`: unsupported scheme (use https://HOST:PORT)"
            ));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("endpoint `{s}`: a path is not allowed"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("endpoint `{s}`: unclosed `[`"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("endpoint `{s}`: bad port `{p}`"))?,
                None if tail.is_empty() => DEFAULT_PORT,
                None => return Err(format!("endpoint `{s}`: junk after `]`")),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| format!("endpoint `{s}`: bad port `{p}`"))?,
                ),
                None => (rest.to_owned(), DEFAULT_PORT),
            }
        };
        if host.is_empty() {
            return Err(format!("endpoint `{s}`: empty host"));
        }
        if port == 0 {
            return Err(format!("endpoint `{s}`: port 0"));
        }
        Ok(Endpoint { host, port })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which transport the agent dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportChoice {
    /// QUIC first, TCP+TLS if QUIC fails.
    Auto,
    /// QUIC only.
    Quic,
    /// TCP+TLS only.
    Tcp,
}

/// Everything the agent needs to dial.
#[derive(Clone)]
pub struct DialConfig {
    /// The edge.
    pub endpoint: Endpoint,
    /// How to trust the edge.
    pub tls: Arc<rustls::ClientConfig>,
    /// Transport to use.
    pub transport: TransportChoice,
    /// The greeting (credentials, version).
    pub hello: Hello,
    /// Protocol version to speak; [`warren_proto::PROTOCOL_VERSION`] except in
    /// tests that play an incompatible agent.
    pub protocol_version: u16,
    /// Multiplexer settings (also keepalive for QUIC).
    pub session: SessionConfig,
    /// Limit for each of: connect, TLS, handshake.
    pub connect_timeout: Duration,
}

/// Why dialing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The endpoint name did not resolve.
    #[error("resolving {0}")]
    Resolve(String),
    /// TCP or UDP connect failed.
    #[error("connecting: {0}")]
    Connect(String),
    /// TLS failed (wrong pin, untrusted certificate...).
    #[error("TLS: {0}")]
    Tls(String),
    /// The handshake bytes were wrong.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The edge refused us.
    #[error("edge refused the agent: {} ({:?})", .0.message, .0.code)]
    Refused(Refusal),
    /// A step took too long.
    #[error("timed out during {0}")]
    Timeout(&'static str),
}

impl DialError {
    /// A refusal that will not go away by retrying as is (bad credentials, version).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DialError::Refused(_))
    }
}

async fn within<T>(
    limit: Duration,
    step: &'static str,
    fut: impl std::future::Future<Output = Result<T, DialError>>,
) -> Result<T, DialError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| DialError::Timeout(step))?
}

/// Dials the edge and runs the handshake. Returns the link and the transport
/// that worked.
pub async fn dial(cfg: &DialConfig) -> Result<(Link, Welcome), DialError> {
    let addrs: Vec<SocketAddr> = within(cfg.connect_timeout, "DNS resolution", async {
        tokio::net::lookup_host((cfg.endpoint.host.as_str(), cfg.endpoint.port))
            .await
            .map(|a| a.collect())
            .map_err(|e| DialError::Resolve(format!("{}: {e}", cfg.endpoint.host)))
    })
    .await?;
    let addr = *addrs
        .first()
        .ok_or_else(|| DialError::Resolve(format!("{}: no addresses", cfg.endpoint.host)))?;
    match cfg.transport {
        TransportChoice::Tcp => dial_tcp(cfg, addr).await,
        TransportChoice::Quic => dial_quic(cfg, addr).await,
        TransportChoice::Auto => {
            let quic_limit = cfg.connect_timeout.min(Duration::from_secs(3));
            match tokio::time::timeout(quic_limit, dial_quic(cfg, addr)).await {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(e)) if e.is_refusal() => Err(e),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "QUIC failed; falling back to TCP+TLS");
                    dial_tcp(cfg, addr).await
                }
                Err(_) => {
                    tracing::debug!("QUIC timed out; falling back to TCP+TLS");
                    dial_tcp(cfg, addr).await
                }
            }
        }
    }
}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, DialError> {
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| DialError::Tls(format!("`{host}` is not a valid server name")))
}

async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    cfg: &DialConfig,
) -> Result<Welcome, DialError> {
    let io_err = |e: std::io::Error| DialError::Connect(e.to_string());
    io.write_all(&hs::encode_hello(&cfg.hello, cfg.protocol_version))
        .await
        .map_err(io_err)?;
    io.flush().await.map_err(io_err)?;
    let mut buf = vec![0u8; 13];
    io.read_exact(&mut buf).await.map_err(|e| {
        DialError::Connect(format!("edge closed the link during the handshake ({e})"))
    })?;
    if hs::decode_reply(&buf)?.is_none() {
        let len = u32::from_be_bytes([buf[9], buf[10], buf[11], buf[12]]) as usize;
        buf.resize(13 + len, 0);
        io.read_exact(&mut buf[13..]).await.map_err(io_err)?;
    }
    match hs::decode_reply(&buf)? {
        Some((Reply::Welcome(w), _)) => Ok(w),
        Some((Reply::Refused(r), _)) => Err(DialError::Refused(r)),
        None => Err(DialError::Handshake(HandshakeError::BadBody(
            "truncated reply".into(),
        ))),
    }
}

async fn dial_tcp(cfg: &DialConfig, addr: SocketAddr) -> Result<(Link, Welcome), DialError> {
    let tcp = within(cfg.connect_timeout, "TCP connect", async {
        TcpStream::connect(addr)
            .await
            .map_err(|e| DialError::Connect(format!("{addr}: {e}")))
    })
    .await?;
    let _ = tcp.set_nodelay(true);
    let name = server_name(&cfg.endpoint.host)?;
    let connector = tokio_rustls::TlsConnector::from(cfg.tls.clone());
    let mut tls = within(cfg.connect_timeout, "TLS handshake", async {
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| DialError::Tls(e.to_string()))
    })
    .await?;
    let welcome = within(
        cfg.connect_timeout,
        "Warren handshake",
        client_handshake(&mut tls, cfg),
    )
    .await?;
    Ok((
        Link::Mux(MuxLink::start(tls, Role::Agent, cfg.session.clone())),
        welcome,
    ))
}

async fn dial_quic(cfg: &DialConfig, addr: SocketAddr) -> Result<(Link, Welcome), DialError> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| DialError::Connect(e.to_string()))?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg.tls.clone())
        .map_err(|e| DialError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(quic::transport_config(&cfg.session, true)));
    let connecting = endpoint
        .connect_with(client, addr, &cfg.endpoint.host)
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let conn = within(cfg.connect_timeout, "QUIC handshake", async {
        connecting.await.map_err(|e| match e {
            quinn::ConnectionError::TransportError(t) => DialError::Tls(t.to_string()),
            other => DialError::Connect(other.to_string()),
        })
    })
    .await?;
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let mut io = tokio::io::join(recv, &mut send);
    let welcome = within(
        cfg.connect_timeout,
        "Warren handshake",
        client_handshake(&mut io, cfg),
    )
    .await?;
    let (recv, _) = io.into_inner();
    Ok((Link::Quic(QuicLink::start(conn, send, recv, true)), welcome))
}

/// The edge's tunnel listener: TCP+TLS and QUIC on the same port number.
pub struct TunnelListener {
    tcp: TcpListener,
    quic: quinn::Endpoint,
    tls: tokio_rustls::TlsAcceptor,
    session: SessionConfig,
}

impl TunnelListener {
    /// Binds TCP on `addr`, then UDP on the same address and port.
    ///
    /// `reset_key` keys QUIC stateless resets and the connection ids. Keep it
    /// stable across restarts (derive it from the tunnel key): a restarted
    /// edge then recognises its predecessor's connection ids and answers
    /// their packets with a reset, and agents reconnect at their next packet
    /// instead of waiting out their idle timeout.
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        session: SessionConfig,
        reset_key: &[u8],
    ) -> std::io::Result<TunnelListener> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.clone())
            .map_err(std::io::Error::other)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(quic::transport_config(&session, false)));
        // With port 0, retry until a port is free for both TCP and UDP.
        let mut last_err = None;
        for _ in 0..20 {
            let tcp = TcpListener::bind(addr).await?;
            let bound = tcp.local_addr()?;
            let endpoint = std::net::UdpSocket::bind(bound).and_then(|socket| {
                quinn::Endpoint::new(
                    quic::endpoint_config(reset_key),
                    Some(server.clone()),
                    socket,
                    Arc::new(quinn::TokioRuntime),
                )
            });
            match endpoint {
                Ok(quic) => {
                    return Ok(TunnelListener {
                        tcp,
                        quic,
                        tls: tokio_rustls::TlsAcceptor::from(tls),
                        session,
                    })
                }
                Err(e) if addr.port() == 0 => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("no port free for TCP and UDP")))
    }

    /// The bound address (TCP and UDP share it).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Waits for the next connection attempt. Run [`Accepted::start`] on it in
    /// its own task.
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        tokio::select! {
            r = self.tcp.accept() => {
                let (tcp, remote) = r?;
                let _ = tcp.set_nodelay(true);
                Ok(Accepted {
                    remote,
                    inner: AcceptedInner::Tcp(tcp, self.tls.clone()),
                    session: self.session.clone(),
                })
            }
            incoming = self.quic.accept() => {
                let incoming = incoming.ok_or_else(|| std::io::Error::other("QUIC endpoint closed"))?;
                Ok(Accepted {
                    remote: incoming.remote_address(),
                    inner: AcceptedInner::Quic(Box::new(incoming)),
                    session: self.session.clone(),
                })
            }
        }
    }

    /// Stops accepting QUIC connections (TCP stops when the listener drops).
    pub fn close(&self) {
        self.quic.set_server_config(None);
    }

    /// The QUIC endpoint, to wait for its close frames to leave on shutdown
    /// (`quinn::Endpoint::wait_idle`).
    pub fn quic_endpoint(&self) -> quinn::Endpoint {
        self.quic.clone()
    }
}

/// A connection attempt not yet through TLS.
pub struct Accepted {
    remote: SocketAddr,
    inner: AcceptedInner,
    session: SessionConfig,
}

enum AcceptedInner {
    Tcp(TcpStream, tokio_rustls::TlsAcceptor),
    Quic(Box<quinn::Incoming>),
}

impl Accepted {
    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Runs TLS (or the QUIC handshake) and reads the agent's hello.
    pub async fn start(
        self,
        limit: Duration,
    ) -> Result<(PendingLink, Result<Hello, HandshakeError>), DialError> {
        let remote = self.remote;
        let session = self.session;
        match self.inner {
            AcceptedInner::Tcp(tcp, acceptor) => {
                let mut tls = within(limit, "TLS handshake", async {
                    acceptor
                        .accept(tcp)
                        .await
                        .map_err(|e| DialError::Tls(e.to_string()))
                })
                .await?;
                if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
                    return Err(DialError::Tls("client did not offer ALPN warren/1".into()));
                }
                let hello = within(limit, "Warren handshake", read_hello(&mut tls)).await?;
                Ok((
                    PendingLink {
                        remote,
                        session,
                        inner: PendingInner::Tcp(Box::new(tls)),
                    },
                    hello,
                ))
            }
            AcceptedInner::Quic(incoming) => {
                let conn = within(limit, "QUIC handshake", async {
                    (*incoming).await.map_err(|e| DialError::Tls(e.to_string()))
                })
                .await?;
                let (send, mut recv) = within(limit, "QUIC control stream", async {
                    conn.accept_bi()
                        .await
                        .map_err(|e| DialError::Connect(e.to_string()))
                })
                .await?;
                let hello = within(limit, "Warren handshake", read_hello(&mut recv)).await?;
                Ok((
                    PendingLink {
                        remote,
                        session,
                        inner: PendingInner::Quic { conn, send, recv },
                    },
                    hello,
                ))
            }
        }
    }
}

/// Reads a hello; protocol-level problems come back as the inner error so the
/// edge can send a refusal before closing.
async fn read_hello<R: AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<Result<Hello, HandshakeError>, DialError> {
    let mut buf = vec![0u8; 12];
    rd.read_exact(&mut buf).await.map_err(|e| {
        DialError::Connect(format!("agent closed the link during the handshake ({e})"))
    })?;
    match hs::decode_hello(&buf) {
        Ok(Some(_)) => unreachable!("a 12-byte buffer holds no body"),
        Ok(None) => {}
        Err(e) => return Ok(Err(e)),
    }
    let len = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    buf.resize(12 + len, 0);
    rd.read_exact(&mut buf[12..])
        .await
        .map_err(|e| DialError::Connect(e.to_string()))?;
    Ok(match hs::decode_hello(&buf) {
        Ok(Some((hello, _))) => Ok(hello),
        Ok(None) => Err(HandshakeError::BadBody("truncated hello".into())),
        Err(e) => Err(e),
    })
}

/// A link whose agent has said hello, awaiting the edge's decision.
pub struct PendingLink {
    remote: SocketAddr,
    session: SessionConfig,
    inner: PendingInner,
}

enum PendingInner {
    Tcp(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Quic {
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    },
}

impl PendingLink {
    /// The agent's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The transport the agent came in on.
    pub fn kind(&self) -> crate::TransportKind {
        match self.inner {
            PendingInner::Tcp(_) => crate::TransportKind::Tcp,
            PendingInner::Quic { .. } => crate::TransportKind::Quic,
        }
    }

    /// Accepts the agent: sends the welcome and starts the link.
    pub async fn welcome(self, welcome: Welcome) -> std::io::Result<Link> {
        let bytes = hs::encode_reply(&Reply::Welcome(welcome), warren_proto::PROTOCOL_VERSION);
        match self.inner {
            PendingInner::Tcp(mut tls) => {
                tls.write_all(&bytes).await?;
                tls.flush().await?;
                Ok(Link::Mux(MuxLink::start(*tls, Role::Edge, self.session)))
            }
            PendingInner::Quic {
                conn,
                mut send,
                recv,
            } => {
                send.write_all(&bytes)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok(Link::Quic(QuicLink::start(conn, send, recv, false)))
            }
        }
    }

    /// Refuses the agent with a reason it will log, then closes.
    pub async fn refuse(self, refusal: Refusal) {
        let bytes = hs::encode_reply(&Reply::Refused(refusal), warren_proto::PROTOCOL_VERSION);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            match self.inner {
                PendingInner::Tcp(mut tls) => {
                    let _ = tls.write_all(&bytes).await;
                    let _ = tls.shutdown().await;
                }
                PendingInner::Quic { conn, mut send, .. } => {
                    let _ = send.write_all(&bytes).await;
                    let _ = send.finish();
                    let _ = send.stopped().await;
                    conn.close(quinn::VarInt::from_u32(1), b"refused");
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let ep = |s: &str| Endpoint::parse(s).unwrap();
        assert_eq!(
            ep("https://edge.example.com:7443"),
            Endpoint {
                host: "edge.example.com".into(),
                port: 7443
            }
        );
        assert_eq!(
            ep("https://edge.example.com/"),
            Endpoint {
                host: "edge.example.com".into(),
                port: 7443
            }
        );
        assert_eq!(
            ep("127.0.0.1:9"),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 9
            }
        );
        assert_eq!(
            ep("[::1]:9"),
            Endpoint {
                host: "::1".into(),
                port: 9
            }
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://x:0").is_err());
        assert!(Endpoint::parse("https://x:99999").is_err());
        assert!(Endpoint::parse("https://x/path").is_err());
    }
}
