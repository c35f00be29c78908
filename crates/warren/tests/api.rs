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
    edge.process.wait_exit(std::time::Duration::from_secs(10));
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
    assert_eq!(out.status.code(), Some(1));
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
