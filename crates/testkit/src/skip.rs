//! Skips that cannot hide.
//!
//! A test that cannot run here (a missing program, no root) calls [`skip`]
//! and returns. The skip is never silent:
//! * one line `SKIPPED <binary>::<test>: <reason>` goes straight to the
//!   process's stderr (libtest captures only the `print!` family, so a
//!   passing test's skip is still shown);
//! * the same line is appended to the skip log, `WARREN_SKIP_LOG` or else
//!   `skipped-tests.log` next to the test binaries' `deps/` directory
//!   (`target/debug/`), which `.ci/test` counts at the end of a run;
//! * with `CI` set (non-empty) it panics instead: CI installs everything
//!   the tests need, so there a skip is a failure.

use std::io::Write;
use std::path::PathBuf;

/// Skips the calling test for `reason` (see the module docs): panics when
/// `CI` is set, else reports the skip and returns, and the test returns
/// right after. The test is named by its thread (libtest names each test's
/// thread after it) and the binary it runs in.
pub fn skip(reason: impl std::fmt::Display) {
    let line = format!("SKIPPED {}: {reason}", test_name());
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{line}; CI is set, so every test must run (.ci/run installs what they need)");
    }
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(path) = log_path() {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(
                std::io::stderr(),
                "cannot log the skip to {}: {e}",
                path.display()
            );
        }
    }
}

/// `binary::test`, e.g. `netns::agent_notices_a_silent_drop`.
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            // Cargo names test binaries `<name>-<16 hex digits>`.
            Some((name, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                name.to_owned()
            }
            _ => stem,
        })
        .unwrap_or_else(|| "?".into());
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("?"))
}

fn log_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARREN_SKIP_LOG").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    // target/<profile>/deps/<binary> → target/<profile>/skipped-tests.log
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("skipped-tests.log"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Output};

    /// Skips when this binary runs it again for the tests below; a no-op
    /// in an ordinary run.
    #[test]
    fn skipping_child() {
        if std::env::var_os("WARREN_SKIP_SELFTEST").is_some() {
            super::skip("the self-test asked for it");
        }
    }

    fn run_child(ci: Option<&str>, log: &Path) -> Output {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "skip::tests::skipping_child"])
            .env("WARREN_SKIP_SELFTEST", "1")
            .env("WARREN_SKIP_LOG", log)
            .env_remove("CI");
        if let Some(ci) = ci {
            cmd.env("CI", ci);
        }
        cmd.output().unwrap()
    }

    const LINE: &str =
        "SKIPPED warren_testkit::skip::tests::skipping_child: the self-test asked for it";

    #[test]
    fn a_skip_passes_but_is_shown_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.log");
        for ci in [None, Some("")] {
            let out = run_child(ci, &log);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "CI={ci:?}: {out:?}");
            // Shown though the test passed and its output was captured.
            assert!(stderr.contains(LINE), "CI={ci:?}: {stderr}");
        }
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(logged, format!("{LINE}\n{LINE}\n"));
    }

    #[test]
    fn with_ci_set_a_skip_fails() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.log");
        let out = run_child(Some("true"), &log);
        assert!(!out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(LINE) && stdout.contains("CI is set"),
            "{stdout}"
        );
        assert!(!log.exists(), "a failed skip is not counted as a skip");
    }
}
