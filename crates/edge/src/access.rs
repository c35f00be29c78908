//! Who may reach a resource, asked before a byte goes to a site.
//!
//! Without a `[policy]`, every resource is open (the edge says so at start).
//! With one, default deny: a resource marked `auth = "public"` is open to
//! anyone; any other is reachable only as the policy's grants allow a
//! principal. Visitors carry no identity yet (sign-in is issue 16), so today
//! a policy leaves exactly the public resources reachable. Every denial is
//! logged (`access_denied`) and counted (`warren_edge_access_denied_total`).

use crate::config::{Auth, EdgeConfig, Resource};
use crate::EdgeShared;
use std::net::SocketAddr;

/// The answer for one connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// No policy is loaded: every resource is open.
    Open,
    /// The resource is `auth = "public"`.
    Public,
    /// A policy is loaded and nothing grants this visitor the resource.
    Denied,
}

impl Access {
    /// The access log's `access` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Public => "public",
            Access::Denied => "denied",
        }
    }
}

/// The answer for a visitor without an identity.
pub(crate) fn anonymous(config: &EdgeConfig, resource: &Resource) -> Access {
    match (&config.policy, resource.auth) {
        (None, _) => Access::Open,
        (Some(_), Auth::Public) => Access::Public,
        (Some(_), Auth::Login) => Access::Denied,
    }
}

/// Asks, and logs and counts a denial.
pub(crate) fn check(shared: &EdgeShared, resource: &Resource, client: SocketAddr) -> Access {
    let access = anonymous(&shared.config.load(), resource);
    if access == Access::Denied {
        tracing::info!(
            event = "access_denied", resource = %resource.name, client = %client,
            reason = "no_grant",
            "denied by the policy: no grant lets an anonymous visitor reach this resource"
        );
        shared
            .metrics
            .access_denied
            .get_or_create(&crate::metrics::ResourceLabels {
                resource: resource.name.clone(),
            })
            .inc();
    }
    access
}
