//! One allowlist entry: its syntax, its parser and its errors.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

/// Transport protocol of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses match
    /// IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The host part of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// An address or network (a bare address is a /32 or /128).
    Net(IpNet),
    /// A DNS name, lower-case, without a trailing dot.
    Name(String),
}

/// One parsed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Address, network or name.
    pub host: HostPattern,
    /// Permitted ports, inclusive.
    pub ports: RangeInclusive<u16>,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Net(n) if n.addr.is_ipv6() => write!(f, "[{n}]")?,
            HostPattern::Net(n) => write!(f, "{n}")?,
            HostPattern::Name(n) => f.write_str(n)?,
        }
        if self.ports.start() == self.ports.end() {
            write!(f, ":{}/{}", self.ports.start(), self.protocol)
        } else {
            write!(
                f,
                ":{}-{}/{}",
                self.ports.start(),
                self.ports.end(),
                self.protocol
            )
        }
    }
}

/// A bad entry, with the entry and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("allowlist entry `{entry}`{}: {reason}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct EntryError {
    /// The entry as given.
    pub entry: String,
    /// Line in an allowlist file, if it came from one.
    pub line: Option<usize>,
    /// What is wrong and the expected form.
    pub reason: String,
}

impl EntryError {
    fn new(entry: &str, reason: impl Into<String>) -> Self {
        EntryError {
            entry: entry.to_owned(),
            line: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

const FORM: &str = "expected HOST_OR_CIDR:PORT[-PORT]/tcp|udp";

impl Rule {
    /// Parses `HOST_OR_CIDR:PORT[-PORT]/tcp|udp`.
    pub fn parse(entry: &str) -> Result<Rule, EntryError> {
        let err = |reason: String| EntryError::new(entry, reason);
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err(err(format!("empty entry; {FORM}")));
        }
        let (rest, proto) = trimmed
            .rsplit_once('/')
            .ok_or_else(|| err(format!("missing /tcp or /udp; {FORM}")))?;
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(err(format!("unknown protocol `{other}`; use tcp or udp"))),
        };
        let (host, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (inner, tail) = after
                .split_once(']')
                .ok_or_else(|| err("unclosed `[` around an IPv6 address".into()))?;
            let ports = tail
                .strip_prefix(':')
                .ok_or_else(|| err(format!("missing :PORT after `]`; {FORM}")))?;
            (inner, ports)
        } else {
            let (host, ports) = rest
                .rsplit_once(':')
                .ok_or_else(|| err(format!("missing :PORT; {FORM}")))?;
            if host.contains(':') {
                return Err(err(
                    "IPv6 addresses go in brackets, e.g. [fd00::/8]:22/tcp".into()
                ));
            }
            (host, ports)
        };
        let ports = parse_ports(ports).map_err(err)?;
        let host = parse_host(host).map_err(err)?;
        Ok(Rule {
            host,
            ports,
            protocol,
        })
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("port `{s}` is not a number"))?;
    match n {
        0 => Err("port 0 is not a port; use 1-65535".into()),
        1..=65535 => Ok(n as u16),
        _ => Err(format!("port {n} is out of range 1-65535")),
    }
}

fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (parse_port(lo)?, parse_port(hi)?),
        None => {
            let p = parse_port(s)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("port range {lo}-{hi} is backwards"));
    }
    Ok(lo..=hi)
}

fn parse_host(s: &str) -> Result<HostPattern, String> {
    if s.is_empty() {
        return Err("empty host".into());
    }
    if let Some((addr, prefix)) = s.split_once('/') {
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address (CIDR needs one)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("prefix length `{prefix}` is not a number"))?;
        if prefix > max {
            return Err(format!("prefix length {prefix} is over {max}"));
        }
        return Ok(HostPattern::Net(IpNet { addr, prefix }));
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Ok(HostPattern::Net(IpNet { addr, prefix }));
    }
    let name = crate::normalise_name(s);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
        });
    if !valid {
        return Err(format!(
            "`{s}` is neither an IP address, a CIDR nor a DNS name"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{s}` looks like an IPv4 address but is not one"));
    }
    Ok(HostPattern::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_entries_name_the_entry_and_the_reason() {
        let cases = [
            ("10.0.0.0/33:22/tcp", "prefix length 33 is over 32"),
            ("host:0/tcp", "port 0"),
            ("host:70000/tcp", "70000 is out of range"),
            ("host:22/sctp", "unknown protocol `sctp`"),
            ("", "empty entry"),
            ("   ", "empty entry"),
            ("host/tcp", "missing :PORT"),
            ("host:22", "missing /tcp or /udp"),
            ("fd00::1:22/tcp", "brackets"),
            ("[fd00::/129]:22/tcp", "over 128"),
            ("host:30-20/tcp", "backwards"),
            ("bad host:22/tcp", "neither"),
            ("300.1.1.1:22/tcp", "looks like an IPv4"),
        ];
        for (entry, want) in cases {
            let e = Rule::parse(entry).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(want), "{entry:?}: {text}");
            assert!(text.contains(&format!("`{entry}`")), "{text}");
        }
    }

    #[test]
    fn each_bad_port_has_its_own_reason() {
        for (entry, reason) in [
            ("host:0/tcp", "port 0 is not a port; use 1-65535"),
            ("host:65536/tcp", "port 65536 is out of range 1-65535"),
            ("host:x/tcp", "port `x` is not a number"),
            ("host:9-8/tcp", "port range 9-8 is backwards"),
        ] {
            assert_eq!(Rule::parse(entry).unwrap_err().reason, reason, "{entry}");
        }
        let r = Rule::parse("host:1-65535/UDP").unwrap();
        assert_eq!((r.ports, r.protocol), (1..=65535, Protocol::Udp));
        assert_eq!(Rule::parse("host:7-7/tcp").unwrap().ports, 7..=7);
    }

    #[test]
    fn names_follow_dns_label_rules() {
        let label63 = "a".repeat(63);
        let name253 = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        assert_eq!(name253.len(), 253);
        for (host, ok) in [
            ("my_host.lan", true),
            ("_sip._udp.example", true),
            ("a-b.lan", true),
            ("NAS.Lan.", true),
            ("-a.lan", false),
            ("a..lan", false),
            (".", false),
            ("a.lan..", false),
            (label63.as_str(), true),
            (&"a".repeat(64), false),
            (name253.as_str(), true),
            (&format!("{name253}b"), false),
            ("a+b.lan", false),
            ("1.2.3", false),
            ("10", false),
            ("1.2.3.x", true),
        ] {
            let entry = format!("{host}:22/tcp");
            match Rule::parse(&entry) {
                Ok(r) => {
                    assert!(ok, "{host:?} was accepted");
                    assert_eq!(
                        r.host,
                        HostPattern::Name(crate::normalise_name(host)),
                        "{host:?}"
                    );
                }
                Err(e) => assert!(!ok, "{host:?} was refused: {e}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for entry in [
            "127.0.0.1/32:80/tcp",
            "[fd00::/8]:1-2/udp",
            "nas.lan:445/tcp",
        ] {
            let r = Rule::parse(entry).unwrap();
            assert_eq!(Rule::parse(&r.to_string()).unwrap(), r);
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,40}") {
            let _ = Rule::parse(&s);
        }

        #[test]
        fn cidr_contains_agrees_with_masking(a: u32, b: u32, prefix in 0u8..=32) {
            let net = IpNet { addr: IpAddr::V4(a.into()), prefix };
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            prop_assert_eq!(net.contains(IpAddr::V4(b.into())), a & mask == b & mask);
        }
    }
}
