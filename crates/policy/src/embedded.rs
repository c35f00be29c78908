//! The tests a policy file carries (`[[tests]]`), and `explain`.

use crate::decide::{Action, Decision, Miss, Policy, Principal, Target};
use crate::model::{TestCase, TestTarget};

/// A principal as tests and `explain` write it: `alice@corp.com`,
/// `tag:ci`, `key:ID`.
pub struct Who {
    text: String,
    groups: Vec<String>,
    tags: Vec<String>,
}

impl Who {
    /// From the written form, with the groups SSO claims would add.
    pub fn new(text: &str, groups: &[String]) -> Who {
        let text = text.to_ascii_lowercase();
        let tags = if text.starts_with("tag:") {
            vec![text.clone()]
        } else {
            Vec::new()
        };
        Who {
            text,
            groups: groups.to_vec(),
            tags,
        }
    }

    /// From the written form, checked against the policy: one user
    /// (email), a tag the policy declares, or `key:ID`; groups it declares.
    pub fn parse(text: &str, groups: &[String], file: &crate::PolicyFile) -> Result<Who, String> {
        match crate::check::source(text, file)? {
            crate::Src::User(_) | crate::Src::Tag(_) | crate::Src::Key(_) => {}
            _ => {
                return Err(format!(
                    "\"{text}\": ask about one principal: a user (email), tag: or key:"
                ))
            }
        }
        if let Some(g) = groups.iter().find(|g| !file.groups.contains_key(*g)) {
            return Err(format!("group \"{g}\" is not defined in [groups]"));
        }
        Ok(Who::new(text, groups))
    }

    /// The principal to ask about.
    pub fn principal(&self) -> Principal<'_> {
        if !self.tags.is_empty() {
            Principal::Tagged(&self.tags)
        } else if let Some(id) = self.text.strip_prefix("key:") {
            Principal::Key(id)
        } else {
            Principal::User {
                email: &self.text,
                groups: &self.groups,
            }
        }
    }
}

/// Asks the policy about a written target.
pub fn decide_target(policy: &Policy, who: &Who, t: &TestTarget) -> Decision {
    let (target, action) = parts(t);
    policy.decide(&who.principal(), &target, &action)
}

fn parts(t: &TestTarget) -> (Target<'_>, Action<'_>) {
    (
        Target {
            resource: t.resource.as_deref(),
            tags: &t.tags,
            addr: t.addr,
            port: t.port,
            proto: t.proto,
        },
        Action {
            request: t.request.as_ref().map(|(m, p)| (*m, p.as_str())),
            second_factor: None,
        },
    )
}

/// One expectation a test did not meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestFailure {
    /// `tests[i]`.
    pub test: usize,
    /// `alice@corp.com -> db:5432 (tcp): expected DENIED, got ALLOWED (grants[3])`.
    pub message: String,
}

/// Runs every embedded test; an empty list means all passed.
pub fn run_tests(policy: &Policy) -> Vec<TestFailure> {
    let mut out = Vec::new();
    for (i, case) in policy.file().tests.iter().enumerate() {
        run_case(policy, i, case, &mut out);
    }
    out
}

fn run_case(policy: &Policy, i: usize, case: &TestCase, out: &mut Vec<TestFailure>) {
    let who = Who::new(&case.src, &case.groups);
    for (want, targets) in [(true, &case.accept), (false, &case.deny)] {
        for t in targets {
            let got = decide_target(policy, &who, t);
            if got.is_allowed() != want {
                let got = match got {
                    Decision::Allowed { grant } => format!("ALLOWED (grants[{grant}])"),
                    Decision::Denied => "DENIED".to_owned(),
                };
                out.push(TestFailure {
                    test: i,
                    message: format!(
                        "{} -> {} ({}): expected {}, got {got}",
                        case.src,
                        t.text,
                        t.proto.as_str(),
                        if want { "ALLOWED" } else { "DENIED" }
                    ),
                });
            }
        }
    }
}

/// Why a decision came out as it did, in words: the grant that allows it,
/// or that nothing does and the grant that came closest, with what it
/// lacks.
pub fn explain(policy: &Policy, who: &Who, t: &TestTarget) -> String {
    let head = format!("{} -> {} ({})", who.text, t.text, t.proto.as_str());
    match decide_target(policy, who, t) {
        Decision::Allowed { grant } => format!("{head}: ALLOWED by grants[{grant}]"),
        Decision::Denied => {
            let (target, action) = parts(t);
            let trace = policy.trace(&who.principal(), &target, &action);
            // The closest grant got furthest through the checks; the first
            // in the file among equals.
            let closest = trace
                .iter()
                .filter_map(|(i, m)| m.map(|m| (*i, m)))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            match closest {
                None => format!("{head}: DENIED: the policy has no grants"),
                Some((_, Miss::Source)) => format!(
                    "{head}: DENIED: no grant's src includes {} (default deny)",
                    who.text
                ),
                Some((i, miss)) => format!(
                    "{head}: DENIED: no grant allows it; closest is grants[{i}]: {}",
                    miss.describe()
                ),
            }
        }
    }
}
