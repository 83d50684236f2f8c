//! The native transcripts API: recordings transcribed as durable jobs, their stored
//! transcripts (list, get, delete, export as text/SRT/VTT/JSON), and a transcript added
//! to a document collection in one call. Every query is filtered by owner: a user sees
//! only their own transcripts (administrators see all).

use std::time::Duration;

use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::audio::form::Upload;
use super::audio::formats::{self, Format, Granularity};
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::app::AppState;
use crate::auth::Principal;
use crate::documents::files::Incoming;
use crate::engine::Transcript;
use crate::engine::protocol::{SpeechOptions, SpeechSegment, SpeechTask};
use crate::speech::{new_recording, recording_path};
use crate::store::StoreError;
use crate::store::documents::NewDocument;
use crate::store::jobs::Job;
use crate::store::transcripts::{NewTranscript, Transcript as Stored};

/// The fields `POST /api/v1/transcripts` takes besides `file`.
const FIELDS: &[&str] = &[
    "model",
    "language",
    "prompt",
    "temperature",
    "task",
    "word_timestamps",
];

/// Attempts a transcription job gets (a crashed or busy worker is retried).
const ATTEMPTS: u32 = 3;

/// `POST /api/v1/transcripts`: stores the recording and queues its transcription.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let multipart = super::audio::multipart(multipart)?;
    super::audio::audio_left(&state, &caller).await?;
    let dir = super::audio::upload_dir(&state.config.paths.data_dir);
    let form =
        super::audio::form::read(multipart, &dir, state.config.speech.max_file_bytes, FIELDS)
            .await?;
    let task = match form.get("task") {
        None | Some("transcribe") => SpeechTask::Transcribe,
        Some("translate") => SpeechTask::Translate,
        Some(_) => return Err(ApiError::bad_field("task", "`transcribe` or `translate`")),
    };
    let options = SpeechOptions {
        task,
        language: form.language()?,
        prompt: form.get("prompt").map(str::to_string),
        temperature: form.temperature()?,
        word_timestamps: form.flag("word_timestamps")?,
        max_seconds: state.config.speech.max_audio_secs as f64,
    };
    let model = super::audio::resolve_model(&state, form.get("model"), &options).await?;
    let (transcript, job) = submit(&state, &caller, form.upload, &model.name, &options).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"transcript": transcript, "job": job})),
    ))
}

/// Keeps the upload as a recording and queues its job.
async fn submit(
    state: &AppState,
    caller: &Principal,
    upload: Upload,
    model: &str,
    options: &SpeechOptions,
) -> Result<(Stored, Job), ApiError> {
    let recording = new_recording();
    let path = recording_path(&state.speech.config().recordings_dir, &recording)
        .ok_or_else(|| ApiError::Internal("a recording name was not a uuid".into()))?;
    let name = upload
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "recording".into());
    upload.keep_at(path.clone()).await?;
    let new = NewTranscript {
        user_id: caller.owner_id(),
        name,
        model: model.to_string(),
        task: match options.task {
            SpeechTask::Transcribe => "transcribe",
            SpeechTask::Translate => "translate",
        },
        options: json!({
            "language": options.language,
            "prompt": options.prompt,
            "temperature": options.temperature,
            "word_timestamps": options.word_timestamps,
        }),
        recording,
    };
    match state.store.create_transcript(new, ATTEMPTS).await {
        Ok(created) => {
            state.jobs.wake();
            Ok(created)
        }
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || fs_err::remove_file(path)).await;
            Err(e.into())
        }
    }
}

/// Queues a transcription job for an OpenAI request with long audio and waits for it;
/// the job goes on if the client leaves.
pub async fn submit_and_wait(
    state: &AppState,
    caller: &Principal,
    upload: Upload,
    model: &str,
    options: &SpeechOptions,
) -> Result<Transcript, ApiError> {
    // Subscribe before the job exists: its end cannot be missed.
    let mut changes = state.jobs.subscribe();
    let (stored, job) = submit(state, caller, upload, model, options).await?;
    let mut state_now = job.state.clone();
    while !matches!(state_now.as_str(), "done" | "failed" | "cancelled") {
        match tokio::time::timeout(Duration::from_secs(5), changes.recv()).await {
            Ok(Ok(j)) if j.id == job.id => state_now = j.state,
            Ok(Ok(_)) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return Err(ApiError::Unavailable {
                    message: "the daemon is shutting down".into(),
                    retry_after_secs: 5,
                });
            }
            // Lagged or quiet: read the truth.
            _ => state_now = state.store.job(job.id, None).await?.state,
        }
    }
    let done = state.store.transcript(stored.id, None).await?;
    match done.state.as_str() {
        "done" => Ok(transcript_of(&done)),
        _ => Err(ApiError::BadRequest {
            message: done
                .error
                .unwrap_or_else(|| "the transcription did not finish".into()),
            param: Some("file".into()),
        }),
    }
}

/// Paging for the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only transcripts older than this id.
    before: Option<i64>,
    /// At most this many (1–200, default 50).
    limit: Option<u32>,
    /// Administrators: every user's transcripts, not only their own.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/transcripts[?all=true]`.
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_field("limit", "a number from 1 to 200"));
    }
    // Everyone's own by default; administrators may ask for all.
    let owner = if q.all {
        caller.owner_filter()
    } else {
        caller.owner_id()
    };
    let items = state.store.list_transcripts(owner, q.before, limit).await?;
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|t| t.id))
        .flatten();
    Ok(axum::Json(
        json!({"transcripts": items, "next_before": next}),
    ))
}

/// `GET /api/v1/transcripts/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(json!(
        state.store.transcript(id, caller.owner_filter()).await?
    )))
}

/// `DELETE /api/v1/transcripts/{id}`: cancels its job if it is still running.
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let transcript = state
        .store
        .delete_transcript(id, caller.owner_filter())
        .await?;
    if let Some(job_id) = transcript.job_id
        && let Ok(job) = state.jobs.cancel(job_id, None).await
    {
        state.speech.forget_recording(&job).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `?format=` of an export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// text, srt, vtt, json or verbose_json (default text).
    format: Option<String>,
}

/// `GET /api/v1/transcripts/{id}/export?format=srt|vtt|text|json|verbose_json`, as a
/// download.
pub async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format_name = q.format.as_deref().unwrap_or("text");
    let format = Format::parse(format_name).ok_or_else(|| {
        ApiError::bad_field("format", "one of text, srt, vtt, json, verbose_json")
    })?;
    let stored = done(&state, &caller, id).await?;
    let transcript = transcript_of(&stored);
    let words = transcript.segments.iter().any(|s| !s.words.is_empty());
    let body = formats::render(
        format,
        &transcript,
        if stored.task == "translate" {
            SpeechTask::Translate
        } else {
            SpeechTask::Transcribe
        },
        Granularity {
            segments: true,
            words,
        },
        stored
            .options
            .get("temperature")
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as f32,
    );
    let extension = match format {
        Format::Text => "txt",
        Format::Srt => "srt",
        Format::Vtt => "vtt",
        Format::Json | Format::VerboseJson => "json",
    };
    let file = format!("{}.{extension}", download_stem(&stored.name));
    Ok((
        [
            (CONTENT_TYPE, format.content_type().to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// `POST /api/v1/transcripts/{id}/collection` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToCollection {
    collection_id: i64,
}

/// `POST /api/v1/transcripts/{id}/collection`: adds the transcript (with its times) to
/// a collection as a Markdown document, indexed like any upload.
pub async fn to_collection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Json(req): Json<ToCollection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    // The route needs `documents`; reading the transcript needs `audio` as well.
    if !caller.has_scope(crate::auth::Scope::Audio) {
        return Err(ApiError::Forbidden(
            "this API key does not have the `audio` scope".into(),
        ));
    }
    let stored = done(&state, &caller, id).await?;
    let collection = state
        .store
        .collection(req.collection_id, caller.owner_filter())
        .await?;
    if !collection.writable {
        return Err(StoreError::ReadOnly("collection").into());
    }
    let markdown = markdown(&stored, &transcript_of(&stored).segments);
    let dir = state.documents.config().files_dir.clone();
    let limit = state.documents.config().max_file_bytes;
    let file = tokio::task::spawn_blocking(move || {
        let mut incoming = Incoming::start(&dir, limit)?;
        incoming.write(markdown.as_bytes())?;
        incoming.finish()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("storing a transcript as a document: {e}")))?;
    let new = NewDocument {
        sha256: file.sha256,
        name: format!("{}.md", download_stem(&stored.name)),
        media_type: "markdown".into(),
        size: file.size as i64,
        source_url: None,
    };
    let (document, duplicate) = state
        .store
        .add_document(
            req.collection_id,
            caller.owner_filter(),
            caller.owner_id(),
            new,
        )
        .await?;
    state.jobs.wake();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"document": document, "duplicate": duplicate})),
    ))
}

/// A transcript the caller may read, finished.
async fn done(state: &AppState, caller: &Principal, id: i64) -> Result<Stored, ApiError> {
    let stored = state.store.transcript(id, caller.owner_filter()).await?;
    if stored.state != "done" {
        return Err(ApiError::BadRequest {
            message: format!("the transcript is {}, not done", stored.state),
            param: None,
        });
    }
    Ok(stored)
}

/// A stored transcript as the formatters take it.
fn transcript_of(stored: &Stored) -> Transcript {
    let segments: Vec<SpeechSegment> =
        serde_json::from_value(stored.segments.clone()).unwrap_or_default();
    Transcript {
        language: stored.language.clone().unwrap_or_else(|| "en".into()),
        seconds: stored.duration.unwrap_or(0.0),
        segments,
        decode_ms: 0.0,
        inference_ms: 0.0,
    }
}

/// The transcript as a document: a title, then one paragraph per segment headed by its
/// time, so a cited passage says where in the recording it is.
fn markdown(stored: &Stored, segments: &[SpeechSegment]) -> String {
    let mut out = format!("# Transcript of {}\n\n", stored.name.replace('\n', " "));
    for s in segments {
        let text = s.text.trim();
        if text.is_empty() {
            continue;
        }
        let t = s.start.max(0.0) as u64;
        out.push_str(&format!(
            "[{:02}:{:02}:{:02}] {text}\n\n",
            t / 3600,
            t / 60 % 60,
            t % 60
        ));
    }
    out
}

/// A file name safe in a Content-Disposition header: the recording's name without its
/// extension, plain characters only.
fn download_stem(name: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if clean.trim().is_empty() {
        "transcript".into()
    } else {
        clean
    }
}
