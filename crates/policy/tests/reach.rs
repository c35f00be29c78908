//! `Policy::reaches_any`: may a principal reach some port of a target — what
//! a resolver asks before it shows a device a private name.

use warren_policy::{compile, Action, Decision, Principal, Proto, Target};

const POLICY: &str = r#"
[[grants]]
src = ["alice@corp.com"]
dst = ["lab:22"]

[[grants]]
src = ["bob@corp.com"]
dst = ["lab:53"]
proto = "udp"

[[grants]]
src = ["carol@corp.com"]
dst = ["lab"]
methods = ["GET"]

[[grants]]
src = ["dan@corp.com"]
dst = ["10.69.13.0/24:8000-8099"]
"#;

fn lab() -> Target<'static> {
    Target {
        resource: Some("lab"),
        tags: &[],
        addr: Some("10.69.13.7".parse().unwrap()),
        port: 0,
        proto: Proto::Tcp,
    }
}

fn user(email: &str) -> Principal<'_> {
    Principal::User { email, groups: &[] }
}

#[test]
fn a_name_is_shown_to_whoever_may_reach_some_port_of_it() {
    let p = compile(POLICY).unwrap();
    let every = [(1, 65535, Proto::Any)];
    assert_eq!(
        p.reaches_any(&user("alice@corp.com"), &lab(), &every, &Action::default()),
        Decision::Allowed { grant: 0 }
    );
    assert!(p
        .reaches_any(&user("bob@corp.com"), &lab(), &every, &Action::default())
        .is_allowed());
    assert!(p
        .reaches_any(&user("dan@corp.com"), &lab(), &every, &Action::default())
        .is_allowed());
    // Only http requests: no plain connection, no name.
    assert!(!p
        .reaches_any(&user("carol@corp.com"), &lab(), &every, &Action::default())
        .is_allowed());
    assert!(!p
        .reaches_any(&user("eve@corp.com"), &lab(), &every, &Action::default())
        .is_allowed());
}

#[test]
fn the_ports_and_protocols_must_meet() {
    let p = compile(POLICY).unwrap();
    let web = [(80, 443, Proto::Tcp)];
    assert!(!p
        .reaches_any(&user("alice@corp.com"), &lab(), &web, &Action::default())
        .is_allowed());
    assert!(p
        .reaches_any(
            &user("alice@corp.com"),
            &lab(),
            &[(20, 30, Proto::Tcp)],
            &Action::default()
        )
        .is_allowed());
    // bob's grant is udp only.
    assert!(!p
        .reaches_any(
            &user("bob@corp.com"),
            &lab(),
            &[(53, 53, Proto::Tcp)],
            &Action::default()
        )
        .is_allowed());
    assert!(p
        .reaches_any(
            &user("bob@corp.com"),
            &lab(),
            &[(53, 53, Proto::Udp)],
            &Action::default()
        )
        .is_allowed());
    assert!(p
        .reaches_any(
            &user("bob@corp.com"),
            &lab(),
            &[(1, 100, Proto::Any)],
            &Action::default()
        )
        .is_allowed());
    // dan's grant is by address: ranges overlap at the edges.
    assert!(p
        .reaches_any(
            &user("dan@corp.com"),
            &lab(),
            &[(8099, 9000, Proto::Tcp)],
            &Action::default()
        )
        .is_allowed());
    assert!(!p
        .reaches_any(
            &user("dan@corp.com"),
            &lab(),
            &[(8100, 9000, Proto::Tcp)],
            &Action::default()
        )
        .is_allowed());
    assert!(
        !p.reaches_any(&user("alice@corp.com"), &lab(), &[], &Action::default())
            .is_allowed(),
        "no ports, no name"
    );
}
