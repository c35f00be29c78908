//! Who a person is: users' passwords, sign-in limits, signed sessions and
//! the hand-off from the sign-in host to a resource's host. No HTTP here:
//! the pages are `proxy::http::signin`, the decision `crate::access`.
//!
//! A session is a signed token ([`token`]) in a host-only cookie, checked
//! inside the edge on every request with no store read: the signature, the
//! expiry, the host, and the user in the catalog (not disabled, the
//! session issued after their `sessions_after_ms`). The parsing and
//! signing are `warren-identity`'s (sans I/O, fuzzed). Disabling a user or
//! "logout everywhere" moves that time in the store; every edge's catalog
//! follows within the 1 s sync, so those sessions die within it.
//!
//! Sign-in happens on one host of its own (`[auth] host`), which then hands
//! the visitor to the resource's host with a one-use token valid for a
//! minute; the resource's host turns it into its own session cookie.

pub(crate) mod cli;
pub(crate) mod doors;
pub(crate) mod jwt;
pub(crate) mod oidc;
pub(crate) mod password;
pub(crate) mod totp;

pub(crate) use doors::DoorRefused;
pub(crate) use warren_identity::{limits, return_url, token};

use crate::catalog::Catalog;
use std::collections::HashMap;
use std::sync::Mutex;
use token::{Claims, Kind, Signer};

/// The session cookie on a resource's host.
pub(crate) const SESSION_COOKIE: &str = "__Host-warren_session";
/// The session cookie on the sign-in host.
pub(crate) const AUTH_COOKIE: &str = "__Host-warren_auth";
/// Between password and second factor, on the sign-in host (5 minutes).
pub(crate) const PENDING_COOKIE: &str = "__Host-warren_pending";
/// How long the second factor may take.
pub(crate) const PENDING_MS: i64 = 300_000;
/// On a resource's host: the browser that started a sign-in there.
pub(crate) const STATE_COOKIE: &str = "__Host-warren_state";
/// The CSRF cookie of the sign-in forms.
pub(crate) const CSRF_COOKIE: &str = "__Host-warren_csrf";
/// On a resource's host: its own door was opened (password, PIN, link).
pub(crate) const PASS_COOKIE: &str = "__Host-warren_pass";
/// How long a hand-off token lives.
pub(crate) const HANDOFF_MS: i64 = 60_000;
/// At most this many sessions' last use is remembered.
const MAX_ACTIVITY: usize = 100_000;
/// At most this many unexpired hand-offs are remembered as used.
const MAX_USED_HANDOFFS: usize = 100_000;

/// What the edge keeps for sign-in.
pub(crate) struct AuthState {
    pub(crate) signer: Signer,
    pub(crate) limits: limits::Limits,
    /// Password checks, two at a time, 32 waiting.
    pub(crate) verifier: crate::tunnel::credentials::Verifier,
    /// Hand-off nonces already redeemed, with their expiry.
    used: Mutex<HashMap<String, i64>>,
    /// HTTP Basic credentials proven in the last minute: digest → (user, when).
    basic_ok: Mutex<HashMap<[u8; 32], (String, std::time::Instant)>>,
    /// Signed assertions of identity for origins.
    pub(crate) assertions: jwt::Assertions,
    /// TOTP steps already used.
    pub(crate) replay: totp::Replay,
    /// When each session was last used on this edge (for the idle timeout).
    activity: Mutex<HashMap<String, i64>>,
    /// Single sign-on providers.
    pub(crate) sso: oidc::Sso,
    /// `warren login`'s codes waiting for a confirmation.
    pub(crate) devices: cli::DeviceLogins,
    /// SSH certificates asked for, per user and minute.
    pub(crate) ssh_rate: crate::ssh::sign::Rate,
}

/// A signed-in person, as the policy and the origin see them.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// The session (shared by the sign-in host's and every resource's);
    /// `basic:<user id>` for HTTP Basic.
    pub(crate) session: String,
    pub(crate) user_id: String,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
}

impl AuthState {
    /// With the session key and the assertion key pair shared through the
    /// store.
    pub(crate) fn new(session_key: &[u8], assertions: jwt::Assertions) -> AuthState {
        AuthState {
            assertions,
            replay: totp::Replay::default(),
            activity: Mutex::new(HashMap::new()),
            sso: oidc::Sso::default(),
            devices: cli::DeviceLogins::default(),
            ssh_rate: crate::ssh::sign::Rate::default(),
            signer: Signer::new(session_key),
            limits: limits::Limits::default(),
            verifier: crate::tunnel::credentials::Verifier::with_limits(2, 32),
            used: Mutex::new(HashMap::new()),
            basic_ok: Mutex::new(HashMap::new()),
        }
    }

    /// A session token for user `uid` on `host`, signed in at
    /// `signed_in_ms`, valid `lifetime_ms` from then.
    pub(crate) fn session(
        &self,
        uid: &str,
        sid: &str,
        host: &str,
        signed_in_ms: i64,
        lifetime_ms: i64,
    ) -> String {
        self.signer.sign(
            Kind::Session,
            &Claims {
                sid: sid.to_owned(),
                uid: uid.to_owned(),
                host: host.to_owned(),
                iat: signed_in_ms,
                exp: signed_in_ms.saturating_add(lifetime_ms),
                to: None,
                nonce: None,
                totp: None,
                state: None,
                pkce: None,
            },
        )
    }

    /// A one-use hand-off of session `sid` (signed in at `signed_in_ms`)
    /// to `host`, landing on `to`, redeemable only by the browser holding
    /// the state cookie hashed in `state`. The resource's session keeps the
    /// sign-in time, so "logout everywhere" reaches it however late it was
    /// redeemed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handoff(
        &self,
        user_id: &str,
        sid: &str,
        signed_in_ms: i64,
        host: &str,
        to: &str,
        state: &str,
        now_ms: i64,
    ) -> String {
        self.signer.sign(
            Kind::Handoff,
            &Claims {
                sid: sid.to_owned(),
                uid: user_id.to_owned(),
                host: host.to_owned(),
                iat: signed_in_ms,
                exp: now_ms + HANDOFF_MS,
                to: Some(to.to_owned()),
                nonce: Some(hex::encode(rand::random::<[u8; 16]>())),
                totp: None,
                state: Some(state.to_owned()),
                pkce: None,
            },
        )
    }

    /// Redeems a hand-off token on `host`, in the browser holding the
    /// state cookie `state` (its value): its claims, once.
    pub(crate) fn redeem(
        &self,
        token: &str,
        host: &str,
        state: Option<&str>,
        now_ms: i64,
    ) -> Result<Claims, &'static str> {
        let claims = self
            .signer
            .check(Kind::Handoff, token, now_ms, host)
            .map_err(|_| "not a valid hand-off")?;
        let nonce = claims.nonce.clone().ok_or("no nonce")?;
        let presented = state
            .map(|s| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes())))
            .unwrap_or_default();
        let expected = claims.state.as_deref().unwrap_or("");
        let same: bool =
            subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected.as_bytes()).into();
        if expected.is_empty() || !same {
            return Err("not the browser that started this sign-in");
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.len() >= MAX_USED_HANDOFFS {
            used.retain(|_, exp| *exp > now_ms);
            if used.len() >= MAX_USED_HANDOFFS {
                return Err("too many hand-offs in flight");
            }
        }
        if used.insert(nonce, claims.exp).is_some() {
            return Err("already used");
        }
        Ok(claims)
    }

    /// The live person behind a session cookie's value on `host`, with the
    /// time they signed in.
    ///
    /// With `idle_ms`, a session unused that long on this edge is over. A
    /// session this edge has not seen counts from its sign-in (so a restart
    /// ends idle sessions rather than reviving them).
    pub(crate) fn identity(
        &self,
        catalog: &Catalog,
        cookie: &str,
        host: &str,
        now_ms: i64,
        idle_ms: Option<i64>,
    ) -> Option<(Identity, Claims)> {
        let claims = self
            .signer
            .check(Kind::Session, cookie, now_ms, host)
            .ok()?;
        let user = catalog.users.get(&claims.uid)?;
        if user.disabled || claims.iat < user.sessions_after_ms {
            return None;
        }
        if let Some(idle) = idle_ms {
            let mut seen = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            let last = seen.get(&claims.sid).copied().unwrap_or(claims.iat);
            if now_ms.saturating_sub(last) > idle {
                seen.remove(&claims.sid);
                return None;
            }
            if seen.len() >= MAX_ACTIVITY && !seen.contains_key(&claims.sid) {
                seen.retain(|_, at| now_ms.saturating_sub(*at) <= idle);
                if seen.len() >= MAX_ACTIVITY {
                    // Forgotten sessions count from their sign-in: idle
                    // ones end, none is kept alive.
                    seen.clear();
                }
            }
            seen.insert(claims.sid.clone(), now_ms);
        }
        let identity = Identity {
            session: claims.sid.clone(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            groups: user.groups.clone(),
        };
        Some((identity, claims))
    }
}

/// How long proven Basic credentials are trusted without argon2 again.
const BASIC_CACHE: std::time::Duration = std::time::Duration::from_secs(60);
/// The longest `Authorization` header read for Basic.
const MAX_BASIC: usize = 1024;

impl AuthState {
    /// The user behind `Authorization: Basic ...` (email and password),
    /// for scripts. Counts against the sign-in limits; refused for a user
    /// who must pass a second factor (`require_2fa`, or one enrolled):
    /// Basic cannot carry it. Proven credentials are remembered for a
    /// minute (as a digest, compared in constant time by the map), so a
    /// script's every request does not cost an argon2 check.
    pub(crate) async fn basic(
        &self,
        catalog: &Catalog,
        header: &[u8],
        client: std::net::IpAddr,
        require_2fa: bool,
    ) -> Result<Identity, &'static str> {
        use base64::Engine;
        use sha2::Digest;
        if header.len() > MAX_BASIC {
            return Err("too long");
        }
        let text = std::str::from_utf8(header).map_err(|_| "not text")?;
        let b64 = text
            .strip_prefix("Basic ")
            .or_else(|| text.strip_prefix("basic "))
            .ok_or("not Basic")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| "not base64")?;
        let decoded = String::from_utf8(decoded).map_err(|_| "not text")?;
        let (email, password) = decoded.split_once(':').ok_or("no colon")?;
        let email = email.trim().to_ascii_lowercase();
        if email.len() > 254 {
            return Err("email too long");
        }
        let user = catalog.user_by_email(&email).cloned();
        // Checked after the password, so that the answer's timing does not
        // tell which emails exist.
        let needs_second_factor =
            |u: &warren_store::UserRecord| require_2fa || u.totp_secret.is_some();
        let digest: [u8; 32] = sha2::Sha256::new()
            .chain_update(email.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let cached = {
            let cache = self.basic_ok.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&digest)
                .filter(|(_, at)| at.elapsed() < BASIC_CACHE)
                .map(|(uid, _)| uid.clone())
        };
        let live = |u: &warren_store::UserRecord| !u.disabled;
        if let (Some(uid), Some(u)) = (&cached, &user) {
            if *uid == u.id && live(u) && !needs_second_factor(u) {
                return Ok(basic_identity(u));
            }
        }
        let now = std::time::Instant::now();
        self.limits
            .attempt(client, &email, now)
            .map_err(|_| "limited")?;
        let hash = user
            .as_ref()
            .filter(|u| live(u))
            .and_then(|u| u.password_hash.clone());
        let ok = password::check(&self.verifier, hash.as_deref(), password)
            .await
            .map_err(|_| "busy")?;
        let exists = user.is_some();
        let Some(user) = user.filter(|_| ok) else {
            if exists {
                self.limits.failed(&email, now);
            }
            return Err("wrong email or password");
        };
        if needs_second_factor(&user) {
            return Err("the user must pass a second factor, which Basic cannot carry");
        }
        self.limits.succeeded(&email);
        let mut cache = self.basic_ok.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 10_000 {
            cache.retain(|_, (_, at)| at.elapsed() < BASIC_CACHE);
            if cache.len() >= 10_000 {
                cache.clear();
            }
        }
        cache.insert(digest, (user.id.clone(), now));
        Ok(basic_identity(&user))
    }
}

fn basic_identity(u: &warren_store::UserRecord) -> Identity {
    Identity {
        session: format!("basic:{}", u.id),
        user_id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        groups: u.groups.clone(),
    }
}

/// The value of cookie `name` in a request's `Cookie` headers (the first).
pub(crate) fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
