//! Keep-alive HTTP/1.1 connections to origins, reused across requests.
//!
//! Without a pool every proxied request costs a tunnel stream, a TCP
//! connect at the site and an HTTP handshake; with it, a steady load runs
//! over a few long-lived origin connections, as nginx's upstream `keepalive`
//! does.
//!
//! Invariants:
//! * A connection is keyed by its target (site, address) and remembers the
//!   agent whose stream carries it. It is reused only while that agent is
//!   connected and not draining, so a draining agent's streams close within
//!   one sweep instead of holding its drain open.
//! * An idle connection is dropped after [`IDLE_TIMEOUT`]: shorter than the
//!   keep-alive timeouts of common origins (Node.js and Apache close idle
//!   connections after 5 s), so the edge rarely sends on a connection the
//!   origin is closing. When it does and the request was not sent, the
//!   caller gets the request back and sends it on a fresh connection.
//! * A connection returns to the pool only when hyper says it can take the
//!   next request, i.e. after the previous response body was read to its
//!   end. A response cut short closes the connection instead.
//! * Upgraded connections (WebSocket) are never pooled.
//! * Nothing in the pool holds an agent's active-stream slot: the slot is
//!   charged per request, so least-active balancing and the status API see
//!   requests, not idle connections.

use crate::tunnel::registry::AgentConn;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A connection's request side.
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// How long an unused connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per target; more are closed.
const MAX_IDLE_PER_TARGET: usize = 256;
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Key = (String, String);

struct Idle {
    sender: Sender,
    agent: Arc<AgentConn>,
    since: Instant,
}

impl Idle {
    fn usable(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT
            && self.sender.is_ready()
            && !self.agent.draining.load(Ordering::Relaxed)
            && !self.agent.link.is_closed()
    }
}

/// Idle origin connections by target.
#[derive(Default)]
pub(crate) struct OriginPool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

impl OriginPool {
    /// The most recently used connection to `address` at `site` that can
    /// take a request now, and the agent carrying it.
    pub(crate) fn checkout(&self, site: &str, address: &str) -> Option<(Sender, Arc<AgentConn>)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&(site.to_owned(), address.to_owned()))?;
        while let Some(entry) = list.pop() {
            if entry.usable() {
                return Some((entry.sender, entry.agent));
            }
        }
        None
    }

    /// Returns `sender` to the pool once its current response has been read
    /// to the end (dropped instead if the connection closes first).
    pub(crate) fn check_in_when_ready(
        self: &Arc<Self>,
        site: &str,
        address: &str,
        mut sender: Sender,
        agent: Arc<AgentConn>,
    ) {
        let pool = self.clone();
        let key = (site.to_owned(), address.to_owned());
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(key).or_default();
            if list.len() >= MAX_IDLE_PER_TARGET {
                list.remove(0);
            }
            list.push(Idle {
                sender,
                agent,
                since: Instant::now(),
            });
        });
    }

    /// Idle connections to `address` at `site` now, for the status API.
    pub(crate) fn idle_for(&self, site: &str, address: &str) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(&(site.to_owned(), address.to_owned()))
            .map_or(0, Vec::len)
    }

    /// Closes expired connections and those of draining or lost agents,
    /// every second, until `stop`.
    pub(crate) async fn sweep_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    return;
                }
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|_, list| {
                list.retain(Idle::usable);
                !list.is_empty()
            });
        }
    }
}
