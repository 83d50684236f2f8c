//! The `document.ingest` job: read the stored file (in the extraction process), embed
//! its chunks in batches through the engine, and store chunks and vectors in one
//! transaction. Rerunning it (a retry, a resume after a crash, a re-index) replaces the
//! document's chunks, so it never leaves duplicates.

use std::sync::Arc;

use futures_util::FutureExt;

use super::{Documents, MediaType, files, worker};
use crate::engine::EngineError;
use crate::jobs::{Handler, JobContext, JobError, payload_id};
use crate::store::StoreError;
use crate::store::chunks::NewChunk;
use crate::store::jobs::Job;

/// Chunks per embedding call (one admission place each).
const EMBED_BATCH: usize = 64;

/// Why documents work failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// For good, with a reason for the document's owner.
    #[error("{0}")]
    Fatal(String),
    /// The embedding engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IngestError> for JobError {
    fn from(e: IngestError) -> JobError {
        match e {
            IngestError::Fatal(message) => JobError::Fatal(message),
            IngestError::Engine(e) if e.is_transient() => JobError::Retry(e.to_string()),
            IngestError::Engine(EngineError::ShuttingDown) => JobError::Cancelled,
            IngestError::Engine(e) => JobError::Fatal(e.to_string()),
            IngestError::Store(StoreError::Busy | StoreError::Closed) => {
                JobError::Retry("the database was busy".into())
            }
            IngestError::Store(e) => {
                tracing::error!(error = %e, "a document job hit a database error");
                JobError::Retry("a database error occurred".into())
            }
        }
    }
}

impl Documents {
    /// The job handler for `document.ingest`.
    pub fn ingest_handler(&self) -> Handler {
        let documents = self.clone();
        Arc::new(move |job: Job, ctx: JobContext| {
            let documents = documents.clone();
            async move { documents.ingest(job, ctx).await }.boxed()
        })
    }

    async fn ingest(&self, job: Job, ctx: JobContext) -> Result<(), JobError> {
        let Some(document_id) = payload_id(&job, "document_id") else {
            return Err(JobError::Fatal("the job names no document".into()));
        };
        let result = self.ingest_attempt(&job, document_id, &ctx).await;
        let last_attempt = job.attempts >= job.max_attempts;
        let failure = match &result {
            Ok(()) => None,
            Err(JobError::Fatal(message)) => Some(message.clone()),
            Err(JobError::Retry(message)) if last_attempt => Some(format!(
                "{message} (gave up after {} attempts)",
                job.attempts
            )),
            Err(JobError::Cancelled) if !ctx.is_shutdown() => Some("indexing was cancelled".into()),
            Err(_) => None,
        };
        if let Some(message) = failure {
            let _ = self
                .store
                .set_document_state(document_id, job.id, "failed", Some(message))
                .await;
        } else if matches!(result, Err(JobError::Retry(_))) {
            let _ = self
                .store
                .set_document_state(document_id, job.id, "queued", None)
                .await;
        }
        result
    }

    async fn ingest_attempt(
        &self,
        job: &Job,
        document_id: i64,
        ctx: &JobContext,
    ) -> Result<(), JobError> {
        let Some(doc) = self
            .store
            .document_for_job(document_id)
            .await
            .map_err(IngestError::from)?
        else {
            return Ok(()); // deleted meanwhile: nothing to do
        };
        if doc.job_id != Some(job.id) {
            return Ok(()); // a newer job re-indexes it
        }
        let media = MediaType::parse(&doc.media_type)
            .ok_or_else(|| JobError::Fatal(format!("unknown format `{}`", doc.media_type)))?;
        self.store
            .set_document_state(document_id, job.id, "indexing", None)
            .await
            .map_err(IngestError::from)?;
        let spec = self.embedding_model()?;
        ctx.progress(0.02, "reading the file").await;
        let file = files::path(&self.config.files_dir, &doc.sha256);
        let tokenizer = spec.path.join("tokenizer.json");
        let extracted = tokio::select! {
            r = worker::extract_file(&self.config, &file, media, &tokenizer) => r.map_err(JobError::Fatal)?,
            _ = ctx.cancelled() => return Err(JobError::Cancelled),
        };
        if extracted.chunks.is_empty() {
            return Err(JobError::Fatal("the file contains no text".into()));
        }
        let total = extracted.chunks.len();
        let user = job.user_id.unwrap_or(0);
        let mut chunks = Vec::with_capacity(total);
        for batch in extracted.chunks.chunks(EMBED_BATCH) {
            ctx.check()?;
            ctx.progress(
                0.1 + 0.85 * chunks.len() as f64 / total as f64,
                format!("embedding chunks: {} of {total}", chunks.len()),
            )
            .await;
            let inputs: Vec<String> = batch
                .iter()
                .map(|c| {
                    if c.heading.is_empty() {
                        c.text.clone()
                    } else {
                        format!("{}\n{}", c.heading, c.text)
                    }
                })
                .collect();
            // Chunks are cut to fit the model; truncation only guards a long heading.
            let embedded = tokio::select! {
                r = self.engine.embed(&spec, user, inputs, true, None) => r.map_err(IngestError::from)?,
                _ = ctx.cancelled() => return Err(JobError::Cancelled),
            };
            for (chunk, vector) in batch.iter().zip(embedded.vectors) {
                chunks.push(NewChunk {
                    text: chunk.text.clone(),
                    page: chunk.page.map(i64::from),
                    heading: chunk.heading.clone(),
                    char_start: chunk.char_start as i64,
                    char_end: chunk.char_end as i64,
                    tokens: i64::from(chunk.tokens),
                    embedding: vector,
                });
            }
        }
        ctx.check()?;
        ctx.progress(0.97, "saving the index").await;
        // Under the index's load lock, so a load running now cannot miss these entries.
        let _loading = self.index_loading.lock().await;
        let entries = match self
            .store
            .store_chunks(
                document_id,
                job.id,
                spec.name.clone(),
                extracted.pages.map(i64::from),
                chunks,
            )
            .await
        {
            Ok(entries) => entries,
            // Deleted, or taken over by a newer job, while it was being read.
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(IngestError::from(e).into()),
        };
        if self.index.is_loaded() {
            let index = self.index.clone();
            let _ = tokio::task::spawn_blocking(move || index.add(entries)).await;
        }
        Ok(())
    }
}
