//! Phase 2, the route: host and longest path prefix to a resource (404 when
//! nothing is published there).

use crate::config::Resource;
use crate::proxy::balance::ResourceSlot;
use crate::proxy::http::error::ProxyError;
use crate::proxy::http::request::Head;
use crate::EdgeShared;
use std::sync::Arc;
use warren_ingress::router::Route;

/// The resource a request goes to: its live slot and its settings as of now.
pub(crate) struct Routed {
    pub(crate) slot: Arc<ResourceSlot>,
    pub(crate) resource: Arc<Resource>,
}

/// Finds the resource published at the request's host and path.
pub(crate) fn route(shared: &EdgeShared, head: &Head) -> Result<Routed, ProxyError> {
    let table = shared.resources.load();
    match table.http.route(&head.host, &head.path) {
        Route::Found(slot) => Ok(Routed {
            slot: slot.clone(),
            resource: slot.resource.load_full(),
        }),
        Route::UnknownHost | Route::NoPath => Err(ProxyError::NoRoute),
    }
}
