//! Health checks run by the agent, at the site, so a check sees exactly what
//! the edge's streams will reach.
//!
//! The edge opens one stream of protocol [`crate::TargetProtocol::Health`] on
//! each agent link and writes a [`HealthPlan`] as one JSON line (again
//! whenever the plan changes). The agent answers with one [`HealthReport`]
//! line per check when its state is first known and at every transition.
//! The agent checks only targets its own allowlist permits: a plan cannot
//! turn it into a port scanner.

use serde::{Deserialize, Serialize};

/// The largest JSON line either side accepts.
pub const MAX_LINE: usize = 256 * 1024;

/// How a target is probed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// Healthy when a TCP connection is accepted.
    Tcp,
    /// Healthy when an HTTP/1.1 request is answered with an expected status.
    /// Redirects are not followed.
    Http {
        /// Request path, e.g. `/status`.
        path: String,
        /// Request method.
        method: String,
        /// `Host` header; the target address when absent.
        host: Option<String>,
        /// Inclusive status ranges that count as healthy.
        status: Vec<(u16, u16)>,
    },
}

/// One check of one target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The edge's name for this check (`resource/target`), echoed in reports.
    pub id: String,
    /// `host:port` to probe.
    pub target: String,
    /// What to do.
    pub probe: Probe,
    /// Time between probes, milliseconds.
    pub interval_ms: u64,
    /// Time one probe may take, milliseconds.
    pub timeout_ms: u64,
    /// Consecutive successes to turn healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to turn unhealthy.
    pub unhealthy_threshold: u32,
}

/// Everything an agent should do for the edge besides carrying streams:
/// the whole plan, replacing the previous one, with the configuration
/// version it belongs to. A reconnected agent is sent it again in full.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthPlan {
    /// The edge's configuration version (its store's `config_version`).
    #[serde(default)]
    pub version: u64,
    /// The checks.
    pub checks: Vec<Check>,
}

/// The agent's acknowledgement that it runs plan `applied_version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanApplied {
    /// [`HealthPlan::version`] now in force at the agent.
    pub applied_version: u64,
}

/// One line from the agent on the health stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AgentLine {
    /// A check's state.
    Report(HealthReport),
    /// A plan is in force.
    Applied(PlanApplied),
}

/// A check's state, from the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    /// [`Check::id`].
    pub id: String,
    /// The new state.
    pub healthy: bool,
    /// What the last probe saw (`HTTP 503`, `connection refused`, ...).
    pub detail: String,
}

/// Counts consecutive outcomes and says when the state flips.
///
/// A check starts in an unknown state; the first probe decides it at once,
/// later ones need the thresholds.
#[derive(Clone, Debug, Default)]
pub struct Hysteresis {
    state: Option<bool>,
    streak: u32,
}

impl Hysteresis {
    /// Records one probe; returns the new state if it changed.
    pub fn record(&mut self, ok: bool, check: &Check) -> Option<bool> {
        match self.state {
            None => {
                self.state = Some(ok);
                self.streak = 0;
                Some(ok)
            }
            Some(state) if state == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok {
                    check.healthy_threshold
                } else {
                    check.unhealthy_threshold
                };
                if self.streak >= needed.max(1) {
                    self.state = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> Check {
        Check {
            id: "web/127.0.0.1:80".into(),
            target: "127.0.0.1:80".into(),
            probe: Probe::Http {
                path: "/status".into(),
                method: "GET".into(),
                host: None,
                status: vec![(200, 399)],
            },
            interval_ms: 1000,
            timeout_ms: 500,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn thresholds_need_consecutive_outcomes() {
        let c = check();
        let mut h = Hysteresis::default();
        assert_eq!(h.record(true, &c), Some(true));
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(true, &c), None, "a success breaks the streak");
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), Some(false));
        assert_eq!(h.record(true, &c), None);
        assert_eq!(h.record(true, &c), Some(true));
    }

    #[test]
    fn a_plan_for_hundreds_of_targets_fits_in_one_line() {
        let plan = HealthPlan {
            version: u64::MAX,
            checks: (0..500)
                .map(|i| Check {
                    id: format!("resource-{i}/10.0.{}.{}:8080", i / 256, i % 256),
                    target: format!("10.0.{}.{}:8080", i / 256, i % 256),
                    ..check()
                })
                .collect(),
        };
        let line = serde_json::to_string(&plan).unwrap();
        assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
    }

    #[test]
    fn plans_round_trip_and_unknown_fields_are_refused() {
        let plan = HealthPlan {
            version: 7,
            checks: vec![check()],
        };
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<HealthPlan>(&json).unwrap(), plan);
        assert!(serde_json::from_str::<HealthPlan>(r#"{"checks":[],"x":1}"#).is_err());
        // A plan without a version (an older edge) is version 0.
        assert_eq!(
            serde_json::from_str::<HealthPlan>(r#"{"checks":[]}"#)
                .unwrap()
                .version,
            0
        );
    }

    #[test]
    fn agent_lines_are_reports_or_acknowledgements_and_nothing_else() {
        let report = r#"{"id":"web/home/127.0.0.1:80","healthy":true,"detail":"HTTP 200"}"#;
        assert!(matches!(
            serde_json::from_str::<AgentLine>(report).unwrap(),
            AgentLine::Report(_)
        ));
        assert_eq!(
            serde_json::from_str::<AgentLine>(r#"{"applied_version":3}"#).unwrap(),
            AgentLine::Applied(PlanApplied { applied_version: 3 })
        );
        for bad in [
            r#"{}"#,
            r#"{"applied_version":-1}"#,
            r#"{"applied_version":1,"x":2}"#,
            "[]",
        ] {
            assert!(serde_json::from_str::<AgentLine>(bad).is_err(), "{bad}");
        }
    }
}
