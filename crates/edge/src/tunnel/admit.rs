//! Admitting agents: TLS or QUIC, the hello, credentials, then registration.
//!
//! Every refusal is logged here with the reason and sent to the agent, which
//! logs it too. A hostile or broken peer costs at most one task and the
//! handshake timeout.

use crate::events::{AgentConnected, AgentDisconnected, AgentRefused, RefuseCause};
use crate::EdgeShared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warren_proto::{Refusal, RefusalCode, Welcome};
use warren_transport::{Accepted, TunnelListener};

/// TLS (or QUIC) and the hello must be done within this: what an
/// anonymous peer can hold a pre-auth slot for.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The oldest agent version this edge admits. Raise it when the edge stops
/// speaking to older agents; they are refused with a message saying what
/// to upgrade to.
pub(crate) const MIN_AGENT_VERSION: &str = "0.1.0";

/// `major.minor.patch` of a version string (a pre-release or build suffix
/// is ignored); none when it is not one.
fn version_triple(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

/// Why an agent's version is not admitted, if it is not.
fn too_old(agent_version: &str) -> Option<String> {
    let min = version_triple(MIN_AGENT_VERSION)?;
    match version_triple(agent_version) {
        Some(v) if v >= min => None,
        _ => Some(format!(
            "agent version `{agent_version}` is older than the oldest this edge supports ({MIN_AGENT_VERSION}); \
             upgrade warren on this site to {MIN_AGENT_VERSION} or later (the edge runs {})",
            env!("CARGO_PKG_VERSION")
        )),
    }
}
/// Unauthenticated handshakes in progress at once; more wait in the
/// kernel's backlog. A slot is held only until the credentials are checked,
/// never for the life of a link.
const MAX_HANDSHAKES: usize = 256;
/// Unauthenticated handshakes from one source (an IPv4 address, an IPv6
/// /64) at once; more are closed at once. One anonymous host cannot hold
/// the slots real agents need.
const MAX_HANDSHAKES_PER_SOURCE: usize = 8;
/// Links one site may have at once (active-active sites run two or three
/// agents). A leaked secret cannot fill the edge with links: each costs TLS
/// state and up to the link budget of buffered data.
pub(crate) const MAX_AGENTS_PER_SITE: usize = 32;

pub(crate) async fn serve(
    listener: TunnelListener,
    shared: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let sources = Sources::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok(accepted) => {
                let Some(source) = sources.take(accepted.remote().ip()) else {
                    AgentRefused {
                        remote: accepted.remote(),
                        transport: None,
                        site: None,
                        cause: RefuseCause::TooManyFromSource,
                        detail: "too many handshakes in progress from this source",
                    }
                    .emit(&shared);
                    continue;
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    admit(
                        accepted,
                        shared,
                        PreAuth {
                            _permit: permit,
                            _source: source,
                        },
                    )
                    .await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "tunnel accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    listener.close();
}

/// A pre-authentication slot: one of [`MAX_HANDSHAKES`] and one of its
/// source's [`MAX_HANDSHAKES_PER_SOURCE`]; released when dropped.
struct PreAuth {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _source: SourceSlot,
}

/// Handshakes in progress per source.
#[derive(Clone, Default)]
struct Sources(Arc<std::sync::Mutex<std::collections::HashMap<u128, usize>>>);

struct SourceSlot {
    sources: Sources,
    key: u128,
}

impl Sources {
    fn take(&self, ip: std::net::IpAddr) -> Option<SourceSlot> {
        let key = match ip.to_canonical() {
            std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
            // A host gets a /64; counting its addresses one by one would
            // let it take every slot.
            std::net::IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_default();
        if *n >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.sources.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

async fn admit(accepted: Accepted, shared: Arc<EdgeShared>, pre_auth: PreAuth) {
    let remote = accepted.remote();
    let (pending, hello) = match accepted.start(HANDSHAKE_TIMEOUT).await {
        Ok(v) => v,
        Err(e) => {
            AgentRefused {
                remote,
                transport: None,
                site: None,
                cause: RefuseCause::BeforeHello,
                detail: &e.to_string(),
            }
            .emit(&shared);
            return;
        }
    };
    let transport = pending.kind().as_str();
    let hello = match hello {
        Ok(h) => h,
        Err(e) => {
            AgentRefused {
                remote,
                transport: Some(transport),
                site: None,
                cause: RefuseCause::BadHello,
                detail: &e.to_string(),
            }
            .emit(&shared);
            pending.refuse(e.to_refusal()).await;
            return;
        }
    };
    if shared.draining.load(Ordering::Relaxed) {
        AgentRefused {
            remote,
            transport: Some(transport),
            site: Some(&hello.site_id),
            cause: RefuseCause::Draining,
            detail: "the edge is shutting down",
        }
        .emit(&shared);
        pending
            .refuse(Refusal {
                code: RefusalCode::Unavailable,
                message: "edge is shutting down; retry shortly".into(),
            })
            .await;
        return;
    }
    if let Some(message) = too_old(&hello.agent_version) {
        AgentRefused {
            remote,
            transport: Some(transport),
            site: Some(&hello.site_id),
            cause: RefuseCause::AgentTooOld,
            detail: &message,
        }
        .emit(&shared);
        pending
            .refuse(Refusal {
                code: RefusalCode::AgentTooOld,
                message,
            })
            .await;
        return;
    }
    // The catalog holds every site's live credentials: a file site's one
    // secret, an API site's current one and any rotated-out one still in
    // its grace period. Nothing here waits for the database.
    let credentials = shared
        .catalog
        .load()
        .credentials(&hello.site_id, warren_store::now_ms());
    let mut accepted = false;
    let mut old_secret = None;
    match credentials {
        // An unknown site costs the same work as a wrong secret.
        None => {
            let _ = shared.verifier.check(None, hello.secret.clone()).await;
        }
        Some(credentials) => {
            if credentials.is_empty() {
                let _ = shared.verifier.check(None, hello.secret.clone()).await;
            }
            for c in credentials {
                let slow = c.secret.is_slow();
                match shared
                    .verifier
                    .check(Some(c.secret), hello.secret.clone())
                    .await
                {
                    Ok(true) => {
                        accepted = true;
                        old_secret = c.until_ms;
                        if let (true, Some((id, old))) = (slow, c.stored) {
                            rehash_later(&shared, id, old, &hello.secret);
                        }
                        break;
                    }
                    Ok(false) => {}
                    Err(busy) => {
                        AgentRefused {
                            remote,
                            transport: Some(transport),
                            site: Some(&hello.site_id),
                            cause: RefuseCause::Busy,
                            detail: &busy.to_string(),
                        }
                        .emit(&shared);
                        pending
                            .refuse(Refusal {
                                code: RefusalCode::Unavailable,
                                message: "the edge is busy checking credentials; retry shortly"
                                    .into(),
                            })
                            .await;
                        return;
                    }
                }
            }
        }
    }
    if !accepted {
        AgentRefused {
            remote,
            transport: Some(transport),
            site: Some(&hello.site_id),
            cause: RefuseCause::BadCredentials,
            detail: "unknown site id or wrong secret",
        }
        .emit(&shared);
        pending
            .refuse(Refusal {
                code: RefusalCode::BadCredentials,
                message: format!(
                    "unknown site id or wrong secret for site `{}`",
                    hello.site_id
                ),
            })
            .await;
        return;
    }
    let connected = shared.registry.agent_count(&hello.site_id);
    if connected >= MAX_AGENTS_PER_SITE {
        AgentRefused {
            remote,
            transport: Some(transport),
            site: Some(&hello.site_id),
            cause: RefuseCause::TooManyAgents,
            detail: &format!("the site already has {connected} agents connected"),
        }
        .emit(&shared);
        pending
            .refuse(Refusal {
                code: RefusalCode::Unavailable,
                message: format!(
                    "site `{}` already has {MAX_AGENTS_PER_SITE} agents connected, the most a site may have; \
                     stop one (or rotate the secret if you do not know them all)",
                    hello.site_id
                ),
            })
            .await;
        return;
    }
    // Authenticated: the pre-auth slot goes back for the next stranger.
    drop(pre_auth);
    let link_id = hex::encode(rand::random::<[u8; 6]>());
    let welcome = Welcome {
        edge_version: env!("CARGO_PKG_VERSION").to_owned(),
        link_id: link_id.clone(),
    };
    let link = match pending.welcome(welcome).await {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(remote = %remote, error = %e, "agent left during the handshake");
            return;
        }
    };
    let agent = shared.registry.add(
        &hello.site_id,
        hello.instance.clone(),
        hello.agent_version.clone(),
        hello.platform.clone(),
        remote,
        link.clone(),
    );
    AgentConnected {
        site: &hello.site_id,
        instance: &hello.instance,
        link: &link_id,
        version: &hello.agent_version,
        platform: &hello.platform,
        remote,
        transport,
    }
    .emit(&shared);
    if let Some(until) = old_secret {
        agent.mark_old_secret(until);
        tracing::warn!(event = "agent_on_old_secret", site = %hello.site_id, agent = %hello.instance, "agent authenticated with a rotated-out secret still in its grace period; give it the new one");
    }
    tokio::spawn(crate::tunnel::health::run(agent.clone(), shared.clone()));
    let mut go_away = link.go_away_watch();
    let reason = loop {
        tokio::select! {
            reason = link.closed() => break reason,
            changed = go_away.changed() => {
                if changed.is_ok() && go_away.borrow().is_some() {
                    agent.draining.store(true, Ordering::Relaxed);
                    tracing::info!(event = "agent_draining", site = %agent.site, agent = %agent.instance, "agent is leaving; no new streams to it");
                } else if changed.is_err() {
                    break link.closed().await;
                }
            }
        }
    };
    shared.registry.remove(&agent);
    AgentDisconnected {
        agent: &agent,
        link: &link_id,
        remote,
        reason: &reason,
    }
    .emit(&shared);
}

/// An argon2 hash of an earlier version just proved right: stores the
/// secret's digest in its place, off the admission path (a task), and
/// rebuilds the catalog so the next check of it is instant.
fn rehash_later(shared: &Arc<EdgeShared>, id: String, old: String, secret: &warren_proto::Secret) {
    let digest = crate::tunnel::credentials::hash_secret(secret.expose());
    let shared = shared.clone();
    tokio::spawn(async move {
        match shared.store.rehash_site_secret(&id, &old, &digest).await {
            Ok(true) => {
                tracing::info!(event = "site_secret_rehashed", secret = %id, "a site secret's argon2 hash was replaced by its digest");
                if let Err(e) = shared.serving.lock().await.refresh(&shared).await {
                    tracing::debug!(error = %e, "catalog refresh after a rehash failed; the sync loop will");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(secret = %id, error = %e, "could not re-store a site secret's hash")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_older_than_the_minimum_or_unreadable_are_refused() {
        assert_eq!(version_triple("1.2.3"), Some((1, 2, 3)));
        assert_eq!(version_triple("1.2.3-rc.1"), Some((1, 2, 3)));
        assert_eq!(version_triple("1.2"), None);
        assert_eq!(version_triple("1.2.3.4"), None);
        assert!(too_old(env!("CARGO_PKG_VERSION")).is_none());
        assert!(too_old("99.0.0").is_none());
        let msg = too_old("0.0.9").expect("refused");
        assert!(
            msg.contains("upgrade warren") && msg.contains(MIN_AGENT_VERSION),
            "{msg}"
        );
        assert!(too_old("garbage").is_some());
        assert!(too_old("").is_some());
    }
}
