//! The jobs API: list, inspect and cancel background jobs, and follow one live as
//! server-sent events. Users see their own jobs; administrators see every job.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::store::jobs::Job;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Path, Query};

/// A job as the API shows it (with the document it works on, when it has one).
pub fn job_json(job: &Job) -> Value {
    let mut value = json!(job);
    if let Some(document) = crate::jobs::payload_id(job, "document_id") {
        value["document_id"] = json!(document);
    }
    value
}

/// `GET /api/v1/jobs` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/jobs`.
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            "`limit` must be from 1 to 200",
        ));
    }
    if let Some(s) = &q.state
        && !matches!(
            s.as_str(),
            "queued" | "running" | "done" | "failed" | "cancelled"
        )
    {
        return Err(ApiError::bad_field(
            "state",
            "`state` must be queued, running, done, failed or cancelled",
        ));
    }
    let jobs = state
        .store
        .list_jobs(caller.owner_filter(), q.state, q.before, limit)
        .await?;
    let jobs: Vec<Value> = jobs.iter().map(job_json).collect();
    Ok(axum::Json(json!({ "jobs": jobs })))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, ApiError> {
    let job = state.store.job(id, caller.owner_filter()).await?;
    Ok(axum::Json(job_json(&job)))
}

/// `DELETE /api/v1/jobs/{id}`: cancels it (a job that has ended stays as it is).
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let job = state.jobs.cancel(id, caller.owner_filter()).await?;
    // A queued transcription never runs to delete its recording itself.
    if job.state == "cancelled" && job.kind == crate::store::transcripts::TRANSCRIBE_JOB {
        state.speech.forget_recording(&job).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/jobs/{id}/events`: the job now, then every change, as `job` events,
/// until it ends.
pub async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    // Subscribe first, then read: no change can fall between the two.
    let mut changes = state.jobs.subscribe();
    let job = state.store.job(id, caller.owner_filter()).await?;
    let store = state.store.clone();
    let first = job.clone();
    let updates = async_stream(move |tx| async move {
        if first.is_terminal() {
            return;
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await;
            let job = match next {
                Ok(Ok(job)) if job.id == id => job,
                Ok(Ok(_)) => continue,
                // Missed some changes, or quiet for a while: read the truth.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) | Err(_) => {
                    match store.job(id, None).await {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                }
                Ok(Err(_)) => return,
            };
            let end = job.is_terminal();
            if tx.send(job).await.is_err() || end {
                return;
            }
        }
    });
    let events = stream::once(async move { job }).chain(updates).map(|job| {
        Ok::<_, Infallible>(
            SseEvent::default()
                .event("job")
                .data(job_json(&job).to_string()),
        )
    });
    Ok(Sse::new(events)
        .keep_alive(SseKeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// A stream fed by a task (ends when the task does or the stream is dropped).
fn async_stream<F, Fut>(produce: F) -> impl futures_util::Stream<Item = Job>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Job>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(produce(tx));
    let abort = task.abort_handle();
    let guard = AbortOnDrop(abort);
    stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|job| (job, (rx, guard)))
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
