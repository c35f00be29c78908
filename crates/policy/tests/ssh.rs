//! `Policy::ssh`: what a certificate may carry is the union of the grants
//! that allow the connection; nothing when none does.

use warren_policy::{compile, Action, Principal, Proto, SshPrincipal, Target};

const POLICY: &str = r#"
[groups]
"group:ops" = ["alice@corp.com"]

[[grants]]
src = ["group:ops"]
dst = ["vm-01"]
ssh = { principals = ["autogroup:self", "deploy"], extensions = ["permit-port-forwarding"], sudo = "admin" }

[[grants]]
src = ["alice@corp.com", "bob@corp.com"]
dst = ["vm-01:22"]

[[grants]]
src = ["carol@corp.com"]
dst = ["vm-01"]
methods = ["GET"]

[[grants]]
src = ["dan@corp.com"]
dst = ["vm-01"]
ssh = { principals = ["deploy"], sudo = "admin" }

[[grants]]
src = ["dan@corp.com"]
dst = ["vm-01"]
"#;

fn target() -> Target<'static> {
    Target {
        resource: Some("vm-01"),
        tags: &[],
        addr: None,
        port: 22,
        proto: Proto::Tcp,
    }
}

fn user(email: &str) -> Principal<'_> {
    Principal::User { email, groups: &[] }
}

#[test]
fn the_terms_are_the_union_of_every_allowing_grant() {
    let policy = compile(POLICY).unwrap();
    let (grant, terms) = policy
        .ssh(&user("alice@corp.com"), &target(), &Action::default())
        .unwrap();
    assert_eq!(grant, 0, "the first allowing grant is named");
    assert_eq!(
        terms.principals,
        vec![SshPrincipal::Own, SshPrincipal::Account("deploy".into())]
    );
    assert_eq!(
        terms.extensions,
        vec!["permit-port-forwarding", "permit-pty"]
    );
    assert_eq!(terms.sudo.as_deref(), Some("admin"));
}

#[test]
fn a_grant_without_ssh_terms_gives_the_defaults() {
    let policy = compile(POLICY).unwrap();
    let (grant, terms) = policy
        .ssh(&user("bob@corp.com"), &target(), &Action::default())
        .unwrap();
    assert_eq!(grant, 1);
    assert_eq!(terms.principals, vec![SshPrincipal::Own]);
    assert_eq!(terms.extensions, vec!["permit-pty"]);
    assert_eq!(terms.sudo, None);
}

#[test]
fn no_grant_or_a_request_limited_grant_gives_nothing() {
    let policy = compile(POLICY).unwrap();
    assert!(policy
        .ssh(&user("carol@corp.com"), &target(), &Action::default())
        .is_none());
    assert!(policy
        .ssh(&user("mallory@corp.com"), &target(), &Action::default())
        .is_none());
    let other_port = Target {
        port: 2222,
        ..target()
    };
    assert!(policy
        .ssh(&user("bob@corp.com"), &other_port, &Action::default())
        .is_none());
}

#[test]
fn sudo_comes_only_from_a_grant_of_the_own_account() {
    let policy = compile(POLICY).unwrap();
    let (_, terms) = policy
        .ssh(&user("dan@corp.com"), &target(), &Action::default())
        .unwrap();
    assert_eq!(
        terms.principals,
        vec![SshPrincipal::Own, SshPrincipal::Account("deploy".into())]
    );
    assert_eq!(
        terms.sudo, None,
        "the grant naming sudo is for `deploy` only"
    );
}

#[test]
fn an_escalated_grant_gives_a_certificate_only_after_a_recent_second_factor() {
    let policy = compile(
        "[[grants]]\nsrc = [\"alice@corp.com\"]\ndst = [\"vm-01\"]\nwithin = \"15m\"\n\
         ssh = { principals = [\"root\"] }\n",
    )
    .unwrap();
    let fresh = |secs| Action {
        request: None,
        second_factor: Some(std::time::Duration::from_secs(secs)),
    };
    let alice = user("alice@corp.com");
    assert!(policy.ssh(&alice, &target(), &Action::default()).is_none());
    assert!(policy.ssh(&alice, &target(), &fresh(901)).is_none());
    let (_, terms) = policy.ssh(&alice, &target(), &fresh(60)).unwrap();
    assert_eq!(terms.principals, vec![SshPrincipal::Account("root".into())]);
}
