//! API keys: a public id and an argon2 hash of the secret part, a scope and
//! an optional expiry.

use crate::{audit, now_ms, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// GET only.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(StoreError::Corrupt(format!("scope = `{other}`"))),
        }
    }
}

/// An API key as stored (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyRecord {
    /// Public id, the part of the token before the dot.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// argon2id PHC string of the secret part.
    #[serde(skip)]
    pub key_hash: String,
    /// What it may do.
    pub scope: Scope,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Refused from then on, if set.
    pub expires_ms: Option<i64>,
    /// Last accepted use.
    pub last_used_ms: Option<i64>,
}

fn from_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        scope: Scope::parse(&row.try_get::<String, _>("scope")?)?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
    })
}

impl Store {
    /// Stores a new key.
    pub async fn create_api_key(
        &self,
        actor: &str,
        id: &str,
        name: &str,
        key_hash: &str,
        scope: Scope,
        expires_ms: Option<i64>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let key = ApiKeyRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            key_hash: key_hash.to_owned(),
            scope,
            created_ms: now_ms(),
            expires_ms,
            last_used_ms: None,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, scope, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.clone())
        .bind(key.name.clone())
        .bind(key.key_hash.clone())
        .bind(scope.as_str())
        .bind(key.created_ms)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::conflict_or(e, || format!("API key `{id}` already exists")))?;
        crate::bump_config_version(&mut tx).await?;
        let after = serde_json::to_value(&key).unwrap_or_default();
        audit(
            &mut tx,
            actor,
            "api_key.create",
            &format!("api_key/{id}"),
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Key `id`, if it exists.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every key, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_ms, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether any key exists (first-run detection).
    pub async fn has_api_keys(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(n > 0)
    }

    /// Replaces key `id`'s stored hash with `new_hash` if it is still
    /// `old_hash` (an older form re-stored after a successful check; a key
    /// changed meanwhile is left alone). Not a change to what edges serve:
    /// no audit row, no config_version.
    pub async fn rehash_api_key(
        &self,
        id: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET key_hash = $1 WHERE id = $2 AND key_hash = $3")
            .bind(new_hash.to_owned())
            .bind(id.to_owned())
            .bind(old_hash.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records an accepted use of key `id`.
    pub async fn touch_api_key(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes key `id`.
    pub async fn delete_api_key(&self, actor: &str, id: &str) -> Result<(), StoreError> {
        let before = self
            .api_key(id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "API key",
                id: id.to_owned(),
            })?;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        crate::bump_config_version(&mut tx).await?;
        let b = serde_json::to_value(&before).unwrap_or_default();
        audit(
            &mut tx,
            actor,
            "api_key.delete",
            &format!("api_key/{id}"),
            Some(&b),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
