//! Getting a stream to a target: pick a target ([`crate::proxy::balance`]), pick an
//! agent of its site, open, fall back to the next agent when a link fails
//! before the agent answered, and to one other target when the agent could
//! not connect to the first.
//!
//! An allowlist refusal is final (every agent of a site enforces its own
//! allowlist, and a refusal is recorded for the status API); a link failure
//! is not, which is what makes losing one of several agents cost no failed
//! connections.

use crate::events::StreamRefused;
use crate::proxy::balance::{Pick, ResourceSlot, TargetGuard};
use crate::tunnel::registry::{AgentConn, Registry, StreamGuard};
use crate::EdgeShared;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use warren_proto::{OpenRequest, RefuseReason, TargetProtocol};
use warren_transport::{OpenError, TunnelStream};

/// How long an agent may take to connect to a target.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no stream could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error("no agent of site `{0}` is connected")]
    NoAgent(String),
    #[error("agent refused: {message}")]
    Refused {
        reason: RefuseReason,
        message: String,
    },
    #[error("no healthy target (the resource is fail_closed)")]
    NoHealthyTarget,
    #[error("every agent of site `{site}` failed: {last}")]
    AllFailed { site: String, last: String },
    #[error("no agent of site `{site}` answered within {after:?}")]
    Timeout { site: String, after: Duration },
}

pub(crate) async fn open_to_site(
    shared: &EdgeShared,
    resource: &str,
    site: &str,
    target: &str,
    protocol: TargetProtocol,
    client: SocketAddr,
) -> Result<(TunnelStream, StreamGuard), DispatchError> {
    let candidates = shared.registry.candidates(site);
    if candidates.is_empty() {
        return Err(DispatchError::NoAgent(site.to_owned()));
    }
    let request = OpenRequest {
        protocol,
        target: target.to_owned(),
        resource: resource.to_owned(),
        client: client.to_string(),
    };
    let mut last = String::new();
    let mut timed_out = false;
    for agent in candidates {
        let guard = Registry::charge(&agent);
        match tokio::time::timeout(OPEN_TIMEOUT, agent.link.open(request.clone())).await {
            Ok(Ok(stream)) => return Ok((stream, guard)),
            Ok(Err(OpenError::Refused { reason, message })) => {
                StreamRefused {
                    resource,
                    site,
                    target,
                    client,
                    agent: &agent.instance,
                    reason,
                    message: &message,
                }
                .emit(shared);
                return Err(DispatchError::Refused { reason, message });
            }
            Ok(Err(e)) => {
                tracing::debug!(resource, site, agent = %agent.instance, error = %e, "open failed on this agent's link; trying the next");
                last = e.to_string();
                timed_out = false;
            }
            Err(_) => {
                tracing::warn!(event = "open_timeout", resource, site, agent = %agent.instance, "agent did not answer an open within {OPEN_TIMEOUT:?}; trying the next");
                timed_out = true;
            }
        }
    }
    if timed_out {
        return Err(DispatchError::Timeout {
            site: site.to_owned(),
            after: OPEN_TIMEOUT,
        });
    }
    Err(DispatchError::AllFailed {
        site: site.to_owned(),
        last,
    })
}

/// A stream to a target, and what it counts against.
pub(crate) struct Connected {
    pub(crate) stream: TunnelStream,
    pub(crate) guards: Guards,
}

/// How a request reaches its target: a fresh tunnel stream, or a
/// connection `C` kept from an earlier request (see [`crate::proxy::http::origin_pool`]).
pub(crate) enum Via<C> {
    Fresh(TunnelStream),
    Reused(C),
}

/// A way to a target, and what it counts against.
pub(crate) struct ConnectedVia<C> {
    pub(crate) via: Via<C>,
    pub(crate) guards: Guards,
    pub(crate) pick: Pick,
}

/// The stream's slots on its agent and its target; released on drop.
pub(crate) struct Guards {
    pub(crate) agent: StreamGuard,
    _target: TargetGuard,
}

impl DispatchError {
    /// Whether another target may be tried: nothing reached the first one.
    fn target_failed(&self) -> bool {
        matches!(
            self,
            DispatchError::Refused {
                reason: RefuseReason::ConnectFailed | RefuseReason::ResolveFailed,
                ..
            }
        )
    }
}

/// Picks a target of `slot` and opens a stream to it. When the agent could
/// not connect to the target and `retry` allows it, one other target is
/// tried before giving up.
pub(crate) async fn connect(
    shared: &EdgeShared,
    slot: &ResourceSlot,
    protocol: TargetProtocol,
    client: SocketAddr,
    sticky: Option<&str>,
    retry: bool,
) -> Result<Connected, DispatchError> {
    let no_reuse = |_: &Pick| None::<((), Arc<AgentConn>)>;
    let c = connect_reusing(shared, slot, protocol, client, sticky, retry, no_reuse).await?;
    match c.via {
        Via::Fresh(stream) => Ok(Connected {
            stream,
            guards: c.guards,
        }),
        Via::Reused(()) => unreachable!("no_reuse never reuses"),
    }
}

/// [`connect`], but first asks `reuse` for a kept connection to the picked
/// target (and the agent carrying it); a stream is opened only if there is
/// none. Balancing, health and stickiness choose the target either way.
pub(crate) async fn connect_reusing<C>(
    shared: &EdgeShared,
    slot: &ResourceSlot,
    protocol: TargetProtocol,
    client: SocketAddr,
    sticky: Option<&str>,
    retry: bool,
    reuse: impl Fn(&Pick) -> Option<(C, Arc<AgentConn>)>,
) -> Result<ConnectedVia<C>, DispatchError> {
    let resource = slot.resource.load_full();
    let mut tried = Vec::new();
    let mut last_error = None;
    while tried.len() < if retry { 2 } else { 1 } {
        let Some(pick) = slot.pick(&resource, &shared.health, client.ip(), sticky, &tried) else {
            break;
        };
        if pick.fail_open {
            tracing::warn!(event = "fail_open", resource = %resource.name, upstream = %pick.target.address, "every target is unhealthy; trying one anyway (set fail_closed = true to refuse instead)");
        }
        let target_guard = slot.charge(&pick.target);
        if let Some((conn, agent)) = reuse(&pick) {
            return Ok(ConnectedVia {
                via: Via::Reused(conn),
                guards: Guards {
                    agent: Registry::charge(&agent),
                    _target: target_guard,
                },
                pick,
            });
        }
        match open_to_site(
            shared,
            &resource.name,
            &pick.target.site,
            &pick.target.address,
            protocol,
            client,
        )
        .await
        {
            Ok((stream, agent)) => {
                return Ok(ConnectedVia {
                    via: Via::Fresh(stream),
                    guards: Guards {
                        agent,
                        _target: target_guard,
                    },
                    pick,
                })
            }
            Err(e) if e.target_failed() => {
                tracing::info!(event = "target_unreachable", resource = %resource.name, upstream = %pick.target.address, error = %e, "target unreachable; trying another");
                tried.push(pick.index);
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(DispatchError::NoHealthyTarget))
}
