//! The file as serde reads it: every key, nothing checked yet.

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;
use warren_proto::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) edge: Spanned<RawEdge>,
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    /// Not `Spanned`: toml cannot span a table only implied by
    /// `[notify.email]`; errors here are named by key alone.
    pub(super) notify: Option<RawNotify>,
    #[serde(default)]
    pub(super) policy: Option<Spanned<RawPolicy>>,
    #[serde(default)]
    pub(super) auth: Option<Spanned<RawAuth>>,
    pub(super) audit: Option<Spanned<RawAudit>>,
    #[serde(default)]
    pub(super) devices: Option<Spanned<RawDevices>>,
    #[serde(default)]
    pub(super) site: Vec<Spanned<RawSite>>,
    #[serde(default)]
    pub(super) resource: Vec<Spanned<RawResource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    #[serde(default = "default_data_dir")]
    pub(super) data_dir: PathBuf,
    #[serde(default = "default_tunnel_listen")]
    pub(super) tunnel_listen: Spanned<String>,
    pub(super) http_listen: Option<Spanned<String>>,
    pub(super) https_listen: Option<Spanned<String>>,
    #[serde(default = "default_admin_listen")]
    pub(super) admin_listen: Spanned<String>,
    pub(super) tunnel_cert: Option<PathBuf>,
    pub(super) tunnel_key: Option<PathBuf>,
    pub(super) database: Option<Spanned<Secret>>,
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) access_log: Option<Spanned<String>>,
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
pub(super) struct RawTls {
    #[serde(default)]
    pub(super) certs: Vec<RawCertPair>,
    pub(super) acme: Option<RawAcme>,
    pub(super) default_host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertPair {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub(super) email: Option<String>,
    pub(super) directory: String,
    pub(super) ca: Option<PathBuf>,
    pub(super) renew_before: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) file: PathBuf,
}

/// `[devices]`: the WireGuard endpoint people's devices dial.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevices {
    /// The UDP `ip:port` the endpoint listens on.
    pub(super) listen: Spanned<String>,
    /// `host:port` devices dial, written into their configs.
    pub(super) endpoint: Spanned<String>,
    /// The devices' address range (`100.96.0.0/16`); its first address is
    /// Warren's own (the resolver), the rest go to devices.
    pub(super) address: Option<Spanned<String>>,
    /// Where names that are not private go (`ip:port`); the system's
    /// resolvers (`/etc/resolv.conf`) when absent.
    pub(super) dns_upstream: Option<Vec<String>>,
}

/// `[audit]`: how long access decisions are kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) retention: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) host: String,
    pub(super) session_lifetime: Option<String>,
    pub(super) idle_timeout: Option<String>,
    #[serde(default)]
    pub(super) require_2fa: bool,
    #[serde(default)]
    pub(super) oidc: Vec<RawOidc>,
}

/// `[[auth.oidc]]`: a single sign-on provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    pub(super) name: String,
    pub(super) display_name: Option<String>,
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) client_secret: Option<Secret>,
    pub(super) client_secret_file: Option<PathBuf>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) groups_claim: Option<String>,
    #[serde(default)]
    pub(super) groups: Vec<RawGroupRule>,
    #[serde(default)]
    pub(super) allowed_domains: Vec<String>,
    #[serde(default)]
    pub(super) create_users: bool,
    pub(super) ca: Option<PathBuf>,
}

/// A claim value that puts a user in a policy group.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroupRule {
    pub(super) claim: String,
    pub(super) value: String,
    pub(super) group: String,
}

/// A rule before sign-in: every condition given must hold.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    /// `bypass`, `deny` or `continue`.
    pub(super) action: String,
    /// Client addresses or networks (`10.0.0.0/8`, `2001:db8::/32`).
    #[serde(default)]
    pub(super) cidr: Vec<String>,
    /// http: a prefix of the normalised path (`/health`).
    pub(super) path: Option<String>,
    /// http: request methods (`GET`, `OPTIONS`...).
    #[serde(default)]
    pub(super) method: Vec<String>,
    /// http: a request header that must be present.
    pub(super) header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) id: String,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    pub(super) secret: Option<Secret>,
    pub(super) secret_hash: Option<String>,
}

/// A `[[resource]]` table; also the body of `POST /api/v1/resources`, so
/// its schema in the OpenAPI document comes from this very struct.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResourceSpec)]
pub struct RawResource {
    /// Unique name (1-64 of A-Z a-z 0-9 - _ .).
    pub(super) name: String,
    /// `http`, `tls`, `tcp` or `udp`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "http")]
    pub(super) kind: Spanned<String>,
    /// http and tls: the Host / SNI name (`*.` in front for a wildcard).
    pub(super) host: Option<String>,
    /// http: a path prefix; the longest prefix wins.
    pub(super) path: Option<String>,
    /// tcp and udp: the edge's `ip:port`.
    #[schema(value_type = Option<String>)]
    pub(super) listen: Option<Spanned<String>>,
    /// Where traffic goes; at least one.
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
    /// A health check run by the agents of each target's site.
    #[schema(value_type = Option<RawHealth>)]
    pub(super) health: Option<Spanned<RawHealth>>,
    /// tcp and tls: `false`, `true` (= `"v2"`), `"v1"` or `"v2"`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub(super) proxy_protocol: Option<Spanned<toml::Value>>,
    /// `public`: anyone may reach it, even with a policy loaded; `login`
    /// (the default): with a policy loaded, only as its grants allow; or a
    /// list of the ways in it accepts: `["login", "basic"]` (HTTP Basic
    /// with a user's email and password, for scripts).
    #[schema(value_type = Option<Object>)]
    pub(super) auth: Option<Spanned<toml::Value>>,
    /// Checked before sign-in, in order; the first that matches decides:
    /// `bypass` (no sign-in, no policy), `deny` (403) or `continue` (on to
    /// sign-in and the policy).
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    /// udp: a flow idle this long is closed (e.g. `60s`).
    #[schema(value_type = Option<String>)]
    pub(super) idle_timeout: Option<Spanned<String>>,
    /// `least_active` (default), `round_robin` or `sticky`.
    #[schema(value_type = Option<String>)]
    pub(super) balance: Option<Spanned<String>>,
    /// With no healthy target: refuse instead of trying them all.
    #[serde(default)]
    pub(super) fail_closed: bool,
    /// http: a path with an escaped slash (`%2F`) is refused (`refuse`, the
    /// default) or passed on as is (`keep`, for origins that need them).
    #[schema(value_type = Option<String>)]
    pub(super) encoded_slashes: Option<Spanned<String>>,
    /// ssh: the networks sshd sees the agent connect from (`127.0.0.1/32`,
    /// comma-separated), written into each certificate as its
    /// `source-address`: it then logs in from nowhere else.
    #[schema(value_type = Option<String>)]
    pub(super) source_address: Option<Spanned<String>>,
    /// private: the site whose agents reach `address`.
    pub(super) site: Option<String>,
    /// private: an address or network on the site (`192.168.1.10`,
    /// `10.69.13.0/24`) that devices reach as it is.
    #[schema(value_type = Option<String>)]
    pub(super) address: Option<Spanned<String>>,
    /// private: the ports devices may reach (`3000/tcp`, `8000-8099/tcp`,
    /// `53/udp`); every port, tcp and udp, when absent.
    #[schema(value_type = Option<Vec<String>>)]
    pub(super) ports: Option<Spanned<Vec<String>>>,
    /// private: a name Warren's resolver answers with `address` for the
    /// devices whose user may reach it (`grafana.home.example`).
    pub(super) alias: Option<String>,
}

/// One target of a resource.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TargetSpec)]
pub struct RawTarget {
    /// The site whose agents reach it.
    pub(super) site: String,
    /// `host:port` as the site resolves it.
    pub(super) address: String,
}

/// A health check.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HealthSpec)]
pub struct RawHealth {
    /// `http` (default when `path` is set) or `tcp`.
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    /// http: the request path.
    pub(super) path: Option<String>,
    /// http: the method (default GET).
    pub(super) method: Option<String>,
    /// http: the Host header.
    pub(super) host: Option<String>,
    /// http: healthy statuses, e.g. `["200-399"]`.
    pub(super) status: Option<Vec<String>>,
    /// Time between probes (e.g. `5s`).
    pub(super) interval: Option<String>,
    /// Time one probe may take.
    pub(super) timeout: Option<String>,
    /// Successes in a row to turn healthy.
    pub(super) healthy_threshold: Option<u32>,
    /// Failures in a row to turn unhealthy.
    pub(super) unhealthy_threshold: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) webhook: Option<RawWebhook>,
    pub(super) email: Option<RawEmail>,
    pub(super) debounce: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub(super) smtp: Secret,
    pub(super) from: String,
    pub(super) to: Vec<String>,
    pub(super) ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) url: String,
    pub(super) secret: Option<Secret>,
}
