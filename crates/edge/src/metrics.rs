//! Prometheus metrics of the edge (`GET /metrics` on the admin listener),
//! through `prometheus-client`.
//!
//! Two kinds:
//! * events counted where they happen ([`EdgeMetrics`]: tunnel handshake
//!   failures and refusals by reason, agent connects, HTTP requests by
//!   resource and status class, request latency histograms);
//! * state read at scrape time ([`LiveState`]: agents connected, streams
//!   active and total, bytes both ways and refusals per site, target
//!   health), so nothing on the proxy path updates a second copy of what
//!   the registry already counts.

use crate::EdgeShared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SiteLabels {
    pub(crate) site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) resource: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub(crate) code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpErrorLabels {
    pub(crate) resource: String,
    /// Who failed: `client`, `tunnel`, `agent` or `upstream`.
    pub(crate) source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    pub(crate) resource: String,
    /// The agent's reason: `not_allowed`, `connect_failed`, ...
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResourceLabels {
    pub(crate) resource: String,
}

type HistogramFamily = Family<ResourceLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

/// The status class label, without formatting a string per request.
fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Counters and histograms updated where things happen.
pub(crate) struct EdgeMetrics {
    registry: Registry,
    /// Tunnel connections that failed or were refused before becoming a link.
    pub(crate) handshake_failures: Family<ReasonLabels, Counter>,
    /// Links established, per site (reconnects show as a rising rate).
    pub(crate) agent_connects: Family<SiteLabels, Counter>,
    /// HTTP requests answered, by resource and status class.
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    /// Time from request to response head, by resource.
    pub(crate) http_latency: HistogramFamily,
    /// HTTP requests that ended at the edge, by resource and who failed.
    pub(crate) http_errors: Family<HttpErrorLabels, Counter>,
    /// Streams an agent refused, by resource and the agent's reason.
    pub(crate) stream_refusals: Family<RefusalLabels, Counter>,
    /// Connections and requests the policy denied, by resource.
    pub(crate) access_denied: Family<ResourceLabels, Counter>,
}

impl EdgeMetrics {
    pub(crate) fn new() -> EdgeMetrics {
        let mut registry = Registry::with_prefix("warren_edge");
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tunnel_handshake_failures",
            "tunnel connections that failed or were refused before becoming a link",
            handshake_failures.clone(),
        );
        let agent_connects = Family::<SiteLabels, Counter>::default();
        registry.register(
            "agent_connects",
            "agent links established",
            agent_connects.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by resource and status class",
            http_requests.clone(),
        );
        let http_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "time from a request to its response head, by resource",
            http_latency.clone(),
        );
        let http_errors = Family::<HttpErrorLabels, Counter>::default();
        registry.register(
            "http_errors",
            "HTTP requests that ended at the edge with an error page, by resource and who failed",
            http_errors.clone(),
        );
        let stream_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "stream_refusals",
            "streams an agent refused, by resource and the agent's reason",
            stream_refusals.clone(),
        );
        let access_denied = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "access_denied",
            "connections and requests the policy denied, by resource",
            access_denied.clone(),
        );
        EdgeMetrics {
            access_denied,
            stream_refusals,
            registry,
            handshake_failures,
            agent_connects,
            http_requests,
            http_latency,
            http_errors,
        }
    }

    /// Counts a tunnel handshake that did not become a link.
    pub(crate) fn handshake_failed(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a stream an agent refused.
    pub(crate) fn stream_refused(&self, resource: &str, reason: &'static str) {
        self.stream_refusals
            .get_or_create(&RefusalLabels {
                resource: resource.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts an HTTP request that ended at the edge, by who failed.
    pub(crate) fn http_failed(&self, resource: &str, source: &'static str) {
        let resource = if resource.is_empty() { "-" } else { resource };
        self.http_errors
            .get_or_create(&HttpErrorLabels {
                resource: resource.to_owned(),
                source,
            })
            .inc();
    }

    /// Counts an answered HTTP request.
    pub(crate) fn http_answered(&self, resource: &str, status: u16, seconds: f64) {
        let resource = if resource.is_empty() { "-" } else { resource };
        self.http_requests
            .get_or_create(&HttpLabels {
                resource: resource.to_owned(),
                code: status_class(status),
            })
            .inc();
        self.http_latency
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition: the counters above, then the live state.
    pub(crate) fn render(&self, shared: &Arc<EdgeShared>) -> String {
        let mut live = Registry::with_prefix("warren_edge");
        live.register_collector(Box::new(LiveState::snapshot(shared)));
        let mut out = String::new();
        let rendered = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &live))
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        if let Err(e) = rendered {
            tracing::warn!(error = %e, "metrics could not be rendered");
        }
        out
    }
}

/// What the registry and health table hold at scrape time.
#[derive(Debug)]
struct LiveState {
    sites: Vec<crate::tunnel::registry::SiteTotals>,
    health: Vec<(String, String, bool)>,
    decisions_dropped: u64,
}

impl LiveState {
    fn snapshot(shared: &Arc<EdgeShared>) -> LiveState {
        let config = shared.config.load();
        let health = shared.health.snapshot();
        let mut checked = Vec::new();
        for r in &config.resources {
            for t in &r.targets {
                if let Some(h) = health.get(&crate::tunnel::health_table::check_id(&r.name, t)) {
                    checked.push((r.name.clone(), t.address.clone(), *h));
                }
            }
        }
        LiveState {
            sites: shared
                .registry
                .site_totals(shared.catalog.load().sites.keys()),
            health: checked,
            decisions_dropped: shared.decisions.dropped(),
        }
    }
}

fn site_label(site: &str) -> Vec<(&'static str, String)> {
    vec![("site", site.to_owned())]
}

impl Collector for LiveState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Value = fn(&crate::tunnel::registry::SiteTotals) -> u64;
        let per_site: [(&str, &str, MetricType, Value); 6] = [
            (
                "agents_connected",
                "agents connected now",
                MetricType::Gauge,
                |s| s.agents,
            ),
            (
                "streams_active",
                "streams open now",
                MetricType::Gauge,
                |s| s.streams_active,
            ),
            ("streams", "streams carried", MetricType::Counter, |s| {
                s.streams_total
            }),
            (
                "bytes_to_site",
                "bytes from visitors to the site",
                MetricType::Counter,
                |s| s.bytes_to_site,
            ),
            (
                "bytes_from_site",
                "bytes from the site to visitors",
                MetricType::Counter,
                |s| s.bytes_from_site,
            ),
            (
                "refusals",
                "streams the site's agents refused",
                MetricType::Counter,
                |s| s.refusals,
            ),
        ];
        for (name, help, kind, value) in per_site {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for s in &self.sites {
                let labels = site_label(&s.site);
                let metric = family.encode_family(&labels)?;
                let v = value(s);
                match kind {
                    MetricType::Counter => ConstCounter::new(v).encode(metric)?,
                    _ => ConstGauge::new(v as i64).encode(metric)?,
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "target_healthy",
            "1 when the agents report the target healthy (checked targets only)",
            None,
            MetricType::Gauge,
        )?;
        for (resource, target, healthy) in &self.health {
            let labels = vec![("resource", resource.clone()), ("target", target.clone())];
            ConstGauge::new(i64::from(*healthy)).encode(family.encode_family(&labels)?)?;
        }
        let family = encoder.encode_descriptor(
            "access_decisions_dropped",
            "access decisions left out of the audit trail (its queue was full)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.decisions_dropped).encode(family)?;
        Ok(())
    }
}
