//! Phase 3, access: whether this visitor may reach this resource.
//!
//! Today every resource is open to whoever reaches it, and the decision
//! says so: the access log records `"access": "open"` for each request that
//! got this far. Identity (sessions, SSO, passwords, share links) and the
//! policy's `decide` plug in here, before a byte reaches a site.

use crate::config::Resource;
use crate::proxy::http::request::Head;

/// The outcome of the access phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No access control applies: the resource is open.
    Open,
}

impl Decision {
    /// The access log's `access` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Decision::Open => "open",
        }
    }
}

/// Decides whether the request may go on to the upstream phase.
pub(crate) fn decide(_head: &Head, _resource: &Resource) -> Decision {
    Decision::Open
}
