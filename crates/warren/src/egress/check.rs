//! `warren site --egress-check` / `--require-egress-wall`: at start, is a
//! second wall (in the kernel) keeping this agent to its allowlist?
//!
//! Two looks, because an unprivileged agent cannot read the ruleset:
//! * the rules: `nft -j list table inet warren_egress`, audited against the
//!   allowlist ([`warren_egress::kernel`]): a table for someone else, an
//!   element or accept rule the list does not cover, no final drop. Needs
//!   CAP_NET_ADMIN; without it the agent says so and relies on
//! * the probe: the agent listens on a loopback port its allowlist does not
//!   name and connects to it. A connection that gets through proves that no
//!   wall governs this process (or that it is wider than the list); one
//!   dropped, rejected or refused by the kernel proves a wall is there,
//!   whatever wrote it (Warren's table, systemd's `IPAddressDeny=`).
//!
//! Both see only the agent's own network namespace: a container's wall
//! written on the host and a Kubernetes NetworkPolicy are out of sight.

use crate::Failure;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use warren_egress::kernel::{audit, Identity, KernelTable, KernelTableError};
use warren_egress::render::{Subject, Wall, TABLE};
use warren_egress::{Allowlist, Protocol};

/// How long the probe waits for a connection the wall should drop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What the check found: holes make `--require-egress-wall` refuse.
#[derive(Debug, Default)]
pub(crate) struct WallReport {
    pub(crate) holes: Vec<String>,
    pub(crate) notes: Vec<String>,
}

enum TableRead {
    Found(KernelTable),
    Absent,
    Unreadable(String),
    Malformed(KernelTableError),
}

/// `nft -j list table inet warren_egress`: `None` when there is no such
/// table, an error (nft's first line) when it cannot be read.
pub(crate) fn list_table_json() -> Result<Option<String>, String> {
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "table", "inet", TABLE])
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return if stderr.contains("No such file or directory") {
            Ok(None)
        } else {
            Err(stderr
                .lines()
                .next()
                .unwrap_or("nft failed")
                .trim()
                .to_owned())
        };
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn read_table() -> TableRead {
    match list_table_json() {
        Err(e) => TableRead::Unreadable(e),
        Ok(None) => TableRead::Absent,
        Ok(Some(json)) => match KernelTable::parse(&json) {
            Ok(table) => TableRead::Found(table),
            Err(KernelTableError::NoTable) => TableRead::Absent,
            Err(e) => TableRead::Malformed(e),
        },
    }
}

fn identity() -> Identity {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .unwrap_or(u32::MAX);
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().trim_start_matches('/').to_owned());
    Identity { uid, cgroup }
}

enum Probe {
    Reached(SocketAddr),
    Stopped(SocketAddr, &'static str),
    Impossible(String),
}

/// Connects to a loopback listener of our own on a port the list does not
/// name: the kernel, not the agent, decides.
async fn probe(allow: &Allowlist) -> Probe {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut listener = None;
    for _ in 0..8 {
        match tokio::net::TcpListener::bind((loopback, 0)).await {
            Ok(l) => {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                if port != 0 && !allow.permits_addr(loopback, port, Protocol::Tcp) {
                    listener = Some(l);
                    break;
                }
            }
            Err(e) => return Probe::Impossible(format!("cannot listen on {loopback}: {e}")),
        }
    }
    let Some(listener) = listener else {
        return Probe::Impossible(
            "the allowlist permits every loopback port tried, so a probe proves nothing".into(),
        );
    };
    let Ok(addr) = listener.local_addr() else {
        return Probe::Impossible("the probe listener has no address".into());
    };
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Probe::Reached(addr),
        Err(_) => Probe::Stopped(addr, "dropped"),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Probe::Stopped(addr, "rejected"),
        Ok(Err(e)) if e.kind() == ErrorKind::PermissionDenied => Probe::Stopped(addr, "refused"),
        Ok(Err(e)) => Probe::Impossible(format!("connecting to {addr}: {e}")),
    }
}

/// Runs both looks for an agent with `allow` that dials `edge_host:edge_port`.
pub(crate) async fn check(allow: &Allowlist, edge_host: &str, edge_port: u16) -> WallReport {
    let mut report = WallReport::default();
    if allow.is_any() {
        report
            .holes
            .push("--allow-any: the allowlist permits everything, so no wall can match it".into());
        return report;
    }
    let table = read_table();
    match &table {
        TableRead::Found(kernel) => {
            let edge: Vec<SocketAddr> = tokio::net::lookup_host((edge_host, edge_port))
                .await
                .map(Iterator::collect)
                .unwrap_or_default();
            // Quietly: a name that does not resolve has no addresses to cover.
            let resolved: BTreeMap<String, Vec<IpAddr>> =
                crate::egress::system::lookup_names(allow, false)
                    .await
                    .into_iter()
                    .map(|(name, found)| (name, found.unwrap_or_default()))
                    .collect();
            let resolvers = crate::egress::system::resolv_conf_nameservers();
            let wall = Wall {
                allow,
                resolved: &resolved,
                resolvers: &resolvers,
                edge: &edge,
                subject: Subject::Uid(0),
            };
            match audit(kernel, &wall, &identity()) {
                Ok(findings) => {
                    for f in findings {
                        let list = if f.is_hole() {
                            &mut report.holes
                        } else {
                            &mut report.notes
                        };
                        list.push(f.to_string());
                    }
                }
                Err(e) => report
                    .notes
                    .push(format!("the rules were not compared: {e}")),
            }
            if report.holes.is_empty() {
                report
                    .notes
                    .push(format!("table inet {TABLE} matches the allowlist"));
            }
        }
        TableRead::Absent => report.notes.push(format!("no table inet {TABLE}")),
        TableRead::Unreadable(why) => report.notes.push(format!(
            "the ruleset cannot be read ({why}); an unprivileged agent cannot, \
             so the probe decides"
        )),
        TableRead::Malformed(e) => report
            .holes
            .push(format!("table inet {TABLE} is not Warren's shape: {e}")),
    }
    match probe(allow).await {
        Probe::Reached(addr) => report.holes.push(format!(
            "the kernel let this agent connect to {addr}/tcp, which its allowlist does not name: \
             no second wall governs this process (apply one: warren egress render --format \
             nftables --apply, or run it under the unit --format systemd writes)"
        )),
        Probe::Stopped(addr, how) => report.notes.push(format!(
            "a connection to {addr}/tcp, not on the allowlist, was {how} by the kernel: \
             a second wall governs this process"
        )),
        Probe::Impossible(why) if !matches!(table, TableRead::Found(_)) => report
            .holes
            .push(format!("cannot tell whether a second wall exists: {why}")),
        Probe::Impossible(why) => report.notes.push(format!("no probe: {why}")),
    }
    report
}

/// Logs the report; with `require`, refuses (exit 2) when there are holes.
pub(crate) fn enforce(report: &WallReport, require: bool) -> Result<(), Failure> {
    for note in &report.notes {
        tracing::info!(event = "egress_wall_note", "{note}");
    }
    if report.holes.is_empty() {
        tracing::info!(
            event = "egress_wall_ok",
            "the second wall keeps this agent to its allowlist"
        );
        return Ok(());
    }
    for hole in &report.holes {
        tracing::warn!(event = "egress_wall_hole", "{hole}");
    }
    if require {
        return Err(Failure::Usage(format!(
            "--require-egress-wall: the second wall is missing or wider than the allowlist:\n  - {}",
            report.holes.join("\n  - ")
        )));
    }
    Ok(())
}
