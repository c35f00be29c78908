//! The compiled policy and its one question: may this principal do this to
//! this target?
//!
//! Compiling indexes every grant by what its sources name (a user, a group, a
//! tag, a key, everyone, every member), so a decision looks only at the grants
//! that could apply to the principal, in file order, and stops at the first
//! that allows. Default deny; only allow rules; so the answer is the union of
//! the grants and does not depend on their order (the grant *named* is the
//! first in the file that allows).

use crate::model::{DstObject, Grant, Method, PolicyFile, Proto, Src, SshGrant, SshPrincipal};
use std::collections::HashMap;
use std::net::IpAddr;

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub enum Principal<'a> {
    /// A signed-in user: email, and the groups their SSO claims name.
    User {
        /// Email (any case).
        email: &'a str,
        /// `group:NAME`s from claims (in addition to the file's members).
        groups: &'a [String],
    },
    /// An admin API key, by its public id.
    Key(&'a str),
    /// A site or device, by its tags.
    Tagged(&'a [String]),
}

/// What is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The resource's name, when the target is a resource.
    pub resource: Option<&'a str>,
    /// The tags the target carries (its site's).
    pub tags: &'a [String],
    /// The address, when the target is an address.
    pub addr: Option<IpAddr>,
    /// Port.
    pub port: u16,
    /// `Tcp` or `Udp`.
    pub proto: Proto,
}

/// For http resources: the request. `None` for a plain connection. And how
/// fresh the principal's second factor is, for grants with `within`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Action<'a> {
    /// Method and normalised path.
    pub request: Option<(Method, &'a str)>,
    /// How long ago the principal last passed a second factor (TOTP);
    /// `None`: never, or not known here. A grant with `within` allows only
    /// when this is at most its window.
    pub second_factor: Option<std::time::Duration>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `grants[grant]` (the first in the file that allows).
    Allowed {
        /// Index into the file's grants.
        grant: usize,
    },
    /// Denied: nothing allows it.
    Denied,
}

impl Decision {
    /// Whether access is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// Why a grant does not allow a request: the first check it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Miss {
    /// Its sources do not include the principal.
    Source,
    /// It is for other destinations.
    Destination,
    /// The destination matches, not the port.
    Port,
    /// Port matches, not the protocol.
    Protocol,
    /// It is limited to requests (methods or paths) and this is a plain
    /// connection, or the method is not one it names.
    Method,
    /// The path is under none of its prefixes.
    Path,
    /// It needs a fresh second factor (`within`), and there is none.
    SecondFactor,
}

impl Miss {
    /// In words, for `explain`.
    pub fn describe(self) -> &'static str {
        match self {
            Miss::Source => "its src does not include this principal",
            Miss::Destination => "its dst does not include this target",
            Miss::Port => "its dst names this target but not this port",
            Miss::Protocol => "it is for another protocol",
            Miss::Method => "it allows other methods (or only http requests)",
            Miss::Path => "it allows other paths",
            Miss::SecondFactor => "it needs a second factor passed within its window",
        }
    }
}

/// A compiled, immutable policy.
#[derive(Clone, Debug)]
pub struct Policy {
    file: PolicyFile,
    by_user: HashMap<String, Vec<u32>>,
    by_group: HashMap<String, Vec<u32>>,
    by_tag: HashMap<String, Vec<u32>>,
    by_key: HashMap<String, Vec<u32>>,
    anyone: Vec<u32>,
    members: Vec<u32>,
    /// The file's groups of each user.
    groups_of: HashMap<String, Vec<String>>,
}

impl Policy {
    /// Compiles a checked file.
    pub fn compile(file: PolicyFile) -> Policy {
        let mut p = Policy {
            by_user: HashMap::new(),
            by_group: HashMap::new(),
            by_tag: HashMap::new(),
            by_key: HashMap::new(),
            anyone: Vec::new(),
            members: Vec::new(),
            groups_of: HashMap::new(),
            file,
        };
        for (group, members) in &p.file.groups {
            for m in members {
                p.groups_of
                    .entry(m.clone())
                    .or_default()
                    .push(group.clone());
            }
        }
        for (i, g) in p.file.grants.iter().enumerate() {
            let i = i as u32;
            for s in &g.src {
                let list = match s {
                    Src::Anyone => &mut p.anyone,
                    Src::Member => &mut p.members,
                    Src::User(u) => p.by_user.entry(u.clone()).or_default(),
                    Src::Group(n) => p.by_group.entry(n.clone()).or_default(),
                    Src::Tag(t) => p.by_tag.entry(t.clone()).or_default(),
                    Src::Key(k) => p.by_key.entry(k.clone()).or_default(),
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        p
    }

    /// The file it was compiled from.
    pub fn file(&self) -> &PolicyFile {
        &self.file
    }

    /// Grants whose sources include `who`, ascending, without duplicates.
    fn candidates(&self, who: &Principal<'_>) -> Vec<u32> {
        let mut out: Vec<u32> = self.anyone.clone();
        let mut add = |list: Option<&Vec<u32>>| {
            if let Some(l) = list {
                out.extend_from_slice(l);
            }
        };
        match who {
            Principal::User { email, groups } => {
                let lower;
                let email = if email.bytes().any(|b| b.is_ascii_uppercase()) {
                    lower = email.to_ascii_lowercase();
                    lower.as_str()
                } else {
                    email
                };
                add(Some(&self.members));
                add(self.by_user.get(email));
                if let Some(gs) = self.groups_of.get(email) {
                    for g in gs {
                        add(self.by_group.get(g));
                    }
                }
                for g in groups.iter() {
                    add(self.by_group.get(g));
                }
            }
            Principal::Key(id) => add(self.by_key.get(*id)),
            Principal::Tagged(tags) => {
                for t in tags.iter() {
                    add(self.by_tag.get(t));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// May `who` reach `target` (and make `action`, for http)?
    pub fn decide(
        &self,
        who: &Principal<'_>,
        target: &Target<'_>,
        action: &Action<'_>,
    ) -> Decision {
        for i in self.candidates(who) {
            if check(&self.file.grants[i as usize], target, action).is_ok() {
                return Decision::Allowed { grant: i as usize };
            }
        }
        Decision::Denied
    }

    /// May `who` reach `target` on some port of `ports` (inclusive ranges,
    /// each over a protocol)? `target.port` and `target.proto` are not
    /// read. The first grant that allows, for the audit. This is what a
    /// resolver asks before it tells a device a private name: a name is
    /// shown to whoever may reach some port of it.
    pub fn reaches_any(
        &self,
        who: &Principal<'_>,
        target: &Target<'_>,
        ports: &[(u16, u16, Proto)],
        action: &Action<'_>,
    ) -> Decision {
        for i in self.candidates(who) {
            if check_any(&self.file.grants[i as usize], target, ports, action) {
                return Decision::Allowed { grant: i as usize };
            }
        }
        Decision::Denied
    }

    /// What an ssh certificate for `who` to `target` may carry: the union
    /// of every grant that allows the connection (their principals and
    /// extensions; the first sudo role named by a grant that includes the
    /// user's own account), with the first such grant,
    /// for the audit; `None` when nothing allows it.
    /// `action` carries the second factor's age, for grants with `within`
    /// (its request is ignored: a login is a plain connection).
    pub fn ssh(
        &self,
        who: &Principal<'_>,
        target: &Target<'_>,
        action: &Action<'_>,
    ) -> Option<(usize, SshGrant)> {
        let mut first = None;
        let mut out = SshGrant {
            principals: Vec::new(),
            extensions: Vec::new(),
            sudo: None,
        };
        let plain = Action {
            request: None,
            second_factor: action.second_factor,
        };
        for i in self.candidates(who) {
            let g = &self.file.grants[i as usize];
            if check(g, target, &plain).is_err() {
                continue;
            }
            first.get_or_insert(i as usize);
            let default = SshGrant::default();
            let terms = g.ssh.as_ref().unwrap_or(&default);
            out.principals.extend(terms.principals.iter().cloned());
            out.extensions.extend(terms.extensions.iter().cloned());
            // Sudo is for the user's own account: only a grant that gives
            // that account can name a role for it.
            if out.sudo.is_none() && terms.principals.contains(&SshPrincipal::Own) {
                out.sudo.clone_from(&terms.sudo);
            }
        }
        out.principals.sort();
        out.principals.dedup();
        out.extensions.sort();
        out.extensions.dedup();
        first.map(|g| (g, out))
    }

    /// Every grant with the reason it does not allow this (or `None` for the
    /// ones that do), for `explain`.
    pub fn trace(
        &self,
        who: &Principal<'_>,
        target: &Target<'_>,
        action: &Action<'_>,
    ) -> Vec<(usize, Option<Miss>)> {
        let candidates = self.candidates(who);
        self.file
            .grants
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if candidates.binary_search(&(i as u32)).is_err() {
                    (i, Some(Miss::Source))
                } else {
                    (i, check(g, target, action).err())
                }
            })
            .collect()
    }
}

/// Whether a grant's `within` (if any) is met by the action's second factor.
fn fresh(g: &Grant, action: &Action<'_>) -> bool {
    match g.within {
        None => true,
        Some(window) => action
            .second_factor
            .is_some_and(|age| age <= std::time::Duration::from_secs(u64::from(window))),
    }
}

/// Whether one grant (whose sources include the principal) allows a plain
/// connection to `target` on some port of `ports`.
fn check_any(
    g: &Grant,
    target: &Target<'_>,
    ports: &[(u16, u16, Proto)],
    action: &Action<'_>,
) -> bool {
    if !g.methods.is_empty() || !g.paths.is_empty() || !fresh(g, action) {
        return false;
    }
    g.dst.iter().any(|d| {
        let object = match &d.object {
            DstObject::Any => true,
            DstObject::Resource(name) => target.resource == Some(name.as_str()),
            DstObject::Tag(t) => target.tags.iter().any(|x| x == t),
            DstObject::Net(net) => target.addr.is_some_and(|a| net.contains(a)),
        };
        object
            && ports.iter().any(|&(lo, hi, proto)| {
                (g.proto.covers(proto) || proto == Proto::Any)
                    && (d.ports.is_empty() || d.ports.iter().any(|r| r.0 <= hi && lo <= r.1))
            })
    })
}

/// Whether one grant (whose sources include the principal) allows this.
fn check(g: &Grant, target: &Target<'_>, action: &Action<'_>) -> Result<(), Miss> {
    let mut best = Miss::Destination;
    let mut object_ok = false;
    for d in &g.dst {
        let object = match &d.object {
            DstObject::Any => true,
            DstObject::Resource(name) => target.resource == Some(name.as_str()),
            DstObject::Tag(t) => target.tags.iter().any(|x| x == t),
            DstObject::Net(net) => target.addr.is_some_and(|a| net.contains(a)),
        };
        if !object {
            continue;
        }
        object_ok = true;
        if d.ports.is_empty() || d.ports.iter().any(|r| r.contains(target.port)) {
            best = Miss::Protocol;
            break;
        }
        best = Miss::Port;
    }
    if !object_ok {
        return Err(Miss::Destination);
    }
    if best == Miss::Port {
        return Err(Miss::Port);
    }
    if !g.proto.covers(target.proto) {
        return Err(Miss::Protocol);
    }
    if !fresh(g, action) {
        return Err(Miss::SecondFactor);
    }
    if g.methods.is_empty() && g.paths.is_empty() {
        return Ok(());
    }
    // A grant limited to requests allows no plain connection.
    let Some((method, path)) = action.request else {
        return Err(Miss::Method);
    };
    if !g.methods.is_empty() && !g.methods.contains(&method) {
        return Err(Miss::Method);
    }
    if !g.paths.is_empty() && !g.paths.iter().any(|p| path_under(path, p)) {
        return Err(Miss::Path);
    }
    Ok(())
}

/// `path` is under `prefix`: equal, or continuing after a `/` (so `/api`
/// covers `/api` and `/api/x`, not `/apix`; `/api/` covers `/api/x`).
pub fn path_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}
