//! Certificates. Here: the edge's tunnel certificate, loaded from
//! `tunnel_cert`/`tunnel_key`, or generated once in `data_dir` and reused
//! (agents pin its hash), and the private-file helpers. [`store`]: the
//! certificates of terminated resources, chosen by SNI; [`acme`]: those
//! ordered from an ACME CA.

pub(crate) mod acme;
pub(crate) mod store;

use crate::EdgeError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use warren_transport::tls;

/// The tunnel certificate chain, its key, and the pin of its leaf.
pub struct TunnelCert {
    /// Chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf, hex.
    pub pin: String,
    /// Key for QUIC stateless resets, derived from the private key so it is
    /// stable across restarts and secret.
    pub reset_key: [u8; 32],
}

/// Paths of the generated certificate in `data_dir`.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (
        data_dir.join("tunnel-cert.pem"),
        data_dir.join("tunnel-key.pem"),
    )
}

/// Loads the configured certificate, or the one in `data_dir`, generating it
/// on first use.
pub fn load_or_create(
    configured: Option<&(PathBuf, PathBuf)>,
    data_dir: &Path,
) -> Result<TunnelCert, EdgeError> {
    let (cert_path, key_path) = match configured {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            let (c, k) = generated_paths(data_dir);
            if !c.exists() || !k.exists() {
                create_dir_private(data_dir)?;
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                let host = host.trim();
                if !host.is_empty() {
                    names.push(host.to_owned());
                }
                let generated = tls::generate_self_signed(names)?;
                write_private(&k, generated.key_pem.as_bytes())?;
                std::fs::write(&c, generated.cert_pem.as_bytes())
                    .map_err(|e| EdgeError::io(&c, e))?;
                tracing::info!(cert = %c.display(), "generated a self-signed tunnel certificate");
            }
            (c, k)
        }
    };
    let certs = tls::load_certs(&cert_path)?;
    let key = tls::load_key(&key_path)?;
    let pin = tls::pin_of(&certs[0]);
    let reset_key = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"warren/quic-stateless-reset/v1");
        h.update(key.secret_der());
        h.finalize().into()
    };
    Ok(TunnelCert {
        certs,
        key,
        pin,
        reset_key,
    })
}

/// Creates a directory readable only by its owner.
pub fn create_dir_private(dir: &Path) -> Result<(), EdgeError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| EdgeError::io(dir, e))
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), EdgeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EdgeError::io(path, e))?;
    f.write_all(contents).map_err(|e| EdgeError::io(path, e))
}
