//! The edge's Prometheus `/metrics`: what it counts after real traffic,
//! a refused agent, and an agent that left.

mod common;
mod web;

use std::io::{Read, Write};
use warren_testkit::{echo_tcp, http_backend, random_bytes, ResourceSpec};

fn scrape(admin: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("application/openmetrics-text"), "{resp}");
    resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
}

/// The value of the sample `name{labels}` (labels exactly as rendered).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no sample `{series}` in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_refusals_health_and_survive_an_agent_leaving() {
    let app = http_backend("app").await;
    let echo = echo_tcp().await;
    let web = web::start(
        vec![
            ResourceSpec::http("app", "app.test", "home", app.addr)
                .with("health = { path = \"/status/health\", interval = \"200ms\" }"),
            ResourceSpec::tcp("echo", "home", echo),
        ],
        &[app.addr, echo],
    );
    for i in 0..3 {
        let r = web.curl("app.test", &format!("/{i}"), &[]).await;
        assert_eq!(r.status, 200);
    }
    let r = web.curl("app.test", "/../../etc/passwd", &[]).await;
    assert_eq!(r.status, 200, "normalised to / and served");
    let data = random_bytes(100_000);
    let back = common::roundtrip(web.edge.resource_addr("echo"), data.clone())
        .await
        .unwrap();
    assert_eq!(back.len(), data.len());
    web.edge.wait_streams_closed();

    // An agent with a wrong secret.
    let args = web
        .edge
        .site_args("home", "wrong-secret", "tcp", &["127.0.0.1:1/tcp"]);
    let mut refused =
        warren_testkit::Process::spawn("bad-agent", common::bin(), &args, web.dir.path());
    web.edge
        .process
        .wait_log("refusal", warren_testkit::EVENT_TIMEOUT, |v| {
            v["event"] == "agent_refused" && v["reason"] == "bad_credentials"
        });
    // It retries on its own schedule: stopped, it leaves a fixed number of
    // refusals, each logged and each counted (at least the one seen above).
    refused.signal(9);
    refused
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("the bad agent dies on SIGKILL");
    let logged_refusals = || {
        web.edge
            .process
            .events("agent_refused")
            .iter()
            .filter(|v| v["reason"] == "bad_credentials")
            .count() as f64
    };
    let series = "warren_edge_tunnel_handshake_failures_total{reason=\"bad_credentials\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (counted, logged) = (sample(&scrape(web.edge.admin), series), logged_refusals());
        if counted == logged && logged >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{counted} bad_credentials refusals counted, {logged} logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while web.edge.admin_get("/api/v1/resources")[0]["targets"][0]["health"] != "healthy" {
        assert!(
            std::time::Instant::now() < deadline,
            "app never reported healthy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let text = scrape(web.edge.admin);
    if std::env::var_os("WARREN_TEST_ECHO").is_some() {
        eprintln!("{text}");
    }
    assert_eq!(
        sample(&text, "warren_edge_agents_connected{site=\"home\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "warren_edge_agent_connects_total{site=\"home\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "warren_edge_http_requests_total{resource=\"app\",code=\"2xx\"}"
        ),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            "warren_edge_http_request_duration_seconds_count{resource=\"app\"}"
        ),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "warren_edge_target_healthy{{resource=\"app\",target=\"{}\"}}",
                app.addr
            )
        ),
        1.0
    );
    let streams = sample(&text, "warren_edge_streams_total{site=\"home\"}");
    assert!(streams >= 5.0, "4 requests and 1 TCP connection: {streams}");
    let to_site = sample(&text, "warren_edge_bytes_to_site_total{site=\"home\"}");
    assert!(to_site >= 100_000.0, "{to_site}");
    assert_eq!(
        sample(&text, "warren_edge_streams_active{site=\"home\"}"),
        0.0
    );
    assert!(text.trim_end().ends_with("# EOF"));

    // The agent leaves: counters keep their totals, the gauge drops.
    let mut web = web;
    web.agent.signal(15);
    web.agent
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("the agent exits on SIGTERM");
    web.edge.process.wait_event("agent_disconnected");
    let text = scrape(web.edge.admin);
    assert_eq!(
        sample(&text, "warren_edge_agents_connected{site=\"home\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "warren_edge_streams_total{site=\"home\"}"),
        streams
    );
    assert_eq!(
        sample(&text, "warren_edge_bytes_to_site_total{site=\"home\"}"),
        to_site
    );
}
