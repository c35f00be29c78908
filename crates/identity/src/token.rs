//! Signed tokens, sans I/O: the session cookie and the one-use hand-off
//! from the auth host to a resource's host.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, kind ||
//! payload))`, at most [`MAX_TOKEN`] bytes. The MAC is checked (in constant
//! time) before the payload is parsed, so nothing a visitor wrote is parsed
//! unless the edge signed it. The kind is in the MAC, so a hand-off token
//! is never a session and a session never a hand-off.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The longest token accepted (longer: refused before any work).
///
/// Room for a return address of [`crate::return_url::MAX_RETURN`] bytes
/// (base64 makes it a third longer) and still under a browser's 4 KiB
/// cookie.
pub const MAX_TOKEN: usize = 3584;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A session cookie on one host.
    Session,
    /// The hand-off from the auth host to a resource's host: one use, a
    /// minute at most.
    Handoff,
    /// Between the password and the second factor, on the sign-in host.
    Pending,
    /// Between the redirect to a single sign-on provider and its answer,
    /// on the sign-in host: `sid` is the OAuth `state`, `uid` the
    /// provider's name, `nonce` the OpenID nonce, `pkce` the PKCE verifier,
    /// `to` the return address and `state` the resource's state hash.
    Sso,
    /// A resource's own door opened (password, PIN or share link), on that
    /// resource's host: `sid` is the resource, `uid` the door (`pin`,
    /// `password` or `link:ID`).
    Pass,
    /// The command line's access token (`warren login`), an hour long:
    /// `sid` the session, `uid` the user, `iat` the sign-in.
    CliAccess,
    /// The command line's refresh token, good for new access tokens until
    /// its expiry or the user's sessions end.
    CliRefresh,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Session => b"warren-session-v1\0",
            Kind::Handoff => b"warren-handoff-v1\0",
            Kind::Pending => b"warren-pending-v1\0",
            Kind::Sso => b"warren-sso-v1\0",
            Kind::Pass => b"warren-pass-v1\0",
            Kind::CliAccess => b"warren-cli-access-v1\0",
            Kind::CliRefresh => b"warren-cli-refresh-v1\0",
        }
    }
}

/// What a token says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Session id (random), shared by the auth host's session and every
    /// resource session it handed off.
    pub sid: String,
    /// The user's id.
    pub uid: String,
    /// The host it is valid on.
    pub host: String,
    /// Issued (Unix ms).
    pub iat: i64,
    /// Expires (Unix ms).
    pub exp: i64,
    /// For a hand-off: where to go on the resource's host (a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// For a hand-off: its one-use nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// While enrolling a second factor: the TOTP secret proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// For a hand-off (and the pending step before it): the SHA-256 (hex)
    /// of the state cookie the resource's host set in the browser that
    /// started the sign-in; only that browser can redeem it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For a single sign-on under way: the PKCE code verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce: Option<String>,
}

/// Why a token was refused. The visitor is told none of it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Over [`MAX_TOKEN`].
    #[error("longer than {MAX_TOKEN} bytes")]
    TooLong,
    /// Not `base64url.base64url`.
    #[error("not two base64url parts")]
    Malformed,
    /// Not signed by this key as this kind.
    #[error("bad signature")]
    BadSignature,
    /// Signed, but its payload does not parse (another version's).
    #[error("signed, but not a token of this version")]
    BadPayload,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Signed for another host.
    #[error("for another host")]
    WrongHost,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Signs and checks tokens with one key.
pub struct Signer {
    /// Keyed once (the key's inner and outer pads hashed); cloned per token.
    keyed: HmacSha256,
}

impl Signer {
    /// A signer with `secret` (at least 32 bytes of randomness).
    pub fn new(secret: &[u8]) -> Signer {
        use hmac::Mac;
        Signer {
            keyed: HmacSha256::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    fn mac(&self, kind: Kind, payload: &[u8]) -> HmacSha256 {
        use hmac::Mac;
        let mut mac = self.keyed.clone();
        mac.update(kind.label());
        mac.update(payload);
        mac
    }

    /// The token for `claims`.
    pub fn sign(&self, kind: Kind, claims: &Claims) -> String {
        use hmac::Mac;
        let payload = serde_json::to_vec(claims).expect("claims serialise");
        let tag = self.mac(kind, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The claims of `token` if this key signed it as `kind`, it has not
    /// expired at `now_ms`, and it is for `host`.
    pub fn check(
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
        {
            use hmac::Mac;
            self.mac(kind, &payload)
                .verify_slice(&tag)
                .map_err(|_| TokenError::BadSignature)?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            sid: "s".into(),
            uid: "u".into(),
            host: "app.example.com".into(),
            iat: 1_000,
            exp: 2_000,
            to: None,
            nonce: None,
            totp: None,
            state: None,
            pkce: None,
        }
    }

    #[test]
    fn a_token_checks_only_as_signed_for_its_kind_host_and_time() {
        let signer = Signer::new(&[7; 32]);
        let t = signer.sign(Kind::Session, &claims());
        assert_eq!(
            signer.check(Kind::Session, &t, 1_500, "APP.example.com"),
            Ok(claims())
        );
        assert_eq!(
            signer.check(Kind::Handoff, &t, 1_500, "app.example.com"),
            Err(TokenError::BadSignature),
            "a session is no hand-off"
        );
        assert_eq!(
            signer.check(Kind::Session, &t, 2_000, "app.example.com"),
            Err(TokenError::Expired)
        );
        assert_eq!(
            signer.check(Kind::Session, &t, 1_500, "other.example.com"),
            Err(TokenError::WrongHost)
        );
        let other = Signer::new(&[8; 32]);
        assert_eq!(
            other.check(Kind::Session, &t, 1_500, "app.example.com"),
            Err(TokenError::BadSignature),
            "another key"
        );
        // One character of the payload changed: the signature no longer holds.
        let mut bytes = t.into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            signer.check(Kind::Session, &tampered, 1_500, "app.example.com"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            signer.check(Kind::Session, &"a".repeat(MAX_TOKEN + 1), 0, "x"),
            Err(TokenError::TooLong)
        );
        assert_eq!(
            signer.check(Kind::Session, "no-dot", 0, "x"),
            Err(TokenError::Malformed)
        );
    }
}
