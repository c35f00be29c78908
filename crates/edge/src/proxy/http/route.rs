//! Phase 2, the route: host and longest path prefix to a resource (404 when
//! nothing is published there).

use crate::config::Resource;
use crate::proxy::balance::ResourceSlot;
use crate::proxy::http::error::ProxyError;
use crate::proxy::http::request::Head;
use crate::EdgeShared;
use std::sync::Arc;
use warren_ingress::path::has_encoded_slash;
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
        Route::Found(slot) => {
            let resource = slot.resource.load_full();
            // Some origins decode `%2F` into a separator and would see
            // another path than the one routed; refused unless the
            // resource says its origin needs them.
            if has_encoded_slash(&head.path) && !resource.keep_encoded_slashes {
                return Err(ProxyError::BadRequest(
                    "the request path contains an escaped slash (%2F); refused".into(),
                ));
            }
            Ok(Routed {
                slot: slot.clone(),
                resource,
            })
        }
        Route::UnknownHost | Route::NoPath => Err(ProxyError::NoRoute),
    }
}
