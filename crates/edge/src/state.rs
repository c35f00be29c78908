//! The edge's side of the store: opening it, reconciling the config file
//! into it, and recording what happens without slowing the proxy.
//!
//! * [`open`]: SQLite at `data_dir/warren.db` (WAL) unless `database` names
//!   a PostgreSQL server; migrations run before anything listens.
//! * [`reconcile`]: at start and on every reload, the file's sites and
//!   resources are written to the store as managed by `file` (actor
//!   `config-file`); file-managed objects no longer in the file are deleted.
//!   Objects created through the API are never touched by it.
//! * [`Recorder`]: agents seen and events (also handed to the notifier,
//!   [`crate::notify`]) go through a bounded channel to
//!   one writer task, so a slow or unreachable database never blocks a
//!   handshake or a stream. When the channel is full the record is dropped
//!   and counted (`dropped`), never awaited.

use crate::config::{Balance, EdgeConfig, Resource};
use crate::tunnel::credentials::SiteSecret;
use crate::EdgeError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use warren_store::{ManagedBy, ResourceRecord, Store, StoreError, TargetRecord};

/// The actor of changes that come from the config file.
pub(crate) const FILE_ACTOR: &str = "config-file";

/// Opens the store the configuration names.
pub(crate) async fn open(config: &EdgeConfig) -> Result<Store, EdgeError> {
    let store = match &config.database {
        Some(url) => Store::open_url(url.expose()).await,
        None => Store::open_sqlite(&config.data_dir.join("warren.db")).await,
    };
    store.map_err(EdgeError::Store)
}

fn secret_for_store(secret: &SiteSecret) -> String {
    match secret {
        SiteSecret::Argon2(h) => h.clone(),
        // A clear secret in the file stays in the file: the store gets a
        // marker, never the secret or a fast hash of it.
        SiteSecret::Digest(_) => "managed-by-file".to_owned(),
    }
}

/// The store's form of a configured resource.
pub(crate) fn record_of(r: &Resource) -> ResourceRecord {
    ResourceRecord {
        name: r.name.clone(),
        kind: r.kind.as_str().to_owned(),
        host: r.host.clone(),
        path: r.path.clone(),
        listen: r.listen.map(|l| l.to_string()),
        proxy_protocol: r.proxy_protocol.map(|v| match v {
            crate::config::ProxyVersion::V1 => "v1".to_owned(),
            crate::config::ProxyVersion::V2 => "v2".to_owned(),
        }),
        balance: match r.balance {
            Balance::LeastActive => "least_active",
            Balance::RoundRobin => "round_robin",
            Balance::Sticky => "sticky",
        }
        .to_owned(),
        fail_closed: r.fail_closed,
        health: r.health.as_ref().map(|h| {
            serde_json::json!({
                "probe": h.probe,
                "interval_ms": h.interval.as_millis() as u64,
                "timeout_ms": h.timeout.as_millis() as u64,
                "healthy_threshold": h.healthy_threshold,
                "unhealthy_threshold": h.unhealthy_threshold,
            })
        }),
        targets: r
            .targets
            .iter()
            .map(|t| TargetRecord {
                site: t.site.clone(),
                address: t.address.clone(),
            })
            .collect(),
        spec: None,
        managed_by: ManagedBy::File,
        version: 0,
        created_ms: 0,
        updated_ms: 0,
    }
}

/// Whether two records describe the same resource settings.
fn same_settings(a: &ResourceRecord, b: &ResourceRecord) -> bool {
    let strip = |r: &ResourceRecord| ResourceRecord {
        spec: None,
        managed_by: ManagedBy::File,
        version: 0,
        created_ms: 0,
        updated_ms: 0,
        ..r.clone()
    };
    strip(a) == strip(b)
}

/// Writes the file's sites and resources into the store (see the module
/// docs). Returns how many objects changed.
pub(crate) async fn reconcile(store: &Store, config: &EdgeConfig) -> Result<usize, StoreError> {
    let mut changed = 0;
    let stored_sites = store.list_sites().await?;
    for (id, site) in &config.sites {
        match stored_sites.iter().find(|s| &s.id == id) {
            None => {
                store
                    .create_site(
                        FILE_ACTOR,
                        id,
                        id,
                        ManagedBy::File,
                        &secret_for_store(&site.secret),
                        &site.tags,
                    )
                    .await?;
                changed += 1;
            }
            Some(s) if s.managed_by == ManagedBy::Api => {
                tracing::warn!(site = %id, "site is defined both in the config file and through the API; the file's definition serves, the API's is left as it is");
            }
            Some(_) => {}
        }
    }
    let wanted: Vec<ResourceRecord> = config.resources.iter().map(record_of).collect();
    let stored = store.list_resources().await?;
    // Deletions first, so a route that moved from one resource to another
    // does not clash with itself.
    for old in stored.iter().filter(|r| r.managed_by == ManagedBy::File) {
        if !wanted.iter().any(|w| w.name == old.name) {
            store
                .delete_resource(FILE_ACTOR, &old.name, ManagedBy::File)
                .await?;
            changed += 1;
        }
    }
    for want in &wanted {
        match stored.iter().find(|r| r.name == want.name) {
            None => {
                store
                    .create_resource(FILE_ACTOR, want, ManagedBy::File)
                    .await?;
                changed += 1;
            }
            Some(have) if have.managed_by == ManagedBy::Api => {
                tracing::warn!(resource = %want.name, "resource is defined both in the config file and through the API; the file's definition serves");
            }
            Some(have) if !same_settings(have, want) => {
                store
                    .replace_resource(FILE_ACTOR, want, ManagedBy::File)
                    .await?;
                changed += 1;
            }
            Some(_) => {}
        }
    }
    for old in stored_sites
        .iter()
        .filter(|s| s.managed_by == ManagedBy::File)
    {
        if !config.sites.contains_key(&old.id) {
            store.delete_site(FILE_ACTOR, &old.id).await?;
            changed += 1;
        }
    }
    Ok(changed)
}

enum Record {
    AgentSeen {
        instance: String,
        site: String,
        version: String,
        platform: String,
        address: String,
    },
    Event {
        kind: &'static str,
        subject: String,
        detail: serde_json::Value,
    },
}

/// Records agents and events in the store from one writer task.
pub(crate) struct Recorder {
    tx: mpsc::Sender<Record>,
    dropped: AtomicU64,
    notifier: Option<Arc<crate::notify::Notifier>>,
}

const QUEUE: usize = 4096;

impl Recorder {
    /// Starts the writer task on `store`.
    pub(crate) fn start(
        store: Store,
        notifier: Option<Arc<crate::notify::Notifier>>,
    ) -> Arc<Recorder> {
        let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
        tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                let result = match &record {
                    Record::AgentSeen {
                        instance,
                        site,
                        version,
                        platform,
                        address,
                    } => {
                        store
                            .agent_seen(instance, site, version, platform, address)
                            .await
                    }
                    Record::Event {
                        kind,
                        subject,
                        detail,
                    } => store.record_event(kind, subject, detail).await.map(|_| ()),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not record to the store");
                }
            }
        });
        Arc::new(Recorder {
            tx,
            dropped: AtomicU64::new(0),
            notifier,
        })
    }

    fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "store is not keeping up; records dropped");
            }
        }
    }

    /// An agent connected.
    pub(crate) fn agent_seen(
        &self,
        instance: &str,
        site: &str,
        version: &str,
        platform: &str,
        address: &str,
    ) {
        self.send(Record::AgentSeen {
            instance: instance.to_owned(),
            site: site.to_owned(),
            version: version.to_owned(),
            platform: platform.to_owned(),
            address: address.to_owned(),
        });
    }

    /// Something happened to `subject` (`site/home`, `resource/blog`...).
    pub(crate) fn event(&self, kind: &'static str, subject: String, detail: serde_json::Value) {
        if let Some(n) = &self.notifier {
            n.event(kind, &subject, &detail);
        }
        self.send(Record::Event {
            kind,
            subject,
            detail,
        });
    }
}
