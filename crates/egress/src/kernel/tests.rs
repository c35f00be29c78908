//! The kernel reader and audit on hand-made variations of a real
//! `nft -j list table inet warren_egress` (the fixture of `tests/kernel.rs`):
//! what the reader must ignore, which accept rules are Warren's own, and
//! the edges of the containment test.

use super::*;
use crate::render::Subject;
use crate::Allowlist;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;

const RENDERED: &str = include_str!("../../tests/fixtures/nft_uid990.json");

/// The list the fixture was rendered from (`--resolver 10.0.0.1 --edge 203.0.113.10:7443`).
const LIST: &[&str] = &[
    "10.0.1.0/24:22/tcp",
    "10.0.2.0/24:5000-5100/tcp",
    "[fd00::/8]:443/tcp",
    "127.0.0.1:8080/tcp",
    "192.168.1.53:53/udp",
];

const AGENT: Identity = Identity {
    uid: 990,
    cgroup: None,
};

fn objects() -> Vec<Value> {
    let v: Value = serde_json::from_str(RENDERED).unwrap();
    v["nftables"].as_array().unwrap().clone()
}

fn ruleset(objects: Vec<Value>) -> String {
    json!({ "nftables": objects }).to_string()
}

fn rule(table: &str, chain: &str, expr: Value) -> Value {
    json!({ "rule": { "family": "inet", "table": table, "chain": chain, "expr": expr } })
}

/// The fixture with `expr` as an `agent` rule just before the final drop.
fn with_agent_rule(expr: Value) -> String {
    let mut objects = objects();
    let drop = objects
        .iter()
        .position(|o| o["rule"]["expr"][1] == json!({ "drop": null }))
        .expect("the fixture ends in a drop");
    objects.insert(drop, rule(TABLE, "agent", expr));
    ruleset(objects)
}

/// The fixture with the `agent` chain's last rule replaced by `expr`.
fn with_last_agent_rule(expr: Value) -> String {
    let mut objects = objects();
    let last = objects
        .iter()
        .rposition(|o| o["rule"]["chain"] == "agent")
        .unwrap();
    objects[last]["rule"]["expr"] = expr;
    ruleset(objects)
}

fn audit_with(json: &str, list: &[&str], me: &Identity) -> Vec<Finding> {
    let table = KernelTable::parse(json).unwrap();
    let allow = Allowlist::parse(list.iter().copied()).unwrap();
    let resolved = BTreeMap::new();
    let resolvers: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
    let edge: Vec<SocketAddr> = vec!["203.0.113.10:7443".parse().unwrap()];
    let wall = Wall {
        allow: &allow,
        resolved: &resolved,
        resolvers: &resolvers,
        edge: &edge,
        subject: Subject::Uid(me.uid),
    };
    audit(&table, &wall, me).unwrap()
}

fn tcp_dport(port: u16) -> Value {
    json!({ "match": { "op": "==", "left": { "payload": { "protocol": "tcp", "field": "dport" } }, "right": port } })
}

#[test]
fn other_tables_in_a_whole_ruleset_are_ignored() {
    let mut objects = objects();
    let ours = KernelTable::parse(&ruleset(objects.clone())).unwrap();
    for (family, table) in [("inet", "other"), ("ip", TABLE)] {
        objects.push(json!({ "table": { "family": family, "name": table } }));
        objects.push(json!({ "set": {
            "family": family, "table": table, "name": "allow4",
            "elem": [{ "concat": [{ "prefix": { "addr": "0.0.0.0", "len": 0 } }, "tcp", { "range": [1, 65535] }] }],
        } }));
        objects.push(json!({ "rule": {
            "family": family, "table": table, "chain": "agent", "expr": [{ "accept": null }],
        } }));
        objects.push(json!({ "rule": {
            "family": family, "table": table, "chain": "output",
            "expr": [{ "match": { "op": "==", "left": { "meta": { "key": "skuid" } }, "right": 1000 } }, { "jump": { "target": "agent" } }],
        } }));
    }
    assert_eq!(KernelTable::parse(&ruleset(objects)).unwrap(), ours);
}

#[test]
fn only_jumps_and_gotos_to_agent_name_subjects() {
    let mut objects = objects();
    objects.push(rule(
        TABLE,
        "output",
        json!([tcp_dport(22), { "accept": null }]),
    ));
    objects.push(rule(
        TABLE,
        "output",
        json!([
            { "match": { "op": "==", "left": { "meta": { "key": "skuid" } }, "right": 991 } },
            { "goto": { "target": "agent" } }
        ]),
    ));
    let table = KernelTable::parse(&ruleset(objects)).unwrap();
    assert_eq!(
        table.subjects,
        [KernelSubject::Uid(990), KernelSubject::Uid(991)]
    );
    assert!(table.other_accepts.is_empty(), "{:?}", table.other_accepts);
}

#[test]
fn a_last_rule_that_drops_only_some_packets_is_no_final_drop() {
    for last in [
        json!([tcp_dport(22), { "counter": "refused" }, { "drop": null }]),
        json!([{ "counter": "refused" }]),
    ] {
        let table = KernelTable::parse(&with_last_agent_rule(last.clone())).unwrap();
        assert!(!table.ends_in_drop, "{last}");
        assert!(
            audit_with(&with_last_agent_rule(last.clone()), LIST, &AGENT)
                .contains(&Finding::NoFinalDrop),
            "{last}"
        );
    }
}

#[test]
fn accept_rules_of_another_shape_are_holes() {
    let lookup = |op: &str, field: &str, len: usize, set: &str| {
        let keys = [
            json!({ "payload": { "protocol": "ip", "field": field } }),
            json!({ "meta": { "key": "l4proto" } }),
            json!({ "payload": { "protocol": "th", "field": "dport" } }),
        ];
        json!([
            { "match": { "op": op, "left": { "concat": keys[..len] }, "right": set } },
            { "accept": null }
        ])
    };
    let ct = |right: Value| {
        json!([
            { "match": { "op": "in", "left": { "ct": { "key": "state" } }, "right": right } },
            { "accept": null }
        ])
    };
    for expr in [
        // Everything not in the set.
        lookup("!=", "daddr", 3, "@allow4"),
        lookup("==", "saddr", 3, "@allow4"),
        lookup("==", "daddr", 2, "@allow4"),
        lookup("==", "daddr", 3, "@other"),
        ct(json!(["established", "related", "new"])),
        ct(json!(["new"])),
        ct(json!("new")),
        json!([{ "match": { "op": "in", "left": { "ct": { "key": "mark" } }, "right": ["established"] } }, { "accept": null }]),
        json!([{ "accept": null }]),
        json!([{ "counter": null }, { "accept": null }]),
        json!([tcp_dport(22), { "counter": null }, { "accept": null }]),
    ] {
        let findings = audit_with(&with_agent_rule(expr.clone()), LIST, &AGENT);
        assert_eq!(findings, [Finding::OtherAccept(expr.to_string())], "{expr}");
        assert!(findings[0].is_hole());
    }
    // Warren's own shapes, added twice, are no hole.
    for ours in [
        ct(json!(["established"])),
        lookup("==", "daddr", 3, "@allow6"),
    ] {
        assert_eq!(audit_with(&with_agent_rule(ours), LIST, &AGENT), []);
    }
}

/// The fixture with the subject rule (the `output` chain's jump) matching `left == right`.
fn with_subject(left: Value, right: Value) -> String {
    let mut objects = objects();
    let jump = objects
        .iter()
        .position(|o| o["rule"]["chain"] == "output")
        .unwrap();
    objects[jump]["rule"]["expr"][0]["match"] = json!({ "op": "==", "left": left, "right": right });
    ruleset(objects)
}

#[test]
fn a_container_wall_names_its_source_and_governs_no_process() {
    let saddr = json!({ "payload": { "protocol": "ip", "field": "saddr" } });
    for (right, text) in [
        (json!("172.17.0.5"), "172.17.0.5"),
        (
            json!({ "prefix": { "addr": "172.17.0.0", "len": 16 } }),
            "172.17.0.0/16",
        ),
    ] {
        let json = with_subject(saddr.clone(), right);
        let table = KernelTable::parse(&json).unwrap();
        assert_eq!(table.subjects, [KernelSubject::Source(text.into())]);
        let findings = audit_with(&json, LIST, &AGENT);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            findings[0].to_string(),
            format!("table inet {TABLE} governs packets from {text}, not this process")
        );
    }
    // A daddr match is no subject Warren writes.
    let daddr = json!({ "payload": { "protocol": "ip", "field": "daddr" } });
    let table = KernelTable::parse(&with_subject(daddr, json!("172.17.0.5"))).unwrap();
    assert!(matches!(table.subjects[..], [KernelSubject::Other(_)]));
}

/// The fixture's `allow4` set holding only `elements`.
fn with_allow4(elements: Value) -> Result<KernelTable, KernelTableError> {
    let mut objects = objects();
    let set = objects
        .iter()
        .position(|o| o["set"]["name"] == "allow4")
        .unwrap();
    objects[set]["set"]["elem"] = elements;
    KernelTable::parse(&ruleset(objects))
}

fn texts(table: &KernelTable) -> Vec<String> {
    table.elements.iter().map(ToString::to_string).collect()
}

#[test]
fn elements_read_numeric_protocols_ranges_and_whole_prefixes() {
    let table = with_allow4(json!([
        { "concat": ["10.0.0.1", 6, 53] },
        { "concat": ["10.0.0.1", 17, 53] },
        { "elem": { "val": { "concat": [{ "prefix": { "addr": "10.0.0.9", "len": 32 } }, "tcp", { "range": [1, 2] }] }, "counter": { "packets": 0 } } },
        { "concat": [{ "range": ["10.0.0.1", "10.0.0.9"] }, "tcp", 80] },
        { "concat": [{ "range": ["10.0.3.0", "10.0.3.255"] }, "tcp", 80] },
        { "concat": [{ "range": ["10.0.0.4", "10.0.0.4"] }, "udp", 80] },
    ]))
    .unwrap();
    assert_eq!(
        texts(&table)[..6],
        [
            "10.0.0.1 tcp 53",
            "10.0.0.1 udp 53",
            "10.0.0.9 tcp 1-2",
            "10.0.0.1-10.0.0.9 tcp 80",
            "10.0.3.0/24 tcp 80",
            "10.0.0.4 udp 80",
        ]
    );
    for bad in [
        json!({ "concat": ["10.0.0.1", 1, 53] }),
        json!({ "concat": ["10.0.0.1", "icmp", 53] }),
        json!({ "concat": [{ "prefix": { "addr": "10.0.0.0", "len": 33 } }, "tcp", 53] }),
        json!({ "concat": [{ "prefix": { "addr": "fd00::", "len": 129 } }, "tcp", 53] }),
        json!({ "concat": [{ "range": ["10.0.0.9", "10.0.0.1"] }, "tcp", 80] }),
        json!({ "concat": [{ "range": ["10.0.0.1", "fd00::1"] }, "tcp", 80] }),
        json!({ "concat": ["10.0.0.1", "tcp", { "range": [9, 8] }] }),
        json!({ "concat": ["10.0.0.1", "tcp", 65536] }),
    ] {
        assert!(
            matches!(
                with_allow4(json!([bad])),
                Err(KernelTableError::Element { .. })
            ),
            "{bad}"
        );
    }
    let v6 = with_allow4(json!([
        { "concat": [{ "prefix": { "addr": "fd00::1", "len": 128 } }, "tcp", 1] },
    ]))
    .unwrap();
    assert!(texts(&v6).contains(&"fd00::1 tcp 1".to_owned()));
}

#[test]
fn ipv6_elements_are_contained_by_their_bounds() {
    // The fixture's fd00::/8 element against narrower and equal entries.
    let mut list = LIST.to_vec();
    list[2] = "[fd00::/16]:443/tcp";
    assert_eq!(
        audit_with(RENDERED, &list, &AGENT),
        [Finding::Wider("fd00::/8 tcp 443".into())]
    );
    list[2] = "[fc00::/7]:443/tcp";
    assert_eq!(
        audit_with(RENDERED, &list, &AGENT),
        [Finding::Narrower("fc00::/7 tcp 443".into())]
    );
    assert_eq!(audit_with(RENDERED, LIST, &AGENT), []);
}
