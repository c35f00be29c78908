//! A resource's own doors, on its own host (`auth::doors` keeps the
//! passes):
//! * `GET /.warren/door?rd=PATH`: the page a browser is sent to when the
//!   resource takes a password or a PIN: a form for each, and a link to
//!   sign in instead where the resource takes that too.
//! * `POST /.warren/door`: CSRF token first (double-submit cookie on this
//!   host), then the limits (per source; per resource and door as the
//!   account), then argon2 in the bounded pool. Right: a pass cookie for
//!   this resource and a 303 back to `rd`; wrong: the page again, 401.
//! * `GET /.warren/signin?rd=PATH`: the usual sign-in (off to the sign-in
//!   host), for the page's link.
//! * Any URL of a resource that takes links, with `?warren_link=TOKEN`: a
//!   live link becomes a pass cookie and the browser goes on to the same
//!   URL without the token (so it leaves the address bar and the origin's
//!   logs); a dead one is a 403. Machines send `Warren-Link: TOKEN` on
//!   every request instead.

use super::{checked_form, cookie_header, escape, page, redirect};
use crate::auth::{DoorRefused, PASS_COOKIE};
use crate::config::Resource;
use crate::proxy::http::body::ResponseBody;
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::request::Head;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::time::Duration;
use warren_store::SecretKind;

/// The query parameter a share link carries its token in.
pub(crate) const LINK_PARAM: &str = "warren_link";
/// How long a pass lasts without `[auth]` (else its session lifetime).
const PASS_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The resource `path` (a path, perhaps with a query) routes to on `host`.
fn resource_at(ctx: &ConnContext, host: &str, path: &str) -> Option<std::sync::Arc<Resource>> {
    let table = ctx.shared.resources.load();
    match table
        .http
        .route(host, path.split('?').next().unwrap_or("/"))
    {
        warren_ingress::router::Route::Found(slot) => Some(slot.resource.load_full()),
        _ => None,
    }
}

fn pass_lifetime(ctx: &ConnContext) -> Duration {
    ctx.shared
        .config
        .load()
        .auth
        .as_ref()
        .map_or(PASS_LIFETIME, |a| a.session_lifetime)
}

/// `/.warren/door` and `/.warren/signin` on a resource's host.
pub(crate) async fn door(
    ctx: &ConnContext,
    req: Request<Incoming>,
    head: &Head,
    rest: &str,
) -> Option<Response<ResponseBody>> {
    let query = super::query_map(head);
    match (req.method(), rest) {
        (&Method::GET, "door") => {
            let rd = query
                .get("rd")
                .filter(|p| crate::auth::return_url::safe_path(p))?;
            let resource = resource_at(ctx, &head.host, rd)?;
            Some(door_page(req.headers(), &resource, rd, None))
        }
        (&Method::POST, "door") => Some(open(ctx, req, head).await),
        (&Method::GET, "signin") => {
            let rd = query
                .get("rd")
                .filter(|p| crate::auth::return_url::safe_path(p))?;
            let resource = resource_at(ctx, &head.host, rd)?;
            if !resource.login {
                return None;
            }
            super::login_redirect(ctx, &head.host, rd)
        }
        _ => None,
    }
}

fn door_page(
    headers: &http::HeaderMap,
    resource: &Resource,
    rd: &str,
    problem: Option<&str>,
) -> Response<ResponseBody> {
    let (csrf, set) = super::SignIn::csrf_token(headers);
    let problem = problem
        .map(|p| format!("<p role=\"alert\" class=\"problem\">{}</p>", escape(p)))
        .unwrap_or_default();
    let form = |kind: &str, label: &str, input: &str| {
        format!(
            "<form method=\"post\" action=\"/.warren/door\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\
             <input type=\"hidden\" name=\"kind\" value=\"{kind}\">\
             <label for=\"{kind}\">{label}</label>{input}\
             <button type=\"submit\">Open</button></form>",
            rd = escape(rd),
        )
    };
    let mut body = format!(
        "<p>to reach <strong>{}</strong></p>{problem}",
        escape(&resource.name)
    );
    if resource.doors.pin {
        body.push_str(&form(
            "pin",
            "PIN",
            "<input id=\"pin\" name=\"secret\" type=\"password\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" required autofocus>",
        ));
    }
    if resource.doors.password {
        body.push_str(&form(
            "password",
            "Password",
            "<input id=\"password\" name=\"secret\" type=\"password\" \
             autocomplete=\"current-password\" required>",
        ));
    }
    if resource.login {
        body.push_str(&format!(
            "<p><a href=\"/.warren/signin?rd={}\">Sign in with your account instead</a></p>",
            escape(&super::encode(rd))
        ));
    }
    let status = if problem.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut resp = page(status, "Locked", &body);
    if let Some(set) = set {
        resp.headers_mut().append(header::SET_COOKIE, set);
    }
    resp
}

/// `POST /.warren/door`.
async fn open(ctx: &ConnContext, req: Request<Incoming>, head: &Head) -> Response<ResponseBody> {
    let (parts, body) = req.into_parts();
    let form = match checked_form(&parts.headers, body, "Locked").await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let Some(rd) = form
        .get("rd")
        .filter(|p| crate::auth::return_url::safe_path(p))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Locked",
            "<p>No return address.</p>",
        );
    };
    let Some(resource) = resource_at(ctx, &head.host, rd) else {
        return page(StatusCode::NOT_FOUND, "Locked", "<p>No such resource.</p>");
    };
    let kind = match form.get("kind").map(String::as_str) {
        Some("pin") if resource.doors.pin => SecretKind::Pin,
        Some("password") if resource.doors.password => SecretKind::Password,
        _ => {
            return door_page(
                &parts.headers,
                &resource,
                rd,
                Some("This door is not offered."),
            )
        }
    };
    let secret = form.get("secret").map(String::as_str).unwrap_or("");
    let catalog = ctx.shared.catalog.load_full();
    let client = ctx.client.ip();
    let opened = ctx
        .shared
        .auth
        .open_door(&catalog, &resource.name, kind, secret, client)
        .await;
    match opened {
        Ok(()) => {
            tracing::info!(event = "door_opened", client = %ctx.client, resource = %resource.name, door = kind.as_str(), "a resource's door was opened");
            let lifetime = pass_lifetime(ctx);
            let exp = warren_store::now_ms() + lifetime.as_millis() as i64;
            let token = ctx
                .shared
                .auth
                .pass(&resource.name, kind.as_str(), &head.host, exp);
            let mut resp = redirect(StatusCode::SEE_OTHER, rd);
            resp.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(PASS_COOKIE, &token, Some(lifetime)),
            );
            resp
        }
        Err(DoorRefused::Limited) => {
            tracing::warn!(event = "door_limited", client = %ctx.client, resource = %resource.name, door = kind.as_str(), "a door refused by the limits");
            let mut resp = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Locked",
                "<p>Too many attempts. Wait a minute and try again.</p>",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            resp
        }
        Err(DoorRefused::Busy) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Locked",
            "<p>Too many attempts at once. Try again in a moment.</p>",
        ),
        Err(DoorRefused::Wrong) => {
            tracing::info!(event = "door_refused", client = %ctx.client, resource = %resource.name, door = kind.as_str(), "a wrong password or PIN");
            let what = match kind {
                SecretKind::Pin => "Wrong PIN.",
                SecretKind::Password => "Wrong password.",
            };
            door_page(&parts.headers, &resource, rd, Some(what))
        }
    }
}

/// A share link's first use in a browser: its token (`?warren_link=`)
/// becomes a pass cookie. `None` when the request carries no token.
pub(crate) fn link(
    ctx: &ConnContext,
    head: &Head,
    resource: &Resource,
) -> Option<Response<ResponseBody>> {
    let query = head.uri.query()?;
    let mut token = None;
    let mut kept = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == LINK_PARAM {
            token.get_or_insert(v.into_owned());
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    let token = token?;
    let now = warren_store::now_ms();
    let catalog = ctx.shared.catalog.load();
    let Some(link) = crate::auth::AuthState::link(&catalog, resource, &token, now) else {
        tracing::info!(event = "link_refused", client = %ctx.client, resource = %resource.name, "a share link that is not live (or not this resource's)");
        return Some(page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<p>This link is not valid: it may have expired or been revoked.</p>",
        ));
    };
    let lifetime = pass_lifetime(ctx);
    let mut exp = now + lifetime.as_millis() as i64;
    if let Some(e) = link.expires_ms {
        exp = exp.min(e);
    }
    tracing::info!(event = "link_used", client = %ctx.client, resource = %resource.name, link = %link.id, "a share link was used");
    let pass = ctx.shared.auth.pass(
        &resource.name,
        &format!("link:{}", link.id),
        &head.host,
        exp,
    );
    let mut to = head.uri.path().to_owned();
    if !kept.is_empty() {
        to.push('?');
        to.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish(),
        );
    }
    let mut resp = redirect(StatusCode::SEE_OTHER, &to);
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(
            PASS_COOKIE,
            &pass,
            Some(Duration::from_millis((exp - now).max(0) as u64)),
        ),
    );
    Some(resp)
}
