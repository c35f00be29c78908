//! Target health as the agents report it: per check (`resource/address`),
//! per agent link. A leaf that target choice, the status API and the
//! metrics read, and the health streams ([`crate::tunnel::health`]) write.

use crate::config::Target;
use std::collections::HashMap;
use std::sync::Mutex;

/// Health of checks, by check id (`resource/address`), per agent connection.
#[derive(Default)]
pub(crate) struct HealthTable {
    states: Mutex<HashMap<String, HashMap<u64, bool>>>,
}

/// A check's id: unique per resource and target address.
pub(crate) fn check_id(resource: &str, target: &Target) -> String {
    format!("{resource}/{}", target.address)
}

impl HealthTable {
    /// Records an agent's report; returns the target's overall state before
    /// and after.
    pub(crate) fn record(&self, id: &str, conn: u64, healthy: bool) -> (bool, bool) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let per_agent = states.entry(id.to_owned()).or_default();
        let before = per_agent.is_empty() || per_agent.values().any(|&h| h);
        per_agent.insert(conn, healthy);
        let after = per_agent.values().any(|&h| h);
        (before, after)
    }

    /// Forgets an agent connection's reports (it disconnected).
    pub(crate) fn forget(&self, conn: u64) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        for per_agent in states.values_mut() {
            per_agent.remove(&conn);
        }
        states.retain(|_, m| !m.is_empty());
    }

    /// Whether the check's target counts as up (unknown counts as up).
    pub(crate) fn is_up(&self, id: &str) -> bool {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .get(id)
            .is_none_or(|m| m.is_empty() || m.values().any(|&h| h))
    }

    /// Every known state, for the status API: id → up.
    pub(crate) fn snapshot(&self) -> HashMap<String, bool> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .iter()
            .map(|(id, m)| (id.clone(), m.values().any(|&h| h)))
            .collect()
    }
}
