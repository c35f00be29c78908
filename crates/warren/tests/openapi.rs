//! The OpenAPI document at `/api/v1/openapi.json`: a valid OpenAPI 3.1
//! document, every reference resolving, every route of the API in it and
//! every route in it served, and the live answers of every GET matching
//! the schemas it gives.

mod common;

use common::bin;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec};

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Validates `instance` against `schema`, resolving refs into `doc`'s
/// components.
fn check_against(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.clone();
    if let Some(obj) = root.as_object_mut() {
        obj.insert("components".into(), doc["components"].clone());
        obj.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
    }
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}\n{root:#}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the live answer does not match the documented schema:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid_complete_and_matches_the_answers() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = EdgeSpec::new();
    spec.edge_extra = "https_listen = \"127.0.0.1:0\"".into();
    // A policy, so that GET /api/v1/policy has one to answer with.
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\nsrc = [\"ops@corp.com\"]\ndst = [\"echo\"]\n",
    )
    .unwrap();
    spec.policy_file = Some("policy.toml".into());
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let token = edge.token.clone().unwrap();
    let call = |method: &str, path: &str, body: &Value| {
        edge.admin_request(method, path, Some(&body.to_string()), Some(&token))
    };
    // Something in every list.
    let res = json!({ "name": "echo", "type": "tcp", "listen": "127.0.0.1:0",
        "targets": [{ "site": "home", "address": echo.to_string() }] });
    assert_eq!(call("POST", "/api/v1/resources", &res).0, 201);
    assert_eq!(
        call("POST", "/api/v1/sites", &json!({ "id": "lab" })).0,
        201
    );

    // Served without a key: it describes, it grants nothing.
    let (status, doc) = edge.admin_request("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let text = doc.to_string();
    let parsed = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(parsed.openapi.starts_with("3.1"), "{}", parsed.openapi);

    // Every reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }

    // Exactly the API's routes.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/api/v1/sites"),
        ("POST", "/api/v1/sites"),
        ("DELETE", "/api/v1/sites/{id}"),
        ("POST", "/api/v1/sites/{id}/rotate"),
        ("GET", "/api/v1/resources"),
        ("POST", "/api/v1/resources"),
        ("GET", "/api/v1/resources/{name}"),
        ("PUT", "/api/v1/resources/{name}"),
        ("DELETE", "/api/v1/resources/{name}"),
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/policy"),
        ("PUT", "/api/v1/policy"),
        ("DELETE", "/api/v1/policy"),
        ("POST", "/api/v1/policy/rollback"),
        ("GET", "/api/v1/policy/versions"),
        ("GET", "/api/v1/policy/versions/{version}"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("DELETE", "/api/v1/keys/{id}"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/users/{id}/disable"),
        ("POST", "/api/v1/users/{id}/enable"),
        ("POST", "/api/v1/users/{id}/logout"),
        ("POST", "/api/v1/users/{id}/reset-2fa"),
        ("PUT", "/api/v1/resources/{name}/pin"),
        ("DELETE", "/api/v1/resources/{name}/pin"),
        ("PUT", "/api/v1/resources/{name}/password"),
        ("DELETE", "/api/v1/resources/{name}/password"),
        ("GET", "/api/v1/resources/{name}/links"),
        ("POST", "/api/v1/resources/{name}/links"),
        ("DELETE", "/api/v1/links/{id}"),
        ("GET", "/api/v1/devices"),
        ("POST", "/api/v1/devices"),
        ("GET", "/api/v1/devices/{name}"),
        ("DELETE", "/api/v1/devices/{name}"),
        ("GET", "/api/v1/decisions"),
        ("GET", "/api/v1/ssh/ca"),
        ("POST", "/api/v1/ssh/ca/rotate"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(documented, expected);

    // Every documented route is served (never the 404/405 of an unknown
    // route), and every GET's answer matches its documented schema.
    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "echo")
            .replace("{version}", "1")
            .replace(
                "{id}",
                if path.contains("keys") {
                    "nokey"
                } else {
                    "lab"
                },
            );
        let op = &doc["paths"][path][method.to_lowercase()];
        if method == "GET" && path == "/api/v1/devices/{name}" {
            // No device to read without a WireGuard endpoint to add one:
            // the documented 404.
            let (status, body) = call("GET", &concrete, &Value::Null);
            assert_eq!(status, 404, "GET {concrete}: {body}");
            let schema = &op["responses"]["404"]["content"]["application/json"]["schema"];
            check_against(&doc, schema, &body, &format!("GET {concrete}"));
        } else if method == "GET" {
            let (status, body) = call("GET", &concrete, &Value::Null);
            assert_eq!(status, 200, "GET {concrete}: {body}");
            let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "GET {path} documents its answer");
            check_against(&doc, schema, &body, &format!("GET {concrete}"));
        } else {
            // An empty object: each route answers with its own checks.
            let target = path
                .replace("{name}", "missing")
                .replace("{id}", "missing")
                .replace("{version}", "1");
            let (status, body) = call(method, &target, &json!({}));
            assert!(
                ![405].contains(&status) && body["message"] != "no such endpoint",
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }

    // Error answers match the documented error schema too.
    let (status, body) = call("POST", "/api/v1/resources", &json!({ "name": 1 }));
    assert_eq!(status, 422);
    let schema = &doc["paths"]["/api/v1/resources"]["post"]["responses"]["422"]["content"]
        ["application/json"]["schema"];
    check_against(&doc, schema, &body, "422 answer");
}
