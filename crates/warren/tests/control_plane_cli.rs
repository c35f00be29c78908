//! The control plane end to end, through the CLI only: create a site and a
//! resource, run an agent with the printed credentials, reach the service,
//! move its target, rotate the secret, delete the resource.

mod common;

use common::{banner, bin, read_banner, within};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Output;
use std::time::Instant;
use warren_testkit::{EdgeProcess, EdgeSpec, Process};

/// Runs `warren ARGS` against the edge's API (token in the child's
/// environment, as an operator would export it).
fn cli<S: AsRef<std::ffi::OsStr>>(edge: &EdgeProcess, args: &[S]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .env("WARREN_API", format!("http://{}", edge.admin))
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .expect("run warren")
}

/// `warren resource VERB web`: a tcp resource on a free port to `target`
/// at site `lab`.
fn web_args(verb: &str, target: SocketAddr) -> Vec<String> {
    [
        "resource",
        verb,
        "web",
        "--type",
        "tcp",
        "--listen",
        "127.0.0.1:0",
        "--target",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("lab={target}")])
    .collect()
}

fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(edge: &EdgeProcess, args: &[S]) -> String {
    let out = cli(edge, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "warren {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_and_resource_lifecycle_through_the_cli() {
    let (a, b) = (banner("A").await, banner("B").await);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = EdgeSpec::new();
    spec.sites.clear();
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);

    // 1. A site; the secret and the agent command are printed once.
    let created = ok(&edge, &["site", "create", "lab"]);
    let secret = created
        .lines()
        .map(str::trim)
        .find(|l| l.len() > 30 && !l.contains(' '))
        .unwrap_or_else(|| panic!("no secret in: {created}"))
        .to_owned();
    assert!(
        created.contains(&format!("--id lab --pin {}", edge.pin))
            && created.contains(&format!("https://127.0.0.1:{}", edge.tunnel.port())),
        "{created}"
    );

    // 2. The agent, with the printed credentials.
    let args = edge.site_args(
        "lab",
        &secret,
        "tcp",
        &[&format!("{a}/tcp"), &format!("{b}/tcp")],
    );
    let agent = Process::spawn("agent", bin(), &args, dir.path());
    agent.wait_event("edge_connected");

    // 3. A resource, then the service through it.
    let out = ok(&edge, &web_args("create", a));
    let addr: SocketAddr = out
        .lines()
        .find_map(|l| l.strip_prefix("listening on "))
        .unwrap_or_else(|| panic!("no address in: {out}"))
        .parse()
        .unwrap();
    within("service reachable", || async move {
        read_banner(addr).await.as_deref() == Some("A")
    })
    .await;

    // 4. Move the target: the new one answers (how soon is printed; the
    // figure belongs to a benchmark, not to an assertion).
    let started = Instant::now();
    ok(&edge, &web_args("update", b));
    within("new target", || async move {
        read_banner(addr).await.as_deref() == Some("B")
    })
    .await;
    let took = started.elapsed();
    eprintln!("resource update (CLI process included) → new target answering: {took:?}");

    // A clash is refused with the API's code and exit status 2.
    let dup = cli(&edge, &web_args("create", a));
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("conflict"));

    // 5. Rotate: the running agent keeps working, flagged in status.
    let rotated = ok(&edge, &["site", "rotate", "lab"]);
    assert!(rotated.contains("keep working"), "{rotated}");
    let status: Value = serde_json::from_str(&ok(&edge, &["status", "--json"])).unwrap();
    let agents = &status["sites"][0]["agents"];
    assert_eq!(agents[0]["on_old_secret"], true, "{status:#}");
    assert_eq!(read_banner(addr).await.as_deref(), Some("B"));
    let table = ok(&edge, &["status"]);
    assert!(
        table.contains("ON OLD SECRET") && table.contains("lab"),
        "{table}"
    );
    assert!(
        table.contains(env!("CARGO_PKG_VERSION")),
        "agent version shown: {table}"
    );
    let sites = ok(&edge, &["site", "list"]);
    assert!(sites.contains("1 on old secret"), "{sites}");

    // 6. Delete the resource: its port closes.
    ok(&edge, &["resource", "delete", "web"]);
    within("port closed", || async move { common::port_closed(addr) }).await;
    let list = ok(&edge, &["resource", "list"]);
    assert!(!list.contains("web"), "{list}");

    // Without a token the CLI says where to find one (exit 2).
    let out = std::process::Command::new(bin())
        .args(["status", "--api", &format!("http://{}", edge.admin)])
        .env_remove("WARREN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin-token"));
}
