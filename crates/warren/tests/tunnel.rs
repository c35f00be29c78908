//! The data path through real `warren edge` and `warren site` processes.

mod common;

use common::{bin, echo_ok, edge_with_echo, roundtrip, EchoEdge};
use std::time::Duration;
use tokio::net::UdpSocket;
use warren_testkit::{
    echo_tcp, echo_udp, random_bytes, sha256_hex, EdgeProcess, EdgeSpec, ResourceSpec,
};

async fn sixteen_mib(transport: &str) {
    let EchoEdge {
        edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let agent = edge.start_agent("agent", transport, &[&format!("{echo}/tcp")]);
    let transport_used = agent.wait_event("edge_connected")["transport"].clone();
    assert_eq!(transport_used, transport);
    let data = random_bytes(16 << 20);
    let got = roundtrip(edge.resource_addr("echo"), data.clone())
        .await
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_of_random_bytes_over_tcp_transport() {
    sixteen_mib("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_of_random_bytes_over_quic_transport() {
    sixteen_mib("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_are_echoed_with_their_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_udp().await;
    let edge = EdgeProcess::start(
        bin(),
        dir.path(),
        &EdgeSpec::new().resource(ResourceSpec::udp("dns", "home", echo)),
    );
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/udp")]);
    let addr = edge.resource_addr("dns");
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(addr).await.unwrap();
    let mut buf = vec![0u8; 65536];
    for size in [1usize, 0, 512, 1400, 9000, 60000] {
        let d = random_bytes(size);
        client.send(&d).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no echo for a {size}-byte datagram"))
            .unwrap();
        assert_eq!(&buf[..n], &d[..], "datagram of {size} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streams() {
    let EchoEdge {
        edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let addr = edge.resource_addr("echo");
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let data = random_bytes(16 * 1024 + i * 100);
                echo_ok(addr, &data).await
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    if !failures.is_empty() {
        for e in edge.process.events("connection_failed").iter().take(5) {
            eprintln!("edge: {e}");
        }
        panic!(
            "{} of 200 streams failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    let sites = edge.wait_streams_closed();
    assert_eq!(sites[0]["agents"][0]["total_streams"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_outside_the_allowlist_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let forbidden = echo_tcp().await;
    let spec = EdgeSpec::new()
        .resource(ResourceSpec::tcp("ok", "home", echo))
        .resource(ResourceSpec::tcp("sneaky", "home", forbidden));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    // The visitor gets nothing from the forbidden target.
    let got = roundtrip(edge.resource_addr("sneaky"), b"hello".to_vec()).await;
    assert!(
        got.map(|g| g.is_empty()).unwrap_or(true),
        "forbidden target answered"
    );
    // The agent logged it, the edge logged it, the API shows it.
    let refused = agent.wait_event("stream_refused");
    assert_eq!(refused["upstream"], forbidden.to_string());
    assert_eq!(refused["reason"], "not_allowed");
    let on_edge = edge.process.wait_event("stream_refused");
    assert_eq!(on_edge["reason"], "not_allowed", "{on_edge}");
    // Counted under the reason the edge logged, once.
    let counted = edge.metrics();
    assert_eq!(
        counted
            .get("warren_edge_stream_refusals_total{resource=\"sneaky\",reason=\"not_allowed\"}")
            .map(String::as_str),
        Some("1"),
        "{counted:?}"
    );
    let sites = edge.admin_get("/api/v1/sites");
    assert_eq!(sites[0]["refusals"], 1);
    assert_eq!(sites[0]["last_refusal"]["target"], forbidden.to_string());
    assert_eq!(sites[0]["last_refusal"]["resource"], "sneaky");
    // The allowed resource still works over the same link.
    echo_ok(edge.resource_addr("ok"), b"still fine")
        .await
        .unwrap();
    // The agent's metrics count the refusal.
    assert!(agent.logs().iter().all(|l| l["event"] != "edge_link_lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_with_the_reason_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    let args = edge.site_args("home", "not-the-secret", "tcp", &["127.0.0.1:9/tcp"]);
    let agent = warren_testkit::Process::spawn("agent", bin(), &args, dir.path());
    let on_edge = edge.process.wait_event("agent_refused");
    assert_eq!(on_edge["reason"], "bad_credentials");
    assert_eq!(on_edge["site"], "home");
    let on_agent = agent.wait_event("edge_refused");
    let msg = on_agent["message"].as_str().unwrap();
    assert!(msg.contains("wrong secret"), "{msg}");
    assert_eq!(edge.agent_count("home"), 0);
    // An unknown site id gets the same answer (ids are not revealed).
    let args = edge.site_args("nobody", "S3CRET-for-tests", "quic", &["127.0.0.1:9/tcp"]);
    let agent = warren_testkit::Process::spawn("agent2", bin(), &args, dir.path());
    let msg = agent.wait_event("edge_refused")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("unknown site id or wrong secret"), "{msg}");
}

/// Closes `sock` with a reset (RST) instead of a FIN.
fn reset(sock: tokio::net::TcpStream) {
    socket2::SockRef::from(&sock)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(sock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_propagate_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that resets on `R`, and on `W` waits and reports how the
    // visitor's end arrived.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_err() {
                    return;
                }
                if b[0] == b'R' {
                    reset(s);
                } else {
                    let mut rest = [0u8; 16];
                    let how = match s.read(&mut rest).await {
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
                        Ok(0) => "fin",
                        _ => "other",
                    };
                    let _ = seen_tx.send(how);
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(
        bin(),
        dir.path(),
        &EdgeSpec::new().resource(ResourceSpec::tcp("r", "home", upstream)),
    );
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{upstream}/tcp")]);
    let addr = edge.resource_addr("r");

    // Upstream resets: the visitor sees a reset, not a clean end.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"R").await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "visitor saw {r:?} instead of a reset"
    );

    // Visitor resets: the upstream sees a reset.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"W").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    reset(c);
    let how = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(how, "reset");

    // And a half-close is not a reset: the upstream sees a FIN.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"W").await.unwrap();
    c.shutdown().await.unwrap();
    let how = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(how, "fin");
}
