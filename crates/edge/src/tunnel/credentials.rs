//! Site credentials (and API tokens): how secrets are stored and checked.
//!
//! Warren's secrets are generated, 128 random bits each, so at rest they are
//! SHA-256 digests (`$sha256$<hex>`: `secret_hash`, API sites, API keys),
//! compared in constant time in microseconds; a password hash would only
//! make every check cost tens of milliseconds and ~19 MiB. A plain `secret`
//! in the file is kept as the same digest. Argon2 hashes written by earlier
//! versions are still accepted, checked on the blocking pool behind a small
//! semaphore; a rotation replaces them. An unknown site id is checked
//! against a digest, so it costs what a wrong secret costs.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use warren_proto::Secret;

/// A site's secret (or an API token's) as the edge keeps it.
#[derive(Clone)]
pub enum SiteSecret {
    /// A SHA-256 digest, compared in constant time: of a secret given in
    /// clear in the config, or stored as `$sha256$<64 hex>`. Machine secrets
    /// carry 128 random bits, so a slow password hash would buy nothing; a
    /// digest checks in microseconds.
    Digest([u8; 32]),
    /// An argon2 PHC string, as hashes were written before: still accepted,
    /// checked on the blocking pool a few at a time.
    Argon2(String),
}

impl fmt::Debug for SiteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteSecret::Digest(_) => f.write_str("SiteSecret::Digest(***)"),
            SiteSecret::Argon2(_) => f.write_str("SiteSecret::Argon2(***)"),
        }
    }
}

const DIGEST_PREFIX: &str = "$sha256$";

impl SiteSecret {
    /// From a secret given in clear.
    pub fn plain(secret: &Secret) -> Self {
        SiteSecret::Digest(Sha256::digest(secret.expose().as_bytes()).into())
    }

    /// From a stored hash: `$sha256$<64 hex>` (what Warren writes) or an
    /// argon2 PHC string (what it wrote before).
    pub fn from_hash(hash: &str) -> Result<Self, String> {
        if let Some(hex_digest) = hash.strip_prefix(DIGEST_PREFIX) {
            let bytes = hex::decode(hex_digest)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or("`$sha256$` must be followed by 64 hex digits")?;
            return Ok(SiteSecret::Digest(bytes));
        }
        let parsed = PasswordHash::new(hash)
            .map_err(|e| format!("neither `$sha256$<hex>` nor an argon2 PHC string: {e}"))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(format!(
                "hash algorithm `{}` is not argon2",
                parsed.algorithm
            ));
        }
        Ok(SiteSecret::Argon2(hash.to_owned()))
    }

    /// Whether checking it is slow (argon2): the caller runs it on the
    /// blocking pool.
    pub fn is_slow(&self) -> bool {
        matches!(self, SiteSecret::Argon2(_))
    }

    /// Whether `presented` is this secret. Microseconds for a digest; tens
    /// of milliseconds for argon2 (see [`SiteSecret::is_slow`]).
    pub fn verify(&self, presented: &Secret) -> bool {
        let presented = presented.expose();
        match self {
            SiteSecret::Digest(digest) => {
                let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(got.ct_eq(digest))
            }
            SiteSecret::Argon2(hash) => match PasswordHash::new(hash) {
                Ok(parsed) => Argon2::default()
                    .verify_password(presented.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// The stored form of a machine secret (`secret_hash`, API sites, API
/// keys): `$sha256$<64 hex>`.
pub fn hash_secret(secret: &str) -> String {
    format!(
        "{DIGEST_PREFIX}{}",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

/// An argon2id hash, as Warren wrote before: for tests of old stores.
#[cfg(test)]
pub(crate) fn hash_secret_argon2(secret: &str) -> String {
    use argon2::password_hash::SaltString;
    use argon2::PasswordHasher;
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// A new random secret: 32 hex digits (128 bits).
pub fn generate_secret() -> Secret {
    Secret::new(hex::encode(rand::random::<[u8; 16]>()))
}

/// What an unknown site id is checked against: a digest, as every secret
/// Warren writes is, so an unknown id costs what a wrong secret costs.
fn dummy_secret() -> &'static SiteSecret {
    static DUMMY: OnceLock<SiteSecret> = OnceLock::new();
    DUMMY.get_or_init(|| SiteSecret::Digest(Sha256::digest(rand::random::<[u8; 32]>()).into()))
}

/// Checks presented credentials: digests at once, argon2 hashes a few at a
/// time on the blocking pool, so a flood of those cannot starve the proxy;
/// and only so many may wait for their turn: beyond, [`Busy`] at once.
#[derive(Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    max_waiting: usize,
}

/// Too many slow checks are waiting: the caller answers "busy, retry"
/// (503 on the API, `Unavailable` to an agent) rather than queue more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many slow credential checks are waiting; retry shortly")]
pub struct Busy;

impl Default for Verifier {
    fn default() -> Self {
        Verifier::with_limits(2, 64)
    }
}

impl Verifier {
    /// `running` slow checks at once, `max_waiting` more waiting.
    pub fn with_limits(running: usize, max_waiting: usize) -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(running)),
            waiting: Arc::default(),
            max_waiting,
        }
    }

    /// Whether `presented` matches `expected`; `None` (unknown site) does the
    /// work of a wrong secret and fails.
    pub async fn check(
        &self,
        expected: Option<SiteSecret>,
        presented: Secret,
    ) -> Result<bool, Busy> {
        use std::sync::atomic::Ordering;
        let expected = match expected {
            None => {
                dummy_secret().verify(&presented);
                return Ok(false);
            }
            Some(e) if !e.is_slow() => return Ok(e.verify(&presented)),
            Some(e) => e,
        };
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&self.waiting);
        if before >= self.max_waiting {
            return Err(Busy);
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Ok(false);
        };
        drop(waiting);
        Ok(
            tokio::task::spawn_blocking(move || expected.verify(&presented))
                .await
                .unwrap_or(false),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slow checks beyond the running and waiting slots are refused at
    /// once, the others answered; digests never wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_slow_checks_is_refused_beyond_the_queue() {
        let verifier = Verifier::with_limits(1, 2);
        let slow = SiteSecret::from_hash(&hash_secret_argon2("right")).unwrap();
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (v, s) = (verifier.clone(), slow.clone());
                tokio::spawn(async move { v.check(Some(s), "right".into()).await })
            })
            .collect();
        let mut answered = 0;
        let mut busy = 0;
        for c in checks {
            match c.await.unwrap() {
                Ok(true) => answered += 1,
                Ok(false) => panic!("the right secret was refused"),
                Err(Busy) => busy += 1,
            }
        }
        assert!(
            busy >= 1 && answered >= 1,
            "answered {answered}, busy {busy}"
        );
        assert!(answered <= 8 - busy);
        let fast = SiteSecret::from_hash(&hash_secret("right")).unwrap();
        assert_eq!(verifier.check(Some(fast), "right".into()).await, Ok(true));
        // Nothing is left counted as waiting.
        assert_eq!(verifier.check(Some(slow), "right".into()).await, Ok(true));
    }

    #[test]
    fn hashed_and_plain_secrets_verify() {
        for h in [hash_secret("right"), hash_secret_argon2("right")] {
            let h = SiteSecret::from_hash(&h).unwrap();
            assert!(h.verify(&"right".into()));
            assert!(!h.verify(&"wrong".into()));
        }
        assert!(hash_secret("right").starts_with("$sha256$"));
        assert!(!SiteSecret::from_hash(&hash_secret("right"))
            .unwrap()
            .is_slow());
        let p = SiteSecret::plain(&"right".into());
        assert!(p.verify(&"right".into()));
        assert!(!p.verify(&"righ".into()));
    }

    #[test]
    fn non_argon2_hashes_are_refused() {
        assert!(SiteSecret::from_hash("$5$rounds=1$abc$def").is_err());
        assert!(SiteSecret::from_hash("plain").is_err());
        assert!(SiteSecret::from_hash("$sha256$abcd").is_err());
        assert!(SiteSecret::from_hash(&format!("$sha256${}", "g".repeat(64))).is_err());
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, b);
    }
}
