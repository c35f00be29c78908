//! People's devices: a WireGuard endpoint (gotatun, in user space) whose
//! decrypted packets end in a TCP/IP stack of the edge's own
//! (`warren-netstack`, smoltcp), so that every flow a device starts becomes
//! one ordinary stream to an agent of the owning site — asked of the policy
//! first, checked by the agent's allowlist after.
//!
//! ```text
//! device ─UDP─▶ wg.rs (gotatun: handshake, keys, the peer's own address only)
//!   ─IP─▶ driver.rs (one task: netstack::Stack; a new flow: which private
//!         resource, access::check_device)
//!   ─▶ flow.rs: dispatch::open_to_site, then bytes both ways until either
//!       side ends
//! ```
//!
//! The devices themselves live in the store (`warren device add`, the API);
//! [`refresh`] makes the endpoint's peers what the store says, and cuts
//! the flows of a device that is gone or whose user is disabled.

mod dns;
mod driver;
mod flow;
mod udp;
mod wg;

use crate::config::{DevicesSettings, EdgeConfig};
use crate::EdgeShared;
use arc_swap::ArcSwap;
use base64::Engine as _;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The `edge_keys` row holding the endpoint's sealed private key.
const KEY_NAME: &str = "wireguard-x25519";
/// What the sealed key is bound to.
const AAD: &[u8] = b"warren wireguard endpoint v1";

/// A device, as the data path needs it.
pub(crate) struct DeviceInfo {
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) groups: Vec<String>,
    pub(crate) tags: Vec<String>,
    public_key: [u8; 32],
}

/// The running endpoint.
pub(crate) struct Endpoint {
    settings: DevicesSettings,
    public_key: String,
    wg: wg::Wg,
    /// The devices by address (only those whose user may sign in).
    devices: ArcSwap<HashMap<Ipv4Addr, Arc<DeviceInfo>>>,
    /// Open flows per device address.
    flows: Mutex<HashMap<Ipv4Addr, u64>>,
    ctl: mpsc::Sender<driver::Ctl>,
    /// Serialises [`refresh`]es.
    refreshing: tokio::sync::Mutex<()>,
}

/// What the driver needs that exists before the edge's shared state.
pub(crate) struct DriverParts {
    packets: mpsc::Receiver<bytes::BytesMut>,
    out: mpsc::Sender<Vec<u8>>,
    ctl_tx: mpsc::Sender<driver::Ctl>,
    ctl: mpsc::Receiver<driver::Ctl>,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DevicesError {
    #[error(transparent)]
    Kek(#[from] crate::sealed::KekError),
    #[error("store: {0}")]
    Store(#[from] warren_store::StoreError),
    #[error("the stored WireGuard key does not open with {0}: copy that file from the edge that made it")]
    WrongKek(String),
    #[error("cannot listen on {addr} (UDP) for devices: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
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
    /// Binds `[devices] listen` with the store's key (made by the first
    /// edge, sealed under `data_dir/store.kek`).
    pub(crate) async fn start(
        config: &EdgeConfig,
        settings: &DevicesSettings,
        store: &warren_store::Store,
    ) -> Result<(Arc<Endpoint>, DriverParts), DevicesError> {
        let kek_path = config.data_dir.join(crate::sealed::KEK_FILE);
        let kek = crate::sealed::kek(&kek_path)?;
        let stored = store
            .edge_key(KEY_NAME, || {
                crate::sealed::seal(&kek, AAD, &rand::random::<[u8; 32]>()).unwrap_or_default()
            })
            .await?;
        let secret: [u8; 32] = crate::sealed::open(&kek, AAD, &stored)
            .and_then(|k| <[u8; 32]>::try_from(&k[..]).ok())
            .ok_or_else(|| DevicesError::WrongKek(kek_path.display().to_string()))?;
        let secret = gotatun::x25519::StaticSecret::from(secret);
        let public = gotatun::x25519::PublicKey::from(&secret);
        let (wg, packets, out) =
            wg::Wg::start(settings.listen, secret)
                .await
                .map_err(|source| DevicesError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        tracing::info!(event = "devices_listening", addr = %wg.local_addr, "WireGuard endpoint for devices listening");
        let (ctl_tx, ctl) = mpsc::channel(1024);
        let endpoint = Arc::new(Endpoint {
            settings: settings.clone(),
            public_key: base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
            wg,
            devices: ArcSwap::default(),
            flows: Mutex::default(),
            ctl: ctl_tx.clone(),
            refreshing: tokio::sync::Mutex::new(()),
        });
        Ok((
            endpoint,
            DriverParts {
                packets,
                out,
                ctl_tx,
                ctl,
            },
        ))
    }

    /// The endpoint's WireGuard public key (base64), for devices' configs.
    pub(crate) fn public_key(&self) -> &str {
        &self.public_key
    }

    /// `[devices]` as the endpoint started with it.
    pub(crate) fn settings(&self) -> &DevicesSettings {
        &self.settings
    }

    /// The UDP address bound.
    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.wg.local_addr
    }

    /// Traffic of the device with this public key (base64).
    pub(crate) async fn stats(&self, public_key: &str) -> DeviceStats {
        let Some(key) = decode_key(public_key) else {
            return DeviceStats::default();
        };
        let traffic = self.wg.traffic().await;
        let t = traffic.get(&key).copied().unwrap_or_default();
        let flows = self
            .devices
            .load()
            .iter()
            .find(|(_, d)| d.public_key == key)
            .and_then(|(a, _)| self.flows.lock().ok()?.get(a).copied())
            .unwrap_or(0);
        DeviceStats {
            last_handshake_secs: t.last_handshake.map(|d| d.as_secs()),
            rx_bytes: t.rx_bytes,
            tx_bytes: t.tx_bytes,
            flows,
        }
    }

    fn device_at(&self, addr: Ipv4Addr) -> Option<Arc<DeviceInfo>> {
        self.devices.load().get(&addr).cloned()
    }

    fn flow_opened(&self, addr: Ipv4Addr) {
        if let Ok(mut f) = self.flows.lock() {
            *f.entry(addr).or_default() += 1;
        }
    }

    fn flow_closed(&self, addr: Ipv4Addr) {
        if let Ok(mut f) = self.flows.lock() {
            if let Some(n) = f.get_mut(&addr) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    f.remove(&addr);
                }
            }
        }
    }
}

fn decode_key(b64: &str) -> Option<[u8; 32]> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()?
        .try_into()
        .ok()
}

/// Starts the driver (after the edge's shared state exists) and loads the
/// devices.
pub(crate) async fn spawn(shared: &Arc<EdgeShared>, parts: DriverParts, stop: CancellationToken) {
    let Some(endpoint) = shared.devices.clone() else {
        return;
    };
    let settings = endpoint.settings().clone();
    let prefix = settings.network.len;
    let stack = warren_netstack::Stack::new(
        settings.own_address(),
        prefix,
        warren_netstack::Limits {
            mtu: usize::from(wg::MTU),
            ..warren_netstack::Limits::default()
        },
        std::time::Instant::now(),
    );
    let (replies_tx, replies) = mpsc::channel(1024);
    let upstreams = Arc::new(dns::upstreams(&settings.dns_upstream));
    let driver = driver::Driver {
        shared: shared.clone(),
        endpoint,
        stack,
        packets: parts.packets,
        out: parts.out,
        ctl_tx: parts.ctl_tx,
        ctl: parts.ctl,
        wake: Arc::default(),
        carriers: HashMap::new(),
        allowed: HashMap::new(),
        udp: HashMap::new(),
        replies_tx,
        replies,
        made: Vec::new(),
        dns_slots: Arc::new(tokio::sync::Semaphore::new(driver::DNS_IN_FLIGHT)),
        upstreams,
        recheck_at: None,
    };
    tokio::spawn(driver.run(stop));
    refresh(shared).await;
}

/// The private resource that `dst` over `proto` falls in: the longest
/// network holding the address whose ports include the port.
pub(crate) fn private_resource(
    shared: &EdgeShared,
    dst: std::net::SocketAddrV4,
    proto: warren_policy::Proto,
) -> Option<Arc<crate::config::Resource>> {
    private_resource_where(shared, *dst.ip(), |p| p.allows(dst.port(), proto))
}

/// The private resource whose network holds `addr` (the longest), on any
/// of its ports.
pub(crate) fn private_resource_at(
    shared: &EdgeShared,
    addr: Ipv4Addr,
) -> Option<Arc<crate::config::Resource>> {
    private_resource_where(shared, addr, |_| true)
}

fn private_resource_where(
    shared: &EdgeShared,
    addr: Ipv4Addr,
    also: impl Fn(&crate::config::Private) -> bool,
) -> Option<Arc<crate::config::Resource>> {
    let table = shared.resources.load();
    let mut best: Option<(u8, Arc<crate::config::Resource>)> = None;
    for slot in table.by_name.values() {
        let r = slot.resource.load_full();
        let Some(p) = &r.private else { continue };
        if !p.net.contains(std::net::IpAddr::V4(addr)) || !also(p) {
            continue;
        }
        if best.as_ref().is_none_or(|(len, _)| p.net.len > *len) {
            best = Some((p.net.len, r));
        }
    }
    best.map(|(_, r)| r)
}

/// What `warren connect` names as `HOST:PORT` (a private resource's name,
/// its alias, or an address): the resource and the address to reach.
pub(crate) fn resolve_target(
    shared: &EdgeShared,
    to: &str,
) -> Option<(Arc<crate::config::Resource>, std::net::SocketAddrV4)> {
    let (host, port) = to.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        let dst = std::net::SocketAddrV4::new(ip, port);
        return private_resource(shared, dst, warren_policy::Proto::Tcp).map(|r| (r, dst));
    }
    let host = host.to_ascii_lowercase();
    let table = shared.resources.load();
    let resource = table
        .by_name
        .values()
        .map(|s| s.resource.load_full())
        .find(|r| {
            r.private.as_ref().is_some_and(|p| {
                r.name.eq_ignore_ascii_case(&host) || p.alias.as_deref() == Some(&host)
            })
        })?;
    let p = resource.private.as_ref()?;
    let std::net::IpAddr::V4(addr) = p.net.addr else {
        return None;
    };
    (p.net.len == 32 && p.allows(port, warren_policy::Proto::Tcp))
        .then(|| (resource.clone(), std::net::SocketAddrV4::new(addr, port)))
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
/// through the API and whenever the serving configuration changed (a
/// reload, the API, another edge moving the store's version).
pub(crate) async fn refresh(shared: &EdgeShared) {
    let Some(endpoint) = shared.devices.as_ref() else {
        return;
    };
    let _one = endpoint.refreshing.lock().await;
    let stored = match shared.store.devices().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "devices could not be read from the store; the endpoint keeps its peers");
            return;
        }
    };
    let catalog = shared.catalog.load();
    let mut devices = HashMap::new();
    let mut peers = HashMap::new();
    for d in stored {
        let Some(user) = catalog.user_by_email(&d.user) else {
            continue;
        };
        if user.disabled {
            continue;
        }
        let Some(key) = decode_key(&d.public_key) else {
            tracing::warn!(device = %d.name, "a stored device's public key is malformed; skipped");
            continue;
        };
        peers.insert(key, d.address);
        devices.insert(
            d.address,
            Arc::new(DeviceInfo {
                name: d.name,
                email: d.user,
                groups: user.groups.clone(),
                tags: d.tags,
                public_key: key,
            }),
        );
    }
    let before = endpoint.devices.load_full();
    for (addr, old) in before.iter() {
        let same = devices.get(addr).is_some_and(|new| {
            new.public_key == old.public_key
                && new.email == old.email
                && new.tags == old.tags
                && new.groups == old.groups
        });
        if !same {
            let _ = endpoint.ctl.send(driver::Ctl::Cut(*addr)).await;
        }
    }
    endpoint.devices.store(Arc::new(devices));
    endpoint.wg.set_peers(&peers).await;
    let _ = endpoint.ctl.send(driver::Ctl::Recheck).await;
}
