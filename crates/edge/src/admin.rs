//! The admin listener: the REST API, metrics and health endpoint.
//!
//! Everything under `/api/v1` needs `Authorization: Bearer <token>` (see
//! [`crate::api_keys`]); read-only keys may only GET. Errors are JSON with a
//! stable `code` and a `message`.
//!
//! `GET /api/v1/sites` lists every configured site with its connected agents;
//! `GET /api/v1/resources` every resource with its targets' health;
//! `GET /api/v1/events` and `GET /api/v1/audit` page through the store's
//! event and audit logs (`?after=ID&limit=N`, oldest first);
//! `GET /api/v1/agents` lists every agent ever seen;
//! `GET|POST /api/v1/keys`, `DELETE /api/v1/keys/{id}` manage API keys;
//! `POST /api/v1/sites`, `DELETE /api/v1/sites/{id}` and
//! `POST /api/v1/sites/{id}/rotate` manage sites ([`crate::admin_sites`]).
//! Without a key: `GET /metrics`, the Prometheus text exposition
//! ([`crate::metrics`]), and `GET /healthz`. Bind the listener to loopback
//! or a private network (the default is loopback).

use crate::admin_keys::{self, require_key, store_error};
use crate::admin_sites;
use crate::registry::SiteStatus;
use crate::EdgeShared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<EdgeShared>, stop: CancellationToken) {
    let api = Router::new()
        .route("/api/v1/sites", get(sites).post(admin_sites::create))
        .route("/api/v1/sites/{id}", delete(admin_sites::delete))
        .route("/api/v1/sites/{id}/rotate", post(admin_sites::rotate))
        .route("/api/v1/resources", get(resources))
        .route("/api/v1/events", get(events))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/agents", get(agents_seen))
        .route(
            "/api/v1/keys",
            get(admin_keys::list).post(admin_keys::create),
        )
        .route("/api/v1/keys/{id}", delete(admin_keys::delete))
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_key));
    let app = Router::new()
        .merge(api)
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

async fn sites(State(shared): State<Arc<EdgeShared>>) -> Response {
    let config = shared.config.load();
    let mut ids: Vec<String> = config.sites.keys().cloned().collect();
    match shared.store.list_sites().await {
        Ok(stored) => ids.extend(stored.into_iter().map(|s| s.id)),
        Err(e) => return store_error(e),
    }
    ids.sort();
    ids.dedup();
    let status: Vec<SiteStatus> = shared.registry.status(ids.iter());
    Json(status).into_response()
}

#[derive(serde::Serialize)]
struct TargetStatus {
    site: String,
    address: String,
    /// `healthy`, `unhealthy`, or `unchecked` (no health check, or no report yet).
    health: &'static str,
    /// Kept-alive origin connections waiting for the next request (http).
    idle_connections: usize,
}

#[derive(serde::Serialize)]
struct ResourceStatus {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    host: Option<String>,
    path: Option<String>,
    listen: Option<String>,
    targets: Vec<TargetStatus>,
}

async fn resources(State(shared): State<Arc<EdgeShared>>) -> Json<Vec<ResourceStatus>> {
    let config = shared.config.load();
    let health = shared.health.snapshot();
    Json(
        config
            .resources
            .iter()
            .map(|r| ResourceStatus {
                name: r.name.clone(),
                kind: r.kind.as_str(),
                host: r.host.clone(),
                path: r.path.clone(),
                listen: r.listen.map(|l| l.to_string()),
                targets: r
                    .targets
                    .iter()
                    .map(|t| TargetStatus {
                        site: t.site.clone(),
                        address: t.address.clone(),
                        health: match health.get(&crate::balance::check_id(&r.name, t)) {
                            Some(true) => "healthy",
                            Some(false) => "unhealthy",
                            None => "unchecked",
                        },
                        idle_connections: shared.origin_pool.idle_for(&t.site, &t.address),
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// A page of a log.
#[derive(serde::Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<i64>,
}

const MAX_PAGE: i64 = 1000;

/// The JSON error every endpoint answers with: a stable `code` and a
/// message for people.
pub(crate) fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

async fn events(State(shared): State<Arc<EdgeShared>>, Query(page): Query<Page>) -> Response {
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    match shared.store.events(page.after.as_deref(), limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e),
    }
}

async fn audit(State(shared): State<Arc<EdgeShared>>, Query(page): Query<Page>) -> Response {
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    match shared.store.audit_log(page.after.as_deref(), limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => store_error(e),
    }
}

async fn agents_seen(State(shared): State<Arc<EdgeShared>>) -> Response {
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
