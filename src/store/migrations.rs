//! Versioned schema migrations, applied in order at startup and by `appliance db migrate`.
//!
//! The schema version is SQLite's `PRAGMA user_version`. Each migration is one SQL file
//! and runs in its own transaction together with the version bump, so a crash mid-way
//! leaves the database at the previous version, never in between.

use rusqlite::Connection;

use super::StoreError;

/// Every migration, in order; index + 1 is the version it produces.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_meta", include_str!("migrations/0001_meta.sql")),
    (
        "0002_daemon_runs",
        include_str!("migrations/0002_daemon_runs.sql"),
    ),
    (
        "0003_conversations",
        include_str!("migrations/0003_conversations.sql"),
    ),
    (
        "0004_accounts",
        include_str!("migrations/0004_accounts.sql"),
    ),
    ("0005_usage", include_str!("migrations/0005_usage.sql")),
    (
        "0006_documents",
        include_str!("migrations/0006_documents.sql"),
    ),
    (
        "0007_chunks_vocab",
        include_str!("migrations/0007_chunks_vocab.sql"),
    ),
    (
        "0008_transcripts",
        include_str!("migrations/0008_transcripts.sql"),
    ),
    (
        "0009_responses",
        include_str!("migrations/0009_responses.sql"),
    ),
    (
        "0010_audit_actions",
        include_str!("migrations/0010_audit_actions.sql"),
    ),
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// What a migration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// Version before.
    pub from: u32,
    /// Version after.
    pub to: u32,
}

/// Reads the schema version.
pub fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Applies every pending migration up to `target` (normally [`LATEST`]).
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<MigrationReport, StoreError> {
    let from = current_version(conn)?;
    if from > LATEST {
        return Err(StoreError::SchemaTooNew {
            found: from,
            supported: LATEST,
        });
    }
    for version in from + 1..=target.min(LATEST) {
        let (name, sql) = MIGRATIONS[version as usize - 1];
        let tx = super::immediate(conn)?;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(migration = name, version, "applied schema migration");
    }
    Ok(MigrationReport {
        from,
        to: current_version(conn)?,
    })
}
