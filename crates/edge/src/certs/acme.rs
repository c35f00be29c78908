//! Automatic certificates over ACME (instant-acme): HTTP-01 when the edge
//! has `http_listen`, else TLS-ALPN-01 on `https_listen`.
//!
//! A host's certificate is requested at start (for every http resource
//! host) and on first need (a handshake for a routed host with no
//! certificate waits for it), one order per host at a time. Certificates and
//! the account live in `data_dir/acme`; a background task renews those that
//! expire within `renew_before`. A failed order is not retried for that host
//! before a backoff (1 minute, doubling up to 1 hour), so a stream of
//! handshakes cannot hammer the CA. Orders are only ever placed for names
//! the configuration spells out (never for a name a wildcard route happens
//! to match: those need a certificate in `[tls] certs`), at most
//! [`MAX_CONCURRENT_ORDERS`] at once and [`MAX_ORDERS_PER_HOUR`] an hour
//! (logged as `acme_order_limit` when hit), far inside a public CA's account
//! limits, so no visitor can burn them.

use crate::certs::store::{CertStore, LoadedCert};
use crate::config::AcmeSettings;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("ACME order for `{host}` ended {status}")]
    Order { host: String, status: String },
    #[error("ACME for `{host}` is backing off after a failure; next try in {wait:?}")]
    BackingOff { host: String, wait: Duration },
    #[error("ACME: {MAX_ORDERS_PER_HOUR} orders in the last hour; `{host}` waits {wait:?}")]
    HourlyLimit { host: String, wait: Duration },
    #[error("{0}")]
    Local(String),
}

#[derive(Clone, Copy)]
struct Failure {
    at: Instant,
    backoff: Duration,
}

/// Issues and renews certificates.
pub(crate) struct AcmeIssuer {
    settings: AcmeSettings,
    dir: PathBuf,
    store: Arc<CertStore>,
    use_http01: bool,
    account: tokio::sync::Mutex<Option<Account>>,
    per_host: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failures: Mutex<HashMap<String, Failure>>,
    /// Orders in flight, across hosts.
    concurrent: tokio::sync::Semaphore,
    /// When each order of the last hour started.
    recent: Mutex<std::collections::VecDeque<Instant>>,
}

/// Orders in flight at once, across every host.
pub(crate) const MAX_CONCURRENT_ORDERS: usize = 4;
/// Orders started per rolling hour, across every host (a public CA allows
/// an account a few hundred every three hours).
pub(crate) const MAX_ORDERS_PER_HOUR: usize = 30;

const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Where `host`'s certificate chain and key are stored. The host is a
/// suffix-less stem (`app.test` must not become `app.crt`), so the names are
/// built by appending, never with `Path::with_extension`.
fn stored_paths(dir: &std::path::Path, host: &str) -> (PathBuf, PathBuf) {
    let stem = host.replace('*', "_wildcard_");
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

impl AcmeIssuer {
    pub(crate) fn new(
        settings: AcmeSettings,
        data_dir: &std::path::Path,
        store: Arc<CertStore>,
        use_http01: bool,
    ) -> Arc<AcmeIssuer> {
        let issuer = Arc::new(AcmeIssuer {
            settings,
            dir: data_dir.join("acme"),
            store,
            use_http01,
            account: tokio::sync::Mutex::new(None),
            per_host: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            concurrent: tokio::sync::Semaphore::new(MAX_CONCURRENT_ORDERS),
            recent: Mutex::new(std::collections::VecDeque::new()),
        });
        issuer.load_stored();
        issuer
    }

    /// Installs the certificates a previous run stored.
    fn load_stored(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("certs")) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".crt"))
            else {
                continue;
            };
            let host = &stem.replace("_wildcard_", "*");
            let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(&path)
                .map(|i| i.collect())
                .unwrap_or_else(Err);
            let (_, key_path) = stored_paths(&self.dir.join("certs"), host);
            let key = PrivateKeyDer::from_pem_file(key_path);
            match (certs, key) {
                (Ok(certs), Ok(key)) => match LoadedCert::new(certs, &key) {
                    Ok(c) => self.store.install_issued(host, c),
                    Err(e) => {
                        tracing::warn!(cert = %path.display(), error = %e, "stored certificate ignored")
                    }
                },
                _ => {
                    tracing::warn!(cert = %path.display(), "stored certificate unreadable; it will be issued again")
                }
            }
        }
    }

    /// Makes sure `host` has a certificate, issuing one if needed.
    pub(crate) async fn ensure(&self, host: &str) -> Result<(), AcmeError> {
        if self.store.lookup(host).is_some() {
            return Ok(());
        }
        self.issue(host).await
    }

    /// Orders a certificate for `host` unless it has one outside the renewal
    /// window (one order per host at a time).
    pub(crate) async fn issue(&self, host: &str) -> Result<(), AcmeError> {
        let lock = {
            let mut map = self.per_host.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(host.to_owned()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let fresh = self
            .store
            .lookup(host)
            .is_some_and(|c| c.not_after > SystemTime::now() + self.settings.renew_before);
        if fresh {
            return Ok(()); // another task just issued it
        }
        if let Some(f) = self.failure(host) {
            let wait = f.backoff.saturating_sub(f.at.elapsed());
            if !wait.is_zero() {
                return Err(AcmeError::BackingOff {
                    host: host.to_owned(),
                    wait,
                });
            }
        }
        let Ok(_slot) = self.concurrent.acquire().await else {
            return Err(AcmeError::Local("the ACME issuer is closing".into()));
        };
        self.take_hourly_slot(host)?;
        let started = Instant::now();
        let renewal = self.store.lookup(host).is_some();
        match self.order(host).await {
            Ok(()) => {
                self.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(host);
                tracing::info!(
                    event = "certificate_issued",
                    host,
                    renewal,
                    took_ms = started.elapsed().as_millis() as u64,
                    "certificate issued"
                );
                Ok(())
            }
            Err(e) => {
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                let backoff = failures
                    .get(host)
                    .map_or(FIRST_BACKOFF, |f| (f.backoff * 2).min(MAX_BACKOFF));
                failures.insert(
                    host.to_owned(),
                    Failure {
                        at: Instant::now(),
                        backoff,
                    },
                );
                tracing::warn!(event = "certificate_failed", host, error = %e, retry_in_s = backoff.as_secs(), "certificate order failed");
                Err(e)
            }
        }
    }

    /// Counts an order against the hourly budget, or refuses it.
    fn take_hourly_slot(&self, host: &str) -> Result<(), AcmeError> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let hour = Duration::from_secs(3600);
        while recent.front().is_some_and(|t| t.elapsed() >= hour) {
            recent.pop_front();
        }
        if recent.len() >= MAX_ORDERS_PER_HOUR {
            let wait = recent
                .front()
                .map_or(hour, |t| hour.saturating_sub(t.elapsed()));
            tracing::warn!(
                event = "acme_order_limit",
                host,
                limit = MAX_ORDERS_PER_HOUR,
                wait_s = wait.as_secs(),
                "ACME order refused: the hourly limit of orders is reached"
            );
            return Err(AcmeError::HourlyLimit {
                host: host.to_owned(),
                wait,
            });
        }
        recent.push_back(Instant::now());
        Ok(())
    }

    fn failure(&self, host: &str) -> Option<Failure> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .copied()
    }

    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let builder = || match &self.settings.ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let path = self.dir.join("account.json");
        let stored: Option<AccountCredentials> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let account = match stored {
            Some(creds) => builder()?.from_credentials(creds).await?,
            None => {
                let contact: Vec<String> = self
                    .settings
                    .email
                    .iter()
                    .map(|e| format!("mailto:{e}"))
                    .collect();
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, creds) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.settings.directory.clone(),
                        None,
                    )
                    .await?;
                let json =
                    serde_json::to_vec(&creds).map_err(|e| AcmeError::Local(e.to_string()))?;
                crate::certs::create_dir_private(&self.dir)
                    .map_err(|e| AcmeError::Local(e.to_string()))?;
                crate::certs::write_private(&path, &json)
                    .map_err(|e| AcmeError::Local(e.to_string()))?;
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    async fn order(&self, host: &str) -> Result<(), AcmeError> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(host.to_owned())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let kind = if self.use_http01 {
            ChallengeType::Http01
        } else {
            ChallengeType::TlsAlpn01
        };
        let mut published_tokens = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| AcmeError::Order {
                    host: host.to_owned(),
                    status: format!("without a {kind:?} challenge"),
                })?;
            let key_auth = challenge.key_authorization();
            match kind {
                ChallengeType::Http01 => {
                    self.store
                        .set_http_token(&challenge.token, Some(key_auth.as_str().to_owned()));
                    published_tokens.push(challenge.token.clone());
                }
                _ => {
                    let cert = alpn_challenge_cert(host, key_auth.digest().as_ref())?;
                    self.store.set_alpn_challenge(host, Some(cert));
                }
            }
            challenge.set_ready().await?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(200))
            .timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await;
        for t in &published_tokens {
            self.store.set_http_token(t, None);
        }
        self.store.set_alpn_challenge(host, None);
        let status = status?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order {
                host: host.to_owned(),
                status: format!("{status:?}"),
            });
        }
        let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Local(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec![host.to_owned()])
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        order.finalize_csr(csr.der()).await?;
        let chain_pem = order.poll_certificate(&retry).await?;
        let key_pem = key.serialize_pem();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| AcmeError::Local(format!("certificate from the CA: {e}")))?;
        let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        let loaded = LoadedCert::new(certs, &key_der).map_err(AcmeError::Local)?;
        let dir = self.dir.join("certs");
        crate::certs::create_dir_private(&dir).map_err(|e| AcmeError::Local(e.to_string()))?;
        let (crt_path, key_path) = stored_paths(&dir, host);
        crate::certs::write_private(&key_path, key_pem.as_bytes())
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        std::fs::write(crt_path, chain_pem.as_bytes())
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        self.store.install_issued(host, loaded);
        Ok(())
    }

    /// Renews what expires soon, every `every`, until the process ends.
    pub(crate) async fn renew_loop(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let soon = SystemTime::now() + self.settings.renew_before;
            for host in self.store.issued_expiring_before(soon) {
                tracing::info!(event = "certificate_renewing", host = %host, "renewing certificate");
                let _ = self.issue(&host).await;
            }
        }
    }
}

/// The self-signed certificate of a TLS-ALPN-01 answer (RFC 8737): the
/// host as its only name and the key authorisation's digest in the
/// `acmeIdentifier` extension.
fn alpn_challenge_cert(
    host: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let local = |e: rcgen::Error| AcmeError::Local(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(local)?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(local)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(local)?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| AcmeError::Local(e.to_string()))?;
    let signing = warren_transport::tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| AcmeError::Local(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}
