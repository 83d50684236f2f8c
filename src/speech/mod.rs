//! Transcripts as durable work: a recording uploaded for transcription is kept on disk
//! under the data dir, and the `speech.transcribe` job runs it through the engine's
//! speech worker, reports progress, reserves the owner's daily audio minutes once the
//! length is known, and stores the transcript. A restart (even `kill -9`) resumes the
//! job from the kept recording; the recording is deleted once the transcript is done,
//! failed for good or cancelled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::Value;

use crate::engine::protocol::{SpeechOptions, SpeechTask};
use crate::engine::{Engine, EngineError, ModelKind, ModelSpec, SpeechEvent, SpeechRequest};
use crate::jobs::{Handler, JobContext, JobError, payload_id};
use crate::limits::Limiter;
use crate::models::registry::Registry;
use crate::store::jobs::Job;
use crate::store::{Store, StoreError};

/// Where a recording waits for its job: `<recordings dir>/<uuid>.audio`. `None` for a
/// name that is not a simple uuid (a job payload is input too).
pub fn recording_path(dir: &Path, recording: &str) -> Option<PathBuf> {
    let valid = recording.len() == 32 && recording.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| dir.join(format!("{recording}.audio")))
}

/// A new recording's name.
pub fn new_recording() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Settings the jobs need.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// Where recordings wait.
    pub recordings_dir: PathBuf,
    /// Longest audio accepted, seconds.
    pub max_audio_secs: f64,
}

/// The speech service: submits and runs transcription jobs. Cheap to clone.
#[derive(Clone)]
pub struct Speech {
    store: Store,
    engine: Engine,
    registry: Registry,
    limits: Limiter,
    config: Arc<SpeechConfig>,
}

impl Speech {
    /// A service over the daemon's parts.
    pub fn new(
        store: Store,
        engine: Engine,
        registry: Registry,
        limits: Limiter,
        config: SpeechConfig,
    ) -> Speech {
        Speech {
            store,
            engine,
            registry,
            limits,
            config: Arc::new(config),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SpeechConfig {
        &self.config
    }

    /// The job handler for `speech.transcribe`.
    pub fn transcribe_handler(&self) -> Handler {
        let speech = self.clone();
        Arc::new(move |job: Job, ctx: JobContext| {
            let speech = speech.clone();
            async move { speech.run(job, ctx).await }.boxed()
        })
    }

    async fn run(&self, job: Job, ctx: JobContext) -> Result<(), JobError> {
        let Some(id) = payload_id(&job, "transcript_id") else {
            return Err(JobError::Fatal("the job names no transcript".into()));
        };
        let Some(recording) = job
            .payload
            .get("recording")
            .and_then(Value::as_str)
            .and_then(|r| recording_path(&self.config.recordings_dir, r))
        else {
            return Err(JobError::Fatal("the job names no recording".into()));
        };
        let result = self.attempt(&job, id, &recording, &ctx).await;
        let last_attempt = job.attempts >= job.max_attempts;
        let (state, message) = match &result {
            Ok(()) => (None, None),
            Err(JobError::Fatal(message)) => (Some("failed"), Some(message.clone())),
            Err(JobError::Retry(message)) if last_attempt => (
                Some("failed"),
                Some(format!(
                    "{message} (gave up after {} attempts)",
                    job.attempts
                )),
            ),
            Err(JobError::Retry(_)) => (Some("queued"), None),
            Err(JobError::Cancelled) if !ctx.is_shutdown() => (
                Some("cancelled"),
                Some("the transcription was cancelled".into()),
            ),
            Err(JobError::Cancelled) => (None, None),
        };
        if let Some(state) = state {
            let _ = self
                .store
                .set_transcript_state(id, job.id, state, message)
                .await;
        }
        // The recording is kept only while the job may still run again.
        if matches!(state, Some("failed" | "cancelled")) || result.is_ok() {
            forget(recording).await;
        }
        result
    }

    async fn attempt(
        &self,
        job: &Job,
        id: i64,
        recording: &Path,
        ctx: &JobContext,
    ) -> Result<(), JobError> {
        let transcript = match self.store.transcript(id, None).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => return Ok(()), // deleted meanwhile
            Err(e) => return Err(store_error(e)),
        };
        if transcript.job_id != Some(job.id) {
            return Ok(());
        }
        self.store
            .set_transcript_state(id, job.id, "running", None)
            .await
            .map_err(store_error)?;
        let options = options(
            &transcript.task,
            &transcript.options,
            self.config.max_audio_secs,
        )?;
        let model = self.model(&transcript.model).await?;
        ctx.progress(0.01, "reading the recording").await;
        let user = transcript.user_id.unwrap_or(0);
        let mut transcription = self
            .engine
            .transcribe(SpeechRequest {
                model,
                user,
                audio: recording.to_path_buf(),
                name: Some(transcript.name.clone()),
                options,
                keep_alive: None,
            })
            .await
            .map_err(engine_error)?;
        let mut reservation = None;
        loop {
            let event = tokio::select! {
                event = transcription.next() => event,
                _ = ctx.cancelled() => return Err(JobError::Cancelled),
            };
            match event {
                Some(Ok(SpeechEvent::Decoded { seconds, .. })) => {
                    ctx.progress(0.05, format!("transcribing {}", minutes(seconds)))
                        .await;
                    reservation = match self.limits.reserve_audio(user, seconds).await {
                        Ok(Ok(r)) => r,
                        Ok(Err(exceeded)) => {
                            return Err(JobError::Fatal(format!(
                                "this recording would exceed {}",
                                exceeded.what
                            )));
                        }
                        Err(e) => return Err(store_error(e)),
                    };
                }
                Some(Ok(SpeechEvent::Progress(percent))) => {
                    ctx.progress(
                        0.05 + 0.9 * f64::from(percent) / 100.0,
                        format!("transcribing: {percent} %"),
                    )
                    .await;
                }
                Some(Ok(SpeechEvent::Segment(_))) => {}
                Some(Ok(SpeechEvent::Done(done))) => {
                    let segments = serde_json::to_value(&done.segments).unwrap_or_default();
                    self.store
                        .finish_transcript(
                            id,
                            job.id,
                            done.language.clone(),
                            done.seconds,
                            done.text(),
                            segments,
                        )
                        .await
                        .map_err(store_error)?;
                    if let Some(r) = reservation.take() {
                        r.settle();
                    }
                    return Ok(());
                }
                Some(Err(e)) => return Err(engine_error(e)),
                None => {
                    return Err(JobError::Retry(
                        "the speech worker stopped answering".into(),
                    ));
                }
            }
        }
    }

    async fn model(&self, name: &str) -> Result<ModelSpec, JobError> {
        let registry = self.registry.clone();
        let wanted = name.to_string();
        let info = tokio::task::spawn_blocking(move || registry.find_transcriber(&wanted))
            .await
            .map_err(|e| JobError::Retry(e.to_string()))?
            .map_err(|_| JobError::Fatal(format!("the speech model `{name}` is not installed")))?;
        Ok(ModelSpec {
            name: info.name,
            path: info.path,
            kind: ModelKind::Speech,
        })
    }

    /// Deletes the recording a transcription job waits with (a queued job cancelled
    /// before it ran never gets to delete it itself).
    pub async fn forget_recording(&self, job: &Job) {
        if let Some(path) = job
            .payload
            .get("recording")
            .and_then(Value::as_str)
            .and_then(|r| recording_path(&self.config.recordings_dir, r))
        {
            forget(path).await;
        }
    }
}

async fn forget(path: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || fs_err::remove_file(path)).await;
}

fn minutes(seconds: f64) -> String {
    format!(
        "{}:{:02} of audio",
        (seconds / 60.0) as u64,
        (seconds % 60.0) as u64
    )
}

/// The stored options as the worker takes them.
fn options(task: &str, stored: &Value, max_seconds: f64) -> Result<SpeechOptions, JobError> {
    let text = |key: &str| stored.get(key).and_then(Value::as_str).map(str::to_string);
    Ok(SpeechOptions {
        task: match task {
            "translate" => SpeechTask::Translate,
            _ => SpeechTask::Transcribe,
        },
        language: text("language"),
        prompt: text("prompt"),
        temperature: stored
            .get("temperature")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0) as f32,
        word_timestamps: stored
            .get("word_timestamps")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_seconds,
    })
}

fn engine_error(e: EngineError) -> JobError {
    match e {
        e if e.is_transient() => JobError::Retry(e.to_string()),
        EngineError::ShuttingDown => JobError::Cancelled,
        other => JobError::Fatal(other.to_string()),
    }
}

fn store_error(e: StoreError) -> JobError {
    match e {
        StoreError::Busy | StoreError::Closed => JobError::Retry("the database was busy".into()),
        other => {
            tracing::error!(error = %other, "a transcription job hit a database error");
            JobError::Retry("a database error occurred".into())
        }
    }
}
