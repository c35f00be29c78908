//! People's devices through the admin API and `warren device`, against a
//! real edge: the `wg-quick` config an add answers (address, DNS, routes,
//! the private key in that one answer only), the refusals (a taken name or
//! key, an unknown user, malformed fields, an edge without `[devices]`),
//! and revocation.

mod common;

use common::bin;
use serde_json::{json, Value};
use std::process::Output;
use warren_testkit::{EdgeProcess, EdgeSpec, ResourceSpec};

const NOT_SERVED: &str = "devices are not served: set [devices] in the edge's config";

/// The private resource devices route to: Grafana at home, by alias.
fn grafana() -> ResourceSpec {
    ResourceSpec {
        name: "grafana".into(),
        kind: "private".into(),
        listen: String::new(),
        targets: Vec::new(),
        extra: String::new(),
    }
    .with("site = \"home\"")
    .with("address = \"192.168.50.10\"")
    .with("ports = [\"8080/tcp\"]")
    .with("alias = \"grafana.home.example\"")
}

/// An edge with `[devices]` (a /24) and one private resource, or neither,
/// and the user alice@corp.com.
fn edge(dir: &std::path::Path, devices: bool) -> EdgeProcess {
    let toml = if devices {
        EdgeSpec::new().resource(grafana()).to_toml()
            + "[devices]\nlisten = \"127.0.0.1:0\"\nendpoint = \"vps.example.com:51820\"\n\
               address = \"100.96.0.0/24\"\n"
    } else {
        EdgeSpec::new().to_toml()
    };
    std::fs::write(dir.join("edge.toml"), toml).unwrap();
    let edge = EdgeProcess::start_existing(bin(), dir);
    let (status, user) = call(
        &edge,
        "POST",
        "/api/v1/users",
        json!({ "email": "alice@corp.com", "password": "correct horse battery" }),
    );
    assert_eq!(status, 201, "{user}");
    edge
}

/// `method path` with the edge's admin token and a JSON body.
fn call(edge: &EdgeProcess, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then(|| body.to_string());
    edge.admin_request(method, path, body.as_deref(), edge.token.as_deref())
}

fn add(edge: &EdgeProcess, body: Value) -> (u16, Value) {
    call(edge, "POST", "/api/v1/devices", body)
}

/// Runs `warren ARGS` against the edge's API (token in the environment).
fn cli(edge: &EdgeProcess, args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .env("WARREN_API", format!("http://{}", edge.admin))
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .expect("run warren")
}

fn cli_ok(edge: &EdgeProcess, args: &[&str]) -> String {
    let out = cli(edge, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "warren {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The value of `Key = value` in a wg-quick config.
fn line<'a>(config: &'a str, key: &str) -> &'a str {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no `{key} =` in:\n{config}"))
}

/// What `wg pubkey` says the public key of `private` is.
fn wg_pubkey(private: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg");
    writeln!(child.stdin.take().unwrap(), "{private}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Add (a config with the lowest free address, Warren's resolver, the
/// private routes, and the private key this once), a device's own key, the
/// refusals, list and get without the key, revoke, and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_added_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge(dir.path(), true);

    // 1. The edge makes the key pair: the config carries the private key.
    let (status, phone) = add(
        &edge,
        json!({ "name": "alice-phone", "user": "Alice@Corp.com", "tags": ["tag:phone"] }),
    );
    assert_eq!(status, 201, "{phone}");
    let private = phone["private_key"]
        .as_str()
        .expect("a private key")
        .to_owned();
    let config = phone["config"].as_str().unwrap();
    assert_eq!(line(config, "PrivateKey"), private);
    assert_eq!(line(config, "Address"), "100.96.0.2/32");
    assert_eq!(line(config, "DNS"), "100.96.0.1");
    assert_eq!(line(config, "Endpoint"), "vps.example.com:51820");
    assert_eq!(line(config, "PersistentKeepalive"), "25");
    let routes: Vec<&str> = line(config, "AllowedIPs").split(", ").collect();
    assert!(
        routes.contains(&"100.96.0.1/32") && routes.contains(&"192.168.50.10/32"),
        "{routes:?}"
    );
    assert_eq!(line(config, "PublicKey").len(), 44, "the endpoint's key");
    assert_eq!(phone["device"]["user"], "alice@corp.com");
    assert_eq!(phone["device"]["address"], "100.96.0.2");
    assert_eq!(phone["device"]["tags"], json!(["tag:phone"]));
    let public = phone["device"]["public_key"].as_str().unwrap().to_owned();
    if std::process::Command::new("wg")
        .arg("--version")
        .output()
        .is_ok()
    {
        assert_eq!(wg_pubkey(&private), public, "a WireGuard key pair");
    } else {
        warren_testkit::skip(
            "wireguard-tools is not installed: the key pair is not checked with `wg pubkey`",
        );
    }
    let qr = phone["qr"].as_str().expect("a QR code");
    assert!(qr.lines().count() > 20, "{qr}");
    let resolved = phone["resolved"].as_str().unwrap();
    assert!(
        resolved.contains("resolvectl dns wg0 100.96.0.1")
            && resolved.contains("resolvectl domain wg0 ~home.example"),
        "{resolved}"
    );

    // 2. The device's own key: no private key, no QR code; the next address.
    let own_key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [42u8; 32]);
    let own_key = own_key.as_str();
    let (status, laptop) = add(
        &edge,
        json!({ "name": "alice-laptop", "user": "alice@corp.com", "public_key": own_key }),
    );
    assert_eq!(status, 201, "{laptop}");
    assert_eq!(laptop["private_key"], Value::Null);
    assert_eq!(laptop["qr"], Value::Null);
    let config = laptop["config"].as_str().unwrap();
    assert!(
        config.contains("# PrivateKey = (the device's own key)\n"),
        "{config}"
    );
    assert_eq!(line(config, "Address"), "100.96.0.3/32");
    assert_eq!(laptop["device"]["public_key"], own_key);

    // 3. Refusals: a taken name or key (409), an unknown user and
    // malformed fields (422, every problem named); nothing stored.
    let (status, dup) = add(
        &edge,
        json!({ "name": "alice-phone", "user": "alice@corp.com" }),
    );
    assert_eq!(
        (status, dup["code"].as_str()),
        (409, Some("conflict")),
        "{dup}"
    );
    let (status, dup) = add(
        &edge,
        json!({ "name": "other", "user": "alice@corp.com", "public_key": own_key }),
    );
    assert_eq!(status, 409, "{dup}");
    assert!(
        dup["message"].as_str().unwrap().contains("alice-laptop"),
        "{dup}"
    );
    let (status, unknown) = add(
        &edge,
        json!({ "name": "bob-phone", "user": "bob@corp.com" }),
    );
    assert_eq!(
        (status, unknown["code"].as_str()),
        (422, Some("invalid_field")),
        "{unknown}"
    );
    assert_eq!(unknown["errors"][0]["field"], "user", "{unknown}");
    let (status, bad) = add(
        &edge,
        json!({ "name": "Bad Name", "user": "carol@corp.com", "tags": ["phone"],
                "public_key": "c2hvcnQ=" }),
    );
    assert_eq!(status, 422, "{bad}");
    let fields: Vec<&str> = bad["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "user", "tags[0]", "public_key"], "{bad}");
    let (status, _) = add(
        &edge,
        json!({ "name": "x", "user": "alice@corp.com", "colour": 1 }),
    );
    assert_eq!(status, 400, "an unknown field is refused");

    // 4. List and get: the devices with their traffic, never the private key.
    let list = edge.admin_get("/api/v1/devices");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice-laptop", "alice-phone"]);
    assert!(list[1]["stats"].is_object(), "the endpoint runs: {list}");
    let got = edge.admin_get("/api/v1/devices/alice-phone");
    assert_eq!(got["address"], "100.96.0.2");
    let status = edge.admin_get("/api/v1/status");
    assert_eq!(
        status["devices"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    let audit = edge.admin_get("/api/v1/audit?limit=1000");
    for (what, text) in [
        ("list", list.to_string()),
        ("get", got.to_string()),
        ("status", status.to_string()),
        ("audit", audit.to_string()),
    ] {
        assert!(
            !text.contains(&private),
            "the private key is in {what}: {text}"
        );
    }
    assert!(
        edge.process
            .logs()
            .iter()
            .all(|l| !l.to_string().contains(&private)),
        "the private key is in the edge's log"
    );

    // 5. Revoke: gone (404 after), its address given again.
    let (status, _) = call(&edge, "DELETE", "/api/v1/devices/alice-phone", Value::Null);
    assert_eq!(status, 204);
    let (status, gone) = call(&edge, "GET", "/api/v1/devices/alice-phone", Value::Null);
    assert_eq!(
        (status, gone["code"].as_str()),
        (404, Some("not_found")),
        "{gone}"
    );
    let (status, _) = call(&edge, "DELETE", "/api/v1/devices/alice-phone", Value::Null);
    assert_eq!(status, 404);
    let (status, again) = add(
        &edge,
        json!({ "name": "alice-tablet", "user": "alice@corp.com" }),
    );
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        again["device"]["address"], "100.96.0.2",
        "the lowest free address"
    );

    // 6. The CLI: the config, then the QR code, the key once; list; revoke.
    let out = cli_ok(
        &edge,
        &[
            "device",
            "add",
            "cli-phone",
            "--user",
            "alice@corp.com",
            "--tag",
            "tag:phone",
        ],
    );
    let key_line = out
        .lines()
        .find(|l| l.starts_with("PrivateKey = "))
        .unwrap_or_else(|| panic!("no private key in:\n{out}"));
    let key = key_line.trim_start_matches("PrivateKey = ");
    assert_eq!(
        out.matches(key).count(),
        1,
        "the key only in the config:\n{out}"
    );
    assert!(out.contains("Address = 100.96.0.4/32"), "{out}");
    let qr_at = out.find('\u{2588}').expect("a QR code");
    assert!(
        out.find(key_line).unwrap() < qr_at,
        "the config, then the QR code"
    );
    assert!(out.contains("shown only this once"), "{out}");
    let table = cli_ok(&edge, &["device", "list"]);
    let header = table.lines().next().unwrap();
    for column in ["DEVICE", "USER", "ADDRESS", "TAGS", "HANDSHAKE", "FLOWS"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("cli-phone "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("alice@corp.com") && row.contains("100.96.0.4") && row.contains("tag:phone"),
        "{row}"
    );
    assert!(!table.contains(key));
    let revoked = cli_ok(&edge, &["device", "revoke", "cli-phone"]);
    assert!(revoked.contains("`cli-phone` revoked"), "{revoked}");
    assert!(!cli_ok(&edge, &["device", "list"]).contains("cli-phone"));
    let missing = cli(&edge, &["device", "revoke", "cli-phone"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not_found"),
        "{missing:?}"
    );
}

/// Without `[devices]` an add is refused with what to do, by the API and
/// the CLI; listing and revoking still work (from the store), and only
/// an admin key may add or revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_devices_an_add_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let edge = edge(dir.path(), false);

    let (status, refused) = add(
        &edge,
        json!({ "name": "alice-phone", "user": "alice@corp.com" }),
    );
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "devices_not_served");
    assert_eq!(refused["message"], NOT_SERVED);
    assert_eq!(edge.admin_get("/api/v1/devices"), json!([]));
    assert_eq!(edge.admin_get("/api/v1/status")["devices"], json!([]));
    let (status, _) = call(&edge, "DELETE", "/api/v1/devices/alice-phone", Value::Null);
    assert_eq!(status, 404);

    let out = cli(
        &edge,
        &["device", "add", "alice-phone", "--user", "alice@corp.com"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(NOT_SERVED), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    let table = cli_ok(&edge, &["device", "list"]);
    assert_eq!(table.lines().count(), 1, "the header only: {table}");

    // A read-only key lists, and may not add or revoke.
    let (status, read) = call(
        &edge,
        "POST",
        "/api/v1/keys",
        json!({ "name": "dashboard", "scope": "read" }),
    );
    assert_eq!(status, 201, "{read}");
    let read = read["token"].as_str().unwrap();
    let (status, _) = edge.admin_request("GET", "/api/v1/devices", None, Some(read));
    assert_eq!(status, 200);
    for (method, path) in [("POST", "/api/v1/devices"), ("DELETE", "/api/v1/devices/x")] {
        let body = json!({ "name": "x", "user": "alice@corp.com" }).to_string();
        let (status, answer) = edge.admin_request(method, path, Some(&body), Some(read));
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("read_only_key")),
            "{method} {path}: {answer}"
        );
    }
}
