//! OpenAI's audio API: `POST /v1/audio/transcriptions` and `/v1/audio/translations`.
//!
//! The upload streams to a private temporary file (never whole in memory), which the
//! speech worker reads; the file is deleted when the request ends, however it ends.
//! Every form field is checked before the worker is asked anything: unknown fields,
//! bad values and fields this server does not implement get a 400 naming the field.
//! The response status is decided only once the worker has read the audio, so bad
//! audio is a 400 and an exhausted audio quota a 429 even when streaming.
//!
//! Audio longer than `speech.job_threshold_secs` is handed to a `speech.transcribe`
//! job and the request waits for it: the transcript is stored for its owner and
//! survives the client going away or the daemon restarting.

pub mod form;
pub mod formats;

use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::header::CONTENT_TYPE;
use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;

use self::form::Upload;
use self::formats::{Format, Granularity};
use super::auth::Caller;
use super::error::ApiError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::engine::protocol::{SpeechOptions, SpeechTask};
use crate::engine::{ModelKind, ModelSpec, SpeechEvent, SpeechRequest, Transcription};
use crate::limits::AudioReservation;

/// The fields OpenAI's audio endpoints take besides `file`.
const FIELDS: &[&str] = &[
    "model",
    "language",
    "prompt",
    "temperature",
    "response_format",
    "stream",
    "timestamp_granularities[]",
];

/// `POST /v1/audio/transcriptions`.
pub async fn transcriptions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    handle(state, caller, multipart, SpeechTask::Transcribe).await
}

/// `POST /v1/audio/translations`: English text from speech in any language.
pub async fn translations(
    State(state): State<AppState>,
    Caller(caller): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    handle(state, caller, multipart, SpeechTask::Translate).await
}

/// The multipart body, or a 415 saying how to send one.
pub fn multipart(multipart: Result<Multipart, MultipartRejection>) -> Result<Multipart, ApiError> {
    multipart.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "send the audio as multipart/form-data with a part named `file` ({})",
            e.body_text()
        ))
    })
}

/// The OpenAI form, checked.
struct Request {
    upload: Upload,
    model: Option<String>,
    options: SpeechOptions,
    format: Format,
    granularity: Granularity,
    stream: bool,
}

async fn handle(
    state: AppState,
    caller: Principal,
    multipart: Result<Multipart, MultipartRejection>,
    task: SpeechTask,
) -> Result<Response, ApiError> {
    let multipart = self::multipart(multipart)?;
    // An exhausted quota is refused before the upload is stored.
    audio_left(&state, &caller).await?;
    let request = read_request(&state, multipart, task).await?;
    let model = resolve_model(&state, request.model.as_deref(), &request.options).await?;
    let speech = SpeechRequest {
        model: model.clone(),
        user: caller.user_id,
        audio: request.upload.path.clone(),
        name: request.upload.name.clone(),
        options: request.options.clone(),
        keep_alive: None,
    };
    let mut transcription = state.engine.transcribe(speech).await?;
    // Wait for the audio to be read: bad audio and the quota decide the status.
    let seconds = loop {
        match transcription.next().await {
            Some(Ok(SpeechEvent::Decoded { seconds, .. })) => break seconds,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ApiError::Internal("the transcription ended early".into())),
        }
    };
    let render = |transcript: &crate::engine::Transcript| {
        let body = formats::render(
            request.format,
            transcript,
            task,
            request.granularity,
            request.options.temperature,
        );
        ([(CONTENT_TYPE, request.format.content_type())], body).into_response()
    };
    if !request.stream && seconds > state.config.speech.job_threshold_secs as f64 {
        drop(transcription);
        let transcript = super::transcripts::submit_and_wait(
            &state,
            &caller,
            request.upload,
            &model.name,
            &request.options,
        )
        .await?;
        return Ok(render(&transcript));
    }
    let reservation = state
        .limits
        .reserve_audio(caller.user_id, seconds)
        .await?
        .map_err(|e| quota_error(&caller, e))?;
    let running = Running {
        transcription,
        reservation,
        _upload: request.upload,
    };
    if request.stream {
        return Ok(stream_response(running));
    }
    let transcript = running.finish().await?;
    Ok(render(&transcript))
}

/// Refuses a caller whose daily audio minutes are spent.
pub async fn audio_left(state: &AppState, caller: &Principal) -> Result<(), ApiError> {
    state
        .limits
        .audio_left(caller.user_id)
        .await?
        .map_err(|e| quota_error(caller, e))
}

async fn read_request(
    state: &AppState,
    multipart: Multipart,
    task: SpeechTask,
) -> Result<Request, ApiError> {
    let dir = upload_dir(&state.config.paths.data_dir);
    let form = form::read(multipart, &dir, state.config.speech.max_file_bytes, FIELDS).await?;
    let format = match form.get("response_format") {
        None => Format::Json,
        Some(value) => Format::parse(value).ok_or_else(|| {
            ApiError::bad_field(
                "response_format",
                "one of json, text, srt, vtt, verbose_json",
            )
        })?,
    };
    let mut granularity = Granularity::default();
    for g in &form.granularities {
        match g.trim() {
            "segment" => granularity.segments = true,
            "word" => granularity.words = true,
            _ => {
                return Err(ApiError::bad_field(
                    "timestamp_granularities[]",
                    "`segment` or `word`",
                ));
            }
        }
    }
    if !form.granularities.is_empty() && format != Format::VerboseJson {
        return Err(ApiError::bad_field(
            "timestamp_granularities[]",
            "timestamps need response_format `verbose_json`",
        ));
    }
    if task == SpeechTask::Translate && granularity.words {
        return Err(ApiError::bad_field(
            "timestamp_granularities[]",
            "word timestamps are available for transcriptions, not translations",
        ));
    }
    let stream = form.flag("stream")?;
    if stream && !matches!(format, Format::Json | Format::Text) {
        return Err(ApiError::bad_field(
            "stream",
            "streaming sends text deltas; use response_format `json` or `text`",
        ));
    }
    let options = SpeechOptions {
        task,
        language: form.language()?,
        prompt: form.get("prompt").map(str::to_string),
        temperature: form.temperature()?,
        word_timestamps: granularity.words,
        max_seconds: state.config.speech.max_audio_secs as f64,
    };
    Ok(Request {
        model: form.get("model").map(str::to_string),
        upload: form.upload,
        options,
        format,
        granularity,
        stream,
    })
}

/// A transcription under way with what it holds: the quota it reserved and the file.
struct Running {
    transcription: Transcription,
    reservation: Option<AudioReservation>,
    _upload: Upload,
}

impl Running {
    async fn finish(mut self) -> Result<crate::engine::Transcript, ApiError> {
        loop {
            match self.transcription.next().await {
                Some(Ok(SpeechEvent::Done(transcript))) => {
                    if let Some(r) = self.reservation.take() {
                        r.settle();
                    }
                    return Ok(transcript);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ApiError::Internal("the transcription ended early".into())),
            }
        }
    }
}

/// OpenAI's streamed transcription: `transcript.text.delta` events as whisper finishes
/// each segment, then `transcript.text.done` with the whole text (or an `error` event).
fn stream_response(running: Running) -> Response {
    let events = stream::unfold(Some(running), |running| async move {
        let mut running = running?;
        loop {
            match running.transcription.next().await {
                Some(Ok(SpeechEvent::Segment(segment))) => {
                    let event = json!({"type": "transcript.text.delta", "delta": segment.text});
                    return Some((event, Some(running)));
                }
                Some(Ok(SpeechEvent::Done(transcript))) => {
                    if let Some(r) = running.reservation.take() {
                        r.settle();
                    }
                    let event = json!({
                        "type": "transcript.text.done",
                        "text": transcript.text(),
                        "usage": formats::usage(transcript.seconds),
                    });
                    return Some((event, None));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    let e = ApiError::from(e);
                    let event = json!({"type": "error", "error": {"message": e.public_message()}});
                    return Some((event, None));
                }
                None => return None,
            }
        }
    });
    let events = futures_util::StreamExt::map(events, |value| {
        Ok::<_, std::convert::Infallible>(SseEvent::default().data(value.to_string()))
    });
    Sse::new(events)
        .keep_alive(SseKeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}

pub fn quota_error(caller: &Principal, exceeded: crate::limits::Exceeded) -> ApiError {
    ApiError::TooManyRequests {
        message: format!(
            "user `{}` has used {}; it resets at midnight UTC",
            caller.name, exceeded.what
        ),
        retry_after_secs: exceeded.retry_after_secs,
    }
}

/// The speech model a request names (`whisper-1`, `default` or nothing: the configured
/// one), checked against what the options ask of it.
pub async fn resolve_model(
    state: &AppState,
    name: Option<&str>,
    options: &SpeechOptions,
) -> Result<ModelSpec, ApiError> {
    let wanted = match name.map(str::trim) {
        None | Some("" | "default" | "whisper-1") => state.config.speech.default_model.clone(),
        Some(other) => other.to_string(),
    };
    let registry = state.registry.clone();
    let info = tokio::task::spawn_blocking(move || registry.find_transcriber(&wanted))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    if !info.multilingual {
        if options.task == SpeechTask::Translate {
            return Err(ApiError::bad_field(
                "model",
                format!(
                    "`{}` is an English-only model; it cannot translate",
                    info.name
                ),
            ));
        }
        if options.language.as_deref().is_some_and(|l| l != "en") {
            return Err(ApiError::bad_field(
                "language",
                format!("`{}` is an English-only model", info.name),
            ));
        }
    }
    Ok(ModelSpec {
        name: info.name,
        path: info.path,
        kind: ModelKind::Speech,
    })
}

/// The directory uploads wait in while they are transcribed.
pub fn upload_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("audio-uploads")
}
