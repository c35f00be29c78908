//! Terminated HTTP: one hyper server connection per TLS connection (HTTP/1.1
//! and HTTP/2); each request goes through the phases below, in this order,
//! each in its own file, and is forwarded over a tunnel stream as HTTP/1.1,
//! streamed both ways.
//!
//! ```text
//! hyper parse (header timeout, size limit: 431)
//!  → request.rs   host: authority or Host, agreeing with each other (400) and the SNI (421);
//!                 path normalised (400); the router and the origin see the same path
//!  → signin.rs    the sign-in host's pages, a resource host's /.warren/ hand-off
//!  → route.rs     host + longest prefix (404 when nothing matches)
//!  → access.rs    who may pass: the policy, for the principal the request carries
//!                 (a session cookie, a Warren-Key); a browser without one is sent to sign in
//!  → upstream.rs  headers for the origin; target by health and balance; kept or fresh
//!                 stream; request sent (502/503/504 by who failed: error.rs)
//!  → response.rs  headers for the visitor, sticky cookie; Upgrade spliced after 101
//!  → access_log.rs  one line when the response body ends
//! ```
//!
//! A request that ends at the edge ends with a [`ProxyError`]: its status,
//! page (pages.rs), metric label and access-log fields all come from it.
//!
//! Request smuggling has no room: hyper rejects malformed framing, and the
//! request the origin sees is re-serialised by hyper with framing of our
//! choosing, never the client's bytes.

use crate::proxy::dispatch::Guards;
use crate::proxy::http::access_log::AccessEntry;
use crate::proxy::http::body::ResponseBody;
use crate::proxy::http::conn::ConnContext;
use crate::proxy::http::error::{DeniedWhy, ProxyError};
use crate::proxy::http::pages::error_page;
use crate::proxy::http::response::{sticky_cookie_name, sticky_from_cookies};
use crate::proxy::http::{access, request, response, route, signin, upstream};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a client may take to send a request's headers (slowloris).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted (431 beyond).
const MAX_HEAD: usize = 64 * 1024;

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

/// One request, through the phases in order.
async fn handle(ctx: Arc<ConnContext>, req: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let mut entry = AccessEntry::new(ctx.client, req.method().as_str());
    let outcome = phases(&ctx, req, &mut entry).await;
    let (resp, guards) = match outcome {
        Ok(answered) => answered,
        Err(e) => {
            let source = e.source().as_str();
            ctx.shared.metrics.http_failed(&entry.resource, source);
            entry.error = Some((source, e.to_string()));
            (error_page(&e, &entry.request_id), None)
        }
    };
    ctx.shared.metrics.http_answered(
        &entry.resource,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    entry.wrap(resp, guards, started, ctx.shared.access_log.clone())
}

async fn phases(
    ctx: &ConnContext,
    req: Request<Incoming>,
    entry: &mut AccessEntry,
) -> Result<(Response<ResponseBody>, Option<Guards>), ProxyError> {
    let head = request::read(ctx, &req)?;
    entry.host = head.host.clone();
    entry.path = head.path.clone();

    let mut req = match signin::intercept(ctx, req, &head).await {
        Ok(answer) => {
            entry.resource = "(sign-in)".into();
            return Ok((answer, None));
        }
        Err(req) => req,
    };

    let routed = route::route(&ctx.shared, &head)?;
    entry.resource = routed.resource.name.clone();
    if routed.resource.doors.link {
        if let Some(answer) = signin::door_link(ctx, &head, &routed.resource) {
            return Ok((answer, None));
        }
    }

    let decision = access::decide(
        ctx,
        &head,
        req.method().as_str(),
        req.headers(),
        &routed.resource,
    )
    .await;
    entry.access = Some(decision.access.as_str());
    entry.principal = decision.principal.clone();
    if let crate::access::Access::Granted { grant } = decision.access {
        entry.grant = Some(grant);
    }
    if decision.access == crate::access::Access::Denied {
        if decision.principal.is_none()
            && decision.rule.is_none()
            && routed.resource.auth == crate::config::Auth::Login
        {
            if let Some(answer) = signin::challenge(ctx, &req, &head, &routed.resource) {
                return Ok((answer, None));
            }
        }
        let step_up = decision.step_up.then(|| signin::step_up_url(ctx)).flatten();
        let why = if decision.rule.is_some() {
            DeniedWhy::Rule
        } else if let Some(step_up) = step_up {
            DeniedWhy::SecondFactor { step_up }
        } else if decision.principal.is_some() {
            DeniedWhy::NotGranted
        } else {
            DeniedWhy::NoSignIn
        };
        return Err(ProxyError::Denied {
            resource: routed.resource.name.clone(),
            why,
        });
    }

    let sticky = sticky_from_cookies(req.headers(), &sticky_cookie_name(&routed.resource.name));
    let client_upgrade = head.upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let answered = upstream::forward(
        ctx,
        req,
        &head,
        &routed,
        sticky.as_deref(),
        decision.identity.as_ref(),
        entry,
    )
    .await?;

    Ok(response::respond(
        answered,
        &routed.resource,
        sticky.as_deref(),
        client_upgrade,
    ))
}
