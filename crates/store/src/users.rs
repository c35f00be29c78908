//! People who sign in: email, an argon2id password hash made by the caller,
//! whether they are disabled, and the time before which their sessions are
//! dead. And the keys edges share to sign sessions.

use crate::{audit, bump_config_version, conflict_or, now_ms, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A user as stored (no password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserRecord {
    /// Random id (12 hex digits): what sessions name.
    pub id: String,
    /// Lower-case email: what the policy names.
    pub email: String,
    /// A display name.
    pub name: String,
    /// argon2id PHC string; `None`: no local password.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Whether a local password is set.
    pub has_password: bool,
    /// The TOTP secret (base32); `None`: no second factor enrolled.
    #[serde(skip)]
    pub totp_secret: Option<String>,
    /// Whether a second factor is enrolled.
    pub has_totp: bool,
    /// SHA-256 digests (hex) of the unused recovery codes.
    #[serde(skip)]
    pub recovery_hashes: Vec<String>,
    /// The policy groups (`group:NAME`) their last single sign-on gave
    /// (the provider's claims, mapped); empty for local sign-in.
    pub groups: Vec<String>,
    /// A disabled user cannot sign in, and their sessions are dead.
    pub disabled: bool,
    /// Sessions issued before this (Unix ms) are dead.
    pub sessions_after_ms: i64,
    /// When they last passed a second factor (Unix ms): grants with
    /// `within` count from here.
    pub second_factor_ms: Option<i64>,
    /// Created (Unix ms).
    pub created_ms: i64,
    /// Last changed (Unix ms).
    pub updated_ms: i64,
}

fn from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let password_hash: Option<String> = row.try_get("password_hash")?;
    let totp_secret: Option<String> = row.try_get("totp_secret")?;
    Ok(UserRecord {
        has_totp: totp_secret.is_some(),
        totp_secret,
        recovery_hashes: serde_json::from_str(&row.try_get::<String, _>("recovery_hashes")?)
            .map_err(|e| StoreError::Corrupt(format!("users.recovery_hashes: {e}")))?,
        groups: serde_json::from_str(&row.try_get::<String, _>("groups")?)
            .map_err(|e| StoreError::Corrupt(format!("users.groups: {e}")))?,
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        has_password: password_hash.is_some(),
        password_hash,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        sessions_after_ms: row.try_get("sessions_after_ms")?,
        second_factor_ms: row.try_get("second_factor_ms")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn user_json(u: &UserRecord) -> serde_json::Value {
    serde_json::to_value(u).unwrap_or_default()
}

/// A change to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange<'a> {
    /// Disable (`true`) or enable; disabling also ends every session.
    Disabled(bool),
    /// End every session issued until now.
    EndSessions,
    /// A new password hash (and every session ended).
    Password(&'a str),
    /// A second factor enrolled: its secret and the digests of its
    /// recovery codes.
    Totp {
        /// Base32.
        secret: &'a str,
        /// SHA-256 hex digests.
        recovery_hashes: &'a [String],
    },
    /// The second factor removed (the user enrols again at next sign-in).
    ResetTotp,
    /// One recovery code used up (its digest).
    UseRecovery(&'a str),
    /// The groups a single sign-on gave (replacing the last ones).
    Groups(&'a [String]),
}

impl Store {
    /// Records that user `id` passed a second factor at `at_ms`. Not an
    /// audited change (a sign-in is in the log already); it bumps
    /// `config_version`, so every edge's copy of the user moves with it and
    /// re-asks the policy about the user's flows.
    pub async fn record_second_factor(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET second_factor_ms = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        bump_config_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a user (email lower-cased by the caller).
    pub async fn create_user(
        &self,
        actor: &str,
        id: &str,
        email: &str,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<UserRecord, StoreError> {
        let now = now_ms();
        let user = UserRecord {
            id: id.to_owned(),
            email: email.to_owned(),
            name: name.to_owned(),
            password_hash: password_hash.map(str::to_owned),
            has_password: password_hash.is_some(),
            totp_secret: None,
            has_totp: false,
            recovery_hashes: Vec::new(),
            groups: Vec::new(),
            disabled: false,
            sessions_after_ms: 0,
            second_factor_ms: None,
            created_ms: now,
            updated_ms: now,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id.to_owned())
        .bind(email.to_owned())
        .bind(name.to_owned())
        .bind(password_hash.map(str::to_owned))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("a user with email `{email}` already exists")))?;
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "user.create",
            &format!("user/{id}"),
            None,
            Some(&user_json(&user)),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Every user, by email.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY email")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// User `id_or_email` (an id, or an email in any case).
    pub async fn user(&self, id_or_email: &str) -> Result<UserRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1 OR email = $2")
            .bind(id_or_email.to_owned())
            .bind(id_or_email.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound {
                what: "user",
                id: id_or_email.to_owned(),
            }),
        }
    }

    /// Applies `change` to user `id`, with its audit row.
    pub async fn change_user(
        &self,
        actor: &str,
        id: &str,
        change: UserChange<'_>,
    ) -> Result<UserRecord, StoreError> {
        // Read inside the write transaction (locked), so two uses of one
        // recovery code cannot both succeed.
        let mut tx = self.begin().await?;
        let select = match self.backend {
            crate::Backend::Sqlite => "SELECT * FROM users WHERE id = $1 OR email = $2",
            crate::Backend::Postgres => {
                "SELECT * FROM users WHERE id = $1 OR email = $2 FOR UPDATE"
            }
        };
        let row = sqlx::query(select)
            .bind(id.to_owned())
            .bind(id.to_ascii_lowercase())
            .fetch_optional(&mut *tx)
            .await?;
        let before = match row {
            Some(row) => from_row(&row)?,
            None => {
                return Err(StoreError::NotFound {
                    what: "user",
                    id: id.to_owned(),
                })
            }
        };
        let now = now_ms();
        let mut after = UserRecord {
            updated_ms: now,
            ..before.clone()
        };
        let action = match change {
            UserChange::Disabled(d) => {
                after.disabled = d;
                if d {
                    after.sessions_after_ms = now;
                }
                if d {
                    "user.disable"
                } else {
                    "user.enable"
                }
            }
            UserChange::EndSessions => {
                after.sessions_after_ms = now;
                "user.end_sessions"
            }
            UserChange::Password(hash) => {
                after.password_hash = Some(hash.to_owned());
                after.has_password = true;
                after.sessions_after_ms = now;
                "user.set_password"
            }
            UserChange::Totp {
                secret,
                recovery_hashes,
            } => {
                after.totp_secret = Some(secret.to_owned());
                after.has_totp = true;
                after.recovery_hashes = recovery_hashes.to_vec();
                "user.enrol_totp"
            }
            UserChange::ResetTotp => {
                after.totp_secret = None;
                after.has_totp = false;
                after.recovery_hashes = Vec::new();
                after.sessions_after_ms = now;
                "user.reset_2fa"
            }
            UserChange::UseRecovery(digest) => {
                let before_len = after.recovery_hashes.len();
                after.recovery_hashes.retain(|h| h != digest);
                if after.recovery_hashes.len() == before_len {
                    return Err(StoreError::NotFound {
                        what: "recovery code",
                        id: "(given)".into(),
                    });
                }
                "user.use_recovery_code"
            }
            UserChange::Groups(groups) => {
                if after.groups == groups {
                    // Nothing changes: no write, no audit row.
                    return Ok(before);
                }
                after.groups = groups.to_vec();
                "user.sso_groups"
            }
        };
        sqlx::query(
            "UPDATE users SET disabled = $1, sessions_after_ms = $2, password_hash = $3, \
             updated_ms = $4, totp_secret = $5, recovery_hashes = $6, groups = $7 WHERE id = $8",
        )
        .bind(i64::from(after.disabled))
        .bind(after.sessions_after_ms)
        .bind(after.password_hash.clone())
        .bind(now)
        .bind(after.totp_secret.clone())
        .bind(serde_json::to_string(&after.recovery_hashes).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&after.groups).unwrap_or_else(|_| "[]".into()))
        .bind(before.id.clone())
        .execute(&mut *tx)
        .await?;
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            action,
            &format!("user/{}", before.id),
            Some(&user_json(&before)),
            Some(&user_json(&after)),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Replaces shared key `name` with `new` if it still is `expected`
    /// (false when another edge changed it first), with an audit row whose
    /// `after` is `shown` (never the key itself).
    pub async fn replace_edge_key(
        &self,
        actor: &str,
        name: &str,
        expected: &str,
        new: &str,
        shown: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE edge_keys SET secret = $1 WHERE name = $2 AND secret = $3")
            .bind(new.to_owned())
            .bind(name.to_owned())
            .bind(expected.to_owned())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        audit(
            &mut tx,
            actor,
            "edge_key.rotate",
            &format!("edge_key/{name}"),
            None,
            Some(shown),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The shared key `name`, made from `make` by the first caller (every
    /// later caller, on any edge, gets the same one).
    pub async fn edge_key(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let candidate = make();
        sqlx::query(
            "INSERT INTO edge_keys (name, secret, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(candidate)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT secret FROM edge_keys WHERE name = $1")
            .bind(name.to_owned())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}
