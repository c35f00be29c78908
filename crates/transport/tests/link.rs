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
                echo(inc.accept().await.unwrap()).await;
            });
        }
    });
}

/// Sends back what a stream carries until its end.
async fn echo(mut s: warren_transport::TunnelStream) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await.unwrap();
    }
    s.shutdown().await.unwrap();
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

/// The agent accepts every stream; it echoes target "echo:1" and never
/// reads the others (a target that does not read).
fn serve_stuck(agent: Link) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (held_tx, held_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stuck = Vec::new();
        while let Some(inc) = agent.accept().await {
            if inc.request.target == "echo:1" {
                tokio::spawn(async move { echo(inc.accept().await.unwrap()).await });
            } else {
                stuck.push(inc.accept().await.unwrap());
                let _ = held_tx.send(());
            }
        }
    });
    held_rx
}

/// A peer writing everything it may on streams nobody reads can make the
/// other side hold at most the link budget plus an opening window per
/// stream (TCP transport: the session's budget; QUIC: its connection
/// window). Over TCP a stream that is read keeps moving meanwhile (each
/// stream may always hold its opening window); QUIC's connection window has
/// no such floor, so there the unread streams stall the link's new ones:
/// `honest` says which to expect.
async fn the_link_budget_holds(transport: TransportChoice, honest: bool) {
    let p = pair(transport).await;
    let mut held = serve_stuck(p.agent.clone());
    const STREAMS: usize = 300;
    let config = SessionConfig::default();
    let mut writers = Vec::new();
    for _ in 0..STREAMS {
        let open = tokio::time::timeout(Duration::from_secs(2), p.edge.open(req("stuck:1")));
        let Ok(opened) = open.await else {
            assert!(!honest, "an open stalled behind streams nobody reads");
            break;
        };
        let mut s = opened.unwrap();
        held.recv().await.unwrap();
        writers.push(tokio::spawn(async move {
            let chunk = vec![b'x'; 16 * 1024];
            let mut written = 0u64;
            // Until the writes stall: the credit is used up.
            while let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_millis(500), s.write_all(&chunk)).await
            {
                written += chunk.len() as u64;
            }
            (written, s)
        }));
    }
    let mut total = 0;
    let mut streams = Vec::new();
    for w in writers {
        let (written, s) = w.await.unwrap();
        total += written;
        streams.push(s);
    }
    let streams_opened = streams.len() as u64;
    let bound = config.link_budget + streams_opened * u64::from(config.opening_window);
    eprintln!(
        "{transport:?}: {streams_opened} unread streams took {} MiB (bound {} MiB)",
        total >> 20,
        bound >> 20
    );
    // Writes complete once credit is taken (plus one 16 KiB chunk each in
    // flight in a stalled write_all).
    assert!(
        total <= bound + streams_opened * 16 * 1024,
        "{total} bytes taken by streams nobody reads, bound {bound}"
    );
    assert!(
        total >= config.link_budget / 2,
        "only {total} bytes: the flood did not reach the budget"
    );
    if honest {
        // A stream that is read still carries data both ways.
        tokio::time::timeout(Duration::from_secs(30), echo_through(&p.edge, 512 * 1024))
            .await
            .expect("an honest stream stalled behind the unread ones");
    }
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_streams_nobody_reads_hold_at_most_the_link_budget() {
    the_link_budget_holds(TransportChoice::Tcp, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_streams_nobody_reads_hold_at_most_the_link_budget() {
    the_link_budget_holds(TransportChoice::Quic, false).await;
}
