//! Certificates for terminated resources: static files and ACME-issued
//! ones, chosen by SNI; plus the short-lived TLS-ALPN-01 challenge
//! certificates and HTTP-01 tokens the ACME issuer publishes.
//!
//! [`CertStore`] is rustls's certificate resolver, so the choice happens
//! inside the handshake with no copy of the configuration per connection.

use crate::config::CertFiles;
use crate::EdgeError;
use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warren_transport::tls;

/// A certificate and the names it covers.
pub(crate) struct LoadedCert {
    pub(crate) key: Arc<CertifiedKey>,
    /// DNS names of the leaf (lower-case; may start with `*.`).
    pub(crate) names: Vec<String>,
    pub(crate) not_after: SystemTime,
}

impl LoadedCert {
    fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| {
            n == host
                || n.strip_prefix("*.").is_some_and(|domain| {
                    host.split_once('.').is_some_and(|(_, rest)| rest == domain)
                })
        })
    }

    /// Builds one from DER parts.
    pub(crate) fn new(
        certs: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<LoadedCert, String> {
        let leaf = certs.first().ok_or("no certificate in the chain")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        let secs = parsed.validity().not_after.timestamp().max(0) as u64;
        let signing = tls::provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| format!("unusable private key: {e}"))?;
        Ok(LoadedCert {
            key: Arc::new(CertifiedKey::new(certs, signing)),
            names,
            not_after: UNIX_EPOCH + Duration::from_secs(secs),
        })
    }
}

/// Every certificate the HTTPS listener can present.
#[derive(Default)]
pub(crate) struct CertStore {
    configured: ArcSwap<Vec<Arc<LoadedCert>>>,
    issued: RwLock<HashMap<String, Arc<LoadedCert>>>,
    default_host: ArcSwap<Option<String>>,
    /// TLS-ALPN-01: host → challenge certificate.
    alpn_challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: token → key authorisation.
    http_tokens: Mutex<HashMap<String, String>>,
}

impl CertStore {
    /// Loads the static certificate files (all of them, or an error naming
    /// the file).
    pub(crate) fn load_files(files: &[CertFiles]) -> Result<Vec<Arc<LoadedCert>>, EdgeError> {
        files
            .iter()
            .map(|f| {
                let certs = tls::load_certs(&f.cert)?;
                let key = tls::load_key(&f.key)?;
                LoadedCert::new(certs, &key)
                    .map(Arc::new)
                    .map_err(|e| EdgeError::Cert {
                        path: f.cert.display().to_string(),
                        message: e,
                    })
            })
            .collect()
    }

    pub(crate) fn set_configured(&self, certs: Vec<Arc<LoadedCert>>, default_host: Option<String>) {
        self.configured.store(Arc::new(certs));
        self.default_host.store(Arc::new(default_host));
    }

    pub(crate) fn install_issued(&self, host: &str, cert: LoadedCert) {
        let mut issued = self.issued.write().unwrap_or_else(|e| e.into_inner());
        issued.insert(host.to_owned(), Arc::new(cert));
    }

    /// The certificate for `host`: a static one that covers it, else an issued one.
    pub(crate) fn lookup(&self, host: &str) -> Option<Arc<LoadedCert>> {
        if let Some(c) = self.configured.load().iter().find(|c| c.covers(host)) {
            return Some(c.clone());
        }
        let issued = self.issued.read().unwrap_or_else(|e| e.into_inner());
        issued.get(host).cloned()
    }

    /// Issued certificates expiring before `deadline`.
    pub(crate) fn issued_expiring_before(&self, deadline: SystemTime) -> Vec<String> {
        let issued = self.issued.read().unwrap_or_else(|e| e.into_inner());
        issued
            .iter()
            .filter(|(_, c)| c.not_after < deadline)
            .map(|(h, _)| h.clone())
            .collect()
    }

    pub(crate) fn default_host(&self) -> Option<String> {
        (**self.default_host.load()).clone()
    }

    pub(crate) fn set_alpn_challenge(&self, host: &str, key: Option<Arc<CertifiedKey>>) {
        let mut map = self
            .alpn_challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match key {
            Some(k) => map.insert(host.to_owned(), k),
            None => map.remove(host),
        };
    }

    pub(crate) fn alpn_challenge(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let map = self
            .alpn_challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(host).cloned()
    }

    pub(crate) fn set_http_token(&self, token: &str, key_authorization: Option<String>) {
        let mut map = self.http_tokens.lock().unwrap_or_else(|e| e.into_inner());
        match key_authorization {
            Some(k) => map.insert(token.to_owned(), k),
            None => map.remove(token),
        };
    }

    pub(crate) fn http_token(&self, token: &str) -> Option<String> {
        let map = self.http_tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.get(token).cloned()
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertStore")
    }
}

/// Resolves the certificate of terminated handshakes.
#[derive(Debug)]
pub(crate) struct SniResolver(pub(crate) Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = match hello.server_name() {
            Some(h) => h.to_ascii_lowercase(),
            None => self.0.default_host()?,
        };
        self.0
            .lookup(&host)
            .or_else(|| self.0.default_host().and_then(|d| self.0.lookup(&d)))
            .map(|c| c.key.clone())
    }
}

/// Resolves the certificate of `acme-tls/1` handshakes (TLS-ALPN-01).
#[derive(Debug)]
pub(crate) struct ChallengeResolver(pub(crate) Arc<CertStore>);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .alpn_challenge(&hello.server_name()?.to_ascii_lowercase())
    }
}

/// The rustls configuration of terminated connections (h2 and http/1.1).
pub(crate) fn terminating_config(store: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The rustls configuration of TLS-ALPN-01 validation handshakes.
pub(crate) fn challenge_config(store: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ChallengeResolver(store)));
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    Arc::new(config)
}
