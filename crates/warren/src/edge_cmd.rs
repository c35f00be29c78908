//! `warren edge`: run, `--check` or `--print-pin`.

use crate::cli::EdgeArgs;
use crate::Failure;
use anyhow::Context;
use std::path::{Path, PathBuf};
use tokio::signal::unix::{signal, SignalKind};
use warren_edge::config::EdgeConfig;
use warren_edge::{certs, Edge};

pub(crate) fn load(path: &Path) -> Result<EdgeConfig, Failure> {
    EdgeConfig::load(path)
        .map_err(|errors| Failure::Usage(errors.to_string().trim_end().to_owned()))
}

pub(crate) async fn run(args: EdgeArgs) -> Result<(), Failure> {
    let path: PathBuf = args.config.ok_or_else(|| {
        Failure::Usage("--config FILE is required (see `warren edge --help`)".into())
    })?;
    let config = load(&path)?;
    if args.check {
        println!(
            "{}: configuration is valid ({} site{}, {} resource{})",
            path.display(),
            config.sites.len(),
            if config.sites.len() == 1 { "" } else { "s" },
            config.resources.len(),
            if config.resources.len() == 1 { "" } else { "s" },
        );
        return Ok(());
    }
    if args.print_pin {
        let cert = certs::load_or_create(config.tunnel_cert.as_ref(), &config.data_dir)
            .context("loading the tunnel certificate")?;
        println!("{}", cert.pin);
        return Ok(());
    }
    serve(config, &path, async |_| {}).await
}

/// Runs an edge until SIGTERM/SIGINT; SIGHUP reloads `path`.
pub(crate) async fn serve(
    config: EdgeConfig,
    path: &Path,
    on_started: impl AsyncFnOnce(&Edge),
) -> Result<(), Failure> {
    // Handlers first: a signal during start-up waits for the loop below
    // (the default action would kill the process mid-start).
    let stop = crate::terminate_signal();
    tokio::pin!(stop);
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let edge = Edge::start(config).await.context("starting the edge")?;
    on_started(&edge).await;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&edge, path).await,
            _ = &mut stop => break,
        }
    }
    tracing::info!("shutting down: draining open streams");
    edge.shutdown().await;
    Ok(())
}

async fn reload(edge: &Edge, path: &Path) {
    tracing::info!(file = %path.display(), "SIGHUP: reloading the configuration");
    match EdgeConfig::load(path) {
        Ok(config) => {
            if let Err(e) = edge.reload(config).await {
                tracing::error!(event = "reload_refused", error = %e, "reload failed; the previous configuration keeps serving");
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(event = "reload_refused", error = %e, "invalid configuration: {e}");
            }
            tracing::error!(
                event = "reload_refused",
                errors = errors.0.len(),
                "reload refused: the previous configuration keeps serving"
            );
        }
    }
}
