//! Resources through the REST API, against a real edge and agent: live
//! when the answer is sent (how soon is printed, not asserted), persisted, pushed to agents with a config version, and
//! every bad request refused with a code and nothing half-applied.

mod common;

use common::{banner, bin, echo_ok, read_banner, within};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec, Process, ResourceSpec, EVENT_TIMEOUT};

fn call(edge: &EdgeProcess, method: &str, path: &str, body: &Value) -> (u16, Value) {
    edge.admin_request(method, path, Some(&body.to_string()), edge.token.as_deref())
}

fn bound(edge: &EdgeProcess, name: &str) -> SocketAddr {
    let list = edge.admin_get("/api/v1/resources");
    let r = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not served: {list:#}"));
    r["bound"].as_str().unwrap().parse().unwrap()
}

fn start(dir: &std::path::Path, file_target: SocketAddr) -> EdgeProcess {
    let mut spec = EdgeSpec::new().resource(ResourceSpec::tcp("file-echo", "home", file_target));
    spec.edge_extra = "https_listen = \"127.0.0.1:0\"".into();
    EdgeProcess::start(bin(), dir, &spec)
}

fn agent(edge: &EdgeProcess, allow: &[String]) -> Process {
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    edge.start_agent("agent", "tcp", &allow)
}

fn agent_config_version(edge: &EdgeProcess) -> (u64, Vec<u64>) {
    let status = edge.admin_get("/api/v1/status");
    let agents = status["sites"][0]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["config_version"].as_u64().unwrap())
        .collect();
    (status["config_version"].as_u64().unwrap(), agents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_go_live_change_and_close() {
    let echo = echo_tcp().await;
    let (a, b) = (banner("A").await, banner("B").await);
    let dir = tempfile::tempdir().unwrap();
    let edge = start(dir.path(), echo);
    let _agent = agent(
        &edge,
        &[
            format!("{echo}/tcp"),
            format!("{a}/tcp"),
            format!("{b}/tcp"),
        ],
    );
    // An unrelated stream stays open through every change below.
    let file_addr = edge.resource_addr("file-echo");
    let mut live = tokio::net::TcpStream::connect(file_addr).await.unwrap();
    live.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    live.read_exact(&mut buf).await.unwrap();

    let spec = |target: SocketAddr| {
        json!({ "name": "api-banner", "type": "tcp", "listen": "127.0.0.1:0",
                "targets": [{ "site": "home", "address": target.to_string() }] })
    };
    let (status, created) = call(&edge, "POST", "/api/v1/resources", &spec(a));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["managed_by"], "api");
    let addr = bound(&edge, "api-banner");
    let took = within("new resource reachable", || async move {
        read_banner(addr).await.as_deref() == Some("A")
    })
    .await;
    eprintln!("create → first answer: {took:?}");

    // The agent holds the new configuration version.
    within("agent acknowledges the version", || async {
        let (edge_v, agents) = agent_config_version(&edge);
        agents == vec![edge_v]
    })
    .await;

    // Replace the target: the same port answers from B.
    let (status, replaced) = call(&edge, "PUT", "/api/v1/resources/api-banner", &spec(b));
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["version"], 2);
    let took = within("new target answers", || async move {
        read_banner(addr).await.as_deref() == Some("B")
    })
    .await;
    eprintln!("update → new target: {took:?}");
    assert_eq!(bound(&edge, "api-banner"), addr, "same listener kept");

    // Delete: the port closes.
    let (status, body) = call(
        &edge,
        "DELETE",
        "/api/v1/resources/api-banner",
        &Value::Null,
    );
    assert_eq!(status, 204, "{body}");
    let took = within("port closed", || async move { common::port_closed(addr) }).await;
    eprintln!("delete → port closed: {took:?}");

    // The unrelated stream never noticed.
    live.write_all(b"after!").await.unwrap();
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after!");

    // The audit log has all three, by the admin key.
    let audit = edge.admin_get("/api/v1/audit?limit=1000");
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["object"] == "resource/api-banner")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["resource.create", "resource.update", "resource.delete"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_survive_a_restart_and_agents_resync_after_reconnect() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let mut edge = start(dir.path(), echo);
    let spec = json!({ "name": "api-echo", "type": "tcp", "listen": "127.0.0.1:0",
        "targets": [{ "site": "home", "address": echo.to_string() }],
        "health": { "type": "tcp", "interval": "1s" } });
    assert_eq!(call(&edge, "POST", "/api/v1/resources", &spec).0, 201);
    edge.process.signal(15);
    let status = edge.process.wait_exit(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let edge = EdgeProcess::start_existing(bin(), dir.path());
    let mut agent = agent(&edge, &[format!("{echo}/tcp")]);
    let addr = bound(&edge, "api-echo");
    within("persisted resource serves", || async move {
        echo_ok(addr, b"hello").await.is_ok()
    })
    .await;
    within("agent in step", || async {
        let (v, agents) = agent_config_version(&edge);
        agents == vec![v]
    })
    .await;
    // The agent runs the resource's health check: it came with the plan.
    within("health reported", || async {
        let list = edge.admin_get("/api/v1/resources");
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "api-echo" && r["targets"][0]["health"] == "healthy")
    })
    .await;

    // While no agent is connected the configuration changes; the next
    // agent gets the whole new plan.
    agent.signal(9);
    let status = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        Some(9),
        "{status:?}"
    );
    within("agent gone", || async { edge.agent_count("home") == 0 }).await;
    let (status, body) = call(&edge, "DELETE", "/api/v1/resources/api-echo", &Value::Null);
    assert_eq!(status, 204, "{body}");
    let agent2 = edge.start_agent("agent2", "tcp", &[&format!("{echo}/tcp")]);
    within("reconnected agent in step", || async {
        let (v, agents) = agent_config_version(&edge);
        agents == vec![v]
    })
    .await;
    // The plan it runs, the edge's current version, has no check; so has
    // every plan it was given (there is at least that one).
    let (version, _) = agent_config_version(&edge);
    let current = agent2.wait_log("the current plan applied", EVENT_TIMEOUT, |p| {
        p["event"] == "plan_applied" && p["version"] == version
    });
    assert_eq!(
        current["checks"], 0,
        "the deleted resource's check is not planned: {current}"
    );
    let plans = agent2.events("plan_applied");
    assert!(
        !plans.is_empty() && plans.iter().all(|p| p["checks"] == 0),
        "the deleted resource's check is not planned: {plans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_refused_with_a_code_and_change_nothing() {
    let echo = echo_tcp().await;
    let dir = tempfile::tempdir().unwrap();
    let edge = start(dir.path(), echo);
    let token = edge.token.clone().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap();
    let free_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let target = json!([{ "site": "home", "address": echo.to_string() }]);
    let ok_http = json!({ "name": "web", "type": "http", "host": "app.test", "targets": target });
    let ok_tcp = json!({ "name": "fixed", "type": "tcp", "listen": free_port.to_string(), "targets": target });
    assert_eq!(call(&edge, "POST", "/api/v1/resources", &ok_http).0, 201);
    assert_eq!(call(&edge, "POST", "/api/v1/resources", &ok_tcp).0, 201);

    let before_resources = edge.admin_get("/api/v1/resources");
    let before_audit = edge.admin_get("/api/v1/audit?limit=1000");
    let raw = |method: &str, path: &str, body: &str, token: &str| {
        edge.admin_request(method, path, Some(body), Some(token))
    };

    let cases: Vec<(&str, (u16, Value), u16, &str)> = vec![
        (
            "invalid JSON",
            raw("POST", "/api/v1/resources", "{\"name\":", &token),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            call(&edge, "POST", "/api/v1/resources", &json!([1])),
            422,
            "invalid_field",
        ),
        (
            "unknown field",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "x", "type": "tcp", "listen": "127.0.0.1:0", "targets": target, "colour": "red" }),
            ),
            422,
            "invalid_field",
        ),
        (
            "null field",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "x", "type": "tcp", "listen": null, "targets": target }),
            ),
            422,
            "invalid_field",
        ),
        (
            "no targets",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "x", "type": "tcp", "listen": "127.0.0.1:0" }),
            ),
            422,
            "invalid_field",
        ),
        (
            "unknown site",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "x", "type": "tcp", "listen": "127.0.0.1:0", "targets": [{ "site": "nowhere", "address": "127.0.0.1:1" }] }),
            ),
            422,
            "invalid_field",
        ),
        (
            "duplicate name (the file's)",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "file-echo", "type": "tcp", "listen": "127.0.0.1:0", "targets": target }),
            ),
            409,
            "conflict",
        ),
        (
            "duplicate host",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "web2", "type": "http", "host": "app.test", "targets": target }),
            ),
            409,
            "conflict",
        ),
        (
            "duplicate port",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "fixed2", "type": "tcp", "listen": free_port.to_string(), "targets": target }),
            ),
            409,
            "conflict",
        ),
        (
            "port in use by another program",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "taken", "type": "tcp", "listen": taken_port.to_string(), "targets": target }),
            ),
            409,
            "port_in_use",
        ),
        (
            // Not an address of this host: the request's fault, named.
            "a listen address this host does not have",
            call(
                &edge,
                "POST",
                "/api/v1/resources",
                &json!({ "name": "elsewhere", "type": "tcp", "listen": "192.0.2.1:5555", "targets": target }),
            ),
            422,
            "invalid_field",
        ),
        (
            "moving a resource onto a port in use",
            call(
                &edge,
                "PUT",
                "/api/v1/resources/fixed",
                &json!({ "name": "fixed", "type": "tcp", "listen": taken_port.to_string(), "targets": target }),
            ),
            409,
            "port_in_use",
        ),
        (
            "renaming through PUT",
            call(
                &edge,
                "PUT",
                "/api/v1/resources/fixed",
                &json!({ "name": "other", "type": "tcp", "listen": "127.0.0.1:0", "targets": target }),
            ),
            409,
            "conflict",
        ),
        (
            "editing the file's resource",
            call(
                &edge,
                "PUT",
                "/api/v1/resources/file-echo",
                &json!({ "name": "file-echo", "type": "tcp", "listen": "127.0.0.1:0", "targets": target }),
            ),
            409,
            "managed_by_file",
        ),
        (
            "deleting the file's resource",
            call(&edge, "DELETE", "/api/v1/resources/file-echo", &Value::Null),
            409,
            "managed_by_file",
        ),
        (
            "deleting what is not there",
            call(&edge, "DELETE", "/api/v1/resources/ghost", &Value::Null),
            404,
            "not_found",
        ),
        (
            "replacing what is not there",
            call(&edge, "PUT", "/api/v1/resources/ghost", &ok_tcp),
            404,
            "not_found",
        ),
        (
            "deleting a site still targeted",
            call(&edge, "DELETE", "/api/v1/sites/home", &Value::Null),
            409,
            "managed_by_file",
        ),
    ];
    for (what, (status, body), want_status, want_code) in cases {
        assert_eq!(
            (status, body["code"].as_str().unwrap_or("")),
            (want_status, want_code),
            "{what}: {body}"
        );
        assert!(
            !body["message"].as_str().unwrap_or("").is_empty(),
            "{what}: no message"
        );
    }
    // Field errors name the field.
    let (_, body) = call(
        &edge,
        "POST",
        "/api/v1/resources",
        &json!({ "name": "x", "type": "tcp", "listen": "nope", "targets": [{ "site": "nowhere", "address": "127.0.0.1:1" }] }),
    );
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"listen") && fields.contains(&"targets[0].site"),
        "{body}"
    );

    // A read-only key cannot write.
    let (_, key) = call(
        &edge,
        "POST",
        "/api/v1/keys",
        &json!({ "name": "ro", "scope": "read" }),
    );
    let ro = key["token"].as_str().unwrap();
    let (status, body) = raw("POST", "/api/v1/resources", &ok_tcp.to_string(), ro);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("read_only_key"))
    );

    // Nothing changed: same resources, no audit row but the key's.
    assert_eq!(edge.admin_get("/api/v1/resources"), before_resources);
    let after_audit = edge.admin_get("/api/v1/audit?limit=1000");
    let new_rows: Vec<&Value> = after_audit
        .as_array()
        .unwrap()
        .iter()
        .skip(before_audit.as_array().unwrap().len())
        .collect();
    assert_eq!(new_rows.len(), 1, "{new_rows:?}");
    assert_eq!(new_rows[0]["action"], "api_key.create");
    // `fixed` still holds its port (a connect could be reset before it
    // completes, since no agent is connected; a bind cannot lie).
    assert!(
        std::net::TcpListener::bind(free_port).is_err(),
        "fixed no longer listens on {free_port}"
    );
    drop(taken);
}
