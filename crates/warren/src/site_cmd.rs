//! `warren site`: the agent, configured from flags and `WARREN_*` variables.

use crate::cli::{SiteArgs, Transport};
use crate::egress::allowlist::load_allowlist;
use crate::Failure;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use warren_egress::Allowlist;
use warren_site::stats::Stats;
use warren_site::SiteConfig;
use warren_transport::tls::{self, EdgeTrust};
use warren_transport::{Endpoint, TransportChoice};

fn allowlist(args: &SiteArgs) -> Result<Allowlist, Failure> {
    load_allowlist(&args.allow, args.allow_file.as_deref(), args.allow_any)
}

pub(crate) async fn run(args: SiteArgs) -> Result<(), Failure> {
    let endpoint = Endpoint::parse(args.endpoint.as_deref().unwrap_or_default())
        .map_err(|e| Failure::Usage(format!("--endpoint: {e}")))?;
    let trust = match (&args.ca, &args.pin) {
        (Some(ca), None) => EdgeTrust::CaFile(ca.clone()),
        (None, Some(pin)) => {
            EdgeTrust::Pin(tls::parse_pin(pin).map_err(|e| Failure::Usage(format!("--pin: {e}")))?)
        }
        (None, None) => EdgeTrust::SystemRoots,
        (Some(_), Some(_)) => {
            return Err(Failure::Usage("--ca and --pin exclude each other".into()))
        }
    };
    // Fail early on unusable trust material, with exit status 2.
    tls::client_config(&trust).map_err(|e| Failure::Usage(e.to_string()))?;
    let allow = allowlist(&args)?;
    let ssh = Arc::new(ssh_auth(&args)?);
    if args.egress_check || args.require_egress_wall {
        let report = crate::egress::check::check(&allow, &endpoint.host, endpoint.port).await;
        crate::egress::check::enforce(&report, args.require_egress_wall)?;
    }
    let secret = match (args.secret, &args.secret_file) {
        (Some(s), _) => s,
        (None, Some(path)) => read_secret_file(path)?,
        // clap requires one of the two unless a subcommand is given.
        (None, None) => warren_proto::Secret::default(),
    };
    // clap makes the endpoint and id required unless a subcommand is given.
    let mut config = SiteConfig::new(endpoint, args.id.unwrap_or_default(), secret, trust, allow);
    config.ssh_auth = ssh;
    config.transport = match args.transport {
        Transport::Auto => TransportChoice::Auto,
        Transport::Quic => TransportChoice::Quic,
        Transport::Tcp => TransportChoice::Tcp,
    };
    config.drain_timeout = args.drain_timeout;
    let stats = Arc::new(Stats::default());
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Failure::Usage(format!("--metrics {addr}: {e}")))?;
        tracing::info!(event = "metrics_listening", addr = %listener.local_addr().unwrap_or(addr), "serving /metrics and /healthz");
        tokio::spawn(warren_site::stats::serve_metrics(listener, stats.clone()));
    }
    let stop = crate::terminate_signal();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(warren_site::run(config, stats, shutdown.clone()));
    stop.await;
    tracing::info!("shutting down: telling the edge, draining open streams");
    shutdown.cancel();
    match agent.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Other(e.into())),
    }
}

/// The secret in `path`: its first line, trimmed; an empty one is refused.
/// A file others may read is used, with a warning.
fn read_secret_file(path: &std::path::Path) -> Result<warren_proto::Secret, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("--secret-file {}: {e}", path.display())))?;
    let secret = warren_proto::Secret::new(text.lines().next().unwrap_or("").trim());
    if secret.is_empty() {
        return Err(Failure::Usage(format!(
            "--secret-file {}: the file is empty",
            path.display()
        )));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(event = "secret_file_open", file = %path.display(), "the secret file is readable by other users; chmod 600 it");
        }
    }
    Ok(secret)
}

/// `--ssh-auth-daemon`, `--auth-daemon` and `--auth-daemon-psk-file`.
fn ssh_auth(args: &SiteArgs) -> Result<warren_site::ssh_user::SshAuth, Failure> {
    let mut auth = warren_site::ssh_user::SshAuth::default();
    if args.ssh_auth_daemon {
        auth.local = Some(Arc::new(args.ssh.start()?));
    }
    for spec in &args.auth_daemons {
        let bad = || {
            Failure::Usage(format!(
                "--auth-daemon `{spec}`: expected HOST,ADDR,PIN[,PSK_FILE] (10.0.0.5,10.0.0.5:22123,<64 hex digits>)"
            ))
        };
        let mut parts = spec.splitn(4, ',');
        let (Some(host), Some(addr), Some(pin)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let psk = match parts.next() {
            Some(file) => Some(crate::authd_cmd::read_psk(std::path::Path::new(file))?),
            None => None,
        };
        let pin = warren_transport::tls::parse_pin(pin).map_err(|_| bad())?;
        if host.is_empty() || addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
            return Err(bad());
        }
        auth.remote.push(warren_site::ssh_user::RemoteDaemon {
            host: host.to_owned(),
            addr: addr.to_owned(),
            pin,
            psk,
        });
    }
    if let Some(path) = &args.auth_daemon_psk_file {
        auth.psk = Some(crate::authd_cmd::read_psk(path)?);
    }
    if auth.psk.is_none() && auth.remote.iter().any(|d| d.psk.is_none()) {
        return Err(Failure::Usage(
            "--auth-daemon needs a key: its fourth field or --auth-daemon-psk-file".into(),
        ));
    }
    Ok(auth)
}
