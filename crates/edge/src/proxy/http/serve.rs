//! Terminated HTTP: one hyper server connection per TLS connection (HTTP/1.1
//! and HTTP/2), each request routed by host and normalised path, forwarded
//! over a tunnel stream as HTTP/1.1, streamed both ways.
//!
//! Request stages, in order:
//!
//! ```text
//! hyper parse (header timeout, size limit: 431)
//!  → host: authority or Host, must agree with each other (400) and with the SNI (421)
//!  → path: normalised (400 if it cannot be); the router and the origin see the same path
//!  → route: host + longest prefix (404 page when nothing matches)
//!  → headers: hop-by-hop and client-sent X-Forwarded-*/Forwarded/X-Real-IP removed, ours set
//!  → dispatch: target by health and balance, agent, stream (502/503 pages)
//!  → origin: HTTP/1.1 over the stream; Upgrade (WebSocket) spliced after 101
//!  → access log line when the response body ends
//! ```
//!
//! Request smuggling has no room: hyper rejects malformed framing, and the
//! request the origin sees is re-serialised by hyper with framing of our
//! choosing, never the client's bytes.

use crate::proxy::balance::target_token;
use crate::proxy::dispatch::{connect_reusing, open_to_site, Guards, Via};
use crate::proxy::http::access_log::AccessEntry;
use crate::proxy::http::body::{full, BoxError, ResponseBody};
use crate::proxy::http::origin_pool::Sender;
use crate::proxy::http::pages::{dispatch_page, page};
use crate::EdgeShared;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use warren_ingress::path::normalize;
use warren_ingress::router::Route;
use warren_proto::TargetProtocol;
use warren_transport::TunnelStream;

/// How long a client may take to send a request's headers (slowloris).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted (431 beyond).
const MAX_HEAD: usize = 64 * 1024;

/// What every request on one client connection shares.
pub(crate) struct ConnContext {
    pub(crate) shared: Arc<EdgeShared>,
    pub(crate) client: SocketAddr,
    /// The SNI the connection was made with (lower-case), if any.
    pub(crate) sni: Option<String>,
}

/// Serves HTTP on an established (TLS) connection until it closes.
pub(crate) async fn serve_connection<S>(io: S, ctx: Arc<ConnContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(ctx, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32)
        .max_concurrent_streams(256);
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// Host (lower-case, no port) and the authority string as sent.
fn request_host(req: &Request<Incoming>) -> Result<(String, String), &'static str> {
    let from_header = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().map_err(|_| "the Host header is not text"))
        .collect::<Result<Vec<_>, _>>()?;
    if from_header.len() > 1 {
        return Err("more than one Host header");
    }
    let from_uri = req.uri().authority().map(|a| a.as_str());
    let authority = match (from_uri, from_header.first()) {
        (Some(u), Some(h)) if !u.eq_ignore_ascii_case(h) => {
            return Err("the request target names another host than the Host header")
        }
        (Some(u), _) => u.to_owned(),
        (None, Some(h)) => (*h).to_owned(),
        (None, None) => return Err("no Host header"),
    };
    let host = match authority.parse::<http::uri::Authority>() {
        Ok(a) => a.host().to_owned(),
        Err(_) => return Err("the Host header is not a host"),
    };
    if authority.contains('@') {
        return Err("the Host header carries user information");
    }
    let host = warren_ingress::client_hello::host_name(host.as_bytes())
        .map_err(|_| "the Host header is not a host name")?;
    Ok((host, authority))
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Headers a client may not set for the origin to believe.
fn spoofable(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == "forwarded" || n == "x-real-ip" || n.starts_with("x-forwarded-")
}

/// Removes hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    let hop: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for n in hop {
        headers.remove(n);
    }
}

fn is_upgrade(req: &Request<Incoming>) -> Option<HeaderValue> {
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

fn sticky_cookie_name(resource: &str) -> String {
    format!("warren_{resource}")
}

fn sticky_from_cookies(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

async fn handle(ctx: Arc<ConnContext>, req: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let mut entry = AccessEntry::new(ctx.client, req.method().as_str());
    let response = route_and_forward(&ctx, req, &mut entry).await;
    let status = match &response {
        Ok((resp, _)) | Err(resp) => resp.status().as_u16(),
    };
    ctx.shared
        .metrics
        .http_answered(&entry.resource, status, started.elapsed().as_secs_f64());
    match response {
        Ok((resp, guards)) => entry.wrap(resp, guards, started, ctx.shared.access_log.clone()),
        Err(resp) => entry.wrap(resp, None, started, ctx.shared.access_log.clone()),
    }
}

type Forwarded = (Response<ResponseBody>, Option<Guards>);

async fn route_and_forward(
    ctx: &ConnContext,
    mut req: Request<Incoming>,
    entry: &mut AccessEntry,
) -> Result<Forwarded, Response<ResponseBody>> {
    let (host, authority) = request_host(&req).map_err(|why| page(StatusCode::BAD_REQUEST, why))?;
    entry.host = host.clone();
    let expected = ctx.sni.clone().or_else(|| ctx.shared.certs.default_host());
    if expected.as_deref() != Some(host.as_str()) {
        return Err(page(
            StatusCode::MISDIRECTED_REQUEST,
            "this connection was made for another host name; open a new connection",
        ));
    }
    let path =
        normalize(req.uri().path()).map_err(|e| page(StatusCode::BAD_REQUEST, &e.to_string()))?;
    entry.path = path.clone();
    let table = ctx.shared.resources.load();
    let slot = match table.http.route(&host, &path) {
        Route::Found(slot) => slot.clone(),
        Route::UnknownHost | Route::NoPath => {
            return Err(page(
                StatusCode::NOT_FOUND,
                "nothing is published at this address",
            ))
        }
    };
    drop(table);
    let resource = slot.resource.load_full();
    entry.resource = resource.name.clone();

    // The request the origin sees.
    let upgrade = is_upgrade(&req);
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let uri: Uri = path_and_query
        .parse()
        .map_err(|_| page(StatusCode::BAD_REQUEST, "unusable request target"))?;
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers);
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| spoofable(n)).cloned().collect();
    for n in spoofed {
        headers.remove(n);
    }
    let client_ip = ctx.client.ip().to_canonical();
    let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut headers, "x-forwarded-for", client_ip.to_string());
    set(&mut headers, "x-real-ip", client_ip.to_string());
    set(&mut headers, "x-forwarded-proto", "https".into());
    set(&mut headers, "x-forwarded-host", authority.clone());
    let for_value = if client_ip.is_ipv6() {
        format!("\"[{client_ip}]\"")
    } else {
        client_ip.to_string()
    };
    set(
        &mut headers,
        "forwarded",
        format!("for={for_value};proto=https;host=\"{authority}\""),
    );
    if let Ok(v) = HeaderValue::from_str(&authority) {
        headers.insert(header::HOST, v);
    }
    if let Some(up) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up.clone());
    }

    let cookie_name = sticky_cookie_name(&resource.name);
    let sticky = sticky_from_cookies(req.headers(), &cookie_name);
    let retry = idempotent(req.method()) && upgrade.is_none();
    let pool = &ctx.shared.origin_pool;
    let poolable = upgrade.is_none();
    let connected = connect_reusing(
        &ctx.shared,
        &slot,
        TargetProtocol::Tcp,
        ctx.client,
        sticky.as_deref(),
        retry,
        |pick| {
            poolable
                .then(|| pool.checkout(&pick.target.site, &pick.target.address))
                .flatten()
        },
    )
    .await
    .map_err(|e| dispatch_page(&resource.name, &e))?;
    let mut guards = connected.guards;
    let target = connected.pick.target.clone();
    entry.target = target.address.clone();
    let set_cookie = (resource.balance == crate::config::Balance::Sticky)
        .then(|| target_token(&target))
        .filter(|t| sticky.as_deref() != Some(t.as_str()));
    let (mut sender, reused) = match connected.via {
        Via::Reused(sender) => (sender, true),
        Via::Fresh(stream) => (origin_handshake(stream).await?, false),
    };

    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let mut upstream = Request::new(req.into_body());
    *upstream.method_mut() = method;
    *upstream.uri_mut() = uri;
    *upstream.version_mut() = Version::HTTP_11;
    *upstream.headers_mut() = headers;
    let origin_failed = |e: &hyper::Error| {
        tracing::info!(resource = %resource.name, error = %e, "origin failed");
        page(
            StatusCode::BAD_GATEWAY,
            &format!("the origin of `{}` failed: {e}", resource.name),
        )
    };
    let mut resp = match sender.try_send_request(upstream).await {
        Ok(resp) => resp,
        Err(mut e) => match e.take_message() {
            // A kept connection the origin closed while it sat idle: the
            // request was not sent, so send it on a fresh stream.
            Some(upstream) if reused => {
                tracing::debug!(resource = %resource.name, error = %e.error(), "kept origin connection was closed; using a fresh one");
                let (stream, agent) = open_to_site(
                    &ctx.shared,
                    &resource.name,
                    &target.site,
                    &target.address,
                    TargetProtocol::Tcp,
                    ctx.client,
                )
                .await
                .map_err(|e| dispatch_page(&resource.name, &e))?;
                guards.agent = agent;
                sender = origin_handshake(stream).await?;
                sender
                    .send_request(upstream)
                    .await
                    .map_err(|e| origin_failed(&e))?
            }
            _ => return Err(origin_failed(e.error())),
        },
    };
    entry.agent = guards.agent.agent().instance.clone();
    if poolable {
        pool.check_in_when_ready(
            &target.site,
            &target.address,
            sender,
            guards.agent.agent().clone(),
        );
    }

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let origin_upgrade = hyper::upgrade::on(&mut resp);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                let _guards = guards;
                match tokio::try_join!(client_upgrade, origin_upgrade) {
                    Ok((client, origin)) => {
                        let mut client = TokioIo::new(client);
                        let mut origin = TokioIo::new(origin);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
        }
        let mut out = Response::new(full(Bytes::new()));
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = resp.headers().clone();
        return Ok((out, None));
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(token) = set_cookie {
        let cookie = format!("{cookie_name}={token}; Path=/; Secure; HttpOnly; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            parts.headers.append(header::SET_COOKIE, v);
        }
    }
    parts.version = Version::HTTP_11;
    let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
    Ok((Response::from_parts(parts, body), Some(guards)))
}

/// HTTP/1.1 over a fresh tunnel stream to the origin; the connection runs in
/// its own task (with upgrades, for WebSocket).
async fn origin_handshake(stream: TunnelStream) -> Result<Sender, Response<ResponseBody>> {
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| page(StatusCode::BAD_GATEWAY, &format!("origin: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    Ok(sender)
}
