//! The public edge.
//!
//! Request lifecycle:
//!
//! ```text
//! visitor ─TCP─▶ resource listener (proxy::tcp / proxy::udp)        ─┐
//! visitor ─TLS─▶ https_listen: ClientHello sniffed (proxy::sni)      │
//!                 ├─ tls resource: bytes passed through untouched    ├─▶ dispatch: target by health
//!                 └─ http resource: TLS terminated, HTTP routed      │   and balance (balance), agent of
//!                    by host + normalised path (proxy::http)        ─┘   its site, Link::open
//!        ─▶ agent checks its allowlist, connects the target
//!        ◀─ Reply ─ bytes both ways, half-close and resets passed on
//! ```
//!
//! Agents arrive through [`tunnel`] (TLS/QUIC, hello, credentials) and live in
//! the [`tunnel::registry::Registry`]. [`Edge::reload`] applies a new, fully validated
//! [`config::EdgeConfig`] through the same path as start-up; [`Edge::shutdown`]
//! drains.
//!
//! Invariant: the edge never decides what a site may reach; it only asks.
//! The agent's allowlist has the last word.

pub mod certs;
pub mod config;
pub mod tunnel;

mod access;
mod api;
mod auth;
mod catalog;
mod devices;
mod events;
mod metrics;
mod notify;
mod proxy;
mod sealed;
mod ssh;
mod state;

use arc_swap::ArcSwap;
use config::EdgeConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tunnel::registry::Registry;
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
    /// A certificate file is unusable.
    #[error("{path}: {message}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The WireGuard endpoint for devices could not start.
    #[error("devices: {0}")]
    Devices(String),
    /// The store could not be opened, migrated or reconciled.
    #[error("state store: {0}")]
    Store(#[from] warren_store::StoreError),
    /// The access log could not be opened.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
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
    pub(crate) verifier: tunnel::credentials::Verifier,
    pub(crate) draining: AtomicBool,
    /// Who the edge knows: sites and their credentials (file and store).
    pub(crate) catalog: ArcSwap<catalog::Catalog>,
    /// Live resources, indexed by name, HTTP route and SNI.
    pub(crate) resources: ArcSwap<proxy::balance::ResourceTable>,
    /// Target health as the agents report it.
    pub(crate) health: tunnel::health_table::HealthTable,
    /// Bumped after every applied configuration.
    pub(crate) config_changed: tokio::sync::watch::Sender<u64>,
    pub(crate) certs: Arc<certs::store::CertStore>,
    pub(crate) acme: Option<Arc<certs::acme::AcmeIssuer>>,
    /// Bearer-key checks for `/api/v1`.
    pub(crate) api_auth: api::auth::ApiAuth,
    /// Sign-in: the session key (shared through the store), limits.
    pub(crate) auth: auth::AuthState,
    /// The audit trail of access decisions (written off the data path).
    pub(crate) decisions: access::audit::DecisionLog,
    /// Counters and histograms for `/metrics`.
    pub(crate) metrics: metrics::EdgeMetrics,
    /// Sites, resources, keys, agents seen, events, audit log.
    pub(crate) store: warren_store::Store,
    /// Writes agents seen and events to the store off the hot path.
    pub(crate) recorder: Arc<state::Recorder>,
    /// Kept-alive connections to http origins.
    pub(crate) origin_pool: Arc<proxy::http::origin_pool::OriginPool>,
    pub(crate) terminating_tls: Arc<rustls::ServerConfig>,
    pub(crate) challenge_tls: Arc<rustls::ServerConfig>,
    pub(crate) access_log: Option<Arc<proxy::http::access_log::AccessLogger>>,
    /// The bound HTTPS port, for redirects.
    pub(crate) https_port: AtomicU16,
    /// Listeners and the sources of the serving configuration; every
    /// change goes through its lock.
    pub(crate) serving: Mutex<proxy::serving::Serving>,
    /// Where agents dial in, as bound.
    pub(crate) tunnel_addr: SocketAddr,
    /// The tunnel certificate's pin (`warren site --pin`).
    pub(crate) tunnel_pin: String,
    /// The WireGuard endpoint for people's devices (`[devices]`).
    pub(crate) devices: Option<Arc<devices::Endpoint>>,
}

/// A running edge.
pub struct Edge {
    shared: Arc<EdgeShared>,
    tunnel_addr: SocketAddr,
    admin_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    pin: String,
    created_token: Option<PathBuf>,
    stop: CancellationToken,
    quic: warren_transport::QuicEndpoint,
}

impl Edge {
    /// Binds every listener and starts serving.
    pub async fn start(config: EdgeConfig) -> Result<Edge, EdgeError> {
        certs::create_dir_private(&config.data_dir)?;
        let cert = certs::load_or_create(config.tunnel_cert.as_ref(), &config.data_dir)?;
        let store = state::open(&config).await?;
        let changed = state::reconcile(&store, &config).await?;
        let created_token = api::auth::ensure_initial_key(&store, &config.data_dir).await?;
        if let Some(path) = &created_token {
            tracing::info!(
                event = "api_key_created", path = %path.display(),
                "first start: an admin API key was created; its token is in {} (readable by this user only)",
                path.display()
            );
        }
        tracing::info!(
            backend = ?store.backend(), changed,
            "state store open; config file reconciled"
        );
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
        let https = bind_optional(config.https_listen, "HTTPS (https_listen)").await?;
        let http = bind_optional(config.http_listen, "plain HTTP (http_listen)").await?;
        let https_addr = https.as_ref().and_then(|l| l.local_addr().ok());
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let certs = Arc::new(certs::store::CertStore::default());
        certs.set_configured(
            certs::store::CertStore::load_files(&config.tls.certs)?,
            config.tls.default_host.clone(),
        );
        let acme = config.tls.acme.clone().map(|settings| {
            certs::acme::AcmeIssuer::new(settings, &config.data_dir, certs.clone(), http.is_some())
        });
        let access_log = match &config.access_log {
            Some(dest) => Some(
                proxy::http::access_log::AccessLogger::start(dest).map_err(EdgeError::AccessLog)?,
            ),
            None => None,
        };
        // The key every edge on this store signs sessions with.
        let session_key = hex::decode(
            store
                .edge_key("session", || hex::encode(rand::random::<[u8; 32]>()))
                .await?,
        )
        .map_err(|e| {
            EdgeError::Store(warren_store::StoreError::Corrupt(format!(
                "edge_keys.session: {e}"
            )))
        })?;
        let assertions =
            auth::jwt::Assertions::new(&store.edge_key("jwt-es256", auth::jwt::new_key).await?)
                .map_err(|e| {
                    EdgeError::Store(warren_store::StoreError::Corrupt(format!(
                        "edge_keys.jwt-es256: {e}"
                    )))
                })?;
        let devices = match &config.devices {
            Some(settings) => Some(
                devices::Endpoint::start(&config, settings, &store)
                    .await
                    .map_err(|e| EdgeError::Devices(e.to_string()))?,
            ),
            None => None,
        };
        let devices_addr = devices.as_ref().map(|(e, _)| e.local_addr());
        let shared = Arc::new(EdgeShared {
            config: ArcSwap::from_pointee(config.clone()),
            registry: Registry::default(),
            verifier: tunnel::credentials::Verifier::default(),
            draining: AtomicBool::new(false),
            catalog: ArcSwap::from_pointee(catalog::Catalog::default()),
            resources: ArcSwap::from_pointee(proxy::balance::ResourceTable::default()),
            health: tunnel::health_table::HealthTable::default(),
            config_changed: tokio::sync::watch::channel(0).0,
            terminating_tls: certs::store::terminating_config(certs.clone()),
            challenge_tls: certs::store::challenge_config(certs.clone()),
            certs,
            acme: acme.clone(),
            origin_pool: Arc::default(),
            api_auth: api::auth::ApiAuth::default(),
            auth: auth::AuthState::new(&session_key, assertions),
            decisions: access::audit::DecisionLog::start(store.clone(), config.audit_retention),
            metrics: metrics::EdgeMetrics::new(),
            recorder: state::Recorder::start(
                store.clone(),
                notify::Notifier::start(&config.notify),
            ),
            store,
            access_log,
            https_port: AtomicU16::new(https_addr.map_or(0, |a| a.port())),
            serving: Mutex::new(proxy::serving::Serving::new(config.clone())),
            tunnel_addr,
            tunnel_pin: cert.pin.clone(),
            devices: devices.as_ref().map(|(e, _)| e.clone()),
        });
        shared
            .serving
            .lock()
            .await
            .load(&shared, config.clone())
            .await?;
        let stop = CancellationToken::new();
        tokio::spawn(proxy::serving::sync_loop(shared.clone(), stop.clone()));
        tokio::spawn(tunnel::admit::serve(tunnel, shared.clone(), stop.clone()));
        tokio::spawn(api::serve(admin, shared.clone(), stop.clone()));
        tokio::spawn(shared.origin_pool.clone().sweep_loop(stop.clone()));
        if let Some((_, parts)) = devices {
            devices::spawn(&shared, parts, stop.clone()).await;
        }
        if let Some(l) = https {
            tokio::spawn(proxy::sni::serve(l, shared.clone(), stop.clone()));
        }
        if let Some(l) = http {
            tokio::spawn(proxy::http::plain::serve(l, shared.clone(), stop.clone()));
        }
        if let Some(acme) = acme {
            // At start, order what is missing and renew what is due now
            // rather than at the renewal loop's first tick an hour later.
            for host in acme_hosts(&config) {
                let acme = acme.clone();
                tokio::spawn(async move { acme.issue(&host).await });
            }
            tokio::spawn(acme.renew_loop(Duration::from_secs(3600)));
        }
        tracing::info!(
            event = "edge_started", tunnel = %tunnel_addr, admin = %admin_addr, pin = %cert.pin,
            https = %https_addr.map(|a| a.to_string()).unwrap_or_default(),
            http = %http_addr.map(|a| a.to_string()).unwrap_or_default(),
            devices = %devices_addr.map(|a| a.to_string()).unwrap_or_default(),
            sites = config.sites.len(), resources = config.resources.len(), "edge started"
        );
        announce_policy(&shared.config.load());
        Ok(Edge {
            shared,
            tunnel_addr,
            admin_addr,
            https_addr,
            http_addr,
            pin: cert.pin,
            created_token,
            stop,
            quic,
        })
    }

    /// The HTTPS listener's address, when configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The plain-HTTP listener's address, when configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The WireGuard endpoint's UDP address, when `[devices]` is set.
    pub fn devices_addr(&self) -> Option<SocketAddr> {
        self.shared.devices.as_ref().map(|d| d.local_addr())
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

    /// The file holding the admin API token this start created (first start
    /// only: the store had no API key).
    pub fn created_token(&self) -> Option<&Path> {
        self.created_token.as_deref()
    }

    /// The bound address of a resource's listener.
    pub async fn resource_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared.serving.lock().await.addr_of(name)
    }

    /// The first user, `email`, made an admin by `warren up`: created with
    /// a generated password (returned, to be shown once) when the store has
    /// no user yet; `None` when it has.
    pub async fn first_admin(&self, email: &str) -> Result<Option<String>, EdgeError> {
        if !self.shared.store.list_users().await?.is_empty() {
            return Ok(None);
        }
        let password = auth::password::generate();
        let hash = auth::password::hash(password.clone())
            .await
            .map_err(|e| EdgeError::Store(warren_store::StoreError::Corrupt(e.to_string())))?;
        let id = hex::encode(rand::random::<[u8; 6]>());
        self.shared
            .store
            .create_user("warren up", &id, email, email, Some(&hash))
            .await?;
        api::serve_now(&self.shared).await;
        Ok(Some(password))
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
        let mut serving = self.shared.serving.lock().await;
        let static_certs = certs::store::CertStore::load_files(&config.tls.certs)?;
        let old = self.shared.config.load_full();
        serving.load(&self.shared, config.clone()).await?;
        drop(serving);
        announce_policy(&self.shared.config.load());
        // Only what serves is recorded. Reconciling bumps the store's
        // version, so the sync loop passes the new version on to agents.
        match state::reconcile(&self.shared.store, &config).await {
            Ok(changed) => tracing::debug!(changed, "config file reconciled into the store"),
            Err(e) => {
                tracing::warn!(error = %e, "the new config serves, but the store could not record it")
            }
        }
        self.shared
            .certs
            .set_configured(static_certs, config.tls.default_host.clone());
        if let Some(acme) = &self.shared.acme {
            for host in acme_hosts(&config) {
                let acme = acme.clone();
                tokio::spawn(async move { acme.ensure(&host).await });
            }
        }
        for id in old.sites.keys() {
            if !config.sites.contains_key(id) {
                self.shared.registry.disconnect_site(id);
                tracing::info!(event = "site_removed", site = %id, "site removed; its agents were disconnected");
            }
        }
        if old.tunnel_listen != config.tunnel_listen
            || old.admin_listen != config.admin_listen
            || old.https_listen != config.https_listen
            || old.http_listen != config.http_listen
            || old.tls.acme != config.tls.acme
            || old.access_log != config.access_log
        {
            tracing::warn!(
                "changes to the edge's own listeners, ACME settings and access log take effect at the next restart"
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
        self.shared.serving.lock().await.stop_all();
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
                    event = "drain_timeout",
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

async fn bind_optional(
    addr: Option<SocketAddr>,
    what: &str,
) -> Result<Option<tokio::net::TcpListener>, EdgeError> {
    match addr {
        None => Ok(None),
        Some(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|e| EdgeError::Bind {
                what: what.into(),
                addr,
                source: e,
            }),
    }
}

/// Hosts ACME should cover: every http resource's, except wildcards (they
/// need DNS-01, which Warren does not do).
fn acme_hosts(config: &EdgeConfig) -> Vec<String> {
    let mut hosts: Vec<String> = config
        .resources
        .iter()
        .filter(|r| r.kind == config::ResourceKind::Http)
        .filter_map(|r| r.host.clone())
        .filter(|h| !h.starts_with("*."))
        .chain(config.auth.as_ref().map(|a| a.host.clone()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Says at start and at every reload who decides access: with no policy,
/// that every resource is open to whoever reaches it.
fn announce_policy(config: &EdgeConfig) {
    match &config.policy {
        None => tracing::warn!(
            event = "policy_none",
            "no policy (no [policy] file, none saved through the API): every resource is open to whoever reaches its port (see the README, \"Who may reach what\")"
        ),
        Some(p) => {
            let public = config
                .resources
                .iter()
                .filter(|r| r.auth == config::Auth::Public)
                .count();
            tracing::info!(
                event = "policy_loaded", source = %p.source, version = p.version,
                grants = p.policy.file().grants.len(), public,
                "policy loaded: default deny; {public} public resource(s) open to anyone, the others only as its grants allow"
            );
        }
    }
}
