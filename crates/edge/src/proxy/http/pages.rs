//! The pages the edge answers itself, when a request ends at the edge (a
//! bad host, no route, no healthy target, an unreachable target).

use crate::proxy::http::body::{full, ResponseBody};
use crate::proxy::http::error::ProxyError;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// A small HTML page for errors the edge answers itself.
pub(crate) fn page(status: StatusCode, detail: &str) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let escaped = detail
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<!doctype html><title>{code} {reason}</title><h1>{code} {reason}</h1><p>{escaped}</p>\n",
        code = status.as_u16()
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The page for a request that ended at the edge: the public words and
/// the request id the operator finds the detail under.
pub(crate) fn error_page(e: &ProxyError, request_id: &str) -> Response<ResponseBody> {
    page(
        e.status(),
        &format!("{} (request {request_id})", e.public()),
    )
}
