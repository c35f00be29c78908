//! The escalated tier: a grant with `within` allows only a principal whose
//! second factor is at most that old.

use std::time::Duration;
use warren_policy::{compile, Action, Decision, Miss, Principal, Proto, Target};

const POLICY: &str = r#"
[[grants]]
src = ["alice@corp.com"]
dst = ["lab:443"]

[[grants]]
src = ["alice@corp.com"]
dst = ["10.69.13.0/24"]
within = "15m"
"#;

fn target(port: u16) -> Target<'static> {
    Target {
        resource: Some("lab"),
        tags: &[],
        addr: Some("10.69.13.7".parse().unwrap()),
        port,
        proto: Proto::Tcp,
    }
}

fn fresh(age: Option<u64>) -> Action<'static> {
    Action {
        request: None,
        second_factor: age.map(Duration::from_secs),
    }
}

#[test]
fn an_escalated_grant_needs_a_recent_second_factor() {
    let p = compile(POLICY).unwrap();
    let alice = Principal::User {
        email: "alice@corp.com",
        groups: &[],
    };
    // The default tier, whatever the factor.
    assert!(p.decide(&alice, &target(443), &fresh(None)).is_allowed());
    // Full access: only within 15 minutes of a second factor.
    assert_eq!(
        p.decide(&alice, &target(22), &fresh(None)),
        Decision::Denied
    );
    assert_eq!(
        p.decide(&alice, &target(22), &fresh(Some(60))),
        Decision::Allowed { grant: 1 }
    );
    assert!(p
        .decide(&alice, &target(22), &fresh(Some(900)))
        .is_allowed());
    assert!(!p
        .decide(&alice, &target(22), &fresh(Some(901)))
        .is_allowed());
    // explain says why.
    let trace = p.trace(&alice, &target(22), &fresh(Some(901)));
    assert_eq!(trace[1], (1, Some(Miss::SecondFactor)));
    // A name is shown on the same terms.
    let every = [(1, 65535, Proto::Any)];
    let mut t = target(0);
    t.resource = Some("other");
    assert!(!p.reaches_any(&alice, &t, &every, &fresh(None)).is_allowed());
    assert!(p
        .reaches_any(&alice, &t, &every, &fresh(Some(10)))
        .is_allowed());
}

#[test]
fn a_bad_window_is_named() {
    for (bad, says) in [
        ("\"15\"", "is not a duration"),
        ("\"15d\"", "is not a duration"),
        ("\"0s\"", "from 1s to 24h"),
        ("\"25h\"", "from 1s to 24h"),
        ("15", "expected a duration"),
    ] {
        let text = POLICY.replace("\"15m\"", bad);
        let errors = compile(&text).unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.path == "grants[1].within" && e.message.contains(says)),
            "{bad}: {errors:?}"
        );
    }
}
