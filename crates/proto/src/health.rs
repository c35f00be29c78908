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

impl Probe {
    /// Whether the request it would write is one well-formed request line
    /// and `Host`: a method of GET, HEAD or OPTIONS (a check changes
    /// nothing), a path of visible ASCII starting with `/`, a host of
    /// visible ASCII. The edge checks it when it reads its configuration;
    /// the agent checks it again before writing a byte, since a plan comes
    /// from the edge and no CR/LF from there may reach a target.
    /// On refusal: the field (`method`, `path`, `host`) and why.
    pub fn check_fields(&self) -> Result<(), (&'static str, String)> {
        let Probe::Http {
            path, method, host, ..
        } = self
        else {
            return Ok(());
        };
        let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
            return Err((
                "method",
                format!(
                    "`{}` is not one of GET, HEAD, OPTIONS (a check must not change anything)",
                    method.escape_debug()
                ),
            ));
        }
        if !path.starts_with('/') || !visible(path) {
            return Err((
                "path",
                format!("`{}` is not a request path", path.escape_debug()),
            ));
        }
        if let Some(host) = host {
            if !visible(host) {
                return Err(("host", format!("`{}` is not a host", host.escape_debug())));
            }
        }
        Ok(())
    }
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

/// A health line longer than [`MAX_LINE`]: the stream is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a health line longer than {max} bytes")]
pub struct LineTooLong {
    /// The limit.
    pub max: usize,
}

/// Splits a health stream into its JSON lines, both sides' one framing,
/// holding at most `max` bytes of a line in progress: a peer that never
/// sends a newline costs `max` bytes, then an error, never more. Feed it
/// what the stream gave ([`Lines::push`]), then take every complete line
/// ([`Lines::next_line`]) before pushing again.
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    /// Where the first line not yet taken starts in `buf`.
    start: usize,
    /// Bytes of the line in progress (after the last newline pushed).
    partial: usize,
    max: usize,
}

impl Lines {
    /// A decoder for lines of at most `max` bytes (newline excluded).
    pub fn new(max: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            start: 0,
            partial: 0,
            max,
        }
    }

    /// Appends `bytes`; fails when a line, complete or not, exceeds `max`.
    /// Nothing is kept once it failed to fit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        let mut len = self.partial;
        for &b in bytes {
            if b == b'\n' {
                len = 0;
            } else {
                len += 1;
                if len > self.max {
                    self.buf = Vec::new();
                    self.start = 0;
                    self.partial = 0;
                    return Err(LineTooLong { max: self.max });
                }
            }
        }
        self.partial = len;
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete line, without its newline (or a trailing `\r`).
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        let rest = &self.buf[self.start..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        let mut line = rest[..end].to_vec();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.start += end + 1;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.max {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Some(line)
    }

    /// Bytes held now (the bound the tests check).
    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn all_lines(l: &mut Lines) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| l.next_line()).collect()
    }

    #[test]
    fn a_probe_writes_one_request_or_nothing() {
        let http = |method: &str, path: &str, host: Option<&str>| Probe::Http {
            path: path.into(),
            method: method.into(),
            host: host.map(Into::into),
            status: vec![(200, 399)],
        };
        assert_eq!(Probe::Tcp.check_fields(), Ok(()));
        assert_eq!(
            http("GET", "/health?x=1", Some("app.local:8080")).check_fields(),
            Ok(())
        );
        for bad in [
            http("POST", "/", None),
            http("GET\r\nX: y", "/", None),
            http("GET", "/ok HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /", None),
            http("GET", "relative", None),
            http("GET", "/", Some("a\r\nX-Evil: 1")),
            http("GET", "/", Some("")),
            http("GET", "/sp ace", None),
        ] {
            assert!(bad.check_fields().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_line_without_end_costs_the_limit_then_fails() {
        let mut l = Lines::new(16);
        assert_eq!(l.push(b"0123456789"), Ok(()));
        assert_eq!(l.next_line(), None);
        assert_eq!(l.push(b"abcdef"), Ok(()), "16 bytes fit");
        assert_eq!(l.push(b"g"), Err(LineTooLong { max: 16 }));
        assert_eq!(l.held(), 0);
        // A long complete line inside one push fails too.
        let mut l = Lines::new(4);
        assert_eq!(l.push(b"ok\ntoo long\n"), Err(LineTooLong { max: 4 }));
        let mut l = Lines::new(4);
        assert_eq!(
            l.push(b"abcd\r\n"),
            Err(LineTooLong { max: 4 }),
            "\\r counts"
        );
    }

    #[test]
    fn lines_come_out_whole_and_in_order() {
        let mut l = Lines::new(64);
        l.push(b"{\"a\":1}\n{\"b\"").unwrap();
        assert_eq!(all_lines(&mut l), vec![b"{\"a\":1}".to_vec()]);
        l.push(b":2}\r\n\n").unwrap();
        assert_eq!(all_lines(&mut l), vec![b"{\"b\":2}".to_vec(), Vec::new()]);
        assert_eq!(l.held(), 0);
    }

    proptest! {
        /// However the bytes are cut, the same lines come out, and the
        /// decoder never holds more than the limit plus the last push.
        #[test]
        fn cuts_do_not_matter(
            lines in proptest::collection::vec("[a-z{}\":,]{0,40}", 0..20),
            cuts in proptest::collection::vec(1usize..50, 0..30),
        ) {
            let text: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            let mut l = Lines::new(40);
            let mut got = Vec::new();
            let mut rest = &text[..];
            let mut cuts = cuts.into_iter();
            while !rest.is_empty() {
                let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
                l.push(&rest[..n]).unwrap();
                prop_assert!(l.held() <= 40 + 1 + n);
                got.extend(all_lines(&mut l));
                rest = &rest[n..];
            }
            let want: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
            prop_assert_eq!(got, want);
        }
    }

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
