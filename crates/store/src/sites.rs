//! Sites and their secrets, with rotation and a grace period.

use crate::{audit, bump_config_version, conflict_or, now_ms, sortable_id};
use crate::{ManagedBy, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::time::Duration;

/// A site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SiteRecord {
    /// Its id, what agents present (`--id`).
    pub id: String,
    /// A display name.
    pub name: String,
    /// File or API.
    pub managed_by: ManagedBy,
    /// The `tag:NAME`s the policy may name it by.
    pub tags: Vec<String>,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Last changed (Unix ms).
    pub updated_ms: i64,
}

/// One of a site's secrets, as an argon2 hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SecretRecord {
    /// Its id.
    pub id: String,
    /// argon2id PHC string.
    #[serde(skip)]
    pub secret_hash: String,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// When a rotation replaced it; `None` for the current secret.
    pub retired_ms: Option<i64>,
    /// Until when a retired secret is still accepted.
    pub grace_until_ms: Option<i64>,
}

impl SecretRecord {
    /// Whether an agent may still authenticate with it at `now_ms`.
    pub fn accepted_at(&self, now_ms: i64) -> bool {
        match (self.retired_ms, self.grace_until_ms) {
            (None, _) => true,
            (Some(_), Some(until)) => now_ms < until,
            (Some(_), None) => false,
        }
    }
}

fn site_from_row(row: &AnyRow) -> Result<SiteRecord, StoreError> {
    Ok(SiteRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        managed_by: ManagedBy::parse(&row.try_get::<String, _>("managed_by")?)?,
        tags: serde_json::from_str(&row.try_get::<String, _>("tags")?)
            .map_err(|e| StoreError::Corrupt(format!("sites.tags: {e}")))?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn secret_from_row(row: &AnyRow) -> Result<SecretRecord, StoreError> {
    Ok(SecretRecord {
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        created_ms: row.try_get("created_ms")?,
        retired_ms: row.try_get("retired_ms")?,
        grace_until_ms: row.try_get("grace_until_ms")?,
    })
}

fn site_json(s: &SiteRecord) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

impl Store {
    /// Creates site `id` with its first secret (`secret_hash`) and `tags`.
    pub async fn create_site(
        &self,
        actor: &str,
        id: &str,
        name: &str,
        managed_by: ManagedBy,
        secret_hash: &str,
        tags: &[String],
    ) -> Result<SiteRecord, StoreError> {
        let now = now_ms();
        let site = SiteRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            managed_by,
            tags: tags.to_vec(),
            created_ms: now,
            updated_ms: now,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sites (id, org_id, name, managed_by, created_ms, updated_ms, tags) \
             VALUES ($1, 'default', $2, $3, $4, $4, $5)",
        )
        .bind(id.to_owned())
        .bind(name.to_owned())
        .bind(managed_by.as_str())
        .bind(now)
        .bind(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("site `{id}` already exists")))?;
        insert_secret(&mut tx, id, secret_hash, now).await?;
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "site.create",
            &format!("site/{id}"),
            None,
            Some(&site_json(&site)),
        )
        .await?;
        tx.commit().await?;
        Ok(site)
    }

    /// Every site, by id.
    pub async fn list_sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM sites ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(site_from_row).collect()
    }

    /// Site `id`.
    pub async fn site(&self, id: &str) -> Result<SiteRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM sites WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "site",
                id: id.to_owned(),
            })?;
        site_from_row(&row)
    }

    /// Deletes site `id` with its secrets. Refused while a resource targets it.
    pub async fn delete_site(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let before = self.site(id).await?;
        let mut tx = self.begin().await?;
        let used: i64 = sqlx::query("SELECT COUNT(*) FROM targets WHERE site_id = $1")
            .bind(id.to_owned())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "site `{id}` is the target of {used} resource target(s); delete or move them first"
            )));
        }
        sqlx::query("DELETE FROM site_secrets WHERE site_id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sites WHERE id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "site.delete",
            &format!("site/{id}"),
            Some(&site_json(&before)),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every secret of site `id` that has not expired, newest first.
    pub async fn site_secrets(&self, id: &str) -> Result<Vec<SecretRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM site_secrets WHERE site_id = $1 ORDER BY created_ms DESC, id DESC",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        let now = now_ms();
        Ok(rows
            .iter()
            .map(secret_from_row)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|s| s.accepted_at(now))
            .collect())
    }

    /// Replaces secret `secret_id`'s stored hash with `new_hash` if it is
    /// still `old_hash` (an older form re-stored after a good check). Bumps
    /// `config_version` so every edge rebuilds its catalog; no audit row
    /// (the secret is the same).
    pub async fn rehash_site_secret(
        &self,
        secret_id: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE site_secrets SET secret_hash = $1 WHERE id = $2 AND secret_hash = $3",
        )
        .bind(new_hash.to_owned())
        .bind(secret_id.to_owned())
        .bind(old_hash.to_owned())
        .execute(&mut *tx)
        .await?;
        let changed = done.rows_affected() == 1;
        if changed {
            bump_config_version(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Makes `new_hash` site `id`'s current secret. The previous one keeps
    /// working for `grace` (zero: refused from now on), and so does no older
    /// one: a secret rotated out earlier with a longer grace has it cut to
    /// this one's end. Operators rotate when a secret may have leaked; the
    /// grace they give last is the most any old secret keeps.
    pub async fn rotate_site_secret(
        &self,
        actor: &str,
        id: &str,
        new_hash: &str,
        grace: Duration,
    ) -> Result<SecretRecord, StoreError> {
        self.site(id).await?;
        let now = now_ms();
        let until = crate::deadline_ms(grace);
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE site_secrets SET grace_until_ms = $1 \
             WHERE site_id = $2 AND retired_ms IS NOT NULL \
             AND (grace_until_ms IS NULL OR grace_until_ms > $1)",
        )
        .bind(until)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE site_secrets SET retired_ms = $1, grace_until_ms = $2 \
             WHERE site_id = $3 AND retired_ms IS NULL",
        )
        .bind(now)
        .bind(until)
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        let secret = insert_secret(&mut tx, id, new_hash, now).await?;
        sqlx::query("UPDATE sites SET updated_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        bump_config_version(&mut tx).await?;
        let detail = serde_json::json!({ "grace_ms": grace.as_millis() as u64 });
        audit(
            &mut tx,
            actor,
            "site.rotate",
            &format!("site/{id}"),
            None,
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        Ok(secret)
    }
}

async fn insert_secret(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    site: &str,
    hash: &str,
    now: i64,
) -> Result<SecretRecord, StoreError> {
    let secret = SecretRecord {
        id: sortable_id(now),
        secret_hash: hash.to_owned(),
        created_ms: now,
        retired_ms: None,
        grace_until_ms: None,
    };
    sqlx::query(
        "INSERT INTO site_secrets (id, site_id, secret_hash, created_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(secret.id.clone())
    .bind(site.to_owned())
    .bind(hash.to_owned())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(secret)
}
