//! Shared setup of the HTTPS tests: an edge with https/http listeners and a
//! static certificate for `app.test`, `*.app.test`, `api.test`, one agent,
//! and curl as the client.
#![allow(dead_code, unreachable_pub)]

pub mod browser;

use crate::common::bin;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use warren_testkit::{self_signed, EdgeProcess, EdgeSpec, Process, ResourceSpec};

pub struct Web {
    pub edge: EdgeProcess,
    pub agent: Process,
    pub ca: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn web_spec(resources: Vec<ResourceSpec>, dir: &std::path::Path) -> EdgeSpec {
    let (cert, key) = self_signed(&["app.test", "*.app.test", "api.test"]);
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let mut spec = EdgeSpec::new();
    spec.edge_extra = "https_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\naccess_log = \"access.log\"\n".into();
    spec.tls = "certs = [{ cert = \"cert.pem\", key = \"key.pem\" }]".into();
    spec.resources = resources;
    spec
}

/// Starts the edge and one agent allowed to reach `allow`.
pub fn start(resources: Vec<ResourceSpec>, allow: &[SocketAddr]) -> Web {
    let dir = tempfile::tempdir().unwrap();
    let spec = web_spec(resources, dir.path());
    let edge = EdgeProcess::start(bin(), dir.path(), &spec);
    let allow: Vec<String> = allow.iter().map(|a| format!("{a}/tcp")).collect();
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let agent = edge.start_agent("agent", "tcp", &allow);
    Web {
        ca: dir.path().join("cert.pem"),
        edge,
        agent,
        dir,
    }
}

pub struct Reply {
    pub status: u16,
    pub body: String,
    pub version: String,
    pub exit: i32,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Web {
    pub fn https(&self) -> SocketAddr {
        self.edge.https.expect("https listener")
    }

    /// `curl` to `https://HOST:PORT{path}` resolved to the edge.
    pub async fn curl(&self, host: &str, path: &str, args: &[&str]) -> Reply {
        let port = self.https().port();
        let url = format!("https://{host}:{port}{path}");
        self.curl_url(host, port, &url, args).await
    }

    pub async fn curl_url(&self, host: &str, port: u16, url: &str, args: &[&str]) -> Reply {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--path-as-is", "--max-time", "60", "--cacert"])
            .arg(&self.ca)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(args)
            .arg(url)
            .output()
            .await
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
        let mut parts = tail.split(' ');
        Reply {
            status: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            version: parts.next().unwrap_or("").to_owned(),
            body: body.to_owned(),
            exit: out.status.code().unwrap_or(-1),
        }
    }

    /// A TLS client config trusting the edge's test certificate.
    pub fn client_tls(&self) -> Arc<rustls::ClientConfig> {
        client_tls_trusting(&std::fs::read_to_string(&self.ca).unwrap(), &[b"http/1.1"])
    }
}

pub fn client_tls_trusting(pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
