//! The edge's state in SQL: orgs, sites and their secrets, resources and
//! targets, API keys, the policy's versions, users, people's devices, the
//! keys edges share, agents seen, events and the audit log.
//!
//! Only this crate knows SQL. The same migrations (`migrations/`) and the
//! same query text run on SQLite (embedded, the default, a file in
//! `data_dir`, WAL) and PostgreSQL (`database = "postgres://..."`, for several
//! edges), through sqlx's `Any` driver. To stay portable the schema keeps to
//! TEXT and BIGINT: times are Unix milliseconds, flags 0/1, structured
//! settings JSON text, and log ids time-sortable text (no AUTOINCREMENT vs
//! IDENTITY split).
//!
//! Invariants:
//! * Every change made through [`Store`] that an operator could ask "who did
//!   this?" about writes its audit row in the same transaction as the change:
//!   there is no change without its audit row, and no audit row for a change
//!   that rolled back.
//! * Every change to sites, secrets, resources, API keys, users, devices or
//!   the policy bumps `config_version` in the same transaction, so an edge or
//!   agent holding version N knows whether it is current.
//! * Secrets and API keys are stored only as hashes made by the caller
//!   (`$sha256$` digests, or argon2 PHC strings from earlier versions); the
//!   store never sees a plaintext secret.

mod decisions;
mod devices;
mod doors;
mod keys;
mod log;
mod policy;
mod resources;
mod sites;
mod users;

pub use decisions::{DecisionQuery, DecisionRecord};
pub use devices::Device;
pub use doors::{ResourceSecret, SecretKind, ShareLink};
pub use keys::{ApiKeyRecord, Scope};
pub use log::{AgentRecord, AuditRecord, EventRecord};
pub use policy::{policy_diff, policy_sha256, NewPolicy, PolicyVersion};
pub use resources::{ResourceRecord, TargetRecord};
pub use sites::{SecretRecord, SiteRecord};
pub use users::{UserChange, UserRecord};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no, or could not be reached.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed; the database is left at the last good one.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No such object.
    #[error("{what} `{id}` does not exist")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The change clashes with something that exists.
    #[error("{0}")]
    Conflict(String),
    /// The object is declared in the edge's config file and changes only there.
    #[error("{what} `{id}` is managed by the config file; change it there")]
    ManagedByFile {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A stored value that does not parse (a bug or a hand-edited database).
    #[error("corrupt stored value in {0}")]
    Corrupt(String),
    /// The database file could not be created or made private.
    #[error("database file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Who manages an object: the config file (read-only through the API) or
/// the API.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    /// Declared in the edge's config file; reconciled at start and reload.
    File,
    /// Created through the API; lives in the store only.
    Api,
}

impl ManagedBy {
    fn as_str(self) -> &'static str {
        match self {
            ManagedBy::File => "file",
            ManagedBy::Api => "api",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "file" => Ok(ManagedBy::File),
            "api" => Ok(ManagedBy::Api),
            other => Err(StoreError::Corrupt(format!("managed_by = `{other}`"))),
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, in WAL
    /// mode, and runs pending migrations. The file is made readable by this
    /// user only (0600) before SQLite opens it, whatever the directory or
    /// umask; SQLite gives its `-wal` and `-shm` files the database's mode.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        private_file(path)?;
        for suffix in ["-wal", "-shm"] {
            let side = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if side.exists() {
                private_file(&side)?;
            }
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open_url(&url).await
    }

    /// Opens `url` (`sqlite://...` or `postgres://...`) and runs pending
    /// migrations.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10));
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    // Writers wait for each other instead of failing; FULL
                    // makes a commit durable on power loss, not only on a
                    // crash of the process.
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(url).await?;
        if backend == Backend::Sqlite {
            // Persistent in the file: readers never block the writer.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        MIGRATOR.run(&pool).await?;
        tracing::debug!(?backend, "store opened");
        Ok(Store { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The configuration version: bumped by every change to sites, secrets
    /// or resources.
    pub async fn config_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE name = 'config_version'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// SQLite's journal mode (`wal` expected), for tests and diagnostics.
    pub async fn sqlite_journal_mode(&self) -> Result<String, StoreError> {
        let row = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// SQLite's own consistency check (`ok` expected).
    pub async fn sqlite_integrity_check(&self) -> Result<String, StoreError> {
        let row = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<String, _>(0)?)
    }

    /// A write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads, then writes
    /// after another connection committed, fails at once with "database is
    /// locked" (the busy timeout cannot help a stale snapshot).
    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// Creates `path` empty with mode 0600, or takes an existing file down to
/// 0600.
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `after` from now, in Unix ms (saturating: a huge duration is "never").
pub fn deadline_ms(after: std::time::Duration) -> i64 {
    now_ms().saturating_add(after.as_millis().min(i64::MAX as u128) as i64)
}

/// A time-sortable unique id: 14 hex digits of microseconds, strictly
/// increasing within this process (so rows written in one millisecond keep
/// their order and a reader paging with `after` never skips one), then 4
/// random hex digits so two edges sharing PostgreSQL do not collide.
fn sortable_id(at_ms: i64) -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
        .max(at_ms.saturating_mul(1000));
    let mut prev = LAST.load(Ordering::Relaxed);
    let micros = loop {
        let next = now_us.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => prev = seen,
        }
    };
    format!("{:014x}{:04x}", micros, rand::random::<u16>())
}

async fn bump_config_version(tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE meta SET value = value + 1 WHERE name = 'config_version'")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes the audit row of a change, inside the change's transaction.
async fn audit(
    tx: &mut Transaction<'static, Any>,
    actor: &str,
    action: &str,
    object: &str,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    let at = now_ms();
    sqlx::query(
        "INSERT INTO audit_log (id, at_ms, actor, action, object, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(sortable_id(at))
    .bind(at)
    .bind(actor.to_owned())
    .bind(action.to_owned())
    .bind(object.to_owned())
    .bind(before.map(|v| v.to_string()))
    .bind(after.map(|v| v.to_string()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A unique-constraint violation as a [`StoreError::Conflict`] with `message`.
fn conflict_or(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Db(e),
    }
}

fn opt_json(row: &AnyRow, column: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}
