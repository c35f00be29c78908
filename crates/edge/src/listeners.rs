//! The set of resource listeners, and how a new configuration changes it.
//!
//! Each resource has a [`ResourceSlot`] read by its listener on every new
//! connection. Applying a configuration is a diff: a resource whose kind and
//! `listen` are unchanged keeps its socket and gets the new settings swapped
//! in atomically; others are bound anew or stopped. New sockets are all bound
//! before anything changes, so a port conflict leaves the running set intact.
//! Stopping a listener never touches connections already open.

use crate::config::{Resource, ResourceKind, Target};
use crate::{proxy_tcp, proxy_udp, EdgeError, EdgeShared};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// The live settings of one resource.
pub(crate) struct ResourceSlot {
    pub(crate) resource: ArcSwap<Resource>,
    next_target: AtomicUsize,
}

impl ResourceSlot {
    /// Round-robin over the resource's targets.
    pub(crate) fn pick_target(&self, resource: &Resource) -> Target {
        let i = self.next_target.fetch_add(1, Ordering::Relaxed);
        resource.targets[i % resource.targets.len()].clone()
    }
}

struct Running {
    kind: ResourceKind,
    requested: SocketAddr,
    bound: SocketAddr,
    slot: Arc<ResourceSlot>,
    stop: CancellationToken,
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// The running resource listeners.
#[derive(Default)]
pub(crate) struct Listeners {
    running: HashMap<String, Running>,
}

impl Listeners {
    pub(crate) fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.running.get(name).map(|r| r.bound)
    }

    /// Makes the running set match `resources`.
    pub(crate) async fn apply(
        &mut self,
        resources: &[Resource],
        shared: &Arc<EdgeShared>,
    ) -> Result<(), EdgeError> {
        // Same kind and address (as asked for, or as bound when port 0 was asked for).
        let kept = |run: &Running, r: &Resource| {
            run.kind == r.kind && (run.requested == r.listen || run.bound == r.listen)
        };
        let is_kept = |r: &Resource| self.running.get(&r.name).is_some_and(|run| kept(run, r));
        let to_start: Vec<&Resource> = resources.iter().filter(|r| !is_kept(r)).collect();
        let wanted: HashMap<&str, &Resource> =
            resources.iter().map(|r| (r.name.as_str(), r)).collect();
        let to_stop: Vec<String> = self
            .running
            .iter()
            .filter(|(name, run)| !wanted.get(name.as_str()).is_some_and(|r| kept(run, r)))
            .map(|(name, _)| name.clone())
            .collect();
        // An address held by a listener that is about to stop can only be bound after it stops.
        let held = |r: &Resource| {
            r.listen.port() != 0
                && to_stop.iter().any(|n| {
                    let run = &self.running[n];
                    run.kind == r.kind && (run.requested == r.listen || run.bound == r.listen)
                })
        };
        // 1. Bind what can be bound now; on failure nothing has changed.
        let mut fresh = Vec::new();
        let mut later = Vec::new();
        for r in to_start {
            if held(r) {
                later.push(r);
            } else {
                fresh.push((r.clone(), bind(r).await?));
            }
        }
        // 2. Stop what is gone or changed.
        for name in to_stop {
            if let Some(run) = self.running.remove(&name) {
                run.stop.cancel();
                tracing::info!(event = "listener_stopped", resource = %name, listen = %run.bound, "listener stopped");
            }
        }
        // 3. Swap new settings into the kept ones.
        for r in resources {
            if let Some(run) = self.running.get(&r.name) {
                if **run.slot.resource.load() != *r {
                    run.slot.resource.store(Arc::new(r.clone()));
                    tracing::info!(event = "resource_updated", resource = %r.name, "resource settings updated in place");
                }
            }
        }
        // 4. Start the new ones, binding the freed addresses last.
        for (r, socket) in fresh {
            self.start(r, socket, shared);
        }
        for r in later {
            let socket = bind(r).await?;
            self.start(r.clone(), socket, shared);
        }
        Ok(())
    }

    fn start(&mut self, resource: Resource, socket: Socket, shared: &Arc<EdgeShared>) {
        let stop = CancellationToken::new();
        let slot = Arc::new(ResourceSlot {
            resource: ArcSwap::from_pointee(resource.clone()),
            next_target: AtomicUsize::new(0),
        });
        let bound = match &socket {
            Socket::Tcp(l) => l.local_addr(),
            Socket::Udp(s) => s.local_addr(),
        }
        .unwrap_or(resource.listen);
        tracing::info!(
            event = "listening", resource = %resource.name,
            kind = if resource.kind == ResourceKind::Tcp { "tcp" } else { "udp" },
            listen = %bound, "resource listening"
        );
        match socket {
            Socket::Tcp(l) => {
                tokio::spawn(proxy_tcp::serve(
                    l,
                    slot.clone(),
                    shared.clone(),
                    stop.clone(),
                ));
            }
            Socket::Udp(s) => {
                tokio::spawn(proxy_udp::serve(
                    s,
                    slot.clone(),
                    shared.clone(),
                    stop.clone(),
                ));
            }
        }
        self.running.insert(
            resource.name.clone(),
            Running {
                kind: resource.kind,
                requested: resource.listen,
                bound,
                slot,
                stop,
            },
        );
    }

    /// Stops every listener.
    pub(crate) fn stop_all(&mut self) {
        for (_, run) in self.running.drain() {
            run.stop.cancel();
        }
    }
}

async fn bind(r: &Resource) -> Result<Socket, EdgeError> {
    let what = format!("resource `{}`", r.name);
    match r.kind {
        ResourceKind::Tcp => TcpListener::bind(r.listen)
            .await
            .map(Socket::Tcp)
            .map_err(|e| EdgeError::Bind {
                what,
                addr: r.listen,
                source: e,
            }),
        ResourceKind::Udp => UdpSocket::bind(r.listen)
            .await
            .map(Socket::Udp)
            .map_err(|e| EdgeError::Bind {
                what,
                addr: r.listen,
                source: e,
            }),
    }
}
