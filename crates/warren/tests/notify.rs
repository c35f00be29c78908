//! Webhook notifications from a real edge to a receiver started by the
//! test: signed bodies, retries with the same delivery id, and site
//! online/offline with a debounce that ignores a quick agent restart.

mod common;

use common::bin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec, Process};

#[derive(Clone, Debug)]
struct Delivery {
    event: String,
    id: String,
    signature: String,
    body: Vec<u8>,
    /// When the receiver got it.
    at: Instant,
}

/// A webhook receiver that fails the first `fail_first` requests with 500.
async fn receiver(fail_first: usize) -> (std::net::SocketAddr, Arc<Mutex<Vec<Delivery>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let (event, id, signature) = (
                                header("x-warren-event"),
                                header("x-warren-delivery"),
                                header("x-warren-signature"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            let n = {
                                let mut all = sink.lock().unwrap();
                                all.push(Delivery {
                                    event,
                                    id,
                                    signature,
                                    body,
                                    at: Instant::now(),
                                });
                                all.len()
                            };
                            let status = if n <= fail_first { 500 } else { 200 };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, got)
}

fn events(got: &Arc<Mutex<Vec<Delivery>>>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .map(|d| d.event.clone())
        .collect()
}

async fn wait_for(got: &Arc<Mutex<Vec<Delivery>>>, event: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while events(got).iter().filter(|e| *e == event).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {n} x {event} within {within:?}: {:?}",
            events(got)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes());
    hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_signed_retried_and_debounces_site_offline() {
    let (hook, got) = receiver(1).await;
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = EdgeSpec::new();
    spec.edge_extra = String::new();
    let mut toml = spec.to_toml();
    toml += &format!(
        "[notify]\ndebounce = \"3s\"\nwebhook = {{ url = \"http://{hook}/hooks/warren\", secret = \"hook-key\" }}\n"
    );
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let allow = format!("{echo}/tcp");
    let agent = edge.start_agent("agent", "tcp", &[&allow]);

    // The first POST fails (500) and is retried with the same delivery id.
    wait_for(&got, "agent_connected", 2, Duration::from_secs(10)).await;
    wait_for(&got, "site_online", 1, Duration::from_secs(10)).await;
    let all = got.lock().unwrap().clone();
    assert_eq!(all[0].id, all[1].id, "a retry keeps its delivery id");
    assert_eq!(all[0].body, all[1].body);
    for d in &all {
        assert_eq!(
            d.signature,
            format!("sha256={}", hmac_hex("hook-key", &d.body)),
            "{}",
            d.event
        );
        let json: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(json["event"], d.event.as_str());
        assert_eq!(json["subject"], "site/home");
    }

    // A quick agent restart: disconnect and connect, but no site_offline.
    let mut agent = agent;
    agent.signal(15);
    agent
        .wait_exit(Duration::from_secs(10))
        .expect("the agent exits on SIGTERM");
    let agent2 = edge.start_agent("agent2", "tcp", &[&allow]);
    wait_for(&got, "agent_disconnected", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        !events(&got).contains(&"site_offline".to_owned()),
        "{:?}",
        events(&got)
    );
    assert_eq!(
        events(&got).iter().filter(|e| *e == "site_online").count(),
        1
    );

    // Gone for longer than the debounce: site_offline, once.
    let mut agent2: Process = agent2;
    let gone = Instant::now();
    agent2.signal(15);
    agent2
        .wait_exit(Duration::from_secs(10))
        .expect("the agent exits on SIGTERM");
    wait_for(&got, "site_offline", 1, Duration::from_secs(10)).await;
    assert!(
        gone.elapsed() >= Duration::from_secs(3),
        "offline sent before the debounce"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events(&got).iter().filter(|e| *e == "site_offline").count(),
        1
    );
}

#[test]
fn a_webhook_url_that_is_not_http_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = EdgeSpec::new().to_toml();
    toml += "[notify]\nwebhook = { url = \"ftp://example.com/x\" }\n";
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let out = std::process::Command::new(bin())
        .args(["edge", "--config", "edge.toml", "--check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("notify.webhook.url"), "{err}");
}

/// Starts an edge notifying `hook`, and one agent: its connection is the
/// first notice, `site_online` the second.
async fn edge_notifying(hook: std::net::SocketAddr) -> (EdgeProcess, Process, tempfile::TempDir) {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut toml = EdgeSpec::new().to_toml();
    toml += &format!("[notify]\nwebhook = {{ url = \"http://{hook}/hooks/warren\" }}\n");
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    (edge, agent, dir)
}

/// The deliveries of the notice with delivery id `id`.
fn attempts_of(got: &Arc<Mutex<Vec<Delivery>>>, id: &str) -> Vec<Delivery> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|d| d.id == id)
        .cloned()
        .collect()
}

/// A receiver that always fails gets 6 attempts of a notice, with the same
/// delivery id, 1 s apart doubling (at least 1, 2, 4, 8, 16 s), then none:
/// the edge logs it dropped and goes on to the next notice. Takes ~31 s:
/// the figures are the claim, so no shorter test setting stands in for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_gets_six_attempts_one_second_doubling_then_none() {
    let (hook, got) = receiver(usize::MAX).await;
    let (edge, _agent, _dir) = edge_notifying(hook).await;
    let dropped = edge
        .process
        .wait_log("notification_dropped", Duration::from_secs(120), |v| {
            v["event"] == "notification_dropped"
        });
    assert_eq!(dropped["notice"], "agent_connected", "{dropped}");
    // Deliveries go out in order from one task: the next notice's first
    // attempt comes after the last one of the dropped notice.
    wait_for(&got, "site_online", 1, Duration::from_secs(20)).await;
    let id = dropped["id"].as_str().expect("delivery id");
    let attempts = attempts_of(&got, id);
    assert_eq!(attempts.len(), 6, "{:?}", events(&got));
    assert!(attempts
        .iter()
        .all(|d| d.event == "agent_connected" && d.body == attempts[0].body));
    for (i, pair) in attempts.windows(2).enumerate() {
        let waited = pair[1].at - pair[0].at;
        let backoff = Duration::from_secs(1 << i);
        assert!(
            waited >= backoff,
            "attempt {} came {waited:?} after attempt {}, before its {backoff:?} backoff",
            i + 2,
            i + 1
        );
    }
}

/// A receiver that fails twice and then accepts gets exactly 3 attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_recovers_gets_no_attempt_after_its_first_success() {
    let (hook, got) = receiver(2).await;
    let (_edge, _agent, _dir) = edge_notifying(hook).await;
    // The next notice goes out only once the first is done with.
    wait_for(&got, "site_online", 1, Duration::from_secs(20)).await;
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(first.event, "agent_connected");
    let attempts = attempts_of(&got, &first.id);
    assert_eq!(attempts.len(), 3, "{:?}", events(&got));
    let online = got.lock().unwrap()[3].clone();
    assert_eq!(online.event, "site_online");
    assert_eq!(attempts_of(&got, &online.id).len(), 1);
}
