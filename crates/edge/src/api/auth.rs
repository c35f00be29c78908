//! Bearer API keys for `/api/v1`.
//!
//! A token is `wrn_<id>_<secret>`: `id` (12 hex digits) is stored in clear
//! and names the key in the audit log; `secret` (32 hex digits, 128 bits)
//! is stored only as an argon2id hash. Checking a token:
//! 1. parse it (a malformed token never reaches the store);
//! 2. look the id up; an unknown id still costs one argon2 verification,
//!    so timing does not reveal which ids exist;
//! 3. verify the secret on the blocking pool (shared with site credentials,
//!    two at a time), then remember `sha256(secret)` for 60 s so a
//!    dashboard polling every second does not pay argon2 each time (the
//!    cached digest is compared in constant time);
//! 4. refuse an expired key, and a read-only key on anything but GET/HEAD.
//!
//! On the first start with no key at all the edge creates an admin key and
//! writes its token to `data_dir/admin-token` (mode 0600): the one place a
//! token exists in clear, for the operator to pick up.

use crate::tunnel::credentials::{hash_secret, SiteSecret, Verifier};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use warren_proto::Secret;
use warren_store::{now_ms, ApiKeyRecord, Scope, Store};

const PREFIX: &str = "wrn_";
const CACHE_FOR: Duration = Duration::from_secs(60);

/// A parsed token.
pub(crate) struct Token {
    pub(crate) id: String,
    secret: Secret,
}

impl Token {
    /// A fresh random token.
    pub(crate) fn generate() -> Token {
        Token {
            id: hex::encode(rand::random::<[u8; 6]>()),
            secret: Secret::new(hex::encode(rand::random::<[u8; 16]>())),
        }
    }

    /// `wrn_<id>_<secret>`, or `None` when `text` is not shaped like one.
    pub(crate) fn parse(text: &str) -> Option<Token> {
        let rest = text.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(id, 12) && hex(secret, 32)).then(|| Token {
            id: id.to_ascii_lowercase(),
            secret: Secret::new(secret.to_ascii_lowercase()),
        })
    }

    /// The text to hand to the operator.
    pub(crate) fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret.expose())
    }

    /// The argon2id hash to store (computed on the blocking pool).
    pub(crate) fn hash(&self) -> String {
        hash_secret(self.secret.expose())
    }
}

/// Who is calling, once authenticated.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The key's id: the actor in the audit log.
    pub(crate) key_id: String,
}

/// Why a request was refused. Each has a stable code for API clients.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("this API needs `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is not a Warren API token (wrn_...)")]
    Malformed,
    #[error("unknown API key or wrong secret")]
    Invalid,
    #[error("API key `{0}` has expired")]
    Expired(String),
    #[error("API key `{0}` is read-only; this request changes something")]
    ReadOnly(String),
    #[error("the state store failed: {0}")]
    Store(#[from] warren_store::StoreError),
    #[error(transparent)]
    Busy(#[from] crate::tunnel::credentials::Busy),
}

impl AuthError {
    /// The stable code of the JSON error.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::Malformed | AuthError::Invalid => "invalid_token",
            AuthError::Expired(_) => "key_expired",
            AuthError::ReadOnly(_) => "read_only_key",
            AuthError::Store(_) => "store_unavailable",
            AuthError::Busy(_) => "busy",
        }
    }
}

struct Verified {
    digest: [u8; 32],
    at: Instant,
}

/// Checks bearer tokens against the store.
#[derive(Default)]
pub(crate) struct ApiAuth {
    verifier: Verifier,
    verified: Mutex<HashMap<String, Verified>>,
}

impl ApiAuth {
    /// Authenticates `authorization` (the header's value) for a request
    /// that writes (`write`) or only reads.
    pub(crate) async fn authorize(
        &self,
        store: &Store,
        authorization: Option<&str>,
        write: bool,
    ) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let text = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        let key = self.authenticate(store, text).await?;
        if write && key.scope == Scope::Read {
            return Err(AuthError::ReadOnly(key.id));
        }
        Ok(Caller { key_id: key.id })
    }

    /// The live key a token (`wrn_...`) is for: right secret, not expired.
    /// Used by the API and by the access phase (a key as the policy's
    /// principal), with the same cost for a wrong id as a wrong secret.
    pub(crate) async fn authenticate(
        &self,
        store: &Store,
        text: &str,
    ) -> Result<ApiKeyRecord, AuthError> {
        let token = Token::parse(text).ok_or(AuthError::Malformed)?;
        let key = store.api_key(&token.id).await?;
        self.verify(store, key, token).await
    }

    /// [`ApiAuth::authenticate`] against the catalog's copy of the keys
    /// (the data path: no store read; the store is written only to
    /// re-store a legacy hash after a good check).
    pub(crate) async fn authenticate_known(
        &self,
        store: &Store,
        keys: &std::collections::BTreeMap<String, ApiKeyRecord>,
        text: &str,
    ) -> Result<ApiKeyRecord, AuthError> {
        let token = Token::parse(text).ok_or(AuthError::Malformed)?;
        let key = keys.get(&token.id).cloned();
        self.verify(store, key, token).await
    }

    async fn verify(
        &self,
        store: &Store,
        key: Option<ApiKeyRecord>,
        token: Token,
    ) -> Result<ApiKeyRecord, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.secret.expose().as_bytes()).into();
        let cached = {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            verified
                .get(&token.id)
                .is_some_and(|v| v.at.elapsed() < CACHE_FOR && bool::from(v.digest.ct_eq(&digest)))
        };
        let Some(key) = key else {
            let _ = self.verifier.check(None, token.secret).await;
            return Err(AuthError::Invalid);
        };
        if !cached {
            let expected = SiteSecret::from_hash(&key.key_hash).ok();
            let legacy = expected.as_ref().is_some_and(SiteSecret::is_slow);
            if !self.verifier.check(expected, token.secret.clone()).await? {
                return Err(AuthError::Invalid);
            }
            if legacy {
                // An argon2 hash of an earlier version, now proven right:
                // stored again as a digest, so the next check is instant.
                let digest = hash_secret(token.secret.expose());
                match store.rehash_api_key(&key.id, &key.key_hash, &digest).await {
                    Ok(true) => {
                        tracing::info!(event = "api_key_rehashed", key = %key.id, "an API key's argon2 hash was replaced by its digest")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(key = %key.id, error = %e, "could not re-store an API key's hash")
                    }
                }
            }
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    token.id.clone(),
                    Verified {
                        digest,
                        at: Instant::now(),
                    },
                );
        }
        if key.expires_ms.is_some_and(|t| t <= now_ms()) {
            return Err(AuthError::Expired(key.id));
        }
        Ok(key)
    }

    /// Forgets a deleted key at once (other edges sharing the database
    /// forget it within 60 s).
    pub(crate) fn forget(&self, id: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Where the first admin token is written.
pub(crate) fn initial_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// With no key in the store, creates an admin key, writes its token to
/// `data_dir/admin-token` (0600) and returns the path.
pub(crate) async fn ensure_initial_key(
    store: &Store,
    data_dir: &Path,
) -> Result<Option<PathBuf>, crate::EdgeError> {
    if store.has_api_keys().await? {
        return Ok(None);
    }
    let token = Token::generate();
    let hash = token.hash();
    let path = initial_token_path(data_dir);
    crate::certs::write_private(&path, format!("{}\n", token.reveal()).as_bytes())?;
    store
        .create_api_key(
            "edge-first-start",
            &token.id,
            "initial admin",
            &hash,
            Scope::Admin,
            None,
        )
        .await?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::credentials::hash_secret_argon2;

    /// A key stored by an earlier version (argon2) is accepted, and stored
    /// again as a digest after that first good check; a wrong token for it
    /// changes nothing.
    #[tokio::test]
    async fn a_legacy_argon2_key_is_accepted_and_stored_again_as_a_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("warren.db"))
            .await
            .unwrap();
        let token = Token::generate();
        let legacy = hash_secret_argon2(token.secret.expose());
        store
            .create_api_key("test", &token.id, "old", &legacy, Scope::Admin, None)
            .await
            .unwrap();
        let auth = ApiAuth::default();
        let wrong = format!("Bearer {PREFIX}{}_{}", token.id, "0".repeat(32));
        assert!(auth.authorize(&store, Some(&wrong), true).await.is_err());
        let stored = store.api_key(&token.id).await.unwrap().unwrap().key_hash;
        assert_eq!(stored, legacy, "a failed check re-stores nothing");

        let right = format!("Bearer {}", token.reveal());
        auth.authorize(&store, Some(&right), true).await.unwrap();
        let stored = store.api_key(&token.id).await.unwrap().unwrap().key_hash;
        assert_eq!(stored, hash_secret(token.secret.expose()));
        // And the digest works on its own (another edge, no cache).
        ApiAuth::default()
            .authorize(&store, Some(&right), true)
            .await
            .unwrap();
    }
}
