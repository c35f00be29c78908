//! Choosing a target for each new connection or request: health, balancing
//! policy, stickiness, and the table of live resources.
//!
//! A [`ResourceSlot`] is a resource's live state: its settings (swapped in
//! atomically on reload) and per-target counters. The [`ResourceTable`]
//! indexes slots by name, by HTTP host/path and by TLS SNI; a reload builds a
//! new table that reuses the slots of resources that still exist, so
//! counters and sticky choices survive it.
//!
//! Health comes from the agents (see [`crate::tunnel::health`]): a target is down
//! when every agent that reported on it says so; targets nobody reported on
//! yet count as up.

use crate::config::{Balance, EdgeConfig, Resource, ResourceKind, Target};
use crate::tunnel::health_table::{check_id, HealthTable};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use warren_ingress::router::Router;

/// Counters of one target.
#[derive(Default, Debug)]
pub(crate) struct TargetStats {
    pub(crate) active: AtomicU64,
}

/// Holds one active-stream count on a target; releases it when dropped.
pub(crate) struct TargetGuard(Arc<TargetStats>);

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The live state of one resource.
pub(crate) struct ResourceSlot {
    pub(crate) resource: ArcSwap<Resource>,
    next: AtomicUsize,
    targets: Mutex<HashMap<Target, Arc<TargetStats>>>,
}

/// A chosen target.
pub(crate) struct Pick {
    pub(crate) index: usize,
    pub(crate) target: Target,
    /// True when every target was down and this one is tried anyway.
    pub(crate) fail_open: bool,
}

/// A short stable token naming a target in a sticky cookie.
pub(crate) fn target_token(target: &Target) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\0{}", target.site, target.address));
    hex::encode(&digest[..6])
}

impl ResourceSlot {
    pub(crate) fn new(resource: Resource) -> Self {
        ResourceSlot {
            resource: ArcSwap::from_pointee(resource),
            next: AtomicUsize::new(0),
            targets: Mutex::new(HashMap::new()),
        }
    }

    fn stats(&self, target: &Target) -> Arc<TargetStats> {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(target.clone()).or_default().clone()
    }

    /// Counts a stream on `target` until the guard drops.
    pub(crate) fn charge(&self, target: &Target) -> TargetGuard {
        let stats = self.stats(target);
        stats.active.fetch_add(1, Ordering::Relaxed);
        TargetGuard(stats)
    }

    /// Chooses a target. `sticky` is the visitor's previous target token
    /// (http cookie) and `client` its address (sticky by IP for the other
    /// kinds). `exclude` lists indexes already tried. `None` means no target
    /// may be tried: all are excluded, or all are down and the resource is
    /// `fail_closed`.
    pub(crate) fn pick(
        &self,
        resource: &Resource,
        health: &HealthTable,
        client: IpAddr,
        sticky: Option<&str>,
        exclude: &[usize],
    ) -> Option<Pick> {
        let open: Vec<usize> = (0..resource.targets.len())
            .filter(|i| !exclude.contains(i))
            .collect();
        if open.is_empty() {
            return None;
        }
        let up: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| health.is_up(&check_id(&resource.name, &resource.targets[i])))
            .collect();
        let (candidates, fail_open) = if !up.is_empty() {
            (up, false)
        } else if resource.fail_closed {
            return None;
        } else {
            (open, true)
        };
        let index = match resource.balance {
            Balance::RoundRobin => {
                candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()]
            }
            Balance::Sticky => {
                let by_cookie = sticky.and_then(|token| {
                    candidates
                        .iter()
                        .copied()
                        .find(|&i| target_token(&resource.targets[i]) == token)
                });
                match (by_cookie, resource.kind) {
                    (Some(i), _) => i,
                    (None, ResourceKind::Http) => self.least_active(resource, &candidates),
                    (None, _) => {
                        // Rendezvous hashing: a target's going down moves only its own visitors.
                        let score = |i: usize| {
                            use sha2::Digest;
                            let t = &resource.targets[i];
                            let d = sha2::Sha256::digest(format!(
                                "{client}\0{}\0{}",
                                t.site, t.address
                            ));
                            u64::from_be_bytes(d[..8].try_into().unwrap_or_default())
                        };
                        candidates
                            .iter()
                            .copied()
                            .max_by_key(|&i| score(i))
                            .unwrap_or(candidates[0])
                    }
                }
            }
            Balance::LeastActive => self.least_active(resource, &candidates),
        };
        Some(Pick {
            index,
            target: resource.targets[index].clone(),
            fail_open,
        })
    }

    fn least_active(&self, resource: &Resource, candidates: &[usize]) -> usize {
        if candidates.len() == 1 {
            return candidates[0];
        }
        let loads: Vec<(usize, u64)> = candidates
            .iter()
            .map(|&i| {
                (
                    i,
                    self.stats(&resource.targets[i])
                        .active
                        .load(Ordering::Relaxed),
                )
            })
            .collect();
        let min = loads.iter().map(|l| l.1).min().unwrap_or(0);
        let tied: Vec<usize> = loads.iter().filter(|l| l.1 == min).map(|l| l.0).collect();
        tied[rand::random_range(0..tied.len())]
    }
}

/// Every live resource, indexed the ways listeners look them up.
#[derive(Default)]
pub(crate) struct ResourceTable {
    pub(crate) by_name: HashMap<String, Arc<ResourceSlot>>,
    pub(crate) http: Router<Arc<ResourceSlot>>,
    pub(crate) tls: Router<Arc<ResourceSlot>>,
    /// New settings for reused slots, stored by [`ResourceTable::commit`].
    updates: Vec<(Arc<ResourceSlot>, Arc<Resource>)>,
}

impl ResourceTable {
    /// The table for `config`, reusing `old`'s slots by name. Nothing live
    /// changes until [`ResourceTable::commit`].
    pub(crate) fn build(config: &EdgeConfig, old: &ResourceTable) -> ResourceTable {
        let mut table = ResourceTable::default();
        for r in &config.resources {
            let slot = match old.by_name.get(&r.name) {
                Some(slot) if slot.resource.load().kind == r.kind => {
                    if **slot.resource.load() != *r {
                        table.updates.push((slot.clone(), Arc::new(r.clone())));
                    }
                    slot.clone()
                }
                _ => Arc::new(ResourceSlot::new(r.clone())),
            };
            let host = r.host.as_deref().unwrap_or_default();
            // The configuration was validated: no duplicate routes remain.
            let routed = match r.kind {
                ResourceKind::Http => table.http.insert(host, r.path.as_deref(), slot.clone()),
                ResourceKind::Tls => table.tls.insert(host, None, slot.clone()),
                ResourceKind::Tcp
                | ResourceKind::Udp
                | ResourceKind::Ssh
                | ResourceKind::Private => Ok(()),
            };
            if let Err(e) = routed {
                tracing::error!(resource = %r.name, error = %e, "route not added");
            }
            table.by_name.insert(r.name.clone(), slot);
        }
        table
    }

    /// Swaps the new settings into reused slots.
    pub(crate) fn commit(&mut self) {
        for (slot, resource) in self.updates.drain(..) {
            tracing::info!(event = "resource_updated", resource = %resource.name, "resource settings updated in place");
            slot.resource.store(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resource(balance: Balance, kind: ResourceKind) -> Resource {
        Resource {
            name: "web".into(),
            kind,
            listen: None,
            host: Some("a.example".into()),
            path: None,
            targets: (0..3)
                .map(|i| Target {
                    site: "home".into(),
                    address: format!("10.0.0.{i}:80"),
                })
                .collect(),
            health: None,
            proxy_protocol: None,
            balance,
            fail_closed: false,
            keep_encoded_slashes: false,
            source_address: None,
            auth: crate::config::Auth::Login,
            login: true,
            basic: false,
            doors: crate::config::Doors::default(),
            rules: Vec::new(),
            private: None,
            idle_timeout: Duration::from_secs(60),
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn least_active_prefers_idle_targets_and_skips_down_ones() {
        let r = resource(Balance::LeastActive, ResourceKind::Http);
        let slot = ResourceSlot::new(r.clone());
        let health = HealthTable::default();
        let _g0 = slot.charge(&r.targets[0]);
        let _g1 = slot.charge(&r.targets[1]);
        assert_eq!(slot.pick(&r, &health, CLIENT, None, &[]).unwrap().index, 2);
        health.record(&check_id("web", &r.targets[2]), 1, false);
        let p = slot.pick(&r, &health, CLIENT, None, &[]).unwrap();
        assert!(p.index != 2 && !p.fail_open);
        assert_eq!(slot.pick(&r, &health, CLIENT, None, &[0]).unwrap().index, 1);
    }

    #[test]
    fn all_down_fails_open_unless_fail_closed() {
        let mut r = resource(Balance::RoundRobin, ResourceKind::Tcp);
        let slot = ResourceSlot::new(r.clone());
        let health = HealthTable::default();
        for t in &r.targets {
            health.record(&check_id("web", t), 7, false);
        }
        assert!(slot.pick(&r, &health, CLIENT, None, &[]).unwrap().fail_open);
        r.fail_closed = true;
        assert!(slot.pick(&r, &health, CLIENT, None, &[]).is_none());
        // One agent's good report is enough.
        health.record(&check_id("web", &r.targets[1]), 8, true);
        assert_eq!(slot.pick(&r, &health, CLIENT, None, &[]).unwrap().index, 1);
        health.forget(8);
        assert!(slot.pick(&r, &health, CLIENT, None, &[]).is_none());
    }

    #[test]
    fn round_robin_cycles_and_sticky_sticks() {
        let r = resource(Balance::RoundRobin, ResourceKind::Tcp);
        let slot = ResourceSlot::new(r.clone());
        let health = HealthTable::default();
        let seq: Vec<usize> = (0..6)
            .map(|_| slot.pick(&r, &health, CLIENT, None, &[]).unwrap().index)
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);

        let r = resource(Balance::Sticky, ResourceKind::Tcp);
        let first = slot.pick(&r, &health, CLIENT, None, &[]).unwrap().index;
        for _ in 0..10 {
            assert_eq!(
                slot.pick(&r, &health, CLIENT, None, &[]).unwrap().index,
                first
            );
        }
        let r = resource(Balance::Sticky, ResourceKind::Http);
        let token = target_token(&r.targets[1]);
        for _ in 0..10 {
            assert_eq!(
                slot.pick(&r, &health, CLIENT, Some(&token), &[])
                    .unwrap()
                    .index,
                1
            );
        }
        // A sticky target that went down loses its visitors.
        health.record(&check_id("web", &r.targets[1]), 1, false);
        assert_ne!(
            slot.pick(&r, &health, CLIENT, Some(&token), &[])
                .unwrap()
                .index,
            1
        );
    }
}
