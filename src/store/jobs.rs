//! The `jobs` table: durable work that outlives a request and a restart.
//!
//! A job moves `queued → running → done | failed | cancelled`; a failed attempt that
//! may be retried goes back to `queued` with a later `run_after`. Claiming is one
//! `UPDATE … RETURNING`, so two runners never take the same job. The daemon holds the
//! data dir's lock, so a job found `running` at start-up was orphaned by a crash and is
//! queued again ([`Store::requeue_orphaned_jobs`]).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::conversations::now;
use super::{Store, StoreError, immediate};

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// What kind of work (`document.ingest`, …).
    pub kind: String,
    /// Owner (`None`: the anonymous principal).
    #[serde(skip)]
    pub user_id: Option<i64>,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// What to do (kind-specific).
    #[serde(skip)]
    pub payload: Value,
    /// 0..1.
    pub progress: f64,
    /// What it is doing now, in words.
    pub note: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Why it failed (last attempt).
    pub error: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last attempt started.
    pub started_at: Option<String>,
    /// Ended (done, failed or cancelled).
    pub finished_at: Option<String>,
}

impl Job {
    /// Whether the job has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "done" | "failed" | "cancelled")
    }
}

const COLUMNS: &str = "id, kind, user_id, state, payload, progress, note, attempts, max_attempts, \
                       error, created_at, started_at, finished_at";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let payload: String = row.get(4)?;
    Ok(Job {
        id: row.get(0)?,
        kind: row.get(1)?,
        user_id: row.get(2)?,
        state: row.get(3)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        progress: row.get(5)?,
        note: row.get(6)?,
        attempts: row.get(7)?,
        max_attempts: row.get(8)?,
        error: row.get(9)?,
        created_at: row.get(10)?,
        started_at: row.get(11)?,
        finished_at: row.get(12)?,
    })
}

/// Inserts a queued job inside the caller's transaction (so the job exists exactly when
/// the thing it works on does).
pub(super) fn insert_job(
    conn: &Connection,
    kind: &str,
    user_id: Option<i64>,
    payload: &Value,
    max_attempts: u32,
) -> rusqlite::Result<i64> {
    let now = now();
    conn.prepare_cached(
        "INSERT INTO jobs (kind, user_id, state, payload, max_attempts, run_after, created_at) \
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        kind,
        user_id,
        payload.to_string(),
        max_attempts,
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Finished.
    Done,
    /// Failed for good.
    Failed(String),
    /// Failed; try again not before `run_after` (if attempts remain).
    Retry {
        /// Why this attempt failed.
        error: String,
        /// Store-format time.
        run_after: String,
    },
    /// Cancelled on request.
    Cancelled,
}

impl Store {
    /// Queues a job on its own (kinds without a row of their own).
    pub async fn create_job(
        &self,
        kind: &'static str,
        user_id: Option<i64>,
        payload: Value,
        max_attempts: u32,
    ) -> Result<Job, StoreError> {
        self.write("create_job", move |conn| {
            let tx = immediate(conn)?;
            let id = insert_job(&tx, kind, user_id, &payload, max_attempts)?;
            let job = get(&tx, id, None)?.ok_or(StoreError::NotFound("job"))?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    /// Takes the oldest runnable job of one of `kinds`, marking it running.
    pub async fn claim_job(&self, kinds: Vec<String>) -> Result<Option<Job>, StoreError> {
        self.write("claim_job", move |conn| {
            let kinds = serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into());
            let now = now();
            Ok(conn
                .prepare_cached(&format!(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?1, \
                     error = NULL, note = '' \
                     WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND run_after <= ?1 \
                                 AND kind IN (SELECT value FROM json_each(?2)) ORDER BY id LIMIT 1) \
                     RETURNING {COLUMNS}"
                ))?
                .query_row(params![now, kinds], job_from_row)
                .optional()?)
        })
        .await
    }

    /// The earliest time a queued job becomes runnable, if any is waiting.
    pub async fn next_job_time(&self) -> Result<Option<String>, StoreError> {
        self.read("next_job_time", |conn| {
            Ok(conn
                .prepare_cached("SELECT min(run_after) FROM jobs WHERE state = 'queued'")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    /// Queues again every job left `running` by a daemon that died. Returns how many.
    pub async fn requeue_orphaned_jobs(&self) -> Result<usize, StoreError> {
        self.write("requeue_orphaned_jobs", |conn| {
            Ok(conn.execute(
                "UPDATE jobs SET state = 'queued', note = 'resumed after a restart' WHERE state = 'running'",
                [],
            )?)
        })
        .await
    }

    /// Records progress of a running job.
    pub async fn job_progress(
        &self,
        id: i64,
        progress: f64,
        note: String,
    ) -> Result<(), StoreError> {
        self.write("job_progress", move |conn| {
            conn.prepare_cached(
                "UPDATE jobs SET progress = ?2, note = ?3 WHERE id = ?1 AND state = 'running'",
            )?
            .execute(params![id, progress.clamp(0.0, 1.0), note])?;
            Ok(())
        })
        .await
    }

    /// Ends an attempt. A retry whose attempts are used up becomes a failure.
    pub async fn finish_job(&self, id: i64, outcome: Outcome) -> Result<Job, StoreError> {
        self.write("finish_job", move |conn| {
            let tx = immediate(conn)?;
            let now = now();
            match outcome {
                Outcome::Done => tx.execute(
                    "UPDATE jobs SET state = 'done', progress = 1, note = '', finished_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?,
                Outcome::Failed(error) => tx.execute(
                    "UPDATE jobs SET state = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
                    params![id, error, now],
                )?,
                Outcome::Retry { error, run_after } => tx.execute(
                    "UPDATE jobs SET \
                       state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
                       finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ?4 END, \
                       note = CASE WHEN attempts < max_attempts THEN 'waiting to retry' ELSE note END, \
                       error = ?2, run_after = ?3 WHERE id = ?1",
                    params![id, error, run_after, now],
                )?,
                Outcome::Cancelled => tx.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?,
            };
            let job = get(&tx, id, None)?.ok_or(StoreError::NotFound("job"))?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    /// Cancels a queued job at once; a running one is left to its runner (which is
    /// told separately). Returns the job as it is now.
    pub async fn cancel_job(&self, id: i64, owner: Option<i64>) -> Result<Job, StoreError> {
        self.write("cancel_job", move |conn| {
            let tx = immediate(conn)?;
            let job = get(&tx, id, owner)?.ok_or(StoreError::NotFound("job"))?;
            if job.state == "queued" {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1",
                    params![id, now()],
                )?;
                // What the job was for learns it will not happen (a running job's
                // handler does this itself when it stops).
                tx.execute(
                    "UPDATE documents SET state = 'failed', error = 'indexing was cancelled' \
                     WHERE job_id = ?1 AND state IN ('queued', 'indexing')",
                    [id],
                )?;
                tx.execute(
                    "UPDATE transcripts SET state = 'cancelled', \
                     error = 'the transcription was cancelled', finished_at = ?2 \
                     WHERE job_id = ?1 AND state IN ('queued', 'running')",
                    params![id, now()],
                )?;
            }
            let job = get(&tx, id, None)?.ok_or(StoreError::NotFound("job"))?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    /// One job, if `owner` (when given) owns it.
    pub async fn job(&self, id: i64, owner: Option<i64>) -> Result<Job, StoreError> {
        self.read("job", move |conn| {
            get(conn, id, owner)?.ok_or(StoreError::NotFound("job"))
        })
        .await
    }

    /// Jobs newest first, before id `before`, of `owner` (all when `None`).
    pub async fn list_jobs(
        &self,
        owner: Option<i64>,
        state: Option<String>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.read("list_jobs", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR user_id = ?1) \
                 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
            ))?;
            let jobs = stmt
                .query_map(params![owner, state, before, limit], job_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(jobs)
        })
        .await
    }

    /// The oldest job of `kind` that is queued or running, if any.
    pub async fn active_job_of_kind(&self, kind: &'static str) -> Result<Option<i64>, StoreError> {
        self.read("active_job_of_kind", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM jobs WHERE kind = ?1 AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
            )?;
            let mut rows = stmt.query([kind])?;
            Ok(match rows.next()? {
                Some(row) => Some(row.get(0)?),
                None => None,
            })
        })
        .await
    }

    /// Jobs counted by kind and state (for metrics).
    pub async fn job_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read("job_counts", |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state")?;
            let counts = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(counts)
        })
        .await
    }
}

pub(super) fn get(conn: &Connection, id: i64, owner: Option<i64>) -> rusqlite::Result<Option<Job>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
    ))?
    .query_row(params![id, owner], job_from_row)
    .optional()
}
