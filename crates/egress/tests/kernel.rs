//! Reading Warren's nftables table back (JSON captured from a real
//! `nft -j list table inet warren_egress`, nftables 1.0.6) and auditing it
//! against the allowlist: exact, wider, narrower, tampered, someone else's.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use warren_egress::kernel::{
    audit, Finding, Identity, KernelSubject, KernelTable, KernelTableError,
};
use warren_egress::render::{Subject, Wall};
use warren_egress::Allowlist;

const RENDERED: &str = include_str!("fixtures/nft_uid990.json");
/// RENDERED + `tcp dport 9999 accept` before the drop + `10.9.0.0/16 . tcp . 1-65535`.
const TAMPERED: &str = include_str!("fixtures/nft_uid990_tampered.json");
/// TAMPERED without the final drop.
const NO_DROP: &str = include_str!("fixtures/nft_uid990_no_drop.json");

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

#[test]
fn the_table_as_rendered_matches_its_list() {
    let table = KernelTable::parse(RENDERED).unwrap();
    assert_eq!(table.subjects, [KernelSubject::Uid(990)]);
    assert_eq!(table.elements.len(), 9, "{:?}", table.elements);
    assert!(table.ends_in_drop);
    assert!(table.other_accepts.is_empty());
    assert_eq!(audit_with(RENDERED, LIST, &AGENT), []);
}

#[test]
fn a_table_for_another_uid_does_not_govern_this_agent() {
    let findings = audit_with(
        RENDERED,
        LIST,
        &Identity {
            uid: 1000,
            cgroup: None,
        },
    );
    assert_eq!(
        findings,
        [Finding::NotThisProcess(vec![KernelSubject::Uid(990)])]
    );
    assert!(findings[0].is_hole());
    assert!(
        findings[0].to_string().contains("uid 990"),
        "{}",
        findings[0]
    );
}

#[test]
fn a_wall_wider_than_the_list_is_a_hole_named_by_its_element() {
    // The agent's list lost the ssh subnet and the port range: the kernel
    // still lets them through.
    let findings = audit_with(RENDERED, &LIST[2..], &AGENT);
    assert_eq!(
        findings,
        [
            Finding::Wider("10.0.1.0/24 tcp 22".into()),
            Finding::Wider("10.0.2.0/24 tcp 5000-5100".into()),
        ]
    );
    // A narrower entry does not cover a wider element.
    let findings = audit_with(
        RENDERED,
        &[
            "10.0.1.0/25:22/tcp",
            "10.0.2.0/24:5000-5050/tcp",
            "[fd00::/8]:443/tcp",
            "127.0.0.1:8080/tcp",
            "192.168.1.53:53/udp",
        ],
        &AGENT,
    );
    assert_eq!(
        findings.iter().filter(|f| f.is_hole()).count(),
        2,
        "{findings:?}"
    );
}

#[test]
fn a_wall_narrower_than_the_list_is_reported_but_is_no_hole() {
    let mut list = LIST.to_vec();
    list.push("10.0.3.4:443/tcp");
    let findings = audit_with(RENDERED, &list, &AGENT);
    assert_eq!(findings, [Finding::Narrower("10.0.3.4 tcp 443".into())]);
    assert!(!findings[0].is_hole());
}

#[test]
fn rules_added_by_hand_are_holes() {
    let findings = audit_with(TAMPERED, LIST, &AGENT);
    assert!(
        findings.contains(&Finding::Wider("10.9.0.0/16 tcp 1-65535".into())),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| matches!(f, Finding::OtherAccept(r) if r.contains("9999"))),
        "{findings:?}"
    );
    assert!(!findings.contains(&Finding::NoFinalDrop));
    let findings = audit_with(NO_DROP, LIST, &AGENT);
    assert!(findings.contains(&Finding::NoFinalDrop), "{findings:?}");
}

#[test]
fn cgroup_subjects_govern_the_cgroup_and_its_children() {
    let json = RENDERED.replace(
        r#"{"meta": {"key": "skuid"}}, "right": 990}"#,
        r#"{"socket": {"key": "cgroupv2", "level": 2}}, "right": "system.slice/warren-site.service"}"#,
    );
    assert_ne!(json, RENDERED, "the fixture's jump rule changed shape");
    let table = KernelTable::parse(&json).unwrap();
    assert_eq!(
        table.subjects,
        [KernelSubject::Cgroup(
            "system.slice/warren-site.service".into()
        )]
    );
    for (cgroup, governed) in [
        ("system.slice/warren-site.service", true),
        ("system.slice/warren-site.service/child", true),
        ("system.slice/warren-site.service2", false),
        ("user.slice", false),
    ] {
        let me = Identity {
            uid: 0,
            cgroup: Some(cgroup.into()),
        };
        let findings = audit_with(&json, LIST, &me);
        assert_eq!(findings.is_empty(), governed, "{cgroup}: {findings:?}");
    }
}

#[test]
fn what_is_not_the_table_is_refused_with_a_reason() {
    for (json, expected) in [
        ("", "not nft JSON"),
        ("{}", "not nft JSON"),
        (r#"{"nftables": []}"#, "no table inet warren_egress"),
        (
            r#"{"nftables": [{"table": {"family": "ip", "name": "warren_egress"}}]}"#,
            "no table",
        ),
    ] {
        let err = KernelTable::parse(json).unwrap_err();
        assert!(err.to_string().contains(expected), "{json}: {err}");
    }
    let bad = RENDERED.replacen(
        r#""concat": ["10.0.0.1", "tcp", 53]"#,
        r#""concat": ["10.0.0.1", "sctp", 53]"#,
        1,
    );
    assert_ne!(bad, RENDERED);
    assert!(matches!(
        KernelTable::parse(&bad),
        Err(KernelTableError::Element { .. })
    ));
}
