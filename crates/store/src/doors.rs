//! A resource's own doors: its password or PIN (argon2id hashes) and its
//! share links (SHA-256 of the token). Every change is audited, with the
//! hashes left out of the audit row.

use crate::{audit, bump_config_version, now_ms, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Which secret of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretKind {
    /// A password, typed on the resource's own page.
    Password,
    /// A PIN (digits).
    Pin,
}

impl SecretKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Password => "password",
            SecretKind::Pin => "pin",
        }
    }
}

/// A resource's password or PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSecret {
    /// The resource's name.
    pub resource: String,
    /// Password or PIN.
    pub kind: SecretKind,
    /// argon2id PHC string.
    pub hash: String,
    /// Set (Unix ms): a pass issued before this is dead.
    pub updated_ms: i64,
}

/// A share link (its token is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ShareLink {
    /// Random id (12 hex digits).
    pub id: String,
    /// The resource it opens.
    pub resource: String,
    /// SHA-256 of the token (hex).
    #[serde(skip)]
    pub token_hash: String,
    /// What it is for.
    pub note: String,
    /// Who made it.
    pub created_by: String,
    /// Made (Unix ms).
    pub created_ms: i64,
    /// Dead from then on (Unix ms); never, when `None`.
    pub expires_ms: Option<i64>,
    /// Revoked (Unix ms).
    pub revoked_ms: Option<i64>,
}

impl ShareLink {
    /// Whether it opens its resource at `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

fn link_from_row(row: &AnyRow) -> Result<ShareLink, StoreError> {
    Ok(ShareLink {
        id: row.try_get("id")?,
        resource: row.try_get("resource")?,
        token_hash: row.try_get("token_hash")?,
        note: row.try_get("note")?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

impl Store {
    /// Sets (`Some(hash)`) or removes resource `resource`'s password or PIN.
    pub async fn set_resource_secret(
        &self,
        actor: &str,
        resource: &str,
        kind: SecretKind,
        hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM resource_secrets WHERE resource = $1 AND kind = $2")
            .bind(resource.to_owned())
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(hash) = hash {
            sqlx::query(
                "INSERT INTO resource_secrets (resource, kind, hash, updated_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(resource.to_owned())
            .bind(kind.as_str())
            .bind(hash.to_owned())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        bump_config_version(&mut tx).await?;
        let action = match hash {
            Some(_) => format!("resource.set_{}", kind.as_str()),
            None => format!("resource.remove_{}", kind.as_str()),
        };
        audit(
            &mut tx,
            actor,
            &action,
            &format!("resource/{resource}"),
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every resource's password and PIN.
    pub async fn resource_secrets(&self) -> Result<Vec<ResourceSecret>, StoreError> {
        let rows = sqlx::query("SELECT * FROM resource_secrets ORDER BY resource, kind")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let kind = match row.try_get::<String, _>("kind")?.as_str() {
                    "password" => SecretKind::Password,
                    "pin" => SecretKind::Pin,
                    other => {
                        return Err(StoreError::Corrupt(format!(
                            "resource_secrets.kind = `{other}`"
                        )))
                    }
                };
                Ok(ResourceSecret {
                    resource: row.try_get("resource")?,
                    kind,
                    hash: row.try_get("hash")?,
                    updated_ms: row.try_get("updated_ms")?,
                })
            })
            .collect()
    }

    /// Stores a new share link.
    pub async fn create_share_link(&self, actor: &str, link: &ShareLink) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO share_links (id, resource, token_hash, note, created_by, created_ms, \
             expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(link.id.clone())
        .bind(link.resource.clone())
        .bind(link.token_hash.clone())
        .bind(link.note.clone())
        .bind(link.created_by.clone())
        .bind(link.created_ms)
        .bind(link.expires_ms)
        .execute(&mut *tx)
        .await?;
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "share_link.create",
            &format!("share_link/{}", link.id),
            None,
            Some(&serde_json::to_value(link).unwrap_or_default()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every share link, newest first.
    pub async fn share_links(&self) -> Result<Vec<ShareLink>, StoreError> {
        let rows = sqlx::query("SELECT * FROM share_links ORDER BY created_ms DESC, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    /// Revokes share link `id` (at once, on every edge at its next sync).
    pub async fn revoke_share_link(&self, actor: &str, id: &str) -> Result<ShareLink, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM share_links WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                what: "share link",
                id: id.to_owned(),
            });
        };
        let mut link = link_from_row(&row)?;
        if link.revoked_ms.is_none() {
            let now = now_ms();
            sqlx::query("UPDATE share_links SET revoked_ms = $1 WHERE id = $2")
                .bind(now)
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?;
            link.revoked_ms = Some(now);
            bump_config_version(&mut tx).await?;
            audit(
                &mut tx,
                actor,
                "share_link.revoke",
                &format!("share_link/{id}"),
                None,
                Some(&serde_json::to_value(&link).unwrap_or_default()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(link)
    }
}
