//! `daemon_runs`: a row per `serve` run, so an unclean previous stop is visible.

use rusqlite::{Connection, OptionalExtension};

use super::{Store, StoreError};

/// The row id of one daemon run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId(pub i64);

/// One recorded `serve` run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DaemonRun {
    /// Process id of that run.
    pub pid: i64,
    /// Version that ran.
    pub version: String,
    /// RFC 3339 start time.
    pub started_at: String,
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

impl Store {
    /// Records the start of this run and returns the previous run if it never stopped
    /// cleanly (crash, `kill -9`, power loss).
    pub async fn begin_run(
        &self,
        pid: u32,
        version: &'static str,
    ) -> Result<(RunId, Option<DaemonRun>), StoreError> {
        self.write("begin_run", move |conn| {
            let tx = super::immediate(conn)?;
            let previous = last_unclean(&tx)?;
            tx.execute(
                &format!("INSERT INTO daemon_runs (pid, version, started_at) VALUES (?1, ?2, {NOW})"),
                (pid, version),
            )?;
            let id = RunId(tx.last_insert_rowid());
            // Older unclean runs are now history: mark them stopped (not clean).
            tx.execute(
                &format!("UPDATE daemon_runs SET stopped_at = {NOW} WHERE stopped_at IS NULL AND id <> ?1"),
                [id.0],
            )?;
            tx.commit()?;
            Ok((id, previous))
        })
        .await
    }

    /// Records a clean stop of this run.
    pub async fn end_run(&self, id: RunId) -> Result<(), StoreError> {
        self.write("end_run", move |conn| {
            conn.execute(
                &format!("UPDATE daemon_runs SET stopped_at = {NOW}, clean_stop = 1 WHERE id = ?1"),
                [id.0],
            )?;
            Ok(())
        })
        .await
    }
}

/// The newest run that has not recorded any stop, excluding none.
pub(super) fn last_unclean(conn: &Connection) -> Result<Option<DaemonRun>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT pid, version, started_at FROM daemon_runs
             WHERE stopped_at IS NULL ORDER BY id DESC LIMIT 1",
            [],
            |row| {
                Ok(DaemonRun {
                    pid: row.get(0)?,
                    version: row.get(1)?,
                    started_at: row.get(2)?,
                })
            },
        )
        .optional()?)
}
