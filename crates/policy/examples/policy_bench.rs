//! Decision and compile times on a large policy (issue 15's targets: a
//! decision on 1,000 grants and 10,000 users in < 2 µs median; compiling
//! it in < 50 ms). Run by `bench/policy.py`, which records the figures:
//!
//!   cargo run --release -p warren-policy --example policy_bench [ROUNDS]
//!
//! Prints one JSON object. The policy: 10,000 users in 100 groups, 50 tags,
//! 1,000 grants (users, groups and tags as sources; resources, tags and
//! networks with ports as destinations; a tenth limited to http paths).
//! Questions cycle over users, resources and ports; the share allowed is printed.

use std::time::Instant;
use warren_policy::{compile, Action, Method, Principal, Proto, Target};

fn policy_text() -> String {
    let mut t = String::from("[groups]\n");
    for g in 0..100 {
        let members: Vec<String> = (0..100)
            .map(|u| format!("\"u{}@corp.com\"", g * 100 + u))
            .collect();
        t += &format!("\"group:g{g}\" = [{}]\n", members.join(", "));
    }
    t += "[tags]\n";
    for tag in 0..50 {
        t += &format!("\"tag:t{tag}\" = [\"group:g0\"]\n");
    }
    for i in 0..1000 {
        let src = match i % 3 {
            0 => format!("\"group:g{}\"", i % 100),
            1 => format!("\"u{}@corp.com\"", (i * 7) % 10_000),
            _ => format!("\"tag:t{}\"", i % 50),
        };
        let dst = match i % 4 {
            0 => format!("\"r{}:443\"", i % 500),
            1 => format!("\"tag:t{}:22\"", i % 50),
            2 => format!("\"10.{}.0.0/16:80-90\"", i % 200),
            _ => format!("\"r{}\"", (i * 3) % 500),
        };
        t += &format!("[[grants]]\nsrc = [{src}]\ndst = [{dst}]\n");
        if i % 10 == 0 {
            t += "paths = [\"/api/\"]\nmethods = [\"GET\"]\n";
        }
    }
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let text = policy_text();
    let mut compile_ms = Vec::new();
    let mut policy = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let p = compile(&text).expect("the bench policy is valid");
        compile_ms.push(start.elapsed().as_secs_f64() * 1e3);
        policy = Some(p);
    }
    let policy = policy.expect("rounds > 0");
    let users: Vec<String> = (0..10_000).map(|u| format!("u{u}@corp.com")).collect();
    let resources: Vec<String> = (0..500).map(|r| format!("r{r}")).collect();
    let no_groups: Vec<String> = Vec::new();
    let tags: Vec<String> = Vec::new();
    const N: usize = 200_000;
    let mut per_decision_ns = Vec::new();
    let mut allowed = 0usize;
    for round in 0..rounds {
        let start = Instant::now();
        for i in 0..N {
            let k = i.wrapping_mul(2_654_435_761).wrapping_add(round);
            let who = Principal::User {
                email: &users[k % users.len()],
                groups: &no_groups,
            };
            let target = Target {
                resource: Some(&resources[(k / 7) % resources.len()]),
                tags: &tags,
                addr: None,
                port: if k % 2 == 0 { 443 } else { 8080 },
                proto: Proto::Tcp,
            };
            let action = Action {
                request: Some((Method::Get, "/api/v1")),
                second_factor: None,
            };
            if policy.decide(&who, &target, &action).is_allowed() {
                allowed += 1;
            }
        }
        per_decision_ns.push(start.elapsed().as_secs_f64() * 1e9 / N as f64);
    }
    println!(
        "{{\"grants\": 1000, \"users\": 10000, \"rounds\": {rounds}, \"decisions_per_round\": {N}, \
         \"decide_ns_median\": {:.1}, \"decide_ns_min\": {:.1}, \"decide_ns_max\": {:.1}, \
         \"compile_ms_median\": {:.2}, \"compile_ms_min\": {:.2}, \"compile_ms_max\": {:.2}, \
         \"allowed_share\": {:.3}}}",
        median(per_decision_ns.clone()),
        per_decision_ns.iter().cloned().fold(f64::MAX, f64::min),
        per_decision_ns.iter().cloned().fold(0.0, f64::max),
        median(compile_ms.clone()),
        compile_ms.iter().cloned().fold(f64::MAX, f64::min),
        compile_ms.iter().cloned().fold(0.0, f64::max),
        allowed as f64 / (N * rounds) as f64
    );
}
