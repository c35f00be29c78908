//! The access log: one JSON line per HTTP request, written when the
//! response body has been sent (or abandoned), to a file or stderr.
//!
//! Lines go through a channel to one writer task, so a slow disk never
//! stalls a request.

use crate::config::AccessLog;
use crate::proxy::dispatch::Guards;
use crate::proxy::http::body::{ResponseBody, TrackedBody};
use http::Response;
use http_body_util::BodyExt;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Sends lines to the writer task.
pub(crate) struct AccessLogger {
    tx: mpsc::UnboundedSender<String>,
}

impl AccessLogger {
    /// Opens the destination and starts the writer.
    pub(crate) fn start(dest: &AccessLog) -> std::io::Result<Arc<AccessLogger>> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match dest {
            AccessLog::Stderr => Box::new(tokio::io::stderr()),
            AccessLog::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Box::new(tokio::fs::File::from_std(file))
            }
        };
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                // Batch whatever else is queued into one write.
                while let Ok(more) = rx.try_recv() {
                    line.push_str(&more);
                }
                if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    tracing::warn!("access log write failed");
                }
            }
        });
        Ok(Arc::new(AccessLogger { tx }))
    }

    fn write(&self, entry: &AccessEntry, status: u16, bytes: u64, duration_ms: f64) {
        #[derive(Serialize)]
        struct Line<'a> {
            time: String,
            request_id: &'a str,
            resource: &'a str,
            host: &'a str,
            method: &'a str,
            path: &'a str,
            status: u16,
            bytes: u64,
            duration_ms: f64,
            client_ip: String,
            upstream: &'a str,
            agent: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            access: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            principal: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            grant: Option<usize>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error_source: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        let line = Line {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            request_id: &entry.request_id,
            resource: &entry.resource,
            host: &entry.host,
            method: &entry.method,
            path: &entry.path,
            status,
            bytes,
            duration_ms: (duration_ms * 1000.0).round() / 1000.0,
            client_ip: entry.client.ip().to_canonical().to_string(),
            upstream: &entry.target,
            agent: &entry.agent,
            access: entry.access,
            principal: entry.principal.as_deref(),
            grant: entry.grant,
            error_source: entry.error.as_ref().map(|(s, _)| *s),
            error: entry.error.as_ref().map(|(_, e)| e.as_str()),
        };
        if let Ok(mut json) = serde_json::to_string(&line) {
            json.push('\n');
            let _ = self.tx.send(json);
        }
    }
}

/// What is known of a request so far.
pub(crate) struct AccessEntry {
    /// Random, shown on the edge's own error pages.
    pub(crate) request_id: String,
    pub(crate) client: SocketAddr,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) resource: String,
    pub(crate) target: String,
    pub(crate) agent: String,
    /// The access phase's decision, once the request got that far.
    pub(crate) access: Option<&'static str>,
    /// Who the policy was asked about (`key:ID`), when not anonymous.
    pub(crate) principal: Option<String>,
    /// The grant that allowed it.
    pub(crate) grant: Option<usize>,
    /// When the request ended at the edge: who failed, and why.
    pub(crate) error: Option<(&'static str, String)>,
}

impl AccessEntry {
    pub(crate) fn new(client: SocketAddr, method: &str) -> Self {
        AccessEntry {
            request_id: hex::encode(rand::random::<[u8; 8]>()),
            client,
            method: method.to_owned(),
            host: String::new(),
            path: String::new(),
            resource: String::new(),
            target: String::new(),
            agent: String::new(),
            access: None,
            principal: None,
            grant: None,
            error: None,
        }
    }

    /// Wraps the response body so the stream's guards live as long as it
    /// and the log line is written when it ends.
    pub(crate) fn wrap(
        self,
        resp: Response<ResponseBody>,
        guards: Option<Guards>,
        started: Instant,
        log: Option<Arc<AccessLogger>>,
    ) -> Response<ResponseBody> {
        if guards.is_none() && log.is_none() {
            return resp;
        }
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let on_end = log.map(|log| {
            Box::new(move |bytes: u64| {
                log.write(
                    &self,
                    status,
                    bytes,
                    started.elapsed().as_secs_f64() * 1000.0,
                )
            }) as Box<dyn FnOnce(u64) + Send>
        });
        let body = TrackedBody {
            inner: body,
            on_end,
            bytes: 0,
            _guards: guards,
        };
        Response::from_parts(parts, body.boxed_unsync())
    }
}
