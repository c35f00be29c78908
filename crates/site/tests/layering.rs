//! The layering ARCHITECTURE.md promises, checked against the resolved
//! dependency graph (`cargo metadata`): the agent and the protocol never
//! pull in the store, the edge or a web framework, and the protocol stays
//! sans-IO (no runtime, sockets or TLS). A new dependency that breaks this
//! fails here, naming the path that brought it in.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Crates no agent or protocol code may depend on, directly or not.
const NEVER: &[&str] = &[
    "warren-store",
    "warren-edge",
    "warren-ingress",
    "sqlx",
    "axum",
    "actix-web",
    "warp",
    "rocket",
    "poem",
    "salvo",
    "tide",
    "utoipa",
    "tower-http",
    "instant-acme",
    "lettre",
];

/// What else the protocol crate may not reach: it has no I/O.
const NOT_IN_PROTO: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "quinn",
    "rustls",
    "hyper",
    "warren-transport",
];

struct Graph {
    /// package id → name
    names: BTreeMap<String, String>,
    /// package id → ids of its normal (non-dev, non-build) dependencies
    deps: BTreeMap<String, Vec<String>>,
}

fn graph() -> Graph {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let names = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let deps = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| {
            let normal = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap().to_owned())
                .collect();
            (n["id"].as_str().unwrap().to_owned(), normal)
        })
        .collect();
    Graph { names, deps }
}

/// Every crate `root` depends on at run time, each with a path to it.
fn reachable(g: &Graph, root: &str) -> BTreeMap<String, Vec<String>> {
    let start = g
        .names
        .iter()
        .find(|(_, n)| n.as_str() == root)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("{root} is not in the workspace"));
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut queue = vec![(start, vec![root.to_owned()])];
    let mut visited = BTreeSet::new();
    while let Some((id, path)) = queue.pop() {
        if !visited.insert(id.clone()) {
            continue;
        }
        for dep in g.deps.get(&id).into_iter().flatten() {
            let name = g.names[dep].clone();
            let mut p = path.clone();
            p.push(name.clone());
            seen.entry(name).or_insert_with(|| p.clone());
            queue.push((dep.clone(), p));
        }
    }
    seen
}

fn offences(reach: &BTreeMap<String, Vec<String>>, banned: &[&str]) -> Vec<String> {
    banned
        .iter()
        .filter_map(|b| reach.get(*b).map(|path| path.join(" -> ")))
        .collect()
}

#[test]
fn the_agent_and_the_protocol_stay_out_of_the_edge_the_store_and_web_frameworks() {
    let g = graph();
    let site = reachable(&g, "warren-site");
    let proto = reachable(&g, "warren-proto");
    // Not vacuous: the graph was read, and the agent's own layers are in it.
    for needed in ["warren-proto", "warren-transport", "warren-egress", "tokio"] {
        assert!(site.contains_key(needed), "warren-site without {needed}?");
    }
    assert!(proto.contains_key("bytes"), "warren-proto without bytes?");

    let mut bad = offences(&site, NEVER);
    bad.extend(offences(&proto, NEVER));
    bad.extend(offences(&proto, NOT_IN_PROTO));
    assert!(bad.is_empty(), "layering broken:\n  {}", bad.join("\n  "));
}
