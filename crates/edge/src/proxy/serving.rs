//! What the edge serves, and the one path every change takes to get there.
//!
//! The serving configuration is the config file's with the API's resources
//! appended and the live policy ([`crate::access::live`]). It changes in
//! three ways, all through [`Serving::apply`]:
//!
//! * a reload of the file ([`crate::Edge::reload`]);
//! * a write through the API ([`Serving::write`]): the new resource is
//!   validated by the file's rules, its listener is bound, and only then is
//!   the store written; if the store refuses, the listeners go back to what
//!   they were, so nothing is ever half-applied;
//! * another edge sharing the database changed it: [`sync_loop`] polls the
//!   store's `config_version` every second and re-reads the API's resources
//!   when it moved.
//!
//! Every applied change carries the store's `config_version`, which agents
//! receive with their plan and acknowledge ([`crate::tunnel::health`]); a
//! reconnected agent gets the whole plan again, so it never serves an older
//! version than the edge believes.

use crate::catalog::Catalog;
use crate::config::{parse_api_resource, ApiContext, ApiResourceError, EdgeConfig, Resource};
use crate::proxy::balance::ResourceTable;
use crate::proxy::listeners::Listeners;
use crate::{state, EdgeError, EdgeShared};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warren_store::{ManagedBy, ResourceRecord, StoreError};

/// The running listeners and what they were built from. One lock, so
/// changes apply one at a time.
pub(crate) struct Serving {
    listeners: Listeners,
    /// The config file as last loaded.
    file: Arc<EdgeConfig>,
    /// The store's `config_version` the serving set reflects.
    version: i64,
}

/// A change to a resource through the API.
pub(crate) enum Change {
    /// Create (`replace == false`) or replace a resource from its spec.
    Put {
        spec: serde_json::Value,
        replace: Option<String>,
    },
    /// Delete a resource.
    Delete(String),
}

/// Why an API change was refused; nothing was applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Resource(#[from] ApiResourceError),
    #[error("{0}")]
    PortInUse(String),
    /// The address cannot be listened on for another reason (not this
    /// host's, a privileged port).
    #[error("{0}")]
    CannotListen(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Applying failed for another reason (a certificate file, the access
    /// log): the edge's fault, not the request's.
    #[error("the edge could not apply the change: {0}")]
    Apply(EdgeError),
}

impl Serving {
    pub(crate) fn new(file: EdgeConfig) -> Serving {
        Serving {
            listeners: Listeners::default(),
            file: Arc::new(file),
            version: -1,
        }
    }

    /// The bound address of a resource's listener.
    pub(crate) fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.addr_of(name)
    }

    /// The config file as last loaded.
    pub(crate) fn file(&self) -> &EdgeConfig {
        &self.file
    }

    /// Whether the config file declares resource `name`.
    pub(crate) fn declared_in_file(&self, name: &str) -> bool {
        self.file.resources.iter().any(|r| r.name == name)
    }

    pub(crate) fn stop_all(&mut self) {
        self.listeners.stop_all();
    }

    /// Makes `serving` what the edge serves: listeners first (a bind
    /// failure changes nothing), then the resource table, then the config
    /// every task reads; agents are told.
    async fn apply(
        &mut self,
        shared: &Arc<EdgeShared>,
        serving: EdgeConfig,
        version: i64,
    ) -> Result<(), EdgeError> {
        let mut table = ResourceTable::build(&serving, &shared.resources.load());
        self.listeners
            .apply(&serving.resources, &table, shared)
            .await?;
        table.commit();
        shared.resources.store(Arc::new(table));
        shared.config.store(Arc::new(serving));
        self.version = version;
        shared
            .config_changed
            .send_modify(|v| *v = version.max(0) as u64);
        Ok(())
    }

    /// Serves `file` with the store's API resources.
    pub(crate) async fn load(
        &mut self,
        shared: &Arc<EdgeShared>,
        file: EdgeConfig,
    ) -> Result<(), EdgeError> {
        crate::access::live::record_file_policy(&shared.store, &file).await?;
        let version = shared.store.config_version().await?;
        let catalog = Catalog::load(&shared.store, &file).await?;
        let serving = serving_config(shared, &file, &catalog).await?;
        self.apply(shared, serving, version).await?;
        shared.catalog.store(Arc::new(catalog));
        self.file = Arc::new(file);
        Ok(())
    }

    /// Re-reads the API's sites and resources if the store changed since.
    pub(crate) async fn refresh(&mut self, shared: &Arc<EdgeShared>) -> Result<bool, EdgeError> {
        let version = shared.store.config_version().await?;
        if version == self.version {
            return Ok(false);
        }
        let catalog = Catalog::load(&shared.store, &self.file).await?;
        let serving = serving_config(shared, &self.file, &catalog).await?;
        self.apply(shared, serving, version).await?;
        shared.catalog.store(Arc::new(catalog));
        Ok(true)
    }

    /// Applies an API change (see the module docs). Returns the stored
    /// record (none for a delete).
    pub(crate) async fn write(
        &mut self,
        shared: &Arc<EdgeShared>,
        actor: &str,
        change: Change,
    ) -> Result<Option<ResourceRecord>, WriteError> {
        let current = shared.config.load_full();
        let name = match &change {
            Change::Put { replace, .. } => replace.clone(),
            Change::Delete(name) => Some(name.clone()),
        };
        if let Some(name) = &name {
            // Not found / managed by file, before any work.
            let have = shared.store.resource(name).await?;
            if have.managed_by == ManagedBy::File {
                return Err(StoreError::ManagedByFile {
                    what: "resource",
                    id: name.clone(),
                }
                .into());
            }
        }
        let others: Vec<Resource> = current
            .resources
            .iter()
            .filter(|r| Some(&r.name) != name.as_ref())
            .cloned()
            .collect();
        let (resource, spec) = match change {
            Change::Put { spec, replace } => {
                let catalog = shared.catalog.load();
                let site_known = |id: &str| catalog.has_site(id);
                let cx = ApiContext {
                    site_known: &site_known,
                    have_https: current.https_listen.is_some(),
                    others: &others,
                };
                let resource = parse_api_resource(&spec, &cx)?;
                if let Some(old) = &replace {
                    if *old != resource.name {
                        return Err(ApiResourceError::Conflict {
                            field: "name".into(),
                            message: format!(
                                "the body names `{}` but the path `{old}`; a resource cannot be renamed",
                                resource.name
                            ),
                        }
                        .into());
                    }
                }
                (Some(resource), Some((spec, replace.is_some())))
            }
            Change::Delete(_) => (None, None),
        };
        let mut serving = (*current).clone();
        serving.resources = others;
        if let Some(r) = &resource {
            serving.resources.push(r.clone());
        }
        // The order a reload from the store gives: the file's resources in
        // file order, then the API's by name.
        let api_from = self.file.resources.len().min(serving.resources.len());
        serving.resources[api_from..].sort_by(|a, b| a.name.cmp(&b.name));
        let version = self.version;
        self.apply(shared, serving, version)
            .await
            .map_err(|e| match e {
                EdgeError::Bind { addr, source, .. }
                    if source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    WriteError::PortInUse(format!("cannot listen on {addr}: {source}"))
                }
                EdgeError::Bind { addr, source, .. } => {
                    WriteError::CannotListen(format!("cannot listen on {addr}: {source}"))
                }
                EdgeError::Store(e) => WriteError::Store(e),
                other => WriteError::Apply(other),
            })?;
        let written = match (resource, spec, name) {
            (Some(r), Some((spec, replacing)), _) => {
                let mut record = state::record_of(&r);
                record.spec = Some(spec);
                if replacing {
                    shared
                        .store
                        .replace_resource(actor, &record, ManagedBy::Api)
                        .await
                        .map(Some)
                } else {
                    shared
                        .store
                        .create_resource(actor, &record, ManagedBy::Api)
                        .await
                        .map(Some)
                }
            }
            (_, _, Some(name)) => shared
                .store
                .delete_resource(actor, &name, ManagedBy::Api)
                .await
                .map(|()| None),
            _ => Ok(None),
        };
        match written {
            Ok(record) => {
                // One write bumps the version once; if it moved further,
                // another edge wrote too and `sync_loop` will catch up.
                if let Ok(v) = shared.store.config_version().await {
                    if v == version + 1 {
                        self.version = v;
                        shared.config_changed.send_modify(|x| *x = v.max(0) as u64);
                    }
                }
                Ok(record)
            }
            Err(e) => {
                // Put the listeners back as they were.
                if let Err(back) = self.apply(shared, (*current).clone(), version).await {
                    tracing::error!(error = %back, "could not restore the listeners after a refused write");
                }
                Err(e.into())
            }
        }
    }
}

/// `file` with the store's API resources appended and the live policy
/// ([`crate::access::live::compose`]). A resource that no longer validates
/// (the file now claims its host, its site is gone) is left out with a
/// warning: the file wins.
async fn serving_config(
    shared: &EdgeShared,
    file: &EdgeConfig,
    catalog: &Catalog,
) -> Result<EdgeConfig, StoreError> {
    let records = shared.store.list_resources().await?;
    let site_known = |id: &str| catalog.has_site(id);
    let mut serving = file.clone();
    for record in records.iter().filter(|r| r.managed_by == ManagedBy::Api) {
        let Some(spec) = &record.spec else { continue };
        let cx = ApiContext {
            site_known: &site_known,
            have_https: file.https_listen.is_some(),
            others: &serving.resources,
        };
        match parse_api_resource(spec, &cx) {
            Ok(r) => serving.resources.push(r),
            Err(e) => tracing::warn!(
                event = "api_resource_skipped", resource = %record.name, error = %e,
                "a resource made through the API no longer fits this edge's configuration; it is not served"
            ),
        }
    }
    let current = shared.config.load();
    serving.policy =
        crate::access::live::compose(&shared.store, file, current.policy.as_ref()).await?;
    Ok(serving)
}

/// Every second: follows changes other edges make to a shared store, and
/// disconnects agents whose rotated-out secret's grace has ended.
pub(crate) async fn sync_loop(shared: Arc<EdgeShared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for agent in shared
            .registry
            .close_expired_secrets(warren_store::now_ms())
        {
            tracing::warn!(
                event = "agent_secret_expired", site = %agent.site, agent = %agent.instance,
                "the agent's rotated-out secret is past its grace period; disconnected"
            );
        }
        let mut serving = shared.serving.lock().await;
        match serving.refresh(&shared).await {
            Ok(true) => tracing::info!(
                event = "config_synced",
                "the store changed; serving its resources"
            ),
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "store sync skipped"),
        }
    }
}
