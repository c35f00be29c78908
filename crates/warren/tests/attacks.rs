//! The attack suite: hostile HTTP sent to a terminated resource. Every case
//! is refused with a status, or neutralised so the origin sees one clean,
//! re-framed request. Later issues add their attacks here.

mod common;
mod web;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_testkit::{http_backend, ResourceSpec};
use web::{start, Web};

/// Sends raw bytes over TLS (SNI app.test) and returns what came back
/// before the edge closed the connection or 5 s passed.
async fn raw(web: &Web, request: &[u8]) -> String {
    let tcp = tokio::net::TcpStream::connect(web.https()).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(web.client_tls())
        .connect("app.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_header_attacks_are_refused_or_neutralised() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    let host = format!("app.test:{}", web.https().port());
    let refused: Vec<(&str, String)> = vec![
        ("obs-fold", format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n")),
        ("Content-Length: +5", format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: +5\r\nConnection: close\r\n\r\nhello")),
        ("two different Content-Lengths", format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!")),
        ("absolute-form to another host", format!("GET https://evil.test/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")),
        ("two Host headers", format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: api.test\r\nConnection: close\r\n\r\n")),
        ("no Host", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned()),
        ("bad percent-escape", format!("GET /%zz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")),
    ];
    for (what, req) in refused {
        let resp = raw(&web, req.as_bytes()).await;
        assert_eq!(status_of(&resp), 400, "{what}: {resp}");
        assert!(
            !resp.contains("\"name\":\"app\""),
            "{what} reached the origin: {resp}"
        );
    }
    // Host vs SNI.
    let resp = raw(
        &web,
        b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 421, "{resp}");
    // Oversized headers: 431, nothing forwarded.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(80 * 1024)
    );
    let resp = raw(&web, big.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    // CL + TE and duplicate TE: the origin gets one request, framed by the edge.
    let before = app.requests.load(std::sync::atomic::Ordering::Relaxed);
    for req in [
        format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"),
    ] {
        let resp = raw(&web, req.as_bytes()).await;
        let status = status_of(&resp);
        assert!(status == 400 || status == 200, "{resp}");
        if status == 200 {
            let body = &resp[resp.find("\r\n\r\n").expect("a head and a body") + 4..];
            // The origin's echo of what it received: must be there, whole.
            let seen: serde_json::Value = serde_json::from_str(body.trim())
                .unwrap_or_else(|e| panic!("the origin's answer is not JSON ({e}): {resp}"));
            assert_eq!(seen["name"], "app", "{resp}");
            let h = seen["headers"].as_object().unwrap_or_else(|| panic!("no headers: {seen}"));
            assert!(!h.is_empty(), "{seen}");
            assert!(h.get("content-length").is_none() || h.get("transfer-encoding").is_none(), "both framings reached the origin: {seen}");
        }
        assert!(!resp.contains("/smuggled"), "{resp}");
    }
    let after = app.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        after - before <= 2,
        "the origin saw {} requests",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    let tcp = tokio::net::TcpStream::connect(web.https()).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(web.client_tls())
        .connect("app.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        // Keep dribbling a header byte now and then; the edge must still close.
        loop {
            let mut buf = [0u8; 1024];
            tokio::select! {
                n = tls.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    if tls.write_all(b"X-Slow: 1\r\n").await.is_err() { return; }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "connection still open after 30 s");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert_eq!(app.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// Paths some origins read differently than the edge's router never reach
/// the origin of a `/public` route: path parameters (Tomcat reads
/// `/public/..;/admin` as `/admin`), backslashes, escaped backslashes and
/// escaped dot segments are a 400; an escaped slash is a 400 unless the
/// resource keeps them for an origin that needs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_an_origin_could_read_differently_are_refused() {
    let public = http_backend("public").await;
    let files = http_backend("files").await;
    let web = start(
        vec![
            ResourceSpec::http("public", "app.test", "home", public.addr)
                .with("path = \"/public\""),
            ResourceSpec::http("files", "app.test", "home", files.addr)
                .with("path = \"/files\"\nencoded_slashes = \"keep\""),
        ],
        &[public.addr, files.addr],
    );
    let host = format!("app.test:{}", web.https().port());
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let before = public.requests.load(std::sync::atomic::Ordering::Relaxed);
    for path in [
        "/public/..;/admin",
        "/public;jsessionid=1/x",
        "/public\\..\\admin",
        "/public/%5c../admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
        "/public/a%2F..%2Fadmin",
    ] {
        let resp = raw(&web, get(path).as_bytes()).await;
        assert_eq!(status_of(&resp), 400, "{path}: {resp}");
        assert!(resp.contains("refused"), "{path}: {resp}");
    }
    assert_eq!(
        public.requests.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "a refused path reached the origin"
    );
    // Plain paths still pass; a resource that keeps escaped slashes gets them.
    let resp = raw(&web, get("/public/a.b/c").as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let resp = raw(&web, get("/files/a%2Fb").as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        resp.contains("/files/a%2Fb"),
        "the origin saw another path: {resp}"
    );
}
