//! Phase 3, access: whether this visitor may reach this resource.
//!
//! The edge's answer ([`crate::access`]): without a policy every resource
//! is open; with one, a public resource is, and any other only as the
//! policy's grants allow a principal. Requests carry no identity yet
//! (sign-in, sessions and share links are issue 16; they plug in here and
//! ask the same policy), so today a denial is a 403 page. The access log
//! records the answer: `"access": "open"`, `"public"` or `"denied"`.

use crate::access::Access;
use crate::config::Resource;
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::request::Head;

/// Decides whether the request may go on to the upstream phase.
pub(crate) fn decide(ctx: &ConnContext, _head: &Head, resource: &Resource) -> Access {
    crate::access::check(&ctx.shared, resource, ctx.client)
}
