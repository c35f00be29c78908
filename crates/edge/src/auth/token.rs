//! Signed tokens, sans I/O: the session cookie and the one-use hand-off
//! from the auth host to a resource's host.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, kind ||
//! payload))`, at most [`MAX_TOKEN`] bytes. The MAC is checked (in constant
//! time) before the payload is parsed, so nothing a visitor wrote is parsed
//! unless the edge signed it. The kind is in the MAC, so a hand-off token
//! is never a session and a session never a hand-off.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The longest token accepted (longer: refused before any work).
pub(crate) const MAX_TOKEN: usize = 1024;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A session cookie on one host.
    Session,
    /// The hand-off from the auth host to a resource's host: one use, a
    /// minute at most.
    Handoff,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Session => b"warren-session-v1\0",
            Kind::Handoff => b"warren-handoff-v1\0",
        }
    }
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// Session id (random), shared by the auth host's session and every
    /// resource session it handed off.
    pub(crate) sid: String,
    /// The user's id.
    pub(crate) uid: String,
    /// The host it is valid on.
    pub(crate) host: String,
    /// Issued (Unix ms).
    pub(crate) iat: i64,
    /// Expires (Unix ms).
    pub(crate) exp: i64,
    /// For a hand-off: where to go on the resource's host (a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
    /// For a hand-off: its one-use nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

/// Why a token was refused. The visitor is told none of it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("longer than {MAX_TOKEN} bytes")]
    TooLong,
    #[error("not two base64url parts")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("signed, but not a token of this version")]
    BadPayload,
    #[error("expired")]
    Expired,
    #[error("for another host")]
    WrongHost,
}

/// Signs and checks tokens with one key.
pub(crate) struct Signer {
    key: hmac::Key,
}

impl Signer {
    /// A signer with `secret` (at least 32 bytes of randomness).
    pub(crate) fn new(secret: &[u8]) -> Signer {
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The token for `claims`.
    pub(crate) fn sign(&self, kind: Kind, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialise");
        let tag = hmac::sign(&self.key, &[kind.label(), &payload].concat());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The claims of `token` if this key signed it as `kind`, it has not
    /// expired at `now_ms`, and it is for `host`.
    pub(crate) fn check(
        &self,
        kind: Kind,
        token: &str,
        now_ms: i64,
        host: &str,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::TooLong);
        }
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, &[kind.label(), &payload].concat(), &tag)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::BadPayload)?;
        if now_ms >= claims.exp {
            return Err(TokenError::Expired);
        }
        if !claims.host.eq_ignore_ascii_case(host) {
            return Err(TokenError::WrongHost);
        }
        Ok(claims)
    }
}
