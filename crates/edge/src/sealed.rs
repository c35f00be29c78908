//! Secrets the edges share through the store, sealed: AES-256-GCM
//! (aws-lc-rs) under a key-encryption key that lives only in the edge's
//! `data_dir/store.kek` (32 random bytes, hex, 0600, made on first use). A
//! stolen database alone opens nothing. Edges sharing a PostgreSQL store
//! need the same `store.kek`. Each use binds its sealed values to its own
//! associated data, so one kind of secret never opens as another.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use std::path::Path;

/// The key-encryption key's file in `data_dir`.
pub(crate) const KEK_FILE: &str = "store.kek";

/// The key-encryption key file is unreadable or malformed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub(crate) struct KekError {
    pub(crate) path: String,
    pub(crate) why: String,
}

/// The key-encryption key in `path`, made (0600) when the file is missing.
pub(crate) fn kek(path: &Path) -> Result<[u8; 32], KekError> {
    let err = |why: String| KekError {
        path: path.display().to_string(),
        why,
    };
    if !path.exists() {
        let key: [u8; 32] = rand::random();
        crate::certs::write_private(path, hex::encode(key).as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let bytes = hex::decode(text.trim()).map_err(|_| err("not hex".into()))?;
    bytes
        .try_into()
        .map_err(|_| err("not 32 bytes of hex".into()))
}

fn sealing_key(kek: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("a 32-byte AES-256 key"))
}

/// hex(nonce ‖ ciphertext ‖ tag) of `plain`, bound to `aad`; `None` only
/// if sealing fails.
pub(crate) fn seal(kek: &[u8; 32], aad: &'static [u8], plain: &[u8]) -> Option<String> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let mut sealed = plain.to_vec();
    sealing_key(kek)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut sealed,
        )
        .ok()?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&sealed);
    Some(hex::encode(out))
}

/// What [`seal`] sealed, if `kek` and `aad` open it.
pub(crate) fn open(
    kek: &[u8; 32],
    aad: &'static [u8],
    sealed_hex: &str,
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let mut bytes = hex::decode(sealed_hex).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let mut body = bytes.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
    let plain = sealing_key(kek)
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .ok()?;
    Some(zeroize::Zeroizing::new(plain.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_use() {
        let kek = [7u8; 32];
        let sealed = seal(&kek, b"use one", b"secret").unwrap();
        assert_eq!(&open(&kek, b"use one", &sealed).unwrap()[..], b"secret");
        assert!(open(&[8u8; 32], b"use one", &sealed).is_none(), "other key");
        assert!(open(&kek, b"use two", &sealed).is_none(), "other use");
        let mut tampered = sealed.clone();
        tampered.replace_range(40..42, if &sealed[40..42] == "00" { "01" } else { "00" });
        assert!(open(&kek, b"use one", &tampered).is_none(), "tampered");
        assert!(open(&kek, b"use one", "00").is_none());
    }
}
