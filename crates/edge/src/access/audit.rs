//! The audit trail of access decisions: every decision made under a
//! policy (allowed or denied; not the `open` of an edge with none) goes to
//! the store with who, the resource, what decided, how the visitor
//! identified themselves and from where.
//!
//! Off the data path: a decision is a `try_send` into a bounded queue
//! ([`QUEUE`]); one writer task folds identical decisions within a second
//! into one row with a count and writes each second's rows in one
//! transaction. A full queue drops (counted, logged at powers of two)
//! rather than slow a request. Rows older than the retention (`[audit]
//! retention`, 30 days by default) are pruned every hour.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use warren_store::{DecisionRecord, Store};

/// Decisions waiting for the writer, at most.
pub(crate) const QUEUE: usize = 16_384;
/// How often the writer writes.
const FLUSH: Duration = Duration::from_secs(1);
/// How often old rows are pruned.
const PRUNE: Duration = Duration::from_secs(3600);

/// One decision, as the access phase hands it over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Decision {
    pub(crate) resource: String,
    pub(crate) principal: String,
    pub(crate) allowed: bool,
    pub(crate) reason: Reason,
    pub(crate) method: &'static str,
    pub(crate) client: IpAddr,
}

/// What decided, kept as data on the data path and spelled out
/// (`grant[N]`, `rules[N]`...) only by the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    Grant(usize),
    Rule(usize),
    Public,
    Door,
    NoGrant,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Grant(n) => write!(f, "grant[{n}]"),
            Reason::Rule(n) => write!(f, "rules[{n}]"),
            Reason::Public => f.write_str("public"),
            Reason::Door => f.write_str("door"),
            Reason::NoGrant => f.write_str("no_grant"),
        }
    }
}

/// The queue to the writer.
pub(crate) struct DecisionLog {
    tx: mpsc::Sender<Decision>,
    dropped: AtomicU64,
}

impl DecisionLog {
    /// Starts the writer on `store`, keeping rows for `retention`.
    pub(crate) fn start(store: Store, retention: Duration) -> DecisionLog {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx, retention));
        DecisionLog {
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    /// Hands a decision to the writer (never waits).
    pub(crate) fn record(&self, d: Decision) {
        if self.tx.try_send(d).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    event = "decisions_dropped",
                    dropped = n,
                    "the audit of access decisions is not keeping up; decisions dropped"
                );
            }
        }
    }

    /// Decisions dropped so far (a full queue).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Decision>, retention: Duration) {
    let mut flush = tokio::time::interval(FLUSH);
    let mut prune = tokio::time::interval(PRUNE);
    let mut pending: HashMap<Decision, (i64, i64)> = HashMap::new();
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) => {
                    let now = warren_store::now_ms();
                    pending.entry(d).or_insert((now, 0)).1 += 1;
                    if pending.len() >= QUEUE {
                        // As many distinct decisions as the queue holds:
                        // written now, so the fold stays bounded too.
                        write(&store, &mut pending).await;
                    }
                }
                None => break,
            },
            _ = flush.tick() => write(&store, &mut pending).await,
            _ = prune.tick() => {
                let before = warren_store::now_ms() - retention.as_millis() as i64;
                match store.prune_decisions(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(event = "decisions_pruned", rows = n, "old access decisions pruned"),
                    Err(e) => tracing::warn!(error = %e, "could not prune old access decisions"),
                }
            }
        }
    }
    write(&store, &mut pending).await;
}

async fn write(store: &Store, pending: &mut HashMap<Decision, (i64, i64)>) {
    if pending.is_empty() {
        return;
    }
    let mut batch: Vec<DecisionRecord> = pending
        .drain()
        .map(|(d, (at_ms, count))| DecisionRecord {
            id: hex::encode(rand::random::<[u8; 8]>()),
            at_ms,
            resource: d.resource,
            principal: d.principal,
            decision: if d.allowed { "allow" } else { "deny" }.to_owned(),
            reason: d.reason.to_string(),
            method: d.method.to_owned(),
            client: d.client.to_string(),
            count,
        })
        .collect();
    batch.sort_by_key(|d| d.at_ms);
    if let Err(e) = store.record_decisions(&batch).await {
        tracing::warn!(error = %e, rows = batch.len(), "could not write access decisions to the store");
    }
}
