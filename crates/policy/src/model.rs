//! The checked policy: what a file says, with every name resolved and every
//! value valid. Built only by [`crate::parse`].

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A checked policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// `group:NAME` → members (lower-cased emails). Groups SSO claims fill
    /// are declared here too, possibly empty.
    pub groups: BTreeMap<String, Vec<String>>,
    /// `tag:NAME` → owners (users or groups who may apply it).
    pub tags: BTreeMap<String, Vec<String>>,
    /// Names for addresses and networks.
    pub hosts: BTreeMap<String, Net>,
    /// The grants, in file order (`grants[i]` in messages).
    pub grants: Vec<Grant>,
    /// Embedded tests.
    pub tests: Vec<TestCase>,
}

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Src {
    /// `*`: any principal (users, API keys, tagged sites and devices).
    Anyone,
    /// `autogroup:member`: any signed-in user.
    Member,
    /// One user, by lower-cased email.
    User(String),
    /// `group:NAME`: its members in the file, and users whose SSO claims
    /// name the group.
    Group(String),
    /// `tag:NAME`: sites and devices carrying the tag.
    Tag(String),
    /// `key:ID`: one admin API key.
    Key(String),
}

/// What a grant allows: an object and its ports (empty: any port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dst {
    /// Resource, tag, network or anything.
    pub object: DstObject,
    /// Allowed ports; empty means every port.
    pub ports: Vec<PortRange>,
}

/// The object of a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DstObject {
    /// `*`.
    Any,
    /// A resource, by name.
    Resource(String),
    /// Targets carrying the tag (the resources of a tagged site).
    Tag(String),
    /// An address or network (from `host:NAME` or written out).
    Net(Net),
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        self.0 <= port && port <= self.1
    }
}

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// TCP (http, tls and tcp resources).
    Tcp,
    /// UDP.
    Udp,
    /// Either (grants only).
    Any,
}

impl Proto {
    pub(crate) fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "any" => Some(Proto::Any),
            _ => None,
        }
    }

    /// `tcp`, `udp` or `any`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Any => "any",
        }
    }

    /// Whether a grant for `self` covers a connection over `actual`.
    pub fn covers(self, actual: Proto) -> bool {
        self == Proto::Any || self == actual
    }
}

/// An HTTP method a grant may be limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    /// The method of a request line (upper case), if it is one of these.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    /// Upper case, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// An address or a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Net {
    /// `10.0.0.5`, `10.0.0.0/24`, `fd00::1`, `fd00::/64`. Host bits must be
    /// zero (`10.0.0.5/24` is refused: say `10.0.0.0/24` or `10.0.0.5`).
    pub fn parse(s: &str) -> Result<Net, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{s}\" is not an address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("\"{s}\": prefix length must be 0-{max}")),
            },
        };
        let net = Net { addr, len };
        if net.masked(addr) != addr {
            return Err(format!(
                "\"{s}\" has host bits set: write the network ({}/{len}) or the address",
                net.masked(addr)
            ));
        }
        Ok(net)
    }

    fn masked(self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is in the network.
    pub fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

/// One embedded test: a principal, what it must reach and what it must not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// `alice@corp.com`, `tag:ci` or `key:ID`, as written (lower-cased).
    pub src: String,
    /// Groups the principal's SSO claims would name.
    pub groups: Vec<String>,
    /// Targets that must be allowed.
    pub accept: Vec<TestTarget>,
    /// Targets that must be denied.
    pub deny: Vec<TestTarget>,
}

/// A target in a test or `explain`: `grafana:443`, `db:5432/tcp`,
/// `tag:home:22`, `host:nas:445`, `10.0.0.5:53/udp`, with an optional
/// request after a space: `grafana:443 GET /api/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestTarget {
    /// As written, for messages.
    pub text: String,
    /// A resource name, when the target names one.
    pub resource: Option<String>,
    /// The tags the target carries (a `tag:` target carries that one).
    pub tags: Vec<String>,
    /// The address, when the target is one.
    pub addr: Option<IpAddr>,
    /// Port.
    pub port: u16,
    /// `tcp` unless written `/udp`.
    pub proto: Proto,
    /// The request's method and normalised path, for http resources.
    pub request: Option<(Method, String)>,
}

impl TestTarget {
    /// Parses a target string against a file (for `host:` names).
    pub fn parse(s: &str, file: &PolicyFile) -> Result<TestTarget, String> {
        let (target, request) = match s.split_once(' ') {
            Some((t, r)) => (t, Some(r)),
            None => (s, None),
        };
        let request = match request {
            None => None,
            Some(r) => {
                let (m, p) = r
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| format!("\"{s}\": a request is written METHOD /path"))?;
                let method = Method::parse(m)
                    .ok_or_else(|| format!("\"{s}\": \"{m}\" is not an HTTP method"))?;
                if !p.starts_with('/') {
                    return Err(format!("\"{s}\": a path starts with /"));
                }
                Some((method, p.to_owned()))
            }
        };
        let (target, proto) = match target.rsplit_once('/') {
            Some((t, "tcp")) => (t, Proto::Tcp),
            Some((t, "udp")) => (t, Proto::Udp),
            _ => (target, Proto::Tcp),
        };
        let (object, port) = match target.rsplit_once(':') {
            Some((o, p)) if !o.is_empty() && !o.ends_with("tag") && !o.ends_with("host") => (o, p),
            _ => return Err(format!("\"{s}\": a target is NAME:PORT (e.g. grafana:443)")),
        };
        let port = match port.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("\"{s}\": \"{port}\" is not a port")),
        };
        let mut t = TestTarget {
            text: s.to_owned(),
            resource: None,
            tags: Vec::new(),
            addr: None,
            port,
            proto,
            request,
        };
        if object.starts_with("tag:") {
            if !file.tags.contains_key(object) {
                return Err(format!(
                    "tag \"{object}\" has no owner: declare it in [tags]"
                ));
            }
            t.tags.push(object.to_owned());
        } else if let Some(h) = object.strip_prefix("host:") {
            let net = file
                .hosts
                .get(h)
                .ok_or_else(|| format!("host \"{h}\" is not defined in [hosts]"))?;
            t.addr = Some(net.addr);
        } else if let Ok(ip) = object.trim_start_matches('[').trim_end_matches(']').parse() {
            t.addr = Some(ip);
        } else {
            t.resource = Some(object.to_owned());
        }
        Ok(t)
    }
}

/// A checked grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Who.
    pub src: Vec<Src>,
    /// What.
    pub dst: Vec<Dst>,
    /// Over which protocol.
    pub proto: Proto,
    /// For http requests: path prefixes (empty: any path).
    pub paths: Vec<String>,
    /// For http requests: methods (empty: any method).
    pub methods: Vec<Method>,
    /// For ssh resources: what a certificate it allows may carry. A grant
    /// without it allows ssh with [`SshGrant::default`].
    pub ssh: Option<SshGrant>,
    /// The escalated tier: the grant allows only a principal who passed a
    /// second factor at most this many seconds ago
    /// ([`crate::Action::second_factor`]).
    pub within: Option<u32>,
}

/// The account a certificate may log in as.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SshPrincipal {
    /// `autogroup:self`: the user's own account, which the site creates
    /// just in time (its name is the site's choice, from the email's local
    /// part).
    Own,
    /// A named Unix account (`deploy`): the site logs it in only if its
    /// own configuration lists it.
    Account(String),
}

impl SshPrincipal {
    /// As written in a policy.
    pub fn as_str(&self) -> &str {
        match self {
            SshPrincipal::Own => "autogroup:self",
            SshPrincipal::Account(a) => a,
        }
    }
}

/// The OpenSSH certificate extensions a grant may name.
pub const SSH_EXTENSIONS: &[&str] = &[
    "permit-pty",
    "permit-port-forwarding",
    "permit-agent-forwarding",
    "permit-X11-forwarding",
    "permit-user-rc",
];

/// What a grant lets an ssh certificate carry (`ssh = { ... }` on a grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshGrant {
    /// Accounts (`principals`; default: the user's own).
    pub principals: Vec<SshPrincipal>,
    /// Certificate extensions (default: `permit-pty`), from
    /// [`SSH_EXTENSIONS`].
    pub extensions: Vec<String>,
    /// A sudo role the site may grant the user's own account; the site's
    /// own configuration must allow the role too (its veto).
    pub sudo: Option<String>,
}

impl Default for SshGrant {
    fn default() -> Self {
        SshGrant {
            principals: vec![SshPrincipal::Own],
            extensions: vec!["permit-pty".to_owned()],
            sudo: None,
        }
    }
}

/// Whether `name` is a Unix account name a policy or a site may use:
/// 1-32 of a-z, 0-9, `_` and `-`, starting with a letter or `_` (the
/// portable subset `useradd` accepts, without `$` or dots).
pub fn valid_account(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}
