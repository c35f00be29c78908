//! Hostile and incompatible peers against real processes: the refusal is
//! logged on both sides, only the offending link closes, nothing leaks.

mod common;

use common::{bin, echo_ok, edge_with_echo, EchoEdge};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_proto::handshake::{decode_reply, encode_hello, encode_reply, Reply};
use warren_proto::{Hello, Refusal, RefusalCode, Welcome};
use warren_testkit::{EdgeProcess, EdgeSpec, Process};
use warren_transport::tls::{self, EdgeTrust};

fn hello(secret: &str) -> Hello {
    Hello {
        site_id: "home".into(),
        secret: secret.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        platform: "test".into(),
        instance: "fake".into(),
    }
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS to the edge, as an agent would.
async fn tls_to(edge: &EdgeProcess) -> ClientTls {
    let pin = tls::parse_pin(&edge.pin).unwrap();
    let cfg = tls::client_config(&EdgeTrust::Pin(pin)).unwrap();
    let tcp = TcpStream::connect(edge.tunnel).await.unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

async fn read_reply(s: &mut ClientTls) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some((reply, _)) = decode_reply(&buf).unwrap() {
            return reply;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "edge closed without a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the edge closes the link; panics if it stays open.
async fn expect_closed(s: &mut ClientTls) {
    let mut sink = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the edge kept a hostile link open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_of_an_unknown_protocol_version_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    let mut s = tls_to(&edge).await;
    s.write_all(&encode_hello(&hello("S3CRET-for-tests"), 99))
        .await
        .unwrap();
    match read_reply(&mut s).await {
        Reply::Refused(r) => {
            assert_eq!(r.code, RefusalCode::UnsupportedVersion);
            assert!(r.message.contains("99"), "{}", r.message);
            assert!(r.message.contains("upgrade"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let logged = edge.process.wait_event("agent_refused");
    assert!(
        logged["error"].as_str().unwrap().contains("version 99"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_older_than_the_edge_supports_is_told_what_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    for version in ["0.0.9", "not-a-version"] {
        let mut s = tls_to(&edge).await;
        let old = Hello {
            agent_version: version.into(),
            ..hello("S3CRET-for-tests")
        };
        s.write_all(&encode_hello(&old, warren_proto::PROTOCOL_VERSION))
            .await
            .unwrap();
        match read_reply(&mut s).await {
            Reply::Refused(r) => {
                assert_eq!(r.code, RefusalCode::AgentTooOld);
                assert!(
                    r.message.contains(version) && r.message.contains("upgrade warren"),
                    "{}",
                    r.message
                );
            }
            other => panic!("{version}: expected a refusal, got {other:?}"),
        }
    }
    let logged = edge.process.wait_event("agent_refused");
    assert_eq!(logged["reason"], "agent_too_old", "{logged}");
    assert_eq!(edge.agent_count("home"), 0);
}

/// A fake edge that answers every agent with `reply`, once per connection.
async fn fake_edge(reply: Vec<u8>) -> (u16, String) {
    let cert = tls::generate_self_signed(vec!["localhost".into()]).unwrap();
    use rustls::pki_types::pem::PemObject;
    let certs =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let pin = tls::pin_of(&certs[0]);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(certs, key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, reply) = (acceptor.clone(), reply.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
                let mut body = vec![0u8; len];
                let _ = s.read_exact(&mut body).await;
                let _ = s.write_all(&reply).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    (port, pin)
}

fn agent_against(port: u16, pin: &str, dir: &std::path::Path) -> Process {
    let args: Vec<String> = [
        "site",
        "--endpoint",
        &format!("https://127.0.0.1:{port}"),
        "--id",
        "home",
        "--secret",
        "x",
        "--pin",
        pin,
        "--transport",
        "tcp",
        "--allow",
        "127.0.0.1:9/tcp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Process::spawn("agent", bin(), &args, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_of_an_unknown_protocol_version_is_refused_by_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    // A newer edge that welcomes with version 99: the agent must not go on.
    let welcome = Welcome {
        edge_version: "99.0".into(),
        link_id: "x".into(),
    };
    let (port, pin) = fake_edge(encode_reply(&Reply::Welcome(welcome), 99)).await;
    let agent = agent_against(port, &pin, dir.path());
    let logged = agent.wait_event("edge_refused");
    let msg = logged["message"].as_str().unwrap();
    assert!(msg.contains("protocol version 99"), "{msg}");
    assert!(agent.events("edge_connected").is_empty());
    // A newer edge that refuses this agent's version: the agent logs the edge's words.
    let refusal = Refusal {
        code: RefusalCode::UnsupportedVersion,
        message: "this edge speaks protocol 2..=3; upgrade the agent to 0.5 or later".into(),
    };
    let (port, pin) = fake_edge(encode_reply(&Reply::Refused(refusal), 3)).await;
    let agent = agent_against(port, &pin, dir.path());
    let msg = agent.wait_event("edge_refused")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("upgrade the agent to 0.5"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_frames_close_only_that_link() {
    let EchoEdge {
        edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let _good = edge.start_agent("good", "tcp", &[&format!("{echo}/tcp")]);
    let addr = edge.resource_addr("echo");
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("unknown frame type", vec![0xEE, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
        (
            "oversized length",
            vec![0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
        (
            "ping on a stream",
            vec![6, 0, 0, 0, 0, 9, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        (
            "data for a stream never opened",
            vec![0, 0, 0, 0, 0, 41, 0, 0, 0, 1, 0xAB],
        ),
        (
            "window overflow",
            vec![3, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
        (
            "bad open payload from an agent",
            vec![1, 0, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9],
        ),
        (
            "random bytes",
            (0..4096).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        (
            "truncated frame then close",
            vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 100, 1, 2, 3],
        ),
    ];
    for (i, (what, bytes)) in garbage.iter().enumerate() {
        let mut s = tls_to(&edge).await;
        s.write_all(&encode_hello(
            &hello("S3CRET-for-tests"),
            warren_proto::PROTOCOL_VERSION,
        ))
        .await
        .unwrap();
        assert!(
            matches!(read_reply(&mut s).await, Reply::Welcome(_)),
            "{what}: not welcomed"
        );
        s.write_all(bytes).await.unwrap();
        if what.starts_with("truncated") {
            s.shutdown().await.unwrap();
        }
        s.flush().await.unwrap();
        expect_closed(&mut s).await;
        let gone =
            edge.process
                .wait_log(&format!("disconnect #{i}"), Duration::from_secs(5), |v| {
                    v["event"] == "agent_disconnected" && v["agent"] == "fake" && {
                        let n = edge
                            .process
                            .events("agent_disconnected")
                            .iter()
                            .filter(|e| e["agent"] == "fake")
                            .count();
                        n > i
                    }
                });
        assert!(gone["reason"].is_string(), "{what}: {gone}");
        // The good agent's link is untouched.
        echo_ok(addr, what.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
    }
    let reasons: Vec<String> = edge
        .process
        .events("agent_disconnected")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        reasons
            .iter()
            .filter(|r| r.contains("protocol error"))
            .count()
            >= 6,
        "{reasons:#?}"
    );
    // No leak: only the good agent is registered, with no stream left open.
    assert_eq!(edge.agent_count("home"), 1);
    edge.wait_streams_closed();
    assert!(edge
        .process
        .logs()
        .iter()
        .all(|l| !l.to_string().contains("panicked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_edge_sending_garbage_makes_the_agent_reconnect_not_crash() {
    let dir = tempfile::tempdir().unwrap();
    let welcome = Welcome {
        edge_version: "evil".into(),
        link_id: "x".into(),
    };
    let mut reply = encode_reply(&Reply::Welcome(welcome), warren_proto::PROTOCOL_VERSION);
    reply.extend_from_slice(&[0xEE; 64]);
    let (port, pin) = fake_edge(reply).await;
    let mut agent = agent_against(port, &pin, dir.path());
    let lost = agent.wait_event("edge_link_lost");
    assert!(
        lost["reason"].as_str().unwrap().contains("protocol error"),
        "{lost}"
    );
    // It keeps trying (a second connection) and is still running.
    agent.wait_event_nth("edge_connected", 1, Duration::from_secs(10));
    assert_eq!(
        agent.wait_exit(Duration::from_millis(100)),
        None,
        "the agent exited"
    );
}
