//! Transcripts: a recording's text and timed segments, owned by a user, written by the
//! `speech.transcribe` job. Access is decided in the queries by an owner filter
//! (`None`: an administrator, who sees every transcript).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::conversations::now;
use super::jobs::{Job, insert_job};
use super::{Store, StoreError, immediate};

/// The job kind that transcribes a recording.
pub const TRANSCRIBE_JOB: &str = "speech.transcribe";

/// A transcript as stored. `segments` is filled only when one transcript is read.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    /// Id.
    pub id: i64,
    /// Owner's id.
    #[serde(skip)]
    pub user_id: Option<i64>,
    /// The recording's file name.
    pub name: String,
    /// The speech model.
    pub model: String,
    /// `transcribe` or `translate`.
    pub task: String,
    /// How it was asked for (language, prompt, temperature, word timestamps).
    pub options: Value,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Language code, once known.
    pub language: Option<String>,
    /// Seconds of audio, once known.
    pub duration: Option<f64>,
    /// The whole text (in lists, the first 200 characters).
    pub text: String,
    /// Timed segments (JSON array; empty in lists).
    pub segments: Value,
    /// The job doing the work.
    pub job_id: Option<i64>,
    /// Uploaded.
    pub created_at: String,
    /// Finished.
    pub finished_at: Option<String>,
}

/// A recording to transcribe.
#[derive(Debug, Clone)]
pub struct NewTranscript {
    /// Owner (`None` without authentication).
    pub user_id: Option<i64>,
    /// File name.
    pub name: String,
    /// Speech model name.
    pub model: String,
    /// `transcribe` or `translate`.
    pub task: &'static str,
    /// The speech options (JSON).
    pub options: Value,
    /// The recording's name in the recordings dir.
    pub recording: String,
}

const COLUMNS: &str = "id, user_id, name, model, task, options, state, error, language, duration, \
                       text, segments, job_id, created_at, finished_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Transcript> {
    let parse = |text: String| serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Transcript {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        model: r.get(3)?,
        task: r.get(4)?,
        options: parse(r.get(5)?),
        state: r.get(6)?,
        error: r.get(7)?,
        language: r.get(8)?,
        duration: r.get(9)?,
        text: r.get(10)?,
        segments: parse(r.get(11)?),
        job_id: r.get(12)?,
        created_at: r.get(13)?,
        finished_at: r.get(14)?,
    })
}

fn get(conn: &Connection, id: i64, owner: Option<i64>) -> rusqlite::Result<Option<Transcript>> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM transcripts WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
        ),
        params![id, owner],
        row,
    )
    .optional()
}

impl Store {
    /// Records a recording to transcribe and queues its job, in one transaction.
    pub async fn create_transcript(
        &self,
        new: NewTranscript,
        max_attempts: u32,
    ) -> Result<(Transcript, Job), StoreError> {
        self.write("create_transcript", move |conn| {
            let tx = immediate(conn)?;
            tx.execute(
                "INSERT INTO transcripts (user_id, name, model, task, options, state, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
                params![
                    new.user_id,
                    new.name,
                    new.model,
                    new.task,
                    new.options.to_string(),
                    now()
                ],
            )?;
            let id = tx.last_insert_rowid();
            let job_id = insert_job(
                &tx,
                TRANSCRIBE_JOB,
                new.user_id,
                &json!({"transcript_id": id, "recording": new.recording}),
                max_attempts,
            )?;
            tx.execute(
                "UPDATE transcripts SET job_id = ?2 WHERE id = ?1",
                params![id, job_id],
            )?;
            let transcript = get(&tx, id, None)?.ok_or(StoreError::NotFound("transcript"))?;
            let job = super::jobs::get(&tx, job_id, None)?.ok_or(StoreError::NotFound("job"))?;
            tx.commit()?;
            Ok((transcript, job))
        })
        .await
    }

    /// One transcript with its segments, if the owner filter allows.
    pub async fn transcript(&self, id: i64, owner: Option<i64>) -> Result<Transcript, StoreError> {
        self.read("transcript", move |conn| {
            get(conn, id, owner)?.ok_or(StoreError::NotFound("transcript"))
        })
        .await
    }

    /// Transcripts newest first (without segments, text cut to 200 characters),
    /// older than `before` when given.
    pub async fn list_transcripts(
        &self,
        owner: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Transcript>, StoreError> {
        self.read("list_transcripts", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, user_id, name, model, task, options, state, error, language, duration, \
                 substr(text, 1, 200), '[]', job_id, created_at, finished_at FROM transcripts \
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR id < ?2) \
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![owner, before, limit], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Deletes a transcript the owner filter allows; returns it (its job is the
    /// caller's to cancel).
    pub async fn delete_transcript(
        &self,
        id: i64,
        owner: Option<i64>,
    ) -> Result<Transcript, StoreError> {
        self.write("delete_transcript", move |conn| {
            let tx = immediate(conn)?;
            let transcript = get(&tx, id, owner)?.ok_or(StoreError::NotFound("transcript"))?;
            tx.execute("DELETE FROM transcripts WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(transcript)
        })
        .await
    }

    /// Sets a transcript's state (and error) while its job `job` owns it.
    pub async fn set_transcript_state(
        &self,
        id: i64,
        job: i64,
        state: &'static str,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.write("set_transcript_state", move |conn| {
            let finished = matches!(state, "failed" | "cancelled").then(now);
            conn.execute(
                "UPDATE transcripts SET state = ?3, error = ?4, finished_at = ?5 \
                 WHERE id = ?1 AND job_id = ?2",
                params![id, job, state, error, finished],
            )?;
            Ok(())
        })
        .await
    }

    /// Stores a finished transcript.
    pub async fn finish_transcript(
        &self,
        id: i64,
        job: i64,
        language: String,
        duration: f64,
        text: String,
        segments: Value,
    ) -> Result<(), StoreError> {
        self.write("finish_transcript", move |conn| {
            conn.execute(
                "UPDATE transcripts SET state = 'done', error = NULL, language = ?3, duration = ?4, \
                 text = ?5, segments = ?6, finished_at = ?7 WHERE id = ?1 AND job_id = ?2",
                params![id, job, language, duration, text, segments.to_string(), now()],
            )?;
            Ok(())
        })
        .await
    }
}
