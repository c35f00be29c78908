//! The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one step of
//! skew either way, as authenticator apps expect), via `totp-rs`; its
//! enrolment QR code (SVG, `qrcode`); recovery codes, stored as SHA-256
//! digests. A code is good once: the last step each user passed with is
//! remembered, and a code of that step or an earlier one is refused.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use totp_rs::{Builder, Secret};

/// How many recovery codes an enrolment gives.
pub(crate) const RECOVERY_CODES: usize = 10;
/// At most this many users' last steps are remembered.
const MAX_REMEMBERED: usize = 100_000;

/// A new secret, base32 (160 random bits).
pub(crate) fn new_secret() -> String {
    Secret::from(rand::random::<[u8; 20]>()).to_base32()
}

fn totp(secret_b32: &str) -> Option<totp_rs::Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new().with_secret(secret).with_skew(1).build().ok()
}

/// `otpauth://` URL for an authenticator app.
pub(crate) fn otpauth_url(secret_b32: &str, email: &str, issuer: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(email),
        enc(issuer)
    )
}

/// The QR code of `text`, as inline SVG.
pub(crate) fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
        Err(_) => String::new(),
    }
}

/// Fresh recovery codes (shown once) and their digests (stored).
pub(crate) fn recovery_codes() -> (Vec<String>, Vec<String>) {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            (0..10)
                .map(|i| {
                    if i == 5 {
                        '-'
                    } else {
                        ALPHABET[rand::random_range(0..ALPHABET.len())] as char
                    }
                })
                .collect()
        })
        .collect();
    let digests = codes.iter().map(|c| recovery_digest(c)).collect();
    (codes, digests)
}

/// The stored digest of a recovery code as typed (case and spaces ignored).
pub(crate) fn recovery_digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    hex::encode(Sha256::digest(normal.as_bytes()))
}

/// Which steps each user last passed with.
#[derive(Default)]
pub(crate) struct Replay {
    last: Mutex<HashMap<String, u64>>,
}

impl Replay {
    /// Whether `code` is good for `secret_b32` at `now_s` and not used yet
    /// by `user`; a good code is marked used.
    pub(crate) fn check(&self, user: &str, secret_b32: &str, code: &str, now_s: u64) -> bool {
        let Some(totp) = totp(secret_b32) else {
            return false;
        };
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(step) = totp.check(&code, now_s) else {
            return false;
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(user).is_some_and(|l| step <= *l) {
            return false;
        }
        if last.len() >= MAX_REMEMBERED && !last.contains_key(user) {
            // Steps older than the skew can no longer pass anyway.
            let now_step = now_s / 30;
            last.retain(|_, s| *s + 2 >= now_step);
        }
        last.insert(user.to_owned(), step);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_passes_once_within_its_window() {
        let secret = new_secret();
        let t = totp(&secret).unwrap();
        let now = 1_800_000_000;
        let code = t.generate(now).to_string();
        let replay = Replay::default();
        assert!(replay.check("u", &secret, &code, now + 20));
        assert!(
            !replay.check("u", &secret, &code, now + 20),
            "a code is good once"
        );
        let later = t.generate(now + 30).to_string();
        assert!(replay.check("u", &secret, &later, now + 30));
        let old = t.generate(now - 300).to_string();
        assert!(
            !Replay::default().check("v", &secret, &old, now),
            "out of the window"
        );
        assert!(
            !Replay::default().check("v", &secret, "12345", now),
            "not six digits"
        );
        assert!(!Replay::default().check("v", "not base32!", &code, now));
    }

    #[test]
    fn recovery_codes_are_stored_only_as_digests_and_typed_loosely() {
        let (codes, digests) = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(recovery_digest(&codes[0].to_ascii_uppercase()), digests[0]);
        assert_eq!(recovery_digest(&format!(" {} ", codes[1])), digests[1]);
        assert!(!digests.contains(&codes[0]));
        assert!(otpauth_url("ABC", "a@b.co", "Warren")
            .starts_with("otpauth://totp/Warren:a%40b.co?secret=ABC"));
        assert!(qr_svg("otpauth://totp/x").contains("<svg"));
    }
}
