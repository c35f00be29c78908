//! The policy parser on arbitrary text: never panics; every refusal names a
//! path; whatever it accepts compiles, answers questions without panicking,
//! runs its own tests, and explains them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_policy::{compile, explain, run_tests, Action, Method, Principal, Proto, Target, Who};

fuzz_target!(|text: &str| {
    let policy = match compile(text) {
        Ok(p) => p,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused with no error");
            for e in &errors.0 {
                assert!(!e.path.is_empty() && !e.message.is_empty(), "{e:?}");
            }
            return;
        }
    };
    let tags = vec!["tag:a".to_owned()];
    let groups: Vec<String> = policy.file().groups.keys().cloned().collect();
    let who = [
        Principal::User { email: "a@b.co", groups: &groups },
        Principal::Key("k"),
        Principal::Tagged(&tags),
    ];
    for p in &who {
        for resource in [None, Some("a"), Some("web")] {
            let target = Target {
                resource,
                tags: &tags,
                addr: Some("10.0.0.1".parse().unwrap()),
                port: 443,
                proto: Proto::Tcp,
            };
            for second_factor in [None, Some(std::time::Duration::from_secs(60))] {
                let action = Action { request: Some((Method::Get, "/a/b")), second_factor };
                let d = policy.decide(p, &target, &action);
                if let warren_policy::Decision::Allowed { grant } = d {
                    assert!(grant < policy.file().grants.len());
                }
                assert_eq!(policy.decide(p, &target, &action), d, "not deterministic");
            }
        }
    }
    let _ = run_tests(&policy);
    for case in &policy.file().tests {
        let w = Who::new(&case.src, &case.groups);
        for t in case.accept.iter().chain(&case.deny) {
            assert!(!explain(&policy, &w, t).is_empty());
        }
    }
});
