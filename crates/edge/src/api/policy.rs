//! The policy through the API.
//!
//! * `GET /api/v1/policy`: the live policy (404 `no_policy`: every
//!   resource is open).
//! * `PUT /api/v1/policy` `{"text": ..., "base_version": N}`: saves a new
//!   version. It is checked (422 `invalid_policy`, every error by path),
//!   its embedded tests run (422 `policy_tests_failed`, every failure), and
//!   the tags of every site checked against it (422 `undeclared_tags`);
//!   refused, nothing changes. With `base_version`, a save based on a
//!   version that is no longer live is a 409 `conflict`. Live on this edge
//!   when the response is sent; on others sharing the store within 1 s.
//! * `POST /api/v1/policy/rollback` `{"version": N}`: version N's text as
//!   a new version, through the same checks.
//! * `DELETE /api/v1/policy`: no policy, every resource open, on the record.
//! * `GET /api/v1/policy/versions[?before=N&limit=M]`: the history, newest
//!   first; `GET /api/v1/policy/versions/{version}`: one, with its text.
//!
//! Each change is one audit row (`policy.update`, `policy.rollback`,
//! `policy.delete`) with the unified diff against the version it replaced.
//! A policy the config file names (`[policy] file`) is read-only here
//! (409 `managed_by_file`); its changes are recorded as versions too.

use crate::access::live::{self, Change, WriteError};
use crate::api::auth::Caller;
use crate::api::error::{bad_json, coded_errors, error, store_error, ApiError, FieldError};
use crate::config::PolicySource;
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use warren_store::{policy_sha256, PolicyVersion};

/// The live policy.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LivePolicy {
    /// `file` (the config file's `[policy] file`, read-only here) or `api`.
    source: &'static str,
    /// The file, for `source = "file"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    /// Its version in the store (0: not recorded yet).
    version: i64,
    /// SHA-256 of the text, hex.
    sha256: String,
    /// The text.
    text: String,
    /// How many grants and embedded tests it has.
    grants: usize,
    tests: usize,
}

/// The policy the edge decides with (404 `no_policy`: every resource is open).
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, body = LivePolicy), (status = 401, body = ApiError),
              (status = 404, body = ApiError)))]
pub(crate) async fn get(State(shared): State<Arc<EdgeShared>>) -> Response {
    let config = shared.config.load();
    match &config.policy {
        Some(p) => Json(LivePolicy {
            source: match p.source {
                PolicySource::File(_) => "file",
                PolicySource::Store => "api",
            },
            file: match &p.source {
                PolicySource::File(f) => Some(f.display().to_string()),
                PolicySource::Store => None,
            },
            version: p.version,
            sha256: policy_sha256(Some(&p.text)),
            text: p.text.clone(),
            grants: p.policy.file().grants.len(),
            tests: p.policy.file().tests.len(),
        })
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no_policy",
            "this edge has no policy: every resource is open".into(),
        ),
    }
}

/// `PUT /api/v1/policy`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavePolicy {
    /// The policy file's text (TOML).
    text: String,
    /// Save only if this version is still the live one (0: none yet).
    base_version: Option<i64>,
}

/// Saves a new version (see the module docs).
#[utoipa::path(put, path = "/api/v1/policy", tag = "policy", request_body = SavePolicy,
    responses((status = 200, body = PolicyVersion),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 409, description = "conflict, managed_by_file", body = ApiError),
        (status = 422, description = "invalid_policy, policy_tests_failed, undeclared_tags", body = ApiError)))]
pub(crate) async fn put(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SavePolicy>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    change(&shared, &caller, Change::Save(body.text), body.base_version).await
}

/// `POST /api/v1/policy/rollback`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rollback {
    /// The version whose text becomes live again.
    version: i64,
    /// Roll back only if this version is still the live one.
    base_version: Option<i64>,
}

/// Makes an earlier version's text live again, as a new version.
#[utoipa::path(post, path = "/api/v1/policy/rollback", tag = "policy", request_body = Rollback,
    responses((status = 200, body = PolicyVersion),
        (status = 404, description = "not_found", body = ApiError),
        (status = 409, description = "conflict, managed_by_file", body = ApiError),
        (status = 422, description = "policy_tests_failed, undeclared_tags", body = ApiError)))]
pub(crate) async fn rollback(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<Rollback>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    change(
        &shared,
        &caller,
        Change::Rollback(body.version),
        body.base_version,
    )
    .await
}

/// `DELETE /api/v1/policy`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct Base {
    /// Only if this version is still the live one.
    base_version: Option<i64>,
}

/// Removes the policy: every resource open, as before any policy.
#[utoipa::path(delete, path = "/api/v1/policy", tag = "policy", params(Base),
    responses((status = 200, body = PolicyVersion),
        (status = 409, description = "conflict, managed_by_file", body = ApiError)))]
pub(crate) async fn delete(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Query(base): Query<Base>,
) -> Response {
    change(&shared, &caller, Change::Remove, base.base_version).await
}

async fn change(
    shared: &Arc<EdgeShared>,
    caller: &Caller,
    change: Change,
    base: Option<i64>,
) -> Response {
    let mut serving = shared.serving.lock().await;
    match live::write(&mut serving, shared, &caller.key_id, change, base).await {
        Ok(saved) => Json(saved).into_response(),
        Err(e) => write_error(e),
    }
}

fn write_error(e: WriteError) -> Response {
    match e {
        WriteError::ManagedByFile(_) => {
            error(StatusCode::CONFLICT, "managed_by_file", e.to_string())
        }
        WriteError::Invalid(errors) => coded_errors(
            "invalid_policy",
            format!(
                "the policy has {} error(s); nothing was saved",
                errors.0.len()
            ),
            errors
                .0
                .into_iter()
                .map(|e| FieldError {
                    field: e.path,
                    message: e.message,
                })
                .collect(),
        ),
        WriteError::TestsFailed(ref failures) => coded_errors(
            "policy_tests_failed",
            e.to_string(),
            failures
                .iter()
                .map(|f| FieldError {
                    field: format!("tests[{}]", f.test),
                    message: f.message.clone(),
                })
                .collect(),
        ),
        WriteError::UndeclaredTags(_) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "undeclared_tags",
            e.to_string(),
        ),
        WriteError::Store(e) => store_error(e),
    }
}

/// A page of the history.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct HistoryPage {
    /// Versions older than this one.
    before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

/// The policy's versions, newest first, without their text.
#[utoipa::path(get, path = "/api/v1/policy/versions", tag = "policy", params(HistoryPage),
    responses((status = 200, body = Vec<PolicyVersion>), (status = 401, body = ApiError)))]
pub(crate) async fn versions(
    State(shared): State<Arc<EdgeShared>>,
    Query(page): Query<HistoryPage>,
) -> Response {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    match shared.store.policy_history(page.before, limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e),
    }
}

/// One version, with its text.
#[utoipa::path(get, path = "/api/v1/policy/versions/{version}", tag = "policy",
    params(("version" = i64, Path, description = "The version")),
    responses((status = 200, body = PolicyVersion), (status = 404, body = ApiError)))]
pub(crate) async fn version(
    State(shared): State<Arc<EdgeShared>>,
    Path(version): Path<i64>,
) -> Response {
    match shared.store.policy_version(version).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}
