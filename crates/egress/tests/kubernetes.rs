//! The Kubernetes renderers: snapshots (insta) for a rich allowlist, the
//! NetworkPolicy checked strictly against the API's schema (k8s-openapi
//! round trip), and the Service-port gotcha refused with its fix.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use warren_egress::render::{
    egress_rules, helm_values, network_policy, network_policy_object, KubeError, KubeOptions,
    ServicePeer, Subject, TargetPort, Wall,
};
use warren_egress::Allowlist;
use warren_testkit::kube::check_manifest;

const RICH: &[&str] = &[
    "jellyfin.media.svc.cluster.local:8096/tcp",
    "10.0.1.7/24:22/tcp",
    "10.0.2.0/24:5000-5100/tcp",
    "192.168.1.53:53/udp",
    "nas.lan:445/tcp",
    "[fd00::/8]:443/tcp",
    "10.0.1.0/24:22/tcp", // the same as the second, once masked
];

fn resolved() -> BTreeMap<String, Vec<IpAddr>> {
    BTreeMap::from([(
        "nas.lan".to_owned(),
        vec!["10.0.1.20".parse().unwrap(), "fd00::20".parse().unwrap()],
    )])
}

fn services() -> Vec<ServicePeer> {
    vec![ServicePeer::parse("jellyfin.media.svc.cluster.local:8096=app=jellyfin:8080").unwrap()]
}

fn options(services: &[ServicePeer]) -> KubeOptions<'_> {
    KubeOptions {
        name: "warren-site-egress",
        namespace: Some("warren"),
        pod_labels: BTreeMap::from([("app.kubernetes.io/name".into(), "warren-site".into())]),
        services,
    }
}

fn with_wall<T>(entries: &[&str], resolvers: &[IpAddr], f: impl FnOnce(&Wall<'_>) -> T) -> T {
    let allow = Allowlist::parse(entries.iter().copied()).unwrap();
    let resolved = resolved();
    let edge: Vec<SocketAddr> = vec!["203.0.113.10:7443".parse().unwrap()];
    f(&Wall {
        allow: &allow,
        resolved: &resolved,
        resolvers,
        edge: &edge,
        subject: Subject::Uid(0),
    })
}

#[test]
fn network_policy_for_a_rich_list() {
    let s = services();
    insta::assert_snapshot!(with_wall(RICH, &[], |w| network_policy(w, &options(&s)).unwrap()));
}

#[test]
fn helm_values_for_the_same_list() {
    let s = services();
    insta::assert_snapshot!(with_wall(RICH, &[], |w| helm_values(w, &options(&s)).unwrap()));
}

#[test]
fn the_policy_is_a_valid_network_policy() {
    let s = services();
    for resolvers in [vec![], vec!["169.254.20.10".parse().unwrap()]] {
        let policy = with_wall(RICH, &resolvers, |w| {
            network_policy_object(w, &options(&s)).unwrap()
        });
        check_manifest(&policy).unwrap();
        // The written YAML is the same document.
        let text = with_wall(RICH, &resolvers, |w| {
            network_policy(w, &options(&s)).unwrap()
        });
        let parsed: Value = serde_norway::from_str(text.split("---\n").nth(1).unwrap()).unwrap();
        assert_eq!(parsed, policy);
    }
}

#[test]
fn a_service_is_reached_by_its_pods_and_container_port() {
    let s = services();
    let rules = with_wall(RICH, &[], |w| egress_rules(w, &options(&s)).unwrap());
    let service_rule = rules
        .iter()
        .find(|r| r["to"][0]["podSelector"]["matchLabels"]["app"] == "jellyfin")
        .expect("a rule for the Service's pods");
    assert_eq!(
        service_rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "media"
    );
    assert_eq!(
        service_rule["ports"][0]["port"], 8080,
        "targetPort, not the Service port 8096"
    );
    assert!(
        !rules.iter().any(|r| r["ports"][0]["port"] == 8096),
        "the Service port never appears: {rules:?}"
    );
    // Named container ports pass through as names.
    let named = [ServicePeer::parse("jellyfin.media.svc:8096=app=jellyfin,tier=web:http").unwrap()];
    assert_eq!(named[0].target_port, TargetPort::Name("http".into()));
    let rules = with_wall(&["jellyfin.media.svc:8096/tcp"], &[], |w| {
        egress_rules(w, &options(&named)).unwrap()
    });
    assert_eq!(rules[2]["ports"][0]["port"], "http");
    assert_eq!(
        rules[2]["to"][0]["podSelector"]["matchLabels"]["tier"],
        "web"
    );
}

#[test]
fn dns_goes_to_kube_dns_or_to_the_given_resolvers() {
    let s = services();
    let rules = with_wall(RICH, &[], |w| egress_rules(w, &options(&s)).unwrap());
    assert_eq!(
        rules[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    let local: Vec<IpAddr> = vec!["169.254.20.10".parse().unwrap()];
    let rules = with_wall(RICH, &local, |w| egress_rules(w, &options(&s)).unwrap());
    assert_eq!(rules[0]["to"][0]["ipBlock"]["cidr"], "169.254.20.10/32");
    assert_eq!(
        rules[1]["to"][0]["ipBlock"]["cidr"], "203.0.113.10/32",
        "then the edge"
    );
}

#[test]
fn a_service_without_its_pods_is_refused_with_the_fix() {
    let err = with_wall(RICH, &[], |w| egress_rules(w, &options(&[])).unwrap_err());
    assert!(matches!(err, KubeError::ServiceWithoutPods(..)));
    let text = err.to_string();
    assert!(
        text.contains("jellyfin.media.svc.cluster.local:8096/tcp"),
        "{text}"
    );
    assert!(text.contains("targetPort"), "{text}");
    assert!(
        text.contains("--service 'jellyfin.media.svc.cluster.local:8096="),
        "{text}"
    );
    // A mapping that matches no entry is a mistake too.
    let stray = [ServicePeer::parse("other.media.svc:80=app=x:8080").unwrap()];
    let err = with_wall(&["10.0.0.1:80/tcp"], &[], |w| {
        egress_rules(w, &options(&stray)).unwrap_err()
    });
    assert_eq!(err, KubeError::UnusedService("other.media.svc".into(), 80));
}

#[test]
fn bad_service_mappings_name_what_is_wrong() {
    for (text, why) in [
        ("jellyfin:8096=app=j:8080", "not a Service name"),
        ("jellyfin.media.svc:0=app=j:8080", "not a port"),
        ("jellyfin.media.svc:8096=app=j", "no :TARGET_PORT"),
        (
            "jellyfin.media.svc:8096=app=j:HTTP!",
            "neither a number nor a port name",
        ),
        ("jellyfin.media.svc:8096=app=j:70000", "not a port"),
        ("jellyfin.media.svc:8096=:8080", "LABEL=VALUE"),
        ("jellyfin.media.svc:8096", "no `=`"),
    ] {
        let err = ServicePeer::parse(text).unwrap_err();
        assert!(err.contains(text) && err.contains(why), "{text}: {err}");
    }
}

#[test]
fn a_service_may_be_named_with_or_without_the_cluster_domain() {
    let short = [ServicePeer::parse("jellyfin.media.svc:8096=app=jellyfin:8080").unwrap()];
    let long = services();
    let with_short = with_wall(RICH, &[], |w| egress_rules(w, &options(&short)).unwrap());
    let with_long = with_wall(RICH, &[], |w| egress_rules(w, &options(&long)).unwrap());
    assert_eq!(with_short, with_long);
    // Another namespace is another Service.
    let elsewhere = [ServicePeer::parse("jellyfin.other.svc:8096=app=jellyfin:8080").unwrap()];
    let err = with_wall(RICH, &[], |w| {
        egress_rules(w, &options(&elsewhere)).unwrap_err()
    });
    assert!(matches!(err, KubeError::ServiceWithoutPods(..)), "{err}");
}
