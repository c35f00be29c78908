//! The edge's side of health checks: each agent link gets the plan of
//! checks for its site's targets on one `Health` stream (again whenever a
//! reload changes it), and its reports update the [`HealthTable`] that
//! target choice reads. Every transition is logged.
//!

use crate::config::EdgeConfig;
use crate::events::TargetHealth;
use crate::tunnel::health_table::check_id;
use crate::tunnel::registry::AgentConn;
use crate::EdgeShared;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_proto::health::{AgentLine, Check, HealthPlan, HealthReport, Lines, MAX_LINE};
use warren_proto::{OpenRequest, TargetProtocol};

/// The checks the agents of `site` run.
pub(crate) fn plan_for(config: &EdgeConfig, site: &str, version: u64) -> HealthPlan {
    let mut checks = Vec::new();
    for r in &config.resources {
        let Some(h) = &r.health else { continue };
        for t in r.targets.iter().filter(|t| t.site == site) {
            checks.push(Check {
                id: check_id(&r.name, t),
                target: t.address.clone(),
                probe: h.probe.clone(),
                interval_ms: h.interval.as_millis() as u64,
                timeout_ms: h.timeout.as_millis() as u64,
                healthy_threshold: h.healthy_threshold,
                unhealthy_threshold: h.unhealthy_threshold,
            });
        }
    }
    HealthPlan { version, checks }
}

/// Runs for the life of one agent link.
pub(crate) async fn run(agent: Arc<AgentConn>, shared: Arc<EdgeShared>) {
    let mut changes = shared.config_changed.subscribe();
    let mut sent: Option<HealthPlan> = None;
    let mut stream = None;
    let mut lines = Lines::new(MAX_LINE);
    let mut chunk = vec![0u8; 8192];
    loop {
        let version = *changes.borrow_and_update();
        let plan = plan_for(&shared.config.load(), &agent.site, version);
        // Every agent gets the plan (even an empty one) so that it holds
        // the configuration version; again whenever it changes.
        if sent.as_ref() != Some(&plan) {
            if stream.is_none() {
                let request = OpenRequest {
                    protocol: TargetProtocol::Health,
                    target: "health".into(),
                    resource: String::new(),
                    client: String::new(),
                };
                match agent.link.open(request).await {
                    Ok(s) => {
                        let (rd, wr) = tokio::io::split(s);
                        stream = Some((rd, wr));
                    }
                    Err(e) => {
                        tracing::warn!(site = %agent.site, agent = %agent.instance, error = %e, "agent cannot run health checks");
                        return;
                    }
                }
            }
            if let Some((_, wr)) = stream.as_mut() {
                let mut line = serde_json::to_vec(&plan).unwrap_or_default();
                line.push(b'\n');
                if wr.write_all(&line).await.is_err() {
                    break;
                }
            }
            sent = Some(plan);
        }
        tokio::select! {
            _ = agent.link.closed() => break,
            changed = changes.changed() => if changed.is_err() { break },
            read = async {
                match stream.as_mut() {
                    // Cancel-safe: `read` takes nothing when cancelled, and
                    // a partial line waits in `lines` for the next turn.
                    Some((rd, _)) => rd.read(&mut chunk).await,
                    None => std::future::pending().await,
                }
            } => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if let Err(e) = lines.push(&chunk[..n]) {
                    tracing::warn!(event = "health_stream_closed", reason = "line_too_long", site = %agent.site, agent = %agent.instance, error = %e, "health stream closed");
                    break;
                }
                if !read_lines(&shared, &agent, &mut lines) {
                    break;
                }
            }
        }
    }
    shared.health.forget(agent.conn_id);
}

/// Applies every complete line the agent sent; false when one is
/// unreadable (the stream is then closed).
fn read_lines(shared: &EdgeShared, agent: &AgentConn, lines: &mut Lines) -> bool {
    while let Some(line) = lines.next_line() {
        match serde_json::from_slice::<AgentLine>(&line) {
            Ok(AgentLine::Report(report)) => apply(shared, agent, report),
            Ok(AgentLine::Applied(a)) => {
                agent
                    .config_version
                    .store(a.applied_version, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(site = %agent.site, agent = %agent.instance, error = %e, "bad health report; health stream closed");
                return false;
            }
        }
    }
    true
}

fn apply(shared: &EdgeShared, agent: &AgentConn, report: HealthReport) {
    let (before, after) = shared
        .health
        .record(&report.id, agent.conn_id, report.healthy);
    let (resource, target) = report.id.split_once('/').unwrap_or((&report.id, ""));
    if before != after {
        TargetHealth {
            resource,
            target,
            agent,
            healthy: after,
            detail: &report.detail,
        }
        .emit(shared);
    } else {
        tracing::debug!(resource, upstream = target, healthy = report.healthy, detail = %report.detail, "health report");
    }
}
