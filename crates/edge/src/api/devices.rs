//! People's devices through the API: `GET|POST /api/v1/devices`,
//! `GET|DELETE /api/v1/devices/{name}` (what `warren device add|list|revoke`
//! call).
//!
//! Adding a device needs the WireGuard endpoint (`[devices]`): its key, the
//! address it gives out and what it routes go into the device's `wg-quick`
//! config. Without a public key in the request the edge makes the device's
//! key pair (X25519, aws-lc-rs: the one crypto provider) and returns the
//! private key in that one answer, inside the config and its QR code; it is
//! never stored or logged. The address is the lowest free one of the range,
//! past the network's own and Warren's (its first host). Listing and
//! revoking work from the store alone, so a device can be revoked on any
//! edge, whether or not it serves devices; the endpoint follows through
//! [`crate::devices::refresh`] (here at once, on the other edges at their
//! sync).

use crate::api::auth::Caller;
use crate::api::error::{bad_json, error, field_errors, store_error, ApiError, FieldError};
use crate::devices::DeviceStats;
use crate::EdgeShared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use warren_store::{Device, StoreError};
use zeroize::Zeroizing;

/// How often an add tries the next free address when another add took the
/// one it chose (two edges on one store, or two requests at once).
const ADD_TRIES: usize = 5;

/// The answer when this edge has no WireGuard endpoint.
const NOT_SERVED: &str = "devices are not served: set [devices] in the edge's config";

/// `POST /api/v1/devices`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevice {
    /// 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    name: String,
    /// The email of a user the edge knows (`warren user add`): whom the
    /// policy is asked about the device's flows.
    user: String,
    /// `tag:NAME`s the policy may name the device by; with a policy loaded,
    /// each must be one its `[tags]` declares.
    #[serde(default)]
    tags: Vec<String>,
    /// The device's own WireGuard public key (base64 of 32 bytes), when it
    /// made its key pair itself; none: the edge makes one and shows the
    /// private key once.
    public_key: Option<String>,
}

/// A new device with its `wg-quick` config.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedDevice {
    device: Device,
    /// The device's private key (base64), when the edge made it: in this
    /// answer only, never stored.
    private_key: Option<String>,
    /// The device's `wg-quick` config: all its DNS through Warren (`DNS =`),
    /// and the private networks routed to the endpoint (`AllowedIPs`).
    config: String,
    /// For a laptop that sends only the private names to Warren: the
    /// systemd-resolved routing domains, instead of `DNS =`.
    resolved: String,
    /// The config as a QR code for a terminal (Unicode half blocks), for a
    /// phone's WireGuard app to scan: only when the private key is in it.
    qr: Option<String>,
}

/// A device with its traffic.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct DeviceStatus {
    #[serde(flatten)]
    device: Device,
    /// Its WireGuard traffic, when this edge runs the endpoint.
    stats: Option<DeviceStats>,
}

/// Every device with its traffic on this edge's endpoint, by name.
pub(crate) async fn device_status(shared: &EdgeShared) -> Result<Vec<DeviceStatus>, StoreError> {
    let devices = shared.store.devices().await?;
    let mut out = Vec::with_capacity(devices.len());
    for device in devices {
        out.push(with_stats(shared, device).await);
    }
    Ok(out)
}

async fn with_stats(shared: &EdgeShared, device: Device) -> DeviceStatus {
    let stats = match &shared.devices {
        Some(endpoint) => Some(endpoint.stats(&device.public_key).await),
        None => None,
    };
    DeviceStatus { device, stats }
}

/// Every device, by name, with its last handshake, bytes and flows (the
/// private keys are nowhere).
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, body = Vec<DeviceStatus>), (status = 401, body = ApiError)))]
pub(crate) async fn list(State(shared): State<Arc<EdgeShared>>) -> Response {
    match device_status(&shared).await {
        Ok(devices) => Json(devices).into_response(),
        Err(e) => store_error(e),
    }
}

/// One device with its traffic.
#[utoipa::path(get, path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path, description = "device name")),
    responses((status = 200, body = DeviceStatus), (status = 404, body = ApiError)))]
pub(crate) async fn get(
    State(shared): State<Arc<EdgeShared>>,
    Path(name): Path<String>,
) -> Response {
    match shared.store.device(&name).await {
        Ok(Some(device)) => Json(with_stats(&shared, device).await).into_response(),
        Ok(None) => store_error(not_found(name)),
        Err(e) => store_error(e),
    }
}

fn not_found(name: String) -> StoreError {
    StoreError::NotFound {
        what: "device",
        id: name,
    }
}

/// Revokes a device: removed from the store, its peer from the endpoint
/// and its flows cut (on other edges at their next sync).
#[utoipa::path(delete, path = "/api/v1/devices/{name}", tag = "devices",
    params(("name" = String, Path, description = "device name")),
    responses((status = 204), (status = 404, body = ApiError)))]
pub(crate) async fn delete(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match shared.store.remove_device(&caller.key_id, &name).await {
        Ok(true) => {
            crate::devices::refresh(&shared).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => store_error(not_found(name)),
        Err(e) => store_error(e),
    }
}

/// Adds a device; the answer carries its `wg-quick` config and, when the
/// edge made the key pair, the private key, once.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = CreatedDevice),
        (status = 400, description = "invalid_json", body = ApiError),
        (status = 409, description = "conflict (name or key taken, no free address), devices_not_served", body = ApiError),
        (status = 422, description = "invalid_field", body = ApiError)))]
pub(crate) async fn create(
    State(shared): State<Arc<EdgeShared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewDevice>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(r) => return bad_json(r),
    };
    let Some(endpoint) = shared.devices.clone() else {
        return error(
            StatusCode::CONFLICT,
            "devices_not_served",
            NOT_SERVED.into(),
        );
    };
    let settings = endpoint.settings();
    let user = new.user.trim().to_ascii_lowercase();
    // Whether the store knows the user (a malformed email is named as such).
    let known = if warren_policy::valid_email(&user) {
        match shared.store.user(&user).await {
            Ok(u) => u.email == user,
            Err(StoreError::NotFound { .. }) => false,
            Err(e) => return store_error(e),
        }
    } else {
        true
    };
    let bad = problems(&shared, &new, &user, known);
    if !bad.is_empty() {
        let message = bad
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        return field_errors(message, bad);
    }
    let (private_key, public_key) = match new.public_key.as_deref() {
        Some(k) => (None, canonical_key(k).unwrap_or_default()),
        None => match key_pair() {
            Ok((private, public)) => (Some(private), public),
            Err(()) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "making the device's key pair failed".into(),
                )
            }
        },
    };
    let own = settings.own_address();
    let mut device = Device {
        name: new.name,
        user,
        tags: new.tags,
        public_key,
        address: own, // chosen as it is stored, below
        created_by: caller.key_id.clone(),
        created_ms: warren_store::now_ms(),
    };
    if let Err(refused) = store_at_free_address(&shared, &caller, settings, &mut device).await {
        return refused;
    }
    crate::devices::refresh(&shared).await;
    let config = wg_quick(&WgQuick {
        private_key: private_key.as_deref().map(String::as_str),
        address: device.address,
        dns: own,
        endpoint_key: endpoint.public_key(),
        endpoint: &settings.endpoint,
        routes: &crate::devices::routes(&shared),
    });
    let resolved = resolved_snippet(own, &routing_domains(&shared));
    let qr = private_key.as_ref().and_then(|_| qr_code(&config));
    (
        StatusCode::CREATED,
        Json(CreatedDevice {
            device,
            private_key: private_key.map(|k| k.as_str().to_owned()),
            config,
            resolved,
            qr,
        }),
    )
        .into_response()
}

/// Every problem of `new`, in the request's order: its name, its user
/// (`known`: whether the store has a user with that email), its tags, its
/// public key.
fn problems(shared: &EdgeShared, new: &NewDevice, user: &str, known: bool) -> Vec<FieldError> {
    let mut bad = Vec::new();
    let mut field = |field: String, message: String| bad.push(FieldError { field, message });
    if !Device::valid_name(&new.name) {
        field(
            "name".into(),
            "a device name is 1 to 64 of a-z, 0-9, `-`, `_`, `.`".into(),
        );
    }
    if !warren_policy::valid_email(user) {
        field(
            "user".into(),
            format!("`{user}` is not an email address the policy can name"),
        );
    } else if !known {
        field(
            "user".into(),
            format!("no user `{user}`: add them first (`warren user add`)"),
        );
    }
    let config = shared.config.load();
    for (i, tag) in new.tags.iter().enumerate() {
        if !warren_policy::valid_tag(tag) {
            field(
                format!("tags[{i}]"),
                format!("`{tag}`: a tag is named tag:NAME (NAME: a-z, 0-9, - and _)"),
            );
        } else if config
            .policy
            .as_ref()
            .is_some_and(|p| !p.policy.file().tags.contains_key(tag))
        {
            field(
                format!("tags[{i}]"),
                format!("tag `{tag}` is not declared in the policy's [tags]: a tag needs an owner there"),
            );
        }
    }
    if let Some(k) = &new.public_key {
        if canonical_key(k).is_none() {
            field(
                "public_key".into(),
                "a WireGuard public key is the base64 of 32 bytes (44 characters, `wg pubkey` prints one)".into(),
            );
        }
    }
    bad
}

/// `key` as a WireGuard key: base64 of exactly 32 bytes, in its one
/// canonical spelling (so that one key cannot be stored twice).
fn canonical_key(key: &str) -> Option<String> {
    let bytes = BASE64.decode(key.trim()).ok()?;
    (bytes.len() == 32).then(|| BASE64.encode(bytes))
}

/// A fresh X25519 key pair for WireGuard, both halves base64: the private
/// key as the 32 bytes RFC 7748 calls the scalar (what `wg genkey` prints;
/// clamped where it is used), and its public key.
fn key_pair() -> Result<(Zeroizing<String>, String), ()> {
    use aws_lc_rs::agreement::{PrivateKey, X25519};
    use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};
    let private = PrivateKey::generate(&X25519).map_err(|_| ())?;
    let seed: Curve25519SeedBin<'static> = private.as_be_bytes().map_err(|_| ())?;
    let public = private.compute_public_key().map_err(|_| ())?;
    Ok((
        Zeroizing::new(BASE64.encode(seed.as_ref())),
        BASE64.encode(public.as_ref()),
    ))
}

/// Stores `device` at the lowest free address of the devices' range; when
/// another add takes that address first (another edge, or a request at the
/// same moment), at the next one, a few times.
#[allow(clippy::result_large_err)] // the handler returns the Response at once
async fn store_at_free_address(
    shared: &EdgeShared,
    caller: &Caller,
    settings: &crate::config::DevicesSettings,
    device: &mut Device,
) -> Result<(), Response> {
    let own = settings.own_address();
    for _ in 0..ADD_TRIES {
        let used: BTreeSet<Ipv4Addr> = match shared.store.devices().await {
            Ok(all) => all.into_iter().map(|d| d.address).collect(),
            Err(e) => return Err(store_error(e)),
        };
        let Some(address) = free_address(&settings.network, own, &used) else {
            return Err(error(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "no free address left in {}/{}: revoke a device or widen [devices] address",
                    settings.network.addr, settings.network.len
                ),
            ));
        };
        device.address = address;
        match shared.store.create_device(&caller.key_id, device).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict(message)) => match address_was_taken(shared, device).await {
                Ok(true) => continue,
                Ok(false) => return Err(error(StatusCode::CONFLICT, "conflict", message)),
                Err(e) => return Err(store_error(e)),
            },
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(error(
        StatusCode::CONFLICT,
        "conflict",
        "other devices took every address this add chose; try again".into(),
    ))
}

/// Whether a refused add was refused only for its address (taken by an add
/// at the same moment): its name and key are still free.
async fn address_was_taken(shared: &EdgeShared, device: &Device) -> Result<bool, StoreError> {
    let all = shared.store.devices().await?;
    Ok(!all
        .iter()
        .any(|d| d.name == device.name || d.public_key == device.public_key))
}

/// The lowest address of `network` that is a host's (not the network's
/// own, not the broadcast), not Warren's (`own`) and not in `used`.
fn free_address(
    network: &warren_policy::Net,
    own: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let IpAddr::V4(base) = network.addr else {
        return None;
    };
    let base = u32::from(base);
    let size = 1u64 << (32 - u32::from(network.len.min(32)));
    (1..size.saturating_sub(1))
        .map(|i| Ipv4Addr::from(base.wrapping_add(i as u32)))
        .find(|a| *a != own && !used.contains(a))
}

/// What goes into a device's `wg-quick` config.
struct WgQuick<'a> {
    /// The device's private key; none: the device holds its own.
    private_key: Option<&'a str>,
    address: Ipv4Addr,
    /// Warren's resolver.
    dns: Ipv4Addr,
    /// The endpoint's public key.
    endpoint_key: &'a str,
    /// `host:port` the device dials.
    endpoint: &'a str,
    /// `AllowedIPs`.
    routes: &'a [String],
}

/// The device's `wg-quick` config.
fn wg_quick(c: &WgQuick<'_>) -> String {
    let private = match c.private_key {
        Some(k) => format!("PrivateKey = {k}"),
        None => "# PrivateKey = (the device's own key)".to_owned(),
    };
    format!(
        "[Interface]\n{private}\nAddress = {}/32\nDNS = {}\n\n[Peer]\nPublicKey = {}\n\
         Endpoint = {}\nAllowedIPs = {}\nPersistentKeepalive = 25\n",
        c.address,
        c.dns,
        c.endpoint_key,
        c.endpoint,
        c.routes.join(", "),
    )
}

/// The routing domains of the private names: each alias's parent domain
/// (`grafana.home.example` → `home.example`), once each, sorted.
fn routing_domains(shared: &EdgeShared) -> Vec<String> {
    let config = shared.config.load();
    let aliases = config
        .resources
        .iter()
        .filter_map(|r| r.private.as_ref().and_then(|p| p.alias.as_deref()));
    parent_domains(aliases)
}

fn parent_domains<'a>(aliases: impl Iterator<Item = &'a str>) -> Vec<String> {
    let domains: BTreeSet<String> = aliases
        .map(|a| {
            let a = a.trim_end_matches('.');
            a.split_once('.').map_or(a, |(_, parent)| parent).to_owned()
        })
        .collect();
    domains.into_iter().collect()
}

/// For laptops under systemd-resolved: only the private names go to
/// Warren's resolver (`own`), the rest as before. Comment lines, so that it
/// can sit in the config file as it is.
fn resolved_snippet(own: Ipv4Addr, domains: &[String]) -> String {
    let routed: Vec<String> = domains.iter().map(|d| format!("~{d}")).collect();
    if routed.is_empty() {
        return format!(
            "# No private resource has an alias, so no name needs Warren's resolver\n\
             # ({own}); a laptop may leave out the DNS line of the config.\n"
        );
    }
    let routed = routed.join(" ");
    format!(
        "# Only the private names through Warren (systemd-resolved): in the\n\
         # config's [Interface], replace the DNS line with\n\
         #   PostUp = resolvectl dns %i {own}; resolvectl domain %i {routed}\n\
         # or, with the interface up (wg0 here):\n\
         #   resolvectl dns wg0 {own}\n\
         #   resolvectl domain wg0 {routed}\n\
         # or, for systemd-networkd, in the interface's .network file:\n\
         #   [Network]\n\
         #   DNS={own}\n\
         #   Domains={routed}\n"
    )
}

/// `text` as a QR code for a terminal: light modules as full blocks, for
/// the usual dark background (as `qrencode -t utf8` draws it); none when it
/// does not fit in one.
fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    use qrcode::{EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .or_else(|_| QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L))
        .ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> warren_policy::Net {
        warren_policy::Net::parse(s).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_lowest_free_host_address_past_warrens_own() {
        let n = net("100.96.0.0/24");
        let own = ip("100.96.0.1");
        let mut used = BTreeSet::new();
        assert_eq!(free_address(&n, own, &used), Some(ip("100.96.0.2")));
        used.insert(ip("100.96.0.2"));
        used.insert(ip("100.96.0.4"));
        assert_eq!(free_address(&n, own, &used), Some(ip("100.96.0.3")));
        // Every host address but the broadcast taken: nothing left.
        used.extend((2..=254).map(|i| Ipv4Addr::new(100, 96, 0, i)));
        assert_eq!(free_address(&n, own, &used), None);
        // A revoked device's address is given again.
        used.remove(&ip("100.96.0.77"));
        assert_eq!(free_address(&n, own, &used), Some(ip("100.96.0.77")));
        // A /30 has one device address: .2 (.0 the network, .1 Warren, .3 broadcast).
        let small = net("10.0.0.0/30");
        let none = BTreeSet::new();
        assert_eq!(
            free_address(&small, ip("10.0.0.1"), &none),
            Some(ip("10.0.0.2"))
        );
        let taken = BTreeSet::from([ip("10.0.0.2")]);
        assert_eq!(free_address(&small, ip("10.0.0.1"), &taken), None);
        assert_eq!(free_address(&net("fd00::/64"), own, &none), None);
    }

    #[test]
    fn public_keys_are_base64_of_32_bytes_in_one_spelling() {
        let k = BASE64.encode([7u8; 32]);
        assert_eq!(
            &k[42..],
            "c=",
            "{k}: `d` below differs only in bits past the 32 bytes"
        );
        assert_eq!(canonical_key(&k), Some(k.clone()));
        assert_eq!(canonical_key(&format!(" {k}\n")), Some(k.clone()));
        for bad in [
            String::new(),
            BASE64.encode([7u8; 31]),
            BASE64.encode([7u8; 33]),
            "not base64 at all!!".to_owned(),
            k.trim_end_matches('=').to_owned(),
            // The same bytes with other trailing bits: not canonical.
            format!("{}d=", &k[..42]),
        ] {
            assert_eq!(canonical_key(&bad), None, "{bad:?}");
        }
    }

    /// The encoding is WireGuard's: RFC 7748's test vector (section 6.1)
    /// read and written the way [`key_pair`] does.
    #[test]
    fn key_pairs_are_wireguard_keys() {
        use aws_lc_rs::agreement::{PrivateKey, X25519};
        let alice = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let key = PrivateKey::from_private_key(&X25519, &alice).unwrap();
        assert_eq!(
            hex::encode(key.compute_public_key().unwrap().as_ref()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let (private, public) = key_pair().unwrap();
        let (again, other) = key_pair().unwrap();
        assert_ne!((private.as_str(), &public), (again.as_str(), &other));
        let seed = BASE64.decode(private.as_str()).unwrap();
        assert_eq!(seed.len(), 32);
        let derived = PrivateKey::from_private_key(&X25519, &seed)
            .unwrap()
            .compute_public_key()
            .unwrap();
        assert_eq!(BASE64.encode(derived.as_ref()), public);
        assert_eq!(canonical_key(&public), Some(public.clone()));
    }

    #[test]
    fn the_config_is_wg_quick() {
        let routes = ["100.96.0.1/32".to_owned(), "192.168.50.10/32".to_owned()];
        let mut c = WgQuick {
            private_key: Some("cHJpdmF0ZQ=="),
            address: ip("100.96.0.2"),
            dns: ip("100.96.0.1"),
            endpoint_key: "ZW5kcG9pbnQ=",
            endpoint: "vps.example.com:51820",
            routes: &routes,
        };
        assert_eq!(
            wg_quick(&c),
            "[Interface]\nPrivateKey = cHJpdmF0ZQ==\nAddress = 100.96.0.2/32\nDNS = 100.96.0.1\n\n\
             [Peer]\nPublicKey = ZW5kcG9pbnQ=\nEndpoint = vps.example.com:51820\n\
             AllowedIPs = 100.96.0.1/32, 192.168.50.10/32\nPersistentKeepalive = 25\n"
        );
        c.private_key = None;
        let text = wg_quick(&c);
        assert!(
            text.starts_with("[Interface]\n# PrivateKey = (the device's own key)\nAddress"),
            "{text}"
        );
    }

    #[test]
    fn routing_domains_are_the_aliases_parents() {
        let domains = parent_domains(
            [
                "grafana.home.example",
                "jellyfin.home.example",
                "nas.lan",
                "printer",
                "x.y.office.example.",
            ]
            .into_iter(),
        );
        assert_eq!(
            domains,
            ["home.example", "lan", "printer", "y.office.example"]
        );
        let text = resolved_snippet(ip("100.96.0.1"), &domains);
        assert!(
            text.contains("resolvectl dns wg0 100.96.0.1\n")
                && text.contains(
                    "resolvectl domain wg0 ~home.example ~lan ~printer ~y.office.example\n"
                )
                && text.contains("Domains=~home.example ~lan"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
        let none = resolved_snippet(ip("100.96.0.1"), &[]);
        assert!(none.contains("no name needs"), "{none}");
    }

    #[test]
    fn the_qr_code_is_terminal_text() {
        let qr = qr_code("[Interface]\nPrivateKey = x\n").unwrap();
        assert!(qr.lines().count() > 10, "{qr}");
        assert!(qr
            .chars()
            .all(|c| " \u{2580}\u{2584}\u{2588}\n".contains(c)));
        assert_eq!(qr_code(&"x".repeat(5000)), None, "too long for one code");
    }
}
