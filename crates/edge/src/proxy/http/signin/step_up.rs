//! The escalated tier's step: `GET /step-up` on the sign-in host shows a
//! signed-in user a form for a TOTP code; `POST /step-up` (CSRF, the
//! sign-in limits) checks it (a code is good once) and records the time
//! (`users.second_factor_ms`). Grants with `within = "15m"` then allow that
//! user — on their devices, through `warren connect` — for that long, and
//! their flows are cut when it has passed. A second factor passed at
//! sign-in counts the same. A recovery code does not: it proves no device.

use super::{checked_form, escape, page, redirect, SignIn};
use crate::proxy::http::body::ResponseBody;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use std::time::Instant;

const TITLE: &str = "Step up";

impl SignIn<'_> {
    /// `GET /step-up`.
    pub(super) fn step_up_page(
        &self,
        headers: &HeaderMap,
        problem: Option<&str>,
    ) -> Response<ResponseBody> {
        let Some((who, _)) = self.signed_in(headers) else {
            let back = super::step_up_url(self.ctx).unwrap_or_default();
            let to = format!("/login?rd={}&st={}", super::encode(&back), "0".repeat(64));
            return redirect(StatusCode::FOUND, &to);
        };
        let has_totp = self
            .ctx
            .shared
            .catalog
            .load()
            .users
            .get(&who.user_id)
            .is_some_and(|u| u.totp_secret.is_some());
        if !has_totp {
            return page(
                StatusCode::CONFLICT,
                TITLE,
                "<p>You have no second factor yet: one is set up at sign-in when the edge asks for it.</p>",
            );
        }
        let (csrf, set) = Self::csrf_token(headers);
        let problem = problem
            .map(|p| format!("<p role=\"alert\" class=\"problem\">{}</p>", escape(p)))
            .unwrap_or_default();
        let body = format!(
            "{problem}<p>Signed in as <strong>{email}</strong>. A code from your authenticator opens \
             what the policy grants only after a recent second factor, for the time it says.</p>\
             <form method=\"post\" action=\"/step-up\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"code\">Code</label>\
             <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\
             <button type=\"submit\">Step up</button></form>",
            email = escape(&who.email)
        );
        let status = if problem.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut resp = page(status, TITLE, &body);
        if let Some(set) = set {
            resp.headers_mut().append(header::SET_COOKIE, set);
        }
        resp
    }

    /// `POST /step-up`.
    pub(super) async fn step_up(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Response<ResponseBody> {
        let form = match checked_form(headers, body, TITLE).await {
            Ok(f) => f,
            Err(refused) => return refused,
        };
        let Some((who, _)) = self.signed_in(headers) else {
            return redirect(StatusCode::SEE_OTHER, "/step-up");
        };
        let user = self
            .ctx
            .shared
            .catalog
            .load()
            .users
            .get(&who.user_id)
            .cloned();
        let Some(secret) = user.and_then(|u| u.totp_secret) else {
            return self.step_up_page(headers, None);
        };
        let client = self.ctx.client.ip();
        if self
            .state
            .limits
            .attempt(client, &who.email, Instant::now())
            .is_err()
        {
            tracing::warn!(event = "step_up_limited", client = %client, email = %who.email, "a step-up refused by the limits");
            return page(
                StatusCode::TOO_MANY_REQUESTS,
                TITLE,
                "<p>Too many attempts. Wait a minute and try again.</p>",
            );
        }
        let code = form.get("code").map(String::as_str).unwrap_or("");
        let now = warren_store::now_ms();
        if !self
            .state
            .replay
            .check(&who.user_id, &secret, code, (now / 1000) as u64)
        {
            self.state.limits.failed(&who.email, Instant::now());
            tracing::info!(event = "step_up_failed", client = %client, email = %who.email, "a wrong step-up code");
            return self.step_up_page(
                headers,
                Some("That code is not right (or was used already)."),
            );
        }
        self.state.limits.succeeded(&who.email);
        if let Err(e) = self
            .ctx
            .shared
            .store
            .record_second_factor(&who.user_id, now)
            .await
        {
            tracing::warn!(error = %e, "could not record the second factor");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                TITLE,
                "<p>Recording the step-up failed; try again.</p>",
            );
        }
        crate::api::serve_now(&self.ctx.shared).await;
        tracing::info!(event = "stepped_up", client = %client, email = %who.email, "a user passed a second factor to step up");
        page(
            StatusCode::OK,
            TITLE,
            "<p>Done: what the policy grants after a recent second factor is open to you now, \
             for as long as it says.</p>",
        )
    }
}
