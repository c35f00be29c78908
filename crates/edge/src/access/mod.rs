//! Who may reach a resource, asked before a byte goes to a site.
//!
//! Without a policy, every resource is open (the edge says so at start).
//! With one ([`live`]: the config file's or the API's), default deny: a
//! resource marked `auth = "public"` is open to anyone; any other is
//! reachable only as the policy's grants allow a principal. On an http
//! request the principal is the signed-in user of a live session cookie
//! ([`crate::auth`]), else an API key presented as `Warren-Key: wrn_...`
//! (a machine's credential, like a service token). Neither the cookie nor
//! the header reaches the origin. To the policy, an http resource is
//! `NAME:443` (tcp), carrying its sites' tags.
//!
//! A resource may also list its own doors in `auth` (`password`, `pin`,
//! `link`): a visitor holding one open (a pass cookie, or a share link in
//! `Warren-Link`) is let in as `Access::Pass` without asking the policy,
//! which knows no one to ask about; a door admits to its resource only and
//! identifies no one (no `Remote-User`).
//!
//! Before any of it, a resource's `rules` (`rules.rs`) may bypass sign-in
//! and the policy, deny, or continue, by client network and, for http,
//! path, method and header presence: the first rule that matches decides.
//!
//! An ssh resource is `NAME:22` to the policy, asked for a signed-in user
//! by [`check_ssh`] (what a certificate may carry, `Policy::ssh`).
//!
//! Every denial is logged (`access_denied`, with the reason) and counted
//! (`warren_edge_access_denied_total`); every http decision is in the
//! access log with its principal and the grant that allowed it.

pub(crate) mod audit;
pub(crate) mod live;
pub(crate) mod rules;

use crate::auth::Identity;
use crate::config::{Auth, EdgeConfig, Resource, RuleAction};
use crate::EdgeShared;
use std::net::SocketAddr;
use warren_policy::{Action, Decision, Method, Principal, Proto, Target};

/// The request header a key is presented in.
pub(crate) const KEY_HEADER: &str = "warren-key";

/// The request header a share link's token is presented in (machines).
pub(crate) const LINK_HEADER: &str = "warren-link";

/// The port an http resource has to the policy.
pub(crate) const HTTP_PORT: u16 = 443;

/// The port an ssh resource has to the policy.
pub(crate) const SSH_PORT: u16 = 22;

/// The answer for one connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// No policy is loaded: every resource is open.
    Open,
    /// The resource is `auth = "public"`.
    Public,
    /// The resource's `rules[rule]` lets it through without sign-in.
    Bypassed {
        /// Index into the resource's rules.
        rule: usize,
    },
    /// A policy is loaded and `grants[grant]` allows this principal.
    Granted {
        /// Index into the policy's grants.
        grant: usize,
    },
    /// The resource's own door (password, PIN, share link) was opened:
    /// its `auth` list admits the holder, who is no one the policy knows.
    Pass,
    /// A policy is loaded and nothing grants this visitor the resource.
    Denied,
}

impl Access {
    /// The access log's `access` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Public => "public",
            Access::Granted { .. } => "granted",
            Access::Bypassed { .. } => "bypass",
            Access::Pass => "pass",
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

/// Asks for a visitor without an identity (tcp, udp, tls passthrough),
/// and logs and counts a denial.
pub(crate) fn check(shared: &EdgeShared, resource: &Resource, client: SocketAddr) -> Access {
    if let Some((_, access)) = by_rule(shared, resource, client, None) {
        return access;
    }
    let access = anonymous(&shared.config.load(), resource);
    if access == Access::Denied {
        denied(shared, resource, client, "anonymous", "no_grant");
    }
    audit(shared, resource, client, access, None, None, "none");
    access
}

/// The answer for a signed-in user on an ssh resource.
pub(crate) enum SshAccess {
    /// No policy is loaded: nothing is granted (a login to a host is not
    /// left open, unlike other resources).
    NoPolicy,
    /// Nothing grants `NAME:22` to the user.
    Denied,
    /// `grants[grant]` is the first that allows; `terms` what a
    /// certificate may carry (the union of the allowing grants).
    Granted {
        grant: usize,
        terms: warren_policy::SshGrant,
    },
}

/// Asks for `who` on an ssh resource (`NAME:22/tcp` to the policy,
/// `Policy::ssh`). Under a policy the decision goes to the audit trail,
/// and a denial is logged and counted, as on every other path.
pub(crate) fn check_ssh(
    shared: &EdgeShared,
    resource: &Resource,
    client: SocketAddr,
    who: &Identity,
) -> SshAccess {
    let config = shared.config.load();
    let Some(settings) = config.policy.as_ref() else {
        return SshAccess::NoPolicy;
    };
    let catalog = shared.catalog.load();
    let tags = catalog.tags_of(resource);
    let target = Target {
        resource: Some(&resource.name),
        tags: &tags,
        addr: None,
        port: SSH_PORT,
        proto: Proto::Tcp,
    };
    let principal = Principal::User {
        email: &who.email,
        groups: &who.groups,
    };
    let fresh = Action {
        request: None,
        second_factor: second_factor_age(&catalog, &who.email),
    };
    let (access, answer) = match settings.policy.ssh(&principal, &target, &fresh) {
        Some((grant, terms)) => (
            Access::Granted { grant },
            SshAccess::Granted { grant, terms },
        ),
        None => {
            denied(shared, resource, client, &who.email, "no_grant");
            (Access::Denied, SshAccess::Denied)
        }
    };
    audit(
        shared,
        resource,
        client,
        access,
        None,
        Some(&who.email),
        "ssh",
    );
    answer
}

/// A person on a device, as the policy sees them: the user (and the groups
/// their last single sign-on gave) and the device's own tags. `device` is
/// the WireGuard device's name; `None` for `warren connect`.
pub(crate) struct DeviceWho<'a> {
    pub(crate) device: Option<&'a str>,
    pub(crate) email: &'a str,
    pub(crate) groups: &'a [String],
    pub(crate) tags: &'a [String],
}

/// May this device open a flow to `dst` of private resource `resource`?
/// Its user's grants, or its tags' grants, must allow the address, port and
/// protocol. Without a policy nothing is allowed: a device is a person on a
/// network, and which network is the policy's to say. Every decision is
/// audited (method `device`, principal `EMAIL (device NAME)`; method
/// `connect` for `warren connect`).
pub(crate) fn check_device(
    shared: &EdgeShared,
    resource: &Resource,
    who: &DeviceWho<'_>,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    proto: Proto,
) -> (Access, Option<std::time::Duration>) {
    let config = shared.config.load();
    let client = SocketAddr::V4(src);
    let (principal_name, method) = match who.device {
        Some(name) => (format!("{} (device {name})", who.email), "device"),
        None => (format!("{} (warren connect)", who.email), "connect"),
    };
    let Some(settings) = config.policy.as_ref() else {
        denied(shared, resource, client, &principal_name, "no_policy");
        return (Access::Denied, None);
    };
    let catalog = shared.catalog.load();
    let tags = catalog.tags_of(resource);
    let second_factor = second_factor_age(&catalog, who.email);
    let target = Target {
        resource: Some(&resource.name),
        tags: &tags,
        addr: Some(std::net::IpAddr::V4(*dst.ip())),
        port: dst.port(),
        proto,
    };
    let as_user = Principal::User {
        email: who.email,
        groups: who.groups,
    };
    let action = Action {
        request: None,
        second_factor,
    };
    let mut decision = settings.policy.decide(&as_user, &target, &action);
    if !decision.is_allowed() && !who.tags.is_empty() {
        // A device's tags stand for no person: no second factor.
        decision =
            settings
                .policy
                .decide(&Principal::Tagged(who.tags), &target, &Action::default());
    }
    let mut remaining = None;
    let access = match decision {
        Decision::Allowed { grant } => {
            // An escalated grant: good until its window after the factor.
            let within = settings.policy.file().grants[grant].within;
            if let (Some(window), Some(age)) = (within, second_factor) {
                remaining =
                    Some(std::time::Duration::from_secs(u64::from(window)).saturating_sub(age));
            }
            Access::Granted { grant }
        }
        Decision::Denied => {
            denied(shared, resource, client, &principal_name, "no_grant");
            Access::Denied
        }
    };
    audit(
        shared,
        resource,
        client,
        access,
        None,
        Some(&principal_name),
        method,
    );
    (access, remaining)
}

/// How long ago the user with `email` last passed a second factor (TOTP),
/// for grants with `within`; `None`: never (or an unknown user).
pub(crate) fn second_factor_age(
    catalog: &crate::catalog::Catalog,
    email: &str,
) -> Option<std::time::Duration> {
    catalog
        .user_by_email(email)
        .and_then(|u| u.second_factor_ms)
        .and_then(|at| u64::try_from(warren_store::now_ms() - at).ok())
        .map(std::time::Duration::from_millis)
}

/// Hands a decision made under a policy to the audit trail.
fn audit(
    shared: &EdgeShared,
    resource: &Resource,
    client: SocketAddr,
    access: Access,
    rule: Option<usize>,
    principal: Option<&str>,
    method: &'static str,
) {
    use audit::Reason;
    let reason = match (access, rule) {
        (Access::Open, _) => return,
        (_, Some(rule)) | (Access::Bypassed { rule }, _) => Reason::Rule(rule),
        (Access::Granted { grant }, _) => Reason::Grant(grant),
        (Access::Public, _) => Reason::Public,
        (Access::Pass, _) => Reason::Door,
        (Access::Denied, None) => Reason::NoGrant,
    };
    shared.decisions.record(audit::Decision {
        resource: resource.name.clone(),
        principal: principal.unwrap_or("anonymous").to_owned(),
        allowed: access != Access::Denied,
        reason,
        method,
        client: client.ip(),
    });
}

/// The answer for an http request, with the principal it was asked for
/// (the user's email, or `key:ID`) and, for a signed-in person, who they are.
pub(crate) struct HttpAccess {
    pub(crate) access: Access,
    /// The rule that decided, if one did (bypass or deny).
    pub(crate) rule: Option<usize>,
    pub(crate) principal: Option<String>,
    pub(crate) identity: Option<Identity>,
    /// Denied a signed-in person whom a second factor passed now would
    /// let in (a grant with `within`): the page points to the step-up.
    pub(crate) step_up: bool,
}

impl HttpAccess {
    /// An answer about no one in particular.
    fn anonymous(access: Access) -> HttpAccess {
        HttpAccess {
            access,
            rule: None,
            principal: None,
            identity: None,
            step_up: false,
        }
    }

    /// An answer about `principal`, who is no signed-in person.
    fn of(access: Access, principal: String) -> HttpAccess {
        HttpAccess {
            principal: Some(principal),
            ..HttpAccess::anonymous(access)
        }
    }
}

/// What an http request presented.
pub(crate) struct Credentials<'a> {
    /// Method, path and headers, for the resource's rules.
    pub(crate) facts: rules::RequestFacts<'a>,
    /// The `Warren-Key` header's value.
    pub(crate) key: Option<&'a [u8]>,
    /// The session cookie's value.
    pub(crate) session: Option<&'a str>,
    /// `Authorization`, when the resource takes HTTP Basic.
    pub(crate) basic: Option<&'a [u8]>,
    /// The pass cookie's value (a door opened before).
    pub(crate) pass: Option<&'a str>,
    /// The `Warren-Link` header's value (a share link, for machines).
    pub(crate) link: Option<&'a [u8]>,
}

/// Asks for an http request on `host`: a door held open first, then a live
/// session's user, else a presented key; `method` and `path` (normalised)
/// are the request's. The decision goes to the audit trail.
pub(crate) async fn check_http(
    shared: &EdgeShared,
    resource: &Resource,
    client: SocketAddr,
    credentials: Credentials<'_>,
    host: &str,
    method: &str,
    path: &str,
) -> HttpAccess {
    let answer = decide_http(shared, resource, client, credentials, host, method, path).await;
    let via = match (&answer.identity, answer.principal.as_deref()) {
        (Some(who), _) if who.session.starts_with("basic:") => "basic",
        (Some(_), _) => "session",
        (None, Some(p)) if p.starts_with("key:") => "key",
        (None, Some(p)) if p.starts_with("link:") => "link",
        (None, Some("pin")) => "pin",
        (None, Some("password")) => "password",
        _ => "none",
    };
    audit(
        shared,
        resource,
        client,
        answer.access,
        answer.rule,
        answer.principal.as_deref(),
        via,
    );
    answer
}

async fn decide_http(
    shared: &EdgeShared,
    resource: &Resource,
    client: SocketAddr,
    credentials: Credentials<'_>,
    host: &str,
    method: &str,
    path: &str,
) -> HttpAccess {
    if let Some((rule, access)) = by_rule(shared, resource, client, Some(&credentials.facts)) {
        return HttpAccess {
            rule: Some(rule),
            ..HttpAccess::anonymous(access)
        };
    }
    let config = shared.config.load_full();
    let access = anonymous(&config, resource);
    let settings = match (access, &config.policy) {
        (Access::Denied, Some(settings)) => settings,
        _ => return HttpAccess::anonymous(access),
    };
    let catalog = shared.catalog.load_full();
    let now = warren_store::now_ms();
    if let Some(door) = door(shared, &catalog, resource, &credentials, host, now) {
        return HttpAccess::of(Access::Pass, door);
    }
    let mut person = credentials
        .session
        .filter(|_| resource.login)
        .and_then(|cookie| {
            let idle = config
                .auth
                .as_ref()
                .and_then(|a| a.idle_timeout)
                .map(|d| d.as_millis() as i64);
            shared.auth.identity(&catalog, cookie, host, now, idle)
        })
        .map(|(who, _)| who);
    if let (None, Some(header)) = (&person, credentials.basic) {
        let require_2fa = config.auth.as_ref().is_some_and(|a| a.require_2fa);
        match shared
            .auth
            .basic(&catalog, header, client.ip(), require_2fa)
            .await
        {
            Ok(who) => person = Some(who),
            Err(why) => {
                tracing::info!(event = "basic_refused", resource = %resource.name, client = %client, reason = why, "HTTP Basic credentials refused");
            }
        }
    }
    let tags = catalog.tags_of(resource);
    let target = Target {
        resource: Some(&resource.name),
        tags: &tags,
        addr: None,
        port: HTTP_PORT,
        proto: Proto::Tcp,
    };
    let request = Method::parse(method).map(|m| (m, path));
    let decide = |principal: &Principal<'_>, who: &str, second_factor| match settings.policy.decide(
        principal,
        &target,
        &Action {
            request,
            second_factor,
        },
    ) {
        Decision::Allowed { grant } => Access::Granted { grant },
        Decision::Denied => {
            denied(shared, resource, client, who, "no_grant");
            Access::Denied
        }
    };
    if let Some(who) = person {
        // A signed-in session carries the user's last second factor (for
        // grants with `within`); HTTP Basic, a password alone, does not.
        let basic = who.session.starts_with("basic:");
        let fresh = if basic {
            None
        } else {
            second_factor_age(&catalog, &who.email)
        };
        let user = Principal::User {
            email: &who.email,
            groups: &who.groups,
        };
        let access = decide(&user, &who.email, fresh);
        let step_up = access == Access::Denied
            && !basic
            && settings
                .policy
                .decide(
                    &user,
                    &target,
                    &Action {
                        request,
                        second_factor: Some(std::time::Duration::ZERO),
                    },
                )
                .is_allowed();
        return HttpAccess {
            access,
            rule: None,
            principal: Some(who.email.clone()),
            identity: Some(who),
            step_up,
        };
    }
    let Some(key) = credentials.key else {
        denied(shared, resource, client, "anonymous", "no_grant");
        return HttpAccess::anonymous(access);
    };
    let text = std::str::from_utf8(key).unwrap_or("").trim();
    let checked = shared
        .api_auth
        .authenticate_known(&shared.store, &catalog.keys, text)
        .await;
    let key = match checked {
        Ok(key) => key,
        Err(e) => {
            // The visitor learns only that it was denied; the log says why.
            tracing::info!(event = "access_key_refused", resource = %resource.name, client = %client, error = %e, "a Warren-Key that is not a live key");
            denied(shared, resource, client, "invalid key", "invalid_key");
            return HttpAccess::anonymous(Access::Denied);
        }
    };
    let principal = format!("key:{}", key.id);
    let access = decide(&Principal::Key(&key.id), &principal, None);
    HttpAccess::of(access, principal)
}

/// The door this request holds open, if any: a pass cookie, or a share
/// link's token in `Warren-Link` (`link:ID`).
fn door(
    shared: &EdgeShared,
    catalog: &crate::catalog::Catalog,
    resource: &Resource,
    credentials: &Credentials<'_>,
    host: &str,
    now: i64,
) -> Option<String> {
    let doors = resource.doors;
    if !(doors.page() || doors.link) {
        return None;
    }
    if let Some(p) = credentials
        .pass
        .and_then(|c| shared.auth.check_pass(catalog, resource, c, host, now))
    {
        return Some(p);
    }
    let token = std::str::from_utf8(credentials.link?).ok()?.trim();
    crate::auth::AuthState::link(catalog, resource, token, now).map(|l| format!("link:{}", l.id))
}

/// The resource's rules' answer, if one decides (bypass or deny; a deny
/// logged and counted); `None`: on to the policy.
fn by_rule(
    shared: &EdgeShared,
    resource: &Resource,
    client: SocketAddr,
    facts: Option<&rules::RequestFacts<'_>>,
) -> Option<(usize, Access)> {
    match rules::first_match(&resource.rules, client.ip(), facts)? {
        (rule, RuleAction::Bypass) => Some((rule, Access::Bypassed { rule })),
        (rule, RuleAction::Deny) => {
            denied(
                shared,
                resource,
                client,
                "anonymous",
                &format!("rules[{rule}]"),
            );
            Some((rule, Access::Denied))
        }
        (_, RuleAction::Continue) => None,
    }
}

fn denied(shared: &EdgeShared, resource: &Resource, client: SocketAddr, who: &str, reason: &str) {
    tracing::info!(
        event = "access_denied", resource = %resource.name, client = %client,
        principal = who, reason,
        "denied by the policy: no grant lets {who} reach this resource"
    );
    shared
        .metrics
        .access_denied
        .get_or_create(&crate::metrics::ResourceLabels {
            resource: resource.name.clone(),
        })
        .inc();
}
