//! The machine's side of the egress commands: running `nft`, and resolving
//! the allowlist's names as the agent would.

use crate::Failure;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use warren_egress::render::service_namespace;
use warren_egress::{Allowlist, HostPattern};

/// Runs `nft ARGS` with `input` on stdin.
pub(crate) fn nft(args: &[&str], input: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| anyhow::anyhow!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::Other(anyhow::anyhow!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub(crate) fn resolv_conf_nameservers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse().ok())
        .collect()
}

/// Looks up each distinct name of `list` with the system resolver (the one
/// the agent uses, so the wall and the agent agree on what a name means),
/// skipping Kubernetes Services when `skip_services` (their rule selects
/// pods, not addresses). The names are looked up at once, so one slow or
/// dead name costs one resolver timeout, not one per name.
pub(crate) async fn lookup_names(
    list: &Allowlist,
    skip_services: bool,
) -> BTreeMap<String, std::io::Result<Vec<IpAddr>>> {
    let names: BTreeSet<&String> = list
        .rules()
        .iter()
        .filter_map(|rule| match &rule.host {
            HostPattern::Name(name) => Some(name),
            _ => None,
        })
        .filter(|name| !(skip_services && service_namespace(name).is_some()))
        .collect();
    let lookups = names.into_iter().map(|name| async move {
        let found = tokio::net::lookup_host((name.as_str(), 0))
            .await
            .map(|found| {
                let mut addrs: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                addrs.sort();
                addrs.dedup();
                addrs
            });
        (name.clone(), found)
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .collect()
}

/// The list's names resolved now, for a rule that is a snapshot of them
/// (said in a warning); a name that does not resolve is refused (exit 2).
pub(crate) async fn resolve_names(
    list: &Allowlist,
    kube: bool,
) -> Result<BTreeMap<String, Vec<IpAddr>>, Failure> {
    let mut out = BTreeMap::new();
    for (name, found) in lookup_names(list, kube).await {
        let addrs = found.map_err(|e| Failure::Usage(format!("cannot resolve `{name}`: {e}")))?;
        tracing::warn!(
            name = %name, addrs = ?addrs,
            "`{name}` was resolved now; the rule is a snapshot of these addresses (render again when they change, or keep it fresh with `warren egress apply --watch`)"
        );
        out.insert(name, addrs);
    }
    Ok(out)
}
