//! The site's local egress allowlist: the first wall.
//!
//! An agent opens a connection only to a target this list permits, whatever
//! the edge asks. This crate parses the list (`--allow`, `--allow-file`) and
//! answers "may the agent connect to X", with no I/O: resolution of names is
//! the caller's job, so that the caller checks and connects to the *same*
//! address (no DNS-rebinding between check and connect).
//!
//! Entry syntax: `HOST_OR_CIDR:PORT[-PORT]/tcp|udp`, e.g. `127.0.0.1:8080/tcp`,
//! `10.0.1.0/24:22/tcp`, `nas.lan:445/tcp`, `[fd00::/8]:53/udp`.
//!
//! Matching rules:
//! * an IP target is permitted only by an IP or CIDR entry;
//! * a name target listed as a name entry is permitted, and the caller connects
//!   to what *it* resolves the name to;
//! * a name target not listed is resolved by the caller and each address is
//!   checked as an IP target; addresses that fail are never contacted.
//!
//! Invariant: the default is deny. An empty list permits nothing; only the
//! explicit [`Allowlist::allow_any`] permits everything.

mod entry;
pub mod kernel;
pub mod render;

pub use entry::{EntryError, HostPattern, IpNet, Protocol, Rule};
use std::net::IpAddr;

/// The parsed allowlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<Rule>,
    any: bool,
}

/// What the list says about a name target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameDecision {
    /// The name is listed for this port and protocol.
    Listed,
    /// The name is not listed, but an address entry covers this port and
    /// protocol: resolve it and check each address.
    CheckAddresses,
    /// Nothing on the list covers this port and protocol: no address could
    /// be permitted, so the name is refused without being resolved (a
    /// compromised edge learns nothing of the site's DNS from it).
    NotCovered,
}

impl Allowlist {
    /// A list that permits nothing.
    pub fn deny_all() -> Self {
        Allowlist {
            rules: Vec::new(),
            any: false,
        }
    }

    /// A list that permits everything (`--allow-any`, labs only).
    pub fn allow_any() -> Self {
        Allowlist {
            rules: Vec::new(),
            any: true,
        }
    }

    /// Whether this list permits everything.
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Parses entries; every bad entry is reported, and none is dropped silently.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, Vec<EntryError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for e in entries {
            match Rule::parse(e) {
                Ok(r) => rules.push(r),
                Err(err) => errors.push(err),
            }
        }
        if errors.is_empty() {
            Ok(Allowlist { rules, any: false })
        } else {
            Err(errors)
        }
    }

    /// Parses an allowlist file: one entry per line, `#` starts a comment.
    /// Errors name the line number.
    pub fn parse_file(text: &str) -> Result<Self, Vec<EntryError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            match Rule::parse(line) {
                Ok(r) => rules.push(r),
                Err(err) => errors.push(err.at_line(i + 1)),
            }
        }
        if errors.is_empty() {
            Ok(Allowlist { rules, any: false })
        } else {
            Err(errors)
        }
    }

    /// Adds the rules of `other`.
    pub fn extend(&mut self, other: Allowlist) {
        self.rules.extend(other.rules);
        self.any |= other.any;
    }

    /// Whether the agent may connect to `ip:port` over `protocol`.
    pub fn permits_addr(&self, ip: IpAddr, port: u16, protocol: Protocol) -> bool {
        self.any
            || self.rules.iter().any(|r| {
                r.protocol == protocol
                    && r.ports.contains(&port)
                    && matches!(&r.host, HostPattern::Net(net) if net.contains(ip))
            })
    }

    /// What the list says about the name target `name:port` over `protocol`.
    pub fn check_name(&self, name: &str, port: u16, protocol: Protocol) -> NameDecision {
        let name = normalise_name(name);
        let listed = self.any
            || self.rules.iter().any(|r| {
                r.protocol == protocol
                    && r.ports.contains(&port)
                    && matches!(&r.host, HostPattern::Name(n) if *n == name)
            });
        let by_address = self.rules.iter().any(|r| {
            r.protocol == protocol
                && r.ports.contains(&port)
                && matches!(&r.host, HostPattern::Net(_))
        });
        if listed {
            NameDecision::Listed
        } else if by_address {
            NameDecision::CheckAddresses
        } else {
            NameDecision::NotCovered
        }
    }
}

impl std::fmt::Display for Allowlist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.any {
            return f.write_str("any (--allow-any)");
        }
        if self.rules.is_empty() {
            return f.write_str("(empty: deny all)");
        }
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Lower-cases a DNS name and drops one trailing dot.
pub fn normalise_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn empty_list_denies_everything() {
        let l = Allowlist::deny_all();
        assert!(!l.permits_addr("127.0.0.1".parse().unwrap(), 80, Protocol::Tcp));
        assert_eq!(
            l.check_name("x", 80, Protocol::Tcp),
            NameDecision::NotCovered
        );
    }

    #[test]
    fn a_name_is_resolved_only_where_an_address_entry_could_permit_it() {
        let l = list(&["10.0.0.0/8:80/tcp", "nas.lan:445/tcp", "[fd00::/8]:53/udp"]);
        let d = |name: &str, port: u16, p: Protocol| l.check_name(name, port, p);
        assert_eq!(
            d("web.lan", 80, Protocol::Tcp),
            NameDecision::CheckAddresses
        );
        assert_eq!(
            d("dns.lan", 53, Protocol::Udp),
            NameDecision::CheckAddresses
        );
        // Another port, another protocol, or only a name entry for the port.
        assert_eq!(d("web.lan", 81, Protocol::Tcp), NameDecision::NotCovered);
        assert_eq!(d("web.lan", 80, Protocol::Udp), NameDecision::NotCovered);
        assert_eq!(d("other.lan", 445, Protocol::Tcp), NameDecision::NotCovered);
        assert_eq!(d("nas.lan", 445, Protocol::Tcp), NameDecision::Listed);
    }

    #[test]
    fn ip_cidr_port_range_and_protocol_all_matter() {
        let l = list(&["10.0.1.0/24:22/tcp", "127.0.0.1:8000-8010/udp"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.permits_addr(ip("10.0.1.200"), 22, Protocol::Tcp));
        assert!(!l.permits_addr(ip("10.0.2.1"), 22, Protocol::Tcp));
        assert!(!l.permits_addr(ip("10.0.1.200"), 23, Protocol::Tcp));
        assert!(!l.permits_addr(ip("10.0.1.200"), 22, Protocol::Udp));
        assert!(l.permits_addr(ip("127.0.0.1"), 8010, Protocol::Udp));
        assert!(!l.permits_addr(ip("127.0.0.1"), 8011, Protocol::Udp));
    }

    #[test]
    fn a_listed_name_does_not_permit_other_addresses() {
        let l = list(&["nas.lan:445/tcp"]);
        assert_eq!(
            l.check_name("NAS.lan.", 445, Protocol::Tcp),
            NameDecision::Listed
        );
        assert_eq!(
            l.check_name("nas.lan", 446, Protocol::Tcp),
            NameDecision::NotCovered
        );
        // A name entry never permits an IP target, even the name's own address.
        assert!(!l.permits_addr("192.168.1.5".parse().unwrap(), 445, Protocol::Tcp));
    }

    #[test]
    fn ipv6_entries() {
        let l = list(&["[fd00::/8]:53/udp", "[::1]:80/tcp"]);
        assert!(l.permits_addr("fd12::1".parse().unwrap(), 53, Protocol::Udp));
        assert!(l.permits_addr("::1".parse().unwrap(), 80, Protocol::Tcp));
        assert!(!l.permits_addr("fe80::1".parse().unwrap(), 53, Protocol::Udp));
    }

    #[test]
    fn extending_adds_rules_and_any_sticks() {
        let mut l = list(&["10.0.0.1:22/tcp"]);
        l.extend(list(&["nas.lan:445/tcp"]));
        assert_eq!(l.rules().len(), 2);
        assert!(l.permits_addr("10.0.0.1".parse().unwrap(), 22, Protocol::Tcp));
        assert_eq!(
            l.check_name("nas.lan", 445, Protocol::Tcp),
            NameDecision::Listed
        );
        assert!(!l.is_any());
        l.extend(Allowlist::allow_any());
        assert!(l.is_any());
        l.extend(Allowlist::deny_all());
        assert!(l.is_any(), "a narrower list does not take --allow-any back");
    }

    #[test]
    fn display_names_every_rule_or_says_what_the_list_is() {
        assert_eq!(Allowlist::deny_all().to_string(), "(empty: deny all)");
        assert_eq!(Allowlist::allow_any().to_string(), "any (--allow-any)");
        assert_eq!(list(&["nas.lan:445/tcp"]).to_string(), "nas.lan:445/tcp");
        assert_eq!(
            list(&["nas.lan:445/tcp", "10.0.0.0/8:1-2/udp", "[::1]:80/tcp"]).to_string(),
            "nas.lan:445/tcp, 10.0.0.0/8:1-2/udp, [::1/128]:80/tcp"
        );
    }

    #[test]
    fn file_errors_name_the_line_and_keep_going() {
        let errs = Allowlist::parse_file(
            "# comment\n127.0.0.1:80/tcp\n\nhost:0/tcp\n10.0.0.0/33:1/tcp # x\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].to_string().contains("line 4"), "{}", errs[0]);
        assert!(errs[1].to_string().contains("line 5"), "{}", errs[1]);
    }
}
