//! The set of resource listeners, and how a new configuration changes it.
//!
//! Only tcp and udp resources have listeners of their own (http and tls
//! share `https_listen`, see [`crate::proxy::sni`]). Each listener reads its
//! resource's [`ResourceSlot`] on every new connection. Applying a
//! configuration is a diff: a resource whose kind and `listen` are unchanged
//! keeps its socket (its slot gets the new settings when the new
//! [`ResourceTable`] is committed); others are bound anew or stopped. New sockets are all bound
//! before anything changes, so a port conflict leaves the running set intact.
//! Stopping a listener never touches connections already open.

use crate::config::{Resource, ResourceKind};
use crate::proxy::balance::{ResourceSlot, ResourceTable};
use crate::proxy::{tcp, udp};
use crate::{EdgeError, EdgeShared};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

struct Running {
    kind: ResourceKind,
    requested: SocketAddr,
    bound: SocketAddr,
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

    /// Makes the running set match the tcp and udp resources of `table`.
    pub(crate) async fn apply(
        &mut self,
        resources: &[Resource],
        table: &ResourceTable,
        shared: &Arc<EdgeShared>,
    ) -> Result<(), EdgeError> {
        let resources: Vec<(&Resource, SocketAddr)> = resources
            .iter()
            .filter_map(|r| r.listen.map(|l| (r, l)))
            .collect();
        // Same kind and address (as asked for, or as bound when port 0 was asked for).
        let kept = |run: &Running, r: &Resource, listen: SocketAddr| {
            run.kind == r.kind && (run.requested == listen || run.bound == listen)
        };
        let is_kept = |r: &Resource, l: SocketAddr| {
            self.running.get(&r.name).is_some_and(|run| kept(run, r, l))
        };
        let to_start: Vec<(&Resource, SocketAddr)> = resources
            .iter()
            .copied()
            .filter(|(r, l)| !is_kept(r, *l))
            .collect();
        let wanted: HashMap<&str, (&Resource, SocketAddr)> = resources
            .iter()
            .map(|(r, l)| (r.name.as_str(), (*r, *l)))
            .collect();
        let to_stop: Vec<String> = self
            .running
            .iter()
            .filter(|(name, run)| {
                !wanted
                    .get(name.as_str())
                    .is_some_and(|(r, l)| kept(run, r, *l))
            })
            .map(|(name, _)| name.clone())
            .collect();
        // An address held by a listener that is about to stop can only be bound after it stops.
        let held = |r: &Resource, listen: SocketAddr| {
            listen.port() != 0
                && to_stop.iter().any(|n| {
                    let run = &self.running[n];
                    run.kind == r.kind && (run.requested == listen || run.bound == listen)
                })
        };
        // 1. Bind what can be bound now; on failure nothing has changed.
        let mut fresh = Vec::new();
        let mut later = Vec::new();
        for (r, listen) in to_start {
            if held(r, listen) {
                later.push((r, listen));
            } else {
                fresh.push((r, listen, bind(r, listen).await?));
            }
        }
        // 2. Stop what is gone or changed.
        for name in to_stop {
            if let Some(run) = self.running.remove(&name) {
                run.stop.cancel();
                tracing::info!(event = "listener_stopped", resource = %name, listen = %run.bound, "listener stopped");
            }
        }
        // 3. Start the new ones, binding the freed addresses last.
        let slot_of = |r: &Resource| {
            table
                .by_name
                .get(&r.name)
                .cloned()
                .unwrap_or_else(|| Arc::new(ResourceSlot::new(r.clone())))
        };
        for (r, listen, socket) in fresh {
            self.start(r, listen, socket, slot_of(r), shared);
        }
        for (r, listen) in later {
            let socket = bind(r, listen).await?;
            self.start(r, listen, socket, slot_of(r), shared);
        }
        Ok(())
    }

    fn start(
        &mut self,
        resource: &Resource,
        listen: SocketAddr,
        socket: Socket,
        slot: Arc<ResourceSlot>,
        shared: &Arc<EdgeShared>,
    ) {
        let stop = CancellationToken::new();
        let bound = match &socket {
            Socket::Tcp(l) => l.local_addr(),
            Socket::Udp(s) => s.local_addr(),
        }
        .unwrap_or(listen);
        tracing::info!(
            event = "listening", resource = %resource.name,
            kind = resource.kind.as_str(),
            listen = %bound, "resource listening"
        );
        match socket {
            Socket::Tcp(l) => {
                tokio::spawn(tcp::serve(l, slot.clone(), shared.clone(), stop.clone()));
            }
            Socket::Udp(s) => {
                tokio::spawn(udp::serve(s, slot.clone(), shared.clone(), stop.clone()));
            }
        }
        self.running.insert(
            resource.name.clone(),
            Running {
                kind: resource.kind,
                requested: listen,
                bound,
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

async fn bind(r: &Resource, listen: SocketAddr) -> Result<Socket, EdgeError> {
    let bind_error = |e| EdgeError::Bind {
        what: format!("resource `{}`", r.name),
        addr: listen,
        source: e,
    };
    match r.kind {
        ResourceKind::Udp => UdpSocket::bind(listen)
            .await
            .map(Socket::Udp)
            .map_err(bind_error),
        _ => TcpListener::bind(listen)
            .await
            .map(Socket::Tcp)
            .map_err(bind_error),
    }
}
