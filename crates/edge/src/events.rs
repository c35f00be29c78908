//! Notable events of the tunnel and its streams, as types. Each writes, in one place, its
//! log line (with its `event` name and a `reason` that is the metric's
//! label), its metric and its recorder row (the store's event log and the
//! notifications), so the three cannot drift apart.

use crate::tunnel::registry::AgentConn;
use crate::EdgeShared;
use std::net::SocketAddr;
use warren_proto::RefuseReason;

/// Why a tunnel connection did not become a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefuseCause {
    /// TLS or the hello never completed (scanners, timeouts, old clients).
    BeforeHello,
    /// A hello that could not be read or is from an unknown protocol version.
    BadHello,
    /// The edge is shutting down.
    Draining,
    /// The agent's version is older than the edge accepts.
    AgentTooOld,
    /// Unknown site id or wrong secret (one answer for both).
    BadCredentials,
    /// Its source already has as many handshakes in progress as it may.
    TooManyFromSource,
    /// Too many slow (legacy argon2) credential checks are waiting.
    Busy,
    /// Right credentials, but the site has as many links as it may.
    TooManyAgents,
}

impl RefuseCause {
    /// The log's `reason` and the metric's `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefuseCause::BeforeHello => "before_hello",
            RefuseCause::BadHello => "bad_hello",
            RefuseCause::Draining => "draining",
            RefuseCause::AgentTooOld => "agent_too_old",
            RefuseCause::BadCredentials => "bad_credentials",
            RefuseCause::TooManyFromSource => "too_many_from_source",
            RefuseCause::Busy => "busy",
            RefuseCause::TooManyAgents => "too_many_agents",
        }
    }
}

/// A tunnel connection refused (or failed) before it became a link.
pub(crate) struct AgentRefused<'a> {
    pub(crate) remote: SocketAddr,
    /// `tcp` or `quic`, once known.
    pub(crate) transport: Option<&'a str>,
    /// The site the hello named, once read.
    pub(crate) site: Option<&'a str>,
    pub(crate) cause: RefuseCause,
    /// What went wrong, for operators (never sent to the peer).
    pub(crate) detail: &'a str,
}

impl AgentRefused<'_> {
    pub(crate) fn emit(self, shared: &EdgeShared) {
        let reason = self.cause.as_str();
        let transport = self.transport.unwrap_or("");
        let site = self.site.unwrap_or("");
        match self.cause {
            // A flood: counted, and logged only at debug (the count says it).
            RefuseCause::TooManyFromSource => tracing::debug!(
                event = "agent_refused", reason, remote = %self.remote,
                "connection closed: {}", self.detail
            ),
            // No hello: nobody to refuse, and scanners make many of these.
            RefuseCause::BeforeHello => tracing::info!(
                event = "handshake_failed", reason, remote = %self.remote, error = %self.detail,
                "tunnel connection failed before the hello"
            ),
            RefuseCause::Draining => tracing::info!(
                event = "agent_refused", reason, remote = %self.remote, transport, site,
                error = %self.detail, "agent refused: {}", self.detail
            ),
            _ => tracing::warn!(
                event = "agent_refused", reason, remote = %self.remote, transport, site,
                error = %self.detail, "agent refused: {}", self.detail
            ),
        }
        shared.metrics.handshake_failed(reason);
    }
}

/// An agent admitted: a new link.
pub(crate) struct AgentConnected<'a> {
    pub(crate) site: &'a str,
    pub(crate) instance: &'a str,
    pub(crate) link: &'a str,
    pub(crate) version: &'a str,
    pub(crate) platform: &'a str,
    pub(crate) remote: SocketAddr,
    pub(crate) transport: &'a str,
}

impl AgentConnected<'_> {
    pub(crate) fn emit(self, shared: &EdgeShared) {
        tracing::info!(
            event = "agent_connected", site = %self.site, agent = %self.instance, link = %self.link,
            version = %self.version, platform = %self.platform, remote = %self.remote,
            transport = self.transport, "agent connected"
        );
        shared
            .metrics
            .agent_connects
            .get_or_create(&crate::metrics::SiteLabels {
                site: self.site.to_owned(),
            })
            .inc();
        let remote = self.remote.to_string();
        shared.recorder.agent_seen(
            self.instance,
            self.site,
            self.version,
            self.platform,
            &remote,
        );
        shared.recorder.event(
            "agent_connected",
            format!("site/{}", self.site),
            serde_json::json!({
                "agent": self.instance, "version": self.version,
                "platform": self.platform, "remote": remote, "transport": self.transport,
            }),
        );
    }
}

/// A link ended.
pub(crate) struct AgentDisconnected<'a> {
    pub(crate) agent: &'a AgentConn,
    pub(crate) link: &'a str,
    pub(crate) remote: SocketAddr,
    pub(crate) reason: &'a warren_transport::LinkError,
}

impl AgentDisconnected<'_> {
    pub(crate) fn emit(self, shared: &EdgeShared) {
        tracing::info!(
            event = "agent_disconnected", site = %self.agent.site, agent = %self.agent.instance,
            link = %self.link, remote = %self.remote, cause = self.reason.cause(),
            reason = %self.reason, "agent disconnected"
        );
        shared.recorder.event(
            "agent_disconnected",
            format!("site/{}", self.agent.site),
            serde_json::json!({ "agent": self.agent.instance, "reason": self.reason.to_string() }),
        );
    }
}

/// A target's health changed, as the agents report it.
pub(crate) struct TargetHealth<'a> {
    pub(crate) resource: &'a str,
    pub(crate) target: &'a str,
    pub(crate) agent: &'a AgentConn,
    pub(crate) healthy: bool,
    pub(crate) detail: &'a str,
}

impl TargetHealth<'_> {
    pub(crate) fn emit(self, shared: &EdgeShared) {
        let (resource, upstream, site, agent) = (
            self.resource,
            self.target,
            &self.agent.site,
            &self.agent.instance,
        );
        let event = if self.healthy {
            tracing::info!(event = "target_healthy", resource, upstream, site = %site, agent = %agent, detail = %self.detail, "target is healthy again; back in rotation");
            "target_healthy"
        } else {
            tracing::warn!(event = "target_unhealthy", resource, upstream, site = %site, agent = %agent, detail = %self.detail, "target is unhealthy; out of rotation");
            "target_unhealthy"
        };
        shared.recorder.event(
            event,
            format!("resource/{resource}"),
            serde_json::json!({
                "target": upstream, "site": site, "agent": agent, "detail": self.detail,
            }),
        );
    }
}

/// An agent refused to open a stream (its allowlist, a target it could not
/// reach): recorded for the status API, logged, counted.
pub(crate) struct StreamRefused<'a> {
    pub(crate) resource: &'a str,
    pub(crate) site: &'a str,
    pub(crate) target: &'a str,
    pub(crate) client: SocketAddr,
    pub(crate) agent: &'a str,
    pub(crate) reason: RefuseReason,
    pub(crate) message: &'a str,
}

impl StreamRefused<'_> {
    pub(crate) fn emit(self, shared: &EdgeShared) {
        let reason = self.reason.as_str();
        shared
            .registry
            .record_refusal(self.site, self.resource, self.target, reason, self.message);
        tracing::warn!(
            event = "stream_refused", resource = self.resource, site = self.site,
            upstream = self.target, client = %self.client, agent = self.agent, reason,
            message = %self.message, "agent refused the stream"
        );
        shared.metrics.stream_refused(self.resource, reason);
    }
}
