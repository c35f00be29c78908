//! What happened: agents seen, events (connects, health changes...) and the
//! audit log of admin changes.

use crate::{now_ms, opt_json, sortable_id, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// An agent the edge has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AgentRecord {
    /// Per-process id the agent reports.
    pub instance: String,
    /// Its site.
    pub site: String,
    /// Software version.
    pub version: String,
    /// `os/arch`.
    pub platform: String,
    /// Where it connected from, last time.
    pub address: String,
    /// First connect (Unix ms).
    pub first_seen_ms: i64,
    /// Latest connect or disconnect (Unix ms).
    pub last_seen_ms: i64,
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    /// Time-sortable id.
    pub id: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// e.g. `agent_connected`.
    pub kind: String,
    /// e.g. `site/home`.
    pub subject: String,
    /// Details.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// An admin change.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Time-sortable id.
    pub id: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Who (an API key id, `config-file`, `warren up`...).
    pub actor: String,
    /// e.g. `resource.update`.
    pub action: String,
    /// e.g. `resource/blog`.
    pub object: String,
    /// The object before the change.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The object after the change.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl Store {
    /// Records that `instance` of `site` connected (or is still there).
    pub async fn agent_seen(
        &self,
        instance: &str,
        site: &str,
        version: &str,
        platform: &str,
        address: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (instance, site_id, version, platform, address, first_seen_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (instance) DO UPDATE SET site_id = $2, version = $3, platform = $4, \
             address = $5, last_seen_ms = $6",
        )
        .bind(instance.to_owned())
        .bind(site.to_owned())
        .bind(version.to_owned())
        .bind(platform.to_owned())
        .bind(address.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Agents seen, latest first.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY last_seen_ms DESC, instance")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r: &AnyRow| {
                Ok(AgentRecord {
                    instance: r.try_get("instance")?,
                    site: r.try_get("site_id")?,
                    version: r.try_get("version")?,
                    platform: r.try_get("platform")?,
                    address: r.try_get("address")?,
                    first_seen_ms: r.try_get("first_seen_ms")?,
                    last_seen_ms: r.try_get("last_seen_ms")?,
                })
            })
            .collect()
    }

    /// Appends an event.
    pub async fn record_event(
        &self,
        kind: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<EventRecord, StoreError> {
        let at = now_ms();
        let event = EventRecord {
            id: sortable_id(at),
            at_ms: at,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            detail: detail.clone(),
        };
        sqlx::query(
            "INSERT INTO events (id, at_ms, kind, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(event.id.clone())
        .bind(at)
        .bind(event.kind.clone())
        .bind(event.subject.clone())
        .bind(detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(event)
    }

    /// Events after id `after` (all if `None`), oldest first, at most `limit`.
    pub async fn events(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.page(
            "SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            limit,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(EventRecord {
                id: r.try_get("id")?,
                at_ms: r.try_get("at_ms")?,
                kind: r.try_get("kind")?,
                subject: r.try_get("subject")?,
                detail: opt_json(r, "detail")?.unwrap_or_default(),
            })
        })
        .collect()
    }

    /// Audit rows after id `after` (all if `None`), oldest first, at most `limit`.
    pub async fn audit_log(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.page(
            "SELECT * FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
            after,
            limit,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AuditRecord {
                id: r.try_get("id")?,
                at_ms: r.try_get("at_ms")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                object: r.try_get("object")?,
                before: opt_json(r, "before_json")?,
                after: opt_json(r, "after_json")?,
            })
        })
        .collect()
    }

    /// The rows of a log `query` (binding `after`, then `limit`): ids are
    /// time-sortable, so `id > after` is the next page.
    async fn page(
        &self,
        query: &'static str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AnyRow>, StoreError> {
        Ok(sqlx::query(query)
            .bind(after.unwrap_or("").to_owned())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
