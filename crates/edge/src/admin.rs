//! The admin listener: status API and health endpoint.
//!
//! `GET /api/v1/sites` lists every configured site with its connected agents;
//! `GET /healthz` answers `ok`. Bind it to loopback (the default): it has no
//! authentication yet.

use crate::registry::SiteStatus;
use crate::EdgeShared;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<EdgeShared>, stop: CancellationToken) {
    let app = Router::new()
        .route("/api/v1/sites", get(sites))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}

async fn sites(State(shared): State<Arc<EdgeShared>>) -> Json<Vec<SiteStatus>> {
    let config = shared.config.load();
    Json(shared.registry.status(config.sites.keys()))
}
