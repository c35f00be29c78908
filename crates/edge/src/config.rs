//! The edge's configuration file: typed, validated whole, errors with line
//! numbers.
//!
//! [`EdgeConfig::load`] parses TOML into raw structs (`deny_unknown_fields`, so
//! a typo is an error, not a silently ignored key), then `validate` checks
//! every rule and reports *every* violation with its file, line and key. Only
//! a fully valid file becomes an [`EdgeConfig`]; start-up and reload share this
//! one path.

use crate::auth::SiteSecret;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `resource[1].listen`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

/// Every problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    edge: Spanned<RawEdge>,
    #[serde(default)]
    tls: Option<Spanned<toml::Table>>,
    #[serde(default)]
    site: Vec<Spanned<RawSite>>,
    #[serde(default)]
    resource: Vec<Spanned<RawResource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_tunnel_listen")]
    tunnel_listen: Spanned<String>,
    http_listen: Option<Spanned<String>>,
    https_listen: Option<Spanned<String>>,
    #[serde(default = "default_admin_listen")]
    admin_listen: Spanned<String>,
    tunnel_cert: Option<PathBuf>,
    tunnel_key: Option<PathBuf>,
    database: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./warren-data")
}
fn default_tunnel_listen() -> Spanned<String> {
    Spanned::new(0..0, "0.0.0.0:7443".into())
}
fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:7080".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: String,
    secret: Option<String>,
    secret_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    host: Option<String>,
    path: Option<String>,
    listen: Option<Spanned<String>>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    health: Option<Spanned<toml::Value>>,
    #[serde(default)]
    proxy_protocol: Option<Spanned<toml::Value>>,
    auth: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    site: String,
    address: String,
}

/// A site's credentials.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The site id agents present.
    pub id: String,
    /// Its secret, plain or hashed.
    pub secret: SiteSecret,
}

/// Transport protocol of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// Raw TCP on `listen`.
    Tcp,
    /// UDP flows on `listen`.
    Udp,
}

/// Where a resource's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Site whose agents carry the traffic.
    pub site: String,
    /// `host:port` the agent connects to.
    pub address: String,
}

/// One published resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Unique name.
    pub name: String,
    /// TCP or UDP.
    pub kind: ResourceKind,
    /// The edge port.
    pub listen: SocketAddr,
    /// Targets, at least one.
    pub targets: Vec<Target>,
    /// UDP: a flow with no datagram either way for this long is closed.
    pub idle_timeout: Duration,
}

/// A valid edge configuration.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// The file it came from (for messages).
    pub source: String,
    /// State directory.
    pub data_dir: PathBuf,
    /// Where agents dial in (TCP and UDP).
    pub tunnel_listen: SocketAddr,
    /// REST API and status.
    pub admin_listen: SocketAddr,
    /// Tunnel certificate and key; generated in `data_dir` when absent.
    pub tunnel_cert: Option<(PathBuf, PathBuf)>,
    /// How long a shutdown waits for open streams.
    pub drain_timeout: Duration,
    /// Sites by id.
    pub sites: BTreeMap<String, SiteConfig>,
    /// Resources, in file order.
    pub resources: Vec<Resource>,
}

impl EdgeConfig {
    /// Reads and validates a file. Relative paths are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<EdgeConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.display().to_string(),
                line: None,
                key: "(file)".into(),
                message: e.to_string(),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str, source: &str, base: &Path) -> Result<EdgeConfig, ConfigErrors> {
        let mut v = Validator {
            text,
            source,
            errors: Vec::new(),
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map(|s| v.line_of(s.start));
                let message = e.message().to_owned();
                return Err(ConfigErrors(vec![ConfigError {
                    file: source.into(),
                    line,
                    key: "(syntax)".into(),
                    message,
                }]));
            }
        };
        let config = v.validate(raw, base);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }
}

struct Validator<'a> {
    text: &'a str,
    source: &'a str,
    errors: Vec<ConfigError>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Validator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn error(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = span
            .filter(|s| !(s.start == 0 && s.end == 0))
            .map(|s| self.line_of(s.start));
        self.errors.push(ConfigError {
            file: self.source.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    fn socket_addr(&mut self, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match value.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    Some(value.span()),
                    key,
                    format!(
                        "`{}` is not an IP:PORT address (e.g. 0.0.0.0:7443)",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    Some(value.span()),
                    key,
                    format!(
                        "`{}` is not a duration like 30s or 5m: {e}",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn validate(&mut self, raw: RawFile, base: &Path) -> EdgeConfig {
        let edge_span = raw.edge.span();
        let edge = raw.edge.into_inner();
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let tunnel_listen = self.socket_addr(&edge.tunnel_listen, "edge.tunnel_listen");
        let admin_listen = self.socket_addr(&edge.admin_listen, "edge.admin_listen");
        for (key, value) in [
            ("edge.http_listen", &edge.http_listen),
            ("edge.https_listen", &edge.https_listen),
        ] {
            if let Some(v) = value {
                // Parsed now so a typo is caught; the listeners arrive with the HTTPS edge.
                self.socket_addr(v, key);
            }
        }
        if let Some(db) = &edge.database {
            self.error(
                Some(db.span()),
                "edge.database",
                "an external database is not supported yet by this build; remove the key",
            );
        }
        let drain_timeout = match &edge.drain_timeout {
            Some(d) => self.duration(d, "edge.drain_timeout"),
            None => Some(Duration::from_secs(30)),
        };
        let tunnel_cert = match (edge.tunnel_cert, edge.tunnel_key) {
            (Some(c), Some(k)) => Some((resolve(c), resolve(k))),
            (None, None) => None,
            _ => {
                self.error(
                    Some(edge_span.clone()),
                    "edge.tunnel_cert",
                    "tunnel_cert and tunnel_key go together",
                );
                None
            }
        };
        if let Some(tls) = &raw.tls {
            if !tls.get_ref().is_empty() {
                self.error(
                    Some(tls.span()),
                    "tls",
                    "TLS termination (static certificates, ACME) is not supported yet by this build; \
                     remove the [tls] section",
                );
            }
        }

        let mut sites = BTreeMap::new();
        for (i, site) in raw.site.into_iter().enumerate() {
            let span = site.span();
            let site = site.into_inner();
            let key = format!("site[{i}]");
            if !valid_id(&site.id) {
                self.error(
                    Some(span.clone()),
                    format!("{key}.id"),
                    format!(
                        "`{}` is not a valid id (1-64 of A-Z a-z 0-9 - _ .)",
                        site.id
                    ),
                );
            }
            let secret = match (site.secret, site.secret_hash) {
                (Some(s), None) if s.is_empty() => {
                    self.error(Some(span.clone()), format!("{key}.secret"), "empty secret");
                    None
                }
                (Some(s), None) => Some(SiteSecret::plain(s)),
                (None, Some(h)) => match SiteSecret::from_hash(&h) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.error(Some(span.clone()), format!("{key}.secret_hash"), e);
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    self.error(
                        Some(span.clone()),
                        key.clone(),
                        "give either secret or secret_hash, not both",
                    );
                    None
                }
                (None, None) => {
                    self.error(
                        Some(span.clone()),
                        key.clone(),
                        "missing secret (or secret_hash)",
                    );
                    None
                }
            };
            if sites.contains_key(&site.id) {
                self.error(
                    Some(span),
                    format!("{key}.id"),
                    format!("duplicate site id `{}`", site.id),
                );
                continue;
            }
            if let Some(secret) = secret {
                sites.insert(
                    site.id.clone(),
                    SiteConfig {
                        id: site.id,
                        secret,
                    },
                );
            }
        }

        let mut resources = Vec::new();
        let mut names = HashSet::new();
        let mut listens = HashSet::new();
        for (i, res) in raw.resource.into_iter().enumerate() {
            let span = Some(res.span());
            let res = res.into_inner();
            let key = format!("resource[{i}]");
            if !valid_id(&res.name) {
                self.error(
                    span.clone(),
                    format!("{key}.name"),
                    format!(
                        "`{}` is not a valid name (1-64 of A-Z a-z 0-9 - _ .)",
                        res.name
                    ),
                );
            } else if !names.insert(res.name.clone()) {
                self.error(
                    span.clone(),
                    format!("{key}.name"),
                    format!("duplicate resource name `{}`", res.name),
                );
            }
            let kind = match res.kind.get_ref().as_str() {
                "tcp" => Some(ResourceKind::Tcp),
                "udp" => Some(ResourceKind::Udp),
                t @ ("http" | "tls" | "ssh") => {
                    self.error(
                        Some(res.kind.span()),
                        format!("{key}.type"),
                        format!("type `{t}` is not supported yet by this build (tcp and udp are)"),
                    );
                    None
                }
                other => {
                    self.error(
                        Some(res.kind.span()),
                        format!("{key}.type"),
                        format!("unknown type `{other}`; use http, tls, tcp, udp or ssh"),
                    );
                    None
                }
            };
            for (field, present) in [("host", res.host.is_some()), ("path", res.path.is_some())] {
                if present && kind.is_some() {
                    self.error(
                        span.clone(),
                        format!("{key}.{field}"),
                        format!("`{field}` applies to http/tls resources, not tcp/udp"),
                    );
                }
            }
            if let Some(h) = &res.health {
                self.error(
                    Some(h.span()),
                    format!("{key}.health"),
                    "health checks are not supported yet by this build",
                );
            }
            if let Some(p) = &res.proxy_protocol {
                if p.get_ref().as_bool() != Some(false) {
                    self.error(
                        Some(p.span()),
                        format!("{key}.proxy_protocol"),
                        "PROXY protocol is not supported yet by this build",
                    );
                }
            }
            if let Some(a) = &res.auth {
                if a.get_ref() != "public" {
                    self.error(
                        Some(a.span()),
                        format!("{key}.auth"),
                        format!(
                            "auth `{}` is not supported yet by this build (only `public`)",
                            a.get_ref()
                        ),
                    );
                }
            }
            let listen = match &res.listen {
                Some(l) => self.socket_addr(l, &format!("{key}.listen")),
                None => {
                    if kind.is_some() {
                        self.error(
                            span.clone(),
                            format!("{key}.listen"),
                            "tcp and udp resources need `listen` (the edge port)",
                        );
                    }
                    None
                }
            };
            if let (Some(kind), Some(listen)) = (kind, listen) {
                if listen.port() != 0 && !listens.insert((kind, listen)) {
                    self.error(
                        res.listen.as_ref().map(|l| l.span()),
                        format!("{key}.listen"),
                        format!(
                            "{listen} is already used by another {} resource",
                            if kind == ResourceKind::Tcp {
                                "tcp"
                            } else {
                                "udp"
                            }
                        ),
                    );
                }
            }
            if res.targets.is_empty() {
                self.error(
                    span.clone(),
                    format!("{key}.targets"),
                    "at least one target is needed",
                );
            }
            for (j, t) in res.targets.iter().enumerate() {
                if !sites.contains_key(&t.site) {
                    self.error(
                        span.clone(),
                        format!("{key}.targets[{j}].site"),
                        format!("no [[site]] with id `{}`", t.site),
                    );
                }
                if let Err(msg) = check_target_address(&t.address) {
                    self.error(span.clone(), format!("{key}.targets[{j}].address"), msg);
                }
            }
            let idle_timeout = match &res.idle_timeout {
                Some(d) => self.duration(d, &format!("{key}.idle_timeout")),
                None => Some(Duration::from_secs(60)),
            };
            if let (Some(kind), Some(listen), Some(idle_timeout)) = (kind, listen, idle_timeout) {
                resources.push(Resource {
                    name: res.name,
                    kind,
                    listen,
                    targets: res
                        .targets
                        .into_iter()
                        .map(|t| Target {
                            site: t.site,
                            address: t.address,
                        })
                        .collect(),
                    idle_timeout,
                });
            }
        }

        EdgeConfig {
            source: self.source.to_owned(),
            data_dir: resolve(edge.data_dir),
            tunnel_listen: tunnel_listen.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            admin_listen: admin_listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            tunnel_cert,
            drain_timeout: drain_timeout.unwrap_or_default(),
            sites,
            resources,
        }
    }
}

/// Checks a target `host:port` (the agent's allowlist has the final word).
fn check_target_address(address: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or("unclosed `[`")?;
        (h, tail.strip_prefix(':').ok_or("missing :PORT")?)
    } else {
        address
            .rsplit_once(':')
            .ok_or_else(|| format!("`{address}` is not HOST:PORT"))?
    };
    if host.is_empty() {
        return Err(format!("`{address}` has an empty host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("`{address}` has no valid port (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
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
    fn duplicate_listen_and_unsupported_features_are_named() {
        let text = format!(
            "{GOOD}\n[[resource]]\nname = \"dup\"\ntype = \"tcp\"\nlisten = \"127.0.0.1:2222\"\n\
             targets = [{{ site = \"home\", address = \"h:1\" }}]\nproxy_protocol = true\n"
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

    #[test]
    fn secrets_never_reach_debug_output() {
        let c = parse(GOOD).unwrap();
        assert!(!format!("{c:?}").contains("S3CRET"));
    }
}
