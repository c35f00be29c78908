//! A resource's own doors through the API: its PIN and password
//! (`PUT|DELETE /api/v1/resources/{name}/pin|password`, stored as argon2id
//! hashes) and its share links (`GET|POST /api/v1/resources/{name}/links`,
//! `DELETE /api/v1/links/{id}`; a link's token is shown once, in the
//! answer that makes it, and stored as its SHA-256). The resource must
//! list the door in its `auth` for it to open; a change counts on every
//! edge within the 1 s sync (here at once).

use crate::api::auth::Caller;
use crate::api::error::{bad_json, error, store_error, ApiError};
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use warren_store::{SecretKind, ShareLink};

/// The shortest PIN accepted, and the longest.
const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;

/// `PUT /api/v1/resources/{name}/pin`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPin {
    /// 4 to 12 digits.
    pin: String,
}

/// `PUT /api/v1/resources/{name}/password`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPassword {
    /// At least 10 characters.
    password: String,
}

async fn set(
    shared: &Arc<EdgeShared>,
    caller: &Caller,
    name: &str,
    kind: SecretKind,
    secret: Option<String>,
) -> Response {
    if let Err(e) = shared.store.resource(name).await {
        return store_error(e);
    }
    let hash = match secret {
        Some(s) => match crate::auth::password::hash(s).await {
            Ok(h) => Some(h),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("hashing failed: {e}"),
                )
            }
        },
        None => None,
    };
    match shared
        .store
        .set_resource_secret(&caller.key_id, name, kind, hash.as_deref())
        .await
    {
        Ok(()) => {
            crate::api::serve_now(shared).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Sets the resource's PIN (passes opened with the old one end).
#[utoipa::path(put, path = "/api/v1/resources/{name}/pin", tag = "doors", request_body = NewPin,
    params(("name" = String, Path, description = "resource name")),
    responses((status = 204), (status = 404, body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn set_pin(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<NewPin>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    if !PIN_DIGITS.contains(&new.pin.len()) || !new.pin.bytes().all(|b| b.is_ascii_digit()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`pin` must be 4 to 12 digits".into(),
        );
    }
    set(&shared, &caller, &name, SecretKind::Pin, Some(new.pin)).await
}

/// Removes the resource's PIN.
#[utoipa::path(delete, path = "/api/v1/resources/{name}/pin", tag = "doors",
    params(("name" = String, Path, description = "resource name")),
    responses((status = 204), (status = 404, body = ApiError)))]
pub(crate) async fn remove_pin(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    set(&shared, &caller, &name, SecretKind::Pin, None).await
}

/// Sets the resource's password (passes opened with the old one end).
#[utoipa::path(put, path = "/api/v1/resources/{name}/password", tag = "doors",
    request_body = NewPassword,
    params(("name" = String, Path, description = "resource name")),
    responses((status = 204), (status = 404, body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn set_password(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    let min = crate::api::users::MIN_PASSWORD;
    if new.password.chars().count() < min {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("`password` must be at least {min} characters"),
        );
    }
    set(
        &shared,
        &caller,
        &name,
        SecretKind::Password,
        Some(new.password),
    )
    .await
}

/// Removes the resource's password.
#[utoipa::path(delete, path = "/api/v1/resources/{name}/password", tag = "doors",
    params(("name" = String, Path, description = "resource name")),
    responses((status = 204), (status = 404, body = ApiError)))]
pub(crate) async fn remove_password(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    set(&shared, &caller, &name, SecretKind::Password, None).await
}

/// `POST /api/v1/resources/{name}/links`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLink {
    /// How long it opens the resource (`24h`, `7d`...); none: until revoked.
    expires_in: Option<String>,
    /// What it is for.
    #[serde(default)]
    note: String,
}

/// A new link, with its token and URL (shown this once).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedLink {
    #[serde(flatten)]
    link: ShareLink,
    /// The token (send it as `Warren-Link`, or open `url`).
    token: String,
    /// The resource's URL with the token, for a browser.
    url: Option<String>,
}

/// Makes a share link for the resource.
#[utoipa::path(post, path = "/api/v1/resources/{name}/links", tag = "doors", request_body = NewLink,
    params(("name" = String, Path, description = "resource name")),
    responses((status = 201, body = CreatedLink), (status = 404, body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn create_link(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<NewLink>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    let resource = match shared.store.resource(&name).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    if new.note.len() > 200 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`note` is at most 200 bytes".into(),
        );
    }
    let now = warren_store::now_ms();
    let expires_ms = match new.expires_in.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(now.saturating_add(d.as_millis() as i64)),
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "`expires_in` is a duration such as `24h` or `7d`".into(),
            )
        }
    };
    use base64::Engine;
    let token = format!(
        "wsl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    let link = ShareLink {
        id: hex::encode(rand::random::<[u8; 6]>()),
        resource: name.clone(),
        token_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())),
        note: new.note,
        created_by: caller.key_id.clone(),
        created_ms: now,
        expires_ms,
        revoked_ms: None,
    };
    if let Err(e) = shared.store.create_share_link(&caller.key_id, &link).await {
        return store_error(e);
    }
    crate::api::serve_now(&shared).await;
    let port = shared.https_port.load(std::sync::atomic::Ordering::Relaxed);
    let url = resource.host.map(|host| {
        let authority = if port == 443 || port == 0 {
            host
        } else {
            format!("{host}:{port}")
        };
        format!(
            "https://{authority}{}?{}={token}",
            resource.path.as_deref().unwrap_or("/"),
            crate::proxy::http::signin::LINK_PARAM
        )
    });
    (StatusCode::CREATED, Json(CreatedLink { link, token, url })).into_response()
}

/// The resource's share links, newest first (live and dead; no tokens).
#[utoipa::path(get, path = "/api/v1/resources/{name}/links", tag = "doors",
    params(("name" = String, Path, description = "resource name")),
    responses((status = 200, body = Vec<ShareLink>), (status = 404, body = ApiError)))]
pub(crate) async fn links(
    State(shared): State<Arc<EdgeShared>>,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = shared.store.resource(&name).await {
        return store_error(e);
    }
    match shared.store.share_links().await {
        Ok(all) => Json(
            all.into_iter()
                .filter(|l| l.resource == name)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// Revokes a share link: every pass it gave stops opening the resource.
#[utoipa::path(delete, path = "/api/v1/links/{id}", tag = "doors",
    params(("id" = String, Path, description = "link id")),
    responses((status = 200, body = ShareLink), (status = 404, body = ApiError)))]
pub(crate) async fn revoke_link(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match shared.store.revoke_share_link(&caller.key_id, &id).await {
        Ok(link) => {
            crate::api::serve_now(&shared).await;
            Json(link).into_response()
        }
        Err(e) => store_error(e),
    }
}
