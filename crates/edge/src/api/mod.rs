//! The admin listener: the REST API, metrics and health endpoint.
//!
//! Everything under `/api/v1` needs `Authorization: Bearer <token>` (see
//! [`crate::api::auth`]); read-only keys may only GET. Errors are JSON with a
//! stable `code` and a `message`.
//!
//! `GET /api/v1/sites` lists every configured site with its connected agents;
//! `GET /api/v1/resources` every resource with its targets' health;
//! `GET /api/v1/events` and `GET /api/v1/audit` page through the store's
//! event and audit logs (`?after=ID&limit=N`, oldest first);
//! `GET /api/v1/agents` lists every agent ever seen;
//! `GET|POST /api/v1/keys`, `DELETE /api/v1/keys/{id}` manage API keys;
//! `POST /api/v1/sites`, `DELETE /api/v1/sites/{id}` and
//! `POST /api/v1/sites/{id}/rotate` manage sites ([`crate::api::sites`]);
//! `/api/v1/policy` and its versions, the policy ([`crate::api::policy`]);
//! `/api/v1/users`, people who sign in ([`crate::api::users`]);
//! `/api/v1/devices`, their WireGuard devices ([`crate::api::devices`]).
//! Without a key: `GET /metrics`, the Prometheus text exposition
//! ([`crate::metrics`]), and `GET /healthz`. Bind the listener to loopback
//! or a private network (the default is loopback).

pub(crate) mod auth;
pub(crate) mod decisions;
pub(crate) mod devices;
pub(crate) mod doors;
pub(crate) mod error;
pub(crate) mod keys;
pub(crate) mod policy;
pub(crate) mod resources;
pub(crate) mod sites;
pub(crate) mod ssh;
pub(crate) mod status;
pub(crate) mod users;

use crate::api::error::{error, store_error, ApiError};
use crate::api::keys::require_key;
use crate::tunnel::registry::SiteStatus;
use crate::EdgeShared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use warren_store::{AgentRecord, AuditRecord, EventRecord};

#[derive(OpenApi)]
#[openapi(
    info(title = "Warren edge API", description = "Sites, resources, API keys, status and logs of a Warren edge. Every endpoint needs `Authorization: Bearer <token>`; read-only keys may only GET."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/api/v1` routes and the OpenAPI document describing them, built
/// from the same handler list so they cannot disagree.
pub(crate) fn api() -> (Router<Arc<EdgeShared>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sites, sites::create))
        .routes(routes!(sites::delete))
        .routes(routes!(sites::rotate))
        .routes(routes!(resources::list, resources::create))
        .routes(routes!(
            resources::get,
            resources::replace,
            resources::delete
        ))
        .routes(routes!(crate::api::status::status))
        .routes(routes!(policy::get, policy::put, policy::delete))
        .routes(routes!(policy::rollback))
        .routes(routes!(policy::versions))
        .routes(routes!(policy::version))
        .routes(routes!(events))
        .routes(routes!(audit))
        .routes(routes!(agents_seen))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::delete))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::disable))
        .routes(routes!(users::enable))
        .routes(routes!(users::logout))
        .routes(routes!(users::reset_2fa))
        .routes(routes!(doors::set_pin, doors::remove_pin))
        .routes(routes!(doors::set_password, doors::remove_password))
        .routes(routes!(doors::links, doors::create_link))
        .routes(routes!(doors::revoke_link))
        .routes(routes!(devices::list, devices::create))
        .routes(routes!(devices::get, devices::delete))
        .routes(routes!(decisions::list))
        .routes(routes!(ssh::ca))
        .routes(routes!(ssh::rotate))
        .split_for_parts()
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<EdgeShared>, stop: CancellationToken) {
    let (api, doc) = api();
    let doc = Arc::new(doc);
    let api = api.route_layer(middleware::from_fn_with_state(shared.clone(), require_key));
    let app = Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .with_state(shared);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}

/// Makes a stored change (a site, a key) count on this edge now rather
/// than at its next sync: the catalog is rebuilt from the store under the
/// serving lock, before any agent is disconnected (so its reconnection
/// meets the change).
pub(crate) async fn serve_now(shared: &Arc<EdgeShared>) {
    if let Err(e) = shared.serving.lock().await.refresh(shared).await {
        tracing::warn!(error = %e, "the change is stored; this edge applies it at its next sync");
    }
}

/// Every site (config file and API) with its connected agents.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites",
    responses((status = 200, body = Vec<SiteStatus>), (status = 401, body = ApiError)))]
pub(crate) async fn sites(State(shared): State<Arc<EdgeShared>>) -> Response {
    Json(crate::api::status::site_status(&shared)).into_response()
}

/// A page of a log.
#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct Page {
    /// Return entries after this id.
    after: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
}

const MAX_PAGE: i64 = 1000;

/// Events (agents, targets, sites, secrets), oldest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "logs", params(Page),
    responses((status = 200, body = Vec<EventRecord>), (status = 401, body = ApiError)))]
pub(crate) async fn events(
    State(shared): State<Arc<EdgeShared>>,
    Query(page): Query<Page>,
) -> Response {
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    match shared.store.events(page.after.as_deref(), limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e),
    }
}

/// Every admin change (who, what, before/after), oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "logs", params(Page),
    responses((status = 200, body = Vec<AuditRecord>), (status = 401, body = ApiError)))]
pub(crate) async fn audit(
    State(shared): State<Arc<EdgeShared>>,
    Query(page): Query<Page>,
) -> Response {
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    match shared.store.audit_log(page.after.as_deref(), limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e),
    }
}

/// Every agent ever seen: id, version, platform, address, first/last seen.
#[utoipa::path(get, path = "/api/v1/agents", tag = "sites",
    responses((status = 200, body = Vec<AgentRecord>), (status = 401, body = ApiError)))]
pub(crate) async fn agents_seen(State(shared): State<Arc<EdgeShared>>) -> Response {
    match shared.store.agents().await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e),
    }
}

async fn metrics(State(shared): State<Arc<EdgeShared>>) -> Response {
    let body = shared.metrics.render(&shared);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
