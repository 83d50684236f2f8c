//! Notifications over HTTP: what is configured and what was sent (administrators), a
//! test send, and the live event stream (`/api/v1/events`: every signed-in user's own
//! job updates; administrators also get every job and the notifications).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::notify::{EVENTS, Severity};

use super::accounts::audit_by;
use super::auth::Caller;
use super::error::ApiError;
use super::jobs::job_json;

/// `GET /api/v1/notifications`.
pub async fn view(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let entries = state.store.audit_log(500, None).await?;
    let recent: Vec<Value> = entries
        .iter()
        .filter(|e| {
            matches!(
                e.action.as_str(),
                "notification.sent" | "notification.failed"
            )
        })
        .take(100)
        .map(|e| {
            json!({
                "at": e.at,
                "event": e.detail["event"],
                "title": e.detail["title"],
                "target": e.target,
                "success": e.success,
                "attempts": e.detail["attempts"],
                "status": e.detail["status"],
            })
        })
        .collect();
    let notifier = &state.notifier;
    Ok(axum::Json(json!({
        "targets": notifier.targets().iter().map(|t| json!({"kind": t.kind, "host": t.host})).collect::<Vec<_>>(),
        "min_interval_minutes": notifier.min_interval().as_secs() / 60,
        "events": EVENTS,
        "recent": recent,
    })))
}

/// `POST /api/v1/notifications/test`: sends a test notification to every target.
pub async fn test(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    let queued = state.notifier.notify(
        "test",
        "",
        Severity::Info,
        "Test notification",
        format!("sent by {} from the admin page", caller.name),
    );
    audit_by(
        &state,
        &caller,
        "notification.test",
        None,
        json!({"queued": queued}),
    );
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": queued}))).into_response())
}

/// `GET /api/v1/events`: server-sent events until the client goes away.
pub async fn events(State(state): State<AppState>, Caller(caller): Caller) -> Response {
    let admin = caller.is_admin();
    let owner = caller.owner_filter();
    let jobs = state.jobs.subscribe();
    let notes = state.notifier.subscribe();
    let job_events = stream::unfold(jobs, move |mut jobs| async move {
        loop {
            match jobs.recv().await {
                Ok(job) if owner.is_none() || job.user_id == owner => {
                    let event = SseEvent::default()
                        .event("job")
                        .data(job_json(&job).to_string());
                    return Some((event, jobs));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let note_events = stream::unfold(notes, move |mut notes| async move {
        loop {
            match notes.recv().await {
                Ok(note) if admin => {
                    let event = SseEvent::default()
                        .event("notification")
                        .data(json!(note).to_string());
                    return Some((event, notes));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let merged = stream::select(job_events, note_events).map(Ok::<_, Infallible>);
    Sse::new(merged)
        .keep_alive(SseKeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
