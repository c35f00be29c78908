//! The policy through the API, against a real edge, agent, origin and curl:
//! a save decides the next request; a save whose tests fail, a broken
//! policy, a stale base or a policy that leaves a site's tag undeclared
//! changes nothing; every change is in the audit log with its diff; a
//! rollback brings the earlier decisions back; `warren policy test --api`
//! runs the live policy's tests. API keys are the principals: a key
//! presented as `Warren-Key` is what the policy is asked about, and the
//! origin never sees it.

mod common;
mod web;

use common::bin;
use serde_json::{json, Value};
use std::time::Instant;
use warren_testkit::{http_backend, EdgeProcess, ResourceSpec};

fn policy(key: &str, grant: &str, tests: &str) -> String {
    format!(
        "[tags]\n\"tag:home\" = [\"ops@corp.com\"]\n\n{grant}\n[[tests]]\nsrc = \"key:{key}\"\n{tests}\n"
    )
}

struct Api<'a> {
    edge: &'a EdgeProcess,
}

impl Api<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.edge
            .admin_request(method, path, body.as_deref(), self.edge.token.as_deref())
    }

    fn put(&self, text: &str, base: i64) -> (u16, Value) {
        self.call(
            "PUT",
            "/api/v1/policy",
            Some(json!({ "text": text, "base_version": base })),
        )
    }

    fn policy_rows(&self) -> Vec<Value> {
        let audit = self.edge.admin_get("/api/v1/audit?limit=1000");
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["object"] == "policy")
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_saved_through_the_api_decides_the_next_request_and_rolls_back() {
    let live = http_backend("live").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = web::web_spec(
        vec![ResourceSpec::http("app", "api.test", "home", live.addr)],
        dir.path(),
    );
    // The site carries a tag (checked for its form: no policy yet).
    let toml = spec
        .to_toml()
        .replace("id = \"home\"\n", "id = \"home\"\ntags = [\"tag:home\"]\n");
    std::fs::write(dir.path().join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let agent = edge.start_agent("agent", "tcp", &[&format!("{}/tcp", live.addr)]);
    let web = web::Web {
        ca: dir.path().join("cert.pem"),
        edge,
        agent,
        dir,
    };
    let api = Api { edge: &web.edge };

    // A read-only key for a machine: its scope says what it may do on the
    // API; the policy, what it may reach.
    let (status, key) = api.call(
        "POST",
        "/api/v1/keys",
        Some(json!({ "name": "ci", "scope": "read" })),
    );
    assert_eq!(status, 201, "{key}");
    let (id, token) = (key["id"].as_str().unwrap(), key["token"].as_str().unwrap());
    let with_key = format!("Warren-Key: {token}");
    let wrong_key = format!("Warren-Key: wrn_{id}_{}", "0".repeat(32));
    let get = |args: Vec<String>| {
        let web = &web;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            web.curl("api.test", "/", &args).await
        }
    };
    let keyed = || vec!["-H".to_owned(), with_key.clone()];
    let posted = || {
        vec![
            "-X".to_owned(),
            "POST".to_owned(),
            "-H".to_owned(),
            with_key.clone(),
        ]
    };

    // No policy: open.
    assert_eq!(get(vec![]).await.status, 200);

    // A policy that does not declare the site's tag is refused; nothing changes.
    let (status, body) = api.put("[[grants]]\nsrc = [\"*\"]\ndst = [\"app\"]\n", 0);
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("undeclared_tags")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("site `home` has `tag:home`"),
        "{body}"
    );
    assert_eq!(
        get(vec![]).await.status,
        200,
        "a refused save changed nothing"
    );

    // v1: the key may GET the app.
    let v1 = policy(
        id,
        &format!("[[grants]]\nsrc = [\"key:{id}\"]\ndst = [\"app\"]\nmethods = [\"GET\"]\n"),
        "accept = [\"app:443 GET /\"]\ndeny = [\"app:443 POST /\"]",
    );
    let sent = Instant::now();
    let (status, saved) = api.put(&v1, 0);
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["version"], 1, "{saved}");
    let reply = get(keyed()).await;
    let took = sent.elapsed();
    assert_eq!(
        reply.status, 200,
        "the first request after the save: {}",
        reply.body
    );
    eprintln!("save -> first request decided by it: {took:?}");
    let seen = reply.json();
    assert!(
        seen["headers"].get("warren-key").is_none(),
        "the origin saw the visitor's key: {seen}"
    );
    assert_eq!(get(vec![]).await.status, 403, "anonymous: default deny");
    assert_eq!(get(posted()).await.status, 403, "POST is not granted");
    let wrong = get(vec!["-H".to_owned(), wrong_key.clone()]).await;
    assert_eq!(wrong.status, 403, "a wrong secret");
    assert!(
        !wrong.body.contains(id),
        "the refusal says nothing about keys: {}",
        wrong.body
    );

    // v2: by the site's tag, any method.
    let v2 = policy(
        id,
        &format!("[[grants]]\nsrc = [\"key:{id}\"]\ndst = [\"tag:home:443\"]\n"),
        "accept = [\"tag:home:443\"]",
    );
    let (status, saved) = api.put(&v2, 1);
    assert_eq!((status, &saved["version"]), (200, &json!(2)), "{saved}");
    assert_eq!(
        get(posted()).await.status,
        200,
        "granted through the site's tag"
    );

    // v3: nothing for the key.
    let v3 = policy(id, "", "deny = [\"app:443 GET /\"]");
    let (status, saved) = api.put(&v3, 2);
    assert_eq!((status, &saved["version"]), (200, &json!(3)), "{saved}");
    assert_eq!(get(keyed()).await.status, 403, "the grant is gone at once");

    // Refused saves change nothing and write no audit row.
    let rows_before = api.policy_rows().len();
    let failing = policy(id, "", "accept = [\"app:443 GET /\"]");
    let (status, body) = api.put(&failing, 3);
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("policy_tests_failed")),
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["message"],
        format!("key:{id} -> app:443 GET / (tcp): expected ALLOWED, got DENIED"),
        "{body}"
    );
    let (status, body) = api.put("[[grants]]\nsrc = [\"group:nope\"]\ndst = [\"app\"]\n", 3);
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_policy")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "grants[0].src[0]", "{body}");
    let (status, body) = api.put(&v1, 1);
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert_eq!(
        api.policy_rows().len(),
        rows_before,
        "a refused save is not a change"
    );
    assert_eq!(web.edge.admin_get("/api/v1/policy")["version"], 3);
    assert_eq!(get(keyed()).await.status, 403, "still v3");

    // Rollback to v2: its decisions are back.
    let (status, saved) = api.call(
        "POST",
        "/api/v1/policy/rollback",
        Some(json!({ "version": 2 })),
    );
    assert_eq!(status, 200, "{saved}");
    assert_eq!(
        (&saved["version"], &saved["restored_from"]),
        (&json!(4), &json!(2))
    );
    assert_eq!(get(posted()).await.status, 200, "v2's grant is back");
    let live_policy = web.edge.admin_get("/api/v1/policy");
    assert_eq!(
        (live_policy["text"].as_str(), &live_policy["source"]),
        (Some(v2.as_str()), &json!("api"))
    );

    // The audit log: who, what, and the diff.
    let rows = api.policy_rows();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "policy.update",
            "policy.update",
            "policy.update",
            "policy.rollback"
        ]
    );
    let admin_id = web.edge.token.as_deref().unwrap()[4..16].to_owned();
    assert!(
        rows.iter().all(|r| r["actor"] == admin_id.as_str()),
        "{rows:?}"
    );
    let diff = rows[2]["after"]["diff"].as_str().unwrap();
    assert!(diff.starts_with("--- policy v2\n+++ policy v3\n"), "{diff}");
    assert!(diff.contains(&format!("-src = [\"key:{id}\"]\n")), "{diff}");
    assert!(diff.contains("-dst = [\"tag:home:443\"]\n"), "{diff}");
    assert_eq!(rows[3]["after"]["restored_from"], 2);
    let history = web.edge.admin_get("/api/v1/policy/versions");
    let versions: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [4, 3, 2, 1]);
    assert_eq!(
        web.edge.admin_get("/api/v1/policy/versions/1")["text"],
        v1.as_str()
    );

    // The access log names the principal and the grant.
    let log_path = web.dir.path().join("access.log");
    common::within("an access log line granted to the key", || async {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("\"access\":\"granted\"")
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let granted: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["access"] == "granted")
        .unwrap();
    assert_eq!(
        (&granted["principal"], &granted["grant"]),
        (&json!(format!("key:{id}")), &json!(0)),
        "{granted}"
    );

    // The live policy's tests, from the command line.
    let out = std::process::Command::new(bin())
        .args([
            "policy",
            "test",
            "--api",
            &format!("http://{}", web.edge.admin),
        ])
        .env("WARREN_TOKEN", web.edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "the edge's policy (version 4): 1 test passed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A site made through the API carries tags the live policy declares.
    let (status, body) = api.call(
        "POST",
        "/api/v1/sites",
        Some(json!({ "id": "lab", "tags": ["tag:nope"] })),
    );
    assert_eq!(
        (status, &body["errors"][0]["field"]),
        (422, &json!("tags[0]")),
        "{body}"
    );
    let (status, body) = api.call(
        "POST",
        "/api/v1/sites",
        Some(json!({ "id": "lab", "tags": ["tag:home"] })),
    );
    assert_eq!(
        (status, &body["tags"]),
        (201, &json!(["tag:home"])),
        "{body}"
    );
    // ... and a policy that drops the tag is refused, naming both sites.
    let (status, body) = api.put("", 4);
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("undeclared_tags")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("site `home` has `tag:home`")
            && message.contains("site `lab` has `tag:home`"),
        "{body}"
    );

    // A deleted key is refused on the next request (the edge checks keys
    // against its catalog, rebuilt when the key goes).
    assert_eq!(get(posted()).await.status, 200);
    let (status, body) = api.call("DELETE", &format!("/api/v1/keys/{id}"), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        get(posted()).await.status,
        403,
        "a deleted key still passed"
    );

    // Removing the policy is a version too, and opens everything again.
    let (status, saved) = api.call("DELETE", "/api/v1/policy?base_version=4", None);
    assert_eq!((status, &saved["version"]), (200, &json!(5)), "{saved}");
    assert_eq!(get(vec![]).await.status, 200);
    assert_eq!(api.policy_rows().last().unwrap()["action"], "policy.delete");
}
