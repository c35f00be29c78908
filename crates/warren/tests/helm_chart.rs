//! The Helm chart `deploy/helm/warren-site`, rendered by Helm's own template
//! engine (Helm v4's Go SDK via helm-python-sdk; see `helm/render_chart.py`)
//! with the values `warren egress render --format helm-values` writes, and
//! every manifest checked strictly against the Kubernetes API types.
//!
//! Needs a Python with helm-python-sdk and PyYAML: `WARREN_HELM_PYTHON`, or
//! the venv `.ci/run` makes at /opt/warren-helm. Skips without one
//! (`warren_testkit::skip`: a failure with `CI` set).

mod common;

use common::bin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm_python() -> Option<PathBuf> {
    let candidate = std::env::var_os("WARREN_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/warren-helm/bin/python3"));
    if candidate.exists() {
        return Some(candidate);
    }
    warren_testkit::skip(format!(
        "no Python with helm-python-sdk at {} (see .ci/run)",
        candidate.display()
    ));
    None
}

/// Renders the chart with `values` (YAML text) and `--set`-style overrides.
fn render(python: &Path, values: &str, sets: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let values_file = dir.path().join("values.yaml");
    std::fs::write(&values_file, values).unwrap();
    let out = warren_testkit::run_ok(
        Command::new(python)
            .arg(repo_root().join("crates/warren/tests/helm/render_chart.py"))
            .arg(repo_root().join("deploy/helm/warren-site"))
            .arg(&values_file)
            .args(sets),
        "render_chart.py",
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn warren(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "warren {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const ALLOW: &[&str] = &[
    "--allow",
    "jellyfin.media.svc.cluster.local:8096/tcp",
    "--allow",
    "10.0.1.0/24:22/tcp",
    "--allow",
    "10.0.2.0/24:5000-5100/tcp",
    "--allow",
    "[fd00::/8]:443/tcp",
    "--service",
    "jellyfin.media.svc:8096=app=jellyfin:8080",
    "--edge",
    "203.0.113.10:7443",
];

const REQUIRED: &[&str] = &[
    "site.endpoint=https://edge.example.com:7443",
    "site.id=home",
    "site.secret=S3CRET",
];

/// Every rendered manifest, across the chart's templates.
fn manifests(rendered: &Value) -> Vec<&Value> {
    rendered["manifests"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|docs| docs.as_array().unwrap())
        .collect()
}

fn one<'a>(rendered: &'a Value, kind: &str) -> &'a Value {
    let all: Vec<&Value> = manifests(rendered)
        .into_iter()
        .filter(|m| m["kind"] == kind)
        .collect();
    assert_eq!(all.len(), 1, "one {kind} expected: {all:?}");
    all[0]
}

/// `warren egress render --format helm-values` for [`ALLOW`].
fn rendered_values() -> String {
    let mut args = vec!["egress", "render", "--format", "helm-values"];
    args.extend_from_slice(ALLOW);
    warren(&args)
}

#[test]
fn the_chart_renders_schema_valid_manifests_from_the_rendered_values() {
    let Some(python) = helm_python() else { return };
    let values = rendered_values();
    let rendered = render(&python, &values, REQUIRED);
    assert_eq!(rendered["lint"], json!([]), "helm lint --strict");
    assert!(rendered.get("error").is_none(), "{rendered}");

    let mut kinds = Vec::new();
    for manifest in manifests(&rendered) {
        if let Err(e) = warren_testkit::kube::check_manifest(manifest) {
            panic!("{e}");
        }
        kinds.push(manifest["kind"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret"
        ]
    );

    // Two agents, active-active, locked down.
    let deployment = one(&rendered, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["ports"][0]["name"], "metrics");
    let env = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", container["env"]))
            .clone()
    };
    assert_eq!(
        env("WARREN_ENDPOINT")["value"],
        "https://edge.example.com:7443"
    );
    assert_eq!(env("WARREN_ID")["value"], "home");
    assert_eq!(env("WARREN_METRICS")["value"], "0.0.0.0:9090");
    // The secret comes from the Secret, never a plain env value.
    assert!(env("WARREN_SECRET").get("value").is_none());
    let secret = one(&rendered, "Secret");
    assert_eq!(
        env("WARREN_SECRET")["valueFrom"]["secretKeyRef"]["name"],
        secret["metadata"]["name"]
    );

    // The first wall: the agent's allowlist, the same entries as --allow.
    let allow_file = env("WARREN_ALLOW_FILE")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let config_map = one(&rendered, "ConfigMap");
    let listed: Vec<&str> = config_map["data"]["allow.list"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        listed,
        [
            "jellyfin.media.svc.cluster.local:8096/tcp",
            "10.0.1.0/24:22/tcp",
            "10.0.2.0/24:5000-5100/tcp",
            "[fd00::/8]:443/tcp"
        ]
    );
    assert!(allow_file.starts_with("/etc/warren/"), "{allow_file}");

    // The second wall: exactly the NetworkPolicy `--format k8s` renders,
    // selecting the Deployment's pods.
    let policy = one(&rendered, "NetworkPolicy");
    let mut k8s_args = vec!["egress", "render", "--format", "k8s"];
    k8s_args.extend_from_slice(ALLOW);
    let standalone: Value = serde_norway::from_str(&warren(&k8s_args)).unwrap();
    assert_eq!(policy["spec"]["egress"], standalone["spec"]["egress"]);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([]),
        "no ingress at all by default"
    );
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // The Service's pods on the container port, not the Service port.
    let to_jellyfin = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["to"][0]["podSelector"]["matchLabels"]["app"] == "jellyfin")
        .expect("a rule for the jellyfin pods");
    assert_eq!(
        to_jellyfin["ports"],
        json!([{"port": 8080, "protocol": "TCP"}])
    );
    let pdb = one(&rendered, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

#[test]
fn the_chart_refuses_to_render_without_what_it_needs() {
    let Some(python) = helm_python() else { return };
    let values = rendered_values();

    let no_endpoint = render(&python, &values, &["site.id=home", "site.secret=S"]);
    let error = no_endpoint["error"].as_str().expect("an error");
    assert!(error.contains("site.endpoint is required"), "{error}");

    let no_secret = render(&python, &values, &REQUIRED[..2]);
    let error = no_secret["error"].as_str().expect("an error");
    assert!(
        error.contains("site.secret or site.existingSecret"),
        "{error}"
    );

    // A NetworkPolicy with no egress rules would cut the agent off even from
    // the edge: refused, naming the command that renders them.
    let no_wall = render(&python, "site: {allow: [\"10.0.0.1:22/tcp\"]}\n", REQUIRED);
    let error = no_wall["error"].as_str().expect("an error");
    assert!(
        error.contains("warren egress render --format helm-values"),
        "{error}"
    );

    // An existing Secret replaces the chart's own.
    let existing = render(
        &python,
        &values,
        &[
            "site.endpoint=https://e:7443",
            "site.id=home",
            "site.existingSecret=warren-home",
        ],
    );
    assert!(existing.get("error").is_none(), "{existing}");
    let kinds: Vec<&Value> = manifests(&existing).iter().map(|m| &m["kind"]).collect();
    assert!(!kinds.contains(&&json!("Secret")), "{kinds:?}");
    let deployment = one(&existing, "Deployment");
    let secret_ref = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "WARREN_SECRET")
        .unwrap()["valueFrom"]["secretKeyRef"]["name"]
        .clone();
    assert_eq!(secret_ref, "warren-home");
}
