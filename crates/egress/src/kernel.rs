//! The second wall read back from the kernel and audited against the list.
//!
//! `nft -j list table inet warren_egress` prints Warren's table as JSON;
//! [`KernelTable::parse`] turns that into who the table governs and what it
//! lets through, and [`audit`] compares it with what the allowlist (plus DNS
//! and the edge) permits *now*: a kernel element the list does not cover is
//! a hole ([`Finding::Wider`]), as is any accept rule of another shape or a
//! chain that does not end in a drop. A stale snapshot of a name that has
//! since moved shows up the same way: the old address is wider than the list.
//!
//! No I/O here: the caller runs `nft` and resolves names (the agent does it
//! at start for `warren site --egress-check`). The parser takes hostile or
//! unexpected JSON and answers with an error, never a panic (fuzzed).

use crate::render::{Dest, Net, Proto, RenderError, Wall, TABLE};
use serde_json::Value;
use std::net::IpAddr;

/// Whose packets Warren's table sends through its `agent` chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSubject {
    /// `meta skuid N`.
    Uid(u32),
    /// `socket cgroupv2 level L "PATH"`.
    Cgroup(String),
    /// `ip saddr NET` / `ip6 saddr NET` (a container's wall, on the host).
    Source(String),
    /// A jump of a shape Warren does not write.
    Other(String),
}

/// One element of the `allow4`/`allow6` sets: addresses (an inclusive
/// range, so prefixes and ranges compare alike), protocol and ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelElement {
    first: IpAddr,
    last: IpAddr,
    protocol: Proto,
    ports: (u16, u16),
    text: String,
}

impl KernelElement {
    fn new(first: IpAddr, last: IpAddr, protocol: Proto, ports: (u16, u16)) -> KernelElement {
        let port_text = if ports.0 == ports.1 {
            ports.0.to_string()
        } else {
            format!("{}-{}", ports.0, ports.1)
        };
        let text = format!("{} {} {port_text}", addr_text(first, last), protocol.name());
        KernelElement {
            first,
            last,
            protocol,
            ports,
            text,
        }
    }

    fn from_dest(d: &Dest) -> KernelElement {
        let (first, last) = net_bounds(d.net);
        KernelElement::new(first, last, d.protocol, d.ports)
    }

    /// Every packet this element matches, `outer` matches too.
    fn within(&self, outer: &KernelElement) -> bool {
        self.protocol == outer.protocol
            && self.first.is_ipv4() == outer.first.is_ipv4()
            && outer.first <= self.first
            && self.last <= outer.last
            && outer.ports.0 <= self.ports.0
            && self.ports.1 <= outer.ports.1
    }
}

impl std::fmt::Display for KernelElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Warren's table as the kernel holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelTable {
    /// Who is governed.
    pub subjects: Vec<KernelSubject>,
    /// What the governed may reach.
    pub elements: Vec<KernelElement>,
    /// Accept rules in the `agent` chain other than the established-flow
    /// and set-lookup rules Warren writes (each is a hole).
    pub other_accepts: Vec<String>,
    /// The `agent` chain's last rule drops.
    pub ends_in_drop: bool,
}

/// Why `nft -j` output could not be read as Warren's table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelTableError {
    /// Not JSON, or not nft's `{"nftables": [...]}`.
    #[error("not nft JSON output: {0}")]
    NotNftJson(String),
    /// The JSON has no `inet warren_egress` table.
    #[error("no table inet {TABLE} in the ruleset")]
    NoTable,
    /// A set element of a shape this reader does not know.
    #[error("set {set}: element {element} is not ADDRESS . PROTOCOL . PORT")]
    Element {
        /// `allow4` or `allow6`.
        set: String,
        /// The element as JSON.
        element: String,
    },
}

/// One difference between the kernel's wall and the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The table governs others, not this process.
    NotThisProcess(Vec<KernelSubject>),
    /// The kernel lets through what the list does not name.
    Wider(String),
    /// The `agent` chain has an accept rule of another shape.
    OtherAccept(String),
    /// The `agent` chain does not end in a drop.
    NoFinalDrop,
    /// The list names what the kernel drops: connections to it will time
    /// out (not a hole; the wall is narrower than the list).
    Narrower(String),
}

impl Finding {
    /// The finding means the second wall is missing or has a hole.
    pub fn is_hole(&self) -> bool {
        !matches!(self, Finding::Narrower(_))
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::NotThisProcess(subjects) => {
                let list: Vec<String> = subjects.iter().map(subject_text).collect();
                write!(
                    f,
                    "table inet {TABLE} governs {}, not this process",
                    if list.is_empty() {
                        "nobody".to_owned()
                    } else {
                        list.join(", ")
                    }
                )
            }
            Finding::Wider(e) => write!(
                f,
                "the kernel lets the agent reach {e}, which neither the allowlist, \
                 a DNS resolver nor the edge is"
            ),
            Finding::OtherAccept(r) => write!(f, "chain agent accepts more than the sets: {r}"),
            Finding::NoFinalDrop => f.write_str("chain agent does not end in a drop"),
            Finding::Narrower(e) => write!(
                f,
                "the allowlist names {e} but the kernel drops it (render and apply again)"
            ),
        }
    }
}

fn subject_text(s: &KernelSubject) -> String {
    match s {
        KernelSubject::Uid(u) => format!("uid {u}"),
        KernelSubject::Cgroup(p) => format!("cgroup {p}"),
        KernelSubject::Source(n) => format!("packets from {n}"),
        KernelSubject::Other(r) => format!("`{r}`"),
    }
}

/// Who this process is, to tell whether the table governs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The effective uid.
    pub uid: u32,
    /// The cgroup v2 path (the `0::` line of /proc/self/cgroup), without
    /// the leading `/`.
    pub cgroup: Option<String>,
}

impl KernelTable {
    /// Reads `nft -j list table inet warren_egress` (or a whole
    /// `nft -j list ruleset`: other tables are ignored).
    pub fn parse(json: &str) -> Result<KernelTable, KernelTableError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| KernelTableError::NotNftJson(e.to_string()))?;
        let objects = value
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or_else(|| KernelTableError::NotNftJson("no `nftables` array".into()))?;
        let ours = |o: &Value| o["family"] == "inet" && o["table"] == TABLE;
        if !objects
            .iter()
            .any(|o| o["table"]["family"] == "inet" && o["table"]["name"] == TABLE)
        {
            return Err(KernelTableError::NoTable);
        }
        let mut table = KernelTable::default();
        let mut agent_rules = Vec::new();
        for object in objects {
            if let Some(set) = object.get("set").filter(|s| ours(s)) {
                let name = set["name"].as_str().unwrap_or_default();
                if name != "allow4" && name != "allow6" {
                    continue;
                }
                for element in set["elem"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let parsed =
                        parse_element(element).ok_or_else(|| KernelTableError::Element {
                            set: name.to_owned(),
                            element: element.to_string(),
                        })?;
                    table.elements.push(parsed);
                }
            }
            if let Some(rule) = object.get("rule").filter(|r| ours(r)) {
                let expr = rule["expr"].as_array().cloned().unwrap_or_default();
                if rule["chain"] == "agent" {
                    agent_rules.push(expr);
                } else if expr
                    .iter()
                    .any(|e| e["jump"]["target"] == "agent" || e["goto"]["target"] == "agent")
                {
                    table.subjects.push(parse_subject(&expr));
                }
            }
        }
        for (i, expr) in agent_rules.iter().enumerate() {
            let verdict_accept = expr.iter().any(|e| e.get("accept").is_some());
            if verdict_accept && !is_ours(expr) {
                table
                    .other_accepts
                    .push(Value::Array(expr.clone()).to_string());
            }
            if i + 1 == agent_rules.len() {
                table.ends_in_drop = expr.iter().any(|e| e.get("drop").is_some())
                    && expr.iter().all(|e| e.get("match").is_none());
            }
        }
        Ok(table)
    }
}

/// The accept rules Warren writes: `ct state established,related accept`
/// and `ip[6] daddr . meta l4proto . th dport @allow4|@allow6 accept`.
fn is_ours(expr: &[Value]) -> bool {
    let [Value::Object(m), accept] = expr else {
        return false;
    };
    if accept.get("accept").is_none() {
        return false;
    }
    let Some(matched) = m.get("match") else {
        return false;
    };
    let established = matched["left"]["ct"]["key"] == "state"
        && matched["right"]
            .as_array()
            .is_some_and(|s| s.iter().all(|v| v == "established" || v == "related"));
    let set_lookup = matched["op"] == "=="
        && (matched["right"] == "@allow4" || matched["right"] == "@allow6")
        && matched["left"]["concat"]
            .as_array()
            .is_some_and(|c| c.len() == 3 && c[0]["payload"]["field"] == "daddr");
    established || set_lookup
}

fn parse_subject(expr: &[Value]) -> KernelSubject {
    let text = Value::Array(expr.to_vec()).to_string();
    let [Value::Object(m), _jump] = expr else {
        return KernelSubject::Other(text);
    };
    let Some(matched) = m.get("match").filter(|m| m["op"] == "==") else {
        return KernelSubject::Other(text);
    };
    let left = &matched["left"];
    let right = &matched["right"];
    if left["meta"]["key"] == "skuid" {
        if let Some(uid) = right.as_u64().and_then(|u| u32::try_from(u).ok()) {
            return KernelSubject::Uid(uid);
        }
    }
    if left["socket"]["key"] == "cgroupv2" {
        if let Some(path) = right.as_str() {
            return KernelSubject::Cgroup(path.trim_start_matches('/').to_owned());
        }
    }
    if left["payload"]["field"] == "saddr" {
        if let Some((first, last)) = parse_addrs(right) {
            return KernelSubject::Source(addr_text(first, last));
        }
    }
    KernelSubject::Other(text)
}

fn parse_element(element: &Value) -> Option<KernelElement> {
    // Elements with counters or timeouts are wrapped: {"elem": {"val": ...}}.
    let element = element.get("elem").map(|e| &e["val"]).unwrap_or(element);
    let [addrs, protocol, ports] = element.get("concat")?.as_array()?.as_slice() else {
        return None;
    };
    let (first, last) = parse_addrs(addrs)?;
    let protocol = match protocol {
        Value::String(p) if p == "tcp" => Proto::Tcp,
        Value::String(p) if p == "udp" => Proto::Udp,
        Value::Number(n) if n.as_u64() == Some(6) => Proto::Tcp,
        Value::Number(n) if n.as_u64() == Some(17) => Proto::Udp,
        _ => return None,
    };
    let ports = match ports {
        Value::Number(_) => {
            let p = port(ports)?;
            (p, p)
        }
        Value::Object(o) => {
            let [a, b] = o.get("range")?.as_array()?.as_slice() else {
                return None;
            };
            (port(a)?, port(b)?)
        }
        _ => return None,
    };
    if ports.0 > ports.1 {
        return None;
    }
    Some(KernelElement::new(first, last, protocol, ports))
}

fn port(v: &Value) -> Option<u16> {
    v.as_u64().and_then(|p| u16::try_from(p).ok())
}

/// An address, `{"prefix": {"addr", "len"}}` or `{"range": [a, b]}`, as
/// its first and last address.
fn parse_addrs(v: &Value) -> Option<(IpAddr, IpAddr)> {
    match v {
        Value::String(s) => {
            let a: IpAddr = s.parse().ok()?;
            Some((a, a))
        }
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr: IpAddr = p["addr"].as_str()?.parse().ok()?;
                let len = u8::try_from(p["len"].as_u64()?).ok()?;
                let full = if addr.is_ipv4() { 32 } else { 128 };
                if len > full {
                    return None;
                }
                Some(net_bounds(Net::masked(addr, len)))
            } else if let [a, b] = o.get("range")?.as_array()?.as_slice() {
                let a: IpAddr = a.as_str()?.parse().ok()?;
                let b: IpAddr = b.as_str()?.parse().ok()?;
                (a.is_ipv4() == b.is_ipv4() && a <= b).then_some((a, b))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn net_bounds(net: Net) -> (IpAddr, IpAddr) {
    let last = match net.addr {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(net.prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) | host).into())
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(net.prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) | host).into())
        }
    };
    (net.addr, last)
}

fn addr_text(first: IpAddr, last: IpAddr) -> String {
    if first == last {
        return first.to_string();
    }
    let full = if first.is_ipv4() { 32 } else { 128 };
    for prefix in 0..=full {
        let net = Net::masked(first, prefix);
        if net.addr == first && net_bounds(net).1 == last {
            return format!("{first}/{prefix}");
        }
    }
    format!("{first}-{last}")
}

fn governs(subject: &KernelSubject, me: &Identity) -> bool {
    match subject {
        KernelSubject::Uid(uid) => *uid == me.uid,
        // `level L "a/b"` matches the ancestor of depth L: a prefix by path components.
        KernelSubject::Cgroup(path) => me.cgroup.as_deref().is_some_and(|mine| {
            mine == path
                || mine
                    .strip_prefix(path.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }),
        KernelSubject::Source(_) | KernelSubject::Other(_) => false,
    }
}

/// Compares the kernel's table with what `wall` permits, for the process
/// `me`. Holes first ([`Finding::is_hole`]), then what is narrower.
pub fn audit(
    table: &KernelTable,
    wall: &Wall<'_>,
    me: &Identity,
) -> Result<Vec<Finding>, RenderError> {
    let permitted = wall.permitted()?;
    let expected: Vec<KernelElement> = [&permitted.dns, &permitted.edge, &permitted.targets]
        .into_iter()
        .flatten()
        .map(KernelElement::from_dest)
        .collect();
    let mut findings = Vec::new();
    if !table.subjects.iter().any(|s| governs(s, me)) {
        findings.push(Finding::NotThisProcess(table.subjects.clone()));
    }
    for element in &table.elements {
        if !expected.iter().any(|d| element.within(d)) {
            findings.push(Finding::Wider(element.to_string()));
        }
    }
    for rule in &table.other_accepts {
        findings.push(Finding::OtherAccept(rule.clone()));
    }
    if !table.ends_in_drop {
        findings.push(Finding::NoFinalDrop);
    }
    for target in permitted.targets.iter().map(KernelElement::from_dest) {
        if !table.elements.iter().any(|e| target.within(e)) {
            findings.push(Finding::Narrower(target.to_string()));
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests;
