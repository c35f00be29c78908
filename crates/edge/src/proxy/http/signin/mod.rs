//! Phase 1b, sign-in: the requests the edge answers itself before routing.
//!
//! On the sign-in host (`[auth] host`):
//! * `GET /login?rd=URL`: the form (or, already signed in there, straight
//!   on to the hand-off). `rd` must be an https URL of a resource this edge
//!   serves (`auth::return_url`); anything else is refused, never followed.
//! * `POST /login`: CSRF token (double-submit, `__Host-` cookie) checked
//!   first, then the limits per source and per account, then the password
//!   (argon2id, bounded pool; an unknown email costs the same). On success
//!   a session cookie for the sign-in host and a 303 to the resource's
//!   host with a one-use hand-off token; or, for a user with a second
//!   factor (or everyone, with `require_2fa`), its page first
//!   ([`second_factor`]: `POST /login/2fa`, TOTP or a recovery code, and
//!   enrolment with a QR code and recovery codes shown once).
//! * `GET /logout` (a form) and `POST /logout`: ends every session of the
//!   user, on every edge (the store's `sessions_after_ms`).
//! * `GET /.well-known/warren/jwks.json`: the public key of the
//!   `Warren-Jwt-Assertion` the origins get (`auth::jwt`).
//!
//! On a resource's host, `/.warren/session?token=` redeems a hand-off into
//! that host's own session cookie and sends the browser on to where it was
//! going; `/.warren/logout` goes to the sign-in host's logout.
//!
//! Every page is plain HTML, without JavaScript, and never cached.

mod connect;
mod device;
mod doors;
mod second_factor;
mod ssh;
mod sso;
mod step_up;

pub(crate) use doors::{link as door_link, LINK_PARAM};

use crate::auth::{
    self, return_url, Identity, AUTH_COOKIE, CSRF_COOKIE, SESSION_COOKIE, STATE_COOKIE,
};
use crate::config::AuthSettings;
use crate::proxy::http::body::{full, ResponseBody};
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::request::Head;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The largest sign-in form accepted.
const MAX_FORM: usize = 16 * 1024;
/// The longest email looked at (longer: treated as unknown).
pub(crate) const MAX_EMAIL: usize = 254;
/// How long a client may take to send it.
const FORM_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers `req` if it is the sign-in phase's; otherwise hands it back to
/// go on to routing.
pub(crate) async fn intercept(
    ctx: &ConnContext,
    req: Request<Incoming>,
    head: &Head,
) -> Result<Response<ResponseBody>, Request<Incoming>> {
    if let Some(rest @ ("door" | "signin")) = head.path.strip_prefix("/.warren/") {
        return Ok(doors::door(ctx, req, head, rest)
            .await
            .unwrap_or_else(|| page(StatusCode::NOT_FOUND, "Not found", "<p>No such page.</p>")));
    }
    let config = ctx.shared.config.load_full();
    let Some(settings) = config.auth.as_ref() else {
        return Err(req);
    };
    let sign_in = SignIn {
        ctx,
        settings,
        state: &ctx.shared.auth,
    };
    if head.host == settings.host {
        return Ok(sign_in.auth_host(req, head).await);
    }
    if let Some(rest) = head.path.strip_prefix("/.warren/") {
        return Ok(sign_in.resource_host(&req, head, rest));
    }
    Err(req)
}

/// The answer for a visitor the policy would refuse for want of a sign-in
/// or a door: a browser goes to the resource's door page (where it takes a
/// password or PIN) or to the sign-in page; any other client gets a 401
/// (offering Basic where the resource takes it).
pub(crate) fn challenge(
    ctx: &ConnContext,
    req: &Request<Incoming>,
    head: &Head,
    resource: &crate::config::Resource,
) -> Option<Response<ResponseBody>> {
    let browser = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    let here = head.uri.path_and_query().map_or("/", |p| p.as_str());
    if browser && resource.doors.page() {
        return Some(redirect(
            StatusCode::FOUND,
            &format!("/.warren/door?rd={}", encode(here)),
        ));
    }
    let signs_in = resource.login && ctx.shared.config.load().auth.is_some();
    if !(signs_in || resource.basic || resource.doors.page() || resource.doors.link) {
        // Nothing a visitor could present here: a plain refusal.
        return None;
    }
    if !browser {
        let mut resp = page(
            StatusCode::UNAUTHORIZED,
            "Sign-in required",
            "<p>This resource needs a signed-in user.</p>",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(if resource.basic {
                "Basic realm=\"warren\", charset=\"UTF-8\""
            } else {
                "Bearer realm=\"warren\""
            }),
        );
        return Some(resp);
    }
    if !resource.login {
        return None;
    }
    login_redirect(ctx, &head.host, here)
}

/// A browser off to the sign-in host, to come back to `here` (a path and
/// query) on `host`; `None` without `[auth]`.
fn login_redirect(ctx: &ConnContext, host: &str, here: &str) -> Option<Response<ResponseBody>> {
    let config = ctx.shared.config.load();
    let settings = config.auth.as_ref()?;
    let port = https_port(ctx);
    let here = format!("https://{}{here}", with_port(host, port));
    // This browser's state: only it can redeem the hand-off that comes back.
    let state = hex::encode(rand::random::<[u8; 16]>());
    let st = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(state.as_bytes()));
    let login = format!(
        "https://{}/login?rd={}&st={st}",
        with_port(&settings.host, port),
        encode(&here)
    );
    let mut resp = redirect(StatusCode::FOUND, &login);
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(STATE_COOKIE, &state, Some(Duration::from_secs(600))),
    );
    Some(resp)
}

struct SignIn<'a> {
    ctx: &'a ConnContext,
    settings: &'a AuthSettings,
    state: &'a auth::AuthState,
}

impl SignIn<'_> {
    async fn auth_host(&self, req: Request<Incoming>, head: &Head) -> Response<ResponseBody> {
        let query = query_map(head);
        if head.path == "/cli/ssh/connect" && req.method() == Method::GET {
            // Kept whole: the connection is upgraded.
            return self.ssh_connect(req, &query).await;
        }
        if head.path == "/cli/connect" && req.method() == Method::GET {
            return self.connect(req, &query).await;
        }
        let (parts, body) = req.into_parts();
        match (parts.method.clone(), head.path.as_str()) {
            (Method::GET, "/login") => self.login_form(&parts.headers, &query, None),
            (Method::POST, "/login") => self.login(&parts.headers, body).await,
            (Method::POST, "/login/2fa") => self.second_factor(&parts.headers, body).await,
            (Method::GET, path) if path.starts_with("/login/sso/") => {
                let rest = &path["/login/sso/".len()..];
                match rest.split_once('/') {
                    None => self.sso_start(rest, &query).await,
                    Some((name, "callback")) => {
                        self.sso_callback(name, &parts.headers, &query).await
                    }
                    Some(_) => page(StatusCode::NOT_FOUND, "Not found", "<p>No such page.</p>"),
                }
            }
            (Method::POST, "/cli/device") => self.device_start(),
            (Method::POST, "/cli/token") => self.device_token(body).await,
            (Method::GET, "/cli/whoami") => self.whoami(&parts.headers),
            (Method::POST, "/cli/ssh/sign") => self.ssh_sign(&parts.headers, body).await,
            (Method::GET, "/device") => self.device_page(&parts.headers, &query, None),
            (Method::GET, "/step-up") => self.step_up_page(&parts.headers, None),
            (Method::POST, "/step-up") => self.step_up(&parts.headers, body).await,
            (Method::POST, "/device") => self.device_confirm(&parts.headers, body).await,
            (Method::GET, "/logout") => self.logout_form(&parts.headers),
            (Method::POST, "/logout") => self.logout(&parts.headers, body).await,
            (Method::GET, "/.well-known/warren/jwks.json") => {
                let mut resp = Response::new(full(self.state.assertions.jwks().to_string()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=300"),
                );
                resp
            }
            _ => page(StatusCode::NOT_FOUND, "Not found", "<p>No such page.</p>"),
        }
    }

    fn return_to(&self, rd: Option<&String>) -> Result<return_url::Return, &'static str> {
        let rd = rd.ok_or("no return address")?;
        let table = self.ctx.shared.resources.load();
        // A resource's host, or this host's own pages (`/device`).
        return_url::parse(rd, https_port(self.ctx), |h| {
            table.http.has_host(h) || h == self.settings.host
        })
    }

    /// The name of the resource a return address leads to (its host when
    /// it leads to none, as for the sign-in host's own pages).
    fn resource_name(&self, back: &return_url::Return) -> String {
        let table = self.ctx.shared.resources.load();
        let path = back.path.split('?').next().unwrap_or("/");
        match table.http.route(&back.host, path) {
            warren_ingress::router::Route::Found(slot) => slot.resource.load().name.clone(),
            _ => back.host.clone(),
        }
    }

    /// The signed-in user of the sign-in host, with their sign-in time.
    fn signed_in(&self, headers: &HeaderMap) -> Option<(Identity, auth::token::Claims)> {
        let value = auth::cookie(headers, AUTH_COOKIE)?;
        let catalog = self.ctx.shared.catalog.load();
        self.state.identity(
            &catalog,
            value,
            &self.settings.host,
            warren_store::now_ms(),
            self.settings.idle_timeout.map(|d| d.as_millis() as i64),
        )
    }

    fn login_form(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        problem: Option<&str>,
    ) -> Response<ResponseBody> {
        let back = match self.return_to(query.get("rd")) {
            Ok(b) => b,
            Err(why) => return bad_return(why),
        };
        let Some(st) = query.get("st").filter(|s| valid_state(s)) else {
            // Not started from the resource: go there, which starts it.
            return redirect(StatusCode::FOUND, &back.url(https_port(self.ctx)));
        };
        if problem.is_none() {
            if let Some((who, claims)) = self.signed_in(headers) {
                return self.hand_off(&who, &claims.sid, claims.iat, &back, st, None);
            }
        }
        let (csrf, set) = Self::csrf_token(headers);
        let problem = problem
            .map(|p| format!("<p role=\"alert\" class=\"problem\">{}</p>", escape(p)))
            .unwrap_or_default();
        let rd_url = back.url(https_port(self.ctx));
        let sso = self.sso_buttons(&rd_url, st);
        let body = format!(
            "<p>to reach <strong>{name}</strong> ({host})</p>{problem}{sso}\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\
             <input type=\"hidden\" name=\"st\" value=\"{st}\">\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            host = escape(&back.host),
            name = escape(&self.resource_name(&back)),
            rd = escape(&rd_url),
            st = escape(st),
        );
        let status = if problem.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut resp = page(status, "Sign in", &body);
        if let Some(set) = set {
            resp.headers_mut().append(header::SET_COOKIE, set);
        }
        resp
    }

    async fn login(&self, headers: &HeaderMap, body: Incoming) -> Response<ResponseBody> {
        let form = match checked_form(headers, body, "Sign in").await {
            Ok(f) => f,
            Err(refused) => return refused,
        };
        let back = match self.return_to(form.get("rd")) {
            Ok(b) => b,
            Err(why) => return bad_return(why),
        };
        let email = form
            .get("email")
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| e.len() <= MAX_EMAIL)
            .unwrap_or_default();
        let password = form.get("password").cloned().unwrap_or_default();
        let Some(st) = form.get("st").filter(|s| valid_state(s)).cloned() else {
            return bad_return("the sign-in was not started from the resource");
        };
        let rd_query: HashMap<String, String> = [
            ("rd".to_owned(), back.url(https_port(self.ctx))),
            ("st".to_owned(), st.clone()),
        ]
        .into();
        let client = self.ctx.client.ip();
        if let Err(refused) = self.state.limits.attempt(client, &email, Instant::now()) {
            tracing::warn!(event = "sign_in_limited", client = %client, email = %email, refused = ?refused, "sign-in refused by the limits");
            let mut resp = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Sign in",
                "<p>Too many attempts. Wait a minute and try again.</p>",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return resp;
        }
        let user = self
            .ctx
            .shared
            .catalog
            .load()
            .user_by_email(&email)
            .cloned();
        let hash = user
            .as_ref()
            .filter(|u| !u.disabled)
            .and_then(|u| u.password_hash.clone());
        let ok = match auth::password::check(&self.state.verifier, hash.as_deref(), &password).await
        {
            Ok(ok) => ok,
            Err(_busy) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign in",
                    "<p>Too many sign-ins at once. Try again in a moment.</p>",
                )
            }
        };
        let exists = user.is_some();
        let Some(user) = user.filter(|_| ok) else {
            if exists {
                self.state.limits.failed(&email, Instant::now());
            }
            tracing::info!(event = "sign_in_failed", client = %client, email = %email, "wrong email or password");
            return self.login_form(headers, &rd_query, Some("Wrong email or password."));
        };
        if user.totp_secret.is_some() || self.settings.require_2fa {
            // The password was right; the attempt is not over until the
            // second factor, so the account's failures are not cleared yet.
            return self.second_factor_start(headers, &user, &back, &st);
        }
        self.state.limits.succeeded(&email);
        let (who, set) = self.start_session(&user, "password");
        self.hand_off(
            &who,
            &who.session,
            warren_store::now_ms(),
            &back,
            &st,
            Some(set),
        )
    }

    /// A new session on the sign-in host: who, and its cookie.
    fn start_session(
        &self,
        user: &warren_store::UserRecord,
        method: &'static str,
    ) -> (Identity, HeaderValue) {
        let now = warren_store::now_ms();
        let sid = hex::encode(rand::random::<[u8; 16]>());
        let lifetime = self.settings.session_lifetime.as_millis() as i64;
        let token = self
            .state
            .session(&user.id, &sid, &self.settings.host, now, lifetime);
        tracing::info!(event = "signed_in", client = %self.ctx.client, user = %user.email, method, "signed in");
        let who = Identity {
            session: sid,
            user_id: user.id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            groups: user.groups.clone(),
        };
        let set = cookie_header(AUTH_COOKIE, &token, Some(self.settings.session_lifetime));
        (who, set)
    }

    /// The CSRF token of a form: the visitor's `__Host-` cookie, or a new
    /// one with its `Set-Cookie`.
    fn csrf_token(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        match auth::cookie(headers, CSRF_COOKIE) {
            Some(c) if c.len() == 32 => (c.to_owned(), None),
            _ => {
                let c = hex::encode(rand::random::<[u8; 16]>());
                let set = cookie_header(CSRF_COOKIE, &c, None);
                (c, Some(set))
            }
        }
    }

    fn hand_off(
        &self,
        who: &Identity,
        sid: &str,
        signed_in_ms: i64,
        back: &return_url::Return,
        st: &str,
        set: Option<HeaderValue>,
    ) -> Response<ResponseBody> {
        if back.host == self.settings.host {
            // Back to a page of this host: its own session cookie is the
            // one just set; no hand-off.
            let mut resp = redirect(StatusCode::SEE_OTHER, &back.path);
            if let Some(set) = set {
                resp.headers_mut().append(header::SET_COOKIE, set);
            }
            return resp;
        }
        let token = self.state.handoff(
            &who.user_id,
            sid,
            signed_in_ms,
            &back.host,
            &back.path,
            st,
            warren_store::now_ms(),
        );
        let port = https_port(self.ctx);
        let to = format!(
            "https://{}/.warren/session?token={}",
            with_port(&back.host, port),
            encode(&token)
        );
        let mut resp = redirect(StatusCode::SEE_OTHER, &to);
        if let Some(set) = set {
            resp.headers_mut().append(header::SET_COOKIE, set);
        }
        resp
    }

    fn logout_form(&self, headers: &HeaderMap) -> Response<ResponseBody> {
        let (csrf, set) = Self::csrf_token(headers);
        let body = format!(
            "<p>Sign out of every resource, on every device?</p>\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Sign out</button></form>"
        );
        let mut resp = page(StatusCode::OK, "Sign out", &body);
        if let Some(set) = set {
            resp.headers_mut().append(header::SET_COOKIE, set);
        }
        resp
    }

    async fn logout(&self, headers: &HeaderMap, body: Incoming) -> Response<ResponseBody> {
        if let Err(refused) = checked_form(headers, body, "Sign out").await {
            return refused;
        }
        if let Some((who, _)) = self.signed_in(headers) {
            let actor = format!("user:{}", who.email);
            let store = &self.ctx.shared.store;
            match store
                .change_user(&actor, &who.user_id, warren_store::UserChange::EndSessions)
                .await
            {
                Ok(_) => {
                    crate::api::serve_now(&self.ctx.shared).await;
                    tracing::info!(event = "signed_out", user = %who.email, "every session ended");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not end the sessions");
                    return page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Sign out",
                        "<p>Signing out failed; try again.</p>",
                    );
                }
            }
        }
        let mut resp = page(
            StatusCode::OK,
            "Signed out",
            "<p>You are signed out everywhere.</p>",
        );
        resp.headers_mut()
            .append(header::SET_COOKIE, clear_cookie(AUTH_COOKIE));
        resp
    }

    fn resource_host(
        &self,
        req: &Request<Incoming>,
        head: &Head,
        rest: &str,
    ) -> Response<ResponseBody> {
        let port = https_port(self.ctx);
        match (req.method(), rest) {
            (&Method::GET, "session") => {
                let query = query_map(head);
                let token = query.get("token").map(String::as_str).unwrap_or("");
                let state = auth::cookie(req.headers(), STATE_COOKIE);
                let claims = match self.state.redeem(
                    token,
                    &head.host,
                    state,
                    warren_store::now_ms(),
                ) {
                    Ok(c) => c,
                    Err(why) => {
                        tracing::info!(event = "handoff_refused", client = %self.ctx.client, host = %head.host, reason = why, "a sign-in hand-off was refused");
                        return page(
                            StatusCode::FORBIDDEN,
                            "Sign in",
                            "<p>This sign-in link is not valid (it may have been used already, or expired). Open the resource again.</p>",
                        );
                    }
                };
                let to = claims
                    .to
                    .as_deref()
                    .filter(|p| return_url::safe_path(p))
                    .unwrap_or("/");
                let lifetime = self.settings.session_lifetime.as_millis() as i64;
                let token =
                    self.state
                        .session(&claims.uid, &claims.sid, &head.host, claims.iat, lifetime);
                let remaining = Duration::from_millis(
                    (claims.iat + lifetime - warren_store::now_ms()).max(0) as u64,
                );
                let mut resp = redirect(StatusCode::SEE_OTHER, to);
                resp.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(STATE_COOKIE));
                resp.headers_mut().append(
                    header::SET_COOKIE,
                    cookie_header(SESSION_COOKIE, &token, Some(remaining)),
                );
                resp
            }
            (&Method::GET, "logout") => {
                let mut resp = redirect(
                    StatusCode::SEE_OTHER,
                    &format!("https://{}/logout", with_port(&self.settings.host, port)),
                );
                resp.headers_mut()
                    .append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
                resp
            }
            _ => page(StatusCode::NOT_FOUND, "Not found", "<p>No such page.</p>"),
        }
    }
}

/// The sign-in host's URL: the `iss` of the assertions origins get.
pub(crate) fn issuer(ctx: &ConnContext, settings: &AuthSettings) -> String {
    format!("https://{}", with_port(&settings.host, https_port(ctx)))
}

/// A sign-in's state hash as the login URL carries it: 64 hex digits.
fn valid_state(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The sign-in host's step-up page (`None` without `[auth]`).
pub(crate) fn step_up_url(ctx: &ConnContext) -> Option<String> {
    let config = ctx.shared.config.load();
    let settings = config.auth.as_ref()?;
    Some(format!(
        "https://{}/step-up",
        with_port(&settings.host, https_port(ctx))
    ))
}

fn https_port(ctx: &ConnContext) -> u16 {
    ctx.shared
        .https_port
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn with_port(host: &str, port: u16) -> String {
    if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn query_map(head: &Head) -> HashMap<String, String> {
    head.uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// Reads an `application/x-www-form-urlencoded` body: at most
/// [`MAX_FORM`] bytes within [`FORM_TIMEOUT`].
/// A request body of at most `max` bytes, sent within [`FORM_TIMEOUT`]:
/// else 413 or 408.
async fn read_bounded(body: Incoming, max: usize) -> Result<Bytes, StatusCode> {
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(FORM_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
    }
}

async fn read_form(body: Incoming) -> Result<HashMap<String, String>, StatusCode> {
    let bytes = read_bounded(body, MAX_FORM).await?;
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        // The first of a repeated field counts, as the CSRF check expects.
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    Ok(out)
}

/// A posted form whose CSRF token holds (see [`csrf_ok`]), or the page
/// saying why not (titled `title`).
async fn checked_form(
    headers: &HeaderMap,
    body: Incoming,
    title: &str,
) -> Result<HashMap<String, String>, Response<ResponseBody>> {
    let form = read_form(body)
        .await
        .map_err(|status| page(status, title, "<p>The form could not be read.</p>"))?;
    if !csrf_ok(headers, &form) {
        return Err(page(
            StatusCode::FORBIDDEN,
            title,
            "<p>The form has expired or did not come from this page. Go back and try again.</p>",
        ));
    }
    Ok(form)
}

/// The form's `csrf` equals the `__Host-` cookie (compared in constant time).
fn csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (auth::cookie(headers, CSRF_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) if c.len() == 32 => bool::from(c.as_bytes().ct_eq(f.as_bytes())),
        _ => false,
    }
}

fn bad_return(why: &str) -> Response<ResponseBody> {
    page(
        StatusCode::BAD_REQUEST,
        "Sign in",
        &format!(
            "<p>Sign-in starts from a resource of this edge (the return address is refused: {}).</p>",
            escape(why)
        ),
    )
}

/// `Set-Cookie` for a host-only, secure, HTTP-only cookie; a session
/// cookie when `max_age` is `None`.
fn cookie_header(name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
    let age = max_age
        .map(|d| format!("; Max-Age={}", d.as_secs()))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"
    ))
    .expect("cookie values are base64url and hex")
}

fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    ))
    .expect("a fixed cookie")
}

fn redirect(status: StatusCode, to: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A sign-in page: `body` is trusted HTML (callers escape what they put in).
fn page(status: StatusCode, title: &str, body: &str) -> Response<ResponseBody> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Warren</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem;color:#111}}\
         label{{display:block;margin-top:1rem;font-weight:600}}\
         input{{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}}\
         button{{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit}}\
         .problem{{color:#a00;font-weight:600}}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = escape(title)
    );
    let mut resp = Response::new(full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    resp
}

/// Answers `GET` upgraded to `token` (101) and, once the client's side is
/// upgraded, carries bytes between it and `stream` (for at most `limit`),
/// counting them on `agent`; `hold` (the stream's slots) is kept until the
/// end. What `/cli/ssh/connect` and `/cli/connect` share.
fn splice_upgrade<H: Send + 'static>(
    req: &mut http::Request<Incoming>,
    token: &'static str,
    mut stream: warren_transport::TunnelStream,
    agent: std::sync::Arc<crate::tunnel::registry::AgentConn>,
    hold: H,
    limit: Option<Duration>,
) -> Response<ResponseBody> {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let _hold = hold;
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut visitor = hyper_util::rt::TokioIo::new(upgraded);
        let pump = warren_transport::pump(&mut visitor, &mut stream);
        let pumped = match limit {
            Some(limit) => tokio::time::timeout(limit, pump).await.ok(),
            None => Some(pump.await),
        };
        if let Some(Ok((to_site, from_site))) = pumped {
            use std::sync::atomic::Ordering;
            agent.bytes_to_site.fetch_add(to_site, Ordering::Relaxed);
            agent
                .bytes_from_site
                .fetch_add(from_site, Ordering::Relaxed);
        }
    });
    let mut resp = Response::new(crate::proxy::http::body::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(token));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp
}
