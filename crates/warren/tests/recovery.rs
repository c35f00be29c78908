//! Self-healing and active-active, with real processes.

mod common;

use common::{bin, echo_ok, edge_with_echo, EchoEdge};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec, ResourceSpec};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// How long a restarted edge may take to carry traffic again before a test
/// gives up: generous, so a loaded machine is not a failure. How soon
/// traffic comes back is measured by `bench/crash.py`, not asserted here.
const BACK_WITHIN: Duration = Duration::from_secs(60);

/// What the agent logged about the edge going away and coming back.
struct Return {
    /// Its `edge_link_lost` event for the old link, if it lost it (a clean
    /// stop says `edge_going_away` instead).
    lost: Option<serde_json::Value>,
    /// Its second `edge_connected` event: the new link.
    reconnected: serde_json::Value,
}

/// Stops the edge with `signal` (checking it ended that way), starts it
/// again on the same ports and data directory, and waits until traffic
/// flows through the agent, which must have come back on its own.
async fn edge_restart_after(transport: &str, signal: i32) -> Return {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    let mut edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let agent = edge.start_agent("agent", transport, &[&format!("{echo}/tcp")]);
    let addr = edge.resource_addr("echo");
    echo_ok(addr, b"before").await.unwrap();

    edge.process.signal(signal);
    let status = edge
        .process
        .wait_exit(Duration::from_secs(20))
        .expect("the edge did not end after the signal");
    if signal == SIGKILL {
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "the edge was not killed by SIGKILL: {status:?}"
        );
    } else {
        assert_eq!(
            status.code(),
            Some(0),
            "edge exits 0 on SIGTERM: {status:?}"
        );
    }
    spec.tunnel_listen = edge.tunnel.to_string();
    spec.resources[0].listen = addr.to_string();
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let listening = Instant::now();
    let deadline = listening + BACK_WITHIN;
    let mut last_err = String::new();
    while Instant::now() < deadline {
        match echo_ok(addr, b"after").await {
            Ok(()) => {
                eprintln!(
                    "{transport}: traffic flowed {:?} after the edge restarted (signal {signal})",
                    listening.elapsed()
                );
                let reconnected = agent.wait_event_nth("edge_connected", 1, Duration::from_secs(5));
                return Return {
                    lost: agent.events("edge_link_lost").into_iter().next(),
                    reconnected,
                };
            }
            Err(e) => last_err = e,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.dump();
    edge.process.dump();
    panic!("no traffic within {BACK_WITHIN:?} of the edge listening again: {last_err}");
}

/// How the agent noticed that its edge had crashed.
fn cause(back: &Return) -> &str {
    back.lost
        .as_ref()
        .expect("the agent logged no edge_link_lost after the edge crashed")["cause"]
        .as_str()
        .expect("edge_link_lost without a cause")
}

/// A crashed edge sends no close; a QUIC agent would wait out its idle
/// timeout (`cause` = `dead`), but the restarted edge answers the agent's
/// next packet with a stateless reset (its reset key and connection ids are
/// derived from the tunnel key), so the agent learns at once that the link
/// is gone (`cause` = `reset`) and dials again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_crash_quic_agents_are_reset_and_return() {
    let back = edge_restart_after("quic", SIGKILL).await;
    assert_eq!(cause(&back), "reset", "{:?}", back.lost);
    assert_eq!(back.reconnected["transport"], "quic");
}

/// `auto` picks QUIC here, so it takes the stateless reset path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_crash_auto_agents_are_reset_and_return_over_quic() {
    let back = edge_restart_after("auto", SIGKILL).await;
    assert_eq!(cause(&back), "reset", "{:?}", back.lost);
    assert_eq!(back.reconnected["transport"], "quic");
}

/// The kernel closes a killed process's TCP connections, so a TCP agent
/// hears of the crash at once (`cause` is not `dead`) and dials again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_crash_tcp_agents_see_the_close_and_return() {
    let back = edge_restart_after("tcp", SIGKILL).await;
    let cause = cause(&back);
    assert!(
        cause == "closed" || cause == "io",
        "the agent did not see the connection close: {:?}",
        back.lost
    );
    assert_eq!(back.reconnected["transport"], "tcp");
}

/// A clean restart: the edge tells its agents to go (`GoAway`) and closes
/// their links, so they come back without waiting for a timeout or a reset.
async fn edge_restart(transport: &str) {
    let back = edge_restart_after(transport, SIGTERM).await;
    if let Some(lost) = &back.lost {
        let cause = lost["cause"].as_str();
        assert!(
            cause == Some("closed") || cause == Some("io"),
            "{transport}: the agent did not see the edge close its link: {lost}"
        );
    }
    assert_eq!(back.reconnected["transport"], transport);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_restart_traffic_flows_again_tcp() {
    edge_restart("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_restart_traffic_flows_again_quic() {
    edge_restart("quic").await;
}

/// Runs `workers` client loops of echo round trips until `stop`; returns
/// (successes, failures that started after `cutoff` was set, failures before).
async fn client_load(
    addr: std::net::SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
    cutoff: Arc<AtomicBool>,
) -> (usize, Vec<String>, usize) {
    let ok = Arc::new(AtomicUsize::new(0));
    let early_failures = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (stop, cutoff, ok, early, late) = (
                stop.clone(),
                cutoff.clone(),
                ok.clone(),
                early_failures.clone(),
                late.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started_after_cutoff = cutoff.load(Ordering::SeqCst);
                    match echo_ok(addr, &[7u8; 2000]).await {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if started_after_cutoff => late.lock().unwrap().push(e),
                        Err(_) => {
                            early.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let late = late.lock().unwrap().clone();
    (
        ok.load(Ordering::Relaxed),
        late,
        early_failures.load(Ordering::Relaxed),
    )
}

async fn kill_one_of_two(signal: i32, transport: &str) -> (usize, Vec<String>, usize) {
    let EchoEdge {
        edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let allow = format!("{echo}/tcp");
    let doomed = edge.start_agent("doomed", transport, &[&allow]);
    let survivor = edge.start_agent("survivor", transport, &[&allow]);
    assert_eq!(edge.agent_count("home"), 2);
    let addr = edge.resource_addr("echo");
    let stop = Arc::new(AtomicBool::new(false));
    let cutoff = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(client_load(addr, 4, stop.clone(), cutoff.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Connections already in flight on a SIGKILLed agent may fail; every
    // connection started after the kill must succeed. (A clean stop is held
    // to zero failures in flight too: see the caller.)
    doomed.signal(signal);
    cutoff.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let result = load.await.unwrap();
    // A TCP link dies with its process (the kernel resets it); a QUIC link
    // sends nothing when its process is killed, so the edge drops it at the
    // keepalive deadline (12 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while edge.agent_count("home") != 1 {
        assert!(Instant::now() < deadline, "the dead agent is still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(survivor);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_agent_fails_no_later_connection() {
    for transport in ["tcp", "quic"] {
        let (ok, late, early) = kill_one_of_two(SIGKILL, transport).await;
        eprintln!(
            "{transport}: {ok} round trips ok, {early} failed in flight at the kill, {} after",
            late.len()
        );
        assert!(ok > 50, "too little traffic to mean anything: {ok}");
        assert!(
            late.is_empty(),
            "{transport}: connections after the kill failed: {late:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_agent_stop_fails_no_connection_at_all() {
    let (ok, late, early) = kill_one_of_two(SIGTERM, "tcp").await;
    eprintln!("{ok} round trips ok");
    assert!(ok > 50, "too little traffic: {ok}");
    assert_eq!(early, 0);
    assert!(
        late.is_empty(),
        "connections failed during a clean agent stop: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_edge_drains_an_open_connection_before_exiting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let EchoEdge {
        mut edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let mut conn = tokio::net::TcpStream::connect(edge.resource_addr("echo"))
        .await
        .unwrap();
    conn.write_all(b"first half ").await.unwrap();
    let mut buf = [0u8; 11];
    conn.read_exact(&mut buf).await.unwrap();
    edge.process.signal(SIGTERM);
    // New connections are no longer accepted...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(echo_ok(edge.resource_addr("echo"), b"new").await.is_err());
    // ...but the open one keeps working, and the edge waits for it.
    assert_eq!(
        edge.process.wait_exit(Duration::from_millis(200)),
        None,
        "edge quit with a stream open"
    );
    conn.write_all(b"second half").await.unwrap();
    let mut buf = [0u8; 11];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"second half");
    drop(conn);
    let status = edge.process.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}
