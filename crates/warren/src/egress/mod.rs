//! `warren egress render`: the site's allowlist as a second, kernel-level
//! wall (nftables) or a sandboxed systemd unit, from the same `--allow` /
//! `--allow-file` the agent reads.

pub(crate) mod allowlist;
pub(crate) mod check;
pub(crate) mod system;
pub(crate) mod watch;

use crate::egress::allowlist::load_allowlist;
use crate::egress::system::{nft, resolv_conf_nameservers, resolve_names};
use crate::Failure;
use clap::{Args, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use warren_egress::render::{
    helm_values, network_policy, nftables, systemd_unit, KubeOptions, ServicePeer, Subject, Wall,
};
use warren_egress::{Allowlist, HostPattern};

#[derive(Subcommand, Debug)]
pub(crate) enum EgressCommand {
    /// Print the allowlist as kernel rules, a sandboxed unit file, a
    /// NetworkPolicy or Helm values.
    Render(RenderArgs),
    /// Load the nftables wall now (`render --format nftables --apply`), and
    /// with --watch keep its names' addresses fresh.
    Apply(ApplyArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    wall: RenderArgs,
    /// Stay running: re-resolve the list's names when their DNS records' TTLs
    /// end (and at least every --interval) and, when an address changed, swap
    /// the sets' contents in one nft transaction.
    #[arg(long)]
    watch: bool,
    /// The longest --watch waits between looks, e.g. 30s; a record whose TTL
    /// ends sooner is looked at sooner (but not more than once a second).
    #[arg(long, default_value = "30s", value_parser = crate::duration::humantime_duration)]
    interval: std::time::Duration,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// An `nft -f` ruleset in its own table (`inet warren_egress`).
    Nftables,
    /// A systemd unit with `IPAddressDeny=any` and the list as `IPAddressAllow=`.
    Systemd,
    /// A Kubernetes NetworkPolicy for the agent's pods.
    K8s,
    /// Values for the deploy/helm/warren-site chart (allowlist + NetworkPolicy).
    HelmValues,
}

#[derive(Args, Debug)]
pub(crate) struct RenderArgs {
    /// What to render.
    #[arg(long, value_enum, default_value = "nftables")]
    format: Format,
    /// Allowlist entries, as for `warren site --allow`.
    #[arg(
        long = "allow",
        env = "WARREN_ALLOW",
        value_delimiter = ',',
        value_name = "TARGET"
    )]
    allow: Vec<String>,
    /// Allowlist file, as for `warren site --allow-file`.
    #[arg(long, env = "WARREN_ALLOW_FILE", value_name = "FILE")]
    allow_file: Option<PathBuf>,
    /// The edge's tunnel address (HOST:PORT; a name is resolved now). Repeatable.
    #[arg(long = "edge", value_name = "HOST:PORT")]
    edge: Vec<String>,
    /// DNS resolvers the agent may ask (default: the nameservers of /etc/resolv.conf).
    #[arg(long = "resolver", value_name = "IP")]
    resolvers: Vec<IpAddr>,
    /// Govern the traffic of this uid (a host install with its own user).
    #[arg(long, group = "subject")]
    uid: Option<u32>,
    /// Govern the traffic of this cgroup v2 path (e.g. system.slice/warren-site.service).
    #[arg(long, group = "subject")]
    cgroup: Option<String>,
    /// Govern packets from this address or network (a container).
    #[arg(long, group = "subject", value_name = "IP[/PREFIX]")]
    source: Option<String>,
    /// k8s: the pods behind a Service the list names, and the container port
    /// the policy must open (kube-proxy rewrites the Service port before the
    /// policy sees it): SERVICE:PORT=LABEL=VALUE[,LABEL=VALUE]:TARGET_PORT.
    #[arg(long = "service", value_name = "SERVICE:PORT=LABELS:TARGET_PORT")]
    services: Vec<String>,
    /// k8s: labels of the agent's pods (LABEL=VALUE, repeatable).
    #[arg(
        long = "pod-label",
        value_name = "LABEL=VALUE",
        default_value = "app.kubernetes.io/name=warren-site"
    )]
    pod_labels: Vec<String>,
    /// k8s: the NetworkPolicy's namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// k8s: the NetworkPolicy's name.
    #[arg(long, default_value = "warren-site-egress")]
    name: String,
    /// systemd: the warren binary's path in ExecStart.
    #[arg(long, default_value = "/usr/local/bin/warren")]
    exec: String,
    /// nftables: load the rules now (`nft -f`; replaces only Warren's table,
    /// atomically; applying twice changes nothing).
    #[arg(long, group = "action")]
    apply: bool,
    /// nftables: have `nft` check the rules without loading them.
    #[arg(long, group = "action")]
    dry_run: bool,
    /// nftables: delete Warren's table (and nothing else); no error if absent.
    #[arg(long, group = "action")]
    remove: bool,
}

pub(crate) async fn run(cmd: EgressCommand) -> Result<(), Failure> {
    let (args, watch) = match cmd {
        EgressCommand::Render(args) => (args, None),
        EgressCommand::Apply(ApplyArgs {
            wall: mut args,
            watch,
            interval,
        }) => {
            if args.format != Format::Nftables {
                return Err(Failure::Usage(
                    "warren egress apply loads nftables rules; --format is nftables".into(),
                ));
            }
            if watch && (args.dry_run || args.remove) {
                return Err(Failure::Usage(
                    "--watch keeps applied rules fresh: not with --dry-run or --remove".into(),
                ));
            }
            args.apply = !(args.dry_run || args.remove);
            (args, watch.then_some(interval))
        }
    };
    if args.remove {
        // `table` first makes the delete succeed when it is absent, in the
        // same atomic transaction.
        let table = warren_egress::render::TABLE;
        nft(
            &["-f", "-"],
            &format!("table inet {table}\ndelete table inet {table}\n"),
        )?;
        tracing::info!(event = "egress_wall_removed", "table inet {table} removed");
        return Ok(());
    }
    let kube = matches!(args.format, Format::K8s | Format::HelmValues);
    let services = args
        .services
        .iter()
        .map(|s| ServicePeer::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    let mut pod_labels = BTreeMap::new();
    for pair in &args.pod_labels {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--pod-label `{pair}`: expected LABEL=VALUE")))?;
        pod_labels.insert(k.to_owned(), v.to_owned());
    }
    let allow = load_allowlist(&args.allow, args.allow_file.as_deref(), false)?;
    let subject = match (args.uid, &args.cgroup, &args.source) {
        (Some(uid), _, _) => Subject::Uid(uid),
        (_, Some(path), _) => Subject::Cgroup(path.trim_matches('/').to_owned()),
        (_, _, Some(src)) => {
            let entry = if src.contains(':') && !src.starts_with('[') {
                format!("[{src}]:1/tcp")
            } else {
                format!("{src}:1/tcp")
            };
            match Allowlist::parse([entry.as_str()]).map(|l| l.rules()[0].host.clone()) {
                Ok(HostPattern::Net(n)) => Subject::Source(n),
                _ => {
                    return Err(Failure::Usage(format!(
                        "--source `{src}`: expected an IP or CIDR"
                    )))
                }
            }
        }
        (None, None, None) if args.format != Format::Nftables => Subject::Uid(0),
        (None, None, None) => {
            return Err(Failure::Usage(
                "say whose traffic the wall governs: --uid, --cgroup or --source".into(),
            ))
        }
    };
    let mut edge: Vec<SocketAddr> = Vec::new();
    for e in &args.edge {
        let found = tokio::net::lookup_host(e.as_str())
            .await
            .map_err(|err| Failure::Usage(format!("--edge `{e}`: {err}")))?;
        edge.extend(found);
    }
    // In a cluster, DNS is kube-dns unless resolvers are named.
    let resolvers = if kube || !args.resolvers.is_empty() {
        args.resolvers.clone()
    } else {
        resolv_conf_nameservers()
    };
    let resolved = resolve_names(&allow, kube).await?;
    let wall = Wall {
        allow: &allow,
        resolved: &resolved,
        resolvers: &resolvers,
        edge: &edge,
        subject,
    };
    let kube_options = KubeOptions {
        name: &args.name,
        namespace: args.namespace.as_deref(),
        pod_labels,
        services: &services,
    };
    let text = match args.format {
        Format::Nftables => nftables(&wall).map_err(|e| e.to_string()),
        Format::Systemd => systemd_unit(&wall, &args.exec).map_err(|e| e.to_string()),
        Format::K8s => network_policy(&wall, &kube_options).map_err(|e| e.to_string()),
        Format::HelmValues => helm_values(&wall, &kube_options).map_err(|e| e.to_string()),
    }
    .map_err(Failure::Usage)?;
    if (args.apply || args.dry_run) && args.format != Format::Nftables {
        return Err(Failure::Usage(
            "--apply and --dry-run are for --format nftables".into(),
        ));
    }
    if args.dry_run {
        nft(&["-c", "-f", "-"], &text)?;
        eprintln!("nft accepts the rules (nothing was loaded)");
    } else if args.apply {
        nft(&["-f", "-"], &text)?;
        tracing::info!(
            event = "egress_wall_applied",
            "table inet {} loaded",
            warren_egress::render::TABLE
        );
        if let Some(interval) = watch {
            let subject = wall.subject.clone();
            let follow = crate::egress::watch::Follow {
                allow,
                resolved,
                resolvers,
                edge,
                subject,
            };
            return crate::egress::watch::run(follow, interval).await;
        }
    } else {
        print!("{text}");
    }
    Ok(())
}
