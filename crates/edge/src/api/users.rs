//! Users through the API: `GET|POST /api/v1/users`,
//! `POST /api/v1/users/{id}/disable|enable|logout|reset-2fa`. `{id}` is the user's
//! id or email.
//!
//! Passwords are hashed with argon2id on the blocking pool and stored only
//! as hashes; a user created without one gets a generated password, shown
//! in the response once. Disabling a user or `logout` ends every session
//! they hold, on every edge sharing the store, within the 1 s sync.

use crate::api::auth::Caller;
use crate::api::error::{bad_json, error, store_error, ApiError};
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use warren_store::{UserChange, UserRecord};

/// The shortest password accepted.
pub(crate) const MIN_PASSWORD: usize = 10;

/// Every user, by email (never a password hash).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserRecord>), (status = 401, body = ApiError)))]
pub(crate) async fn list(State(shared): State<Arc<EdgeShared>>) -> Response {
    match shared.store.list_users().await {
        Ok(users) => Json(users).into_response(),
        Err(e) => store_error(e),
    }
}

/// `POST /api/v1/users`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// What the policy names them by.
    email: String,
    /// A display name (default: the email).
    name: Option<String>,
    /// At least 10 characters; none: one is generated and shown once.
    password: Option<String>,
}

/// A new user, with the generated password (shown this once) when none was given.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedUser {
    #[serde(flatten)]
    user: UserRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = CreatedUser),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 409, description = "conflict", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn create(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    let email = new.email.trim().to_ascii_lowercase();
    if !warren_policy::valid_email(&email) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`email` is not an email address the policy can name".into(),
        );
    }
    if new
        .password
        .as_ref()
        .is_some_and(|p| p.chars().count() < MIN_PASSWORD)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("`password` must be at least {MIN_PASSWORD} characters"),
        );
    }
    let generated = new.password.is_none().then(crate::auth::password::generate);
    let password = new
        .password
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let hash = match crate::auth::password::hash(password).await {
        Ok(h) => h,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("hashing the password failed: {e}"),
            )
        }
    };
    let id = hex::encode(rand::random::<[u8; 6]>());
    let name = new.name.unwrap_or_else(|| email.clone());
    match shared
        .store
        .create_user(&caller.key_id, &id, &email, &name, Some(&hash))
        .await
    {
        Ok(user) => {
            crate::api::serve_now(&shared).await;
            (
                StatusCode::CREATED,
                Json(CreatedUser {
                    user,
                    password: generated,
                }),
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn change(
    shared: &Arc<EdgeShared>,
    caller: &Caller,
    id: &str,
    c: UserChange<'_>,
) -> Response {
    match shared.store.change_user(&caller.key_id, id, c).await {
        Ok(user) => {
            crate::api::serve_now(shared).await;
            Json(user).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Disables a user: no sign-in, and every session ends.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users",
    params(("id" = String, Path, description = "id or email")),
    responses((status = 200, body = UserRecord), (status = 404, body = ApiError)))]
pub(crate) async fn disable(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    change(&shared, &caller, &id, UserChange::Disabled(true)).await
}

/// Enables a disabled user.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users",
    params(("id" = String, Path, description = "id or email")),
    responses((status = 200, body = UserRecord), (status = 404, body = ApiError)))]
pub(crate) async fn enable(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    change(&shared, &caller, &id, UserChange::Disabled(false)).await
}

/// Removes the user's second factor (they enrol again at their next
/// sign-in when it is required) and ends their sessions.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-2fa", tag = "users",
    params(("id" = String, Path, description = "id or email")),
    responses((status = 200, body = UserRecord), (status = 404, body = ApiError)))]
pub(crate) async fn reset_2fa(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    change(&shared, &caller, &id, UserChange::ResetTotp).await
}

/// Ends every session the user holds (logout everywhere).
#[utoipa::path(post, path = "/api/v1/users/{id}/logout", tag = "users",
    params(("id" = String, Path, description = "id or email")),
    responses((status = 200, body = UserRecord), (status = 404, body = ApiError)))]
pub(crate) async fn logout(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    change(&shared, &caller, &id, UserChange::EndSessions).await
}
