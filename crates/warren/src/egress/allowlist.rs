//! The allowlist as the agent and the egress commands read it from their
//! flags.

use crate::Failure;
use warren_egress::Allowlist;

/// The allowlist from `--allow`, `--allow-file` and `--allow-any`, every bad
/// entry named (exit 2); an empty list is refused too. Shared by
/// `warren site` and `warren egress render`, so both read one list alike.
pub(crate) fn load_allowlist(
    allow: &[String],
    allow_file: Option<&std::path::Path>,
    allow_any: bool,
) -> Result<Allowlist, Failure> {
    let mut errors = Vec::new();
    let mut list = match Allowlist::parse(allow.iter().map(String::as_str)) {
        Ok(l) => l,
        Err(e) => {
            errors.extend(e.iter().map(|e| format!("--allow: {e}")));
            Allowlist::deny_all()
        }
    };
    if let Some(path) = allow_file {
        match std::fs::read_to_string(path) {
            Ok(text) => match Allowlist::parse_file(&text) {
                Ok(l) => list.extend(l),
                Err(e) => errors.extend(e.iter().map(|e| format!("{}: {e}", path.display()))),
            },
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::Usage(format!(
            "bad allowlist:\n  {}",
            errors.join("\n  ")
        )));
    }
    if allow_any {
        return Ok(Allowlist::allow_any());
    }
    if list.rules().is_empty() {
        return Err(Failure::Usage(
            "no --allow, --allow-file or --allow-any: this agent would refuse every stream. \
             Name the targets it may reach, e.g. --allow 127.0.0.1:8080/tcp"
                .into(),
        ));
    }
    Ok(list)
}
