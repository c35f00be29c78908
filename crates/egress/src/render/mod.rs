//! The second wall: the allowlist rendered for the kernel and the service
//! manager, so that even an agent that was taken over cannot reach what
//! the list does not name.
//!
//! Renderers are pure functions of a [`Wall`]: the parsed allowlist plus
//! what the kernel needs besides it (the DNS resolvers, the edge's
//! addresses, and whose traffic the rules apply to). Names in the list are
//! resolved by the caller beforehand; a rule built from them is a snapshot
//! of that resolution.

mod kubernetes;
mod nftables;
mod systemd;

pub use kubernetes::{
    egress_rules, helm_values, network_policy, network_policy_object, service_namespace, KubeError,
    KubeOptions, ServicePeer, TargetPort,
};
pub use nftables::{nftables, nftables_set_swap, TABLE};
pub use systemd::systemd_unit;

use crate::{Allowlist, HostPattern, IpNet, Protocol};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// Whose outgoing traffic the rules govern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// Processes of this uid (a host install with a dedicated user).
    Uid(u32),
    /// Processes in this cgroup v2 path, relative to the root
    /// (e.g. `system.slice/warren-site.service`).
    Cgroup(String),
    /// Packets from this source network (a container with its own address).
    Source(IpNet),
}

/// Everything a renderer needs.
#[derive(Clone, Debug)]
pub struct Wall<'a> {
    /// The agent's allowlist.
    pub allow: &'a Allowlist,
    /// Addresses of the list's names, as the caller resolved them.
    pub resolved: &'a BTreeMap<String, Vec<IpAddr>>,
    /// DNS resolvers the agent may ask (udp and tcp port 53).
    pub resolvers: &'a [IpAddr],
    /// The edge's tunnel addresses (tcp and udp: TCP+TLS and QUIC).
    pub edge: &'a [SocketAddr],
    /// Whose traffic.
    pub subject: Subject,
}

/// Why a wall cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// `--allow-any` has no wall to render.
    #[error("the allowlist permits everything (--allow-any); there is no wall to render")]
    AllowAny,
    /// A name in the list was not resolved.
    #[error("`{0}` was not resolved to any address; cannot write a kernel rule for it")]
    Unresolved(String),
    /// The edge's address is missing.
    #[error("the edge's address is needed (--edge HOST:PORT)")]
    NoEdge,
}

/// One permitted destination, after names are replaced by addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dest {
    pub(crate) net: Net,
    pub(crate) protocol: Proto,
    pub(crate) ports: (u16, u16),
}

/// An address network, masked, ordered IPv4 first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Net {
    pub(crate) addr: IpAddr,
    pub(crate) prefix: u8,
}

impl Net {
    pub(crate) fn masked(addr: IpAddr, prefix: u8) -> Net {
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Net { addr, prefix }
    }

    fn host(addr: IpAddr) -> Net {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Net { addr, prefix }
    }

    pub(crate) fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// `10.0.0.0/24`, or a bare address for a single host.
    pub(crate) fn text(&self) -> String {
        let full = if self.is_v4() { 32 } else { 128 };
        if self.prefix == full {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        }
    }
}

/// `tcp` or `udp`, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl From<Protocol> for Proto {
    fn from(p: Protocol) -> Proto {
        match p {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
        }
    }
}

fn ports(r: &RangeInclusive<u16>) -> (u16, u16) {
    (*r.start(), *r.end())
}

/// What the wall lets through, in three groups, each sorted and without
/// duplicates: DNS, the edge, the targets.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Permitted {
    pub(crate) dns: Vec<Dest>,
    pub(crate) edge: Vec<Dest>,
    pub(crate) targets: Vec<Dest>,
}

impl Wall<'_> {
    /// A wall needs a list that is not `--allow-any` and the edge's address.
    pub(crate) fn check_renderable(&self) -> Result<(), RenderError> {
        if self.allow.is_any() {
            return Err(RenderError::AllowAny);
        }
        if self.edge.is_empty() {
            return Err(RenderError::NoEdge);
        }
        Ok(())
    }

    /// The addresses the caller resolved `name` to; none is an error, since a
    /// rule for the name would then allow nothing the list meant.
    pub(crate) fn addresses_of(&self, name: &str) -> Result<&[IpAddr], RenderError> {
        self.resolved
            .get(name)
            .map(Vec::as_slice)
            .filter(|addrs| !addrs.is_empty())
            .ok_or_else(|| RenderError::Unresolved(name.to_owned()))
    }

    /// `# Snapshot: NAME resolved to ...` comment lines, one per name of the
    /// list the caller resolved (a rule built from them is a snapshot).
    pub(crate) fn snapshot_comments(&self) -> String {
        let mut out = String::new();
        for (name, addrs) in self.resolved {
            let listed = self
                .allow
                .rules()
                .iter()
                .any(|r| matches!(&r.host, HostPattern::Name(n) if n == name));
            if listed {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                out.push_str(&format!(
                    "# Snapshot: {name} resolved to {} at render time; render again when it changes.\n",
                    list.join(", ")
                ));
            }
        }
        out
    }

    pub(crate) fn permitted(&self) -> Result<Permitted, RenderError> {
        self.check_renderable()?;
        let mut out = Permitted::default();
        for r in self.resolvers {
            for protocol in [Proto::Udp, Proto::Tcp] {
                out.dns.push(Dest {
                    net: Net::host(*r),
                    protocol,
                    ports: (53, 53),
                });
            }
        }
        for e in self.edge {
            for protocol in [Proto::Tcp, Proto::Udp] {
                out.edge.push(Dest {
                    net: Net::host(e.ip()),
                    protocol,
                    ports: (e.port(), e.port()),
                });
            }
        }
        for rule in self.allow.rules() {
            let nets: Vec<Net> = match &rule.host {
                HostPattern::Net(n) => vec![Net::masked(n.addr(), n.prefix())],
                HostPattern::Name(name) => self
                    .addresses_of(name)?
                    .iter()
                    .map(|a| Net::host(*a))
                    .collect(),
            };
            for net in nets {
                out.targets.push(Dest {
                    net,
                    protocol: rule.protocol.into(),
                    ports: ports(&rule.ports),
                });
            }
        }
        for group in [&mut out.dns, &mut out.edge, &mut out.targets] {
            group.sort();
            group.dedup();
        }
        Ok(out)
    }
}
