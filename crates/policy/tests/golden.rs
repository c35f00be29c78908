//! Golden policies: every file under `tests/policy/` is a readable policy
//! whose header says what it must do:
//!
//! * `# error: PATH: MESSAGE` lines: checking it fails with exactly these
//!   errors, in this order;
//! * `# test-failure: MESSAGE` lines: it checks, and its embedded tests fail
//!   with exactly these messages;
//! * neither: it checks, it has embedded tests, and they all pass.

use std::path::Path;

fn expected(text: &str, directive: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(directive))
        .map(|l| l.trim().to_owned())
        .collect()
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let errors = expected(&text, "# error:");
    let failures = expected(&text, "# test-failure:");
    match warren_policy::compile(&text) {
        Err(got) => {
            let got: Vec<String> = got.0.iter().map(|e| e.to_string()).collect();
            if got != errors {
                return Err(format!("errors\n  got:  {got:#?}\n  want: {errors:#?}"));
            }
        }
        Ok(policy) => {
            if !errors.is_empty() {
                return Err(format!("checked, but should fail with {errors:#?}"));
            }
            let got: Vec<String> = warren_policy::run_tests(&policy)
                .into_iter()
                .map(|f| f.message)
                .collect();
            if got != failures {
                return Err(format!(
                    "test failures\n  got:  {got:#?}\n  want: {failures:#?}"
                ));
            }
            if policy.file().tests.is_empty() {
                return Err("no [[tests]]: the file asserts nothing".into());
            }
        }
    }
    Ok(())
}

#[test]
fn every_golden_policy_does_what_its_header_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "only {} golden policies", files.len());
    let mut failed = Vec::new();
    for f in &files {
        if let Err(e) = run(f) {
            failed.push(format!("{}: {e}", f.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}
