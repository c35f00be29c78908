//! The public edge.
//!
//! Request lifecycle for a TCP resource:
//!
//! ```text
//! visitor ─TCP─▶ resource listener (proxy_tcp) ─▶ dispatch: pick agent of the target's site
//!        ─▶ Link::open (tunnel stream) ─▶ agent checks its allowlist, connects the target
//!        ◀─ Reply ─ bytes both ways, half-close and resets passed on
//! ```
//!
//! Agents arrive through [`tunnel`] (TLS/QUIC, hello, credentials) and live in
//! the [`registry::Registry`]. [`Edge::reload`] applies a new, fully validated
//! [`config::EdgeConfig`] through the same path as start-up; [`Edge::shutdown`]
//! drains.
//!
//! Invariant: the edge never decides what a site may reach; it only asks.
//! The agent's allowlist has the last word.

pub mod auth;
pub mod certs;
pub mod config;
pub mod registry;

mod admin;
mod dispatch;
mod listeners;
mod proxy_tcp;
mod proxy_udp;
mod tunnel;

use arc_swap::ArcSwap;
use config::EdgeConfig;
use registry::Registry;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use warren_proto::SessionConfig;
use warren_transport::{GoAwayReason, TunnelListener};

/// Why the edge could not start or apply a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate trouble.
    #[error(transparent)]
    Tls(#[from] warren_transport::tls::TlsError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl EdgeError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        EdgeError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// State shared by every task of the edge.
pub(crate) struct EdgeShared {
    pub(crate) config: ArcSwap<EdgeConfig>,
    pub(crate) registry: Registry,
    pub(crate) verifier: auth::Verifier,
    pub(crate) draining: AtomicBool,
}

/// A running edge.
pub struct Edge {
    shared: Arc<EdgeShared>,
    tunnel_addr: SocketAddr,
    admin_addr: SocketAddr,
    pin: String,
    listeners: Mutex<listeners::Listeners>,
    stop: CancellationToken,
    quic: warren_transport::QuicEndpoint,
}

impl Edge {
    /// Binds every listener and starts serving.
    pub async fn start(config: EdgeConfig) -> Result<Edge, EdgeError> {
        certs::create_dir_private(&config.data_dir)?;
        let cert = certs::load_or_create(config.tunnel_cert.as_ref(), &config.data_dir)?;
        let server = warren_transport::tls::server_config(cert.certs, cert.key)?;
        let tunnel = TunnelListener::bind(
            config.tunnel_listen,
            server,
            SessionConfig::default(),
            &cert.reset_key,
        )
        .await
        .map_err(|e| EdgeError::Bind {
            what: "the tunnel (TCP and UDP)".into(),
            addr: config.tunnel_listen,
            source: e,
        })?;
        let tunnel_addr = tunnel
            .local_addr()
            .map_err(|e| EdgeError::io(Path::new("tunnel"), e))?;
        let admin = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .map_err(|e| EdgeError::Bind {
                what: "the admin API".into(),
                addr: config.admin_listen,
                source: e,
            })?;
        let admin_addr = admin
            .local_addr()
            .map_err(|e| EdgeError::io(Path::new("admin"), e))?;
        let quic = tunnel.quic_endpoint();
        let shared = Arc::new(EdgeShared {
            config: ArcSwap::from_pointee(config.clone()),
            registry: Registry::default(),
            verifier: auth::Verifier::default(),
            draining: AtomicBool::new(false),
        });
        let mut listeners = listeners::Listeners::default();
        listeners.apply(&config.resources, &shared).await?;
        let stop = CancellationToken::new();
        tokio::spawn(tunnel::serve(tunnel, shared.clone(), stop.clone()));
        tokio::spawn(admin::serve(admin, shared.clone(), stop.clone()));
        tracing::info!(
            event = "edge_started", tunnel = %tunnel_addr, admin = %admin_addr, pin = %cert.pin,
            sites = config.sites.len(), resources = config.resources.len(), "edge started"
        );
        Ok(Edge {
            shared,
            tunnel_addr,
            admin_addr,
            pin: cert.pin,
            listeners: Mutex::new(listeners),
            stop,
            quic,
        })
    }

    /// Where agents dial in (TCP and UDP).
    pub fn tunnel_addr(&self) -> SocketAddr {
        self.tunnel_addr
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The tunnel certificate's pin (for `warren site --pin`).
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The bound address of a resource's listener.
    pub async fn resource_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.lock().await.addr_of(name)
    }

    /// The live registry of agents.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Applies a new configuration (already validated). Listener changes are
    /// bound first; if any bind fails, the old configuration stays in force.
    /// The tunnel and admin listeners, data directory and certificate need a
    /// restart to change.
    pub async fn reload(&self, config: EdgeConfig) -> Result<(), EdgeError> {
        let mut listeners = self.listeners.lock().await;
        listeners.apply(&config.resources, &self.shared).await?;
        let old = self.shared.config.swap(Arc::new(config.clone()));
        for id in old.sites.keys() {
            if !config.sites.contains_key(id) {
                self.shared.registry.disconnect_site(id);
                tracing::info!(event = "site_removed", site = %id, "site removed; its agents were disconnected");
            }
        }
        if old.tunnel_listen != config.tunnel_listen || old.admin_listen != config.admin_listen {
            tracing::warn!(
                "tunnel_listen and admin_listen changes take effect at the next restart"
            );
        }
        tracing::info!(
            event = "config_reloaded",
            sites = config.sites.len(),
            resources = config.resources.len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// Stops accepting, tells agents to go away, waits up to the configured
    /// drain timeout for open streams to finish, then closes every link.
    pub async fn shutdown(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        self.stop.cancel();
        self.listeners.lock().await.stop_all();
        let agents = self.shared.registry.all_agents();
        for a in &agents {
            a.link.go_away(GoAwayReason::Restart).await;
        }
        let limit = self.shared.config.load().drain_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let active = self.shared.registry.active_streams();
            if active == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    streams = active,
                    "drain timeout reached; closing open streams"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for a in agents {
            a.link.close("edge shutting down");
        }
        // Let QUIC's close frames leave before the process exits, so agents
        // reconnect now rather than after their idle timeout.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.quic.wait_idle()).await;
        tracing::info!(event = "edge_stopped", "edge stopped");
    }
}
