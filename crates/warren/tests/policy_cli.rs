//! `warren policy check|test|explain` on files, without an edge: exit codes
//! and what an operator reads.

mod common;

use common::bin;
use std::process::Command;

fn warren(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("warren runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const POLICY: &str = r#"
[groups]
"group:ops" = ["alice@corp.com"]

[[grants]]
src = ["group:ops"]
dst = ["grafana:443"]

[[grants]]
src = ["bob@corp.com"]
dst = ["db:5432"]
proto = "tcp"

[[tests]]
src = "alice@corp.com"
accept = ["grafana:443"]
deny = ["db:5432"]
"#;

#[test]
fn check_test_and_explain_a_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let f = file.to_str().unwrap();

    let (code, out, _) = warren(&["policy", "check", f]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("valid (2 grants, 1 group, 0 tags, 1 test)"),
        "{out}"
    );

    let (code, out, _) = warren(&["policy", "test", f]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 test passed"), "{out}");

    let (code, out, _) = warren(&[
        "policy",
        "explain",
        "--src",
        "alice@corp.com",
        "--dst",
        "grafana:443",
        "--file",
        f,
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "alice@corp.com -> grafana:443 (tcp): ALLOWED by grants[0]"
    );
    let (_, out, _) = warren(&[
        "policy",
        "explain",
        "--src",
        "bob@corp.com",
        "--dst",
        "db:5432/udp",
        "--file",
        f,
    ]);
    assert_eq!(
        out.trim(),
        "bob@corp.com -> db:5432/udp (udp): DENIED: no grant allows it; closest is grants[1]: it is for another protocol"
    );

    // Someone who is not one principal: a usage error, not a silent denial.
    let (code, _, err) = warren(&[
        "policy",
        "explain",
        "--src",
        "alice",
        "--dst",
        "grafana:443",
        "--file",
        f,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"alice\" is not a user (email)"), "{err}");
    let (code, _, err) = warren(&[
        "policy",
        "explain",
        "--src",
        "group:ops",
        "--dst",
        "grafana:443",
        "--file",
        f,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ask about one principal"), "{err}");

    // A test that fails: exit 1, the message names the grant.
    std::fs::write(
        &file,
        POLICY
            .replace(
                "deny = [\"db:5432\"]",
                "deny = [\"grafana:443\"]\naccept = [\"db:5432\"]",
            )
            .replace("accept = [\"grafana:443\"]\n", ""),
    )
    .unwrap();
    let (code, out, _) = warren(&["policy", "test", f]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("tests[0]: alice@corp.com -> grafana:443 (tcp): expected DENIED, got ALLOWED (grants[0])"), "{out}");
    assert!(
        out.contains("tests[0]: alice@corp.com -> db:5432 (tcp): expected ALLOWED, got DENIED"),
        "{out}"
    );

    // Every error at once, with its path: exit 2.
    std::fs::write(
        &file,
        "[[grants]]\nsrc = [\"group:nope\"]\ndst = [\"tag:web\"]\nport = 1\n",
    )
    .unwrap();
    let (code, _, err) = warren(&["policy", "check", f]);
    assert_eq!(code, 2, "{err}");
    for line in [
        "3 errors",
        "grants[0].port: unknown key (expected src, dst, proto, paths, methods, ssh, within)",
        "grants[0].src[0]: group \"group:nope\" is not defined in [groups]",
        "grants[0].dst[0]: tag \"tag:web\" has no owner: declare it in [tags]",
    ] {
        assert!(err.contains(line), "missing {line:?} in:\n{err}");
    }
}
