//! Phase 5, the response: the origin's answer as the visitor gets it
//! (hop-by-hop headers removed, the sticky cookie set when balancing is
//! sticky and the visitor's cookie named another target), or, after a 101,
//! the two upgraded connections spliced in a task of their own.

use crate::config::{Balance, Resource};
use crate::proxy::balance::target_token;
use crate::proxy::dispatch::Guards;
use crate::proxy::http::body::{full, BoxError, ResponseBody};
use crate::proxy::http::upstream::{strip_hop_by_hop, Answered};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The name of a resource's sticky cookie.
pub(crate) fn sticky_cookie_name(resource: &str) -> String {
    format!("warren_{resource}")
}

/// The target token in the visitor's sticky cookie, if any.
pub(crate) fn sticky_from_cookies(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The response for the visitor, and the guards its body must hold (none
/// after an upgrade: the splicing task holds them).
pub(crate) fn respond(
    answered: Answered,
    resource: &Resource,
    sticky: Option<&str>,
    client_upgrade: Option<OnUpgrade>,
) -> (Response<ResponseBody>, Option<Guards>) {
    let Answered {
        mut resp,
        guards,
        target,
    } = answered;
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
        return (out, None);
    }

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    drop_warren_set_cookies(&mut parts.headers);
    let token = (resource.balance == Balance::Sticky)
        .then(|| target_token(&target))
        .filter(|t| sticky != Some(t.as_str()));
    if let Some(token) = token {
        let name = sticky_cookie_name(&resource.name);
        let cookie = format!("{name}={token}; Path=/; Secure; HttpOnly; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            parts.headers.append(header::SET_COOKIE, v);
        }
    }
    parts.version = Version::HTTP_11;
    let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
    (Response::from_parts(parts, body), Some(guards))
}

/// An origin may not set or clear the edge's own cookies (a session planted
/// by one origin would be another's visitor's).
fn drop_warren_set_cookies(headers: &mut http::HeaderMap) {
    let all: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if !all.iter().any(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .starts_with(b"__Host-warren_")
    }) {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for v in all {
        if !v
            .as_bytes()
            .trim_ascii_start()
            .starts_with(b"__Host-warren_")
        {
            headers.append(header::SET_COOKIE, v);
        }
    }
}
