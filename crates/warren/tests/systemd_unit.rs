//! The unit `warren egress render --format systemd` writes passes
//! `systemd-analyze verify` without a single complaint (the tool exits 0
//! even on unknown keys, so its output must be empty too).
//!
//! Skips without systemd-analyze (`warren_testkit::skip`: a failure with
//! `CI` set).

mod common;

use common::bin;
use std::process::Command;

fn verify(unit_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("warren-site.service");
    std::fs::write(&unit, unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_rendered_unit_verifies_clean() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        warren_testkit::skip("no systemd-analyze (apt-get install systemd)");
        return;
    }
    let mut render = Command::new(bin());
    render
        .args([
            "egress",
            "render",
            "--format",
            "systemd",
            "--allow",
            "10.0.1.0/24:22/tcp",
            "--allow",
            "[fd00::/8]:443/tcp",
            "--allow",
            "127.0.0.1:8080-8090/tcp",
            "--edge",
            "203.0.113.10:7443",
            "--resolver",
            "10.0.0.1",
        ])
        .arg("--exec")
        .arg(bin());
    let out = warren_testkit::run_ok(&mut render, "warren egress render --format systemd");
    let unit = String::from_utf8(out.stdout).unwrap();
    for line in [
        "DynamicUser=yes",
        "IPAddressDeny=any",
        "IPAddressAllow=fd00::/8",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line} in\n{unit}");
    }
    let (ok, complaints) = verify(&unit);
    assert!(
        ok && complaints.trim().is_empty(),
        "systemd-analyze verify:\n{complaints}"
    );

    // The check can fail: a misspelt key and a bad value are reported.
    let broken = unit.replace("IPAddressDeny=any", "IPAdressDeny=any\nRestart=sometimes");
    let (_, complaints) = verify(&broken);
    assert!(complaints.contains("Unknown key"), "{complaints}");
    assert!(complaints.contains("sometimes"), "{complaints}");
}
