//! The control plane end to end, through the CLI only: create a site and a
//! resource, run an agent with the printed credentials, reach the service,
//! move its target, rotate the secret, delete the resource.

mod common;

use common::bin;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_testkit::{EdgeProcess, EdgeSpec, Process};

async fn banner(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(name.as_bytes()).await;
        }
    });
    addr
}

async fn read_banner(addr: SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut got = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut got))
        .await
        .ok()?
        .ok()?;
    Some(got)
}

/// Runs `warren ARGS` against the edge's API (token in the child's
/// environment, as an operator would export it).
fn cli(edge: &EdgeProcess, args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .env("WARREN_API", format!("http://{}", edge.admin))
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .expect("run warren")
}

fn ok(edge: &EdgeProcess, args: &[&str]) -> String {
    let out = cli(edge, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "warren {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn within<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
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
    let out = ok(
        &edge,
        &[
            "resource",
            "create",
            "web",
            "--type",
            "tcp",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &format!("lab={a}"),
        ],
    );
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

    // 4. Move the target: the new one answers within a second.
    let started = Instant::now();
    ok(
        &edge,
        &[
            "resource",
            "update",
            "web",
            "--type",
            "tcp",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &format!("lab={b}"),
        ],
    );
    within("new target", || async move {
        read_banner(addr).await.as_deref() == Some("B")
    })
    .await;
    let took = started.elapsed();
    eprintln!("resource update (CLI process included) → new target answering: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A clash is refused with the API's code and exit status 2.
    let dup = cli(
        &edge,
        &[
            "resource",
            "create",
            "web",
            "--type",
            "tcp",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &format!("lab={a}"),
        ],
    );
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
    within("port closed", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
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
