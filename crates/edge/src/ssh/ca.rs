//! The organisation's SSH certificate authority: one ed25519 key pair,
//! made by the first edge that needs it and shared through the store
//! (`edge_keys`, name [`CA_KEY`]).
//!
//! **The private key is never in the store in clear.** It is sealed with
//! AES-256-GCM (aws-lc-rs) under a key-encryption key that lives only in
//! the edge's `data_dir/store.kek` (32 random bytes, hex, 0600, made on
//! first use). A stolen database alone signs nothing. Edges sharing a
//! PostgreSQL store need the same `store.kek`: an edge whose file does not
//! open the stored key refuses to use it and says which file to copy.
//!
//! The public half is what hosts trust (`TrustedUserCAKeys`), printed by
//! `warren ssh ca-key` from `GET /api/v1/ssh/ca`.
//!
//! **Rotation with an overlap:** `rotate` makes a new CA the one that signs
//! and keeps the previous ones trusted for the overlap, so hosts can take
//! the new key before the old one stops being listed. The stored value is
//! the list, newest last; the swap is a compare-and-set in the store, so
//! two edges rotating at once cannot lose a key.

use crate::sealed::{self, kek, KEK_FILE};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};
use std::path::Path;

/// The `edge_keys` row holding the sealed CA.
pub(crate) const CA_KEY: &str = "ssh-ca-ed25519";
/// What the sealed private key is bound to (AEAD associated data).
const AAD: &[u8] = b"warren ssh ca v1";

/// Why the CA could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaError {
    /// The key-encryption key file is unreadable or malformed.
    #[error(transparent)]
    Kek(#[from] sealed::KekError),
    /// The store's CA was sealed under another key-encryption key.
    #[error("the stored SSH CA does not open with {path}: copy that file from the edge that made the CA")]
    WrongKek { path: String },
    /// Another edge changed the CA meanwhile: try again.
    #[error("the SSH CA changed meanwhile; try again")]
    Conflict,
    /// The store refused.
    #[error("store: {0}")]
    Store(#[from] warren_store::StoreError),
    /// The stored value is not a sealed CA of this version.
    #[error("the stored SSH CA is corrupt: {0}")]
    Corrupt(String),
}

/// The CA, opened.
pub(crate) struct Ca {
    /// The newest: the one that signs.
    key: PrivateKey,
    /// The public keys hosts should trust now, the signing one first.
    trusted: Vec<String>,
}

/// The stored form: the public key in clear, the private key sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    public: String,
    /// hex(nonce ‖ ciphertext ‖ tag) of the OpenSSH private key PEM.
    private: String,
    /// For a rotated-out CA: trusted until then (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trusted_until_ms: Option<i64>,
}

/// The stored value: one CA (as first made) or the list, newest last.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    Many(Vec<Sealed>),
    One(Sealed),
}

impl Stored {
    fn into_list(self) -> Vec<Sealed> {
        match self {
            Stored::Many(list) => list,
            Stored::One(one) => vec![one],
        }
    }
}

impl Ca {
    /// The CA of `store`, made (and sealed under `data_dir`'s key) if there
    /// is none yet.
    pub(crate) async fn load_or_create(
        store: &warren_store::Store,
        data_dir: &Path,
    ) -> Result<Ca, CaError> {
        let kek_path = data_dir.join(KEK_FILE);
        let kek = kek(&kek_path)?;
        let stored = store
            .edge_key(CA_KEY, || new_sealed(&kek).unwrap_or_default())
            .await?;
        Ca::open_stored(&stored, &kek, &kek_path, warren_store::now_ms()).map(|(ca, _)| ca)
    }

    /// Opens the stored list: the newest signs, the others are trusted
    /// until their overlap ends.
    fn open_stored(
        stored: &str,
        kek: &[u8; 32],
        kek_path: &Path,
        now_ms: i64,
    ) -> Result<(Ca, Vec<Sealed>), CaError> {
        let list = serde_json::from_str::<Stored>(stored)
            .map_err(|e| CaError::Corrupt(e.to_string()))?
            .into_list();
        let newest = list
            .last()
            .ok_or_else(|| CaError::Corrupt("no CA in the list".into()))?;
        let pem = open(kek, &newest.private).ok_or_else(|| CaError::WrongKek {
            path: kek_path.display().to_string(),
        })?;
        let key = PrivateKey::from_openssh(pem.as_bytes())
            .map_err(|e| CaError::Corrupt(e.to_string()))?;
        if key.public_key().to_openssh().ok().as_deref() != Some(newest.public.as_str()) {
            return Err(CaError::Corrupt("its public half does not match".into()));
        }
        let trusted = list
            .iter()
            .rev()
            .filter(|s| s.trusted_until_ms.is_none_or(|t| t > now_ms))
            .map(|s| s.public.clone())
            .collect();
        Ok((Ca { key, trusted }, list))
    }

    /// A new CA signs from now on; the ones before stay trusted for
    /// `overlap_ms` (those already rotated out keep their end; those past
    /// it are dropped). Returns the new CA.
    pub(crate) async fn rotate(
        store: &warren_store::Store,
        data_dir: &Path,
        overlap_ms: i64,
        actor: &str,
    ) -> Result<Ca, CaError> {
        let kek_path = data_dir.join(KEK_FILE);
        let kek = kek(&kek_path)?;
        let stored = store
            .edge_key(CA_KEY, || new_sealed(&kek).unwrap_or_default())
            .await?;
        let now = warren_store::now_ms();
        // Opened first: an edge with the wrong key-encryption key must not
        // rotate (it could not sign with what it made either).
        let (_, mut list) = Ca::open_stored(&stored, &kek, &kek_path, now)?;
        for s in &mut list {
            s.trusted_until_ms
                .get_or_insert(now.saturating_add(overlap_ms));
        }
        list.retain(|s| s.trusted_until_ms.is_some_and(|t| t > now));
        let fresh: Sealed = serde_json::from_str(
            &new_sealed(&kek).ok_or_else(|| CaError::Corrupt("no randomness".into()))?,
        )
        .map_err(|e| CaError::Corrupt(e.to_string()))?;
        list.push(fresh);
        let new = serde_json::to_string(&list).map_err(|e| CaError::Corrupt(e.to_string()))?;
        let shown = serde_json::json!({
            "trusted": list.iter().map(|s| (&s.public, s.trusted_until_ms)).collect::<Vec<_>>(),
        });
        if !store
            .replace_edge_key(actor, CA_KEY, &stored, &new, &shown)
            .await?
        {
            return Err(CaError::Conflict);
        }
        tracing::info!(
            event = "ssh_ca_rotated",
            actor,
            overlap_ms,
            "a new SSH CA signs from now on"
        );
        Ca::open_stored(&new, &kek, &kek_path, now).map(|(ca, _)| ca)
    }

    /// The key that signs.
    pub(crate) fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The public keys hosts should trust now (`TrustedUserCAKeys`), the
    /// signing one first.
    pub(crate) fn trusted(&self) -> &[String] {
        &self.trusted
    }

    /// The public key, one OpenSSH line (`ssh-ed25519 AAAA... warren-ca`).
    pub(crate) fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// `SHA256:...`, as `ssh-keygen -l` and sshd's logs print it.
    pub(crate) fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }
}

/// A new CA, sealed; `None` only if the system's randomness fails.
fn new_sealed(kek: &[u8; 32]) -> Option<String> {
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).ok()?;
    key.set_comment("warren-ca");
    let public = key.public_key().to_openssh().ok()?;
    let pem = key.to_openssh(LineEnding::LF).ok()?;
    serde_json::to_string(&Sealed {
        public,
        private: sealed::seal(kek, AAD, pem.as_bytes())?,
        trusted_until_ms: None,
    })
    .ok()
}

/// The PEM inside a sealed private key, if `kek` opens it.
fn open(kek: &[u8; 32], sealed_hex: &str) -> Option<zeroize::Zeroizing<String>> {
    let plain = sealed::open(kek, AAD, sealed_hex)?;
    Some(zeroize::Zeroizing::new(
        String::from_utf8(plain.to_vec()).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_ca_opens_only_with_its_key() {
        let kek = [7u8; 32];
        let sealed: Sealed = serde_json::from_str(&new_sealed(&kek).unwrap()).unwrap();
        assert!(sealed.public.starts_with("ssh-ed25519 "));
        assert!(!sealed.private.contains("OPENSSH"), "sealed, not in clear");
        let pem = open(&kek, &sealed.private).expect("its own key opens it");
        assert!(pem.contains("BEGIN OPENSSH PRIVATE KEY"));
        assert!(open(&[8u8; 32], &sealed.private).is_none(), "another key");
        let mut tampered = sealed.private.clone();
        tampered.replace_range(
            40..42,
            if &tampered[40..42] == "00" {
                "01"
            } else {
                "00"
            },
        );
        assert!(open(&kek, &tampered).is_none(), "tampered");
        assert!(open(&kek, "00").is_none());
    }
}
