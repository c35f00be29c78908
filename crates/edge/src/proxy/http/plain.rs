//! The plain-HTTP port (`http_listen`): ACME HTTP-01 answers, and a 308
//! redirect to HTTPS for every published host. Unknown hosts get a 404
//! page; nothing is ever proxied in clear text.

use crate::proxy::accept::accept_loop;
use crate::proxy::http::body::{full, ResponseBody};
use crate::proxy::http::pages::page;
use crate::proxy::http::serve::HEADER_TIMEOUT;
use crate::EdgeShared;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

pub(crate) async fn serve(listener: TcpListener, shared: Arc<EdgeShared>, stop: CancellationToken) {
    accept_loop(listener, stop, "http_listen", move |tcp, _| {
        let shared = shared.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&shared, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        }
    })
    .await;
}

fn answer(shared: &EdgeShared, req: Request<Incoming>) -> Response<ResponseBody> {
    if let Some(token) = req.uri().path().strip_prefix(CHALLENGE_PREFIX) {
        return match shared.certs.http_token(token) {
            Some(key_auth) => {
                let mut r = Response::new(full(key_auth));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            }
            None => page(StatusCode::NOT_FOUND, "unknown ACME challenge"),
        };
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map(|a| a.host().to_ascii_lowercase());
    let Some(host) = host else {
        return page(StatusCode::BAD_REQUEST, "no Host header");
    };
    if !shared.resources.load().http.has_host(&host) {
        return page(
            StatusCode::NOT_FOUND,
            "nothing is published at this address",
        );
    }
    let port = shared.https_port.load(std::sync::atomic::Ordering::Relaxed);
    let authority = if port == 443 || port == 0 {
        host
    } else {
        format!("{host}:{port}")
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{authority}{path}");
    let mut r = page(
        StatusCode::PERMANENT_REDIRECT,
        &format!("moved to {location}"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
