//! `warren policy check|test|explain`: the policy file, without an edge.
//!
//! `check` prints every error with its path (exit 2 if any); `test` also
//! runs the file's `[[tests]]` (exit 1 if one fails); `explain` says which
//! grant allows a principal to reach a target, or why none does. Each works
//! on a file, or without one on the policy a running edge decides with
//! (`--api`, read from `GET /api/v1/policy` and checked here, by the same
//! code).

use crate::Failure;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file: every error at once, each with its path (exit 2).
    Check {
        /// The policy file (TOML); without it, the live policy of the edge
        /// at `--api`.
        file: Option<PathBuf>,
        #[command(flatten)]
        api: crate::api_client::ApiArgs,
    },
    /// Validate, then run the file's embedded tests (exit 1 if any fails).
    Test {
        /// The policy file (TOML); without it, the live policy of the edge
        /// at `--api`.
        file: Option<PathBuf>,
        #[command(flatten)]
        api: crate::api_client::ApiArgs,
    },
    /// Which grant lets a principal reach a target, or why nothing does.
    Explain {
        /// The principal: `alice@corp.com`, `tag:NAME` or `key:ID`.
        #[arg(long)]
        src: String,
        /// The target: `RESOURCE[:PORT][/udp]`, `tag:NAME:PORT`, `host:NAME:PORT`,
        /// `ADDRESS:PORT`, then optionally ` METHOD /path` for an http request.
        #[arg(long)]
        dst: String,
        /// Groups the user's SSO claims would name (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The policy file (TOML); without it, the live policy of the edge
        /// at `--api`.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        api: crate::api_client::ApiArgs,
    },
}

fn load(file: &Path) -> Result<warren_policy::Policy, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(format!("reading {}: {e}", file.display())))?;
    compile(&text, &file.display().to_string())
}

fn compile(text: &str, source: &str) -> Result<warren_policy::Policy, Failure> {
    warren_policy::compile(text).map_err(|errors| {
        Failure::Usage(format!(
            "{source}: {} error{}:\n{errors}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" }
        ))
    })
}

/// The policy a running edge decides with, and how to name it.
async fn live(
    api: &crate::api_client::ApiArgs,
) -> Result<(warren_policy::Policy, String), Failure> {
    let live = api.call(hyper::Method::GET, "/api/v1/policy", None).await?;
    let text = live["text"]
        .as_str()
        .ok_or_else(|| Failure::Other(anyhow::anyhow!("the edge sent no policy text")))?;
    let name = match live["file"].as_str() {
        Some(file) => format!("the edge's policy (version {}, {file})", live["version"]),
        None => format!("the edge's policy (version {})", live["version"]),
    };
    Ok((compile(text, &name)?, name))
}

/// The policy in `file`, or the live one at `api`, and how to name it.
async fn file_or_live(
    file: Option<&Path>,
    api: &crate::api_client::ApiArgs,
) -> Result<(warren_policy::Policy, String), Failure> {
    match file {
        Some(f) => Ok((load(f)?, f.display().to_string())),
        None => live(api).await,
    }
}

pub(crate) async fn run(command: PolicyCommand) -> Result<(), Failure> {
    match command {
        PolicyCommand::Check { file, api } => {
            let (policy, name) = file_or_live(file.as_deref(), &api).await?;
            let f = policy.file();
            println!(
                "{name}: valid ({} grant{}, {} group{}, {} tag{}, {} test{})",
                f.grants.len(),
                plural(f.grants.len()),
                f.groups.len(),
                plural(f.groups.len()),
                f.tags.len(),
                plural(f.tags.len()),
                f.tests.len(),
                plural(f.tests.len())
            );
            Ok(())
        }
        PolicyCommand::Test { file, api } => {
            let (policy, name) = file_or_live(file.as_deref(), &api).await?;
            let failures = warren_policy::run_tests(&policy);
            let tests = policy.file().tests.len();
            if failures.is_empty() {
                println!("{name}: {tests} test{} passed", plural(tests));
                return Ok(());
            }
            for f in &failures {
                println!("tests[{}]: {}", f.test, f.message);
            }
            Err(Failure::Other(anyhow::anyhow!(
                "{name}: {} expectation{} not met",
                failures.len(),
                plural(failures.len())
            )))
        }
        PolicyCommand::Explain {
            src,
            dst,
            groups,
            file,
            api,
        } => {
            let (policy, _) = file_or_live(file.as_deref(), &api).await?;
            let target = warren_policy::TestTarget::parse(&dst, policy.file())
                .map_err(|e| Failure::Usage(format!("--dst: {e}")))?;
            let who = warren_policy::Who::parse(&src, &groups, policy.file())
                .map_err(|e| Failure::Usage(format!("--src/--group: {e}")))?;
            println!("{}", warren_policy::explain(&policy, &who, &target));
            Ok(())
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
