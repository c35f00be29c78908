//! The file as serde reads it: every key, nothing checked yet.

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) edge: Spanned<RawEdge>,
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub(super) notify: Option<Spanned<RawNotify>>,
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
    pub(super) database: Option<Spanned<String>>,
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
pub(super) struct RawSite {
    pub(super) id: String,
    pub(super) secret: Option<String>,
    pub(super) secret_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) host: Option<String>,
    pub(super) path: Option<String>,
    pub(super) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
    pub(super) health: Option<Spanned<RawHealth>>,
    #[serde(default)]
    pub(super) proxy_protocol: Option<Spanned<toml::Value>>,
    pub(super) auth: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) balance: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) fail_closed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) site: String,
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) path: Option<String>,
    pub(super) method: Option<String>,
    pub(super) host: Option<String>,
    pub(super) status: Option<Vec<String>>,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) healthy_threshold: Option<u32>,
    pub(super) unhealthy_threshold: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) webhook: Option<RawWebhook>,
    pub(super) debounce: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) url: String,
    pub(super) secret: Option<String>,
}
