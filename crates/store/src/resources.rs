//! Resources and their targets.
//!
//! The store keeps a resource's settings as plain columns and its health
//! check as JSON; it does not validate them (the edge's config validator
//! does, before anything is written). What the store does guarantee is
//! uniqueness of what the edge routes on (http host + path, tls SNI name,
//! tcp/udp listen address), by unique indexes, so two edges sharing one
//! PostgreSQL cannot both win a race for the same host.

use crate::{audit, bump_config_version, conflict_or, now_ms, opt_json};
use crate::{ManagedBy, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// Where a resource sends traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetRecord {
    /// The site that reaches it.
    pub site: String,
    /// `host:port` as the site resolves it.
    pub address: String,
}

/// A resource as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceRecord {
    /// Unique name.
    pub name: String,
    /// `http`, `tls`, `tcp` or `udp`.
    pub kind: String,
    /// http/tls: Host or SNI name.
    pub host: Option<String>,
    /// http: path prefix.
    pub path: Option<String>,
    /// tcp/udp: the edge's listen address.
    pub listen: Option<String>,
    /// `v1`, `v2`, or none.
    pub proxy_protocol: Option<String>,
    /// `least_active`, `round_robin` or `sticky`.
    pub balance: String,
    /// 503 instead of trying unhealthy targets.
    pub fail_closed: bool,
    /// The health check's settings, as the config file spells them.
    #[schema(value_type = Option<Object>)]
    pub health: Option<serde_json::Value>,
    /// Targets, in order.
    pub targets: Vec<TargetRecord>,
    /// API resources: the resource as submitted, in the config file's shape
    /// (what the edge validates and serves). None for file-managed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<serde_json::Value>,
    /// File or API.
    pub managed_by: ManagedBy,
    /// Bumped on every change of this resource.
    pub version: i64,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Last changed (Unix ms).
    pub updated_ms: i64,
}

fn from_row(row: &AnyRow) -> Result<ResourceRecord, StoreError> {
    Ok(ResourceRecord {
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        host: row.try_get("host")?,
        path: row.try_get("path")?,
        listen: row.try_get("listen")?,
        proxy_protocol: row.try_get("proxy_protocol")?,
        balance: row.try_get("balance")?,
        fail_closed: row.try_get::<i64, _>("fail_closed")? != 0,
        health: opt_json(row, "health")?,
        targets: Vec::new(),
        spec: opt_json(row, "spec")?,
        managed_by: ManagedBy::parse(&row.try_get::<String, _>("managed_by")?)?,
        version: row.try_get("version")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn target_from_row(row: &AnyRow) -> Result<TargetRecord, StoreError> {
    Ok(TargetRecord {
        site: row.try_get("site_id")?,
        address: row.try_get("address")?,
    })
}

fn describe_clash(r: &ResourceRecord) -> String {
    match (r.kind.as_str(), &r.host, &r.listen) {
        ("http", Some(h), _) => format!(
            "another http resource already serves host `{h}` path `{}`",
            r.path.as_deref().unwrap_or("/")
        ),
        ("tls", Some(h), _) => format!("another tls resource already serves SNI name `{h}`"),
        (kind, _, Some(l)) => format!("another {kind} resource already listens on `{l}`"),
        _ => format!("resource `{}` already exists", r.name),
    }
}

impl Store {
    /// Every resource with its targets, by name.
    pub async fn list_resources(&self) -> Result<Vec<ResourceRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM resources ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<ResourceRecord> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
        let targets = sqlx::query("SELECT * FROM targets ORDER BY resource, position")
            .fetch_all(&self.pool)
            .await?;
        for t in &targets {
            let resource: String = t.try_get("resource")?;
            if let Some(r) = out.iter_mut().find(|r| r.name == resource) {
                r.targets.push(target_from_row(t)?);
            }
        }
        Ok(out)
    }

    /// Resource `name` with its targets.
    pub async fn resource(&self, name: &str) -> Result<ResourceRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM resources WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "resource",
                id: name.to_owned(),
            })?;
        let mut r = from_row(&row)?;
        let targets = sqlx::query("SELECT * FROM targets WHERE resource = $1 ORDER BY position")
            .bind(name.to_owned())
            .fetch_all(&self.pool)
            .await?;
        r.targets = targets
            .iter()
            .map(target_from_row)
            .collect::<Result<_, _>>()?;
        Ok(r)
    }

    /// Creates a resource (its `version`, times and `managed_by` are set
    /// here). A clash on name, route or listen address is a
    /// [`StoreError::Conflict`], and nothing is written.
    pub async fn create_resource(
        &self,
        actor: &str,
        new: &ResourceRecord,
        managed_by: ManagedBy,
    ) -> Result<ResourceRecord, StoreError> {
        let now = now_ms();
        let mut r = new.clone();
        r.managed_by = managed_by;
        r.version = 1;
        r.created_ms = now;
        r.updated_ms = now;
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT name FROM resources WHERE name = $1")
            .bind(r.name.clone())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "resource `{}` already exists",
                r.name
            )));
        }
        insert_row(&mut tx, &r).await?;
        insert_targets(&mut tx, &r).await?;
        bump_config_version(&mut tx).await?;
        let after = serde_json::to_value(&r).unwrap_or_default();
        audit(
            &mut tx,
            actor,
            "resource.create",
            &format!("resource/{}", r.name),
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Replaces resource `new.name` whole. `caller` is who asks: the API may
    /// not change what the config file manages.
    pub async fn replace_resource(
        &self,
        actor: &str,
        new: &ResourceRecord,
        caller: ManagedBy,
    ) -> Result<ResourceRecord, StoreError> {
        let before = self.resource(&new.name).await?;
        if before.managed_by == ManagedBy::File && caller == ManagedBy::Api {
            return Err(StoreError::ManagedByFile {
                what: "resource",
                id: new.name.clone(),
            });
        }
        let mut r = new.clone();
        r.managed_by = before.managed_by;
        r.version = before.version + 1;
        r.created_ms = before.created_ms;
        r.updated_ms = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM targets WHERE resource = $1")
            .bind(r.name.clone())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE name = $1")
            .bind(r.name.clone())
            .execute(&mut *tx)
            .await?;
        insert_row(&mut tx, &r).await?;
        insert_targets(&mut tx, &r).await?;
        bump_config_version(&mut tx).await?;
        let (b, a) = (
            serde_json::to_value(&before).unwrap_or_default(),
            serde_json::to_value(&r).unwrap_or_default(),
        );
        audit(
            &mut tx,
            actor,
            "resource.update",
            &format!("resource/{}", r.name),
            Some(&b),
            Some(&a),
        )
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Deletes resource `name`; `caller` as for [`Store::replace_resource`].
    pub async fn delete_resource(
        &self,
        actor: &str,
        name: &str,
        caller: ManagedBy,
    ) -> Result<(), StoreError> {
        let before = self.resource(name).await?;
        if before.managed_by == ManagedBy::File && caller == ManagedBy::Api {
            return Err(StoreError::ManagedByFile {
                what: "resource",
                id: name.to_owned(),
            });
        }
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM targets WHERE resource = $1")
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resources WHERE name = $1")
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?;
        bump_config_version(&mut tx).await?;
        let b = serde_json::to_value(&before).unwrap_or_default();
        audit(
            &mut tx,
            actor,
            "resource.delete",
            &format!("resource/{name}"),
            Some(&b),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_row(
    tx: &mut Transaction<'static, Any>,
    r: &ResourceRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO resources (name, kind, host, path, listen, proxy_protocol, balance, \
         fail_closed, health, managed_by, version, created_ms, updated_ms, spec) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(r.name.clone())
    .bind(r.kind.clone())
    .bind(r.host.clone())
    .bind(r.path.clone())
    .bind(r.listen.clone())
    .bind(r.proxy_protocol.clone())
    .bind(r.balance.clone())
    .bind(i64::from(r.fail_closed))
    .bind(r.health.as_ref().map(|h| h.to_string()))
    .bind(r.managed_by.as_str())
    .bind(r.version)
    .bind(r.created_ms)
    .bind(r.updated_ms)
    .bind(r.spec.as_ref().map(|s| s.to_string()))
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_or(e, || describe_clash(r)))?;
    Ok(())
}

async fn insert_targets(
    tx: &mut Transaction<'static, Any>,
    r: &ResourceRecord,
) -> Result<(), StoreError> {
    for (i, t) in r.targets.iter().enumerate() {
        let site = sqlx::query("SELECT id FROM sites WHERE id = $1")
            .bind(t.site.clone())
            .fetch_optional(&mut **tx)
            .await?;
        if site.is_none() {
            return Err(StoreError::NotFound {
                what: "site",
                id: t.site.clone(),
            });
        }
        sqlx::query(
            "INSERT INTO targets (resource, position, site_id, address) VALUES ($1, $2, $3, $4)",
        )
        .bind(r.name.clone())
        .bind(i as i64)
        .bind(t.site.clone())
        .bind(t.address.clone())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
