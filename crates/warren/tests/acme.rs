//! Automatic certificates from a real ACME server: Debian's `pebble`,
//! started by the test, validating HTTP-01 on the edge's `http_listen` and
//! TLS-ALPN-01 on its `https_listen`. curl then trusts only pebble's root.
//!
//! Pebble needs the edge's ports in its config before it starts, and the
//! edge needs pebble's directory before it starts, so the edge's two ports
//! are picked free first (`free_tcp_ports`) and given to both.

mod common;
mod web;

use common::bin;
use std::time::{Duration, Instant};
use warren_testkit::{
    free_tcp_ports, http_backend, pebble_installed, EdgeProcess, EdgeSpec, Pebble, ResourceSpec,
};
use web::Web;

/// Skips (see `warren_testkit::skip`: counted, and a failure with `CI`
/// set) where pebble is missing.
fn require_pebble() -> bool {
    if pebble_installed() {
        return true;
    }
    warren_testkit::skip("Debian's pebble is not installed (apt-get install pebble)");
    false
}

fn acme_spec(pebble: &Pebble, https: u16, http: Option<u16>) -> EdgeSpec {
    let mut spec = EdgeSpec::new();
    spec.edge_extra = format!("https_listen = \"127.0.0.1:{https}\"\n");
    if let Some(http) = http {
        spec.edge_extra += &format!("http_listen = \"127.0.0.1:{http}\"\n");
    }
    spec.tls = format!(
        "acme = {{ email = \"ops@example.test\", directory = \"{}\", ca = \"{}\" }}",
        pebble.directory,
        pebble.server_ca.display()
    );
    spec
}

/// curl `https://host/` through the edge, trusting only pebble's root, and
/// how long it took.
/// Pebble validating against the edge ports it returns: (https, http).
fn pebble_for_edge_ports(dir: &std::path::Path) -> (Pebble, u16, u16) {
    let ports = free_tcp_ports(2);
    let (https, http) = (ports[0], ports[1]);
    (Pebble::start(dir, http, https), https, http)
}

async fn timed_get(web: &Web, host: &str) -> (web::Reply, Duration) {
    let started = Instant::now();
    let reply = web.curl(host, "/first", &[]).await;
    (reply, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificates_from_pebble_at_start_on_first_need_and_after_restart() {
    if !require_pebble() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pebble, https, http) = pebble_for_edge_ports(dir.path());
    let app = http_backend("app").await;
    let spec = acme_spec(&pebble, https, Some(http))
        .resource(ResourceSpec::http("app", "app.test", "home", app.addr));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", app.addr)]);
    let mut web = Web {
        edge,
        agent,
        ca: pebble.roots_pem.clone(),
        dir,
    };

    // At start: the edge orders app.test; the first request waits for it if
    // the order is still running.
    let (r, took) = timed_get(&web, "app.test").await;
    assert_eq!(
        (r.exit, r.status),
        (0, 200),
        "{}\n{}",
        r.body,
        pebble.log(web.dir.path())
    );
    assert_eq!(r.json()["name"], "app");
    eprintln!("app.test (issued at start): first request answered in {took:?}");
    let issued = web.edge.process.wait_event("certificate_issued");
    assert_eq!(issued["host"], "app.test");

    // On first need: a host published by a reload gets its certificate
    // during the first handshake that asks for it.
    let spec = spec.resource(ResourceSpec::http("new", "new.test", "home", app.addr));
    std::fs::write(web.dir.path().join("edge.toml"), spec.to_toml()).unwrap();
    web.edge.process.signal(1);
    web.edge.process.wait_event("config_reloaded");
    let (r, took) = timed_get(&web, "new.test").await;
    assert_eq!((r.exit, r.status), (0, 200), "{}", r.body);
    eprintln!("new.test (first need): first request answered in {took:?}");
    let hosts: Vec<_> = web
        .edge
        .process
        .events("certificate_issued")
        .iter()
        .map(|e| e["host"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(hosts, ["app.test", "new.test"], "one order per host");

    // Stored in data_dir: a restarted edge serves both without a new order,
    // and the key file is private.
    let key = web.dir.path().join("data/acme/certs/app.test.key");
    let mode = std::fs::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
        0,
        "key readable by others"
    );

    // Renewal: restarted with a renewal window longer than the certificates'
    // life, the edge renews both at start, and serves the new ones.
    let mut spec = spec;
    spec.tls = spec.tls.replace(" }", ", renew_before = \"36500d\" }");
    let agent_allow = format!("{}/tcp", app.addr);
    let restart = |web: &mut Web, spec: &EdgeSpec| {
        web.edge.process.signal(15);
        web.edge
            .process
            .wait_exit(Duration::from_secs(10))
            .expect("the edge exits on SIGTERM");
        web.edge = EdgeProcess::start(bin(), web.dir.path(), spec);
        web.edge.start_agent("agent", "tcp", &[&agent_allow])
    };
    let old_pem =
        std::fs::read_to_string(web.dir.path().join("data/acme/certs/app.test.crt")).unwrap();
    web.agent = restart(&mut web, &spec);
    for nth in 0..2 {
        let e = web
            .edge
            .process
            .wait_event_nth("certificate_issued", nth, Duration::from_secs(20));
        assert_eq!(e["renewal"], true, "{e}");
    }
    let new_pem =
        std::fs::read_to_string(web.dir.path().join("data/acme/certs/app.test.crt")).unwrap();
    assert_ne!(old_pem, new_pem, "renewal stored a new chain");
    let r = web.curl("app.test", "/", &[]).await;
    assert_eq!((r.exit, r.status), (0, 200), "{}", r.body);

    // Stored in data_dir: with the CA gone and the default window, a
    // restarted edge serves both without any order.
    drop(pebble);
    spec.tls = spec.tls.replace(", renew_before = \"36500d\"", "");
    web.agent = restart(&mut web, &spec);
    for host in ["app.test", "new.test"] {
        let r = web.curl(host, "/", &[]).await;
        assert_eq!((r.exit, r.status), (0, 200), "{host}: {}", r.body);
    }
    assert!(web.edge.process.events("certificate_issued").is_empty());
    assert!(web.edge.process.events("certificate_failed").is_empty());
}

/// A CA that cannot be reached: the first handshake for the host waits for
/// the failed order and is closed (no certificate, no hang); the failure is
/// logged with its backoff, and the next handshakes inside the backoff do
/// not reach for the CA again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ca_fails_the_handshake_and_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_tcp_ports(1)[0];
    let app = http_backend("app").await;
    let mut spec = EdgeSpec::new();
    spec.edge_extra = "https_listen = \"127.0.0.1:0\"\n".into();
    spec.tls = format!("acme = {{ directory = \"https://127.0.0.1:{dead}/dir\" }}");
    let spec = spec.resource(ResourceSpec::http("app", "down.test", "home", app.addr));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let failed = edge.process.wait_event("certificate_failed");
    assert_eq!(failed["host"], "down.test");
    assert_eq!(failed["retry_in_s"], 60);
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", app.addr)]);
    let web = Web {
        edge,
        agent,
        ca: dir.path().join("none.pem"),
        dir,
    };
    std::fs::write(&web.ca, warren_testkit::self_signed(&["x"]).0).unwrap();
    for _ in 0..3 {
        let r = web.curl("down.test", "/", &["--max-time", "10"]).await;
        assert_ne!(r.exit, 0, "no certificate, no TLS: {}", r.body);
        assert_eq!(r.status, 0);
    }
    assert_eq!(
        web.edge.process.events("certificate_failed").len(),
        1,
        "handshakes inside the backoff must not order again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_certificate_from_pebble_without_http_listen() {
    if !require_pebble() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let https = free_tcp_ports(1)[0];
    // No http_listen: HTTP-01 is impossible, so the order must use
    // TLS-ALPN-01 on the shared HTTPS port. Pebble's HTTP-01 port points
    // at a closed port to prove it.
    let closed = free_tcp_ports(1)[0];
    let pebble = Pebble::start(dir.path(), closed, https);
    let app = http_backend("app").await;
    let spec = acme_spec(&pebble, https, None).resource(ResourceSpec::http(
        "app",
        "alpn.test",
        "home",
        app.addr,
    ));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", app.addr)]);
    let web = Web {
        edge,
        agent,
        ca: pebble.roots_pem.clone(),
        dir,
    };
    let (r, took) = timed_get(&web, "alpn.test").await;
    assert_eq!(
        (r.exit, r.status),
        (0, 200),
        "{}\n{}",
        r.body,
        pebble.log(web.dir.path())
    );
    eprintln!("alpn.test: first request answered in {took:?}");
    assert_eq!(
        web.edge.process.wait_event("certificate_issued")["host"],
        "alpn.test"
    );
}

/// A wildcard http resource with ACME: handshakes for random names under it
/// order nothing (each would be an order at the CA, burning the account's
/// limits); the edge closes them, saying why, and the CA sees no order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_names_under_a_wildcard_order_no_certificate() {
    if !require_pebble() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pebble, https, http) = pebble_for_edge_ports(dir.path());
    let app = http_backend("app").await;
    let spec = acme_spec(&pebble, https, Some(http)).resource(ResourceSpec::http(
        "apps",
        "*.apps.test",
        "home",
        app.addr,
    ));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let roots = std::fs::read_to_string(&pebble.roots_pem).unwrap();
    let tls = web::client_tls_trusting(&roots, &[b"http/1.1"]);
    let names = 20;
    for i in 0..names {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https))
            .await
            .unwrap();
        let name = format!("r{i}x{}.apps.test", std::process::id());
        let done = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name.clone().try_into().unwrap(), tcp)
            .await;
        assert!(
            done.is_err(),
            "{name}: a handshake completed without a certificate"
        );
    }
    let deadline = Instant::now() + warren_testkit::EVENT_TIMEOUT;
    while edge.process.events("tls_no_certificate").len() < names {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            edge.process.events("tls_no_certificate")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ordered: Vec<_> = edge
        .process
        .logs()
        .into_iter()
        .filter(|l| {
            l["host"]
                .as_str()
                .is_some_and(|h| h.ends_with(".apps.test"))
                && (l["event"] == "certificate_issued" || l["event"] == "certificate_failed")
        })
        .collect();
    assert!(ordered.is_empty(), "orders for random names: {ordered:?}");
}
