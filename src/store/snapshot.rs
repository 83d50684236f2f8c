//! Consistent copies of the database for backups, and the checks a restore runs on
//! one: every table's row count and `integrity_check`.
//!
//! A snapshot is `VACUUM INTO` on its own read-only connection: SQLite copies one read
//! transaction's view (WAL lets the daemon go on writing meanwhile), compacted, into a
//! new file that is a complete database on its own (no `-wal` beside it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, migrations, register_sqlite_vec};

/// Copies the database at `db` into the new file `to`, consistently, while others may
/// be writing. Returns the copy's schema version.
pub fn snapshot(db: &Path, to: &Path, busy: Duration) -> Result<u32, StoreError> {
    let conn = read_only(db, busy)?;
    let version = migrations::current_version(&conn)?;
    let target = to.to_str().ok_or_else(|| StoreError::Open {
        path: to.to_path_buf(),
        source: rusqlite::Error::InvalidPath(to.to_path_buf()),
    })?;
    conn.execute("VACUUM INTO ?1", [target])?;
    Ok(version)
}

/// What a restore checks on a database file: schema version, integrity and the row
/// count of every table.
#[derive(Debug, Clone)]
pub struct Census {
    /// Schema version.
    pub schema_version: u32,
    /// `PRAGMA integrity_check` lines (`["ok"]` when healthy).
    pub integrity: Vec<String>,
    /// Rows per table (SQLite's internal tables left out).
    pub rows: BTreeMap<String, i64>,
}

/// Counts and checks the database at `path` (read-only).
pub fn census(path: &Path, busy: Duration) -> Result<Census, StoreError> {
    let conn = read_only(path, busy)?;
    let schema_version = migrations::current_version(&conn)?;
    let integrity = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut rows = BTreeMap::new();
    for table in tables {
        // Names come from the schema itself; quoted as identifiers.
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        rows.insert(table, n);
    }
    Ok(Census {
        schema_version,
        integrity,
        rows,
    })
}

fn read_only(path: &Path, busy: Duration) -> Result<Connection, StoreError> {
    register_sqlite_vec();
    let err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(busy).map_err(err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    #[tokio::test]
    async fn a_snapshot_taken_while_the_store_writes_is_a_whole_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let store = Store::open(&db, StoreOptions::new(Duration::from_secs(5), 1)).unwrap();
        store.begin_run(1, "test").await.unwrap();
        let copy = dir.path().join("copy.db");
        let version = snapshot(&db, &copy, Duration::from_secs(5)).unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        let census = census(&copy, Duration::from_secs(5)).unwrap();
        assert_eq!(census.integrity, ["ok"]);
        assert_eq!(census.rows["daemon_runs"], 1);
        assert_eq!(
            census.rows,
            super::census(&db, Duration::from_secs(5)).unwrap().rows
        );
        // The copy stands alone: no WAL beside it.
        assert!(!dir.path().join("copy.db-wal").exists());
    }
}
