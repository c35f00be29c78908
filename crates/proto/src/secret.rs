//! [`Secret`]: every secret Warren holds in memory (site secrets, API token
//! secrets, webhook keys, mail and database URLs with passwords).
//!
//! It cannot leak by accident: `Debug` and `Display` print `***`, it has no
//! `Serialize` (the one place that must write it, the handshake, says so with
//! [`Secret::serialize_exposed`]), the only comparison is constant-time, and
//! the bytes are zeroed when it is dropped. Reading it takes a call to
//! [`Secret::expose`], which is easy to find in review.

use serde::{Deserialize, Deserializer, Serializer};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A secret string. See the module docs.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(Zeroizing::new(secret.into()))
    }

    /// The secret itself, for the code that must use it (hash it, sign
    /// with it, send it inside an encrypted link).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `other` in time that depends only on the lengths.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other))
    }

    /// Writes the secret in clear, for the serde field that must (the
    /// handshake's `secret`): `#[serde(serialize_with = "Secret::serialize_exposed")]`.
    pub fn serialize_exposed<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.ct_eq(other.expose().as_bytes())
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn compared_whole() {
        let s = Secret::new("abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
        assert!(!s.ct_eq(b"abcd"));
        assert!(!s.ct_eq(b""));
        assert_eq!(s, Secret::new("abc"));
        assert_ne!(s, Secret::new("ABC"));
    }

    #[test]
    fn read_from_serde_and_written_only_on_request() {
        let s: Secret = serde_json::from_str("\"k3y\"").unwrap();
        assert_eq!(s.expose(), "k3y");
        let mut out = Vec::new();
        Secret::serialize_exposed(&s, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"\"k3y\"");
    }
}
