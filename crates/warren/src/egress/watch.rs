//! `warren egress apply --watch`: the nftables wall kept fresh while the
//! names in the allowlist move.
//!
//! A rule built from a name is a snapshot of its addresses. The watcher
//! re-resolves the names with the system resolver (the one the agent itself
//! uses, so the wall and the agent agree on what a name means) when the
//! soonest of their DNS records' TTLs ends, and at least every interval
//! ([`RecordClock`], [`next_look`]), and, when an address changed, replaces
//! the sets' contents in one `nft` transaction ([`nftables_set_swap`]): the
//! chains, the subject and the `refused` counter stay, and no packet meets a
//! half-updated set. A name that fails to resolve keeps its last addresses
//! (the wall never widens or empties on a DNS failure).
//!
//! Each look also guards the table ([`guard`]): if it is gone, or differs
//! from what the watcher loaded (an element, rule or chain added, changed
//! or removed by someone else), the whole wall is applied again, and the
//! counter starts over.

use crate::egress::check::list_table_json;
use crate::egress::system::{lookup_names, nft};
use crate::Failure;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::TokioResolver;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
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

/// The shortest wait between two looks, whatever a record's TTL says (a
/// TTL of 0 must not spin the watcher).
pub(crate) const MIN_LOOK: Duration = Duration::from_secs(1);

/// When the records behind the list's names end, as DNS tells: asked of the
/// resolvers of /etc/resolv.conf for the TTL only (the addresses stay the
/// system resolver's). A name DNS does not answer for (/etc/hosts, mDNS)
/// has no end and waits the interval.
struct RecordClock {
    dns: Option<TokioResolver>,
}

impl RecordClock {
    fn system() -> RecordClock {
        let dns = TokioResolver::builder_tokio().and_then(|mut builder| {
            // /etc/hosts lines have no TTL: only DNS answers count.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder.build()
        });
        match dns {
            Ok(dns) => RecordClock { dns: Some(dns) },
            Err(e) => {
                tracing::warn!(
                    event = "egress_watch_no_ttl",
                    "cannot read the DNS configuration ({e}); looking every interval only"
                );
                RecordClock { dns: None }
            }
        }
    }

    /// The name whose record ends first, and when. The names are asked at
    /// once, each for at most 5 s, so a dead resolver delays a look (and
    /// its guard) by 5 s, whatever the number of names.
    async fn soonest_end<'a>(
        &self,
        names: impl Iterator<Item = &'a String>,
    ) -> Option<(&'a str, Instant)> {
        let dns = self.dns.as_ref()?;
        let asks = names.map(|name| async move {
            let answer = tokio::time::timeout(Duration::from_secs(5), dns.lookup_ip(name.as_str()));
            match answer.await {
                Ok(Ok(found)) => Some((name.as_str(), found.valid_until())),
                _ => None,
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .min_by_key(|&(_, ends)| ends)
    }
}

/// How long to wait before the next look: until the soonest record ends,
/// but never longer than `interval` nor shorter than [`MIN_LOOK`].
pub(crate) fn next_look(
    now: Instant,
    interval: Duration,
    record_ends: Option<Instant>,
) -> Duration {
    let until_end = record_ends.map_or(interval, |ends| ends.saturating_duration_since(now));
    until_end.min(interval).max(MIN_LOOK)
}

/// Watches until SIGTERM/SIGINT; the rules stay loaded when it stops.
pub(crate) async fn run(mut follow: Follow, interval: Duration) -> Result<(), Failure> {
    tracing::info!(
        event = "egress_watch_started",
        names = follow.resolved.len(),
        "re-resolving the allowlist's names when their records' TTLs end, and at least every {interval:?}"
    );
    let clock = RecordClock::system();
    let mut expected = loaded_shape();
    let mut paced_by: Option<String> = None;
    let stop = crate::terminate_signal();
    tokio::pin!(stop);
    loop {
        let soonest = clock.soonest_end(follow.resolved.keys()).await;
        let wait = next_look(Instant::now(), interval, soonest.map(|(_, ends)| ends));
        let pacer = soonest
            .filter(|_| wait < interval)
            .map(|(name, _)| name.to_owned());
        if pacer != paced_by {
            match &pacer {
                Some(name) => tracing::info!(
                    event = "egress_watch_paced", name = %name, wait = ?wait,
                    "looking again in {wait:?}, when `{name}`'s record's TTL ends"
                ),
                None => tracing::info!(
                    event = "egress_watch_paced", wait = ?wait,
                    "looking again every {interval:?}: no record ends sooner"
                ),
            }
            paced_by = pacer;
        }
        tokio::select! {
            () = &mut stop => {
                tracing::info!(event = "egress_watch_stopped", "stopped; table inet {TABLE} stays loaded");
                return Ok(());
            }
            () = tokio::time::sleep(wait) => {}
        }
        guard(&follow, &mut expected)?;
        let fresh = follow.refresh().await;
        if fresh != follow.resolved {
            follow_moves(&mut follow, fresh)?;
            expected = loaded_shape();
        }
    }
}

/// The loaded table as nft prints it, less what changes by itself (rule
/// handles, counter values): an equal shape means nobody else touched it.
fn loaded_shape() -> Option<serde_json::Value> {
    let json = match list_table_json() {
        Ok(json) => json?,
        Err(e) => {
            tracing::warn!(
                event = "egress_table_unreadable",
                "cannot read table inet {TABLE}: {e}"
            );
            return None;
        }
    };
    let mut shape: serde_json::Value = serde_json::from_str(&json).ok()?;
    strip_volatile(&mut shape);
    Some(shape)
}

fn strip_volatile(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in ["handle", "packets", "bytes"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_volatile);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

/// Puts the whole wall back when the table is gone or no longer what the
/// watcher loaded (an element, rule or chain added, changed or removed by
/// someone else): the wall never stays wider than the list.
fn guard(follow: &Follow, expected: &mut Option<serde_json::Value>) -> Result<(), Failure> {
    let now = loaded_shape();
    if now.is_some() && now == *expected {
        return Ok(());
    }
    if now.is_none() {
        tracing::warn!(
            event = "egress_table_missing",
            "table inet {TABLE} is gone; applying the whole wall again"
        );
    } else {
        tracing::warn!(
            event = "egress_wall_drift",
            "table inet {TABLE} was changed by someone else; applying the whole wall again"
        );
    }
    apply_whole(follow)?;
    *expected = loaded_shape();
    Ok(())
}

fn apply_whole(follow: &Follow) -> Result<(), Failure> {
    let whole = nftables(&follow.wall()).map_err(|e| Failure::Usage(e.to_string()))?;
    nft(&["-f", "-"], &whole)
}

/// Swaps the sets' contents for the names' new addresses.
fn follow_moves(follow: &mut Follow, fresh: BTreeMap<String, Vec<IpAddr>>) -> Result<(), Failure> {
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
            return Ok(());
        }
    };
    if let Err(e) = nft(&["-f", "-"], &swap) {
        // The table went away since the guard looked: load the whole wall.
        tracing::warn!(
            event = "egress_table_missing",
            "{e}; applying the whole wall again"
        );
        apply_whole(follow)?;
    }
    tracing::info!(
        event = "egress_wall_refreshed",
        "table inet {TABLE} follows the new addresses"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{next_look, MIN_LOOK};
    use std::time::{Duration, Instant};

    #[test]
    fn the_next_look_is_the_soonest_record_end_within_bounds() {
        let now = Instant::now();
        let interval = Duration::from_secs(30);
        let secs = Duration::from_secs;
        // No record end known (hosts-file names, no DNS): the interval.
        assert_eq!(next_look(now, interval, None), interval);
        // A record ending sooner paces the watch.
        assert_eq!(next_look(now, interval, Some(now + secs(7))), secs(7));
        // A longer TTL waits no more than the interval.
        assert_eq!(next_look(now, interval, Some(now + secs(3600))), interval);
        // A TTL of 0, or an end already past, does not spin.
        assert_eq!(next_look(now, interval, Some(now)), MIN_LOOK);
        assert_eq!(next_look(now + secs(5), interval, Some(now)), MIN_LOOK);
        // An interval below the floor is raised to it.
        assert_eq!(next_look(now, Duration::ZERO, None), MIN_LOOK);
    }
}
