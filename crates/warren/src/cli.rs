//! The command line, exactly as `shared/CONTRACT.md` writes it.

pub(crate) use crate::admin_cmd::{ResourceCommand, SiteCommand};
pub(crate) use crate::status_cmd::StatusArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Warren: publish and reach private services without opening an inbound port.
#[derive(Parser, Debug)]
#[command(name = "warren", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WARREN_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the public edge (on a VPS): tunnel listener, resources, admin API.
    Edge(EdgeArgs),
    /// Run a site agent: dial out to the edge, serve only allowlisted targets.
    /// With a subcommand: manage sites through the edge's admin API.
    Site(Box<SiteArgs>),
    /// Manage resources through the edge's admin API.
    Resource {
        #[command(subcommand)]
        command: Box<ResourceCommand>,
    },
    /// Sites, agents, versions, health, streams and bytes (admin API).
    Status(StatusArgs),
    /// The site's allowlist as a second wall: nftables rules or a sandboxed systemd unit.
    Egress {
        #[command(subcommand)]
        command: Box<crate::egress::EgressCommand>,
    },
    /// All-in-one quickstart: an edge with its state in ./warren-data.
    Up(UpArgs),
    /// Who may reach what: check a policy file, run its tests, explain a decision.
    Policy {
        #[command(subcommand)]
        command: crate::policy_cmd::PolicyCommand,
    },
    /// People who sign in: add, list, disable, enable, logout, reset-2fa (admin API).
    User {
        #[command(subcommand)]
        command: crate::user_cmd::UserCommand,
    },
    /// People's WireGuard devices: add (a wg-quick config and QR code),
    /// list, revoke (admin API).
    Device {
        #[command(subcommand)]
        command: crate::device_cmd::DeviceCommand,
    },
    /// Sign the command line in (a code confirmed in your browser) for the
    /// commands that follow; `--status` says who it is.
    Login(crate::login_cmd::LoginArgs),
    /// Log in to an ssh resource with a 5-minute certificate (OpenSSH
    /// through the edge); `ca-key`: the organisation's CA for hosts.
    Ssh(crate::ssh_cmd::SshArgs),
    /// Reach private resources without WireGuard: local forwards (`-L
    /// 127.0.0.1:3000=grafana:3000`) and a SOCKS5 proxy, as `warren login`'s user.
    Connect(crate::connect_cmd::ConnectArgs),
    /// Copy files to or from an ssh resource (scp with a 5-minute certificate).
    Scp(crate::ssh_cmd::ScpArgs),
    /// A certificate for a key of your own (for other tools), beside it.
    SignKey(crate::ssh_cmd::SignKeyArgs),
    /// On SSH hosts: `principals --username %u` for sshd's
    /// AuthorizedPrincipalsCommand.
    AuthDaemon(crate::authd_cmd::AuthDaemonArgs),
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EdgeArgs {
    /// The edge configuration file (TOML).
    #[arg(long, short, env = "WARREN_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Validate the configuration and exit (0 valid, 2 invalid).
    #[arg(long)]
    pub(crate) check: bool,
    /// Print the tunnel certificate's pin (for `warren site --pin`) and exit.
    #[arg(long)]
    pub(crate) print_pin: bool,
    #[command(subcommand)]
    pub(crate) command: Option<EdgeCommand>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum EdgeCommand {
    /// The same as `warren status`.
    Status(StatusArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Transport {
    /// QUIC first, TCP+TLS when UDP is blocked.
    Auto,
    /// QUIC only.
    Quic,
    /// TCP+TLS only.
    Tcp,
}

#[derive(Args, Debug)]
#[command(subcommand_negates_reqs = true)]
pub(crate) struct SiteArgs {
    #[command(subcommand)]
    pub(crate) command: Option<SiteCommand>,
    /// URL of the edge's tunnel listener, e.g. https://edge.example.com:7443.
    #[arg(long, env = "WARREN_ENDPOINT", required = true)]
    pub(crate) endpoint: Option<String>,
    /// Site id.
    #[arg(long, env = "WARREN_ID", required = true)]
    pub(crate) id: Option<String>,
    /// Site secret. Prefer WARREN_SECRET or --secret-file: a command line is
    /// visible to every user through `ps` and stays in shell history.
    #[arg(long, env = "WARREN_SECRET", hide_env_values = true,
        required_unless_present = "secret_file", conflicts_with = "secret_file",
        value_parser = |s: &str| Ok::<_, std::convert::Infallible>(warren_proto::Secret::new(s)))]
    pub(crate) secret: Option<warren_proto::Secret>,
    /// A file holding the site secret (its first line; keep it 0600).
    #[arg(long, env = "WARREN_SECRET_FILE", value_name = "FILE")]
    pub(crate) secret_file: Option<std::path::PathBuf>,
    /// Allow the agent to connect to TARGET (HOST_OR_CIDR:PORT[-PORT]/tcp|udp). Repeatable.
    /// In WARREN_ALLOW, separate entries with commas.
    #[arg(
        long = "allow",
        env = "WARREN_ALLOW",
        value_delimiter = ',',
        value_name = "TARGET"
    )]
    pub(crate) allow: Vec<String>,
    /// Read allowlist entries from FILE, one per line (`#` comments).
    #[arg(long, env = "WARREN_ALLOW_FILE", value_name = "FILE")]
    pub(crate) allow_file: Option<PathBuf>,
    /// Allow every target. For labs only: this agent becomes an open door.
    #[arg(long, env = "WARREN_ALLOW_ANY")]
    pub(crate) allow_any: bool,
    /// Trust the edge's certificate if it chains to this CA (PEM).
    #[arg(long, env = "WARREN_CA", conflicts_with = "pin", value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// Trust exactly the edge certificate with this SHA-256 (from `warren up` or `--print-pin`).
    #[arg(long, env = "WARREN_PIN", value_name = "SHA256")]
    pub(crate) pin: Option<String>,
    /// Tunnel transport. TCP+TLS is the default: it outran QUIC on every
    /// benchmark (bench/RESULTS.md); `auto` tries QUIC first.
    #[arg(long, env = "WARREN_TRANSPORT", value_enum, default_value_t = Transport::Tcp)]
    pub(crate) transport: Transport,
    /// Serve Prometheus metrics (/metrics) and health (/healthz) on ADDR.
    #[arg(long, env = "WARREN_METRICS", value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// At start, check that a second wall in the kernel (nftables table
    /// `inet warren_egress`, systemd's IPAddressDeny) keeps this agent to its
    /// allowlist, and warn when it is missing or wider.
    #[arg(long, env = "WARREN_EGRESS_CHECK")]
    pub(crate) egress_check: bool,
    /// Like --egress-check, but refuse to start (exit 2) when the second wall
    /// is missing or wider than the allowlist.
    #[arg(long, env = "WARREN_REQUIRE_EGRESS_WALL")]
    pub(crate) require_egress_wall: bool,
    /// How long a shutdown (SIGTERM) waits for open streams, e.g. 30s.
    #[arg(long, env = "WARREN_DRAIN_TIMEOUT", default_value = "30s", value_parser = crate::duration::humantime_duration)]
    pub(crate) drain_timeout: std::time::Duration,
    /// Run the SSH auth daemon for this host: users the edge's policy
    /// grants an ssh resource here get their account just in time, as far
    /// as the --ssh-* options below allow (this host's veto).
    #[arg(long)]
    pub(crate) ssh_auth_daemon: bool,
    /// A standalone auth daemon (`warren auth-daemon`) for the SSH targets
    /// on HOST: `HOST,ADDR,PIN[,PSK_FILE]` (the daemon's address, the
    /// SHA-256 pin of its certificate from `warren auth-daemon --print-pin`,
    /// and its own key, else --auth-daemon-psk-file's); repeat for several
    /// hosts.
    #[arg(long = "auth-daemon", value_name = "HOST,ADDR,PIN[,PSK_FILE]")]
    pub(crate) auth_daemons: Vec<String>,
    /// The pre-shared key this agent presents to standalone auth daemons.
    #[arg(long, value_name = "FILE")]
    pub(crate) auth_daemon_psk_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) ssh: crate::authd_cmd::DaemonOptions,
}

#[derive(Args, Debug)]
pub(crate) struct UpArgs {
    /// Where the quickstart keeps its state.
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./warren-data")]
    pub(crate) data_dir: PathBuf,
    /// Tunnel address written into a new edge.toml (first run only).
    #[arg(long, default_value = "0.0.0.0:7443")]
    pub(crate) tunnel_listen: SocketAddr,
    /// Admin API address written into a new edge.toml (first run only).
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub(crate) admin_listen: SocketAddr,
    /// Your domain (first run only): listeners on 80 and 443, certificates
    /// from Let's Encrypt (ACME), sign-in on auth.DOMAIN. Without it: a
    /// self-signed local setup (https://NAME.localhost:8443, sign-in on
    /// auth.localhost).
    #[arg(long)]
    pub(crate) domain: Option<String>,
    /// The first admin's email, also the ACME account's (first run only;
    /// needed with --domain).
    #[arg(long)]
    pub(crate) email: Option<String>,
    /// HTTPS address (first run only; default 0.0.0.0:443 with --domain,
    /// else 127.0.0.1:8443).
    #[arg(long)]
    pub(crate) https_listen: Option<SocketAddr>,
    /// Plain-HTTP address for ACME and redirects (first run only, with
    /// --domain; default 0.0.0.0:80).
    #[arg(long)]
    pub(crate) http_listen: Option<SocketAddr>,
    /// The ACME directory (first run only; default Let's Encrypt's).
    #[arg(long, default_value = "https://acme-v02.api.letsencrypt.org/directory")]
    pub(crate) acme_directory: String,
    /// Roots for the ACME server's certificate (a private or test CA).
    #[arg(long)]
    pub(crate) acme_ca: Option<PathBuf>,
}
