//! Getting past the sign-in without signing in, through the real edge and
//! curl: path tricks against a resource's bypass and deny rules (dot
//! segments, encodings, doubled slashes, prefixes that are not segments),
//! host tricks (case, a trailing dot, a Host naming another resource than
//! the TLS name or the request line, two Host headers, HTTP/1.1 and
//! HTTP/2), and header tricks (a forwarded client address, rewrite headers,
//! a forged cookie among several). Every one must end where a visitor
//! without a session ends: never at the origin.

mod common;
mod web;

use serde_json::json;
use warren_testkit::{http_backend, EdgeProcess, ResourceSpec};
use web::browser::{user_add, Browser, AUTH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_host_or_header_trick_gets_past_the_sign_in() {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = web::web_spec(
        vec![
            ResourceSpec::http("app", "api.test", "home", live.addr).with(
                "rules = [{ action = \"deny\", path = \"/admin\" }, \
                 { action = \"bypass\", path = \"/public\" }, \
                 { action = \"bypass\", path = \"/internal\", cidr = [\"10.0.0.0/8\"] }]",
            ),
            ResourceSpec::http("open", "other.app.test", "home", live.addr)
                .with("auth = \"public\""),
        ],
        dir.path(),
    );
    let toml = format!("{}\n[auth]\nhost = \"{AUTH}\"\n", spec.to_toml());
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(common::bin(), dir.path());
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let port = edge.https.unwrap().port();
    let ca = dir.path().join("cert.pem");
    let (status, body) = edge.admin_request(
        "PUT",
        "/api/v1/policy",
        Some(
            &json!({ "text": "[[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"app\"]\n" })
                .to_string(),
        ),
        edge.token.as_deref(),
    );
    assert_eq!(status, 200, "{body}");
    user_add(&edge, dir.path(), "alice@corp.com", "correct horse battery");

    let anon = Browser::new(dir.path(), "anon", ca.clone(), port);
    let origin_reached = |body: &str| body.contains("\"name\":\"live\"");
    // The bypass is the rule's path and what is under it, nothing else.
    let public = anon.get(&anon.url("api.test", "/public/page"), &[]).await;
    assert_eq!(
        public.status, 200,
        "the bypass itself works: {}",
        public.body
    );
    for path in [
        "/public/../secret",
        "/public/%2E%2E/secret",
        "/public/%2e%2e/secret",
        "/public/..%2Fsecret",
        "/public%2F..%2Fsecret",
        "/public\\..\\secret",
        "/publicity",
        "/public;/../secret",
        "/PUBLIC/../secret",
        "/internal/x",
    ] {
        let got = anon
            .get(&anon.url("api.test", path), &["--path-as-is"])
            .await;
        assert!(
            !origin_reached(&got.body) && [400, 401].contains(&got.status),
            "{path}: {} {}",
            got.status,
            got.body
        );
    }
    // A forwarded address is not the client's: the CIDR bypass holds.
    for header in [
        "X-Forwarded-For: 10.0.0.5",
        "X-Real-IP: 10.0.0.5",
        "Forwarded: for=10.0.0.5",
        "X-Original-URL: /public/page",
        "X-Rewrite-URL: /public/page",
    ] {
        let got = anon
            .get(&anon.url("api.test", "/internal/x"), &["-H", header])
            .await;
        assert_eq!(got.status, 401, "{header}: {}", got.body);
    }

    // Host tricks, over HTTP/1.1 and HTTP/2.
    for version in ["--http1.1", "--http2"] {
        for (url, extra) in [
            // Case and a trailing dot name the same resource: still locked.
            (format!("https://API.TEST:{port}/secret"), vec![]),
            (format!("https://api.test.:{port}/secret"), vec![]),
            // The TLS name is the public resource's, the Host the locked
            // one's (and the other way round): refused, never served.
            (
                format!("https://other.app.test:{port}/secret"),
                vec!["-H".to_owned(), format!("Host: api.test:{port}")],
            ),
            (
                format!("https://api.test:{port}/secret"),
                vec!["-H".to_owned(), format!("Host: other.app.test:{port}")],
            ),
        ] {
            let mut args: Vec<&str> = vec![version];
            args.extend(extra.iter().map(String::as_str));
            let got = anon.get(&url, &args).await;
            assert!(
                !origin_reached(&got.body),
                "{version} {url} {extra:?}: {} {}",
                got.status,
                got.body
            );
        }
    }
    // The request line names the locked resource, Host the public one.
    let got = anon
        .get(
            &format!("https://other.app.test:{port}/"),
            &[
                "--http1.1",
                "--request-target",
                &format!("https://api.test:{port}/secret"),
            ],
        )
        .await;
    assert_eq!(got.status, 400, "{}", got.body);
    // Two Host headers, and no Host: attacks.rs (raw bytes; curl sends one).
    // A forged session cookie beside a made-up one, in two Cookie headers.
    let got = anon
        .get(
            &anon.url("api.test", "/secret"),
            &[
                "-H",
                "Cookie: __Host-warren_session=eyJzaWQiOiJ4In0.AAAA",
                "-H",
                "Cookie: __Host-warren_session=x; __Host-warren_pass=y",
            ],
        )
        .await;
    assert_eq!(got.status, 401, "{}", got.body);

    // Signed in, the deny rule holds however /admin is spelled.
    let alice = Browser::new(dir.path(), "alice", ca.clone(), port);
    let (page, _) = alice
        .sign_in("/", "alice@corp.com", "correct horse battery")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    for path in [
        "/admin",
        "/admin/",
        "/admin/x",
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/admin%2Fx",
        "/admin;x=1",
        "/admin/.",
    ] {
        let got = alice
            .get(&alice.url("api.test", path), &["--path-as-is"])
            .await;
        assert!(
            [400, 403].contains(&got.status) && !origin_reached(&got.body),
            "{path}: {} {}",
            got.status,
            got.body
        );
    }
    let fine = alice
        .get(&alice.url("api.test", "/administrator"), &[])
        .await;
    assert_eq!(fine.status, 200, "a prefix is whole segments");
}
