//! Which policy the edge decides with, and the one way it changes.
//!
//! * The config file's `[policy] file`, when it names one. Each start or
//!   reload that finds its text changed records it in the store as a new
//!   version (actor `config-file`), so the history and the audit log cover
//!   file changes too. The API cannot change it (`managed_by_file`).
//! * Otherwise the store's live version, saved through the API
//!   ([`write`]). A version that is "no policy" (an explicit removal)
//!   leaves every resource open. A stored policy that no longer compiles
//!   (written by another Warren version) denies everything not public, and
//!   says so: it never opens anything.
//! * If the file once named a policy and no longer does, the last version
//!   it recorded stays live: removing `[policy]` never reopens an edge
//!   silently (`DELETE /api/v1/policy` does, on the record).
//!
//! A save is checked, its embedded tests run, and the tags of every known
//! site checked against it, before anything is written; refused, it
//! changes nothing. Accepted, it is stored (with its audit row and diff)
//! and applied at once through [`Serving::refresh`]; other edges sharing
//! the store pick it up within a second (`sync_loop`).

use crate::config::{EdgeConfig, PolicySettings, PolicySource};
use crate::proxy::serving::Serving;
use crate::state::FILE_ACTOR;
use crate::EdgeShared;
use std::sync::Arc;
use warren_policy::{PolicyErrors, TestFailure};
use warren_store::{policy_sha256, ManagedBy, NewPolicy, PolicyVersion, Store, StoreError};

/// Records the file's policy in the store when its text is not the live
/// version's (start and reload).
pub(crate) async fn record_file_policy(store: &Store, file: &EdgeConfig) -> Result<(), StoreError> {
    let Some(p) = &file.policy else {
        return Ok(());
    };
    let live = store.policy().await?;
    let same = live
        .as_ref()
        .is_some_and(|l| l.source == ManagedBy::File && l.sha256 == policy_sha256(Some(&p.text)));
    if !same {
        let v = store
            .save_policy(
                FILE_ACTOR,
                NewPolicy {
                    text: Some(&p.text),
                    source: ManagedBy::File,
                    base: None,
                    restored_from: None,
                },
            )
            .await?;
        tracing::info!(event = "policy_recorded", version = v.version, file = %p.source, "the config file's policy changed; recorded as a new version");
    }
    Ok(())
}

/// The policy to serve with `file`: see the module docs. `current` is the
/// one served now, reused when the live version did not change.
pub(crate) async fn compose(
    store: &Store,
    file: &EdgeConfig,
    current: Option<&PolicySettings>,
) -> Result<Option<PolicySettings>, StoreError> {
    let live = store.policy().await?;
    if let Some(p) = &file.policy {
        let version = live
            .filter(|l| l.sha256 == policy_sha256(Some(&p.text)))
            .map_or(0, |l| l.version);
        return Ok(Some(PolicySettings {
            version,
            ..p.clone()
        }));
    }
    let Some(live) = live else { return Ok(None) };
    let Some(text) = live.text else {
        return Ok(None);
    };
    if let Some(c) =
        current.filter(|c| c.source == PolicySource::Store && c.version == live.version)
    {
        return Ok(Some(c.clone()));
    }
    let policy = match warren_policy::compile(&text) {
        Ok(p) => p,
        Err(errors) => {
            tracing::error!(
                event = "policy_unusable", version = live.version, errors = %errors,
                "the stored policy does not compile; every resource that is not public is denied until a good one is saved"
            );
            warren_policy::compile("").expect("the empty policy compiles")
        }
    };
    Ok(Some(PolicySettings {
        source: PolicySource::Store,
        version: live.version,
        text,
        policy: Arc::new(policy),
    }))
}

/// A change to the policy through the API.
pub(crate) enum Change {
    /// A new text.
    Save(String),
    /// The text of an earlier version, as a new version.
    Rollback(i64),
    /// No policy: every resource open.
    Remove,
}

/// Why a change was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("the policy is managed by the config file ({0}); change it there")]
    ManagedByFile(PolicySource),
    #[error("the policy does not check: {0}")]
    Invalid(PolicyErrors),
    #[error("{} of the policy's tests failed; nothing was saved", .0.len())]
    TestsFailed(Vec<TestFailure>),
    #[error("sites carry tags this policy does not declare: {}", .0.join(", "))]
    UndeclaredTags(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks, tests and saves a change, then serves it (see the module docs).
pub(crate) async fn write(
    serving: &mut Serving,
    shared: &Arc<EdgeShared>,
    actor: &str,
    change: Change,
    base: Option<i64>,
) -> Result<PolicyVersion, WriteError> {
    if let Some(p) = &serving.file().policy {
        return Err(WriteError::ManagedByFile(p.source.clone()));
    }
    let (text, restored_from) = match change {
        Change::Save(text) => (Some(text), None),
        Change::Rollback(v) => (shared.store.policy_version(v).await?.text, Some(v)),
        Change::Remove => (None, None),
    };
    if let Some(text) = &text {
        let policy = warren_policy::compile(text).map_err(WriteError::Invalid)?;
        let failures = warren_policy::run_tests(&policy);
        if !failures.is_empty() {
            return Err(WriteError::TestsFailed(failures));
        }
        let declared = &policy.file().tags;
        let catalog = shared.catalog.load();
        let undeclared: Vec<String> = catalog
            .site_tags()
            .flat_map(|(site, tags)| {
                tags.iter()
                    .filter(|t| !declared.contains_key(*t))
                    .map(move |t| format!("site `{site}` has `{t}`"))
            })
            .collect();
        if !undeclared.is_empty() {
            return Err(WriteError::UndeclaredTags(undeclared));
        }
    }
    let saved = shared
        .store
        .save_policy(
            actor,
            NewPolicy {
                text: text.as_deref(),
                source: ManagedBy::Api,
                base,
                restored_from,
            },
        )
        .await?;
    if let Err(e) = serving.refresh(shared).await {
        tracing::warn!(error = %e, "the policy is saved; this edge applies it at its next sync");
    }
    tracing::info!(
        event = "policy_saved", version = saved.version, actor,
        restored_from = ?saved.restored_from, removed = saved.text.is_none(),
        "policy version {} is live", saved.version
    );
    Ok(saved)
}
