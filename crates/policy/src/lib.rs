//! Who may reach what: Warren's policy, sans I/O.
//!
//! A policy file (TOML) names `groups` of users, `tags` with their owners,
//! `hosts`, and `grants` from sources (users, groups, tags, API keys,
//! `autogroup:member`, `*`) to destinations (resources, tags, hosts,
//! addresses; ports; for http requests, methods and path prefixes). It is
//! default deny with only allow rules, so a decision is the union of the
//! grants. The file also carries its own tests.
//!
//! ```text
//! text --parse--> PolicyFile --Policy::compile--> Policy --decide--> Decision
//!        (every error at once, with its path)     (indexes)  (names the grant)
//! ```
//!
//! Invariants: no async, no I/O, no clock, no randomness. A compiled
//! [`Policy`] is immutable; callers swap whole policies. The edge's access
//! phase, SSH and devices all ask [`Policy::decide`].

mod check;
mod decide;
mod embedded;
mod model;

pub use check::{parse, valid_email, valid_tag, PolicyError, PolicyErrors, MAX_POLICY_LEN};
pub use decide::{path_under, Action, Decision, Miss, Policy, Principal, Target};
pub use embedded::{decide_target, explain, run_tests, TestFailure, Who};
pub use model::{
    valid_account, Dst, DstObject, Grant, Method, Net, PolicyFile, PortRange, Proto, Src, SshGrant,
    SshPrincipal, TestCase, TestTarget, SSH_EXTENSIONS,
};

/// Parses, checks and compiles a policy file.
pub fn compile(text: &str) -> Result<Policy, PolicyErrors> {
    parse(text).map(Policy::compile)
}
