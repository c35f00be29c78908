//! The policy's versions: append-only, the live one the highest. Saving
//! computes the diff against the version it replaces inside the same
//! transaction, so the audit row's diff is against what was really live
//! (two edges saving at once: one wins, the other gets a conflict).

use crate::{audit, bump_config_version, now_ms, ManagedBy, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One version of the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PolicyVersion {
    /// 1, 2, 3... in the order they were saved.
    pub version: i64,
    /// The policy file's text; `None`: no policy (every resource open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// SHA-256 of the text, hex (of the empty string for no policy).
    pub sha256: String,
    /// Saved through the API, or read from the config file's `[policy]`.
    pub source: ManagedBy,
    /// Who saved it (an API key id, `config-file`).
    pub actor: String,
    /// For a rollback: the version whose text it restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<i64>,
    /// When (Unix ms).
    pub created_ms: i64,
}

/// A new version to save.
#[derive(Clone, Copy, Debug)]
pub struct NewPolicy<'a> {
    /// The text; `None` to remove the policy.
    pub text: Option<&'a str>,
    /// Where it comes from.
    pub source: ManagedBy,
    /// Refuse (conflict) unless the live version is this one (`Some(0)`:
    /// unless there is none yet).
    pub base: Option<i64>,
    /// For a rollback: the version restored.
    pub restored_from: Option<i64>,
}

/// SHA-256 of a policy text, hex.
pub fn policy_sha256(text: Option<&str>) -> String {
    hex::encode(Sha256::digest(text.unwrap_or("").as_bytes()))
}

/// A unified diff from `before` to `after` (3 lines of context), headed by
/// the two versions; empty when the texts are the same.
pub fn policy_diff(before: (i64, Option<&str>), after: (i64, Option<&str>)) -> String {
    let (a, b) = (before.1.unwrap_or(""), after.1.unwrap_or(""));
    if a == b && before.1.is_some() == after.1.is_some() {
        return String::new();
    }
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("policy v{}", before.0),
            &format!("policy v{}", after.0),
        )
        .to_string()
}

fn from_row(row: &AnyRow) -> Result<PolicyVersion, StoreError> {
    Ok(PolicyVersion {
        version: row.try_get("version")?,
        text: row.try_get("text")?,
        sha256: row.try_get("sha256")?,
        source: ManagedBy::parse(&row.try_get::<String, _>("source")?)?,
        actor: row.try_get("actor")?,
        restored_from: row.try_get("restored_from")?,
        created_ms: row.try_get("created_ms")?,
    })
}

impl Store {
    /// The live policy version, if one was ever saved.
    pub async fn policy(&self) -> Result<Option<PolicyVersion>, StoreError> {
        let row = sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Version `version`.
    pub async fn policy_version(&self, version: i64) -> Result<PolicyVersion, StoreError> {
        let row = sqlx::query("SELECT * FROM policy_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound {
                what: "policy version",
                id: version.to_string(),
            }),
        }
    }

    /// Up to `limit` versions older than `before` (all when `None`),
    /// newest first, without their text.
    pub async fn policy_history(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<PolicyVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM policy_versions WHERE version < $1 ORDER BY version DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| from_row(row).map(|p| PolicyVersion { text: None, ..p }))
            .collect()
    }

    /// Saves a new version as the live one, with its audit row (action
    /// `policy.update`, `policy.rollback` or `policy.delete`; `before` and
    /// `after` name the versions and their digests, `after.diff` is the
    /// unified diff) and a `config_version` bump, in one transaction.
    pub async fn save_policy(
        &self,
        actor: &str,
        new: NewPolicy<'_>,
    ) -> Result<PolicyVersion, StoreError> {
        let mut tx = self.begin().await?;
        let live = sqlx::query("SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?;
        let live_version = live.as_ref().map_or(0, |p| p.version);
        if let Some(base) = new.base {
            if base != live_version {
                return Err(StoreError::Conflict(format!(
                    "the policy is at version {live_version}, not {base}: it changed since it was read"
                )));
            }
        }
        let version = PolicyVersion {
            version: live_version + 1,
            text: new.text.map(str::to_owned),
            sha256: policy_sha256(new.text),
            source: new.source,
            actor: actor.to_owned(),
            restored_from: new.restored_from,
            created_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO policy_versions (version, text, sha256, source, actor, restored_from, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(version.version)
        .bind(version.text.clone())
        .bind(version.sha256.clone())
        .bind(version.source.as_str())
        .bind(actor.to_owned())
        .bind(version.restored_from)
        .bind(version.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            crate::conflict_or(e, || {
                "the policy changed while it was being saved; read it again".to_owned()
            })
        })?;
        bump_config_version(&mut tx).await?;
        let action = match (new.restored_from, new.text) {
            (_, None) => "policy.delete",
            (Some(_), _) => "policy.rollback",
            (None, _) => "policy.update",
        };
        let before = live.as_ref().map(
            |p| serde_json::json!({ "version": p.version, "sha256": p.sha256, "source": p.source }),
        );
        let diff = policy_diff(
            (live_version, live.as_ref().and_then(|p| p.text.as_deref())),
            (version.version, new.text),
        );
        let after = serde_json::json!({
            "version": version.version,
            "sha256": version.sha256,
            "source": version.source,
            "restored_from": version.restored_from,
            "diff": diff,
        });
        audit(
            &mut tx,
            actor,
            action,
            "policy",
            before.as_ref(),
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(version)
    }
}
