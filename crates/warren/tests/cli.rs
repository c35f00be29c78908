//! The command-line contract: exit codes, messages naming file/line/key,
//! reload that refuses a bad file and keeps serving.

mod common;

use common::{bin, echo_ok};
use std::process::Command;
use std::time::Duration;
use warren_testkit::{echo_tcp, EdgeProcess, EdgeSpec, ResourceSpec};

const SIGHUP: i32 = 1;

fn run(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_good_file_and_rejects_a_bad_one_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        EdgeSpec::new()
            .resource(ResourceSpec::tcp("a", "home", "127.0.0.1:1"))
            .to_toml(),
    )
    .unwrap();
    let (code, out, _) = run(&["edge", "--config", "good.toml", "--check"], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("valid (1 site, 1 resource)"), "{out}");

    std::fs::write(
        dir.path().join("bad.toml"),
        "[edge]\ntunnel_listen = \"0.0.0.0:99999\"\n\n[[resource]]\nname = \"x\"\ntype = \"tcp\"\nlisten = \"0.0.0.0:1\"\ntargets = [{ site = \"ghost\", address = \"h:1\" }]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["edge", "--config", "bad.toml", "--check"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml:2: edge.tunnel_listen"), "{err}");
    assert!(
        err.contains("resource[0].targets[0].site: no [[site]] with id `ghost`"),
        "{err}"
    );
    assert!(err.contains("2 errors"), "{err}");

    let (code, _, err) = run(&["edge", "--config", "missing.toml", "--check"], dir.path());
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn print_pin_is_stable_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("edge.toml"), EdgeSpec::new().to_toml()).unwrap();
    let (c1, pin1, _) = run(
        &["edge", "--config", "edge.toml", "--print-pin"],
        dir.path(),
    );
    let (c2, pin2, _) = run(
        &["edge", "--config", "edge.toml", "--print-pin"],
        dir.path(),
    );
    assert_eq!((c1, c2), (0, 0));
    assert_eq!(pin1.trim().len(), 64);
    assert_eq!(pin1, pin2);
}

#[test]
fn site_refuses_a_bad_allowlist_naming_each_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &[
            "site",
            "--endpoint",
            "https://127.0.0.1:1",
            "--id",
            "x",
            "--secret",
            "y",
            "--pin",
            &"ab".repeat(32),
            "--allow",
            "10.0.0.0/33:22/tcp",
            "--allow",
            "host:0/tcp",
            "--allow",
            "host:70000/tcp",
            "--allow",
            "host:22/sctp",
            "--allow",
            "",
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "{err}");
    for needle in [
        "`10.0.0.0/33:22/tcp`",
        "prefix length 33",
        "`host:0/tcp`",
        "`host:70000/tcp`",
        "unknown protocol `sctp`",
        "empty entry",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let (code, _, err) = run(
        &[
            "site",
            "--endpoint",
            "https://127.0.0.1:1",
            "--id",
            "x",
            "--secret",
            "y",
        ],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("would refuse every stream"), "{err}");
}

#[test]
fn site_flags_read_warren_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("site")
        .env("WARREN_ENDPOINT", "https://127.0.0.1:1")
        .env("WARREN_ID", "x")
        .env("WARREN_SECRET", "y")
        .env("WARREN_PIN", "not-a-pin")
        .env("WARREN_ALLOW", "127.0.0.1:80/tcp,127.0.0.1:53/udp")
        .current_dir(dir.path())
        .output()
        .unwrap();
    // Everything but the pin came from the environment; the pin is what fails.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pin") && err.contains("not-a-pin"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_file_keeps_the_old_config_and_a_good_one_applies() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_tcp().await;
    let spec = EdgeSpec::new().resource(ResourceSpec::tcp("echo", "home", echo));
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let _agent = edge.start_agent("agent", "tcp", &[&format!("{echo}/tcp")]);
    let addr = edge.resource_addr("echo");
    echo_ok(addr, b"one").await.unwrap();

    std::fs::write(
        dir.path().join("edge.toml"),
        "[edge]\nbogus = 1\n[[resource]]\nname = 3\n",
    )
    .unwrap();
    edge.process.signal(SIGHUP);
    edge.process
        .wait_log("reload refused", Duration::from_secs(10), |v| {
            v["event"] == "reload_refused" && v["errors"].is_number()
        });
    echo_ok(addr, b"still served").await.unwrap();

    // A valid file with a second resource (and the first kept) applies live.
    let mut spec = spec.resource(ResourceSpec::tcp("echo2", "home", echo));
    spec.resources[0].listen = addr.to_string();
    std::fs::write(dir.path().join("edge.toml"), spec.to_toml()).unwrap();
    edge.process.signal(SIGHUP);
    edge.process.wait_event("config_reloaded");
    echo_ok(edge.resource_addr("echo2"), b"two").await.unwrap();
    echo_ok(addr, b"first still there").await.unwrap();
}
