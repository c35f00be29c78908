//! Single sign-on pages on the sign-in host (`auth::oidc` does the
//! protocol):
//! * `GET /login/sso/NAME?rd=&st=`: a signed cookie (`__Host-warren_sso`,
//!   10 minutes) remembers the OAuth state, nonce, PKCE verifier and where
//!   to go; the browser goes to the provider.
//! * `GET /login/sso/NAME/callback?code=&state=`: the state must equal the
//!   cookie's (constant time), the code is exchanged with the verifier, the
//!   ID token verified; then the email must be allowed and belong to a user
//!   (or one is made, with `create_users`), the user's groups follow the
//!   claims, and the visitor is handed off to the resource as after a
//!   password.
//!
//! A single sign-on does not ask Warren's own second factor: the provider's
//! is the one that counts (as with Cloudflare Access). The provider's
//! answer is never shown to the visitor beyond a refused email's reason.

use super::{bad_return, clear_cookie, cookie_header, escape, https_port, page, redirect, SignIn};
use super::{valid_state, with_port};
use crate::auth::oidc::SsoError;
use crate::auth::token::{Claims, Kind};
use crate::proxy::http::body::ResponseBody;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use std::collections::HashMap;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The cookie that carries a sign-on under way.
pub(crate) const SSO_COOKIE: &str = "__Host-warren_sso";
/// How long a visitor may take at the provider.
const SSO_MS: i64 = 600_000;

impl SignIn<'_> {
    fn provider_config(&self, name: &str) -> Option<&crate::config::OidcProvider> {
        self.settings.oidc.iter().find(|p| p.name == name)
    }

    fn callback_url(&self, name: &str) -> String {
        format!(
            "https://{}/login/sso/{name}/callback",
            with_port(&self.settings.host, https_port(self.ctx))
        )
    }

    /// The buttons of the sign-in page, one per provider.
    pub(super) fn sso_buttons(&self, rd: &str, st: &str) -> String {
        self.settings
            .oidc
            .iter()
            .map(|p| {
                let href = format!(
                    "/login/sso/{}?rd={}&st={}",
                    p.name,
                    super::encode(rd),
                    super::encode(st)
                );
                format!(
                    "<p><a class=\"sso\" href=\"{}\">Sign in with {}</a></p>",
                    escape(&href),
                    escape(&p.display_name)
                )
            })
            .collect()
    }

    /// `GET /login/sso/NAME`: off to the provider.
    pub(super) async fn sso_start(
        &self,
        name: &str,
        query: &HashMap<String, String>,
    ) -> Response<ResponseBody> {
        let Some(config) = self.provider_config(name) else {
            return page(
                StatusCode::NOT_FOUND,
                "Sign in",
                "<p>No such sign-in provider.</p>",
            );
        };
        let back = match self.return_to(query.get("rd")) {
            Ok(b) => b,
            Err(why) => return bad_return(why),
        };
        let Some(st) = query.get("st").filter(|s| valid_state(s)) else {
            return redirect(StatusCode::FOUND, &back.url(https_port(self.ctx)));
        };
        let started = match self.state.sso.provider(config) {
            Ok(p) => p.start(&self.callback_url(name)).await,
            Err(e) => Err(e),
        };
        let start = match started {
            Ok(s) => s,
            Err(e) => return self.sso_unavailable(name, &e),
        };
        let now = warren_store::now_ms();
        let claims = Claims {
            sid: start.state,
            uid: name.to_owned(),
            host: self.settings.host.clone(),
            iat: now,
            exp: now + SSO_MS,
            to: Some(back.url(https_port(self.ctx))),
            nonce: Some(start.nonce),
            state: Some(st.clone()),
            pkce: Some(start.pkce),
            ..Claims::default()
        };
        let token = self.state.signer.sign(Kind::Sso, &claims);
        let mut resp = redirect(StatusCode::FOUND, &start.url);
        resp.headers_mut().append(
            header::SET_COOKIE,
            cookie_header(
                SSO_COOKIE,
                &token,
                Some(Duration::from_millis(SSO_MS as u64)),
            ),
        );
        resp
    }

    fn sso_unavailable(&self, name: &str, e: &SsoError) -> Response<ResponseBody> {
        tracing::warn!(event = "sso_failed", client = %self.ctx.client, provider = name, error = %e, "single sign-on failed");
        page(
            StatusCode::BAD_GATEWAY,
            "Sign in",
            "<p>Single sign-on is not available right now. Try again in a moment, or sign in another way.</p>",
        )
    }

    fn sso_refused(&self, name: &str, why: &str, shown: &str) -> Response<ResponseBody> {
        tracing::info!(event = "sso_refused", client = %self.ctx.client, provider = name, reason = why, "single sign-on refused");
        let mut resp = page(
            StatusCode::FORBIDDEN,
            "Sign in",
            &format!("<p>{}</p>", escape(shown)),
        );
        resp.headers_mut()
            .append(header::SET_COOKIE, clear_cookie(SSO_COOKIE));
        resp
    }

    /// `GET /login/sso/NAME/callback`: the provider's answer.
    pub(super) async fn sso_callback(
        &self,
        name: &str,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Response<ResponseBody> {
        let Some(config) = self.provider_config(name) else {
            return page(
                StatusCode::NOT_FOUND,
                "Sign in",
                "<p>No such sign-in provider.</p>",
            );
        };
        let now = warren_store::now_ms();
        let pending = crate::auth::cookie(headers, SSO_COOKIE)
            .and_then(|c| {
                self.state
                    .signer
                    .check(Kind::Sso, c, now, &self.settings.host)
                    .ok()
            })
            .filter(|c| c.uid == name);
        let Some(pending) = pending else {
            return self.sso_refused(
                name,
                "no sign-on under way in this browser (or it expired)",
                "This sign-in was not started in this browser, or took too long. Open the resource again.",
            );
        };
        let state = query.get("state").map(String::as_str).unwrap_or("");
        if !bool::from(state.as_bytes().ct_eq(pending.sid.as_bytes())) {
            return self.sso_refused(
                name,
                "the state does not match this browser's",
                "This sign-in was not started in this browser. Open the resource again.",
            );
        }
        // RFC 9207: a provider that names itself must be this one (an
        // answer from another provider, mixed up, is refused).
        if let Some(iss) = query.get("iss") {
            if iss.trim_end_matches('/') != config.issuer.trim_end_matches('/') {
                let why = format!("the answer names another issuer ({iss})");
                return self.sso_refused(name, &why, "The sign-in provider's answer is not valid.");
            }
        }
        if let Some(error) = query.get("error") {
            let why = format!("the provider answered {error}");
            return self.sso_refused(name, &why, "The sign-in provider did not sign you in.");
        }
        let (Some(code), Some(nonce), Some(pkce), Some(st)) = (
            query.get("code"),
            pending.nonce.as_deref(),
            pending.pkce.as_deref(),
            pending.state.as_deref(),
        ) else {
            return self.sso_refused(name, "no code", "The sign-in provider sent no answer.");
        };
        let back = match self.return_to(pending.to.as_ref()) {
            Ok(b) => b,
            Err(why) => return bad_return(why),
        };
        let finished = match self.state.sso.provider(config) {
            Ok(p) => p.finish(&self.callback_url(name), code, nonce, pkce).await,
            Err(e) => Err(e),
        };
        let who = match finished {
            Ok(who) => who,
            Err(SsoError::Email(e)) => {
                return self.sso_refused(name, &e.to_string(), &format!("Refused: {e}."));
            }
            Err(e @ SsoError::Unverified(_)) => {
                return self.sso_refused(
                    name,
                    &e.to_string(),
                    "Your provider has not verified your email.",
                );
            }
            Err(e) => return self.sso_unavailable(name, &e),
        };
        let user = match self.sso_user(config, &who).await {
            Ok(u) => u,
            Err(resp) => return resp,
        };
        let (identity, set) = self.start_session(&user, "sso");
        let mut resp = self.hand_off(
            &identity,
            &identity.session,
            warren_store::now_ms(),
            &back,
            st,
            Some(set),
        );
        resp.headers_mut()
            .append(header::SET_COOKIE, clear_cookie(SSO_COOKIE));
        resp
    }

    /// The user a sign-on names: existing (not disabled), or made now with
    /// `create_users`; with the claims' groups stored.
    async fn sso_user(
        &self,
        config: &crate::config::OidcProvider,
        who: &crate::auth::oidc::SsoUser,
    ) -> Result<warren_store::UserRecord, Response<ResponseBody>> {
        let actor = format!("sso:{}", config.name);
        let store = &self.ctx.shared.store;
        let existing = self
            .ctx
            .shared
            .catalog
            .load()
            .user_by_email(&who.email)
            .cloned();
        let mut changed = existing.is_none();
        let user = match existing {
            Some(u) if u.disabled => {
                return Err(self.sso_refused(
                    &config.name,
                    &format!("{} is disabled", who.email),
                    "Your account is disabled.",
                ))
            }
            Some(u) => u,
            None if config.create_users => {
                let id = hex::encode(rand::random::<[u8; 6]>());
                match store
                    .create_user(&actor, &id, &who.email, &who.name, None)
                    .await
                {
                    Ok(u) => {
                        tracing::info!(event = "user_created", user = %u.email, provider = %config.name, "a user was made at their first single sign-on");
                        u
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not make the user");
                        return Err(self.sso_store_error());
                    }
                }
            }
            None => {
                return Err(self.sso_refused(
                    &config.name,
                    &format!("no user has the email {}", who.email),
                    &format!(
                        "There is no account for {} here. Ask an administrator to add you.",
                        who.email
                    ),
                ))
            }
        };
        let user = if user.groups != who.groups {
            changed = true;
            match store
                .change_user(
                    &actor,
                    &user.id,
                    warren_store::UserChange::Groups(&who.groups),
                )
                .await
            {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "could not store the user's groups");
                    return Err(self.sso_store_error());
                }
            }
        } else {
            user
        };
        if changed {
            // The resource's host decides with the catalog: bring it up to
            // date before the hand-off lands there.
            crate::api::serve_now(&self.ctx.shared).await;
        }
        Ok(user)
    }

    fn sso_store_error(&self) -> Response<ResponseBody> {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign in",
            "<p>Signing in failed; try again in a moment.</p>",
        )
    }
}
