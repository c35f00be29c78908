//! Hostile peers that speak the protocol (testkit `peers`), against a real
//! `warren` process: a compromised edge against an agent, a stolen agent
//! credential against an edge. Each test floods one bound, then asserts the
//! process's anonymous memory stayed within it, the refusal was logged, and
//! honest traffic on the same link (or beside it) kept flowing.

mod common;

use bytes::BytesMut;
use common::bin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_proto::{Frame, OpenRequest, TargetProtocol};
use warren_testkit::peers::{
    fake_agent, flood, try_fake_agent, FakeEdge, HangingTarget, RawFakeEdge,
};
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec, Process, ResourceSpec};

fn open(stream: u32, target: &str, protocol: TargetProtocol) -> Frame {
    Frame::Open {
        stream,
        request: OpenRequest {
            protocol,
            target: target.into(),
            resource: "flood".into(),
            client: String::new(),
        },
    }
}

/// The agent's memory settled: two readings a little apart within 1 MiB.
async fn settled_rss(p: &Process) -> u64 {
    let mut last = p.rss_anon_kib();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = p.rss_anon_kib();
        if now.abs_diff(last) < 1024 {
            return now;
        }
        last = now;
    }
    last
}

/// How much the process's anonymous memory grew since `before` (KiB), once
/// it has settled, in MiB.
async fn grown_mib_since(p: &Process, before: u64) -> f64 {
    settled_rss(p).await.saturating_sub(before) as f64 / 1024.0
}

/// Round trip of `n` bytes through an echo target on `stream`.
async fn echo_through<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    n: usize,
) {
    let data = warren_testkit::random_bytes(n);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let write = async {
        wr.write_all(&data).await.unwrap();
    };
    let mut back = vec![0u8; n];
    let read = async {
        rd.read_exact(&mut back).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
        .await
        .expect("the honest stream stalled");
    assert!(back == data, "the echo came back different");
}

/// The issue's report: a hostile edge opened 1,000 streams to a target whose
/// connect hangs and sent data on each before the agent answered; the agent
/// buffered all of it (13 -> 305 MiB in 0.6 s). Now a stream carries at most
/// the opening window (8 KiB) before its answer, and one byte more loses the
/// link, logged as a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_edge_cannot_make_an_agent_buffer_data_on_opens_it_has_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let hang = HangingTarget::start().await;
    let mut edge = RawFakeEdge::start().await;
    let allow = format!("{}/tcp", hang.addr);
    let agent = Process::spawn("agent", bin(), &edge.site_args(&[&allow]), dir.path());
    let mut link = edge.link().await;
    agent.wait_event("edge_connected");
    let before = settled_rss(&agent).await;

    // 1,000 opens, each followed by its whole opening window.
    const STREAMS: u32 = 1000;
    let window = warren_proto::session::OPENING_WINDOW as usize;
    let target = hang.addr.to_string();
    let mut buf = BytesMut::new();
    for i in 0..STREAMS {
        let id = 2 * i + 1;
        open(id, &target, TargetProtocol::Tcp).encode(&mut buf);
        Frame::Data {
            stream: id,
            payload: vec![b'x'; window].into(),
        }
        .encode(&mut buf);
        if buf.len() > 1 << 20 {
            link.write_all(&buf).await.unwrap();
            buf.clear();
        }
    }
    link.write_all(&buf).await.unwrap();
    link.flush().await.unwrap();
    buf.clear();
    let during = settled_rss(&agent).await;
    let grown_mib = during.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "agent RssAnon {:.1} -> {:.1} MiB with {STREAMS} unanswered opens of {window} bytes each",
        before as f64 / 1024.0,
        during as f64 / 1024.0
    );
    // 1,000 x 8 KiB of data is 7.8 MiB; each pending open also costs a
    // task and a socket. 256 KiB each (the old window) would be 250 MiB.
    assert!(
        grown_mib < 48.0,
        "the agent grew {grown_mib:.1} MiB for {STREAMS} unanswered opens"
    );

    // One byte past the window loses the link, with the reason logged.
    Frame::Data {
        stream: 1,
        payload: vec![b'x'; 1].into(),
    }
    .encode(&mut buf);
    let _ = link.write_all(&buf).await;
    let _ = link.flush().await;
    let lost = agent.wait_event("edge_link_lost");
    assert_eq!(lost["cause"], "protocol", "{lost}");
    assert!(
        lost["reason"]
            .as_str()
            .is_some_and(|r| r.contains("flow-control window")),
        "{lost}"
    );
    // The agent comes back (to the same fake edge): one link lost, not the agent.
    let _again = edge.link().await;
}

/// The issue's report: a hostile edge's health plan without a newline grew
/// the agent 14 -> 419 MiB. The agent closes the health stream at the line
/// bound (256 KiB), logged, and a stream to an echo target on the same link
/// still carries data both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_edge_flooding_health_plans_loses_that_stream_and_the_link_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let mut edge = FakeEdge::start().await;
    let allow = format!("{echo}/tcp");
    let agent = Process::spawn(
        "agent",
        bin(),
        &edge.site_args("tcp", &[&allow]),
        dir.path(),
    );
    let (link, _) = edge.link().await;
    agent.wait_event("edge_connected");
    let before = settled_rss(&agent).await;

    // A health "plan" of 64 MiB without a newline.
    let request = OpenRequest {
        protocol: TargetProtocol::Health,
        target: "health".into(),
        resource: String::new(),
        client: String::new(),
    };
    let mut health = link.open(request).await.expect("health stream");
    let sent = flood(&mut health, 64 << 20, Duration::from_secs(3)).await;
    let closed = agent.wait_event("health_stream_closed");
    assert_eq!(closed["reason"], "line_too_long", "{closed}");
    let grown_mib = grown_mib_since(&agent, before).await;
    eprintln!(
        "health flood: sent {} KiB before the agent closed the stream; agent RssAnon +{grown_mib:.1} MiB",
        sent / 1024
    );
    assert!(sent < 8 << 20, "the agent took {sent} bytes of one line");
    assert!(grown_mib < 16.0, "the agent grew {grown_mib:.1} MiB");

    // The link still serves.
    let request = OpenRequest {
        protocol: TargetProtocol::Tcp,
        target: echo.to_string(),
        resource: "echo".into(),
        client: String::new(),
    };
    let mut s = link.open(request).await.expect("an honest stream");
    echo_through(&mut s, 1 << 20).await;
    assert!(
        agent.events("edge_link_lost").is_empty(),
        "the link was lost"
    );
}

/// A stolen agent credential writes 64 MiB on the health stream without a
/// newline (the issue saw the edge grow 1:1, 60 -> 1,596 MiB): the edge
/// closes that stream at the line bound and keeps serving other agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_flooding_health_reports_loses_that_stream_and_the_edge_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    spec.sites
        .push(("thief".into(), "stolen-credential-secret".into()));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let _honest = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let before = settled_rss(&edge.process).await;

    let link = fake_agent(edge.tunnel, &edge.pin, "thief", "stolen-credential-secret").await;
    // The edge opens a health stream to every agent, to send its plan.
    let incoming = tokio::time::timeout(Duration::from_secs(20), link.accept())
        .await
        .expect("the edge opened no health stream")
        .expect("link closed");
    assert_eq!(incoming.request.protocol, TargetProtocol::Health);
    let mut health = incoming.accept().await.unwrap();
    let sent = flood(&mut health, 64 << 20, Duration::from_secs(3)).await;
    let closed = edge.process.wait_event("health_stream_closed");
    assert_eq!(closed["reason"], "line_too_long", "{closed}");
    assert_eq!(closed["site"], "thief", "{closed}");
    let grown_mib = grown_mib_since(&edge.process, before).await;
    eprintln!(
        "health report flood: sent {} KiB; edge RssAnon +{grown_mib:.1} MiB",
        sent / 1024
    );
    assert!(sent < 8 << 20, "the edge took {sent} bytes of one line");
    assert!(grown_mib < 16.0, "the edge grew {grown_mib:.1} MiB");

    // The honest site still serves.
    let addr = edge.resource_addr("echo");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    echo_through(&mut c, 1 << 20).await;
}

/// A leaked site secret cannot fill the edge with links: a site may have 32
/// at once; the next is refused with a reason the agent logs, and counted,
/// and the site's honest agent keeps its link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_secret_cannot_open_more_than_32_links_for_its_site() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let honest = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let mut links = Vec::new();
    for _ in 1..32 {
        links.push(fake_agent(edge.tunnel, &edge.pin, "home", "S3CRET-for-tests").await);
    }
    assert_eq!(edge.agent_count("home"), 32);
    let refused = try_fake_agent(edge.tunnel, &edge.pin, "home", "S3CRET-for-tests").await;
    match refused {
        Err(warren_transport::DialError::Refused(r)) => {
            assert_eq!(r.code, warren_proto::RefusalCode::Unavailable);
            assert!(r.message.contains("already has 32 agents"), "{}", r.message);
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("a 33rd link for one site was admitted"),
    }
    let logged = edge.process.wait_event("agent_refused");
    assert_eq!(logged["reason"], "too_many_agents", "{logged}");
    let metrics = edge.metrics();
    assert_eq!(
        metrics
            .get(r#"warren_edge_tunnel_handshake_failures_total{reason="too_many_agents"}"#)
            .map(String::as_str),
        Some("1"),
        "{metrics:?}"
    );
    assert_eq!(edge.agent_count("home"), 32);
    // One leaves: there is room again.
    links.pop().unwrap().close("test");
    common::within("the edge to see the link close", || async {
        edge.agent_count("home") == 31
    })
    .await;
    try_fake_agent(edge.tunnel, &edge.pin, "home", "S3CRET-for-tests")
        .await
        .expect("with a link gone, a new one is admitted");
    // The honest agent kept its link throughout.
    assert!(honest.events("edge_link_lost").is_empty());
    drop(links);
}
