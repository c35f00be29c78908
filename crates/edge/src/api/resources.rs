//! Resources through the API: list with live health, read one, create,
//! replace, delete. Writes go through [`crate::proxy::serving::Serving::write`]:
//! validated by the config file's rules, listeners bound before the store is
//! written, live within the request.

use crate::api::auth::Caller;
use crate::api::error::{bad_json, store_error};
use crate::api::error::{error, field_errors, ApiError, FieldError};
use crate::config::{ApiResourceError, ResourceSpec};
use crate::proxy::serving::{Change, WriteError};
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use warren_store::{ManagedBy, ResourceRecord};

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TargetStatus {
    site: String,
    address: String,
    /// `healthy`, `unhealthy`, or `unchecked` (no health check, or no report yet).
    health: &'static str,
    /// Kept-alive origin connections waiting for the next request (http).
    idle_connections: usize,
}

/// A resource as it is served now.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ResourceStatus {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    host: Option<String>,
    path: Option<String>,
    /// tcp/udp: the address asked for.
    listen: Option<String>,
    /// tcp/udp: the address bound (differs when port 0 was asked for).
    bound: Option<String>,
    /// `file` or `api`.
    managed_by: ManagedBy,
    targets: Vec<TargetStatus>,
}

/// Every resource served, with its targets' health.
#[utoipa::path(get, path = "/api/v1/resources", tag = "resources",
    responses((status = 200, body = Vec<ResourceStatus>), (status = 401, body = ApiError)))]
pub(crate) async fn list(State(shared): State<Arc<EdgeShared>>) -> Response {
    Json(resource_status(&shared).await).into_response()
}

/// Every resource served now, with its targets' health.
pub(crate) async fn resource_status(shared: &EdgeShared) -> Vec<ResourceStatus> {
    let config = shared.config.load();
    let health = shared.health.snapshot();
    let serving = shared.serving.lock().await;
    let bound: Vec<(Option<String>, bool)> = config
        .resources
        .iter()
        .map(|r| {
            (
                serving.addr_of(&r.name).map(|a| a.to_string()),
                serving.declared_in_file(&r.name),
            )
        })
        .collect();
    drop(serving);
    config
        .resources
        .iter()
        .zip(bound)
        .map(|(r, (bound, from_file))| ResourceStatus {
            name: r.name.clone(),
            kind: r.kind.as_str(),
            host: r.host.clone(),
            path: r.path.clone(),
            listen: r.listen.map(|l| l.to_string()),
            bound,
            managed_by: if from_file {
                ManagedBy::File
            } else {
                ManagedBy::Api
            },
            targets: r
                .targets
                .iter()
                .map(|t| TargetStatus {
                    site: t.site.clone(),
                    address: t.address.clone(),
                    health: match health.get(&crate::tunnel::health_table::check_id(&r.name, t)) {
                        Some(true) => "healthy",
                        Some(false) => "unhealthy",
                        None => "unchecked",
                    },
                    idle_connections: shared.origin_pool.idle_for(&t.site, &t.address),
                })
                .collect(),
        })
        .collect()
}

/// One resource as stored (with its spec when it was made through the API).
#[utoipa::path(get, path = "/api/v1/resources/{name}", tag = "resources",
    params(("name" = String, Path, description = "resource name")),
    responses((status = 200, body = ResourceRecord), (status = 404, body = ApiError)))]
pub(crate) async fn get(
    State(shared): State<Arc<EdgeShared>>,
    Path(name): Path<String>,
) -> Response {
    match shared.store.resource(&name).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => store_error(e),
    }
}

fn write_error(e: WriteError) -> Response {
    match e {
        WriteError::Resource(ApiResourceError::Invalid(errors)) => {
            let list: Vec<FieldError> = errors
                .0
                .iter()
                .map(|e| FieldError {
                    field: e.key.clone(),
                    message: e.message.clone(),
                })
                .collect();
            let message = errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            field_errors(message, list)
        }
        WriteError::Resource(ApiResourceError::Conflict { field, message }) => error(
            StatusCode::CONFLICT,
            "conflict",
            format!("{field}: {message}"),
        ),
        WriteError::PortInUse(message) => error(StatusCode::CONFLICT, "port_in_use", message),
        WriteError::CannotListen(message) => field_errors(
            message.clone(),
            vec![FieldError {
                field: "listen".into(),
                message,
            }],
        ),
        WriteError::Store(e) => store_error(e),
        WriteError::Apply(e) => {
            tracing::error!(error = %e, "an API write could not be applied");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the edge could not apply the change; see its log".into(),
            )
        }
    }
}

async fn write(
    shared: &Arc<EdgeShared>,
    caller: &Caller,
    change: Change,
    created: bool,
) -> Response {
    let mut serving = shared.serving.lock().await;
    match serving.write(shared, &caller.key_id, change).await {
        Ok(Some(record)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(record)).into_response()
        }
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::info!(event = "api_write_refused", actor = %caller.key_id, error = %e, "resource change refused; nothing applied");
            write_error(e)
        }
    }
}

/// Creates (`replace: None`) or replaces a resource from a JSON body.
async fn put(
    shared: &Arc<EdgeShared>,
    caller: &Caller,
    body: Result<Json<serde_json::Value>, JsonRejection>,
    replace: Option<String>,
) -> Response {
    let spec = match body {
        Ok(Json(v)) => v,
        Err(r) => return bad_json(r),
    };
    let created = replace.is_none();
    write(shared, caller, Change::Put { spec, replace }, created).await
}

/// Creates a resource; it serves before the response is sent.
#[utoipa::path(post, path = "/api/v1/resources", tag = "resources", request_body = ResourceSpec,
    responses((status = 201, body = ResourceRecord),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 409, description = "conflict, port_in_use", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn create(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    put(&shared, &caller, body, None).await
}

/// Replaces a resource made through the API, whole.
#[utoipa::path(put, path = "/api/v1/resources/{name}", tag = "resources", request_body = ResourceSpec,
    params(("name" = String, Path, description = "resource name")),
    responses((status = 200, body = ResourceRecord),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "conflict, port_in_use, managed_by_file", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn replace(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    put(&shared, &caller, body, Some(name)).await
}

/// Deletes a resource made through the API; its listener closes at once
/// (open connections finish).
#[utoipa::path(delete, path = "/api/v1/resources/{name}", tag = "resources",
    params(("name" = String, Path, description = "resource name")),
    responses((status = 204), (status = 404, body = ApiError),
        (status = 409, description = "managed_by_file", body = ApiError)))]
pub(crate) async fn delete(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    write(&shared, &caller, Change::Delete(name), false).await
}
