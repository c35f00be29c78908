//! Phase 3, access: whether this visitor may reach this resource.
//!
//! The edge's answer ([`crate::access`]): without a policy every resource
//! is open; with one, a public resource is, and any other only as the
//! policy's grants allow a principal: today an API key presented as
//! `Warren-Key` (sign-in, sessions and share links are issue 16; they plug
//! in here and ask the same policy). A denial is a 403 page. The access
//! log records the answer (`"access": "open"`, `"public"`, `"granted"` or
//! `"denied"`), the principal and the grant that allowed it.

use crate::access::{HttpAccess, KEY_HEADER};
use crate::config::Resource;
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::request::Head;
use http::HeaderMap;

/// Decides whether the request may go on to the upstream phase.
pub(crate) async fn decide(
    ctx: &ConnContext,
    head: &Head,
    method: &str,
    headers: &HeaderMap,
    resource: &Resource,
) -> HttpAccess {
    let key = headers.get(KEY_HEADER).map(|v| v.as_bytes());
    let session = crate::auth::cookie(headers, crate::auth::SESSION_COOKIE);
    let facts = crate::access::rules::RequestFacts {
        method,
        path: &head.path,
        headers,
    };
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|_| resource.basic);
    let credentials = crate::access::Credentials {
        facts,
        key,
        session,
        basic,
        pass: crate::auth::cookie(headers, crate::auth::PASS_COOKIE),
        link: headers
            .get(crate::access::LINK_HEADER)
            .map(|v| v.as_bytes()),
    };
    crate::access::check_http(
        &ctx.shared,
        resource,
        ctx.client,
        credentials,
        &head.host,
        method,
        &head.path,
    )
    .await
}
