//! `/api/v1` authentication (the bearer-key middleware) and the API-key
//! endpoints: `GET /api/v1/keys`, `POST /api/v1/keys`,
//! `DELETE /api/v1/keys/{id}`.

use crate::api::auth::{AuthError, Caller, Token};
use crate::api::error::{bad_json, duration_field, store_error};
use crate::api::error::{error, ApiError};
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use warren_store::{deadline_ms, ApiKeyRecord, Scope};

/// Lets a request through only with a valid key of sufficient scope, and
/// hands the handler its [`Caller`].
pub(crate) async fn require_key(
    State(shared): State<Arc<EdgeShared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match shared
        .api_auth
        .authorize(&shared.store, authorization, write)
        .await
    {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            tracing::warn!(
                event = "api_refused", method = %req.method(), path = %req.uri().path(),
                code = e.code(), reason = %e, "API request refused"
            );
            let status = match e {
                AuthError::ReadOnly(_) => StatusCode::FORBIDDEN,
                AuthError::Store(_) | AuthError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut resp = error(status, e.code(), e.to_string());
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

/// Every API key (never the secrets).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys",
    responses((status = 200, body = Vec<ApiKeyRecord>), (status = 401, body = ApiError)))]
pub(crate) async fn list(State(shared): State<Arc<EdgeShared>>) -> Response {
    match shared.store.list_api_keys().await {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /api/v1/keys`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// What the key is for.
    name: String,
    /// `read` or `admin`.
    scope: Scope,
    /// e.g. `30d`; none: the key does not expire.
    expires_in: Option<String>,
}

/// A new key with its token, shown this once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedKey {
    #[serde(flatten)]
    key: ApiKeyRecord,
    /// `wrn_<id>_<secret>`, for `Authorization: Bearer`.
    token: String,
}

/// Creates an API key; the response carries its token, once.
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = CreatedKey),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn create(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    if new.name.trim().is_empty() || new.name.len() > 200 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`name` must be 1 to 200 characters".into(),
        );
    }
    let expires_ms = match duration_field("expires_in", new.expires_in.as_deref()) {
        Ok(d) => d.map(deadline_ms),
        Err(r) => return r,
    };
    let token = Token::generate();
    let hash = token.hash();
    match shared
        .store
        .create_api_key(
            &caller.key_id,
            &token.id,
            &new.name,
            &hash,
            new.scope,
            expires_ms,
        )
        .await
    {
        Ok(key) => {
            crate::api::serve_now(&shared).await;
            (
                StatusCode::CREATED,
                Json(CreatedKey {
                    key,
                    token: token.reveal(),
                }),
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Deletes an API key (other edges honour it within 60 s on the API, 1 s
/// on the data path).
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses((status = 204), (status = 404, body = ApiError)))]
pub(crate) async fn delete(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match shared.store.delete_api_key(&caller.key_id, &id).await {
        Ok(()) => {
            shared.api_auth.forget(&id);
            crate::api::serve_now(&shared).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => store_error(e),
    }
}
