//! A certificate for a signed-in user, and the way through to the host:
//!
//! ```text
//! request (ssh_cert::parse_sign_request)
//!   → the ssh resource, and the policy's terms for the user
//!     (access::check_ssh: Policy::ssh, the decision in the audit trail)
//!   → the site lets the user in (user::let_in: the host's own veto)
//!   → the CA signs exactly what both allow, valid LIFETIME
//!   → the issuance as an `ssh_certificate` event
//! ```
//!
//! Decision: without a `[policy]`, no certificate is issued (an edge with
//! no policy leaves resources open; a login to a host is not something to
//! leave open by default).

use crate::access::SshAccess;
use crate::auth::Identity;
use crate::config::{Resource, ResourceKind};
use crate::proxy::balance::ResourceSlot;
use crate::EdgeShared;
use std::net::SocketAddr;
use std::sync::Arc;
use warren_identity::ssh_cert::{self, CertTerms, SignRequest};
use warren_policy::{SshGrant, SshPrincipal};
use warren_proto::ssh_user::{SshUserReply, SshUserRequest};

/// How long a certificate is valid.
pub(crate) const LIFETIME_S: u64 = 300;
/// How far before now a certificate starts (clocks disagree a little).
const SKEW_S: u64 = 60;

/// Certificates one user may ask for in a minute (each makes the site
/// work: an `ssh-user` stream, perhaps `useradd`).
pub(crate) const PER_MINUTE: u32 = 60;
/// Users counted at most (beyond, those idle a minute are forgotten, then
/// new ones refused until some are).
const MAX_USERS: usize = 10_000;
const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

/// Signing requests per user, per minute.
#[derive(Default)]
pub(crate) struct Rate(
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
);

impl Rate {
    /// Counts one request by `user`; false when over [`PER_MINUTE`].
    pub(crate) fn allow(&self, user: &str, now: std::time::Instant) -> bool {
        let mut users = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !users.contains_key(user) && users.len() >= MAX_USERS {
            users.retain(|_, (start, _)| now.duration_since(*start) < MINUTE);
            if users.len() >= MAX_USERS {
                return false;
            }
        }
        let (start, count) = users.entry(user.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= MINUTE {
            (*start, *count) = (now, 0);
        }
        if *count >= PER_MINUTE {
            return false;
        }
        *count += 1;
        true
    }
}

/// What was issued.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Issued {
    /// One OpenSSH certificate line (`ssh-ed25519-cert-v01@openssh.com ...`).
    pub(crate) certificate: String,
    /// The account to log in as: the user's own, else the first named one.
    pub(crate) account: String,
    /// Every principal the certificate carries.
    pub(crate) principals: Vec<String>,
    pub(crate) key_id: String,
    pub(crate) serial: u64,
    /// Unix seconds.
    pub(crate) valid_before: u64,
    /// Whether the own account has sudo.
    pub(crate) sudo: bool,
    /// A sudo role the policy named that the host refused.
    pub(crate) vetoed: Option<String>,
}

/// Why not.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    #[error("no ssh resource you may reach is named `{0}`")]
    NotGranted(String),
    #[error("ssh needs a policy on this edge ([policy] file)")]
    NoPolicy,
    #[error("the site did not let you in: {0}")]
    SiteRefused(String),
    #[error("the site could not be reached")]
    SiteUnavailable,
    #[error("the certificate could not be signed")]
    Ca,
}

/// The ssh resource `name` and the terms the policy grants `who` on it
/// (`access::check_ssh`, which audits the decision), with the grant that
/// allowed it.
pub(crate) fn terms(
    shared: &EdgeShared,
    who: &Identity,
    name: &str,
    client: SocketAddr,
) -> Result<(Arc<ResourceSlot>, Arc<Resource>, usize, SshGrant), SignError> {
    let slot = shared
        .resources
        .load()
        .by_name
        .get(name)
        .cloned()
        .ok_or_else(|| SignError::NotGranted(name.to_owned()))?;
    let resource = slot.resource.load_full();
    if resource.kind != ResourceKind::Ssh {
        return Err(SignError::NotGranted(name.to_owned()));
    }
    match crate::access::check_ssh(shared, &resource, client, who) {
        SshAccess::Granted { grant, terms } => Ok((slot, resource, grant, terms)),
        SshAccess::Denied => Err(SignError::NotGranted(name.to_owned())),
        SshAccess::NoPolicy => Err(SignError::NoPolicy),
    }
}

/// Signs a certificate for `who`'s key, as far as the policy and the host
/// both allow.
pub(crate) async fn sign(
    shared: &EdgeShared,
    who: &Identity,
    client: SocketAddr,
    request: SignRequest,
) -> Result<Issued, SignError> {
    let (_, resource, grant, terms) = terms(shared, who, &request.resource, client)?;
    let accounts: Vec<String> = terms
        .principals
        .iter()
        .filter_map(|p| match p {
            SshPrincipal::Account(a) => Some(a.clone()),
            SshPrincipal::Own => None,
        })
        .collect();
    let asked = SshUserRequest {
        resource: resource.name.clone(),
        email: who.email.clone(),
        own: terms.principals.contains(&SshPrincipal::Own),
        sudo: terms.sudo.clone(),
        accounts,
    };
    let reply = super::user::let_in(shared, &resource, client, &asked)
        .await
        .map_err(|e| {
            tracing::warn!(event = "ssh_site_unavailable", resource = %resource.name, user = %who.email, error = %e, "the site could not let an SSH user in");
            SignError::SiteUnavailable
        })?;
    let (own, sudo, vetoed, accounts) = match reply {
        SshUserReply::Granted {
            own,
            sudo,
            vetoed,
            accounts,
        } => (own, sudo, vetoed, accounts),
        SshUserReply::Refused(why) => {
            // The site's words are logged here, not passed on.
            tracing::warn!(event = "ssh_site_refused", resource = %resource.name, user = %who.email, reason = %why.escape_debug(), "the site refused an SSH user");
            return Err(SignError::SiteRefused(
                "the host refused (its log says why)".into(),
            ));
        }
    };
    // What the site reports is believed only where it is what was asked.
    let sudo = sudo && asked.sudo.is_some();
    let vetoed = vetoed.filter(|v| asked.sudo.as_ref() == Some(v));
    // Only what the policy granted, whatever the site said.
    let accounts: Vec<String> = accounts
        .into_iter()
        .filter(|a| asked.accounts.contains(a) && warren_policy::valid_account(a))
        .collect();
    let own = own.filter(|a| asked.own && warren_policy::valid_account(a));
    // Scoped to this resource, as the host records them: a certificate for
    // one host is none for another.
    let mut principals = Vec::new();
    if own.is_some() {
        principals.push(warren_proto::ssh_user::scoped(&resource.name, &who.email));
    }
    principals.extend(
        accounts
            .iter()
            .map(|a| warren_proto::ssh_user::scoped(&resource.name, a)),
    );
    let Some(account) = own.clone().or_else(|| accounts.first().cloned()) else {
        return Err(SignError::SiteRefused("no account this host allows".into()));
    };
    let ca = super::ca::Ca::load_or_create(&shared.store, &shared.config.load().data_dir)
        .await
        .map_err(|e| {
            tracing::error!(event = "ssh_ca_unavailable", error = %e, "the SSH CA could not be opened");
            SignError::Ca
        })?;
    let now = (warren_store::now_ms() / 1000).max(0) as u64;
    let serial: u64 = rand::random();
    let key_id = format!("{}#{:016x}", who.email, serial);
    let valid_before = now + LIFETIME_S;
    let cert = ssh_cert::issue(
        ca.key(),
        &request.key,
        &CertTerms {
            key_id: &key_id,
            serial,
            principals: &principals,
            extensions: &terms.extensions,
            source_address: resource.source_address.as_deref(),
            valid_after: now.saturating_sub(SKEW_S),
            valid_before,
        },
        rand::random(),
    )
    .map_err(|e| {
        tracing::error!(event = "ssh_sign_failed", error = %e, "signing a certificate failed");
        SignError::Ca
    })?;
    let line = cert.to_openssh().map_err(|_| SignError::Ca)?;
    let detail = serde_json::json!({
        "resource": resource.name,
        "key_id": key_id,
        "serial": serial,
        "principals": principals,
        "extensions": terms.extensions,
        "valid_before": valid_before,
        "key": request.key.fingerprint(Default::default()).to_string(),
        "ca": ca.fingerprint(),
        "grant": grant,
        "sudo": sudo,
        "vetoed": vetoed,
        "client": client.ip().to_string(),
    });
    tracing::info!(event = "ssh_certificate_issued", resource = %resource.name, user = %who.email, key_id = %key_id, serial, principals = ?principals, sudo, vetoed = ?vetoed, "an SSH certificate was issued");
    if let Err(e) = shared
        .store
        .record_event("ssh_certificate", &who.email, &detail)
        .await
    {
        tracing::error!(event = "store_write_failed", error = %e, "the certificate's record was not written");
    }
    Ok(Issued {
        certificate: line,
        account,
        principals,
        key_id,
        serial,
        valid_before,
        sudo,
        vetoed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_user_signs_at_most_per_minute_and_again_after() {
        let rate = Rate::default();
        let t0 = Instant::now();
        for _ in 0..PER_MINUTE {
            assert!(rate.allow("a@x.co", t0));
        }
        assert!(!rate.allow("a@x.co", t0 + Duration::from_secs(59)));
        assert!(rate.allow("b@x.co", t0), "another user is counted apart");
        assert!(rate.allow("a@x.co", t0 + Duration::from_secs(60)));
    }
}
