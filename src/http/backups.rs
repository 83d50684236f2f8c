//! Backups over HTTP (administrators): list, make one now (a `backup.create` job whose
//! progress the jobs API streams), download, delete. Restores happen on the host
//! (`appliance restore`), never over HTTP: they need the daemon stopped.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::audit_by;
use crate::app::AppState;
use crate::backup::{self, BACKUP_JOB};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{Json, Path};

/// `GET /api/v1/backups`.
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let backups = state.backups.clone();
    let archives = tokio::task::spawn_blocking(move || backups.list())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let last = archives
        .first()
        .and_then(|b| b.manifest.created_at.parse::<jiff::Timestamp>().ok());
    let backups = &state.backups;
    Ok(axum::Json(json!({
        "dir": backups.dir(),
        "schedule_hours": backups.schedule().hours(),
        "keep": backups.keep(),
        "last_success_at": last.map(|t| t.to_string()),
        "next_due_at": backups.schedule().next_due(last).map(|t| t.to_string()),
        "overdue": backups.schedule().overdue(last),
        "running_job": backups.running_job().await,
        "backups": archives.iter().map(|b| json!({
            "name": b.name,
            "created_at": b.manifest.created_at,
            "bytes": b.bytes,
            "kind": b.manifest.kind,
            "app_version": b.manifest.app_version,
            "schema_version": b.manifest.schema_version,
            "with_models": b.manifest.with_models,
            "files": b.manifest.members.len().saturating_sub(1),
            "rows": b.manifest.rows,
        })).collect::<Vec<_>>(),
    })))
}

/// Body of `POST /api/v1/backups`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Copy the model files too.
    #[serde(default)]
    with_models: bool,
}

/// `POST /api/v1/backups`: queues a backup now; 409 while one is queued or running.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    if let Some(id) = state.backups.running_job().await {
        return Err(ApiError::Conflict(format!(
            "a backup is already queued or running (job {id}); wait for it"
        )));
    }
    let job = state
        .store
        .create_job(
            BACKUP_JOB,
            Some(caller.user_id),
            json!({"kind": "manual", "with_models": body.with_models, "actor": caller.name}),
            1,
        )
        .await?;
    state.jobs.wake();
    audit_by(
        &state,
        &caller,
        "backup.request",
        None,
        json!({"job": job.id, "with_models": body.with_models}),
    );
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"job_id": job.id}))).into_response())
}

/// `GET /api/v1/backups/{name}`: the archive as a download.
pub async fn download(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let path = archive(&state, &name)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!("no backup named `{name}`")));
        }
        Err(e) => return Err(ApiError::Internal(format!("opening a backup: {e}"))),
    };
    let bytes = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    audit_by(&state, &caller, "backup.download", Some(&name), json!({}));
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zstd"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    // The name passed `archive_path`'s check: plain ASCII letters, digits, - _ .
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `DELETE /api/v1/backups/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let path = archive(&state, &name)?;
    let dir = state.backups.dir().to_path_buf();
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let deleted = tokio::task::spawn_blocking(move || backup::delete(&dir, &file))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("deleting a backup: {e}")))?;
    if !deleted {
        return Err(ApiError::NotFound(format!("no backup named `{name}`")));
    }
    audit_by(&state, &caller, "backup.delete", Some(&name), json!({}));
    Ok(StatusCode::NO_CONTENT)
}

/// The archive a client names, only if the name is a plain archive file name.
fn archive(state: &AppState, name: &str) -> Result<std::path::PathBuf, ApiError> {
    backup::archive_path(state.backups.dir(), name).map_err(|_| {
        ApiError::bad_field(
            "name",
            "not a backup archive name (appliance-….tar.zst: letters, digits, - _ .)",
        )
    })
}
