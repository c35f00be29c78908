//! The second factor, between the password and the session: a signed
//! "pending" cookie on the sign-in host (5 minutes) says whose password was
//! right and where they are going; `POST /login/2fa` takes a TOTP code or
//! a recovery code. A user without a second factor, when `require_2fa` is
//! set, enrols here: the pending cookie carries the proposed secret (signed,
//! so it cannot be swapped), the page shows it as a QR code, and the first
//! good code stores it with ten recovery codes, shown once.
//!
//! Codes count against the same limits as passwords (per source, per
//! account), and each TOTP code is good once.

use super::{
    bad_return, checked_form, clear_cookie, cookie_header, escape, https_port, page, SignIn,
};
use crate::auth::token::{Claims, Kind};
use crate::auth::{self, return_url, totp, PENDING_COOKIE, PENDING_MS};
use crate::proxy::http::body::ResponseBody;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use std::time::{Duration, Instant};
use warren_store::{UserChange, UserRecord};

impl SignIn<'_> {
    /// After a right password: the pending cookie and the code page.
    pub(super) fn second_factor_start(
        &self,
        headers: &HeaderMap,
        user: &UserRecord,
        back: &return_url::Return,
        st: &str,
    ) -> Response<ResponseBody> {
        let now = warren_store::now_ms();
        let enrol = user.totp_secret.is_none().then(totp::new_secret);
        let claims = Claims {
            sid: hex::encode(rand::random::<[u8; 16]>()),
            uid: user.id.clone(),
            host: self.settings.host.clone(),
            iat: now,
            exp: now + PENDING_MS,
            to: Some(back.url(https_port(self.ctx))),
            nonce: None,
            totp: enrol.clone(),
            state: Some(st.to_owned()),
            pkce: None,
        };
        let token = self.state.signer.sign(Kind::Pending, &claims);
        let mut resp = self.code_page(headers, &user.email, enrol.as_deref(), None);
        resp.headers_mut().append(
            header::SET_COOKIE,
            cookie_header(
                PENDING_COOKIE,
                &token,
                Some(Duration::from_millis(PENDING_MS as u64)),
            ),
        );
        resp
    }

    fn code_page(
        &self,
        headers: &HeaderMap,
        email: &str,
        enrol: Option<&str>,
        problem: Option<&str>,
    ) -> Response<ResponseBody> {
        let (csrf, set) = Self::csrf_token(headers);
        let intro = match enrol {
            Some(secret) => {
                let url = totp::otpauth_url(secret, email, "Warren");
                format!(
                    "<p>Your account needs a second factor. Scan this code with an authenticator \
                     app, then enter the 6-digit code it shows.</p>\
                     <div role=\"img\" aria-label=\"QR code of the key below\">{}</div>\
                     <p>Or type this key: <code>{}</code></p>",
                    totp::qr_svg(&url),
                    escape(secret)
                )
            }
            None => "<p>Enter the 6-digit code from your authenticator app, or one of your \
                     recovery codes.</p>"
                .to_owned(),
        };
        let problem = problem
            .map(|p| format!("<p role=\"alert\" class=\"problem\">{}</p>", escape(p)))
            .unwrap_or_default();
        let body = format!(
            "{intro}{problem}<form method=\"post\" action=\"/login/2fa\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"code\">Code</label>\
             <input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" required autofocus>\
             <button type=\"submit\">Continue</button></form>"
        );
        let status = if problem.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut resp = page(status, "Second factor", &body);
        if let Some(set) = set {
            resp.headers_mut().append(header::SET_COOKIE, set);
        }
        resp
    }

    /// `POST /login/2fa`.
    pub(super) async fn second_factor(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Response<ResponseBody> {
        let form = match checked_form(headers, body, "Second factor").await {
            Ok(f) => f,
            Err(refused) => return refused,
        };
        let now = warren_store::now_ms();
        let pending = auth::cookie(headers, PENDING_COOKIE).and_then(|t| {
            self.state
                .signer
                .check(Kind::Pending, t, now, &self.settings.host)
                .ok()
        });
        let user = pending
            .as_ref()
            .and_then(|p| self.ctx.shared.catalog.load().users.get(&p.uid).cloned())
            .filter(|u| !u.disabled);
        // A pending sign-in from before a "logout everywhere" (or a password
        // change) is dead; an enrolment started before a factor was set
        // elsewhere cannot replace it.
        let user = user.filter(|u| {
            pending.as_ref().is_some_and(|p| {
                p.iat >= u.sessions_after_ms && !(p.totp.is_some() && u.totp_secret.is_some())
            })
        });
        let (Some(pending), Some(user)) = (pending, user) else {
            return page(
                StatusCode::FORBIDDEN,
                "Second factor",
                "<p>This sign-in has expired. Open the resource again to start over.</p>",
            );
        };
        let back = match self.return_to(pending.to.as_ref()) {
            Ok(b) => b,
            Err(why) => return bad_return(why),
        };
        let st = pending.state.clone().unwrap_or_default();
        let client = self.ctx.client.ip();
        if let Err(refused) = self
            .state
            .limits
            .attempt(client, &user.email, Instant::now())
        {
            tracing::warn!(event = "sign_in_limited", client = %client, email = %user.email, refused = ?refused, "second factor refused by the limits");
            return page(
                StatusCode::TOO_MANY_REQUESTS,
                "Second factor",
                "<p>Too many attempts. Wait a minute and try again.</p>",
            );
        }
        let code = form.get("code").map(String::as_str).unwrap_or("");
        let now_s = (now / 1000) as u64;
        let enrolled = match &pending.totp {
            Some(secret) => self
                .state
                .replay
                .check(&user.id, secret, code, now_s)
                .then(|| {
                    let (codes, digests) = totp::recovery_codes();
                    (secret.clone(), codes, digests)
                }),
            None => None,
        };
        // A code from the authenticator (not a recovery code) is a fresh
        // second factor: grants with `within` count from it.
        let (passed, fresh) = match (&pending.totp, &user.totp_secret) {
            (Some(_), _) => (enrolled.is_some(), enrolled.is_some()),
            (None, Some(secret)) => {
                if self.state.replay.check(&user.id, secret, code, now_s) {
                    (true, true)
                } else {
                    (self.use_recovery_code(&user, code).await, false)
                }
            }
            (None, None) => (false, false),
        };
        if !passed {
            self.state.limits.failed(&user.email, Instant::now());
            tracing::info!(event = "sign_in_failed", client = %client, email = %user.email, factor = "totp", "wrong second-factor code");
            return self.code_page(
                headers,
                &user.email,
                pending.totp.as_deref(),
                Some("That code is not right (or was used already)."),
            );
        }
        self.state.limits.succeeded(&user.email);
        if fresh {
            match self
                .ctx
                .shared
                .store
                .record_second_factor(&user.id, now)
                .await
            {
                Ok(()) => crate::api::serve_now(&self.ctx.shared).await,
                Err(e) => tracing::warn!(error = %e, "could not record the second factor"),
            }
        }
        if let Some((secret, codes, digests)) = enrolled {
            let change = UserChange::Totp {
                secret: &secret,
                recovery_hashes: &digests,
            };
            let actor = format!("user:{}", user.email);
            if let Err(e) = self
                .ctx
                .shared
                .store
                .change_user(&actor, &user.id, change)
                .await
            {
                tracing::warn!(error = %e, "could not store the second factor");
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Second factor",
                    "<p>Saving the second factor failed; try again.</p>",
                );
            }
            crate::api::serve_now(&self.ctx.shared).await;
            let (_, set) = self.start_session(&user, "password+totp");
            let list: String = codes
                .iter()
                .map(|c| format!("<li><code>{}</code></li>", escape(c)))
                .collect();
            let onward = format!(
                "/login?rd={}&st={st}",
                super::encode(&back.url(https_port(self.ctx)))
            );
            let body = format!(
                "<p>Your second factor is set. Keep these recovery codes somewhere safe: each \
                 signs you in once if you lose your authenticator. They are not shown again.</p>\
                 <ul>{list}</ul><p><a href=\"{}\">Continue to {}</a></p>",
                escape(&onward),
                escape(&back.host)
            );
            let mut resp = page(StatusCode::OK, "Recovery codes", &body);
            let h = resp.headers_mut();
            h.append(header::SET_COOKIE, set);
            h.append(header::SET_COOKIE, clear_cookie(PENDING_COOKIE));
            return resp;
        }
        let (who, set) = self.start_session(&user, "password+totp");
        let mut resp = self.hand_off(&who, &who.session, now, &back, &st, Some(set));
        resp.headers_mut()
            .append(header::SET_COOKIE, clear_cookie(PENDING_COOKIE));
        resp
    }

    /// Whether `code` is one of the user's unused recovery codes; if so it
    /// is used up (in the store, atomically: two uses cannot both pass).
    async fn use_recovery_code(&self, user: &UserRecord, code: &str) -> bool {
        let digest = totp::recovery_digest(code);
        if code.len() < 8 || !user.recovery_hashes.contains(&digest) {
            return false;
        }
        let actor = format!("user:{}", user.email);
        match self
            .ctx
            .shared
            .store
            .change_user(&actor, &user.id, UserChange::UseRecovery(&digest))
            .await
        {
            Ok(_) => {
                crate::api::serve_now(&self.ctx.shared).await;
                tracing::info!(event = "recovery_code_used", user = %user.email, "a recovery code was used");
                true
            }
            Err(_) => false,
        }
    }
}
