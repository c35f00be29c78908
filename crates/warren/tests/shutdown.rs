//! The edge's shutdown, as the README states it: `SIGTERM` stops accepting,
//! tells agents to reconnect elsewhere, drains open streams, and cuts those
//! still open at `drain_timeout`. Real processes; the "elsewhere" is a second
//! edge behind a failover TCP forwarder, as a load balancer in front of two
//! edges would be.

mod common;

use common::{bin, echo_ok};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec, Process, ResourceSpec, EVENT_TIMEOUT};

const SIGTERM: i32 = 15;

/// An edge config publishing `echo` with `drain_timeout` and extra `[edge]` lines.
fn spec(echo: SocketAddr, drain_timeout: &str, edge_extra: &str) -> String {
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    spec.edge_extra = edge_extra.to_owned();
    let toml = spec.to_toml();
    assert!(toml.contains("drain_timeout = \"5s\""), "{toml}");
    toml.replace(
        "drain_timeout = \"5s\"",
        &format!("drain_timeout = \"{drain_timeout}\""),
    )
}

fn start_edge(dir: &std::path::Path, toml: &str) -> EdgeProcess {
    std::fs::write(dir.join("edge.toml"), toml).unwrap();
    EdgeProcess::start_existing(bin(), dir)
}

/// A connection through `addr` (an echo behind the tunnel) that has
/// carried one round trip, so its stream is open end to end.
async fn held_stream(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    still_echoes(&mut s, b"hold").await.unwrap();
    s
}

/// One more round trip on an open connection.
async fn still_echoes(s: &mut TcpStream, data: &[u8]) -> Result<(), String> {
    s.write_all(data).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .map_err(|_| "no echo within 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    if buf == data {
        Ok(())
    } else {
        Err(format!("echoed {buf:?}"))
    }
}

/// Waits (up to `within`) for the peer to end the connection: EOF or an error.
async fn wait_closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Waits for the edge to log that its shutdown began.
fn wait_shutting_down(edge: &EdgeProcess) {
    edge.process.wait_log("shutting down", EVENT_TIMEOUT, |v| {
        v["message"] == "shutting down: draining open streams"
    });
}

/// Log lines of `p` whose message is `message`.
fn messages(p: &Process, message: &str) -> Vec<serde_json::Value> {
    p.logs()
        .into_iter()
        .filter(|v| v["message"] == message)
        .collect()
}

/// A TCP forwarder in front of two edges, as a failover load balancer: each
/// connection goes to `primary` if it accepts, else to `secondary`. Returns
/// its address and, per connection, which side took it.
async fn failover(
    primary: SocketAddr,
    secondary: SocketAddr,
) -> (SocketAddr, Arc<Mutex<Vec<&'static str>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routed: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let log = routed.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let (mut outbound, side) = match TcpStream::connect(primary).await {
                    Ok(s) => (s, "primary"),
                    Err(_) => match TcpStream::connect(secondary).await {
                        Ok(s) => (s, "secondary"),
                        Err(_) => return,
                    },
                };
                log.lock().unwrap().push(side);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, routed)
}

/// `SIGTERM` on an edge sends its agents away at once: the agent logs that
/// the edge is going away (not a lost link) and is connected to the other
/// edge, serving traffic there, while the first edge is still draining a
/// stream, i.e. long before any dead-link timeout could have moved it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_agents_to_another_edge_while_it_drains() {
    let echo = echo_tcp().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start_edge(dir_a.path(), &spec(echo, "60s", ""));
    // The second edge presents the same tunnel certificate, so the agent's pin holds.
    let data_a = dir_a.path().join("data");
    let b = start_edge(
        dir_b.path(),
        &spec(
            echo,
            "60s",
            &format!(
                "tunnel_cert = \"{}\"\ntunnel_key = \"{}\"\n",
                data_a.join("tunnel-cert.pem").display(),
                data_a.join("tunnel-key.pem").display()
            ),
        ),
    );
    assert_eq!(a.pin, b.pin);
    let (front, routed) = failover(a.tunnel, b.tunnel).await;

    let mut args = a.site_args("home", "S3CRET-for-tests", "tcp", &[&format!("{echo}/tcp")]);
    let endpoint = args.iter().position(|x| x == "--endpoint").unwrap() + 1;
    args[endpoint] = format!("https://127.0.0.1:{}", front.port());
    let agent = Process::spawn("agent", bin(), &args, dir_a.path());
    agent.wait_event("edge_connected");
    a.process.wait_event("agent_connected");
    assert_eq!(*routed.lock().unwrap(), ["primary"]);

    let mut held = held_stream(a.resource_addr("echo")).await;
    a.process.signal(SIGTERM);

    agent.wait_event("edge_going_away");
    agent.wait_event_nth("edge_connected", 1, EVENT_TIMEOUT);
    b.process.wait_event("agent_connected");
    assert!(
        agent.events("edge_link_lost").is_empty(),
        "the agent lost its link instead of being sent away"
    );
    assert_eq!(*routed.lock().unwrap().last().unwrap(), "secondary");
    // The first edge is still up and draining: its stream still flows.
    assert!(
        a.process.wait_exit(Duration::ZERO).is_none(),
        "the first edge exited while a stream was open"
    );
    still_echoes(&mut held, b"still draining").await.unwrap();
    // The agent serves through the second edge.
    echo_ok(b.resource_addr("echo"), b"via the other edge")
        .await
        .unwrap();
    assert_eq!(b.agent_count("home"), 1);

    drop(held);
    let status = a.process.wait_exit(EVENT_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

/// The drain ends when the last open stream does, not at `drain_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_when_the_last_stream_closes() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut edge = start_edge(dir.path(), &spec(echo, "600s", ""));
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let mut held = held_stream(edge.resource_addr("echo")).await;
    edge.process.signal(SIGTERM);
    wait_shutting_down(&edge);
    still_echoes(&mut held, b"during the drain").await.unwrap();
    assert!(edge.process.wait_exit(Duration::ZERO).is_none());
    drop(held);
    // Well before the 600 s drain timeout.
    let status = edge.process.wait_exit(EVENT_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    assert!(messages(&edge.process, "drain timeout reached; closing open streams").is_empty());
    edge.process.wait_event("edge_stopped");
}

/// A stream still open at `drain_timeout` is cut then: not before (it
/// still flows after the signal), and the edge does not wait for it forever
/// (it exits 0, having logged the cut with the stream counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_cuts_streams_still_open() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the round trip right after the signal is well inside it.
    let drain = Duration::from_secs(10);
    let mut edge = start_edge(dir.path(), &spec(echo, "10s", ""));
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let mut held = held_stream(edge.resource_addr("echo")).await;
    let signalled = Instant::now();
    edge.process.signal(SIGTERM);
    wait_shutting_down(&edge);
    still_echoes(&mut held, b"after the signal").await.unwrap();

    assert!(
        wait_closed(&mut held, drain + EVENT_TIMEOUT).await,
        "the open stream was not cut"
    );
    let status = edge.process.wait_exit(EVENT_TIMEOUT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
    // Lower bound only: the edge may not let go of the stream before its drain timeout.
    assert!(
        signalled.elapsed() >= drain,
        "exited {:?} after SIGTERM, before the {drain:?} drain timeout",
        signalled.elapsed()
    );
    let cut = messages(&edge.process, "drain timeout reached; closing open streams");
    assert_eq!(cut.len(), 1, "no drain timeout logged");
    assert_eq!(cut[0]["streams"], 1, "{}", cut[0]);
    edge.process.wait_event("edge_stopped");
}
