//! The site agent (`warren site`).
//!
//! It dials out to the edge and never listens for the tunnel. It serves every
//! stream the edge opens *only* if the target is on its local allowlist
//! ([`warren_egress::Allowlist`]), checked before any connection attempt.
//!
//! Life cycle: dial → serve streams until the link ends → wait a backoff delay
//! ([`backoff::Backoff`], full jitter, reset after a healthy link) → dial again,
//! forever. Dead links are found by keepalives (12 s of silence). A `GoAway`
//! from the edge (restart) makes the agent redial at once while the old link
//! drains. On shutdown the agent tells the edge to stop sending new streams,
//! lets open ones finish (up to the drain timeout), then exits.
//!
//! Invariant: nothing the edge sends can widen the allowlist; the allowlist is
//! fixed at start from the agent's own flags.

pub mod backoff;
mod health;
mod serve;
pub mod ssh_user;
pub mod stats;
mod target;

use backoff::Backoff;
use stats::Stats;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warren_egress::Allowlist;
use warren_proto::{Hello, Secret, SessionConfig};
use warren_transport::tls::EdgeTrust;
use warren_transport::{
    dial, DialConfig, DialError, Endpoint, GoAwayReason, Link, LinkError, TransportChoice,
};

/// Everything the agent runs with.
#[derive(Clone)]
pub struct SiteConfig {
    /// The edge's tunnel listener.
    pub endpoint: Endpoint,
    /// Site id.
    pub site_id: String,
    /// Site secret.
    pub secret: Secret,
    /// How to trust the edge.
    pub trust: EdgeTrust,
    /// QUIC, TCP or auto.
    pub transport: TransportChoice,
    /// The local egress allowlist.
    pub allowlist: Allowlist,
    /// Protocol version to speak (tests play old agents with it).
    pub protocol_version: u16,
    /// Limit on each dial step.
    pub connect_timeout: Duration,
    /// Limit on connecting to a target.
    pub target_connect_timeout: Duration,
    /// First reconnect delay ceiling.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_cap: Duration,
    /// How long a shutdown waits for open streams.
    pub drain_timeout: Duration,
    /// Who lets users the edge vouches for into SSH targets on the
    /// allowlist: the auth daemon on this host (`--ssh-auth-daemon`) and
    /// standalone daemons on other hosts (`--auth-daemon`).
    pub ssh_auth: Arc<ssh_user::SshAuth>,
}

impl fmt::Debug for SiteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteConfig")
            .field("endpoint", &self.endpoint)
            .field("site_id", &self.site_id)
            .field("secret", &self.secret)
            .field("transport", &self.transport)
            .field("allowlist", &self.allowlist.to_string())
            .finish_non_exhaustive()
    }
}

impl SiteConfig {
    /// Defaults for everything but the identity and allowlist.
    pub fn new(
        endpoint: Endpoint,
        site_id: String,
        secret: Secret,
        trust: EdgeTrust,
        allowlist: Allowlist,
    ) -> Self {
        SiteConfig {
            endpoint,
            site_id,
            secret,
            trust,
            transport: TransportChoice::Tcp,
            allowlist,
            protocol_version: warren_proto::PROTOCOL_VERSION,
            connect_timeout: Duration::from_secs(5),
            target_connect_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            ssh_auth: Arc::new(ssh_user::SshAuth::default()),
        }
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    /// TLS trust material is unusable.
    #[error(transparent)]
    Tls(#[from] warren_transport::tls::TlsError),
}

/// How a link ended.
enum LinkEnd {
    Lost(LinkError),
    EdgeGoingAway,
    Shutdown,
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(
    config: SiteConfig,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), SiteError> {
    let tls = warren_transport::tls::client_config(&config.trust)?;
    let instance = hex::encode(rand::random::<[u8; 6]>());
    let dial_config = DialConfig {
        endpoint: config.endpoint.clone(),
        tls,
        transport: config.transport,
        hello: Hello {
            site_id: config.site_id.clone(),
            secret: config.secret.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
            instance: instance.clone(),
        },
        protocol_version: config.protocol_version,
        session: SessionConfig::default(),
        connect_timeout: config.connect_timeout,
    };
    if config.allowlist.is_any() {
        tracing::warn!(
            "--allow-any: this agent will connect anywhere the edge asks. Use only in a lab."
        );
    } else if config.allowlist.rules().is_empty() {
        tracing::warn!(
            "the allowlist is empty: every stream will be refused (add --allow or --allow-file)"
        );
    }
    tracing::info!(
        event = "agent_starting", site = %config.site_id, agent = %instance, edge = %config.endpoint,
        allow = %config.allowlist, "agent starting"
    );
    let allow = Arc::new(config.allowlist.clone());
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_cap);
    loop {
        let attempt = tokio::select! {
            r = dial(&dial_config) => r,
            _ = shutdown.cancelled() => break,
        };
        match attempt {
            Ok((link, welcome)) => {
                backoff.reset();
                stats.connects.fetch_add(1, Ordering::Relaxed);
                stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(
                    event = "edge_connected", edge = %config.endpoint, link = %welcome.link_id,
                    transport = link.kind().as_str(), edge_version = %welcome.edge_version,
                    "connected to the edge"
                );
                let end = serve_link(link, &allow, &stats, &config, &shutdown).await;
                stats.connected.store(false, Ordering::Relaxed);
                match end {
                    LinkEnd::Shutdown => break,
                    LinkEnd::EdgeGoingAway => {
                        tracing::info!(
                            event = "edge_going_away",
                            "edge is restarting; reconnecting"
                        );
                    }
                    LinkEnd::Lost(reason) => {
                        // `cause` says how the loss was noticed: `dead` after
                        // the dead-link timeout, `reset` from a restarted
                        // edge's QUIC stateless reset, `closed` or `io` when
                        // the edge's host closed the connection.
                        tracing::warn!(
                            event = "edge_link_lost", cause = reason.cause(), reason = %reason,
                            "link to the edge lost: {reason}; reconnecting"
                        );
                    }
                }
            }
            Err(e) => {
                stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                log_dial_error(&config, &e);
            }
        }
        let delay = backoff.next_delay(rand::random::<f64>());
        tracing::debug!(
            delay_ms = delay.as_millis() as u64,
            "waiting before the next attempt"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!(event = "agent_stopped", "agent stopped");
    Ok(())
}

fn log_dial_error(config: &SiteConfig, e: &DialError) {
    match e {
        DialError::Refused(r) => tracing::error!(
            event = "edge_refused", edge = %config.endpoint, code = ?r.code,
            "the edge refused this agent: {}", r.message
        ),
        DialError::Handshake(h) => tracing::error!(
            event = "edge_refused", edge = %config.endpoint, "handshake with the edge failed: {h}"
        ),
        other => {
            tracing::warn!(event = "edge_unreachable", edge = %config.endpoint, "cannot reach the edge: {other}")
        }
    }
}

async fn serve_link(
    link: Link,
    allow: &Arc<Allowlist>,
    stats: &Arc<Stats>,
    config: &SiteConfig,
    shutdown: &CancellationToken,
) -> LinkEnd {
    let mut go_away = link.go_away_watch();
    loop {
        tokio::select! {
            incoming = link.accept() => {
                let Some(incoming) = incoming else {
                    return LinkEnd::Lost(link.closed().await);
                };
                tokio::spawn(serve::serve_stream(incoming, allow.clone(), stats.clone(), config.target_connect_timeout, config.ssh_auth.clone()));
            }
            changed = go_away.changed() => {
                if changed.is_err() {
                    return LinkEnd::Lost(link.closed().await);
                }
                if go_away.borrow().is_some() {
                    // The old link keeps serving its open streams until the edge closes it.
                    return LinkEnd::EdgeGoingAway;
                }
            }
            _ = shutdown.cancelled() => {
                link.go_away(GoAwayReason::Shutdown).await;
                let deadline = tokio::time::Instant::now() + config.drain_timeout;
                while stats.streams_active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                link.close("agent shutting down");
                return LinkEnd::Shutdown;
            }
        }
    }
}
