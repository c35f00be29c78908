//! Users' passwords: argon2id hashes, made and checked on the blocking pool
//! (checks through their own bounded [`Verifier`], so a flood of sign-ins
//! cannot hold up agents' or API keys' checks).

use crate::tunnel::credentials::{SiteSecret, Verifier};
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHasher};
use std::sync::OnceLock;
use warren_proto::Secret;

/// A generated password: 20 characters of an alphabet without look-alikes
/// (about 100 bits).
pub(crate) fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3479";
    (0..20)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hash_now(password: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// The argon2id PHC string of `password`.
pub(crate) async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|e| e.to_string())
}

/// A hash no password matches, checked for unknown emails so that they
/// cost what a wrong password costs.
fn dummy() -> &'static SiteSecret {
    static DUMMY: OnceLock<SiteSecret> = OnceLock::new();
    DUMMY.get_or_init(|| {
        SiteSecret::from_hash(&hash_now(&generate())).expect("a fresh argon2 hash parses")
    })
}

/// Whether `password` matches `stored` (an argon2 PHC string; `None`: no
/// such user or no password, which costs the same and fails).
pub(crate) async fn check(
    verifier: &Verifier,
    stored: Option<&str>,
    password: &str,
) -> Result<bool, crate::tunnel::credentials::Busy> {
    let expected = stored.and_then(|h| SiteSecret::from_hash(h).ok());
    let known = expected.is_some();
    let expected = expected.unwrap_or_else(|| dummy().clone());
    let ok = verifier
        .check(Some(expected), Secret::new(password.to_owned()))
        .await?;
    Ok(ok && known)
}
