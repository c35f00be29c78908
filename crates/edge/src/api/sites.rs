//! Sites through the API: `POST /api/v1/sites` (the secret is shown once),
//! `DELETE /api/v1/sites/{id}`, `POST /api/v1/sites/{id}/rotate`.
//!
//! Sites made here live in the store only; their agents authenticate
//! against the store's argon2 hashes (see `tunnel::admit`). Sites declared
//! in the config file are read-only here (`managed_by_file`).

use crate::api::auth::Caller;
use crate::api::error::{bad_json, duration_field, store_error};
use crate::api::error::{error, field_errors, ApiError, FieldError};
use crate::tunnel::credentials::{generate_secret, hash_secret};
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use std::time::Duration;
use warren_store::{ManagedBy, SiteRecord, StoreError};

/// The default grace of a rotated-out secret.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `POST /api/v1/sites`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSite {
    /// 1 to 64 of a-z, 0-9, `-`, `_`.
    id: String,
    /// A display name (default: the id).
    name: Option<String>,
    /// `tag:NAME`s the policy may name it by; with a policy loaded, each
    /// must be one its `[tags]` declares.
    #[serde(default)]
    tags: Vec<String>,
}

/// A new site with its secret, shown this once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedSite {
    #[serde(flatten)]
    site: SiteRecord,
    /// The agent's `--secret`; only its argon2 hash is kept.
    secret: String,
}

/// A rotated secret, shown this once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RotatedSecret {
    id: String,
    /// The new `--secret`.
    secret: String,
    /// How long agents on the old secret keep working, seconds.
    grace_s: u64,
}

/// Creates a site; the response carries its secret, once.
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", request_body = NewSite,
    responses((status = 201, body = CreatedSite),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 409, description = "conflict", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn create(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewSite>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    if !valid_id(&new.id) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "`id` must be 1 to 64 of a-z, 0-9, `-`, `_`".into(),
        );
    }
    let config = shared.config.load();
    let mut bad = Vec::new();
    for (i, tag) in new.tags.iter().enumerate() {
        let message = if !warren_policy::valid_tag(tag) {
            format!("`{tag}`: a tag is named tag:NAME (NAME: a-z, 0-9, - and _)")
        } else if config
            .policy
            .as_ref()
            .is_some_and(|p| !p.policy.file().tags.contains_key(tag))
        {
            format!(
                "tag `{tag}` is not declared in the policy's [tags]: a tag needs an owner there"
            )
        } else {
            continue;
        };
        bad.push(FieldError {
            field: format!("tags[{i}]"),
            message,
        });
    }
    if !bad.is_empty() {
        return field_errors("the site's tags are not usable".into(), bad);
    }
    if config.sites.contains_key(&new.id) {
        return store_error(StoreError::Conflict(format!(
            "site `{}` already exists (in the config file)",
            new.id
        )));
    }
    let secret = generate_secret();
    let hash = hash_secret(secret.expose());
    let name = new.name.unwrap_or_else(|| new.id.clone());
    match shared
        .store
        .create_site(
            &caller.key_id,
            &new.id,
            &name,
            ManagedBy::Api,
            &hash,
            &new.tags,
        )
        .await
    {
        Ok(site) => {
            crate::api::serve_now(&shared).await;
            (
                StatusCode::CREATED,
                Json(CreatedSite {
                    site,
                    secret: secret.expose().to_owned(),
                }),
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

/// Refuses changes to a site the config file declares.
async fn api_managed(shared: &EdgeShared, id: &str) -> Result<(), Response> {
    let site = shared.store.site(id).await.map_err(store_error)?;
    if site.managed_by == ManagedBy::File || shared.config.load().sites.contains_key(id) {
        return Err(store_error(StoreError::ManagedByFile {
            what: "site",
            id: id.to_owned(),
        }));
    }
    Ok(())
}

/// Deletes a site made through the API and disconnects its agents.
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "sites",
    params(("id" = String, Path, description = "site id")),
    responses((status = 204), (status = 404, body = ApiError),
        (status = 409, description = "conflict (resources still target it), managed_by_file", body = ApiError)))]
pub(crate) async fn delete(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = api_managed(&shared, &id).await {
        return r;
    }
    match shared.store.delete_site(&caller.key_id, &id).await {
        Ok(()) => {
            crate::api::serve_now(&shared).await;
            shared.registry.disconnect_site(&id);
            tracing::info!(event = "site_removed", site = %id, actor = %caller.key_id, "site deleted through the API; its agents were disconnected");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `POST /api/v1/sites/{id}/rotate`.
#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rotate {
    /// How long the old secret keeps working (`0s`: not at all).
    grace: Option<String>,
}

/// Issues a new secret; agents on the old one keep working for `grace`
/// (default 24h) and are flagged `on_old_secret`; `0s` disconnects them.
#[utoipa::path(post, path = "/api/v1/sites/{id}/rotate", tag = "sites", request_body(content = Option<Rotate>),
    params(("id" = String, Path, description = "site id")),
    responses((status = 200, body = RotatedSecret), (status = 404, body = ApiError),
        (status = 409, description = "managed_by_file", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn rotate(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<Rotate>, JsonRejection>,
) -> Response {
    let rotate = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => Rotate::default(),
        Err(r) => return bad_json(r),
    };
    let grace = match duration_field("grace", rotate.grace.as_deref()) {
        Ok(d) => d.unwrap_or(DEFAULT_GRACE),
        Err(r) => return r,
    };
    if let Err(r) = api_managed(&shared, &id).await {
        return r;
    }
    let secret = generate_secret();
    let hash = hash_secret(secret.expose());
    match shared
        .store
        .rotate_site_secret(&caller.key_id, &id, &hash, grace)
        .await
    {
        Ok(_) => {
            crate::api::serve_now(&shared).await;
            shared.recorder.event(
                "secret_rotated",
                format!("site/{id}"),
                serde_json::json!({ "grace_s": grace.as_secs(), "by": caller.key_id }),
            );
            for agent in shared.registry.agents_of(&id) {
                if grace.is_zero() {
                    agent
                        .link
                        .close("the site's secret was rotated with no grace period");
                } else {
                    agent.mark_old_secret(warren_store::deadline_ms(grace));
                }
            }
            Json(RotatedSecret {
                id,
                secret: secret.expose().to_owned(),
                grace_s: grace.as_secs(),
            })
            .into_response()
        }
        Err(e) => store_error(e),
    }
}
