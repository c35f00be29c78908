//! `GET /api/v1/status`: what `warren status` prints. The edge's version,
//! the oldest agent it admits, the configuration version, every site with
//! its agents (version, platform, config version applied, streams, bytes,
//! old-secret flag), every resource with its targets' health, and every
//! device with its last handshake, bytes and flows.
//!
//! `GET /api/v1/policy`: the policy the edge decides with, as loaded, for
//! `warren policy explain --api`.

use crate::api::devices::{device_status, DeviceStatus};
use crate::api::error::ApiError;
use crate::api::resources::{resource_status, ResourceStatus};
use crate::tunnel::registry::SiteStatus;
use crate::EdgeShared;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The edge at a glance.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EdgeStatus {
    /// This edge's version.
    version: &'static str,
    /// Agents older than this are refused at the handshake.
    min_agent_version: &'static str,
    /// The configuration version agents should have applied.
    config_version: u64,
    /// The tunnel listener as bound (agents dial its port).
    tunnel_listen: String,
    /// The tunnel certificate's SHA-256 pin, for `warren site --pin`.
    tunnel_pin: String,
    sites: Vec<SiteStatus>,
    resources: Vec<ResourceStatus>,
    /// People's devices with their traffic on this edge's endpoint; absent
    /// when the store could not be read (the rest is this edge's memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    devices: Option<Vec<DeviceStatus>>,
}

/// Every site the catalog holds (file and store), with its live agents.
pub(crate) fn site_status(shared: &EdgeShared) -> Vec<SiteStatus> {
    shared.registry.status(shared.catalog.load().sites.keys())
}

/// Sites, agents, versions, health, streams and bytes; devices.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, body = EdgeStatus), (status = 401, body = ApiError)))]
pub(crate) async fn status(State(shared): State<Arc<EdgeShared>>) -> Response {
    let sites = site_status(&shared);
    let resources = resource_status(&shared).await;
    let config_version = *shared.config_changed.borrow();
    let devices = match device_status(&shared).await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "status: the devices could not be read from the store");
            None
        }
    };
    Json(EdgeStatus {
        version: env!("CARGO_PKG_VERSION"),
        min_agent_version: crate::tunnel::admit::MIN_AGENT_VERSION,
        config_version,
        tunnel_listen: shared.tunnel_addr.to_string(),
        tunnel_pin: shared.tunnel_pin.clone(),
        sites,
        resources,
        devices,
    })
    .into_response()
}
