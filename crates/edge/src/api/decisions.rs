//! The audit trail of access decisions (`access::audit`):
//! `GET /api/v1/decisions`, oldest first, as a JSON array or, with
//! `format=jsonl`, as JSON lines for export (one decision per line).

use crate::api::error::{error, store_error, ApiError};
use crate::EdgeShared;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use warren_store::{DecisionQuery, DecisionRecord};

/// The most rows one JSON answer holds, and one JSON-lines export.
const MAX_JSON: i64 = 1000;
const MAX_LINES: i64 = 100_000;

/// Which decisions.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct Filter {
    /// From this time (Unix ms; default: the last hour).
    since_ms: Option<i64>,
    /// Only this resource.
    resource: Option<String>,
    /// Only this principal (an email, `key:ID`, `pin`, `link:ID`...).
    principal: Option<String>,
    /// Only `allow` or `deny`.
    decision: Option<String>,
    /// At most this many (default 100; at most 1000, or 100000 as JSON lines).
    limit: Option<i64>,
    /// `json` (default) or `jsonl`.
    format: Option<String>,
}

/// Access decisions made under a policy: who, which resource, allowed or
/// denied, what decided, how they identified themselves, from where.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "logs", params(Filter),
    responses((status = 200, body = Vec<DecisionRecord>,
        description = "a JSON array, or JSON lines with format=jsonl"),
        (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn list(
    State(shared): State<Arc<EdgeShared>>,
    Query(f): Query<Filter>,
) -> Response {
    let lines = match f.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "`format` is json or jsonl".into(),
            )
        }
    };
    if f.decision
        .as_deref()
        .is_some_and(|d| d != "allow" && d != "deny")
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`decision` is allow or deny".into(),
        );
    }
    let max = if lines { MAX_LINES } else { MAX_JSON };
    let q = DecisionQuery {
        since_ms: f
            .since_ms
            .unwrap_or_else(|| warren_store::now_ms() - 3_600_000),
        resource: f.resource,
        principal: f.principal,
        decision: f.decision,
        limit: f
            .limit
            .unwrap_or(if lines { max } else { 100 })
            .clamp(1, max),
    };
    let rows = match shared.store.decisions(&q).await {
        Ok(rows) => rows,
        Err(e) => return store_error(e),
    };
    if !lines {
        return Json(rows).into_response();
    }
    let mut body = String::new();
    for row in &rows {
        body.push_str(&serde_json::to_string(row).unwrap_or_default());
        body.push('\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}
