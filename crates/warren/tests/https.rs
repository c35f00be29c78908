//! HTTPS edge: terminated http resources (routing, headers, HTTP/2,
//! redirects, big bodies, WebSocket) and tls passthrough with PROXY headers,
//! through the real tunnel to real origins.

mod common;
mod web;

use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use warren_testkit::{http_backend, pattern, random_bytes, tls_backend, ResourceSpec};
use web::{client_tls_trusting, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_and_sets_forwarding_headers() {
    let app = http_backend("app").await;
    let api = http_backend("api").await;
    let web = start(
        vec![
            ResourceSpec::http("app", "app.test", "home", app.addr),
            ResourceSpec::http("api", "app.test", "home", api.addr).with("path = \"/api\""),
            ResourceSpec::http("other", "api.test", "home", api.addr),
        ],
        &[app.addr, api.addr],
    );
    let r = web
        .curl(
            "app.test",
            "/hello?x=1",
            &[
                "-H",
                "X-Forwarded-For: 6.6.6.6",
                "-H",
                "Forwarded: for=6.6.6.6",
                "-H",
                "X-Real-IP: 6.6.6.6",
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["name"], "app");
    assert_eq!(j["path"], "/hello?x=1");
    let h = &j["headers"];
    assert_eq!(
        h["x-forwarded-for"],
        serde_json::json!(["127.0.0.1"]),
        "{h}"
    );
    assert_eq!(h["x-real-ip"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["https"]));
    let port = web.https().port();
    assert_eq!(
        h["x-forwarded-host"],
        serde_json::json!([format!("app.test:{port}")])
    );
    assert_eq!(
        h["forwarded"],
        serde_json::json!([format!(
            "for=127.0.0.1;proto=https;host=\"app.test:{port}\""
        )])
    );
    // Longest prefix on segment boundaries; normalised paths route and travel as matched.
    for (path, name, seen) in [
        ("/api", "api", "/api"),
        ("/api/v1/x", "api", "/api/v1/x"),
        ("/apix", "app", "/apix"),
        ("/api/../admin", "app", "/admin"),
        ("//api//y", "api", "/api/y"),
    ] {
        let r = web.curl("app.test", path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["name"], name, "{path}");
        assert_eq!(r.json()["path"], seen, "{path}");
    }
    // A dot segment written with escapes is only ever an attack: refused
    // (attacks.rs has the rest of that family).
    for path in ["/%2e%2e/api/x", "/public/%2E%2E/api/z"] {
        let r = web.curl("app.test", path, &[]).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("escaped dot segment"), "{path}: {}", r.body);
    }
    // HTTP/2 from the client, HTTP/1.1 to the origin.
    let r = web.curl("app.test", "/h2", &["--http2"]).await;
    assert_eq!((r.status, r.version.as_str()), (200, "2"), "{}", r.body);
    // A second name on the same certificate reaches its own resource.
    assert_eq!(web.curl("api.test", "/", &[]).await.json()["name"], "api");
    // Host not matching the SNI: 421.
    let r = web.curl("app.test", "/", &["-H", "Host: api.test"]).await;
    assert_eq!(r.status, 421, "{}", r.body);
    // A name nobody publishes: the TLS connection is closed (no certificate, no page).
    let r = web.curl("nobody.test", "/", &["-k"]).await;
    assert_ne!(r.exit, 0);
    assert_eq!(r.status, 0);
    // A published host without the path: 404 page.
    let only_api = web.curl("api.test", "/", &[]).await;
    assert_eq!(only_api.status, 200);
    // Plain HTTP redirects to HTTPS with 308, keeping path and query.
    let http = web.edge.http.expect("http listener");
    let r = web
        .curl_url(
            "app.test",
            http.port(),
            &format!("http://app.test:{}/a/b?c=d", http.port()),
            &["-D", "-"],
        )
        .await;
    assert_eq!(r.status, 308, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("location: https://app.test:{port}/a/b?c=d")),
        "{}",
        r.body
    );
    let r = web
        .curl_url(
            "nobody.test",
            http.port(),
            &format!("http://nobody.test:{}/", http.port()),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    // The access log has a line per proxied request.
    let log = std::fs::read_to_string(web.dir.path().join("access.log")).unwrap_or_default();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["path"] == "/hello")
        .unwrap_or_else(|| panic!("no access log line for /hello: {log}"));
    assert_eq!(line["resource"], "app");
    assert_eq!(line["status"], 200);
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert_eq!(line["upstream"], app.addr.to_string());
    assert!(line["bytes"].as_u64().unwrap() > 0 && line["agent"].as_str().is_some());
    // It passed the access phase, which says the resource is open to all;
    // it ended at the origin, not at the edge.
    assert_eq!(line["access"], "open", "{line}");
    assert!(line.get("error_source").is_none(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_up_and_down_with_checksums() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    let size = 64 * 1024 * 1024;
    let data = random_bytes(size);
    let file = web.dir.path().join("upload.bin");
    std::fs::write(&file, &data).unwrap();
    let r = web
        .curl(
            "app.test",
            "/upload",
            &[
                "--data-binary",
                &format!("@{}", file.display()),
                "-H",
                "Content-Type: application/octet-stream",
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["len"], size as u64);
    assert_eq!(r.json()["sha256"], hex_sha(&data));
    let out = web.dir.path().join("download.bin");
    let r = web
        .curl(
            "app.test",
            &format!("/download/{size}"),
            &["-o", out.to_str().unwrap()],
        )
        .await;
    assert_eq!(r.status, 200);
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), size);
    let expected: Vec<u8> = (0..size as u64).map(pattern).collect();
    assert_eq!(hex_sha(&got), hex_sha(&expected));
}

fn hex_sha(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_tunnel() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    let tcp = tokio::net::TcpStream::connect(web.https()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(web.client_tls())
        .connect("app.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://app.test:{}/ws", web.https().port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    for i in 0..20 {
        let msg = format!("message {i} {}", "x".repeat(i * 1000));
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
            .await
            .unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), msg);
    }
    ws.close(None).await.unwrap();
}

async fn passthrough(version: &str, expect: &str) {
    let vault = tls_backend("vault.test", true).await;
    let web = start(
        vec![ResourceSpec::tls("vault", "vault.test", "home", vault.addr)
            .with(&format!("proxy_protocol = \"{version}\""))],
        &[vault.addr],
    );
    let tcp = tokio::net::TcpStream::connect(web.https()).await.unwrap();
    let local = tcp.local_addr().unwrap();
    // Only the backend's own certificate is trusted: the edge cannot have terminated.
    let config = client_tls_trusting(&vault.cert_pem, &[]);
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect("vault.test".try_into().unwrap(), tcp)
        .await
        .expect("handshake with the backend itself");
    let seen = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    use rustls::pki_types::pem::PemObject;
    let theirs =
        rustls::pki_types::CertificateDer::from_pem_slice(vault.cert_pem.as_bytes()).unwrap();
    assert_eq!(seen, theirs);
    let mut line = String::new();
    tls.read_to_string(&mut line).await.ok();
    assert_eq!(line.trim(), format!("proxy={expect} client={local}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_passthrough_with_proxy_v2() {
    passthrough("v2", "V2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_passthrough_with_proxy_v1() {
    passthrough("v1", "V1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_targets_out_and_back_with_no_failed_request() {
    use std::sync::atomic::Ordering;
    let a = http_backend("a").await;
    let b = http_backend("b").await;
    let health = "health = { path = \"/status/health\", interval = \"200ms\", timeout = \"1s\", healthy_threshold = 1, unhealthy_threshold = 1 }\nbalance = \"round_robin\"\nfail_closed = true";
    let mut spec = ResourceSpec::http("app", "app.test", "home", a.addr).with(health);
    spec.targets.push(("home".into(), b.addr.to_string()));
    let web = start(vec![spec], &[a.addr, b.addr]);
    let names = |n: usize| {
        let web = &web;
        async move {
            let mut seen = Vec::new();
            for _ in 0..n {
                let r = web.curl("app.test", "/", &[]).await;
                assert_eq!(r.status, 200, "{}", r.body);
                seen.push(r.json()["name"].as_str().unwrap().to_owned());
            }
            seen
        }
    };
    web.agent.wait_event("plan_applied");
    assert!(names(6).await.contains(&"b".to_owned()));
    // b fails its check: out of rotation, and no request fails meanwhile.
    b.health_status.store(503, Ordering::Relaxed);
    web.edge
        .process
        .wait_log("b unhealthy", warren_testkit::EVENT_TIMEOUT, |v| {
            v["event"] == "target_unhealthy" && v["upstream"] == b.addr.to_string()
        });
    assert!(names(10).await.iter().all(|n| n == "a"));
    let status = web.edge.admin_get("/api/v1/resources");
    let targets = status[0]["targets"].as_array().unwrap();
    assert_eq!(targets[1]["health"], "unhealthy", "{status}");
    // A redirect (to a login page, say) counts as healthy and is not followed.
    b.health_status.store(302, Ordering::Relaxed);
    web.edge
        .process
        .wait_log("b healthy", warren_testkit::EVENT_TIMEOUT, |v| {
            v["event"] == "target_healthy" && v["upstream"] == b.addr.to_string()
        });
    assert!(names(6).await.contains(&"b".to_owned()));
    // Every target down and fail_closed: a clear 503 naming the resource, at once.
    a.health_status.store(500, Ordering::Relaxed);
    b.health_status.store(500, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + warren_testkit::EVENT_TIMEOUT;
    loop {
        let status = web.edge.admin_get("/api/v1/resources");
        let down = status[0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["health"] == "unhealthy");
        if down {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = web.curl("app.test", "/", &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("`app` has no healthy target"), "{}", r.body);
}

use rustls::client::danger::ServerCertVerifier;

/// Verifies the server's certificate as valid for `host`, whatever name
/// the client sent (or did not send) as SNI: the check that the edge
/// presented its default host's certificate.
#[derive(Debug)]
struct ValidFor {
    inner: std::sync::Arc<rustls::client::WebPkiServerVerifier>,
    host: rustls::pki_types::ServerName<'static>,
}

impl ServerCertVerifier for ValidFor {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.host, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One HTTP/1.1 GET with `Host: host` over TLS to the edge, sending `sni`
/// (none: no SNI extension at all) and requiring a certificate valid for
/// `cert_for`. The status and body, or why there was none.
async fn get_with_sni(
    web: &web::Web,
    sni: Option<&str>,
    cert_for: &str,
    host: &str,
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::AsyncWriteExt;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&web.ca).unwrap();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let verifier = ValidFor {
        inner,
        host: rustls::pki_types::ServerName::try_from(cert_for.to_owned()).unwrap(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_sni = sni.is_some();
    let name = sni.unwrap_or(cert_for).to_owned();
    let tcp = tokio::net::TcpStream::connect(web.https()).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name.try_into().unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    tls.read_to_string(&mut resp)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {resp:?}"))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_host_answers_handshakes_with_no_or_an_unknown_sni() {
    let app = http_backend("app").await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = web::web_spec(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        dir.path(),
    );
    spec.tls += "\ndefault_host = \"app.test\"";
    let edge = warren_testkit::EdgeProcess::start(common::bin(), dir.path(), &spec);
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", app.addr)]);
    let web = web::Web {
        ca: dir.path().join("cert.pem"),
        edge,
        agent,
        dir,
    };
    // No SNI (a client that dialled the address): the default host's
    // certificate, and its resource serves the request.
    let (status, body) = get_with_sni(&web, None, "app.test", "app.test")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["name"],
        "app"
    );
    // An unknown SNI: the default host's certificate too, then the same
    // rules as any connection: a Host matching the SNI that nothing
    // publishes gets the 404 page, another Host a 421.
    let (status, body) = get_with_sni(&web, Some("unknown.test"), "app.test", "unknown.test")
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nothing is published"), "{body}");
    let (status, body) = get_with_sni(&web, Some("unknown.test"), "app.test", "app.test")
        .await
        .unwrap();
    assert_eq!(status, 421, "{body}");
    assert!(web.edge.process.events("tls_unknown_name").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_default_host_handshakes_with_no_or_an_unknown_sni_are_closed() {
    let app = http_backend("app").await;
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", app.addr)],
        &[app.addr],
    );
    // The published name works on this edge...
    let (status, _) = get_with_sni(&web, Some("app.test"), "app.test", "app.test")
        .await
        .unwrap();
    assert_eq!(status, 200);
    // ...but with no SNI or an unknown one, the connection is closed before
    // any certificate is shown.
    for sni in [None, Some("unknown.test")] {
        let r = get_with_sni(&web, sni, "app.test", "app.test").await;
        assert!(
            r.as_ref().is_err_and(|e| e.starts_with("handshake")),
            "{sni:?}: {r:?}"
        );
        web.edge
            .process
            .wait_log("tls_unknown_name", warren_testkit::EVENT_TIMEOUT, |v| {
                v["event"] == "tls_unknown_name" && v["sni"] == sni.unwrap_or("")
            });
    }
}

/// An agent that takes the edge's open and never answers: the visitor gets
/// a 504 (not a 502) once the open times out, and the edge names the tunnel
/// as who failed, in the page's status, the access log and the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_answers_an_open_is_a_504_from_the_tunnel() {
    use warren_transport::tls::{self, EdgeTrust};
    let dir = tempfile::tempdir().unwrap();
    let target: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let spec = web::web_spec(
        vec![ResourceSpec::http("app", "app.test", "home", target)],
        dir.path(),
    );
    let edge = warren_testkit::EdgeProcess::start(common::bin(), dir.path(), &spec);
    // Admitted with the site's secret; holds every stream the edge opens.
    let cfg = warren_transport::DialConfig {
        endpoint: warren_transport::Endpoint {
            host: "127.0.0.1".into(),
            port: edge.tunnel.port(),
        },
        tls: tls::client_config(&EdgeTrust::Pin(tls::parse_pin(&edge.pin).unwrap())).unwrap(),
        transport: warren_transport::TransportChoice::Tcp,
        hello: warren_proto::Hello {
            site_id: "home".into(),
            secret: spec.sites[0].1.as_str().into(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            platform: "test".into(),
            instance: "silent".into(),
        },
        protocol_version: warren_proto::PROTOCOL_VERSION,
        session: warren_proto::SessionConfig::default(),
        connect_timeout: std::time::Duration::from_secs(10),
    };
    let (link, _) = warren_transport::dial(&cfg).await.expect("admitted");
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(stream) = link.accept().await {
            held.push(stream);
        }
    });
    edge.process.wait_event("agent_connected");

    let port = edge.https.unwrap().port();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(dir.path().join("cert.pem"))
        .arg("--resolve")
        .arg(format!("app.test:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://app.test:{port}/slow"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert_eq!(status, "504", "{text}");
    // The page names the resource and a request id, nothing internal.
    assert!(body.contains("`app` did not answer in time"), "{body}");
    assert!(
        !body.contains("home") && !body.contains("127.0.0.1"),
        "{body}"
    );

    let metrics = edge.metrics();
    assert_eq!(
        metrics
            .get("warren_edge_http_errors_total{resource=\"app\",source=\"tunnel\"}")
            .map(String::as_str),
        Some("1"),
        "{metrics:?}"
    );
    let deadline = std::time::Instant::now() + warren_testkit::EVENT_TIMEOUT;
    let line = loop {
        let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
        let found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["path"] == "/slow");
        if let Some(line) = found {
            break line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line: {log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(line["status"], 504, "{line}");
    assert_eq!(line["error_source"], "tunnel", "{line}");
    // The operator finds the detail under the id the visitor was shown.
    let id = line["request_id"].as_str().unwrap();
    assert!(body.contains(&format!("(request {id})")), "{body} / {line}");
    assert!(
        line["error"].as_str().unwrap().contains("site `home`"),
        "{line}"
    );
    assert_eq!(line["access"], "open", "{line}");
    held.abort();
}

/// A target the agent refuses: the visitor learns the reason and a request
/// id, not the address; the edge learns the reason only (what it records
/// and shows); the detail stays in the agent's own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_tells_the_visitor_and_the_edge_the_reason_only() {
    let app = http_backend("app").await;
    let hidden: std::net::SocketAddr = "10.20.30.40:8080".parse().unwrap();
    let web = start(
        vec![ResourceSpec::http("app", "app.test", "home", hidden)],
        &[app.addr],
    );
    let r = web.curl("app.test", "/", &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains(
            "`app` could not be reached: the target is not on the agent's allowlist (request "
        ),
        "{}",
        r.body
    );
    assert!(!r.body.contains("10.20.30.40"), "{}", r.body);
    let on_edge = web.edge.process.wait_event("stream_refused");
    assert!(
        !on_edge.to_string().contains("is not on this agent"),
        "{on_edge}"
    );
    let sites = web.edge.admin_get("/api/v1/sites");
    let shown = sites[0]["last_refusal"].to_string();
    assert!(
        shown.contains("the target is not on the agent's allowlist"),
        "{shown}"
    );
    let on_agent = web.agent.wait_event("stream_refused");
    assert!(
        on_agent["message"]
            .as_str()
            .unwrap()
            .contains("10.20.30.40:8080/tcp"),
        "{on_agent}"
    );
}
