//! The agent's counters, and the `--metrics` endpoint that shows them
//! (`/metrics` in Prometheus text format, `/healthz`: 200 while a link to the
//! edge is up, 503 otherwise).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one agent process.
#[derive(Default)]
pub struct Stats {
    /// A link to the edge is up.
    pub connected: AtomicBool,
    /// Successful connections to the edge.
    pub connects: AtomicU64,
    /// Failed attempts to connect to the edge.
    pub connect_errors: AtomicU64,
    /// Streams served.
    pub streams_total: AtomicU64,
    /// Streams open now.
    pub streams_active: AtomicU64,
    /// Streams refused by the allowlist.
    pub refusals: AtomicU64,
    /// Streams whose target could not be reached.
    pub connect_failures: AtomicU64,
    /// The edge's configuration version whose plan is in force.
    pub config_version: AtomicU64,
}

impl Stats {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let metrics: [(&str, &str, &str, u64); 8] = [
            (
                "warren_site_connected",
                "gauge",
                "1 while a link to the edge is up",
                u64::from(self.connected.load(Ordering::Relaxed)),
            ),
            (
                "warren_site_edge_connects_total",
                "counter",
                "links established to the edge",
                self.connects.load(Ordering::Relaxed),
            ),
            (
                "warren_site_edge_connect_errors_total",
                "counter",
                "failed attempts to reach the edge",
                self.connect_errors.load(Ordering::Relaxed),
            ),
            (
                "warren_site_streams_total",
                "counter",
                "streams served",
                self.streams_total.load(Ordering::Relaxed),
            ),
            (
                "warren_site_streams_active",
                "gauge",
                "streams open now",
                self.streams_active.load(Ordering::Relaxed),
            ),
            (
                "warren_site_refusals_total",
                "counter",
                "streams refused by the egress allowlist",
                self.refusals.load(Ordering::Relaxed),
            ),
            (
                "warren_site_target_failures_total",
                "counter",
                "streams whose target could not be reached",
                self.connect_failures.load(Ordering::Relaxed),
            ),
            (
                "warren_site_config_version",
                "gauge",
                "the edge's configuration version this agent runs",
                self.config_version.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the process ends:
/// plain HTTP/1.1 through hyper (two read-only routes need no framework).
pub async fn serve_metrics(listener: tokio::net::TcpListener, stats: Arc<Stats>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::debug!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&stats, &req);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(std::time::Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer<B>(stats: &Stats, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = if req.method() != Method::GET && req.method() != Method::HEAD {
        (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_owned())
    } else {
        match req.uri().path() {
            "/metrics" => (StatusCode::OK, stats.render()),
            "/healthz" if stats.connected.load(Ordering::Relaxed) => {
                (StatusCode::OK, "ok\n".to_owned())
            }
            "/healthz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not connected to the edge\n".to_owned(),
            ),
            _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
