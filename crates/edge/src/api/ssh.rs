//! SSH through the API: `GET /api/v1/ssh/ca`, the organisation's CA public
//! keys (made on first use; `ssh::ca`), for hosts' `TrustedUserCAKeys`;
//! `POST /api/v1/ssh/ca/rotate`, a new CA with the old one trusted for an
//! overlap.

use crate::api::error::{error, ApiError};
use crate::EdgeShared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The CA's public key.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CaKey {
    /// One OpenSSH public key line (`ssh-ed25519 AAAA... warren-ca`).
    public_key: String,
    /// `SHA256:...`, as `ssh-keygen -l` and sshd's logs print it.
    fingerprint: String,
    /// Every key hosts should trust now, the signing one first (during a
    /// rotation's overlap, the previous ones too): the lines of the
    /// `TrustedUserCAKeys` file.
    trusted: Vec<String>,
}

fn answer(result: Result<crate::ssh::ca::Ca, crate::ssh::ca::CaError>) -> Response {
    match result {
        Ok(ca) => Json(CaKey {
            public_key: ca.public_line(),
            fingerprint: ca.fingerprint(),
            trusted: ca.trusted().to_vec(),
        })
        .into_response(),
        Err(crate::ssh::ca::CaError::Conflict) => error(
            StatusCode::CONFLICT,
            "conflict",
            "the SSH CA changed meanwhile; try again".into(),
        ),
        Err(e) => {
            tracing::error!(event = "ssh_ca_unavailable", error = %e, "the SSH CA could not be opened");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ssh_ca_unavailable",
                e.to_string(),
            )
        }
    }
}

/// `POST /api/v1/ssh/ca/rotate`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rotate {
    /// How long the previous CA stays trusted (`7d` by default).
    overlap: Option<String>,
}

/// A new CA signs from now on; the previous one stays trusted for the
/// overlap, so hosts can take the new key first.
#[utoipa::path(post, path = "/api/v1/ssh/ca/rotate", tag = "ssh", request_body = Rotate,
    responses((status = 200, body = CaKey), (status = 401, body = ApiError),
        (status = 409, description = "conflict", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError),
        (status = 500, description = "ssh_ca_unavailable", body = ApiError)))]
pub(crate) async fn rotate(
    State(shared): State<Arc<EdgeShared>>,
    axum::Extension(caller): axum::Extension<crate::api::auth::Caller>,
    body: Result<Json<Rotate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(r) = match body {
        Ok(b) => b,
        Err(e) => return crate::api::error::bad_json(e),
    };
    let overlap = match r.overlap.as_deref().map(humantime::parse_duration) {
        None => std::time::Duration::from_secs(7 * 24 * 3600),
        Some(Ok(d)) => d,
        Some(Err(_)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "`overlap` is a duration such as `7d` or `1h`".into(),
            )
        }
    };
    let data_dir = shared.config.load().data_dir.clone();
    answer(
        crate::ssh::ca::Ca::rotate(
            &shared.store,
            &data_dir,
            overlap.as_millis() as i64,
            &caller.key_id,
        )
        .await,
    )
}

/// The organisation's SSH CA public key (made on first use).
#[utoipa::path(get, path = "/api/v1/ssh/ca", tag = "ssh",
    responses((status = 200, body = CaKey), (status = 401, body = ApiError),
        (status = 500, description = "ssh_ca_unavailable", body = ApiError)))]
pub(crate) async fn ca(State(shared): State<Arc<EdgeShared>>) -> Response {
    let data_dir = shared.config.load().data_dir.clone();
    answer(crate::ssh::ca::Ca::load_or_create(&shared.store, &data_dir).await)
}
