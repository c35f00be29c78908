//! `warren login` on the sign-in host (`auth::cli` keeps the codes and
//! signs the tokens):
//! * `POST /cli/device`: a code pair, as JSON (`device_code`, `user_code`,
//!   `verification_uri`, `verification_uri_complete`, `interval`,
//!   `expires_in`); limited per source.
//! * `POST /cli/token` (a form): `grant_type=device_code&device_code=...`
//!   answers `authorization_pending` until the code is confirmed, then the
//!   tokens; `grant_type=refresh_token&refresh_token=...` a new access
//!   token for a live sign-in. Errors are RFC 6749's JSON (`error`).
//! * `GET /cli/whoami` with `Authorization: Bearer ACCESS`: who it is.
//! * `GET /device?code=...`: in a browser signed in here (else the sign-in
//!   form first), the code and a choice to confirm or refuse it;
//!   `POST /device` (CSRF) records the choice.

use super::{checked_form, escape, https_port, page, read_form, redirect, with_port, SignIn};
use crate::auth::cli::Poll;
use crate::auth::token::{Claims, Kind};
use crate::proxy::http::body::{full, ResponseBody};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Instant;

/// Seconds between polls the command is told to keep.
const INTERVAL_S: u64 = 1;

pub(super) fn json_answer(status: StatusCode, body: Value) -> Response<ResponseBody> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn oauth_error(status: StatusCode, error: &str) -> Response<ResponseBody> {
    json_answer(status, json!({ "error": error }))
}

impl SignIn<'_> {
    fn here(&self) -> String {
        format!(
            "https://{}",
            with_port(&self.settings.host, https_port(self.ctx))
        )
    }

    /// `POST /cli/device`.
    pub(super) fn device_start(&self) -> Response<ResponseBody> {
        let client = self.ctx.client.ip();
        if self
            .state
            .limits
            .attempt(client, "cli:device", Instant::now())
            .is_err()
        {
            return oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down");
        }
        let Some(pair) = self.state.devices.start(warren_store::now_ms()) else {
            return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
        };
        let uri = format!("{}/device", self.here());
        json_answer(
            StatusCode::OK,
            json!({
                "device_code": pair.device_code,
                "user_code": pair.user_code,
                "verification_uri": uri,
                "verification_uri_complete": format!("{uri}?code={}", pair.user_code),
                "interval": INTERVAL_S,
                "expires_in": crate::auth::cli::DEVICE_MS / 1000,
            }),
        )
    }

    /// `POST /cli/token`.
    pub(super) async fn device_token(&self, body: Incoming) -> Response<ResponseBody> {
        let form = match read_form(body).await {
            Ok(f) => f,
            Err(status) => return oauth_error(status, "invalid_request"),
        };
        let now = warren_store::now_ms();
        let host = self.settings.host.clone();
        let tokens = |uid: &str, sid: &str, iat: i64, email: &str| {
            let (access, refresh) = self.state.cli_tokens(uid, sid, iat, &host, now);
            json_answer(
                StatusCode::OK,
                json!({
                    "access_token": access,
                    "refresh_token": refresh,
                    "token_type": "Bearer",
                    "expires_in": crate::auth::cli::ACCESS_MS / 1000,
                    "email": email,
                }),
            )
        };
        let catalog = self.ctx.shared.catalog.load();
        match form.get("grant_type").map(String::as_str) {
            Some("urn:ietf:params:oauth:grant-type:device_code" | "device_code") => {
                let code = form.get("device_code").map(String::as_str).unwrap_or("");
                match self.state.devices.poll(code, now) {
                    Poll::Pending => oauth_error(StatusCode::BAD_REQUEST, "authorization_pending"),
                    Poll::Denied => oauth_error(StatusCode::BAD_REQUEST, "access_denied"),
                    Poll::Expired => oauth_error(StatusCode::BAD_REQUEST, "expired_token"),
                    Poll::Approved(uid, sid, iat) => match catalog.users.get(&uid) {
                        Some(user) if !user.disabled && iat >= user.sessions_after_ms => {
                            tracing::info!(event = "cli_signed_in", client = %self.ctx.client, user = %user.email, "the command line signed in");
                            tokens(&uid, &sid, iat, &user.email)
                        }
                        _ => oauth_error(StatusCode::BAD_REQUEST, "access_denied"),
                    },
                }
            }
            Some("refresh_token") => {
                let token = form.get("refresh_token").map(String::as_str).unwrap_or("");
                match self
                    .state
                    .cli_identity(&catalog, Kind::CliRefresh, token, &host, now)
                {
                    Some((who, claims)) => {
                        tokens(&who.user_id, &claims.sid, claims.iat, &who.email)
                    }
                    None => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                }
            }
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    }

    /// The user of a command-line access token (`Authorization: Bearer`).
    pub(super) fn bearer(&self, headers: &HeaderMap) -> Option<(crate::auth::Identity, Claims)> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let catalog = self.ctx.shared.catalog.load();
        self.state.cli_identity(
            &catalog,
            Kind::CliAccess,
            token.trim(),
            &self.settings.host,
            warren_store::now_ms(),
        )
    }

    /// The 401 for a missing, expired or revoked access token.
    pub(super) fn invalid_token(&self) -> Response<ResponseBody> {
        let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"warren\""),
        );
        resp
    }

    /// `GET /cli/whoami`.
    pub(super) fn whoami(&self, headers: &HeaderMap) -> Response<ResponseBody> {
        match self.bearer(headers) {
            Some((who, claims)) => json_answer(
                StatusCode::OK,
                json!({
                    "email": who.email,
                    "name": who.name,
                    "groups": who.groups,
                    "expires_ms": claims.exp,
                }),
            ),
            None => self.invalid_token(),
        }
    }

    /// `GET /device`.
    pub(super) fn device_page(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        problem: Option<&str>,
    ) -> Response<ResponseBody> {
        let code = query
            .get("code")
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| c.len() <= 16 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .unwrap_or_default();
        let Some((who, _)) = self.signed_in(headers) else {
            // Sign in here first, then back to this page (no hand-off).
            let back = format!("{}/device?code={}", self.here(), super::encode(&code));
            let to = format!("/login?rd={}&st={}", super::encode(&back), "0".repeat(64));
            return redirect(StatusCode::FOUND, &to);
        };
        let (csrf, set) = Self::csrf_token(headers);
        let problem = problem
            .map(|p| format!("<p role=\"alert\" class=\"problem\">{}</p>", escape(p)))
            .unwrap_or_default();
        let waiting = !code.is_empty() && self.state.devices.waiting(&code, warren_store::now_ms());
        let body = if waiting {
            format!(
                "{problem}<p>The command line asks to sign in as <strong>{email}</strong> with the code</p>\
                 <p><strong>{code}</strong></p>\
                 <p>Confirm only a code you see in your own terminal right now.</p>\
                 <form method=\"post\" action=\"/device\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"code\" value=\"{code}\">\
                 <button type=\"submit\" name=\"action\" value=\"approve\">Confirm</button> \
                 <button type=\"submit\" name=\"action\" value=\"deny\">Refuse</button></form>",
                email = escape(&who.email),
                code = escape(&code),
            )
        } else {
            format!(
                "{problem}<p>Enter the code your terminal shows.</p>\
                 <form method=\"get\" action=\"/device\">\
                 <label for=\"code\">Code</label>\
                 <input id=\"code\" name=\"code\" autocomplete=\"off\" required autofocus>\
                 <button type=\"submit\">Next</button></form>"
            )
        };
        let status = if problem.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut resp = page(status, "Sign in the command line", &body);
        if let Some(set) = set {
            resp.headers_mut().append(header::SET_COOKIE, set);
        }
        resp
    }

    /// `POST /device`.
    pub(super) async fn device_confirm(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Response<ResponseBody> {
        let form = match checked_form(headers, body, "Sign in the command line").await {
            Ok(f) => f,
            Err(refused) => return refused,
        };
        let Some((who, claims)) = self.signed_in(headers) else {
            return redirect(StatusCode::SEE_OTHER, "/device");
        };
        let code = form.get("code").cloned().unwrap_or_default();
        let approve = form.get("action").map(String::as_str) == Some("approve");
        let choice = approve.then(|| (who.user_id.clone(), claims.sid.clone(), claims.iat));
        if !self
            .state
            .devices
            .decide(&code, choice, warren_store::now_ms())
        {
            let query = HashMap::new();
            return self.device_page(
                headers,
                &query,
                Some("That code is not waiting (it may have expired)."),
            );
        }
        tracing::info!(event = "cli_code_decided", user = %who.email, approved = approve, "a command-line sign-in code was decided");
        let text = if approve {
            format!(
                "<p>The command line is signed in as <strong>{}</strong>. You can close this page.</p>",
                escape(&who.email)
            )
        } else {
            "<p>Refused: the command line is not signed in.</p>".to_owned()
        };
        page(StatusCode::OK, "Sign in the command line", &text)
    }
}
