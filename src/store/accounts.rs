//! Users, API keys, sessions and the audit log.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::conversations::now;
use super::{Store, StoreError};
use crate::auth::peer::{LOCAL_ADMIN, NO_PASSWORD};
use crate::auth::{Role, Scope};

/// A user account (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Unique name (case-insensitive).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in and their keys stop working.
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub password_changed_at: String,
}

impl User {
    /// Whether this is the built-in local administrator of the Unix socket.
    pub fn is_local_admin(&self) -> bool {
        self.name.eq_ignore_ascii_case(LOCAL_ADMIN)
    }
}

/// An API key's metadata (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Public id (the `apl_<id>_…` part).
    pub id: String,
    /// Owner.
    pub user_id: i64,
    /// Owner's name.
    pub user_name: String,
    /// A label.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if it expires.
    pub expires_at: Option<String>,
    /// RFC 3339, updated at most once a minute.
    pub last_used_at: Option<String>,
    /// RFC 3339, once revoked.
    pub revoked_at: Option<String>,
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The CSRF token bound to it.
    pub csrf_token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Row id.
    #[serde(default)]
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who (user name), if known.
    pub actor: Option<String>,
    /// What, e.g. `login`, `user.create`, `key.revoke`.
    pub action: String,
    /// On what (user name, key id, model name).
    pub target: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// Whether it succeeded.
    pub success: bool,
    /// Extra facts (never secrets or prompts).
    pub detail: serde_json::Value,
}

const USER_COLUMNS: &str = "id, name, role, disabled, created_at, password_changed_at";
/// [`USER_COLUMNS`] from a join where the users table is aliased `u`.
const U_COLUMNS: &str = "u.id, u.name, u.role, u.disabled, u.created_at, u.password_changed_at";
const KEY_COLUMNS: &str = "k.id, k.user_id, u.name, k.name, k.scopes, k.created_at, k.expires_at, \
     k.last_used_at, k.revoked_at";

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    user_at(row, 0)
}

/// A [`User`] from the six user columns starting at `at`.
fn user_at(row: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    let role: String = row.get(at + 2)?;
    Ok(User {
        id: row.get(at)?,
        name: row.get(at + 1)?,
        role: role.parse().unwrap_or(Role::Readonly),
        disabled: row.get(at + 3)?,
        created_at: row.get(at + 4)?,
        password_changed_at: row.get(at + 5)?,
    })
}

fn key_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = row.get(4)?;
    Ok(ApiKey {
        id: row.get(0)?,
        user_id: row.get(1)?,
        user_name: row.get(2)?,
        name: row.get(3)?,
        scopes: scopes.split(' ').filter_map(|s| s.parse().ok()).collect(),
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        last_used_at: row.get(7)?,
        revoked_at: row.get(8)?,
    })
}

fn get_user(conn: &Connection, id: i64) -> Result<User, StoreError> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("user"))
}

/// Users other than the built-in local administrator.
fn people(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM users WHERE name <> ?1",
        [LOCAL_ADMIN],
        |r| r.get(0),
    )?)
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Store {
    /// How many users exist besides the built-in local administrator (0 means
    /// first-run setup is open: using the CLI on the host must not close it).
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        self.read("count_users", |conn| people(conn)).await
    }

    /// The built-in local administrator ([`LOCAL_ADMIN`]), created on first use with a
    /// password hash no password matches. An existing row is returned as it is, so an
    /// administrator who disabled it (or changed its role) keeps that choice.
    pub async fn local_admin(&self) -> Result<User, StoreError> {
        if let Some((user, _)) = self.user_by_name(LOCAL_ADMIN.to_string()).await? {
            return Ok(user);
        }
        self.write("local_admin", |conn| {
            let at = now();
            conn.execute(
                "INSERT OR IGNORE INTO users (name, password_hash, role, created_at, password_changed_at) \
                 VALUES (?1, ?2, 'admin', ?3, ?3)",
                params![LOCAL_ADMIN, NO_PASSWORD, at],
            )?;
            Ok(conn.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                [LOCAL_ADMIN],
                user_row,
            )?)
        })
        .await
    }

    /// Creates a user; `Conflict` when the name is taken. With `only_if_first`, the
    /// insert happens only while no user exists (first-run setup, race-free).
    pub async fn create_user(
        &self,
        name: String,
        password_hash: String,
        role: Role,
        only_if_first: bool,
    ) -> Result<User, StoreError> {
        self.write("create_user", move |conn| {
            let tx = super::immediate(conn)?;
            if only_if_first {
                let n = people(&tx)?;
                if n > 0 {
                    return Err(StoreError::Conflict("setup already done"));
                }
            }
            let at = now();
            tx.execute(
                "INSERT INTO users (name, password_hash, role, created_at, password_changed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![name, password_hash, role.as_str(), at],
            )
            .map_err(|e| {
                if unique_violation(&e) {
                    StoreError::Conflict("user name")
                } else {
                    e.into()
                }
            })?;
            let user = get_user(&tx, tx.last_insert_rowid())?;
            tx.commit()?;
            Ok(user)
        })
        .await
    }

    /// A user and their password hash, by name (case-insensitive).
    pub async fn user_by_name(&self, name: String) -> Result<Option<(User, String)>, StoreError> {
        self.read("user_by_name", move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?1"),
                    [name],
                    |row| Ok((user_row(row)?, row.get(6)?)),
                )
                .optional()?)
        })
        .await
    }

    /// A user by id.
    pub async fn user(&self, id: i64) -> Result<User, StoreError> {
        self.read("get_user", move |conn| get_user(conn, id)).await
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.read("list_users", |conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
            let rows = stmt.query_map([], user_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Changes what may change on a user. A new password or disabling revokes all of
    /// the user's sessions in the same transaction.
    pub async fn update_user(
        &self,
        id: i64,
        password_hash: Option<String>,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<User, StoreError> {
        self.write("update_user", move |conn| {
            let tx = super::immediate(conn)?;
            get_user(&tx, id)?;
            let at = now();
            if let Some(hash) = &password_hash {
                tx.execute(
                    "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
                    params![id, hash, at],
                )?;
            }
            if let Some(role) = role {
                tx.execute(
                    "UPDATE users SET role = ?2 WHERE id = ?1",
                    params![id, role.as_str()],
                )?;
            }
            if let Some(disabled) = disabled {
                tx.execute(
                    "UPDATE users SET disabled = ?2 WHERE id = ?1",
                    params![id, disabled],
                )?;
            }
            if password_hash.is_some() || disabled == Some(true) {
                tx.execute(
                    "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                    params![id, at],
                )?;
            }
            let user = get_user(&tx, id)?;
            tx.commit()?;
            Ok(user)
        })
        .await
    }

    /// Deletes a user with their keys, sessions and conversations.
    pub async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        self.write("delete_user", move |conn| {
            match conn.execute("DELETE FROM users WHERE id = ?1", [id])? {
                0 => Err(StoreError::NotFound("user")),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Stores a new API key's metadata and secret hash.
    pub async fn create_api_key(
        &self,
        id: String,
        user_id: i64,
        name: String,
        secret_hash: String,
        scopes: Vec<Scope>,
        expires_at: Option<String>,
    ) -> Result<ApiKey, StoreError> {
        self.write("create_api_key", move |conn| {
            get_user(conn, user_id)?;
            conn.execute(
                "INSERT INTO api_keys (id, user_id, name, secret_hash, scopes, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, user_id, name, secret_hash, Scope::join(&scopes), now(), expires_at],
            )?;
            Ok(conn.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?1"),
                [id],
                key_row,
            )?)
        })
        .await
    }

    /// A key with its secret hash and owner, for authentication (a read only; see
    /// [`Store::touch_api_key`]).
    pub async fn api_key_for_auth(
        &self,
        id: String,
    ) -> Result<Option<(ApiKey, String, User)>, StoreError> {
        self.read("api_key_for_auth", move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {KEY_COLUMNS}, k.secret_hash, {U_COLUMNS} FROM api_keys k \
                         JOIN users u ON u.id = k.user_id WHERE k.id = ?1"
                    ),
                    [id],
                    |row| Ok((key_row(row)?, row.get(9)?, user_at(row, 10)?)),
                )
                .optional()?)
        })
        .await
    }

    /// Records that a key was used, at most once a minute per key. Call it only after
    /// the key's secret was verified: a wrong secret must leave no trace on the key.
    pub async fn touch_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let stale = key.last_used_at.as_deref().is_none_or(|at| {
            at.parse::<jiff::Timestamp>().map_or(true, |at| {
                jiff::Timestamp::now().duration_since(at) >= jiff::SignedDuration::from_secs(60)
            })
        });
        if stale {
            let id = key.id.clone();
            self.write("touch_api_key", move |conn| {
                conn.execute(
                    "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                    params![id, now()],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Keys, newest first; `owner` limits to one user's.
    pub async fn list_api_keys(&self, owner: Option<i64>) -> Result<Vec<ApiKey>, StoreError> {
        self.read("list_api_keys", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE ?1 IS NULL OR k.user_id = ?1 ORDER BY k.created_at DESC, k.id"
            ))?;
            let rows = stmt.query_map([owner], key_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Revokes a key (only `owner`'s when given).
    pub async fn revoke_api_key(
        &self,
        id: String,
        owner: Option<i64>,
    ) -> Result<ApiKey, StoreError> {
        self.write("revoke_api_key", move |conn| {
            let changed = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) \
                 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                params![id, owner, now()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("API key"));
            }
            Ok(conn.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?1"),
                [id],
                key_row,
            )?)
        })
        .await
    }

    /// Stores a new session.
    pub async fn create_session(
        &self,
        token_hash: String,
        user_id: i64,
        csrf_token: String,
        expires_at: String,
        ip: Option<String>,
    ) -> Result<(), StoreError> {
        self.write("create_session", move |conn| {
            let at = now();
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, last_seen_at, ip) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
                params![token_hash, user_id, csrf_token, at, expires_at, ip],
            )?;
            Ok(())
        })
        .await
    }

    /// A live session (not revoked, not expired) and its user.
    pub async fn session(&self, token_hash: String) -> Result<Option<(Session, User)>, StoreError> {
        self.read("get_session", move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT s.csrf_token, s.expires_at, {U_COLUMNS} FROM sessions s \
                         JOIN users u ON u.id = s.user_id \
                         WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2"
                    ),
                    params![token_hash, now()],
                    |row| {
                        let session = Session {
                            csrf_token: row.get(0)?,
                            expires_at: row.get(1)?,
                        };
                        Ok((session, user_at(row, 2)?))
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Revokes one session.
    pub async fn revoke_session(&self, token_hash: String) -> Result<(), StoreError> {
        self.write("revoke_session", move |conn| {
            conn.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![token_hash, now()],
            )?;
            Ok(())
        })
        .await
    }

    /// Appends to the audit log.
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write("audit", move |conn| {
            conn.execute(
                "INSERT INTO audit_log (at, actor, action, target, ip, success, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.at,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.ip,
                    entry.success,
                    entry.detail.to_string()
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes sessions that expired or were revoked; returns how many.
    pub async fn prune_sessions(&self) -> Result<usize, StoreError> {
        self.write("prune_sessions", |conn| {
            Ok(conn.execute(
                "DELETE FROM sessions WHERE expires_at <= ?1 OR revoked_at IS NOT NULL",
                [now()],
            )?)
        })
        .await
    }

    /// Deletes up to `batch` audit entries older than `before` (RFC 3339); returns how
    /// many. Callers loop, so one call never holds the writer for long.
    pub async fn prune_audit(&self, before: String, batch: usize) -> Result<usize, StoreError> {
        self.write("prune_audit", move |conn| {
            Ok(conn.execute(
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE at < ?1 ORDER BY at LIMIT ?2)",
                params![before, batch as i64],
            )?)
        })
        .await
    }

    /// Audit entries, newest first, older than `before` (a row id) when given.
    pub async fn audit_log(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read("audit_log", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, target, ip, success, detail FROM audit_log \
                 WHERE ?1 IS NULL OR id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![before, limit], audit_entry)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The newest `limit` entries whose action is one of `actions`, newest first
    /// (through the `(action, id)` index, however much else the log holds).
    pub async fn audit_log_of(
        &self,
        actions: &'static [&'static str],
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read("audit_log_of", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, target, ip, success, detail FROM audit_log \
                 WHERE action = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let mut entries = Vec::new();
            for action in actions {
                let rows = stmt.query_map(params![action, limit], audit_entry)?;
                entries.extend(rows.collect::<Result<Vec<_>, _>>()?);
            }
            entries.sort_by_key(|e| std::cmp::Reverse(e.id));
            entries.truncate(limit as usize);
            Ok(entries)
        })
        .await
    }
}

/// One `audit_log` row (id, at, actor, action, target, ip, success, detail).
fn audit_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let detail: String = row.get(7)?;
    Ok(AuditEntry {
        id: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        ip: row.get(5)?,
        success: row.get(6)?,
        detail: serde_json::from_str(&detail).unwrap_or_default(),
    })
}
