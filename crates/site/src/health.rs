//! Health checks the edge asks for, run here at the site so they probe
//! exactly what the edge's streams would reach.
//!
//! The plan arrives on a `Health` stream as JSON lines (see
//! `warren_proto::health`); every check runs in its own task and reports
//! its first state and every transition back on the same stream. A check
//! of a target outside the allowlist never touches the network: it reports
//! unhealthy with the reason.

use crate::stats::Stats;
use crate::target::permitted_addrs;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use warren_egress::{Allowlist, Protocol};
use warren_proto::health::{
    Check, HealthPlan, HealthReport, Hysteresis, Lines, PlanApplied, Probe, MAX_LINE,
};
use warren_transport::IncomingStream;

/// Serves one health stream until the edge closes it.
pub(crate) async fn serve(inc: IncomingStream, allow: Arc<Allowlist>, stats: Arc<Stats>) {
    let Ok(stream) = inc.accept().await else {
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut reports) = mpsc::channel::<HealthReport>(256);
    // Checks the new plan repeats keep running (and their state).
    let mut running: HashMap<Check, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut lines = Lines::new(MAX_LINE);
    let mut chunk = vec![0u8; 8192];
    'stream: loop {
        tokio::select! {
            read = rd.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Err(e) = lines.push(&chunk[..n]) {
                    tracing::warn!(event = "health_stream_closed", reason = "line_too_long", error = %e, "health stream closed");
                    break;
                }
                while let Some(line) = lines.next_line() {
                    let plan: HealthPlan = match serde_json::from_slice(&line) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable health plan; health stream closed");
                            break 'stream;
                        }
                    };
                    running.retain(|check, task| {
                        let keep = plan.checks.contains(check);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for check in &plan.checks {
                        if !running.contains_key(check) {
                            let task = tokio::spawn(run_check(check.clone(), allow.clone(), tx.clone()));
                            running.insert(check.clone(), task);
                        }
                    }
                    stats.config_version.store(plan.version, Ordering::Relaxed);
                    tracing::info!(event = "plan_applied", version = plan.version, checks = plan.checks.len(), "the edge's plan (configuration version {}) is in force", plan.version);
                    let mut ack = serde_json::to_vec(&PlanApplied { applied_version: plan.version }).unwrap_or_default();
                    ack.push(b'\n');
                    if wr.write_all(&ack).await.is_err() {
                        break 'stream;
                    }
                }
            }
            Some(report) = reports.recv() => {
                let mut out = serde_json::to_vec(&report).unwrap_or_default();
                out.push(b'\n');
                if wr.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
    for (_, t) in running {
        t.abort();
    }
}

async fn run_check(check: Check, allow: Arc<Allowlist>, tx: mpsc::Sender<HealthReport>) {
    // The plan comes from the edge: nothing it says is written to a target
    // unless it is one well-formed request.
    if let Err((field, why)) = check.probe.check_fields() {
        let why = format!("{field}: {why}");
        tracing::warn!(event = "health_check_refused", check = %check.id, error = %why, "refused a health check from the edge");
        let _ = tx
            .send(HealthReport {
                id: check.id.clone(),
                healthy: false,
                detail: format!("refused by the agent: {why}"),
            })
            .await;
        return;
    }
    let mut state = Hysteresis::default();
    let interval = Duration::from_millis(check.interval_ms.max(100));
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    loop {
        let outcome = match tokio::time::timeout(timeout, probe(&check, &allow)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        let ok = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|e| e);
        if let Some(healthy) = state.record(ok, &check) {
            tracing::info!(event = "health_changed", check = %check.id, upstream = %check.target, healthy, detail = %detail, "target health changed");
            let report = HealthReport {
                id: check.id.clone(),
                healthy,
                detail,
            };
            if tx.send(report).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One probe: `Ok(detail)` when healthy, `Err(detail)` when not.
async fn probe(check: &Check, allow: &Allowlist) -> Result<String, String> {
    let addrs = permitted_addrs(allow, &check.target, Protocol::Tcp)
        .await
        .map_err(|r| r.message)?;
    let mut last = String::from("no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let mut tcp = tcp.ok_or(last)?;
    match &check.probe {
        Probe::Tcp => Ok("connected".into()),
        Probe::Http {
            path,
            method,
            host,
            status,
        } => {
            let host = host.as_deref().unwrap_or(&check.target);
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: warren-health/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            );
            tcp.write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut first = String::new();
            BufReader::new((&mut tcp).take(1024))
                .read_line(&mut first)
                .await
                .map_err(|e| e.to_string())?;
            let code: u16 = first
                .strip_prefix("HTTP/1.")
                .and_then(|r| r.get(2..5))
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("not an HTTP response: {:?}", first.trim_end()))?;
            if status.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code)) {
                Ok(format!("HTTP {code}"))
            } else {
                Err(format!("HTTP {code}"))
            }
        }
    }
}
