//! The allowlist as a Kubernetes NetworkPolicy, and as values for the
//! `deploy/helm/warren-site` chart (whose NetworkPolicy template writes the
//! same egress rules).
//!
//! The policy selects the agent's pods and lists both policy types, so
//! everything not named is denied, in and out. Egress is allowed to:
//! cluster DNS (kube-dns in kube-system, or the `--resolver` addresses), the
//! edge, and each allowlist entry. An entry naming a Service
//! (`NAME.NAMESPACE.svc[.cluster.local]`) needs a [`ServicePeer`]: a
//! NetworkPolicy is evaluated after kube-proxy has rewritten the Service's
//! address and port to a pod's, so the rule must select the pods and use
//! the container's `targetPort`; an ipBlock of the ClusterIP with the
//! Service port would match nothing and silently cut the agent off. Other
//! entries become ipBlocks (names by the caller's resolution, a snapshot).

use super::{Net, RenderError, Wall};
use crate::{HostPattern, Protocol, Rule};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Pods behind a Service the allowlist names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePeer {
    /// The Service's DNS name as the allowlist writes it.
    pub host: String,
    /// The Service port (what the agent dials).
    pub port: u16,
    /// The pods' labels.
    pub pod_labels: BTreeMap<String, String>,
    /// The container port behind the Service port: a number or a port name.
    pub target_port: TargetPort,
}

/// A container port, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// `8080`.
    Number(u16),
    /// `http`.
    Name(String),
}

impl ServicePeer {
    /// Parses `HOST:PORT=LABEL=VALUE[,LABEL=VALUE...]:TARGET_PORT`, e.g.
    /// `jellyfin.media.svc.cluster.local:8096=app=jellyfin:8080`.
    pub fn parse(text: &str) -> Result<ServicePeer, String> {
        const FORM: &str = "expected SERVICE:PORT=LABEL=VALUE[,LABEL=VALUE]:TARGET_PORT, \
                            e.g. jellyfin.media.svc.cluster.local:8096=app=jellyfin:8080";
        let bad = |why: &str| format!("--service `{text}`: {why}; {FORM}");
        let (service, pods) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let (host, port) = service
            .rsplit_once(':')
            .ok_or_else(|| bad("no :PORT after the Service name"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if service_namespace(&host).is_none() {
            return Err(bad(
                "not a Service name (NAME.NAMESPACE.svc[.cluster.local])",
            ));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the Service port is not a port"))?;
        let (labels, target) = pods
            .rsplit_once(':')
            .ok_or_else(|| bad("no :TARGET_PORT after the pod labels"))?;
        let target_port = match target.parse::<u32>() {
            Ok(n @ 1..=65535) => TargetPort::Number(n as u16),
            Ok(_) => return Err(bad("the target port is not a port")),
            Err(_) if is_port_name(target) => TargetPort::Name(target.to_owned()),
            Err(_) => return Err(bad("the target port is neither a number nor a port name")),
        };
        let mut pod_labels = BTreeMap::new();
        for pair in labels.split(',') {
            let (k, v) = pair
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| bad("pod labels are LABEL=VALUE"))?;
            pod_labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(ServicePeer {
            host,
            port,
            pod_labels,
            target_port,
        })
    }
}

/// IANA service names as Kubernetes takes them: 1-15 of a-z, 0-9 and `-`,
/// with at least one letter.
fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
}

/// `(NAME, NAMESPACE)` of `NAME.NAMESPACE.svc` or
/// `NAME.NAMESPACE.svc.cluster.local` (any cluster domain after `svc`).
fn service_key(host: &str) -> Option<(&str, &str)> {
    let mut labels = host.split('.');
    let (name, namespace) = (labels.next()?, labels.next()?);
    (labels.next()? == "svc" && !name.is_empty() && !namespace.is_empty())
        .then_some((name, namespace))
}

/// The namespace of a Service name (see [`service_key`]).
pub fn service_namespace(host: &str) -> Option<&str> {
    service_key(host).map(|(_, namespace)| namespace)
}

/// `NAME.NAMESPACE.svc` and `NAME.NAMESPACE.svc.cluster.local` are one
/// Service: a `--service` may name it either way.
fn same_service(a: &str, b: &str) -> bool {
    service_key(a).is_some() && service_key(a) == service_key(b)
}

/// Whose pods the policy governs and what it is called.
#[derive(Clone, Debug)]
pub struct KubeOptions<'a> {
    /// `metadata.name` of the NetworkPolicy.
    pub name: &'a str,
    /// `metadata.namespace`, if set.
    pub namespace: Option<&'a str>,
    /// Labels of the agent's pods.
    pub pod_labels: BTreeMap<String, String>,
    /// Pods behind the Services the allowlist names.
    pub services: &'a [ServicePeer],
}

/// Why the Kubernetes renderer refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The wall itself cannot be rendered.
    #[error(transparent)]
    Wall(#[from] RenderError),
    /// An entry names a Service but nothing says which pods and port.
    #[error(
        "allowlist entry `{0}` names a Kubernetes Service: a NetworkPolicy sees the pod's \
         address and container port after kube-proxy, not the Service's; say which pods and \
         targetPort with --service '{1}'"
    )]
    ServiceWithoutPods(String, String),
    /// A `--service` matches no entry, or a range of ports.
    #[error("--service {0}:{1} matches no single-port allowlist entry for that Service")]
    UnusedService(String, u16),
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn port_json(protocol: &str, ports: (u16, u16)) -> Value {
    let mut p = Map::new();
    p.insert("protocol".into(), json!(protocol));
    p.insert("port".into(), json!(ports.0));
    if ports.1 != ports.0 {
        p.insert("endPort".into(), json!(ports.1));
    }
    Value::Object(p)
}

fn cidr(net: Net) -> String {
    format!("{}/{}", net.addr, net.prefix)
}

fn ip_block(net: Net) -> Value {
    json!({ "ipBlock": { "cidr": cidr(net) } })
}

fn service_peer_rule(peer: &ServicePeer, protocol: Protocol) -> Value {
    let namespace = service_namespace(&peer.host).unwrap_or_default();
    let port = match &peer.target_port {
        TargetPort::Number(n) => json!(n),
        TargetPort::Name(name) => json!(name),
    };
    json!({
        "to": [{
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } },
            "podSelector": { "matchLabels": peer.pod_labels },
        }],
        "ports": [{ "protocol": protocol_name(protocol), "port": port }],
    })
}

/// The policy's egress rules: DNS, the edge, then one rule per allowlist
/// entry, in the list's order, without duplicates. Also what the chart's
/// `networkPolicy.egress` value holds.
pub fn egress_rules(wall: &Wall<'_>, options: &KubeOptions<'_>) -> Result<Vec<Value>, KubeError> {
    // Names are resolved only where they become ipBlocks; Services are not.
    wall.check_renderable()?;
    let mut rules = Vec::new();
    let dns_ports = json!([{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }]);
    if wall.resolvers.is_empty() {
        rules.push(json!({
            "to": [{
                "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
                "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } },
            }],
            "ports": dns_ports,
        }));
    } else {
        let mut nets: Vec<Net> = wall.resolvers.iter().map(|r| Net::host(*r)).collect();
        nets.sort();
        nets.dedup();
        rules.push(
            json!({ "to": nets.into_iter().map(ip_block).collect::<Vec<_>>(), "ports": dns_ports }),
        );
    }
    for e in wall.edge {
        let net = Net::host(e.ip());
        rules.push(json!({
            "to": [ip_block(net)],
            "ports": [port_json("TCP", (e.port(), e.port())), port_json("UDP", (e.port(), e.port()))],
        }));
    }
    let mut used = vec![false; options.services.len()];
    for rule in wall.allow.rules() {
        let ports = (*rule.ports.start(), *rule.ports.end());
        let value = match &rule.host {
            HostPattern::Net(n) => json!({
                "to": [ip_block(Net::masked(n.addr(), n.prefix()))],
                "ports": [port_json(protocol_name(rule.protocol), ports)],
            }),
            HostPattern::Name(name) if service_namespace(name).is_some() => {
                let found = options
                    .services
                    .iter()
                    .position(|s| same_service(&s.host, name) && ports == (s.port, s.port));
                let Some(i) = found else {
                    return Err(KubeError::ServiceWithoutPods(
                        rule.to_string(),
                        format!("{name}:{}=app=NAME:TARGET_PORT", ports.0),
                    ));
                };
                used[i] = true;
                service_peer_rule(&options.services[i], rule.protocol)
            }
            HostPattern::Name(name) => {
                let addrs = wall.addresses_of(name)?;
                json!({
                    "to": addrs.iter().map(|a| ip_block(Net::host(*a))).collect::<Vec<_>>(),
                    "ports": [port_json(protocol_name(rule.protocol), ports)],
                })
            }
        };
        if !rules.contains(&value) {
            rules.push(value);
        }
    }
    if let Some(i) = used.iter().position(|u| !u) {
        let s = &options.services[i];
        return Err(KubeError::UnusedService(s.host.clone(), s.port));
    }
    Ok(rules)
}

/// Renders the NetworkPolicy as one YAML document.
pub fn network_policy(wall: &Wall<'_>, options: &KubeOptions<'_>) -> Result<String, KubeError> {
    let value = network_policy_object(wall, options)?;
    Ok(format!(
        "# Generated by `warren egress render --format k8s`: the agent's allowlist as a\n\
         # NetworkPolicy. Its pods may reach cluster DNS, the edge and the entries below; all\n\
         # else, in and out, is denied.\n{}---\n{}",
        wall.snapshot_comments(),
        to_yaml(&value)
    ))
}

/// The NetworkPolicy as a JSON value (what [`network_policy`] writes).
pub fn network_policy_object(
    wall: &Wall<'_>,
    options: &KubeOptions<'_>,
) -> Result<Value, KubeError> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(options.name));
    if let Some(ns) = options.namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    metadata.insert(
        "labels".into(),
        json!({ "app.kubernetes.io/managed-by": "warren" }),
    );
    Ok(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": { "matchLabels": options.pod_labels },
            "policyTypes": ["Ingress", "Egress"],
            "egress": egress_rules(wall, options)?,
        },
    }))
}

/// Renders values for the `warren-site` chart: the agent's allowlist (its
/// first wall) and the NetworkPolicy's egress rules (the second), from one
/// list.
pub fn helm_values(wall: &Wall<'_>, options: &KubeOptions<'_>) -> Result<String, KubeError> {
    let allow: Vec<String> = wall.allow.rules().iter().map(Rule::to_string).collect();
    let value = json!({
        "site": { "allow": allow },
        "networkPolicy": { "enabled": true, "egress": egress_rules(wall, options)? },
    });
    Ok(format!(
        "# Generated by `warren egress render --format helm-values`: use with\n\
         #   helm install SITE deploy/helm/warren-site -f THIS_FILE \\\n\
         #     --set site.endpoint=https://EDGE:7443 --set site.id=ID --set site.secret=SECRET\n\
         # site.allow is the agent's own allowlist; networkPolicy.egress is the same list\n\
         # for the kernel.\n{}{}",
        wall.snapshot_comments(),
        to_yaml(&value)
    ))
}

fn to_yaml(value: &Value) -> String {
    // A `Value` always serialises; an error here would be a bug in serde_norway.
    serde_norway::to_string(value).unwrap_or_else(|e| format!("# cannot write YAML: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ports_are_numbers_or_iana_names() {
        let target = |t: &str| {
            ServicePeer::parse(&format!("web.media.svc:80=app=web:{t}")).map(|p| p.target_port)
        };
        assert_eq!(target("8080"), Ok(TargetPort::Number(8080)));
        assert_eq!(target("http-alt"), Ok(TargetPort::Name("http-alt".into())));
        assert_eq!(target("h2c"), Ok(TargetPort::Name("h2c".into())));
        assert_eq!(
            target(&"a".repeat(15)),
            Ok(TargetPort::Name("a".repeat(15)))
        );
        for bad in [
            "0",
            "65536",
            "",
            "1-2",
            "-",
            "Web",
            "HTTP",
            "a_b",
            "a.b",
            &"a".repeat(16),
        ] {
            assert!(target(bad).is_err(), "{bad:?} was taken as a port");
        }
    }

    #[test]
    fn service_names_need_a_name_a_namespace_and_svc() {
        for (host, namespace) in [
            ("web.media.svc", Some("media")),
            ("web.media.svc.cluster.local", Some("media")),
            ("web.media.svc.example.org", Some("media")),
            ("web.media.example.com", None),
            ("web.media", None),
            ("web", None),
            (".media.svc", None),
            ("web..svc", None),
            ("..svc", None),
        ] {
            assert_eq!(service_namespace(host), namespace, "{host}");
        }
        assert!(same_service("web.media.svc", "web.media.svc.cluster.local"));
        assert!(!same_service("web.media.svc", "web.other.svc"));
        assert!(!same_service("web.media.com", "web.media.com"));
    }
}
