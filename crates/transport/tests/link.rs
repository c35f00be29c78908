//! Links end to end on loopback, both transports: handshake, many concurrent
//! streams, half-close, refusal, a peer that drops.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_proto::{Hello, OpenRequest, RefuseReason, SessionConfig, TargetProtocol, Welcome};
use warren_transport::tls::{self, EdgeTrust};
use warren_transport::{
    dial, DialConfig, Endpoint, Link, OpenError, TransportChoice, TunnelListener,
};

struct Pair {
    edge: Link,
    agent: Link,
}

async fn pair(transport: TransportChoice) -> Pair {
    let cert = tls::generate_self_signed(vec!["localhost".into()]).unwrap();
    let certs = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let pin = tls::parse_pin(&tls::pin_of(&certs[0])).unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let server = tls::server_config(certs, key).unwrap();
    let listener = TunnelListener::bind(
        "127.0.0.1:0".parse().unwrap(),
        server,
        SessionConfig::default(),
        b"test reset key",
    )
    .await
    .unwrap();
    let port = listener.local_addr().unwrap().port();
    let edge = tokio::spawn(async move {
        let accepted = listener.accept().await.unwrap();
        let (pending, hello) = accepted.start(Duration::from_secs(5)).await.unwrap();
        assert_eq!(hello.unwrap().secret.expose(), "s3cret");
        let link = pending
            .welcome(Welcome {
                edge_version: "t".into(),
                link_id: "l".into(),
            })
            .await
            .unwrap();
        (link, listener)
    });
    let cfg = DialConfig {
        endpoint: Endpoint {
            host: "localhost".into(),
            port,
        },
        tls: tls::client_config(&EdgeTrust::Pin(pin)).unwrap(),
        transport,
        hello: Hello {
            site_id: "home".into(),
            secret: "s3cret".into(),
            agent_version: "t".into(),
            platform: "test".into(),
            instance: "i".into(),
        },
        protocol_version: warren_proto::PROTOCOL_VERSION,
        session: SessionConfig::default(),
        connect_timeout: Duration::from_secs(5),
    };
    let (agent, _) = dial(&cfg).await.unwrap();
    let (edge, listener) = edge.await.unwrap();
    std::mem::forget(listener);
    Pair { edge, agent }
}

/// The agent side: echoes every stream, refuses target "deny:1".
fn serve_echo(agent: Link) {
    tokio::spawn(async move {
        while let Some(inc) = agent.accept().await {
            tokio::spawn(async move {
                if inc.request.target == "deny:1" {
                    inc.refuse(RefuseReason::NotAllowed, "not on the list".into())
                        .await
                        .unwrap();
                    return;
                }
                let mut s = inc.accept().await.unwrap();
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
                s.shutdown().await.unwrap();
            });
        }
    });
}

fn req(target: &str) -> OpenRequest {
    OpenRequest {
        protocol: TargetProtocol::Tcp,
        target: target.into(),
        resource: "t".into(),
        client: String::new(),
    }
}

async fn echo_through(edge: &Link, size: usize) {
    let data: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    let want = Sha256::digest(&data);
    let s = edge.open(req("echo:1")).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::with_capacity(size);
    rd.read_to_end(&mut got).await.unwrap();
    let _wr = writer.await.unwrap();
    assert_eq!(got.len(), size);
    assert_eq!(Sha256::digest(&got), want);
}

async fn many_streams_and_refusal(transport: TransportChoice) {
    let p = pair(transport).await;
    serve_echo(p.agent.clone());
    let edge = Arc::new(p.edge);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let edge = edge.clone();
        tasks.push(tokio::spawn(
            async move { echo_through(&edge, 100_000).await },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    echo_through(&edge, 8 << 20).await;
    match edge.open(req("deny:1")).await {
        Err(OpenError::Refused { reason, message }) => {
            assert_eq!(reason, RefuseReason::NotAllowed);
            assert_eq!(message, "not on the list");
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a stream"),
    }
    // The link is still fine after a refusal.
    echo_through(&edge, 1000).await;
    // Closing the agent fails later opens with a link error, promptly.
    p.agent.close("test");
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match edge.open(req("echo:1")).await {
                Err(OpenError::Link(_)) => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(r.is_ok(), "edge did not notice the agent closing");
}

#[tokio::test]
async fn tcp_link_carries_many_streams() {
    many_streams_and_refusal(TransportChoice::Tcp).await;
}

#[tokio::test]
async fn quic_link_carries_many_streams() {
    many_streams_and_refusal(TransportChoice::Quic).await;
}

#[tokio::test]
async fn auto_prefers_quic() {
    let p = pair(TransportChoice::Auto).await;
    assert_eq!(p.agent.kind(), warren_transport::TransportKind::Quic);
}

/// Opens racing each other must still reach the agent in id order (a bug
/// once let a later id overtake an earlier one, which the agent rightly
/// treats as a protocol violation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_opens_keep_the_link_up() {
    let p = pair(TransportChoice::Tcp).await;
    serve_echo(p.agent.clone());
    let edge = Arc::new(p.edge);
    for _ in 0..5 {
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let edge = edge.clone();
                tokio::spawn(async move { echo_through(&edge, 100).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert!(!edge.is_closed());
}
