//! The edge with a policy: default deny. A resource marked `auth = "public"`
//! is open to anyone; any other only as grants allow a principal, and
//! visitors carry no identity yet, so they are refused, logged and counted.
//! Without a policy the edge says at start that every resource is open.

mod common;
mod web;

use common::{bin, echo_ok};
use warren_testkit::{echo_tcp, http_backend, EdgeProcess, EdgeSpec, ResourceSpec};

const POLICY: &str = r#"
[groups]
"group:ops" = ["alice@corp.com"]

[[grants]]
src = ["group:ops"]
dst = ["private"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_policy_only_public_resources_are_open_to_anonymous_visitors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let echo = echo_tcp().await;
    let mut spec = EdgeSpec::new()
        .resource(ResourceSpec::tcp("public", "home", echo).with("auth = \"public\""))
        .resource(ResourceSpec::tcp("private", "home", echo));
    spec.policy_file = Some("policy.toml".into());
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let loaded = edge.process.wait_event("policy_loaded");
    assert_eq!(loaded["grants"], 1, "{loaded}");
    assert_eq!(loaded["public"], 1, "{loaded}");
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);

    echo_ok(edge.resource_addr("public"), b"hello")
        .await
        .expect("a public resource is open");
    let refused = echo_ok(edge.resource_addr("private"), b"hello").await;
    assert!(
        refused.is_err(),
        "an anonymous visitor reached a private resource"
    );
    let denied = edge.process.wait_event("access_denied");
    assert_eq!(denied["resource"], "private", "{denied}");
    assert_eq!(
        edge.metrics()
            .get(r#"warren_edge_access_denied_total{resource="private"}"#)
            .map(String::as_str),
        Some("1")
    );
    // The live policy, read back and explained by the command line.
    let live = edge.admin_get("/api/v1/policy");
    assert_eq!(live["text"], POLICY);
    let out = std::process::Command::new(bin())
        .args([
            "policy",
            "explain",
            "--src",
            "alice@corp.com",
            "--dst",
            "private:22",
        ])
        .args(["--api", &format!("http://{}", edge.admin)])
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "alice@corp.com -> private:22 (tcp): ALLOWED by grants[0]",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing was opened towards the site for it.
    assert!(
        edge.process
            .events("stream_refused")
            .iter()
            .all(|e| e["resource"] != "private"),
        "a denied connection reached the site"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_the_edge_says_every_resource_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let spec = EdgeSpec::new().resource(ResourceSpec::tcp("private", "home", echo));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let said = edge.process.wait_event("policy_none");
    assert!(
        said["message"]
            .as_str()
            .is_some_and(|m| m.contains("every resource is open")),
        "{said}"
    );
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    echo_ok(edge.resource_addr("private"), b"hello")
        .await
        .expect("without a policy, resources are open");
    let (status, body) = edge.admin_request("GET", "/api/v1/policy", None, edge.token.as_deref());
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("no_policy")),
        "{body}"
    );
}

#[test]
fn a_bad_policy_file_is_refused_with_the_config_every_error_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\nsrc = [\"group:nope\"]\ndst = [\"tag:web\"]\n",
    )
    .unwrap();
    let mut spec = EdgeSpec::new();
    spec.policy_file = Some("policy.toml".into());
    std::fs::write(dir.path().join("edge.toml"), spec.to_toml()).unwrap();
    let out = std::process::Command::new(bin())
        .args(["edge", "--config", "edge.toml", "--check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for line in [
        "grants[0].src[0]: group \"group:nope\" is not defined in [groups]",
        "grants[0].dst[0]: tag \"tag:web\" has no owner: declare it in [tags]",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
}

/// Over HTTP a denial is a 403 page naming the resource (nothing internal),
/// recorded in the access log as `"access": "denied"`; a public resource on
/// the same edge answers, with `"access": "public"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_to_a_private_resource_gets_a_403_and_is_logged_denied() {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), POLICY).unwrap();
    let mut spec = web::web_spec(
        vec![
            ResourceSpec::http("www", "app.test", "home", live.addr).with("auth = \"public\""),
            ResourceSpec::http("private", "api.test", "home", live.addr),
        ],
        dir.path(),
    );
    spec.policy_file = Some("policy.toml".into());
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let web = web::Web {
        ca: dir.path().join("cert.pem"),
        edge,
        agent,
        dir,
    };
    let open = web.curl("app.test", "/", &[]).await;
    assert_eq!(open.status, 200, "{}", open.body);
    let denied = web.curl("api.test", "/", &[]).await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.body.contains(
            "`private` is not open to you: it is open only to signed-in users, and it offers no sign-in here"
        ),
        "{}",
        denied.body
    );
    assert!(
        !denied.body.contains(&live.addr.to_string()),
        "{}",
        denied.body
    );
    let path = web.dir.path().join("access.log");
    common::within("two access log lines", || async {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    let log = std::fs::read_to_string(&path).unwrap();
    let access: Vec<(String, String)> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["resource"].as_str().unwrap_or("").to_owned(),
                v["access"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        access.contains(&("www".into(), "public".into())),
        "{access:?}"
    );
    assert!(
        access.contains(&("private".into(), "denied".into())),
        "{access:?}"
    );
}

/// A reload (SIGHUP) applies a changed policy file at once, and refuses a
/// broken one with its errors while the policy before it goes on deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_changed_policy_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let echo = echo_tcp().await;
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("private", "home", echo));
    spec.policy_file = Some("policy.toml".into());
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    edge.process.wait_event("policy_loaded");

    let changed = POLICY.replace("dst = [\"private\"]", "dst = [\"private:22\"]");
    std::fs::write(&policy, &changed).unwrap();
    edge.process.signal(1);
    edge.process.wait_event("config_reloaded");
    let live = edge.admin_get("/api/v1/policy");
    assert_eq!(live["text"], changed.as_str());
    assert_eq!(
        (&live["source"], &live["version"]),
        (&serde_json::json!("file"), &serde_json::json!(2))
    );
    // The file's changes are versions too, with their diff; the API cannot
    // change a policy the file names.
    let history = edge.admin_get("/api/v1/policy/versions");
    let actors: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["actor"].as_str().unwrap(), v["source"].as_str().unwrap()))
        .collect();
    assert_eq!(actors, [("config-file", "file"), ("config-file", "file")]);
    let audit = edge.admin_get("/api/v1/audit?limit=1000");
    let diff = audit
        .as_array()
        .unwrap()
        .iter()
        .rfind(|r| r["object"] == "policy")
        .map(|r| r["after"]["diff"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(
        diff.contains("-dst = [\"private\"]\n+dst = [\"private:22\"]\n"),
        "{diff}"
    );
    let body = serde_json::json!({ "text": POLICY }).to_string();
    let (status, refused) =
        edge.admin_request("PUT", "/api/v1/policy", Some(&body), edge.token.as_deref());
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("managed_by_file")),
        "{refused}"
    );

    std::fs::write(
        &policy,
        "[[grants]]\nsrc = [\"group:nope\"]\ndst = [\"x\"]\n",
    )
    .unwrap();
    edge.process.signal(1);
    let refused = edge
        .process
        .wait_log("reload_refused", warren_testkit::EVENT_TIMEOUT, |v| {
            v["event"] == "reload_refused"
        });
    assert!(
        refused.to_string().contains("group:nope"),
        "the refusal names the policy's error: {refused}"
    );
    assert_eq!(
        edge.admin_get("/api/v1/policy")["text"],
        changed.as_str(),
        "the policy before the broken one still decides"
    );

    // Taking `[policy]` out of the file does not reopen the edge: the last
    // version stays live, now changed through the API.
    let toml = std::fs::read_to_string(dir.path().join("edge.toml")).unwrap();
    let without = toml.replace("[policy]\nfile = \"policy.toml\"\n", "");
    assert_ne!(without, toml);
    std::fs::write(dir.path().join("edge.toml"), without).unwrap();
    edge.process.signal(1);
    edge.process
        .wait_event_nth("config_reloaded", 1, warren_testkit::EVENT_TIMEOUT);
    let live = edge.admin_get("/api/v1/policy");
    assert_eq!(
        (live["text"].as_str(), &live["source"]),
        (Some(changed.as_str()), &serde_json::json!("api"))
    );
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let refused = echo_ok(edge.resource_addr("private"), b"hello").await;
    assert!(
        refused.is_err(),
        "the edge reopened when [policy] left the file"
    );
    let denied = edge.process.wait_event("access_denied");
    assert_eq!(denied["resource"], "private", "{denied}");
}
