//! `warren login`: a device-code sign-in for the command line (after RFC
//! 8628), against the sign-in host. The command asks for a code pair, the
//! person confirms the short code on the sign-in host's `/device` page in
//! a browser where they are signed in, and the command's polling turns
//! into an access token (an hour) and a refresh token (30 days), both
//! signed tokens tied to that browser session's sign-in: "logout
//! everywhere" and disabling the user end them as they end sessions.
//!
//! Pending codes live in this edge's memory, bounded ([`MAX_PENDING`]) and
//! ten minutes long: the command must poll the edge it started on.

use super::{AuthState, Catalog, Claims, Identity, Kind};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a code pair waits for its confirmation.
pub(crate) const DEVICE_MS: i64 = 600_000;
/// How long an access token lives.
pub(crate) const ACCESS_MS: i64 = 3_600_000;
/// How long a refresh token lives.
pub(crate) const REFRESH_MS: i64 = 30 * 24 * 3_600_000;
/// At most this many codes wait at once.
const MAX_PENDING: usize = 1024;
/// The letters of a short code: no vowels (no words), no look-alikes.
const CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

struct Pending {
    user_code: String,
    expires_ms: i64,
    /// The confirming session: (user id, session id, signed in at).
    approved: Option<(String, String, i64)>,
    denied: bool,
}

/// The codes waiting for a confirmation.
#[derive(Default)]
pub(crate) struct DeviceLogins {
    /// By the SHA-256 of the device code.
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

/// A new code pair.
pub(crate) struct CodePair {
    pub(crate) device_code: String,
    pub(crate) user_code: String,
}

/// What a poll finds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// Not confirmed yet.
    Pending,
    /// Confirmed by this session: (user id, session id, signed in at).
    Approved(String, String, i64),
    /// Refused on the page.
    Denied,
    /// Unknown, used or expired.
    Expired,
}

fn digest(s: &str) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()).into()
}

impl DeviceLogins {
    /// A new code pair, or `None` when [`MAX_PENDING`] are waiting.
    pub(crate) fn start(&self, now_ms: i64) -> Option<CodePair> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.expires_ms > now_ms);
        if pending.len() >= MAX_PENDING {
            return None;
        }
        let device_code = hex::encode(rand::random::<[u8; 32]>());
        let letters: String = (0..8)
            .map(|_| CODE_ALPHABET[rand::random_range(0..CODE_ALPHABET.len())] as char)
            .collect();
        let user_code = format!("{}-{}", &letters[..4], &letters[4..]);
        pending.insert(
            digest(&device_code),
            Pending {
                user_code: user_code.clone(),
                expires_ms: now_ms + DEVICE_MS,
                approved: None,
                denied: false,
            },
        );
        Some(CodePair {
            device_code,
            user_code,
        })
    }

    /// Confirms (or refuses) the waiting `user_code` for a session; false
    /// when no such code waits.
    pub(crate) fn decide(
        &self,
        user_code: &str,
        approve: Option<(String, String, i64)>,
        now_ms: i64,
    ) -> bool {
        let code = user_code.trim().to_ascii_uppercase();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.values_mut().find(|p| {
            p.expires_ms > now_ms
                && p.approved.is_none()
                && !p.denied
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    p.user_code.as_bytes(),
                    code.as_bytes(),
                ))
        }) else {
            return false;
        };
        match approve {
            Some(who) => p.approved = Some(who),
            None => p.denied = true,
        }
        true
    }

    /// Whether a `user_code` waits (for the page).
    pub(crate) fn waiting(&self, user_code: &str, now_ms: i64) -> bool {
        let code = user_code.trim().to_ascii_uppercase();
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.values().any(|p| {
            p.expires_ms > now_ms && p.approved.is_none() && !p.denied && p.user_code == code
        })
    }

    /// The state of `device_code`; a confirmed or refused one is gone after.
    pub(crate) fn poll(&self, device_code: &str, now_ms: i64) -> Poll {
        let key = digest(device_code);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.get(&key) else {
            return Poll::Expired;
        };
        if p.expires_ms <= now_ms {
            pending.remove(&key);
            return Poll::Expired;
        }
        if p.denied {
            pending.remove(&key);
            return Poll::Denied;
        }
        match pending.get(&key).and_then(|p| p.approved.clone()) {
            Some((uid, sid, iat)) => {
                pending.remove(&key);
                Poll::Approved(uid, sid, iat)
            }
            None => Poll::Pending,
        }
    }
}

impl AuthState {
    /// The command line's token pair for session `sid` of user `uid`
    /// (signed in at `iat`), on the sign-in host `host`.
    pub(crate) fn cli_tokens(
        &self,
        uid: &str,
        sid: &str,
        iat: i64,
        host: &str,
        now_ms: i64,
    ) -> (String, String) {
        let claims = |exp| Claims {
            sid: sid.to_owned(),
            uid: uid.to_owned(),
            host: host.to_owned(),
            iat,
            exp,
            ..Claims::default()
        };
        (
            self.signer
                .sign(Kind::CliAccess, &claims(now_ms + ACCESS_MS)),
            self.signer
                .sign(Kind::CliRefresh, &claims(now_ms + REFRESH_MS)),
        )
    }

    /// The live person behind a command-line token of `kind`: signed here,
    /// not expired, the user not disabled and the sign-in not ended.
    pub(crate) fn cli_identity(
        &self,
        catalog: &Catalog,
        kind: Kind,
        token: &str,
        host: &str,
        now_ms: i64,
    ) -> Option<(Identity, Claims)> {
        let claims = self.signer.check(kind, token, now_ms, host).ok()?;
        let user = catalog.users.get(&claims.uid)?;
        if user.disabled || claims.iat < user.sessions_after_ms {
            return None;
        }
        Some((
            Identity {
                session: claims.sid.clone(),
                user_id: user.id.clone(),
                email: user.email.clone(),
                name: user.name.clone(),
                groups: user.groups.clone(),
            },
            claims,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_confirmed_once_and_expires() {
        let logins = DeviceLogins::default();
        let pair = logins.start(0).unwrap();
        assert_eq!(logins.poll(&pair.device_code, 1), Poll::Pending);
        assert!(!logins.decide("BCDF-GHJK-wrong", Some(("u".into(), "s".into(), 0)), 1));
        assert!(logins.decide(
            &pair.user_code.to_ascii_lowercase(),
            Some(("u".into(), "s".into(), 0)),
            1
        ));
        assert!(!logins.decide(&pair.user_code, None, 1), "decided once");
        assert_eq!(
            logins.poll(&pair.device_code, 2),
            Poll::Approved("u".into(), "s".into(), 0)
        );
        assert_eq!(logins.poll(&pair.device_code, 3), Poll::Expired, "used");
        let late = logins.start(0).unwrap();
        assert_eq!(logins.poll(&late.device_code, DEVICE_MS), Poll::Expired);
        for _ in 0..MAX_PENDING {
            logins.start(10).unwrap();
        }
        assert!(logins.start(10).is_none(), "bounded");
    }
}
