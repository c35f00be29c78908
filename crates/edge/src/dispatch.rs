//! Getting a stream to a site: pick an agent, open, fall back to the next
//! agent when a link fails before the agent answered.
//!
//! A refusal is final (every agent of a site enforces its own allowlist, and
//! a refusal is recorded for the status API); a link failure is not, which is
//! what makes losing one of several agents cost no failed connections.

use crate::registry::{Registry, StreamGuard};
use crate::EdgeShared;
use std::net::SocketAddr;
use std::time::Duration;
use warren_proto::{OpenRequest, TargetProtocol};
use warren_transport::{OpenError, TunnelStream};

/// How long an agent may take to connect to a target.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no stream could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error("no agent of site `{0}` is connected")]
    NoAgent(String),
    #[error("agent refused: {0}")]
    Refused(String),
    #[error("every agent of site `{site}` failed: {last}")]
    AllFailed { site: String, last: String },
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
    for agent in candidates {
        let guard = Registry::charge(&agent);
        match tokio::time::timeout(OPEN_TIMEOUT, agent.link.open(request.clone())).await {
            Ok(Ok(stream)) => return Ok((stream, guard)),
            Ok(Err(OpenError::Refused { reason, message })) => {
                shared
                    .registry
                    .record_refusal(site, resource, target, reason.as_str(), &message);
                tracing::warn!(
                    event = "stream_refused",
                    resource, site, upstream = target, client = %client,
                    agent = %agent.instance, reason = reason.as_str(), message = %message,
                    "agent refused the stream"
                );
                return Err(DispatchError::Refused(message));
            }
            Ok(Err(e)) => {
                tracing::debug!(resource, site, agent = %agent.instance, error = %e, "open failed on this agent's link; trying the next");
                last = e.to_string();
            }
            Err(_) => {
                tracing::warn!(resource, site, agent = %agent.instance, "agent did not answer an open within {OPEN_TIMEOUT:?}; trying the next");
                last = "timed out".into();
            }
        }
    }
    Err(DispatchError::AllFailed {
        site: site.to_owned(),
        last,
    })
}
