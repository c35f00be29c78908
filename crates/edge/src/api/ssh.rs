//! SSH through the API: `GET /api/v1/ssh/ca`, the organisation's CA public
//! key (made on first use; `ssh::ca`), for hosts' `TrustedUserCAKeys`.

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
}

/// The organisation's SSH CA public key (made on first use).
#[utoipa::path(get, path = "/api/v1/ssh/ca", tag = "ssh",
    responses((status = 200, body = CaKey), (status = 401, body = ApiError),
        (status = 500, description = "ssh_ca_unavailable", body = ApiError)))]
pub(crate) async fn ca(State(shared): State<Arc<EdgeShared>>) -> Response {
    let data_dir = shared.config.load().data_dir.clone();
    match crate::ssh::ca::Ca::load_or_create(&shared.store, &data_dir).await {
        Ok(ca) => Json(CaKey {
            public_key: ca.public_line(),
            fingerprint: ca.fingerprint(),
        })
        .into_response(),
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
