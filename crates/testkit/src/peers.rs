//! Hostile peers that speak the tunnel protocol.
//!
//! They are built from `warren-transport` itself, so every frame they send is
//! well formed and within the flow control the other side granted: what they
//! do is the worst a *valid* peer can do (a stolen agent credential, a
//! compromised edge), which is what the bounds must hold against. Malformed
//! frames are covered elsewhere (the `hostile` tests and the fuzz targets).
//!
//! * [`FakeEdge`]: a tunnel listener that welcomes every agent and hands the
//!   test its [`Link`], to open streams the agent did not expect.
//! * [`RawFakeEdge`]: the same handshake, then the raw TLS stream, for a test
//!   to write frames no multiplexer would send (data past the window).
//! * [`fake_agent`]: dials a real edge with real credentials and hands the
//!   test the link, to answer the edge's streams as it likes.
//! * [`HangingTarget`]: a TCP address whose connects never complete.
//! * [`flood`]: writes until the peer stops taking bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use warren_proto::{Hello, SessionConfig, Welcome};
use warren_transport::tls::{self, EdgeTrust};
use warren_transport::{DialConfig, Endpoint, Link, TransportChoice, TunnelListener};

/// A TLS server config with a fresh self-signed certificate for
/// `localhost`, and the certificate's pin (for `warren site --pin`).
pub fn self_signed() -> (Arc<rustls::ServerConfig>, String) {
    use rustls::pki_types::pem::PemObject;
    let cert = tls::generate_self_signed(vec!["localhost".into()]).expect("certificate");
    let certs = vec![
        rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())
            .expect("certificate PEM"),
    ];
    let pin = tls::pin_of(&certs[0]);
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
    (tls::server_config(certs, key).expect("TLS config"), pin)
}

/// The welcome both fake edges send.
fn welcome() -> Welcome {
    Welcome {
        edge_version: "fake".into(),
        link_id: "fake-link".into(),
    }
}

/// A TLS stream from an agent, past the handshake.
pub type RawLink = tokio_rustls::server::TlsStream<TcpStream>;

/// A fake edge (TCP+TLS only) that welcomes every agent and hands the test
/// the raw stream: what the test writes are the frames the agent reads.
pub struct RawFakeEdge {
    /// The tunnel port.
    pub port: u16,
    /// The certificate pin.
    pub pin: String,
    links: mpsc::UnboundedReceiver<RawLink>,
}

impl RawFakeEdge {
    /// Binds and starts welcoming agents.
    pub async fn start() -> RawFakeEdge {
        let (config, pin) = self_signed();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("bound").port();
        let (tx, links) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    loop {
                        match warren_proto::handshake::decode_hello(&buf) {
                            Ok(Some(_)) => break,
                            Ok(None) => {}
                            Err(_) => return,
                        }
                        let mut chunk = [0u8; 1024];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let reply = warren_proto::handshake::encode_reply(
                        &warren_proto::handshake::Reply::Welcome(welcome()),
                        warren_proto::PROTOCOL_VERSION,
                    );
                    if s.write_all(&reply).await.is_ok() && s.flush().await.is_ok() {
                        let _ = tx.send(s);
                    }
                });
            }
        });
        RawFakeEdge { port, pin, links }
    }

    /// The next agent's stream, past the welcome.
    pub async fn link(&mut self) -> RawLink {
        tokio::time::timeout(crate::EVENT_TIMEOUT, self.links.recv())
            .await
            .expect("no agent reached the fake edge")
            .expect("fake edge stopped")
    }

    /// `warren site` arguments for an agent of this edge.
    pub fn site_args(&self, allow: &[&str]) -> Vec<String> {
        site_args(self.port, &self.pin, "tcp", allow)
    }
}

fn site_args(port: u16, pin: &str, transport: &str, allow: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "site",
        "--endpoint",
        &format!("https://127.0.0.1:{port}"),
        "--id",
        "home",
        "--secret",
        "fake-edge-secret",
        "--pin",
        pin,
        "--transport",
        transport,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for a in allow {
        args.push("--allow".into());
        args.push((*a).into());
    }
    args
}

/// A tunnel listener on `127.0.0.1:0` that welcomes every agent.
pub struct FakeEdge {
    /// The tunnel port (TCP and UDP).
    pub port: u16,
    /// The pin of its self-signed certificate, for `warren site --pin`.
    pub pin: String,
    links: mpsc::UnboundedReceiver<(Link, Hello)>,
}

impl FakeEdge {
    /// Binds and starts welcoming agents.
    pub async fn start() -> FakeEdge {
        let (config, pin) = self_signed();
        let listener = TunnelListener::bind(
            "127.0.0.1:0".parse().expect("address"),
            config,
            SessionConfig::default(),
            b"fake edge reset key",
        )
        .await
        .expect("binding the fake edge");
        let port = listener.local_addr().expect("bound").port();
        let (tx, links) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(accepted) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok((pending, Ok(hello))) = accepted.start(Duration::from_secs(5)).await
                    else {
                        return;
                    };
                    if let Ok(link) = pending.welcome(welcome()).await {
                        let _ = tx.send((link, hello));
                    }
                });
            }
        });
        FakeEdge { port, pin, links }
    }

    /// The next agent's link, with the hello it sent.
    pub async fn link(&mut self) -> (Link, Hello) {
        tokio::time::timeout(crate::EVENT_TIMEOUT, self.links.recv())
            .await
            .expect("no agent reached the fake edge")
            .expect("fake edge stopped")
    }

    /// `warren site` arguments for an agent of this edge over `transport`.
    pub fn site_args(&self, transport: &str, allow: &[&str]) -> Vec<String> {
        site_args(self.port, &self.pin, transport, allow)
    }
}

/// Dials a real edge at `tunnel` as an agent of `site` (TCP+TLS).
pub async fn fake_agent(tunnel: SocketAddr, pin: &str, site: &str, secret: &str) -> Link {
    try_fake_agent(tunnel, pin, site, secret)
        .await
        .expect("the fake agent was refused")
}

/// [`fake_agent`], returning the edge's refusal instead of failing.
pub async fn try_fake_agent(
    tunnel: SocketAddr,
    pin: &str,
    site: &str,
    secret: &str,
) -> Result<Link, warren_transport::DialError> {
    let pin = tls::parse_pin(pin).expect("pin");
    let config = DialConfig {
        endpoint: Endpoint {
            host: tunnel.ip().to_string(),
            port: tunnel.port(),
        },
        tls: tls::client_config(&EdgeTrust::Pin(pin)).expect("TLS config"),
        transport: TransportChoice::Tcp,
        hello: Hello {
            site_id: site.into(),
            secret: secret.into(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            platform: "fake".into(),
            instance: format!("fake-agent-{}", rand::random::<u32>()),
        },
        protocol_version: warren_proto::PROTOCOL_VERSION,
        session: SessionConfig::default(),
        connect_timeout: Duration::from_secs(5),
    };
    warren_transport::dial(&config).await.map(|(link, _)| link)
}

/// A TCP address on 127.0.0.1 whose connects hang: a listener whose accept
/// queue is full and never drained, so the kernel drops new SYNs.
pub struct HangingTarget {
    /// The address.
    pub addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _fillers: Vec<TcpStream>,
}

impl HangingTarget {
    /// Binds and fills the accept queue.
    pub async fn start() -> HangingTarget {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("bound");
        let mut fillers = Vec::new();
        // A backlog of 0 holds one connection; one more to be sure. Connects
        // past the queue hang, so give each a moment only.
        for _ in 0..2 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
            {
                fillers.push(s);
            }
        }
        let probe =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await;
        assert!(
            probe.is_err(),
            "a connect to the full listener completed: the target would not hang"
        );
        HangingTarget {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

/// Writes `total` bytes to `w` in chunks of 16 KiB, stopping at the first
/// error or when `stall` passes without progress; returns the bytes written.
pub async fn flood<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    total: usize,
    stall: Duration,
) -> usize {
    let chunk = vec![b'x'; 16 * 1024];
    let mut written = 0;
    while written < total {
        let n = chunk.len().min(total - written);
        match tokio::time::timeout(stall, w.write_all(&chunk[..n])).await {
            Ok(Ok(())) => written += n,
            _ => break,
        }
    }
    written
}

/// Anonymous resident memory of `pid` (`RssAnon` in `/proc/PID/status`), KiB.
pub fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading the status of process {pid}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no RssAnon for process {pid}"))
}
