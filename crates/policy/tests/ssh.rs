//! `Policy::ssh`: what a certificate may carry is the union of the grants
//! that allow the connection; nothing when none does.

use warren_policy::{compile, Principal, Proto, SshPrincipal, Target};

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
    let (grant, terms) = policy.ssh(&user("alice@corp.com"), &target()).unwrap();
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
    let (grant, terms) = policy.ssh(&user("bob@corp.com"), &target()).unwrap();
    assert_eq!(grant, 1);
    assert_eq!(terms.principals, vec![SshPrincipal::Own]);
    assert_eq!(terms.extensions, vec!["permit-pty"]);
    assert_eq!(terms.sudo, None);
}

#[test]
fn no_grant_or_a_request_limited_grant_gives_nothing() {
    let policy = compile(POLICY).unwrap();
    assert!(policy.ssh(&user("carol@corp.com"), &target()).is_none());
    assert!(policy.ssh(&user("mallory@corp.com"), &target()).is_none());
    let other_port = Target {
        port: 2222,
        ..target()
    };
    assert!(policy.ssh(&user("bob@corp.com"), &other_port).is_none());
}

#[test]
fn sudo_comes_only_from_a_grant_of_the_own_account() {
    let policy = compile(POLICY).unwrap();
    let (_, terms) = policy.ssh(&user("dan@corp.com"), &target()).unwrap();
    assert_eq!(
        terms.principals,
        vec![SshPrincipal::Own, SshPrincipal::Account("deploy".into())]
    );
    assert_eq!(
        terms.sudo, None,
        "the grant naming sudo is for `deploy` only"
    );
}
