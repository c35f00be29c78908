//! Who is connected: sites, their agents, their counters, and the choice of
//! agent for each new stream.
//!
//! Several agents of one site may be connected at once (active-active). A new
//! stream goes to the agent with the fewest active streams (ties broken at
//! random); the caller tries the others in order if that agent's link fails.
//! An agent that announced `GoAway` gets no new streams.

use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use warren_transport::{Link, TransportKind};

/// One connected agent.
pub struct AgentConn {
    /// Edge-local id of this connection.
    pub conn_id: u64,
    /// The site it serves.
    pub site: String,
    /// The agent's per-process id.
    pub instance: String,
    /// Its software version.
    pub version: String,
    /// Its `os/arch`.
    pub platform: String,
    /// Where it connected from.
    pub remote: SocketAddr,
    /// When.
    pub since: SystemTime,
    /// The link.
    pub link: Link,
    /// Streams open now.
    pub active_streams: AtomicU64,
    /// Streams carried in all.
    pub total_streams: AtomicU64,
    /// Bytes from visitors to the site.
    pub bytes_to_site: AtomicU64,
    /// Bytes from the site to visitors.
    pub bytes_from_site: AtomicU64,
    /// Set when the agent announced it is leaving.
    pub draining: AtomicBool,
    /// It authenticated with a secret that has since been rotated out (or
    /// with one already retired and still in its grace period).
    pub on_old_secret: AtomicBool,
    /// When the rotated-out secret it authenticated with stops working
    /// (Unix ms; 0: it is on the current secret). Past it, the edge closes
    /// the link ([`Registry::close_expired_secrets`]).
    pub old_secret_until_ms: AtomicI64,
    /// The configuration version the agent acknowledged (0: none yet).
    pub config_version: AtomicU64,
}

impl AgentConn {
    /// Marks the agent as on a rotated-out secret that works until
    /// `until_ms` (the earliest deadline wins when rotated twice).
    pub fn mark_old_secret(&self, until_ms: i64) {
        self.on_old_secret.store(true, Ordering::Relaxed);
        let until_ms = until_ms.max(1);
        let _ =
            self.old_secret_until_ms
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                    Some(if cur == 0 {
                        until_ms
                    } else {
                        cur.min(until_ms)
                    })
                });
    }
}

/// A refusal reported by an agent.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RefusalRecord {
    /// When (RFC 3339).
    pub at: String,
    /// The resource.
    pub resource: String,
    /// The target asked for.
    pub target: String,
    /// Agent's reason code.
    pub reason: String,
    /// Agent's message.
    pub message: String,
}

#[derive(Default)]
struct SiteState {
    agents: Vec<Arc<AgentConn>>,
    last_refusal: Option<RefusalRecord>,
    refusals: u64,
    /// Totals of agents that have left, so site totals never go down.
    retired_streams: u64,
    retired_to_site: u64,
    retired_from_site: u64,
}

/// A site's counters since the edge started (for `/metrics`).
#[derive(Clone, Debug)]
pub struct SiteTotals {
    /// Site id.
    pub site: String,
    /// Agents connected now.
    pub agents: u64,
    /// Streams open now.
    pub streams_active: u64,
    /// Streams carried in all.
    pub streams_total: u64,
    /// Bytes visitors → site.
    pub bytes_to_site: u64,
    /// Bytes site → visitors.
    pub bytes_from_site: u64,
    /// Refusals by its agents.
    pub refusals: u64,
}

/// The live registry, shared by the tunnel listener, the proxies and the API.
#[derive(Default)]
pub struct Registry {
    sites: Mutex<HashMap<String, SiteState>>,
    next_id: AtomicU64,
}

/// Holds one active-stream slot on an agent; releases it when dropped.
pub struct StreamGuard {
    agent: Arc<AgentConn>,
}

impl StreamGuard {
    /// The agent carrying the stream.
    pub fn agent(&self) -> &Arc<AgentConn> {
        &self.agent
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.agent.active_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Status of one agent, as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AgentStatus {
    /// Agent process id.
    pub instance: String,
    /// Software version.
    pub version: String,
    /// `os/arch`.
    pub platform: String,
    /// `quic` or `tcp`.
    pub transport: &'static str,
    /// Remote address.
    pub remote: String,
    /// RFC 3339.
    pub connected_since: String,
    /// Streams open.
    pub active_streams: u64,
    /// Streams carried in all.
    pub total_streams: u64,
    /// Bytes visitors → site.
    pub bytes_in: u64,
    /// Bytes site → visitors.
    pub bytes_out: u64,
    /// Round-trip time in milliseconds, if measured.
    pub rtt_ms: Option<f64>,
    /// Leaving (announced GoAway).
    pub draining: bool,
    /// Authenticated with a rotated-out secret still in its grace period.
    pub on_old_secret: bool,
    /// The configuration version whose plan the agent runs (0: none yet).
    pub config_version: u64,
}

/// Status of one site.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SiteStatus {
    /// Site id.
    pub id: String,
    /// `online` when at least one agent is connected.
    pub status: &'static str,
    /// Connected agents.
    pub agents: Vec<AgentStatus>,
    /// Refusals reported by its agents since the edge started.
    pub refusals: u64,
    /// The latest refusal.
    pub last_refusal: Option<RefusalRecord>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Registry {
    /// Adds a connected agent.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        site: &str,
        instance: String,
        version: String,
        platform: String,
        remote: SocketAddr,
        link: Link,
    ) -> Arc<AgentConn> {
        let agent = Arc::new(AgentConn {
            conn_id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            site: site.to_owned(),
            instance,
            version,
            platform,
            remote,
            since: SystemTime::now(),
            link,
            active_streams: AtomicU64::new(0),
            total_streams: AtomicU64::new(0),
            bytes_to_site: AtomicU64::new(0),
            bytes_from_site: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            on_old_secret: AtomicBool::new(false),
            old_secret_until_ms: AtomicI64::new(0),
            config_version: AtomicU64::new(0),
        });
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .entry(site.to_owned())
            .or_default()
            .agents
            .push(agent.clone());
        agent
    }

    /// Removes an agent (its link closed).
    pub fn remove(&self, agent: &AgentConn) {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sites.get_mut(&agent.site) {
            let before = s.agents.len();
            s.agents.retain(|a| a.conn_id != agent.conn_id);
            if s.agents.len() < before {
                s.retired_streams += agent.total_streams.load(Ordering::Relaxed);
                s.retired_to_site += agent.bytes_to_site.load(Ordering::Relaxed);
                s.retired_from_site += agent.bytes_from_site.load(Ordering::Relaxed);
            }
        }
    }

    /// Closes the links of every agent of `site` (the site was removed).
    pub fn disconnect_site(&self, site: &str) {
        let agents = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            sites.remove(site).map(|s| s.agents).unwrap_or_default()
        };
        for a in agents {
            a.link.close("site removed from the edge configuration");
        }
    }

    /// Agents of `site` able to take a new stream, best first. The first one
    /// is already charged one active stream through the returned guard;
    /// callers that fall back to another agent call [`Registry::charge`].
    pub fn candidates(&self, site: &str) -> Vec<Arc<AgentConn>> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = sites.get(site) else {
            return Vec::new();
        };
        let mut agents: Vec<(u64, u32, Arc<AgentConn>)> = s
            .agents
            .iter()
            .filter(|a| !a.draining.load(Ordering::Relaxed) && !a.link.is_closed())
            .map(|a| {
                (
                    a.active_streams.load(Ordering::Relaxed),
                    rand::random::<u32>(),
                    a.clone(),
                )
            })
            .collect();
        agents.sort_by_key(|(active, tie, _)| (*active, *tie));
        agents.into_iter().map(|(_, _, a)| a).collect()
    }

    /// Counts a stream against `agent` until the guard drops.
    pub fn charge(agent: &Arc<AgentConn>) -> StreamGuard {
        agent.active_streams.fetch_add(1, Ordering::Relaxed);
        agent.total_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            agent: agent.clone(),
        }
    }

    /// Records a refusal reported by an agent of `site`.
    pub fn record_refusal(
        &self,
        site: &str,
        resource: &str,
        target: &str,
        reason: &str,
        message: &str,
    ) {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let s = sites.entry(site.to_owned()).or_default();
        s.refusals += 1;
        s.last_refusal = Some(RefusalRecord {
            at: rfc3339(SystemTime::now()),
            resource: resource.to_owned(),
            target: target.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
        });
    }

    /// Streams open across every agent.
    pub fn active_streams(&self) -> u64 {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .values()
            .flat_map(|s| s.agents.iter())
            .map(|a| a.active_streams.load(Ordering::Relaxed))
            .sum()
    }

    /// How many agents of `site` are connected.
    pub fn agent_count(&self, site: &str) -> usize {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites.get(site).map_or(0, |s| s.agents.len())
    }

    /// The connected agents of `site`.
    pub fn agents_of(&self, site: &str) -> Vec<Arc<AgentConn>> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .get(site)
            .map(|s| s.agents.clone())
            .unwrap_or_default()
    }

    /// Closes the links of agents whose rotated-out secret's grace has
    /// ended by `now_ms`; returns them.
    pub fn close_expired_secrets(&self, now_ms: i64) -> Vec<Arc<AgentConn>> {
        let expired: Vec<Arc<AgentConn>> = self
            .all_agents()
            .into_iter()
            .filter(|a| {
                let until = a.old_secret_until_ms.load(Ordering::Relaxed);
                until != 0 && now_ms >= until
            })
            .collect();
        for a in &expired {
            a.link.close(
                "the grace period of the secret this agent uses has ended; restart it with the site's new secret",
            );
        }
        expired
    }

    /// Every connected agent.
    pub fn all_agents(&self) -> Vec<Arc<AgentConn>> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .values()
            .flat_map(|s| s.agents.iter().cloned())
            .collect()
    }

    /// Counters of `site_ids` (every configured site, connected or not).
    pub fn site_totals<'a>(
        &self,
        site_ids: impl IntoIterator<Item = &'a String>,
    ) -> Vec<SiteTotals> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        site_ids
            .into_iter()
            .map(|id| {
                let mut t = SiteTotals {
                    site: id.clone(),
                    agents: 0,
                    streams_active: 0,
                    streams_total: 0,
                    bytes_to_site: 0,
                    bytes_from_site: 0,
                    refusals: 0,
                };
                if let Some(s) = sites.get(id) {
                    t.agents = s.agents.len() as u64;
                    t.refusals = s.refusals;
                    t.streams_total = s.retired_streams;
                    t.bytes_to_site = s.retired_to_site;
                    t.bytes_from_site = s.retired_from_site;
                    for a in &s.agents {
                        t.streams_active += a.active_streams.load(Ordering::Relaxed);
                        t.streams_total += a.total_streams.load(Ordering::Relaxed);
                        t.bytes_to_site += a.bytes_to_site.load(Ordering::Relaxed);
                        t.bytes_from_site += a.bytes_from_site.load(Ordering::Relaxed);
                    }
                }
                t
            })
            .collect()
    }

    /// Status of `site_ids` (every configured site, connected or not).
    pub fn status<'a>(&self, site_ids: impl IntoIterator<Item = &'a String>) -> Vec<SiteStatus> {
        let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        site_ids
            .into_iter()
            .map(|id| {
                let state = sites.get(id);
                let agents: Vec<AgentStatus> = state
                    .map(|s| s.agents.iter().map(|a| agent_status(a)).collect())
                    .unwrap_or_default();
                SiteStatus {
                    id: id.clone(),
                    status: if agents.is_empty() {
                        "offline"
                    } else {
                        "online"
                    },
                    agents,
                    refusals: state.map_or(0, |s| s.refusals),
                    last_refusal: state.and_then(|s| s.last_refusal.clone()),
                }
            })
            .collect()
    }
}

fn agent_status(a: &AgentConn) -> AgentStatus {
    AgentStatus {
        instance: a.instance.clone(),
        version: a.version.clone(),
        platform: a.platform.clone(),
        transport: match a.link.kind() {
            TransportKind::Quic => "quic",
            TransportKind::Tcp => "tcp",
        },
        remote: a.remote.to_string(),
        connected_since: rfc3339(a.since),
        active_streams: a.active_streams.load(Ordering::Relaxed),
        total_streams: a.total_streams.load(Ordering::Relaxed),
        bytes_in: a.bytes_to_site.load(Ordering::Relaxed),
        bytes_out: a.bytes_from_site.load(Ordering::Relaxed),
        rtt_ms: a.link.rtt().map(|d| d.as_secs_f64() * 1000.0),
        draining: a.draining.load(Ordering::Relaxed),
        on_old_secret: a.on_old_secret.load(Ordering::Relaxed),
        config_version: a.config_version.load(Ordering::Relaxed),
    }
}
