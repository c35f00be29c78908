//! Notifications to operators: a webhook (`[notify] webhook = { url,
//! secret }`) and/or mail (`[notify.email]`, see [`crate::notify::email`])
//! told about agents connecting and leaving, targets turning
//! healthy or unhealthy, and sites going online or offline.
//!
//! * `site_offline` is sent only when a site has had no agent for
//!   `debounce` (default 30 s), so an agent restart or a short network blip
//!   sends nothing; `site_online` is sent when the first agent of a site
//!   that was reported offline (or never reported) connects.
//! * Each notification is one JSON POST: `{id, event, subject, at, detail}`,
//!   with `X-Warren-Event`, `X-Warren-Delivery` (the id, the same on every
//!   retry, so receivers can drop duplicates) and, with a secret,
//!   `X-Warren-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//! * A failed delivery (connection error, timeout, non-2xx) is retried 5
//!   times, 1 s doubling to 16 s; then dropped and logged. Deliveries go out
//!   one at a time from one task, in order; the queue is bounded and a full
//!   queue drops (and counts) rather than blocking the edge.

pub(crate) mod email;
pub(crate) mod notice;

use notice::{notice, Notice};

use crate::config::{NotifySettings, WebhookSettings};
use crate::notify::email::Mailer;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where notices go; each has its own queue and delivery task, so a slow
/// mail relay never delays the webhook.
enum Sink {
    Webhook(WebhookSettings),
    Email(Box<Mailer>),
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Webhook(_) => "webhook",
            Sink::Email(_) => "email",
        }
    }

    async fn send(&self, n: &Notice) -> Result<(), String> {
        match self {
            Sink::Webhook(w) => {
                let body = serde_json::to_vec(n).unwrap_or_default();
                let signature = w.secret.as_ref().map(|key| {
                    let key = aws_lc_rs::hmac::Key::new(
                        aws_lc_rs::hmac::HMAC_SHA256,
                        key.expose().as_bytes(),
                    );
                    format!(
                        "sha256={}",
                        hex::encode(aws_lc_rs::hmac::sign(&key, &body).as_ref())
                    )
                });
                post(&w.url, n, &body, signature.as_deref()).await
            }
            Sink::Email(m) => m.send(n).await,
        }
    }
}

enum Input {
    Event {
        kind: String,
        subject: String,
        detail: serde_json::Value,
    },
    /// The debounce of a site's offline notice ran out.
    OfflineDue { site: String, generation: u64 },
}

/// Sends notifications; cheap to call from anywhere.
pub(crate) struct Notifier {
    tx: mpsc::Sender<Input>,
}

#[derive(Default)]
struct SiteState {
    agents: u32,
    reported_online: bool,
    /// Bumped on every connect, so a stale offline timer is ignored.
    generation: u64,
}

impl Notifier {
    /// Starts the notifier, or returns `None` when nothing is configured.
    pub(crate) fn start(settings: &NotifySettings) -> Option<Arc<Notifier>> {
        let mut sinks = Vec::new();
        if let Some(w) = &settings.webhook {
            sinks.push(Sink::Webhook(w.clone()));
        }
        if let Some(e) = &settings.email {
            match Mailer::new(e) {
                Ok(m) => sinks.push(Sink::Email(Box::new(m))),
                Err(err) => {
                    tracing::error!(error = %err, "email notifications are off: the SMTP settings cannot be used")
                }
            }
        }
        if sinks.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut outs = Vec::new();
        for sink in sinks {
            let (out_tx, out_rx) = mpsc::channel::<Notice>(QUEUE);
            tokio::spawn(deliver(out_rx, sink));
            outs.push(out_tx);
        }
        tokio::spawn(decide(rx, tx.clone(), outs, settings.debounce));
        Some(Arc::new(Notifier { tx }))
    }

    /// Something happened (the same kinds the store records).
    pub(crate) fn event(&self, kind: &str, subject: &str, detail: &serde_json::Value) {
        let input = Input::Event {
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            detail: detail.clone(),
        };
        if self.tx.try_send(input).is_err() {
            tracing::warn!("notification queue full; a notification was dropped");
        }
    }
}

/// Turns events into notices: passes them on, and derives site online and
/// offline with the debounce.
async fn decide(
    mut rx: mpsc::Receiver<Input>,
    timers: mpsc::Sender<Input>,
    outs: Vec<mpsc::Sender<Notice>>,
    debounce: Duration,
) {
    let mut sites: HashMap<String, SiteState> = HashMap::new();
    while let Some(input) = rx.recv().await {
        let send = |n: Notice| {
            for out in &outs {
                if out.try_send(n.clone()).is_err() {
                    tracing::warn!("notification queue full; a notification was dropped");
                }
            }
        };
        match input {
            Input::Event {
                kind,
                subject,
                detail,
            } => {
                let site = subject.strip_prefix("site/").map(str::to_owned);
                send(notice(&kind, &subject, detail));
                let Some(site) = site else { continue };
                let state = sites.entry(site.clone()).or_default();
                match kind.as_str() {
                    "agent_connected" => {
                        state.agents += 1;
                        state.generation += 1;
                        if !state.reported_online {
                            state.reported_online = true;
                            send(notice(
                                "site_online",
                                &subject,
                                serde_json::json!({ "site": site }),
                            ));
                        }
                    }
                    "agent_disconnected" => {
                        state.agents = state.agents.saturating_sub(1);
                        if state.agents == 0 && state.reported_online {
                            let generation = state.generation;
                            let timers = timers.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(debounce).await;
                                let _ = timers.send(Input::OfflineDue { site, generation }).await;
                            });
                        }
                    }
                    _ => {}
                }
            }
            Input::OfflineDue { site, generation } => {
                let Some(state) = sites.get_mut(&site) else {
                    continue;
                };
                if state.agents == 0 && state.generation == generation && state.reported_online {
                    state.reported_online = false;
                    send(notice(
                        "site_offline",
                        &format!("site/{site}"),
                        serde_json::json!({ "site": site, "after_s": debounce.as_secs_f64() }),
                    ));
                }
            }
        }
    }
}

async fn deliver(mut rx: mpsc::Receiver<Notice>, sink: Sink) {
    let via = sink.name();
    while let Some(n) = rx.recv().await {
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            let result = tokio::time::timeout(REQUEST_TIMEOUT, sink.send(&n))
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            match result {
                Ok(()) => {
                    tracing::debug!(via, event = %n.event, id = %n.id, attempt, "notification delivered");
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::info!(via, event = %n.event, id = %n.id, attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "notification delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::warn!(event = "notification_dropped", via, notice = %n.event, id = %n.id, error = %e, "notification delivery failed {ATTEMPTS} times; dropped");
                }
            }
        }
    }
}

/// One POST of `body` to `url`; `Ok` on a 2xx answer.
async fn post(url: &str, n: &Notice, body: &[u8], signature: Option<&str>) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let mut req = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("warren/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-warren-event", n.event.as_str())
        .header("x-warren-delivery", n.id.as_str());
    if let Some(sig) = signature {
        req = req.header("x-warren-signature", sig);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let status = if https {
        let mut config =
            (*warren_transport::tls::client_config(&warren_transport::tls::EdgeTrust::SystemRoots)
                .map_err(|e| e.to_string())?)
            .clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

async fn send<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status())
}
