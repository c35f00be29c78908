use super::*;

fn parse(text: &str) -> Result<EdgeConfig, ConfigErrors> {
    EdgeConfig::parse(text, "edge.toml", Path::new("/etc/warren"))
}

const GOOD: &str = r#"
[edge]
tunnel_listen = "127.0.0.1:0"

[[site]]
id = "home"
secret = "S3CRET"

[[resource]]
name = "ssh"
type = "tcp"
listen = "127.0.0.1:2222"
targets = [{ site = "home", address = "127.0.0.1:22" }]

[[resource]]
name = "dns"
type = "udp"
listen = "127.0.0.1:2222"
targets = [{ site = "home", address = "127.0.0.1:53" }]
idle_timeout = "30s"
"#;

#[test]
fn a_good_file_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.sites.len(), 1);
    assert_eq!(c.resources.len(), 2);
    assert_eq!(c.resources[1].idle_timeout, Duration::from_secs(30));
    assert_eq!(c.data_dir, Path::new("/etc/warren/./warren-data"));
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:7080");
}

#[test]
fn every_error_is_reported_with_line_and_key() {
    let bad = r#"
[edge]
tunnel_listen = "nonsense"

[[site]]
id = "home"

[[resource]]
name = "a"
type = "tcp"
listen = "127.0.0.1:80"
targets = [{ site = "nowhere", address = "x:0" }]

[[resource]]
name = "a"
type = "gopher"
targets = []
"#;
    let errs = parse(bad).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("edge.toml:3: edge.tunnel_listen"), "{text:#?}");
    assert!(has("site[0]: missing secret"), "{text:#?}");
    assert!(
        has("resource[0].targets[0].site: no [[site]] with id `nowhere`"),
        "{text:#?}"
    );
    assert!(has("resource[0].targets[0].address"), "{text:#?}");
    assert!(has("duplicate resource name `a`"), "{text:#?}");
    assert!(has("unknown type `gopher`"), "{text:#?}");
    assert!(has("at least one target"), "{text:#?}");
    assert!(errs.iter().all(|e| e.line.is_some()), "{text:#?}");
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let errs = parse("[edge]\ntunnel_listn = \"0.0.0.0:1\"\n")
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(2));
    assert!(
        errs[0].message.contains("unknown field `tunnel_listn`"),
        "{}",
        errs[0]
    );
}

#[test]
fn duplicate_listen_and_bad_proxy_protocol_are_named() {
    let text = format!(
        "{GOOD}\n[[resource]]\nname = \"dup\"\ntype = \"tcp\"\nlisten = \"127.0.0.1:2222\"\n\
         targets = [{{ site = \"home\", address = \"h:1\" }}]\nproxy_protocol = \"v3\"\n"
    );
    let errs = parse(&text).unwrap_err().0;
    assert!(
        errs.iter().any(|e| e.message.contains("already used")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.key.ends_with("proxy_protocol")),
        "{errs:?}"
    );
}

const WEB: &str = r#"
[edge]
https_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
access_log = "stderr"

[tls]
certs = [{ cert = "c.pem", key = "k.pem" }]
default_host = "blog.example.com"

[[site]]
id = "home"
secret = "S3CRET"

[[resource]]
name = "blog"
type = "http"
host = "Blog.Example.com"
targets = [{ site = "home", address = "127.0.0.1:8080" }, { site = "home", address = "127.0.0.1:8081" }]
health = { path = "/status", interval = "5s", status = ["200-299", "418"] }
balance = "sticky"

[[resource]]
name = "blog-api"
type = "http"
host = "blog.example.com"
path = "/api"
targets = [{ site = "home", address = "127.0.0.1:9000" }]
fail_closed = true

[[resource]]
name = "vault"
type = "tls"
host = "vault.example.com"
targets = [{ site = "home", address = "127.0.0.1:8200" }]
proxy_protocol = "v1"
health = { interval = "1s" }
"#;

#[test]
fn http_and_tls_resources_parse() {
    let c = parse(WEB).unwrap();
    assert_eq!(c.https_resources().count(), 3);
    let blog = &c.resources[0];
    assert_eq!(blog.host.as_deref(), Some("blog.example.com"));
    assert_eq!(blog.balance, Balance::Sticky);
    let health = blog.health.as_ref().unwrap();
    assert_eq!(
        health.probe,
        Probe::Http {
            path: "/status".into(),
            method: "GET".into(),
            host: None,
            status: vec![(200, 299), (418, 418)]
        }
    );
    assert_eq!(health.interval, Duration::from_secs(5));
    assert!(c.resources[1].fail_closed);
    assert_eq!(c.resources[2].proxy_protocol, Some(ProxyVersion::V1));
    assert_eq!(c.resources[2].health.as_ref().unwrap().probe, Probe::Tcp);
    assert_eq!(c.tls.certs[0].cert, Path::new("/etc/warren/c.pem"));
    assert_eq!(c.access_log, Some(AccessLog::Stderr));
}

#[test]
fn misplaced_keys_and_name_clashes_are_named() {
    let text = format!(
        "{WEB}
[[resource]]
name = \"clash\"
type = \"tls\"
host = \"blog.example.com\"
path = \"/x\"
listen = \"127.0.0.1:1\"
targets = [{{ site = \"home\", address = \"h:1\" }}]

[[resource]]
name = \"twice\"
type = \"http\"
host = \"blog.example.com\"
path = \"/api/\"
targets = [{{ site = \"home\", address = \"h:1\" }}]
health = {{ method = \"POST\", status = [\"999\"], interval = \"1ms\" }}

[[resource]]
name = \"nohost\"
type = \"http\"
host = \"bad host\"
targets = [{{ site = \"home\", address = \"h:1\" }}]
idle_timeout = \"5s\"
"
    );
    let errs = parse(&text).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(
        has("resource[3].path: `path` applies to http resources, not tls"),
        "{text:#?}"
    );
    assert!(
        has("resource[3].listen: `listen` applies to tcp and udp"),
        "{text:#?}"
    );
    assert!(has("routed twice"), "{text:#?}");
    assert!(has("health.method: `POST`"), "{text:#?}");
    assert!(has("health.status: `999`"), "{text:#?}");
    assert!(has("interval must be at least 100ms"), "{text:#?}");
    assert!(has("`bad host` is not a host name"), "{text:#?}");
    assert!(has("resource[5].idle_timeout"), "{text:#?}");
}

#[test]
fn http_without_https_listen_is_an_error() {
    let text = WEB.replace("https_listen = \"127.0.0.1:0\"\n", "");
    let errs = parse(&text).unwrap_err().0;
    assert!(
        errs.iter()
            .any(|e| e.message.contains("https_listen, which is not set")),
        "{errs:?}"
    );
}

#[test]
fn secrets_never_reach_debug_output() {
    let c = parse(GOOD).unwrap();
    assert!(!format!("{c:?}").contains("S3CRET"));
}

#[test]
fn debug_output_shows_no_secret() {
    let text = r#"
[edge]
tunnel_listen = "127.0.0.1:0"
database = "postgres://warren:db-pass-1@db.internal/warren"

[[site]]
id = "home"
secret = "site-secret-2"

[notify]
webhook = { url = "https://hooks.example.com/w", secret = "hook-key-3" }

[notify.email]
smtp = "smtps://mailer:smtp-pass-4@relay.example.com"
from = "warren@example.com"
to = ["ops@example.com"]
"#;
    let c = parse(text).unwrap();
    // Not vacuous: the secrets were read, and reach the code that uses them.
    assert_eq!(
        c.database.as_ref().map(|d| d.expose()),
        Some("postgres://warren:db-pass-1@db.internal/warren")
    );
    let webhook = c.notify.webhook.as_ref().unwrap();
    assert_eq!(webhook.secret.as_ref().unwrap().expose(), "hook-key-3");
    assert!(c
        .notify
        .email
        .as_ref()
        .unwrap()
        .smtp
        .expose()
        .contains("smtp-pass-4"));
    assert!(c.sites["home"].secret.verify(&"site-secret-2".into()));
    let shown = format!("{c:?} {c:#?}");
    for secret in ["db-pass-1", "site-secret-2", "hook-key-3", "smtp-pass-4"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("***"), "{shown}");
}

#[test]
fn a_health_check_cannot_write_a_second_request() {
    for (field, value, says) in [
        ("host", "a.local\\r\\nX-Evil: 1", "is not a host"),
        (
            "path",
            "/ok HTTP/1.1\\r\\nX-Evil: 1",
            "is not a request path",
        ),
        ("method", "POST", "is not one of GET"),
    ] {
        let text = format!(
            "{WEB}\n[[resource]]\nname = \"web\"\ntype = \"http\"\nhost = \"web.example.com\"\ntargets = [{{ site = \"home\", address = \"127.0.0.1:80\" }}]\nhealth = {{ {field} = \"{value}\" }}\n"
        );
        let shown = parse(&text).unwrap_err().to_string();
        assert!(
            shown.contains("health") && shown.contains(says),
            "{field}: {shown}"
        );
    }
}

#[test]
fn site_tags_are_named_and_must_be_declared_by_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[tags]\n\"tag:home\" = [\"ops@corp.com\"]\n",
    )
    .unwrap();
    let text = |tags: &str| {
        format!(
            "[edge]\ntunnel_listen = \"127.0.0.1:0\"\n[policy]\nfile = \"policy.toml\"\n\
             [[site]]\nid = \"home\"\nsecret = \"S3CRET\"\ntags = [{tags}]\n"
        )
    };
    let c = EdgeConfig::parse(&text("\"tag:home\""), "edge.toml", dir.path()).unwrap();
    assert_eq!(c.sites["home"].tags, ["tag:home"]);
    let errors = EdgeConfig::parse(&text("\"tag:lab\", \"home\""), "edge.toml", dir.path())
        .unwrap_err()
        .0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["site[0].tags[0]", "site[0].tags[1]"], "{errors:?}");
    assert!(
        errors[0]
            .message
            .contains("not declared in the policy's [tags]"),
        "{errors:?}"
    );
    assert!(
        errors[1].message.contains("a tag is named tag:NAME"),
        "{errors:?}"
    );
    // Without a policy, tags are only checked for their form.
    let no_policy = "[edge]\ntunnel_listen = \"127.0.0.1:0\"\n[[site]]\nid = \"home\"\nsecret = \"S3CRET\"\ntags = [\"tag:lab\"]\n";
    assert_eq!(parse(no_policy).unwrap().sites["home"].tags, ["tag:lab"]);
}

#[test]
fn rules_are_checked_each_with_its_key() {
    let good = GOOD.replace(
        "listen = \"127.0.0.1:2222\"\ntargets = [{ site = \"home\", address = \"127.0.0.1:22\" }]",
        "listen = \"127.0.0.1:2222\"\ntargets = [{ site = \"home\", address = \"127.0.0.1:22\" }]\nrules = [{ action = \"bypass\", cidr = [\"10.0.0.0/8\"] }, { action = \"deny\", cidr = [\"0.0.0.0/0\"] }]",
    );
    let c = parse(&good).unwrap();
    assert_eq!(c.resources[0].rules.len(), 2);
    assert_eq!(c.resources[0].rules[0].action, RuleAction::Bypass);
    let bad = GOOD.replace(
        "listen = \"127.0.0.1:2222\"\ntargets = [{ site = \"home\", address = \"127.0.0.1:22\" }]",
        "listen = \"127.0.0.1:2222\"\ntargets = [{ site = \"home\", address = \"127.0.0.1:22\" }]\nrules = [{ action = \"allow\", cidr = [\"10.0.0.1/8\"] }, { action = \"bypass\", path = \"/health\" }, { action = \"deny\" }]",
    );
    let errors = parse(&bad).unwrap_err().0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "resource[0].rules[0].action",
            "resource[0].rules[0].cidr[0]",
            "resource[0].rules[1]",
            "resource[0].rules[2]"
        ],
        "{errors:?}"
    );
    assert!(
        errors[2].message.contains("for http resources"),
        "{errors:?}"
    );
    assert!(
        errors[3].message.contains("matches everything"),
        "{errors:?}"
    );
}

#[test]
fn auth_takes_public_login_or_a_list_of_ways_in() {
    let with = |auth: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:2222\"\ntargets = [{ site = \"home\", address = \"127.0.0.1:22\" }]",
            &format!("listen = \"127.0.0.1:2222\"\ntargets = [{{ site = \"home\", address = \"127.0.0.1:22\" }}]\nauth = {auth}"),
        )
    };
    assert_eq!(
        parse(&with("\"public\"")).unwrap().resources[0].auth,
        Auth::Public
    );
    let login = parse(&with("[\"login\"]")).unwrap();
    assert_eq!(
        (login.resources[0].auth, login.resources[0].basic),
        (Auth::Login, false)
    );
    for (bad, says) in [
        ("[\"login\", \"basic\"]", "for http resources"),
        ("[\"public\", \"login\"]", "stands alone"),
        ("\"sesame\"", "not one of public, login, sso, basic"),
    ] {
        let errors = parse(&with(bad)).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].key, "resource[0].auth");
        assert!(errors[0].message.contains(says), "{bad}: {errors:?}");
    }
}

#[test]
fn single_sign_on_providers_are_checked_whole() {
    let good = format!(
        "{WEB}\n[auth]\nhost = \"auth.example.com\"\n\n[[auth.oidc]]\nname = \"corp\"\n\
         issuer = \"https://idp.example.com/realms/corp\"\nclient_id = \"warren\"\n\
         client_secret = \"s3cret\"\ngroups_claim = \"groups\"\n\
         groups = [{{ claim = \"department\", value = \"finance\", group = \"money\" }}]\n\
         allowed_domains = [\"@Corp.com\"]\n"
    );
    let c = parse(&good).unwrap();
    let p = &c.auth.unwrap().oidc[0];
    assert_eq!(p.display_name, "corp");
    assert_eq!(p.scopes, ["openid", "email", "profile"]);
    assert_eq!(p.allowed_domains, ["corp.com"]);
    assert_eq!(p.group_rules[0].group, "group:money");
    assert!(!p.create_users, "just-in-time users are opt-in");
    for (from, to, key, says) in [
        (
            "name = \"corp\"",
            "name = \"Corp SSO\"",
            "auth.oidc[0].name",
            "1-32 of",
        ),
        (
            "https://idp.example.com/realms/corp",
            "http://idp.example.com",
            "auth.oidc[0].issuer",
            "https URL",
        ),
        (
            "client_secret = \"s3cret\"\n",
            "",
            "auth.oidc[0].client_secret",
            "missing client_secret",
        ),
        (
            "\"@Corp.com\"",
            "\"*.corp.com\"",
            "auth.oidc[0].allowed_domains[0]",
            "not a wildcard",
        ),
        (
            "group = \"money\"",
            "group = \"two words\"",
            "auth.oidc[0].groups[0]",
            "needs a claim",
        ),
    ] {
        let bad = good.replace(from, to);
        let errors = parse(&bad).unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.key == key && e.message.contains(says)),
            "{to}: {errors:?}"
        );
    }
    let twice = format!("{good}\n[[auth.oidc]]\nname = \"corp\"\nissuer = \"https://b.example.com\"\nclient_id = \"w\"\nclient_secret = \"s\"\n");
    let errors = parse(&twice).unwrap_err().0;
    assert!(
        errors.iter().any(|e| e.message.contains("two providers")),
        "{errors:?}"
    );
}

#[test]
fn ssh_resources_are_checked_whole() {
    let ok = r#"
[edge]
tunnel_listen = "127.0.0.1:0"
https_listen = "127.0.0.1:0"
[auth]
host = "auth.example.com"
[[site]]
id = "home"
secret = "S3CRET"
[[resource]]
name = "vm-01"
type = "ssh"
targets = [{ site = "home", address = "127.0.0.1:22" }]
source_address = "127.0.0.1/32, 10.0.0.0/8"
"#;
    let c = parse(ok).unwrap();
    assert_eq!(c.resources[0].kind, ResourceKind::Ssh);
    assert_eq!(
        c.resources[0].source_address.as_deref(),
        Some("127.0.0.1/32,10.0.0.0/8")
    );
    let bad = r#"
[edge]
tunnel_listen = "127.0.0.1:0"
[[site]]
id = "home"
secret = "S3CRET"
[[resource]]
name = "vm-01"
type = "ssh"
listen = "127.0.0.1:2222"
auth = "public"
targets = [{ site = "home", address = "127.0.0.1:22" }, { site = "home", address = "127.0.0.2:22" }]
source_address = "10.0.0.5/8"
rules = [{ action = "bypass" }]
[[resource]]
name = "t"
type = "tcp"
listen = "127.0.0.1:2223"
targets = [{ site = "home", address = "127.0.0.1:22" }]
source_address = "10.0.0.0/8"
"#;
    let text: Vec<String> = parse(bad)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    for want in [
        "resource[0].targets: an ssh resource has one target",
        "resource[0].listen: `listen` applies to tcp and udp resources, not ssh",
        "resource[0].source_address: \"10.0.0.5/8\" has host bits set",
        "resource[0].auth: an ssh resource cannot be public",
        "resource[0].rules: rules apply to http, tls, tcp and udp resources",
        "resource[1].source_address: `source_address` applies to ssh resources",
        "auth.host: ssh resource `vm-01` is reached through the sign-in host",
    ] {
        assert!(text.iter().any(|t| t.contains(want)), "{want}\n{text:#?}");
    }
}

#[test]
fn private_resources_and_devices_are_checked_whole() {
    let ok = r#"
[edge]
tunnel_listen = "127.0.0.1:0"
[devices]
listen = "0.0.0.0:51820"
endpoint = "vps.example.com:51820"
[[site]]
id = "home"
secret = "S3CRET"
[[resource]]
name = "grafana"
type = "private"
site = "home"
address = "192.168.1.10"
ports = ["3000/tcp", "8000-8099/tcp", "53/udp", "443"]
alias = "Grafana.Home.Example"
[[resource]]
name = "lab"
type = "private"
site = "home"
address = "10.69.13.0/24"
"#;
    let c = parse(ok).unwrap();
    let d = c.devices.as_ref().unwrap();
    assert_eq!(d.own_address(), std::net::Ipv4Addr::new(100, 96, 0, 1));
    let p = c.resources[0].private.as_ref().unwrap();
    assert_eq!(p.alias.as_deref(), Some("grafana.home.example"));
    use warren_policy::Proto;
    assert!(p.allows(3000, Proto::Tcp) && !p.allows(3000, Proto::Udp));
    assert!(p.allows(8050, Proto::Tcp) && !p.allows(8100, Proto::Tcp));
    assert!(p.allows(53, Proto::Udp) && p.allows(443, Proto::Udp) && p.allows(443, Proto::Tcp));
    let lab = c.resources[1].private.as_ref().unwrap();
    assert!(
        lab.allows(1, Proto::Udp) && lab.allows(65535, Proto::Tcp),
        "every port"
    );

    let bad = r#"
[edge]
tunnel_listen = "127.0.0.1:0"
[[site]]
id = "home"
secret = "S3CRET"
[[resource]]
name = "a"
type = "private"
site = "nowhere"
address = "10.0.0.5/8"
ports = ["0/tcp", "80/icmp", "90-80"]
listen = "127.0.0.1:1"
auth = "public"
targets = [{ site = "home", address = "127.0.0.1:22" }]
[[resource]]
name = "b"
type = "private"
address = "10.1.0.0/16"
alias = "b.home.example"
[[resource]]
name = "c"
type = "private"
site = "home"
address = "fd00::1"
[[resource]]
name = "d"
type = "tcp"
listen = "127.0.0.1:2223"
targets = [{ site = "home", address = "127.0.0.1:22" }]
alias = "d.example"
[[resource]]
name = "e"
type = "private"
site = "home"
address = "10.1.0.0/16"
"#;
    let text: Vec<String> = parse(bad)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect();
    for want in [
        "resource[0].site: no [[site]] with id `nowhere`",
        "resource[0].address: \"10.0.0.5/8\" has host bits set",
        "resource[0].ports[0]: `0/tcp` is not PORT[-PORT][/tcp|udp]",
        "resource[0].ports[1]: `icmp` is not tcp or udp",
        "resource[0].ports[2]: `90-80` is not PORT[-PORT][/tcp|udp]",
        "resource[0].listen: `listen` applies to tcp and udp resources, not private",
        "resource[0].targets: `targets` applies to http, tls, tcp, udp and ssh resources",
        "resource[0].auth: a private resource cannot be public",
        "resource[1].site: private resources need `site`",
        "resource[1].alias: an alias names one address: `address` is a network",
        "resource[2].address: devices reach IPv4 addresses and networks only",
        "resource[3].alias: `alias` applies to private resources, not tcp",
        "devices: private resource `a` is reached by devices: set [devices]",
    ] {
        assert!(text.iter().any(|t| t.contains(want)), "{want}\n{text:#?}");
    }
    // Two resources for one network: the second is refused.
    let twice = ok.replace("address = \"192.168.1.10\"", "address = \"10.69.13.0/24\"");
    let errors = parse(&twice).unwrap_err().0;
    assert!(
        errors
            .iter()
            .any(|e| e.key == "resource[1].address" && e.message.contains("already another")),
        "{errors:?}"
    );
    for (from, to, key) in [
        (
            "endpoint = \"vps.example.com:51820\"",
            "endpoint = \"vps.example.com\"",
            "devices.endpoint",
        ),
        (
            "listen = \"0.0.0.0:51820\"",
            "listen = \"0.0.0.0:51820\"\naddress = \"10.0.0.0/31\"",
            "devices.address",
        ),
        (
            "listen = \"0.0.0.0:51820\"",
            "listen = \"0.0.0.0:51820\"\ndns_upstream = [\"1.1.1.1\"]",
            "devices.dns_upstream[0]",
        ),
    ] {
        let errors = parse(&ok.replace(from, to)).unwrap_err().0;
        assert!(errors.iter().any(|e| e.key == key), "{to}: {errors:?}");
    }
}
