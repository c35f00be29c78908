//! The devices' resolver, on Warren's own address in their range (UDP 53),
//! which device configs name as their `DNS`.
//!
//! A private resource's alias is answered here, with its address, to a
//! device whose user (or tags) may reach some port of it
//! ([`warren_policy::Policy::reaches_any`]); to anyone else the name does
//! not exist (NXDOMAIN). A name under an alias's domain that is no alias
//! does not exist either, and is never asked of anyone else: private names
//! do not leak upstream. Everything else is forwarded to `[devices]
//! dns_upstream` (the system's resolvers by default) and the answer passed
//! back as it came, so a phone sending all its DNS through the tunnel works.
//!
//! Parsing and writing messages is hickory-proto's; a query is at most one
//! datagram (the netstack's MTU bounds it) and must hold exactly one
//! question.

use super::DeviceInfo;
use crate::config::Resource;
use crate::EdgeShared;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use warren_policy::{Action, Decision, Principal, Proto, Target};

/// How long a device may cache a private answer.
const TTL: u32 = 30;
/// How long an upstream has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer passed back whole (a device's MTU less the IP and
/// UDP headers); larger ones are cut and marked truncated, so the device
/// asks again over TCP.
const MAX_ANSWER: usize = 1420 - 28;
/// The largest answer read from an upstream.
const MAX_UPSTREAM: usize = 4096;

/// What becomes of a query.
pub(super) enum Resolution {
    /// Answered here.
    Answer(Vec<u8>),
    /// Not a private name: ask an upstream.
    Forward,
    /// Not a DNS query at all: dropped.
    Drop,
}

/// Answers `query` from `who` if the name is private; otherwise says to
/// forward it.
pub(super) fn resolve(shared: &EdgeShared, who: &DeviceInfo, query: &[u8]) -> Resolution {
    let Ok(msg) = Message::from_vec(query) else {
        return Resolution::Drop;
    };
    if msg.metadata.message_type != MessageType::Query || msg.metadata.op_code != OpCode::Query {
        return Resolution::Drop;
    }
    let id = msg.metadata.id;
    let [question] = msg.queries.as_slice() else {
        return reply(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr));
    };
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let private = private_names(shared);
    let mut response = Message::response(id, OpCode::Query);
    response.metadata.recursion_desired = msg.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    if let Some(resource) = private.iter().find(|r| alias(r) == Some(name.as_str())) {
        let addr = resource.private.as_ref().map(|p| p.net.addr);
        match addr {
            Some(IpAddr::V4(v4)) if visible(shared, who, resource) => {
                response.metadata.authoritative = true;
                if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
                    response.add_answer(Record::from_rdata(
                        question.name().clone(),
                        TTL,
                        RData::A(A(v4)),
                    ));
                }
                return reply(response);
            }
            _ => {
                response.metadata.response_code = ResponseCode::NXDomain;
                return reply(response);
            }
        }
    }
    let in_private_zone = private.iter().filter_map(|r| alias(r)).any(|a| {
        let zone = a.split_once('.').map_or(a, |(_, z)| z);
        name == zone || name.ends_with(&format!(".{zone}"))
    });
    if in_private_zone {
        response.metadata.response_code = ResponseCode::NXDomain;
        return reply(response);
    }
    Resolution::Forward
}

fn reply(msg: Message) -> Resolution {
    match msg.to_vec() {
        Ok(bytes) => Resolution::Answer(bytes),
        Err(_) => Resolution::Drop,
    }
}

fn alias(r: &Resource) -> Option<&str> {
    r.private.as_ref()?.alias.as_deref()
}

/// The private resources that have an alias.
fn private_names(shared: &EdgeShared) -> Vec<Arc<Resource>> {
    shared
        .resources
        .load()
        .by_name
        .values()
        .map(|slot| slot.resource.load_full())
        .filter(|r| alias(r).is_some())
        .collect()
}

/// May the device reach some port of `resource`? (No policy: no.)
pub(super) fn visible(shared: &EdgeShared, who: &DeviceInfo, resource: &Resource) -> bool {
    let config = shared.config.load();
    let (Some(settings), Some(private)) = (config.policy.as_ref(), resource.private.as_ref())
    else {
        return false;
    };
    let tags = shared.catalog.load().tags_of(resource);
    let target = Target {
        resource: Some(&resource.name),
        tags: &tags,
        addr: Some(private.net.addr),
        port: 0,
        proto: Proto::Tcp,
    };
    let ports: Vec<(u16, u16, Proto)> = private
        .ports
        .iter()
        .map(|p| (p.lo, p.hi, p.proto))
        .collect();
    let as_user = Principal::User {
        email: &who.email,
        groups: &who.groups,
    };
    // Escalated grants show their names only while the user's second
    // factor is fresh, as they allow flows.
    let fresh = Action {
        request: None,
        second_factor: crate::access::second_factor_age(&shared.catalog.load(), &who.email),
    };
    if settings
        .policy
        .reaches_any(&as_user, &target, &ports, &fresh)
        != Decision::Denied
    {
        return true;
    }
    !who.tags.is_empty()
        && settings
            .policy
            .reaches_any(
                &Principal::Tagged(&who.tags),
                &target,
                &ports,
                &Action::default(),
            )
            .is_allowed()
}

/// The resolvers names that are not private go to: `[devices]
/// dns_upstream`, else the `nameserver` lines of `/etc/resolv.conf`.
pub(super) fn upstreams(configured: &[SocketAddr]) -> Vec<SocketAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Asks the upstreams in turn; the first answer with the query's id, cut to
/// fit a datagram to the device. `None` when none answered.
pub(super) async fn forward(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for upstream in upstreams {
        let bind: SocketAddr = if upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if socket.connect(upstream).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_UPSTREAM];
        let got = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                let n = socket.recv(&mut buf).await.ok()?;
                if buf.get(..2) == Some(id) {
                    return Some(n);
                }
            }
        })
        .await;
        let Ok(Some(n)) = got else { continue };
        let answer = &buf[..n];
        if answer.len() <= MAX_ANSWER {
            return Some(answer.to_vec());
        }
        let msg = Message::from_vec(answer).ok()?;
        return msg.truncate().to_vec().ok();
    }
    None
}

/// SERVFAIL for `query` (no upstream answered).
pub(super) fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let mut r = Message::error_msg(msg.metadata.id, OpCode::Query, ResponseCode::ServFail);
    r.queries = msg.queries;
    r.to_vec().ok()
}
