//! The organisation's SSH CA (issue 17's first step), through the real
//! edge and binary: made on first use, the same key after a restart, read by
//! OpenSSH's own `ssh-keygen`; the private key never in the store in clear,
//! and a store whose key-encryption key is not this edge's refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use warren_testkit::{EdgeProcess, EdgeSpec};

/// `warren ssh ca-key`: (exit ok, stdout, stderr).
fn ca_key(edge: &EdgeProcess) -> (bool, String, String) {
    ca_key_with(edge, &[])
}

fn ca_key_with(edge: &EdgeProcess, extra: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(common::bin())
        .args(["ssh", "ca-key", "--api", &format!("http://{}", edge.admin)])
        .args(extra)
        .env("WARREN_TOKEN", edge.token.as_deref().unwrap())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_ssh_ca_is_made_once_sealed_in_the_store_and_read_by_openssh() {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeProcess::start(common::bin(), dir.path(), &EdgeSpec::new());
    let (ok, line, said) = ca_key(&edge);
    assert!(ok, "{said}");
    let line = line.trim().to_owned();
    assert!(
        line.starts_with("ssh-ed25519 ") && line.ends_with(" warren-ca"),
        "{line}"
    );
    let fingerprint = said
        .trim_start_matches('(')
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{said}");
    // The same key when asked again.
    assert_eq!(ca_key(&edge).1.trim(), line);

    // OpenSSH reads it, with the same fingerprint.
    let pub_file = dir.path().join("ca.pub");
    std::fs::write(&pub_file, format!("{line}\n")).unwrap();
    match std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&pub_file)
        .output()
    {
        Ok(out) => {
            let listed = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{listed}");
            assert!(listed.contains(&fingerprint), "{listed} vs {fingerprint}");
            assert!(listed.contains("(ED25519)"), "{listed}");
        }
        Err(_) => {
            warren_testkit::skip("ssh-keygen is not installed (.ci/run installs openssh-client)");
            return;
        }
    }

    // The key-encryption key is the edge's own file, 0600; the store
    // holds the private key only sealed (no PEM in the database or its WAL).
    let kek = dir.path().join("data/store.kek");
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The database must be there to be read; its WAL may have been
    // checkpointed away.
    for (name, required) in [("warren.db", true), ("warren.db-wal", false)] {
        let path = dir.path().join("data").join(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if required => panic!("{}: {e}", path.display()),
            Err(_) => continue,
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("OPENSSH PRIVATE KEY"),
            "{name} holds the key in clear"
        );
        assert!(
            !text.contains("b3BlbnNzaC1rZXktdjE"),
            "{name} holds the key's base64"
        );
    }

    // Restarted: the same CA. With another key-encryption key: refused,
    // saying which file to copy, and nothing replaced.
    drop(edge);
    let edge = EdgeProcess::start_existing(common::bin(), dir.path());
    assert_eq!(ca_key(&edge).1.trim(), line, "the same CA after a restart");
    drop(edge);
    let original = std::fs::read_to_string(&kek).unwrap();
    std::fs::write(&kek, hex_of_32(7)).unwrap();
    let edge = EdgeProcess::start_existing(common::bin(), dir.path());
    let (ok, _, said) = ca_key(&edge);
    assert!(!ok, "a CA opened with another key-encryption key");
    assert!(said.contains("store.kek"), "{said}");
    drop(edge);
    std::fs::write(&kek, original).unwrap();
    let edge = EdgeProcess::start_existing(common::bin(), dir.path());
    assert_eq!(
        ca_key(&edge).1.trim(),
        line,
        "the original key opens it again"
    );

    // Rotation with an overlap: a new CA signs, the old one is still
    // listed (hosts trust both) until the overlap ends.
    let (ok, rotated, said) = ca_key_with(&edge, &["--rotate", "--overlap", "3s"]);
    assert!(ok, "{said}");
    let lines: Vec<&str> = rotated.lines().collect();
    assert_eq!(lines.len(), 2, "{rotated}");
    assert_ne!(lines[0], line, "a new CA signs");
    assert_eq!(lines[1], line, "the old one is still trusted");
    assert!(
        !said.contains(&fingerprint),
        "the old one no longer signs: {said}"
    );
    let new = lines[0].to_owned();
    assert_eq!(ca_key(&edge).1, rotated, "asked again, the same list");
    std::thread::sleep(std::time::Duration::from_millis(3200));
    assert_eq!(ca_key(&edge).1.trim(), new, "the overlap is over");
    let audit = edge.admin_get("/api/v1/audit?limit=1000");
    let row = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "edge_key.rotate")
        .expect("the rotation is audited");
    assert!(!row.to_string().contains("private"), "{row}");
}

fn hex_of_32(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}
