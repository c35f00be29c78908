//! `warren egress apply --watch`: the nftables wall kept fresh while the
//! names in the allowlist move.
//!
//! A rule built from a name is a snapshot of its addresses. The watcher
//! re-resolves the names every interval with the system resolver (the one
//! the agent itself uses, so the wall and the agent agree on what a name
//! means) and, when an address changed, replaces the sets' contents in one
//! `nft` transaction ([`nftables_set_swap`]): the chains, the subject and
//! the `refused` counter stay, and no packet meets a half-updated set. If
//! the table was removed under it, the whole wall is applied again. A name
//! that fails to resolve keeps its last addresses (the wall never widens
//! or empties on a DNS failure).

use crate::egress_cmd::{lookup_names, nft};
use crate::Failure;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use warren_egress::render::{nftables, nftables_set_swap, Subject, Wall, TABLE};
use warren_egress::Allowlist;

/// What the wall is made of, owned for the life of the watch.
pub(crate) struct Follow {
    pub(crate) allow: Allowlist,
    pub(crate) resolved: BTreeMap<String, Vec<IpAddr>>,
    pub(crate) resolvers: Vec<IpAddr>,
    pub(crate) edge: Vec<SocketAddr>,
    pub(crate) subject: Subject,
}

impl Follow {
    fn wall(&self) -> Wall<'_> {
        Wall {
            allow: &self.allow,
            resolved: &self.resolved,
            resolvers: &self.resolvers,
            edge: &self.edge,
            subject: self.subject.clone(),
        }
    }

    /// Resolves every name again; a failure keeps the last addresses.
    async fn refresh(&self) -> BTreeMap<String, Vec<IpAddr>> {
        let mut out = self.resolved.clone();
        for (name, found) in lookup_names(&self.allow, false).await {
            match found {
                Ok(addrs) if !addrs.is_empty() => {
                    out.insert(name, addrs);
                }
                Ok(_) => tracing::warn!(
                    event = "egress_name_unresolved", name = %name,
                    "`{name}` has no addresses now; keeping its last ones"
                ),
                Err(e) => tracing::warn!(
                    event = "egress_name_unresolved", name = %name,
                    "cannot resolve `{name}` ({e}); keeping its last addresses"
                ),
            }
        }
        out
    }
}

/// Watches until SIGTERM/SIGINT; the rules stay loaded when it stops.
pub(crate) async fn run(mut follow: Follow, interval: Duration) -> Result<(), Failure> {
    tracing::info!(
        event = "egress_watch_started",
        names = follow.resolved.len(),
        "re-resolving the allowlist's names every {interval:?}"
    );
    let stop = crate::terminate_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => {
                tracing::info!(event = "egress_watch_stopped", "stopped; table inet {TABLE} stays loaded");
                return Ok(());
            }
            () = tokio::time::sleep(interval) => {}
        }
        let fresh = follow.refresh().await;
        if fresh == follow.resolved {
            continue;
        }
        for (name, addrs) in &fresh {
            let before = follow.resolved.get(name);
            if before != Some(addrs) {
                tracing::info!(
                    event = "egress_name_moved", name = %name,
                    from = ?before, to = ?addrs,
                    "`{name}` moved; swapping the wall's sets"
                );
            }
        }
        let previous = std::mem::replace(&mut follow.resolved, fresh);
        let swap = match nftables_set_swap(&follow.wall()) {
            Ok(swap) => swap,
            Err(e) => {
                tracing::warn!(
                    event = "egress_swap_failed",
                    "{e}; keeping the rules loaded"
                );
                follow.resolved = previous;
                continue;
            }
        };
        if let Err(e) = nft(&["-f", "-"], &swap) {
            // The table is gone (or changed shape): load the whole wall.
            tracing::warn!(
                event = "egress_table_missing",
                "{e}; applying the whole wall again"
            );
            let whole = nftables(&follow.wall()).map_err(|e| Failure::Usage(e.to_string()))?;
            nft(&["-f", "-"], &whole)?;
        }
        tracing::info!(
            event = "egress_wall_refreshed",
            "table inet {TABLE} follows the new addresses"
        );
    }
}
