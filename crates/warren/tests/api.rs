//! The admin API's authentication and API-key endpoints, through a real
//! edge: every refusal is a JSON error with a stable code.

mod common;

use common::bin;
use serde_json::json;
use warren_testkit::{EdgeProcess, EdgeSpec};

fn edge() -> (EdgeProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(bin(), dir.path(), &EdgeSpec::new());
    (edge, dir)
}

#[test]
fn first_start_writes_a_private_admin_token_once() {
    let (mut edge, dir) = edge();
    let token = edge.token.clone().expect("data/admin-token written");
    assert!(token.starts_with("wrn_"), "{token}");
    let path = dir.path().join("data/admin-token");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "token file readable by others");
    edge.process.wait_event("api_key_created");
    // A restart does not make another key.
    edge.process.signal(15);
    let status = edge.process.wait_exit(std::time::Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    std::fs::remove_file(&path).unwrap();
    let again = EdgeProcess::start_existing(bin(), dir.path());
    assert!(again.token.is_none());
    assert!(again.process.events("api_key_created").is_empty());
}

#[test]
fn requests_without_a_valid_key_are_refused_with_a_code() {
    let (edge, _dir) = edge();
    let token = edge.token.clone().unwrap();
    let (status, body) = edge.admin_request("GET", "/api/v1/sites", None, None);
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{body}"
    );
    for bad in [
        "nonsense",
        "wrn_zz_zz",
        // Right id, wrong secret.
        &format!("{}{}", &token[..17], "0".repeat(32)),
        // Unknown id.
        "wrn_000000000000_00000000000000000000000000000000",
    ] {
        let (status, body) = edge.admin_request("GET", "/api/v1/sites", None, Some(bad));
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token")),
            "{bad}: {body}"
        );
    }
    // Metrics and health stay open (the listener is on loopback).
    assert_eq!(edge.admin_request("GET", "/healthz", None, None).0, 200);
    let (status, body) = edge.admin_request("GET", "/api/v1/nothing", None, Some(&token));
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let refused = edge.process.events("api_refused");
    assert_eq!(refused.len(), 5, "every refusal is logged");
}

#[test]
fn keys_are_created_scoped_expired_and_deleted() {
    let (edge, _dir) = edge();
    let admin = edge.token.clone().unwrap();
    let create = |body: serde_json::Value, token: &str| {
        edge.admin_request("POST", "/api/v1/keys", Some(&body.to_string()), Some(token))
    };

    // A read-only key: reads, cannot write.
    let (status, read) = create(json!({ "name": "dashboard", "scope": "read" }), &admin);
    assert_eq!(status, 201, "{read}");
    let read_token = read["token"].as_str().unwrap().to_owned();
    assert!(
        read.get("key_hash").is_none(),
        "the hash never leaves the store"
    );
    assert_eq!(
        edge.admin_request("GET", "/api/v1/sites", None, Some(&read_token))
            .0,
        200
    );
    let (status, body) = create(json!({ "name": "x", "scope": "admin" }), &read_token);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("read_only_key")),
        "{body}"
    );

    // Expired.
    let (_, short) = create(
        json!({ "name": "short", "scope": "admin", "expires_in": "1ms" }),
        &admin,
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (status, body) = edge.admin_request("GET", "/api/v1/sites", None, short["token"].as_str());
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("key_expired")),
        "{body}"
    );

    // Bad bodies: a clear 4xx, nothing created.
    let before = edge.admin_get("/api/v1/keys").as_array().unwrap().len();
    for (body, why) in [
        ("{not json", "syntax"),
        (
            r#"{"name":"a","scope":"admin","colour":"red"}"#,
            "unknown field",
        ),
        (r#"{"name":"a","scope":"root"}"#, "unknown scope"),
        (r#"{"scope":"admin"}"#, "missing name"),
    ] {
        let (status, reply) = edge.admin_request("POST", "/api/v1/keys", Some(body), Some(&admin));
        assert!((400..500).contains(&status), "{why}: {status} {reply}");
        assert_eq!(reply["code"], "invalid_json", "{why}: {reply}");
        assert!(!reply["message"].as_str().unwrap_or("").is_empty());
    }
    let (status, reply) = create(
        json!({ "name": "a", "scope": "admin", "expires_in": "soon" }),
        &admin,
    );
    assert_eq!(
        (status, reply["code"].as_str()),
        (422, Some("invalid_field")),
        "{reply}"
    );
    assert_eq!(
        edge.admin_get("/api/v1/keys").as_array().unwrap().len(),
        before
    );

    // Delete: the key stops working at once.
    let id = read["id"].as_str().unwrap();
    let (status, _) =
        edge.admin_request("DELETE", &format!("/api/v1/keys/{id}"), None, Some(&admin));
    assert_eq!(status, 204);
    let (status, _) = edge.admin_request("GET", "/api/v1/sites", None, Some(&read_token));
    assert_eq!(status, 401);
    let (status, body) = edge.admin_request("DELETE", "/api/v1/keys/nope", None, Some(&admin));
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // The audit log names the admin key as the actor of each change.
    let admin_id = &admin[4..16];
    let audit = edge.admin_get("/api/v1/audit");
    let by_admin: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == admin_id)
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_admin,
        ["api_key.create", "api_key.create", "api_key.delete"]
    );
}

#[test]
fn edge_status_cli_needs_a_token_and_shows_sites_with_one() {
    let (edge, dir) = edge();
    let admin = format!("http://{}", edge.admin);
    let run = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["edge", "status", "--admin", &admin])
            .env_remove("WARREN_TOKEN")
            .current_dir(dir.path());
        if let Some(t) = token {
            cmd.env("WARREN_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin-token"),
        "{out:?}"
    );
    let out = run(edge.token.as_deref());
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("home"),
        "{out:?}"
    );
}

/// Sites made through the API: agents authenticate against the store,
/// rotation keeps the old secret working for its grace and flags who uses
/// it, a zero grace cuts them off, and deleting the site disconnects it.
#[test]
fn api_sites_authenticate_rotate_with_grace_and_delete() {
    use std::time::Duration;
    use warren_testkit::{Process, EVENT_TIMEOUT};
    let (edge, dir) = edge();
    let admin = edge.token.clone().unwrap();
    let post = |path: &str, body: serde_json::Value| {
        edge.admin_request("POST", path, Some(&body.to_string()), Some(&admin))
    };
    let (status, lab) = post("/api/v1/sites", json!({ "id": "lab", "name": "The lab" }));
    assert_eq!(status, 201, "{lab}");
    let first_secret = lab["secret"].as_str().unwrap().to_owned();
    assert_eq!(post("/api/v1/sites", json!({ "id": "lab" })).0, 409);
    assert_eq!(
        post("/api/v1/sites", json!({ "id": "Lab!" })).1["code"],
        "invalid_field"
    );
    let (status, body) = edge.admin_request("DELETE", "/api/v1/sites/home", None, Some(&admin));
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("managed_by_file"))
    );

    let agent = |name: &str, secret: &str| {
        let args = edge.site_args("lab", secret, "tcp", &["127.0.0.1:9/tcp"]);
        Process::spawn(name, bin(), &args, dir.path())
    };
    let connected = |n: usize| {
        edge.process
            .wait_event_nth("agent_connected", n, EVENT_TIMEOUT);
    };
    let lab_agents = || {
        let sites = edge.admin_get("/api/v1/sites");
        sites
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "lab")
            .map(|s| s["agents"].as_array().unwrap().clone())
            .unwrap_or_default()
    };
    let _a1 = agent("a1", &first_secret);
    connected(0);
    assert_eq!(lab_agents().len(), 1);
    assert_eq!(lab_agents()[0]["on_old_secret"], false);

    // Rotate with a grace period: the connected agent is flagged, a new one
    // with the old secret still gets in (flagged), one with the new secret
    // is not flagged.
    let (status, rotated) = post("/api/v1/sites/lab/rotate", json!({ "grace": "1h" }));
    assert_eq!(status, 200, "{rotated}");
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first_secret);
    let _a2 = agent("a2", &first_secret);
    connected(1);
    let _a3 = agent("a3", &second_secret);
    connected(2);
    let flags: Vec<bool> = lab_agents()
        .iter()
        .map(|a| a["on_old_secret"].as_bool().unwrap())
        .collect();
    assert_eq!(flags.iter().filter(|f| **f).count(), 2, "{flags:?}");
    assert_eq!(flags.len(), 3);

    // Rotate with no grace: every agent of the site is cut off, and the
    // secrets before the newest are refused.
    let (status, rotated) = post("/api/v1/sites/lab/rotate", json!({ "grace": "0s" }));
    assert_eq!(status, 200);
    let third_secret = rotated["secret"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lab_agents().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "agents still connected: {:?}",
            lab_agents()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused_before = edge.process.events("agent_refused").len();
    let _stale = agent("stale", &second_secret);
    edge.process
        .wait_event_nth("agent_refused", refused_before, EVENT_TIMEOUT);
    // The first secret too, though its hour of grace has not run out: a
    // rotation with none ends every older secret. (The agent's own log names
    // the refusal, the edge's refusals carry no agent to tell them apart.)
    let older = agent("older", &first_secret);
    let refused = older.wait_event("edge_refused");
    assert_eq!(refused["code"], "BadCredentials", "{refused}");
    assert!(older.events("edge_connected").is_empty());
    let connects_before = edge.process.events("agent_connected").len();
    let a4 = agent("a4", &third_secret);
    connected(connects_before);

    // Delete: agents disconnected, site gone, every step audited. a4 is
    // among the site's agents before; after, the edge logs each agent's
    // disconnection, a4 loses its link and its next attempt is refused (the
    // site no longer being listed proves nothing by itself). `connected`
    // above can be met by an older agent coming back, so a4 is waited for by
    // its instance id.
    let instance = a4.wait_event("agent_starting")["agent"].clone();
    assert!(instance.is_string(), "{instance}");
    let connected_a4 = |v: &serde_json::Value| {
        v["event"] == "agent_connected" && v["site"] == "lab" && v["agent"] == instance
    };
    edge.process
        .wait_log("a4 connected", EVENT_TIMEOUT, connected_a4);
    let before = lab_agents();
    assert!(
        before.iter().any(|a| a["instance"] == instance),
        "a4 ({instance}) not among the site's agents: {before:?}"
    );
    let a4_refusals = a4.events("edge_refused").len();
    let (edge_mark, a4_mark) = (edge.process.logs().len(), a4.logs().len());
    let (status, _) = edge.admin_request("DELETE", "/api/v1/sites/lab", None, Some(&admin));
    assert_eq!(status, 204);
    // Every agent the site had is disconnected by the edge, and a4 loses
    // its link: both logged after the DELETE.
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    for agent in &before {
        let id = &agent["instance"];
        while !edge.process.logs()[edge_mark..]
            .iter()
            .any(|v| v["event"] == "agent_disconnected" && v["site"] == "lab" && v["agent"] == *id)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} not disconnected after the DELETE"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    while !a4.logs()[a4_mark..]
        .iter()
        .any(|v| v["event"] == "edge_link_lost" || v["event"] == "edge_going_away")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a4 kept its link after the DELETE"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its next attempt is refused.
    a4.wait_event_nth("edge_refused", a4_refusals, EVENT_TIMEOUT);
    assert!(lab_agents().is_empty());
    let admin_id = &admin[4..16];
    let actions: Vec<String> = edge
        .admin_get("/api/v1/audit")
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == admin_id && a["object"] == "site/lab")
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        ["site.create", "site.rotate", "site.rotate", "site.delete"]
    );
}

/// When a rotated-out secret's grace ends, agents still using it are
/// disconnected (and cannot come back with it); agents on the new secret
/// stay.
#[test]
fn agents_on_an_old_secret_are_cut_off_when_its_grace_ends() {
    use std::time::{Duration, Instant};
    use warren_testkit::{Process, EVENT_TIMEOUT};
    let (edge, dir) = edge();
    let admin = edge.token.clone().unwrap();
    let post = |path: &str, body: serde_json::Value| {
        edge.admin_request("POST", path, Some(&body.to_string()), Some(&admin))
    };
    let (_, lab) = post("/api/v1/sites", json!({ "id": "lab" }));
    let old = lab["secret"].as_str().unwrap().to_owned();
    let agent = |name: &str, secret: &str| {
        let args = edge.site_args("lab", secret, "tcp", &["127.0.0.1:9/tcp"]);
        Process::spawn(name, bin(), &args, dir.path())
    };
    let _on_old = agent("old", &old);
    edge.process
        .wait_event_nth("agent_connected", 0, EVENT_TIMEOUT);
    let (_, rotated) = post("/api/v1/sites/lab/rotate", json!({ "grace": "2s" }));
    let rotated_at = Instant::now();
    let _on_new = agent("new", rotated["secret"].as_str().unwrap());
    edge.process
        .wait_event_nth("agent_connected", 1, EVENT_TIMEOUT);
    let expired = edge.process.wait_event("agent_secret_expired");
    let after = rotated_at.elapsed();
    eprintln!("old-secret agent cut off {after:?} after a 2 s grace");
    assert!(after >= Duration::from_millis(1900), "{after:?}");
    assert_eq!(expired["site"], "lab");
    // It tries again with the old secret and is refused; the new one stays.
    edge.process
        .wait_log("refusal of the old secret", EVENT_TIMEOUT, |v| {
            v["event"] == "agent_refused" && v["site"] == "lab"
        });
    assert_eq!(edge.agent_count("lab"), 1);
}
