//! The edge's configuration file: typed, validated whole, errors with line
//! numbers.
//!
//! [`EdgeConfig::load`] parses TOML into raw structs (`deny_unknown_fields`, so
//! a typo is an error, not a silently ignored key), then `validate` checks
//! every rule and reports *every* violation with its file, line and key. Only
//! a fully valid file becomes an [`EdgeConfig`]; start-up and reload share this
//! one path.

mod api;
mod raw;
mod rules;
pub(crate) mod smtp;
#[cfg(test)]
mod tests;
mod validate;

use crate::tunnel::credentials::SiteSecret;
pub use api::{parse_api_resource, ApiContext, ApiResourceError};
pub use raw::{RawHealth as HealthSpec, RawResource as ResourceSpec, RawTarget as TargetSpec};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use validate::Validator;
pub use warren_ingress::proxy_header::Version as ProxyVersion;
pub use warren_proto::health::Probe;
use warren_proto::Secret;

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

/// A site's credentials.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The site id agents present.
    pub id: String,
    /// Its secret, plain or hashed.
    pub secret: SiteSecret,
    /// `tag:NAME`s the policy may name it (and its resources) by; with a
    /// policy loaded, each must be one the policy declares.
    pub tags: Vec<String>,
}

/// What a resource publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// Raw TCP on `listen`.
    Tcp,
    /// UDP flows on `listen`.
    Udp,
    /// HTTPS terminated at the edge on `https_listen`, routed by host and path.
    Http,
    /// TLS passed through untouched on `https_listen`, routed by SNI.
    Tls,
    /// An SSH host, by alias (its name): reached with `warren ssh` through
    /// the sign-in host, with a certificate the policy grants.
    Ssh,
    /// An address or network on a site that only devices reach (through
    /// the WireGuard endpoint or `warren connect`), as the policy allows.
    Private,
}

impl ResourceKind {
    /// The `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Tcp => "tcp",
            ResourceKind::Udp => "udp",
            ResourceKind::Http => "http",
            ResourceKind::Tls => "tls",
            ResourceKind::Ssh => "ssh",
            ResourceKind::Private => "private",
        }
    }
}

/// Where a resource's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Site whose agents carry the traffic.
    pub site: String,
    /// `host:port` the agent connects to.
    pub address: String,
}

/// How a target is chosen for each new connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// The healthy target with the fewest open streams (ties at random).
    #[default]
    LeastActive,
    /// Each healthy target in turn.
    RoundRobin,
    /// The same target for the same visitor: a cookie for `http`, the
    /// client IP for the others; least-active for a visitor's first visit.
    Sticky,
}

/// A health check as configured (the agent runs it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// What to probe.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Successes in a row to turn healthy.
    pub healthy_threshold: u32,
    /// Failures in a row to turn unhealthy.
    pub unhealthy_threshold: u32,
}

/// One published resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Unique name.
    pub name: String,
    /// What it publishes.
    pub kind: ResourceKind,
    /// The edge port (tcp and udp).
    pub listen: Option<SocketAddr>,
    /// Host / SNI name, lower-case (http and tls); may start with `*.`.
    pub host: Option<String>,
    /// Path prefix (http).
    pub path: Option<String>,
    /// Targets, at least one.
    pub targets: Vec<Target>,
    /// Per-target health check.
    pub health: Option<HealthCheck>,
    /// PROXY header sent to the target first (tcp and tls).
    pub proxy_protocol: Option<ProxyVersion>,
    /// Target choice.
    pub balance: Balance,
    /// With no healthy target: refuse (true) or try them all anyway (false).
    pub fail_closed: bool,
    /// UDP: a flow with no datagram either way for this long is closed.
    pub idle_timeout: Duration,
    /// http: pass paths with an escaped slash (`%2F`) on (true) or refuse
    /// them with a 400 (false, the default).
    pub keep_encoded_slashes: bool,
    /// ssh: the certificates' `source-address` (comma-separated networks).
    pub source_address: Option<String>,
    /// Who may reach it once a policy is loaded.
    pub auth: Auth,
    /// A signed-in user's session is a way in (`login` or `sso` in `auth`;
    /// the default). Without it, only the resource's own doors are.
    pub login: bool,
    /// http: HTTP Basic (a user's email and password) is accepted too.
    pub basic: bool,
    /// http: the resource's own doors (`password`, `pin`, `link`).
    pub doors: Doors,
    /// Checked before sign-in and the policy, in order.
    pub rules: Vec<Rule>,
    /// private: where it is and what of it devices may reach.
    pub private: Option<Private>,
}

/// A private resource: an address or network on a site, reached by devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Private {
    /// The site whose agents connect to it.
    pub site: String,
    /// The address or network, as devices address it.
    pub net: warren_policy::Net,
    /// The ports devices may reach; never empty.
    pub ports: Vec<PortSpec>,
    /// A name the devices' resolver answers (lower case), when `net` is
    /// one address.
    pub alias: Option<String>,
}

/// A range of ports over one protocol (or both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
    /// `Tcp`, `Udp` or `Any`.
    pub proto: warren_policy::Proto,
}

impl PortSpec {
    /// Whether `port` over `proto` is in the spec.
    pub fn covers(&self, port: u16, proto: warren_policy::Proto) -> bool {
        self.lo <= port && port <= self.hi && self.proto.covers(proto)
    }
}

impl Private {
    /// Whether devices may reach `port` over `proto` of it.
    pub fn allows(&self, port: u16, proto: warren_policy::Proto) -> bool {
        self.ports.iter().any(|p| p.covers(port, proto))
    }
}

/// `[devices]`: the WireGuard endpoint people's devices dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicesSettings {
    /// The UDP address the endpoint listens on.
    pub listen: SocketAddr,
    /// `host:port` devices dial (written into their configs).
    pub endpoint: String,
    /// The devices' range (IPv4); its first host address is Warren's own.
    pub network: warren_policy::Net,
    /// Upstream resolvers for names that are not private; empty: the
    /// system's.
    pub dns_upstream: Vec<SocketAddr>,
}

impl DevicesSettings {
    /// Warren's own address in the devices' range (the resolver's).
    pub fn own_address(&self) -> std::net::Ipv4Addr {
        match self.network.addr {
            std::net::IpAddr::V4(a) => std::net::Ipv4Addr::from(u32::from(a) + 1),
            std::net::IpAddr::V6(_) => unreachable!("validated as IPv4"),
        }
    }
}

/// A rule checked before sign-in: when every condition it gives holds, its
/// action decides (the first such rule, in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What happens on a match.
    pub action: RuleAction,
    /// Client networks (any, when empty).
    pub cidrs: Vec<warren_policy::Net>,
    /// A prefix of the normalised path (http).
    pub path: Option<String>,
    /// Methods, upper case (http; any, when empty).
    pub methods: Vec<String>,
    /// A header that must be present, lower case (http).
    pub header: Option<String>,
}

/// A rule's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Through without sign-in or policy (as a public resource).
    Bypass,
    /// Refused (403; a connection closed).
    Deny,
    /// On to sign-in and the policy (and no later rule).
    Continue,
}

/// A resource's own ways in, besides sign-in: what its `auth` list names.
/// The password, PIN and links themselves are set through the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Doors {
    /// Its password, typed on its own page.
    pub password: bool,
    /// Its PIN, typed on its own page.
    pub pin: bool,
    /// Its share links (`?warren_link=TOKEN`, or a `Warren-Link` header).
    pub link: bool,
}

impl Doors {
    /// Whether a password or a PIN page is offered.
    pub fn page(&self) -> bool {
        self.password || self.pin
    }
}

/// A resource's `auth` key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// With a policy loaded, only as its grants allow (the default).
    #[default]
    Login,
    /// Anyone, policy or not.
    Public,
}

/// The policy the edge decides with: where it came from, its text and what
/// it compiled to.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    /// The config file's `[policy] file`, or the store.
    pub source: PolicySource,
    /// Its version in the store (0 until it is recorded there).
    pub version: i64,
    /// Its text, as loaded (served by `GET /api/v1/policy`).
    pub text: String,
    /// Its compiled form.
    pub policy: std::sync::Arc<warren_policy::Policy>,
}

/// The `[auth]` table: where people sign in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// The host the edge serves its sign-in pages on (`auth.example.com`),
    /// on `https_listen`; a certificate must cover it.
    pub host: String,
    /// How long a session lasts after sign-in.
    pub session_lifetime: Duration,
    /// A session unused this long ends (on each edge; `None`: only the
    /// lifetime ends it).
    pub idle_timeout: Option<Duration>,
    /// Every user must pass a second factor (TOTP), enrolling at their
    /// next sign-in; without it, only those who enrolled do.
    pub require_2fa: bool,
    /// Single sign-on providers, in the order the sign-in page offers them.
    pub oidc: Vec<OidcProvider>,
}

/// An OpenID Connect provider (`[[auth.oidc]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcProvider {
    /// In URLs (`/login/sso/NAME`): 1-32 of a-z 0-9 -.
    pub name: String,
    /// On the sign-in page's button.
    pub display_name: String,
    /// The issuer URL (https); its discovery document is read from
    /// `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client registered with the provider.
    pub client_id: String,
    /// Its secret (`client_secret` or `client_secret_file`).
    pub client_secret: warren_proto::Secret,
    /// Scopes asked for (`openid` always among them).
    pub scopes: Vec<String>,
    /// Every value of this claim becomes a policy group of that name.
    pub groups_claim: Option<String>,
    /// Claim values that put a user in a policy group.
    pub group_rules: Vec<GroupRule>,
    /// Only emails in these domains (exactly; lower case) may sign in;
    /// any, when empty.
    pub allowed_domains: Vec<String>,
    /// A verified email with no user yet becomes one (just in time);
    /// otherwise only existing users may sign in this way.
    pub create_users: bool,
    /// Roots for the provider's certificate (the system's otherwise).
    pub ca: Option<PathBuf>,
}

/// `{ claim = "groups", value = "ops", group = "ops" }`: a user whose
/// `claim` is (or lists) `value` is in `group:ops`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRule {
    /// The claim's name.
    pub claim: String,
    /// The value it must be or contain.
    pub value: String,
    /// The policy group, with its `group:` prefix.
    pub group: String,
}

/// Where the live policy comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// The config file's `[policy] file`; the API cannot change it.
    File(PathBuf),
    /// Saved through the API (or kept from a file no longer named).
    Store,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::File(path) => write!(f, "{}", path.display()),
            PolicySource::Store => f.write_str("the store"),
        }
    }
}

/// Static certificate files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Notifications (`[notify]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySettings {
    /// JSON POSTs, signed with HMAC-SHA256 when a secret is set.
    pub webhook: Option<WebhookSettings>,
    /// Plain-text mail through an SMTP relay.
    pub email: Option<EmailSettings>,
    /// How long a site must stay without agents before `site_offline`.
    pub debounce: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            webhook: None,
            email: None,
            debounce: Duration::from_secs(30),
        }
    }
}

/// An SMTP relay and the envelope (`[notify.email]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    /// `smtps://[user:pass@]host[:465]`, `smtp://...` (STARTTLS, required)
    /// or `smtp://host?tls=none` (loopback relays only). A secret: it may
    /// hold the relay's password.
    pub smtp: Secret,
    /// Sender address.
    pub from: String,
    /// Recipients, at least one.
    pub to: Vec<String>,
    /// A CA to trust besides the system roots.
    pub ca: Option<PathBuf>,
}

/// A webhook receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HMAC key for `X-Warren-Signature`.
    pub secret: Option<Secret>,
}

/// Automatic certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// Account contact.
    pub email: Option<String>,
    /// Directory URL.
    pub directory: String,
    /// Extra CA to trust for the directory (a private ACME server).
    pub ca: Option<PathBuf>,
    /// Renew when a certificate has less than this left.
    pub renew_before: Duration,
}

/// The `[tls]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Static certificates; each covers the names in it.
    pub certs: Vec<CertFiles>,
    /// ACME for hosts no static certificate covers.
    pub acme: Option<AcmeSettings>,
    /// Serve this host's certificate to handshakes with an unknown or no
    /// SNI, instead of closing them.
    pub default_host: Option<String>,
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// One JSON line per request on stderr.
    Stderr,
    /// Appended to this file.
    File(PathBuf),
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
    /// Plain HTTP: ACME HTTP-01 and redirects to HTTPS.
    pub http_listen: Option<SocketAddr>,
    /// TLS: terminated http resources and passed-through tls resources.
    pub https_listen: Option<SocketAddr>,
    /// REST API and status.
    pub admin_listen: SocketAddr,
    /// Tunnel certificate and key; generated in `data_dir` when absent.
    pub tunnel_cert: Option<(PathBuf, PathBuf)>,
    /// How long a shutdown waits for open streams.
    pub drain_timeout: Duration,
    /// PostgreSQL URL (a secret: it may hold a password); `None` keeps the
    /// state in SQLite in `data_dir`.
    pub database: Option<Secret>,
    /// Access log destination; none when absent.
    pub access_log: Option<AccessLog>,
    /// Certificates for terminated resources.
    pub tls: TlsSettings,
    /// Where to tell operators about sites, agents and targets.
    pub notify: NotifySettings,
    /// Sites by id.
    pub sites: BTreeMap<String, SiteConfig>,
    /// Resources, in file order.
    pub resources: Vec<Resource>,
    /// Who may reach what; `None`: every resource is open.
    pub policy: Option<PolicySettings>,
    /// Sign-in for people; `None`: no sign-in (only keys and public
    /// resources pass a policy).
    pub auth: Option<AuthSettings>,
    /// How long access decisions are kept in the store (`[audit]
    /// retention`; 30 days by default).
    pub audit_retention: Duration,
    /// The WireGuard endpoint for devices; `None`: devices are not served.
    pub devices: Option<DevicesSettings>,
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
        let mut v = Validator::new(text, source);
        let raw: raw::RawFile = match toml::from_str(text) {
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
        v.finish(config)
    }

    /// The resources served on `https_listen`.
    pub fn https_resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .filter(|r| matches!(r.kind, ResourceKind::Http | ResourceKind::Tls))
    }
}
