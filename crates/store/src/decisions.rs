//! The access decisions' audit trail: written in batches by the edge's
//! decision log (one transaction a second at most), read back by time,
//! pruned by age.

use crate::{Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// One access decision (or several identical ones within a second).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    /// Random id.
    pub id: String,
    /// When (Unix ms; the first of `count`).
    pub at_ms: i64,
    /// The resource asked for.
    pub resource: String,
    /// Who: an email, `key:ID`, a door (`pin`, `password`, `link:ID`) or
    /// `anonymous`.
    pub principal: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// What decided: `grant[N]`, `rules[N]`, `public`, `door`, `no_grant`.
    pub reason: String,
    /// How the visitor identified themselves: `session`, `basic`, `key`,
    /// `pin`, `password`, `link` or `none`.
    pub method: String,
    /// The client's address.
    pub client: String,
    /// How many identical decisions this row stands for.
    pub count: i64,
}

fn from_row(row: &AnyRow) -> Result<DecisionRecord, StoreError> {
    Ok(DecisionRecord {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        resource: row.try_get("resource")?,
        principal: row.try_get("principal")?,
        decision: row.try_get("decision")?,
        reason: row.try_get("reason")?,
        method: row.try_get("method")?,
        client: row.try_get("client")?,
        count: row.try_get("count")?,
    })
}

/// Which decisions to read.
#[derive(Clone, Debug, Default)]
pub struct DecisionQuery {
    /// From this time (Unix ms, inclusive).
    pub since_ms: i64,
    /// Only this resource.
    pub resource: Option<String>,
    /// Only this principal.
    pub principal: Option<String>,
    /// Only `allow` or `deny`.
    pub decision: Option<String>,
    /// At most this many (oldest first).
    pub limit: i64,
}

impl Store {
    /// Writes a batch of decisions in one transaction.
    pub async fn record_decisions(&self, batch: &[DecisionRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for d in batch {
            sqlx::query(
                "INSERT INTO access_decisions (id, at_ms, resource, principal, decision, \
                 reason, method, client, count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(d.id.clone())
            .bind(d.at_ms)
            .bind(d.resource.clone())
            .bind(d.principal.clone())
            .bind(d.decision.clone())
            .bind(d.reason.clone())
            .bind(d.method.clone())
            .bind(d.client.clone())
            .bind(d.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Decisions matching `q`, oldest first.
    pub async fn decisions(&self, q: &DecisionQuery) -> Result<Vec<DecisionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM access_decisions WHERE at_ms >= $1 \
             AND ($2 = '' OR resource = $2) AND ($3 = '' OR principal = $3) \
             AND ($4 = '' OR decision = $4) ORDER BY at_ms, id LIMIT $5",
        )
        .bind(q.since_ms)
        .bind(q.resource.clone().unwrap_or_default())
        .bind(q.principal.clone().unwrap_or_default())
        .bind(q.decision.clone().unwrap_or_default())
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes decisions older than `before_ms`; how many went.
    pub async fn prune_decisions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM access_decisions WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
