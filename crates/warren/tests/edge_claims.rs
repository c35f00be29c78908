//! README claims about how the edge chooses, checked with real processes:
//! active-active "new streams go to the least busy" agent, and "a target
//! the agent cannot connect to is retried once on another (http:
//! idempotent methods only)".

mod common;
mod web;

use common::{banner, bin, edge_with_echo, port_closed, read_banner, EchoEdge};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_testkit::{http_backend, EdgeProcess, Process, ResourceSpec, EVENT_TIMEOUT};

/// An agent of `home` with its own `/metrics`, so the test reads the
/// agent's count of the streams it serves, not only the edge's.
struct Agent {
    _process: Process,
    instance: String,
    metrics: SocketAddr,
}

fn start_agent(edge: &EdgeProcess, name: &str, allow: &str) -> Agent {
    let before = edge.process.events("agent_connected").len();
    let mut args = edge.site_args("home", "S3CRET-for-tests", "tcp", &[allow]);
    args.extend(["--metrics".to_owned(), "127.0.0.1:0".to_owned()]);
    let process = Process::spawn(name, bin(), &args, &edge.dir);
    process.wait_event("edge_connected");
    edge.process
        .wait_event_nth("agent_connected", before, EVENT_TIMEOUT);
    let instance = process.wait_event("agent_starting")["agent"]
        .as_str()
        .expect("agent id")
        .to_owned();
    let metrics = process.wait_event("metrics_listening")["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("metrics address");
    Agent {
        _process: process,
        instance,
        metrics,
    }
}

impl Agent {
    /// `warren_site_streams_active` as the agent itself reports it.
    async fn streams_active(&self) -> u64 {
        let mut s = TcpStream::connect(self.metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("warren_site_streams_active "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no warren_site_streams_active in {text}"))
    }
}

/// Active streams per agent instance, as `GET /api/v1/sites` shows them.
fn edge_counts(edge: &EdgeProcess) -> BTreeMap<String, u64> {
    let sites = edge.admin_get("/api/v1/sites");
    let home = sites
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "home"))
        .unwrap_or_else(|| panic!("no site home: {sites}"));
    home["agents"]
        .as_array()
        .unwrap_or_else(|| panic!("no agents: {home}"))
        .iter()
        .map(|a| {
            (
                a["instance"].as_str().expect("instance").to_owned(),
                a["active_streams"].as_u64().expect("active_streams"),
            )
        })
        .collect()
}

/// Waits until the edge and each agent count `expected` open streams (a
/// closed stream's slot is released a moment after the client closes);
/// panics with the last counts after [`EVENT_TIMEOUT`].
async fn assert_streams(edge: &EdgeProcess, expected: &[(&Agent, u64)]) {
    let want: BTreeMap<String, u64> = expected
        .iter()
        .map(|(a, n)| (a.instance.clone(), *n))
        .collect();
    let want_own: Vec<u64> = expected.iter().map(|(_, n)| *n).collect();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let at_edge = edge_counts(edge);
        let mut own = Vec::new();
        for (a, _) in expected {
            own.push(a.streams_active().await);
        }
        if at_edge == want && own == want_own {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "streams per agent: the edge says {at_edge:?}, the agents say {own:?}; expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection through `addr` that has carried one echo round trip, so its
/// stream is open on some agent; kept open by the caller.
async fn open_stream(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_streams_go_to_the_least_busy_agent() {
    let EchoEdge {
        edge,
        echo,
        dir: _dir,
    } = edge_with_echo().await;
    let allow = format!("{echo}/tcp");
    let busy = start_agent(&edge, "busy", &allow);
    let addr = edge.resource_addr("echo");
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(open_stream(addr).await);
    }
    let idle = start_agent(&edge, "idle", &allow);
    assert_streams(&edge, &[(&busy, 4), (&idle, 0)]).await;
    // Every new stream goes to the agent with fewer: all four to the newcomer.
    for _ in 0..4 {
        open.push(open_stream(addr).await);
    }
    assert_streams(&edge, &[(&busy, 4), (&idle, 4)]).await;
    // Level: one each.
    for _ in 0..2 {
        open.push(open_stream(addr).await);
    }
    assert_streams(&edge, &[(&busy, 5), (&idle, 5)]).await;
    // The newcomer's streams end (and one of the busy agent's): the next
    // ones go to the newcomer again.
    open.truncate(4);
    assert_streams(&edge, &[(&busy, 4), (&idle, 0)]).await;
    for _ in 0..3 {
        open.push(open_stream(addr).await);
    }
    assert_streams(&edge, &[(&busy, 4), (&idle, 3)]).await;
}

/// An address nothing listens on: a port the kernel gave out, released.
fn dead_target() -> SocketAddr {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(port_closed(addr), "{addr} is in use");
    addr
}

/// The edge's `stream_refused` lines for `upstream` on `resource`.
fn refusals(edge: &EdgeProcess, resource: &str, upstream: SocketAddr) -> usize {
    edge.process
        .events("stream_refused")
        .iter()
        .filter(|v| {
            v["resource"] == resource
                && v["upstream"] == upstream.to_string()
                && v["reason"] == "connect_failed"
        })
        .count()
}

/// `round_robin` over `[dead, live]` puts the dead target first for the
/// first request, so every resource here meets it at once.
fn dead_then_live(r: ResourceSpec, dead: SocketAddr, live: SocketAddr) -> ResourceSpec {
    let mut r = r.with("balance = \"round_robin\"");
    r.targets = vec![
        ("home".into(), dead.to_string()),
        ("home".into(), live.to_string()),
    ];
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_retried_on_another_for_idempotent_requests_only() {
    let live = http_backend("live").await;
    let dead = dead_target();
    let web = web::start(
        vec![
            dead_then_live(
                ResourceSpec::http("get", "get.app.test", "home", live.addr),
                dead,
                live.addr,
            ),
            dead_then_live(
                ResourceSpec::http("post", "post.app.test", "home", live.addr),
                dead,
                live.addr,
            ),
        ],
        &[dead, live.addr],
    );
    // GET is idempotent: every one is answered by the live target.
    for i in 0..6 {
        let r = web.curl("get.app.test", &format!("/{i}"), &[]).await;
        assert_eq!(r.status, 200, "GET /{i}: {}", r.body);
        assert_eq!(r.json()["name"], "live");
    }
    // ...after the dead one was tried and its failure logged (edge and agent).
    assert!(
        refusals(&web.edge, "get", dead) >= 1,
        "the dead target was never tried"
    );
    web.agent
        .wait_log("target_unreachable", EVENT_TIMEOUT, |v| {
            v["event"] == "target_unreachable" && v["upstream"] == dead.to_string()
        });
    // POST is not: round robin alternates dead, live, and a POST that met
    // the dead target is answered 502 rather than sent again elsewhere.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = web
            .curl(
                "post.app.test",
                &format!("/{i}"),
                &["-X", "POST", "-d", "once"],
            )
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [502, 200, 502, 200]);
    assert_eq!(refusals(&web.edge, "post", dead), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_to_an_unreachable_target_is_retried_on_another() {
    let live = banner("live").await;
    let dead = dead_target();
    let dir = tempfile::tempdir().unwrap();
    let spec = warren_testkit::EdgeSpec::new().resource(dead_then_live(
        ResourceSpec::tcp("tcp", "home", live),
        dead,
        live,
    ));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let _agent = edge.start_agent(
        "agent",
        "tcp",
        &[&format!("{dead}/tcp"), &format!("{live}/tcp")],
    );
    let addr = edge.resource_addr("tcp");
    for i in 0..6 {
        assert_eq!(
            read_banner(addr).await.as_deref(),
            Some("live"),
            "connection {i}"
        );
    }
    assert!(
        refusals(&edge, "tcp", dead) >= 1,
        "the dead target was never tried"
    );
}

/// A POST whose body is still arriving when the agent refuses the target
/// gets the 502 page. Left unread, the body made HTTP/2 reset the stream
/// right after the page, and curl, still uploading, reported the reset
/// ("HTTP/2 stream was not closed cleanly") with no status at all: the edge
/// now takes in up to 64 KiB of such a body first, as nginx discards one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_still_uploading_to_a_dead_target_gets_the_502_page_not_a_reset() {
    let dead = dead_target();
    let web = web::start(
        vec![ResourceSpec::http("post", "post.app.test", "home", dead)],
        &[dead],
    );
    let body = std::env::temp_dir().join(format!("warren-post-{}", std::process::id()));
    std::fs::write(&body, vec![b'x'; 40 * 1024]).unwrap();
    let data = format!("@{}", body.display());
    for version in ["--http2", "--http1.1"] {
        // 40 KiB at 100 KiB/s: the upload is still going when the refusal
        // comes back.
        let r = web
            .curl(
                "post.app.test",
                "/upload",
                &[
                    version,
                    "-X",
                    "POST",
                    "--data-binary",
                    &data,
                    "--limit-rate",
                    "100K",
                ],
            )
            .await;
        assert_eq!(
            (r.status, r.exit),
            (502, 0),
            "{version}: {} (curl exit {})",
            r.body,
            r.exit
        );
    }
    let _ = std::fs::remove_file(&body);
}
