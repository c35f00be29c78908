//! Keep-alive connections from the edge to http origins: reused across
//! requests and clients, never after the origin closed them, dropped when
//! idle, and never for WebSocket.

mod common;
mod web;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_testkit::{http_backend, ResourceSpec};
use web::start;

fn idle_connections(web: &web::Web) -> u64 {
    web.edge.admin_get("/api/v1/resources")[0]["targets"][0]["idle_connections"]
        .as_u64()
        .expect("idle_connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_origin_connection_serves_many_clients_in_turn_and_expires_when_idle() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    for i in 0..20 {
        // Each curl is a new client connection (and TLS handshake) to the edge.
        let r = web.curl("app.test", &format!("/n/{i}"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(app.requests.load(Ordering::Relaxed), 20);
    assert_eq!(
        app.connections.load(Ordering::Relaxed),
        1,
        "twenty sequential requests should share one origin connection"
    );
    assert_eq!(idle_connections(&web), 1);
    // Nothing is charged to the agent while the connection only waits.
    web.edge.wait_streams_closed();
    // Expired after the idle timeout (4 s) and the next sweep.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while idle_connections(&web) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle connection kept past its timeout"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = web.curl("app.test", "/after", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.connections.load(Ordering::Relaxed), 2);
}

/// An origin that closes each connection shortly after answering (as one
/// with a short keep-alive timeout does): no request may land on a closed
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_origin_closed_is_never_reused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                // Keep-alive by HTTP/1.1 default, then closed anyway.
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        }
    });
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", origin)],
        &[origin],
    );
    for i in 0..5 {
        let r = web.curl("app.test", &format!("/{i}"), &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_open_parallel_connections_and_websocket_is_never_pooled() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    // Eight slow downloads at once need eight connections, all kept after.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = format!("https://app.test:{}/download/4194304", web.https().port());
        let (ca, port) = (web.ca.clone(), web.https().port());
        tasks.push(tokio::spawn(async move {
            let out = tokio::process::Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--limit-rate",
                    "4M",
                ])
                .arg("--cacert")
                .arg(ca)
                .arg("--resolve")
                .arg(format!("app.test:{port}:127.0.0.1"))
                .arg(url)
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "200");
    }
    assert_eq!(app.connections.load(Ordering::Relaxed), 8);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(idle_connections(&web), 8);

    // A WebSocket takes its own connection and does not return it.
    let before = app.connections.load(Ordering::Relaxed);
    let r = web
        .curl(
            "app.test",
            "/ws",
            &[
                "--http1.1",
                "-H",
                "Connection: Upgrade",
                "-H",
                "Upgrade: websocket",
                "-H",
                "Sec-WebSocket-Version: 13",
                "-H",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "--max-time",
                "1",
            ],
        )
        .await;
    assert_eq!(r.status, 101, "{}", r.body);
    assert_eq!(app.connections.load(Ordering::Relaxed), before + 1);
    assert_eq!(idle_connections(&web), 8);
}
