//! The API's errors: one JSON shape, a stable `code` for programs and a
//! message for people, and how store and body errors map onto it.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;
use warren_store::StoreError;

/// The JSON error every endpoint answers with.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ApiError {
    /// Stable, for programs: `unauthenticated`, `invalid_token`,
    /// `key_expired`, `read_only_key`, `invalid_json`, `invalid_field`,
    /// `not_found`, `conflict`, `port_in_use`, `managed_by_file`,
    /// `no_policy`, `invalid_policy`, `policy_tests_failed`,
    /// `undeclared_tags`, `devices_not_served`, `store_unavailable`,
    /// `internal`.
    code: String,
    /// For people.
    message: String,
    /// `invalid_field`, `invalid_policy`, `policy_tests_failed`: every
    /// problem, by field (or policy path, or `tests[i]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
}

/// One invalid field.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct FieldError {
    /// e.g. `listen`, `targets[0].site`.
    pub(crate) field: String,
    /// What is wrong.
    pub(crate) message: String,
}

/// The JSON error every endpoint answers with: a stable `code` and a
/// message for people.
pub(crate) fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    let body = ApiError {
        code: code.to_owned(),
        message,
        errors: None,
    };
    (status, Json(body)).into_response()
}

/// [`error`] with the problems of each field.
pub(crate) fn field_errors(message: String, errors: Vec<FieldError>) -> Response {
    coded_errors("invalid_field", message, errors)
}

/// A 422 with `code` and every problem, by path.
pub(crate) fn coded_errors(
    code: &'static str,
    message: String,
    errors: Vec<FieldError>,
) -> Response {
    let body = ApiError {
        code: code.to_owned(),
        message,
        errors: Some(errors),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// A store error as the API's JSON error.
pub(crate) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound { .. } => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        StoreError::Conflict(_) => error(StatusCode::CONFLICT, "conflict", e.to_string()),
        StoreError::ManagedByFile { .. } => {
            error(StatusCode::CONFLICT, "managed_by_file", e.to_string())
        }
        other => {
            tracing::warn!(error = %other, "store request failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the state store failed: {other}"),
            )
        }
    }
}

/// A body that is not the JSON the endpoint takes.
pub(crate) fn bad_json(rejection: JsonRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        rejection.body_text(),
    )
}

/// A duration field (`30d`, `12h`, `0s`): `None` when absent, a 422 naming
/// the field when it does not parse.
#[allow(clippy::result_large_err)] // the handler returns the Response at once
pub(crate) fn duration_field(
    field: &str,
    text: Option<&str>,
) -> Result<Option<Duration>, Response> {
    text.map(humantime::parse_duration)
        .transpose()
        .map_err(|e| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("`{field}` is not a duration like 30d, 12h or 0s: {e}"),
            )
        })
}
