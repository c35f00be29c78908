//! Why a request was not forwarded, or failed on its way: one error that
//! names who failed (its [`Source`]) and whether sending the request again
//! is safe. The status code, the page, the metric label, the access-log
//! fields and the retry decisions all read it, so they cannot disagree.

use crate::proxy::dispatch::DispatchError;
use http::StatusCode;
use std::time::Duration;
use warren_proto::RefuseReason;

/// Who failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The visitor's request (400, 404, 421).
    Client,
    /// The tunnel: no agent, a link lost, an agent that did not answer.
    Tunnel,
    /// The agent refused (its allowlist, a request it cannot serve).
    Agent,
    /// The target: down by its health checks, unreachable from the agent,
    /// or an origin that failed mid-request.
    Upstream,
}

impl Source {
    /// The label in metrics and the access log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Tunnel => "tunnel",
            Source::Agent => "agent",
            Source::Upstream => "upstream",
        }
    }
}

/// Why a visitor was refused, as told to the visitor: which door is shut,
/// never what the policy or the rules say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DeniedWhy {
    /// Signed in, and no grant allows this visitor.
    #[error("no grant of this edge's policy allows it to you")]
    NotGranted,
    /// Signed in, and a grant would allow it with a second factor passed
    /// within its window.
    #[error("it needs a second factor passed recently: pass it again at {step_up}, then reload")]
    SecondFactor { step_up: String },
    /// One of the resource's rules refuses the request.
    #[error("a rule of this resource refuses this request")]
    Rule,
    /// Not signed in, and the resource offers no sign-in here.
    #[error("it is open only to signed-in users, and it offers no sign-in here")]
    NoSignIn,
}

/// A request that ends at the edge with an error page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The request itself is unusable (host, target).
    #[error("{0}")]
    BadRequest(String),
    /// The Host is not the name the TLS connection was made for.
    #[error("this connection was made for another host name; open a new connection")]
    Misdirected,
    /// No resource at this host and path.
    #[error("nothing is published at this address")]
    NoRoute,
    /// The policy grants this visitor nothing here (or a rule refuses).
    #[error("`{resource}` is not open to you: {why}")]
    Denied { resource: String, why: DeniedWhy },
    /// Every target is down and the resource fails closed.
    #[error("`{resource}` has no healthy target right now")]
    NoHealthyTarget { resource: String },
    /// No agent of the target's site is connected.
    #[error("`{resource}` is unavailable: site `{site}` has no connected agent")]
    NoAgent { resource: String, site: String },
    /// The agent refused to open the stream.
    #[error("`{resource}` could not be reached: {message}")]
    Refused {
        resource: String,
        reason: RefuseReason,
        message: String,
    },
    /// Every agent's link failed before it answered.
    #[error("`{resource}` could not be reached: every agent of site `{site}` failed: {last}")]
    LinkFailed {
        resource: String,
        site: String,
        last: String,
    },
    /// No agent answered the open in time.
    #[error(
        "`{resource}` could not be reached: no agent of site `{site}` answered within {after:?}"
    )]
    TunnelTimeout {
        resource: String,
        site: String,
        after: Duration,
    },
    /// The origin failed: the HTTP exchange over the stream broke.
    #[error("the origin of `{resource}` failed: {error}")]
    Origin {
        resource: String,
        error: String,
        /// The request was not sent (hyper handed it back).
        unsent: bool,
    },
}

impl ProxyError {
    /// A stream could not be had for `resource`.
    pub(crate) fn dispatch(resource: &str, e: DispatchError) -> ProxyError {
        let resource = resource.to_owned();
        match e {
            DispatchError::NoAgent(site) => ProxyError::NoAgent { resource, site },
            DispatchError::Refused { reason, message } => ProxyError::Refused {
                resource,
                reason,
                message,
            },
            DispatchError::NoHealthyTarget => ProxyError::NoHealthyTarget { resource },
            DispatchError::AllFailed { site, last } => ProxyError::LinkFailed {
                resource,
                site,
                last,
            },
            DispatchError::Timeout { site, after } => ProxyError::TunnelTimeout {
                resource,
                site,
                after,
            },
        }
    }

    /// What the visitor's page says: the resource and what kind of
    /// failure, never an address, a site, an agent's or origin's words
    /// (those go to the access log, under the request id the page shows).
    pub(crate) fn public(&self) -> String {
        match self {
            ProxyError::BadRequest(why) => why.clone(),
            ProxyError::Misdirected | ProxyError::NoRoute | ProxyError::Denied { .. } => {
                self.to_string()
            }
            ProxyError::NoHealthyTarget { resource } => {
                format!("`{resource}` has no healthy target right now")
            }
            ProxyError::NoAgent { resource, .. } => {
                format!("`{resource}` is unavailable right now: its site is not connected")
            }
            ProxyError::Refused {
                resource, reason, ..
            } => format!(
                "`{resource}` could not be reached: {}",
                reason.public_text()
            ),
            ProxyError::LinkFailed { resource, .. } => {
                format!("`{resource}` could not be reached")
            }
            ProxyError::TunnelTimeout { resource, .. } => {
                format!("`{resource}` did not answer in time")
            }
            ProxyError::Origin { resource, .. } => format!("`{resource}` failed to answer"),
        }
    }

    /// Who failed.
    pub(crate) fn source(&self) -> Source {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::Misdirected
            | ProxyError::NoRoute
            | ProxyError::Denied { .. } => Source::Client,
            ProxyError::NoAgent { .. }
            | ProxyError::LinkFailed { .. }
            | ProxyError::TunnelTimeout { .. } => Source::Tunnel,
            ProxyError::Refused { reason, .. } if target_unreachable(*reason) => Source::Upstream,
            ProxyError::Refused { .. } => Source::Agent,
            ProxyError::NoHealthyTarget { .. } | ProxyError::Origin { .. } => Source::Upstream,
        }
    }

    /// The status the visitor gets.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Denied { .. } => StatusCode::FORBIDDEN,
            ProxyError::NoHealthyTarget { .. } | ProxyError::NoAgent { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::TunnelTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Refused { .. }
            | ProxyError::LinkFailed { .. }
            | ProxyError::Origin { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the request may be sent again, on another stream or to
    /// another target: nothing of it reached an origin.
    pub(crate) fn retry_safe(&self) -> bool {
        match self {
            ProxyError::NoAgent { .. }
            | ProxyError::LinkFailed { .. }
            | ProxyError::TunnelTimeout { .. } => true,
            ProxyError::Refused { reason, .. } => target_unreachable(*reason),
            ProxyError::Origin { unsent, .. } => *unsent,
            ProxyError::BadRequest(_)
            | ProxyError::Misdirected
            | ProxyError::NoRoute
            | ProxyError::Denied { .. }
            | ProxyError::NoHealthyTarget { .. } => false,
        }
    }
}

/// The agent could not reach the target (as opposed to refusing to try).
fn target_unreachable(reason: RefuseReason) -> bool {
    matches!(
        reason,
        RefuseReason::ConnectFailed | RefuseReason::ResolveFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reason: RefuseReason) -> ProxyError {
        ProxyError::dispatch(
            "app",
            DispatchError::Refused {
                reason,
                message: "m".into(),
            },
        )
    }

    #[test]
    fn each_failure_names_its_source_status_and_retry() {
        let timeout = ProxyError::dispatch(
            "app",
            DispatchError::Timeout {
                site: "home".into(),
                after: Duration::from_secs(10),
            },
        );
        let cases: Vec<(ProxyError, Source, u16, bool)> = vec![
            (
                ProxyError::BadRequest("no Host header".into()),
                Source::Client,
                400,
                false,
            ),
            (ProxyError::Misdirected, Source::Client, 421, false),
            (ProxyError::NoRoute, Source::Client, 404, false),
            (
                ProxyError::dispatch("app", DispatchError::NoHealthyTarget),
                Source::Upstream,
                503,
                false,
            ),
            (
                ProxyError::dispatch("app", DispatchError::NoAgent("home".into())),
                Source::Tunnel,
                503,
                true,
            ),
            (timeout, Source::Tunnel, 504, true),
            (
                ProxyError::dispatch(
                    "app",
                    DispatchError::AllFailed {
                        site: "home".into(),
                        last: "reset".into(),
                    },
                ),
                Source::Tunnel,
                502,
                true,
            ),
            (refused(RefuseReason::NotAllowed), Source::Agent, 502, false),
            (
                refused(RefuseReason::ConnectFailed),
                Source::Upstream,
                502,
                true,
            ),
            (
                refused(RefuseReason::ResolveFailed),
                Source::Upstream,
                502,
                true,
            ),
            (
                ProxyError::Origin {
                    resource: "app".into(),
                    error: "closed".into(),
                    unsent: false,
                },
                Source::Upstream,
                502,
                false,
            ),
        ];
        for (e, source, status, retry) in cases {
            assert_eq!(e.source(), source, "{e}");
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.retry_safe(), retry, "{e}");
        }
    }
}
