//! Phase 1, the request: which host it is for (the authority and the Host
//! header must agree with each other, 400, and with the TLS connection's
//! SNI, 421), and its path, normalised (400 when it cannot be). Everything
//! after reads the [`Head`] this returns; the router and the origin see the
//! same normalised path.

use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::error::ProxyError;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri, Version};
use warren_ingress::host::{request_host as request_host_of, HostError};
use warren_ingress::path::normalize;

/// What the edge established about a request before routing it.
pub(crate) struct Head {
    /// Lower-case host name, no port.
    pub(crate) host: String,
    /// The authority as the client sent it (for `Host` and `Forwarded`).
    pub(crate) authority: String,
    /// The normalised path.
    pub(crate) path: String,
    /// Path and query as the origin will see them.
    pub(crate) uri: Uri,
    /// `Upgrade` value of an HTTP/1.1 upgrade request (WebSocket).
    pub(crate) upgrade: Option<HeaderValue>,
    /// Whether the request may be sent twice (the method is idempotent
    /// and it is no upgrade).
    pub(crate) idempotent: bool,
}

/// Reads the host and path of `req`, made on connection `ctx`.
pub(crate) fn read<B>(ctx: &ConnContext, req: &Request<B>) -> Result<Head, ProxyError> {
    let (host, authority) =
        request_host(req).map_err(|why| ProxyError::BadRequest(why.to_string()))?;
    // The connection's SNI, else the default host (read only then: it
    // clones under a swap).
    let agrees = match &ctx.sni {
        Some(sni) => *sni == host,
        None => ctx.shared.certs.default_host().as_deref() == Some(host.as_str()),
    };
    if !agrees {
        return Err(ProxyError::Misdirected);
    }
    let path = normalize(req.uri().path()).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    let uri: Uri = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    }
    .parse()
    .map_err(|_| ProxyError::BadRequest("unusable request target".into()))?;
    let upgrade = is_upgrade(req);
    let idempotent = idempotent(req.method()) && upgrade.is_none();
    Ok(Head {
        host,
        authority,
        path,
        uri,
        upgrade,
        idempotent,
    })
}

/// Host (lower-case, no port) and the authority string as sent: the
/// rules are `warren_ingress::host`'s (property-tested and fuzzed there).
fn request_host<B>(req: &Request<B>) -> Result<(String, String), HostError> {
    let headers: Vec<&[u8]> = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let got = request_host_of(req.uri().authority().map(|a| a.as_str()), &headers)?;
    Ok((got.host, got.authority))
}

fn is_upgrade<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
