//! Phase 4, upstream: the request the origin sees (hop-by-hop and
//! client-sent `X-Forwarded-*`/`Forwarded`/`X-Real-IP` removed, ours set),
//! a target picked by health and balance, a kept-alive origin connection
//! reused or a fresh tunnel stream opened, and the request sent, once more
//! on a fresh stream if a kept connection turned out closed (hyper hands
//! the unsent request back, so this is safe for any method).

use crate::auth::Identity;
use crate::config::Target;
use crate::proxy::dispatch::{connect_reusing, open_to_site, Guards, Via};
use crate::proxy::http::access_log::AccessEntry;
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::error::ProxyError;
use crate::proxy::http::origin_pool::Sender;
use crate::proxy::http::request::Head;
use crate::proxy::http::route::Routed;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use warren_proto::TargetProtocol;
use warren_transport::TunnelStream;

/// The origin's answer, and what the rest of the request holds on to.
pub(crate) struct Answered {
    pub(crate) resp: Response<Incoming>,
    pub(crate) guards: Guards,
    pub(crate) target: Target,
}

/// Sends `req` to an origin of `routed`. `sticky` is the target token from
/// the visitor's cookie, if any.
pub(crate) async fn forward(
    ctx: &ConnContext,
    req: Request<Incoming>,
    head: &Head,
    routed: &Routed,
    sticky: Option<&str>,
    identity: Option<&Identity>,
    entry: &mut AccessEntry,
) -> Result<Answered, ProxyError> {
    let resource = &routed.resource;
    let headers = origin_headers(ctx, req.headers(), head, resource, identity);
    let pool = &ctx.shared.origin_pool;
    let poolable = head.upgrade.is_none();
    let connected = match connect_reusing(
        &ctx.shared,
        &routed.slot,
        TargetProtocol::Tcp,
        ctx.client,
        sticky,
        head.idempotent,
        |pick| {
            poolable
                .then(|| pool.checkout(&pick.target.site, &pick.target.address))
                .flatten()
        },
    )
    .await
    {
        Ok(connected) => connected,
        Err(e) => {
            // No origin will read the body: take it in before the error
            // page, so the client gets the page rather than a reset.
            if !req.body().is_end_stream() {
                super::body::discard(req.into_body(), 64 * 1024, Duration::from_secs(1)).await;
            }
            return Err(ProxyError::dispatch(&resource.name, e));
        }
    };
    let mut guards = connected.guards;
    let target = connected.pick.target.clone();
    entry.target = target.address.clone();
    let (mut sender, reused) = match connected.via {
        Via::Reused(sender) => (sender, true),
        Via::Fresh(stream) => (origin_handshake(&resource.name, stream).await?, false),
    };

    let method = req.method().clone();
    let mut upstream = Request::new(req.into_body());
    *upstream.method_mut() = method;
    *upstream.uri_mut() = head.uri.clone();
    *upstream.version_mut() = Version::HTTP_11;
    *upstream.headers_mut() = headers;
    let origin_failed = |e: &hyper::Error, unsent: bool| {
        tracing::info!(resource = %resource.name, error = %e, "origin failed");
        ProxyError::Origin {
            resource: resource.name.clone(),
            error: e.to_string(),
            unsent,
        }
    };
    let resp = match sender.try_send_request(upstream).await {
        Ok(resp) => resp,
        Err(mut e) => {
            let unsent = e.take_message();
            let failed = origin_failed(e.error(), unsent.is_some());
            match unsent {
                // A kept connection the origin closed while it sat idle:
                // the request was not sent, so send it on a fresh stream.
                Some(upstream) if reused && failed.retry_safe() => {
                    tracing::debug!(resource = %resource.name, error = %failed, "kept origin connection was closed; using a fresh one");
                    let (stream, agent) = open_to_site(
                        &ctx.shared,
                        &resource.name,
                        &target.site,
                        &target.address,
                        TargetProtocol::Tcp,
                        ctx.client,
                    )
                    .await
                    .map_err(|e| ProxyError::dispatch(&resource.name, e))?;
                    guards.agent = agent;
                    sender = origin_handshake(&resource.name, stream).await?;
                    sender
                        .send_request(upstream)
                        .await
                        .map_err(|e| origin_failed(&e, false))?
                }
                _ => return Err(failed),
            }
        }
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
    Ok(Answered {
        resp,
        guards,
        target,
    })
}

/// The headers the origin gets: the client's, less hop-by-hop ones, the
/// forwarding and identity headers only the edge may set, the visitor's
/// Warren credentials (key header, session cookie); then the edge's own,
/// with who the signed-in person is (`Remote-User`, `Remote-Email`,
/// `Remote-Name`, `Remote-Groups`, and the signed `Warren-Jwt-Assertion`).
fn origin_headers(
    ctx: &ConnContext,
    from_client: &HeaderMap,
    head: &Head,
    resource: &crate::config::Resource,
    identity: Option<&Identity>,
) -> HeaderMap {
    let mut headers = from_client.clone();
    strip_hop_by_hop(&mut headers);
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| spoofable(n)).cloned().collect();
    for n in spoofed {
        headers.remove(n);
    }
    strip_warren_cookies(&mut headers);
    if resource.basic {
        // On a resource that takes Basic, Basic credentials are Warren's,
        // whoever they turned out to be (or not): never the origin's.
        let basic = headers.get(header::AUTHORIZATION).is_some_and(|v| {
            v.as_bytes().len() >= 6 && v.as_bytes()[..6].eq_ignore_ascii_case(b"basic ")
        });
        if basic {
            headers.remove(header::AUTHORIZATION);
        }
    }
    let client_ip = ctx.client.ip().to_canonical();
    let authority = &head.authority;
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
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(header::HOST, v);
    }
    if let Some(who) = identity {
        let config = ctx.shared.config.load();
        if let Some(settings) = &config.auth {
            let jwt = ctx.shared.auth.assertions.assertion(
                who,
                &who.session,
                &resource.name,
                &crate::proxy::http::signin::issuer(ctx, settings),
                warren_store::now_ms(),
            );
            set(&mut headers, "warren-jwt-assertion", jwt);
        }
        set(&mut headers, "remote-user", who.email.clone());
        set(&mut headers, "remote-email", who.email.clone());
        set(&mut headers, "remote-name", who.name.clone());
        set(&mut headers, "remote-groups", who.groups.join(","));
    }
    if let Some(up) = &head.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up.clone());
    }
    headers
}

/// HTTP/1.1 over a fresh tunnel stream to the origin; the connection runs in
/// its own task (with upgrades, for WebSocket).
async fn origin_handshake(resource: &str, stream: TunnelStream) -> Result<Sender, ProxyError> {
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::Origin {
            resource: resource.to_owned(),
            error: e.to_string(),
            unsent: true,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    Ok(sender)
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
/// Headers the origin must not get from the client: the forwarding and
/// identity ones the edge sets itself (`Remote-*`, `Warren-*`: the
/// assertion), and the visitor's `Warren-Key` credential. Checked on every
/// request (public resources too).
fn spoofable(name: &HeaderName) -> bool {
    // `Remote_User` is `REMOTE_USER` to CGI-style origins too: `_` counts
    // as `-` (compared byte by byte, with no copy per header).
    let n = name.as_str().as_bytes();
    let is = |word: &[u8]| n.len() == word.len() && spells(n, word);
    let starts = |word: &[u8]| n.len() >= word.len() && spells(n, word);
    is(b"forwarded")
        || is(b"x-real-ip")
        || starts(b"x-forwarded-")
        || starts(b"remote-")
        || starts(b"warren-")
}

/// `a` begins with `b`'s spelling, `_` standing for any `-` (the caller
/// checks the lengths).
fn spells(a: &[u8], b: &[u8]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x == y || (*x == b'_' && *y == b'-'))
}

/// Takes the edge's own cookies (`__Host-warren_...`) out of `Cookie`,
/// working on bytes (a header with non-UTF-8 cookie values is cleaned too).
fn strip_warren_cookies(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(header::COOKIE);
    for v in values {
        let kept: Vec<&[u8]> = v
            .as_bytes()
            .split(|b| *b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| !pair.is_empty() && !pair.starts_with(b"__Host-warren_"))
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.append(header::COOKIE, v);
        }
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_forwarding_headers_are_spoofable_in_any_spelling() {
        for n in [
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "x-forwarded-for",
            "x_forwarded_host",
            "remote-user",
            "remote_user",
            "remote-groups",
            "warren-jwt-assertion",
            "warren_key",
            "warren-key",
        ] {
            assert!(spoofable(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            "forwardedx",
            "x-real",
            "remoteuser",
            "authorization",
            "cookie",
            "x-request-id",
        ] {
            assert!(!spoofable(&HeaderName::from_static(n)), "{n}");
        }
    }
}
