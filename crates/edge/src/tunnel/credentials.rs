//! Site credentials: how secrets are stored and checked.
//!
//! Secrets at rest are argon2id hashes (`secret_hash`, what `warren up`
//! writes). A plain `secret` in the file is accepted for hand-written labs and
//! compared in constant time. Checks run on the blocking pool behind a small
//! semaphore, so a flood of bogus handshakes cannot starve the proxy threads.
//! An unknown site id costs the same argon2 work as a known one, so response
//! time does not reveal which ids exist.

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use warren_proto::Secret;

/// A site's secret as the edge keeps it.
#[derive(Clone)]
pub enum SiteSecret {
    /// Given in clear in the config; kept as a SHA-256 digest for comparison.
    Plain([u8; 32]),
    /// An argon2 PHC string.
    Hash(String),
}

impl fmt::Debug for SiteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteSecret::Plain(_) => f.write_str("SiteSecret::Plain(***)"),
            SiteSecret::Hash(_) => f.write_str("SiteSecret::Hash(***)"),
        }
    }
}

impl SiteSecret {
    /// From a secret given in clear.
    pub fn plain(secret: &Secret) -> Self {
        SiteSecret::Plain(Sha256::digest(secret.expose().as_bytes()).into())
    }

    /// From an argon2 PHC hash string.
    pub fn from_hash(hash: &str) -> Result<Self, String> {
        let parsed =
            PasswordHash::new(hash).map_err(|e| format!("not an argon2 PHC string: {e}"))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(format!(
                "hash algorithm `{}` is not argon2",
                parsed.algorithm
            ));
        }
        Ok(SiteSecret::Hash(hash.to_owned()))
    }

    /// Whether `presented` is this secret. Blocking (argon2): call it from
    /// the blocking pool.
    pub fn verify(&self, presented: &Secret) -> bool {
        let presented = presented.expose();
        match self {
            SiteSecret::Plain(digest) => {
                let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(got.ct_eq(digest))
            }
            SiteSecret::Hash(hash) => match PasswordHash::new(hash) {
                Ok(parsed) => Argon2::default()
                    .verify_password(presented.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Hashes a secret with argon2id and a random salt, for `secret_hash`.
pub fn hash_secret(secret: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// [`hash_secret`] on the blocking pool: argon2 takes tens of milliseconds,
/// too long for an async worker thread.
pub async fn hash_secret_blocking(secret: Secret) -> Result<String, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || hash_secret(secret.expose())).await
}

/// A new random secret: 32 hex digits (128 bits).
pub fn generate_secret() -> Secret {
    Secret::new(hex::encode(rand::random::<[u8; 16]>()))
}

fn dummy_secret() -> &'static SiteSecret {
    static DUMMY: OnceLock<SiteSecret> = OnceLock::new();
    DUMMY.get_or_init(|| SiteSecret::Hash(hash_secret("warren-dummy-secret-for-unknown-ids")))
}

/// Checks presented credentials, a few at a time.
#[derive(Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(2)),
        }
    }
}

impl Verifier {
    /// Whether `presented` matches `expected`; `None` (unknown site) does the
    /// same work and fails.
    pub async fn check(&self, expected: Option<SiteSecret>, presented: Secret) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || match expected {
            Some(secret) => secret.verify(&presented),
            None => {
                dummy_secret().verify(&presented);
                false
            }
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_and_plain_secrets_verify() {
        let h = SiteSecret::from_hash(&hash_secret("right")).unwrap();
        assert!(h.verify(&"right".into()));
        assert!(!h.verify(&"wrong".into()));
        let p = SiteSecret::plain(&"right".into());
        assert!(p.verify(&"right".into()));
        assert!(!p.verify(&"righ".into()));
    }

    #[test]
    fn non_argon2_hashes_are_refused() {
        assert!(SiteSecret::from_hash("$5$rounds=1$abc$def").is_err());
        assert!(SiteSecret::from_hash("plain").is_err());
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, b);
    }
}
