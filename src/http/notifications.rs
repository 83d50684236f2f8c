//! Notifications over HTTP: what is configured and what was sent (administrators), a
//! test send, and the live event stream (`/api/v1/events`: every signed-in user's own
//! job updates; administrators also get every job and the notifications).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
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
    let entries = state
        .store
        .audit_log_of(&["notification.sent", "notification.failed"], 100)
        .await?;
    let recent: Vec<Value> = entries
        .iter()
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

/// `GET /api/v1/events`: the live event stream until the client goes away, as
/// server-sent events, or as a WebSocket when the request asks to upgrade (each text
/// message `{"event": "job" | "notification", "data": {…}}`; what the client sends is
/// ignored, a close ends it). Browsers cannot set headers on a WebSocket, so the
/// session cookie signs it in, and the same-origin check of state-changing requests
/// applies to the upgrade (see `defences`).
pub async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    headers: HeaderMap,
) -> Response {
    let live = live_events(&state, caller.is_admin(), caller.owner_filter());
    if !super::defences::is_websocket_upgrade(&headers) {
        let events = live
            .map(|(kind, data)| Ok::<_, Infallible>(SseEvent::default().event(kind).data(data)));
        return Sse::new(events)
            .keep_alive(SseKeepAlive::new().interval(KEEP_ALIVE))
            .into_response();
    }
    match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(64 << 10)
            .on_upgrade(move |socket| websocket(socket, live)),
        Err(rejection) => ApiError::BadRequest {
            message: format!(
                "the WebSocket upgrade is malformed: {}",
                rejection.body_text()
            ),
            param: None,
        }
        .into_response(),
    }
}

/// Pings on a quiet stream, so proxies keep it open and dead peers are noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The caller's events as (kind, JSON text): their own jobs (every job for
/// administrators) and, for administrators, the notifications.
fn live_events(
    state: &AppState,
    admin: bool,
    owner: Option<i64>,
) -> impl Stream<Item = (&'static str, String)> + Send + Unpin + 'static {
    let jobs = state.jobs.subscribe();
    let notes = state.notifier.subscribe();
    let job_events = stream::unfold(jobs, move |mut jobs| async move {
        loop {
            match jobs.recv().await {
                Ok(job) if owner.is_none() || job.user_id == owner => {
                    return Some((("job", job_json(&job).to_string()), jobs));
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
                    return Some((("notification", json!(note).to_string()), notes));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    stream::select(Box::pin(job_events), Box::pin(note_events))
}

/// Feeds one WebSocket until either side ends: events out, a ping when quiet, and
/// the client's frames read only for close (pongs are answered by the library).
async fn websocket(
    mut socket: WebSocket,
    mut live: impl Stream<Item = (&'static str, String)> + Unpin,
) {
    let mut quiet = tokio::time::interval(KEEP_ALIVE);
    quiet.tick().await;
    loop {
        let outgoing = tokio::select! {
            event = live.next() => match event {
                Some((kind, data)) => Message::Text(format!("{{\"event\":\"{kind}\",\"data\":{data}}}").into()),
                None => break,
            },
            _ = quiet.tick() => Message::Ping(Vec::new().into()),
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        if socket.send(outgoing).await.is_err() {
            return;
        }
        quiet.reset();
    }
    let _ = socket.send(Message::Close(None)).await;
}
