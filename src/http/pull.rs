//! Ollama's `POST /api/pull` (administrators): downloads a GGUF model from Hugging Face
//! (or the configured mirror) through [`crate::models::pull`].
//!
//! Everything that can refuse a pull (the reference, the listing, the size bound, disk
//! space, a name clash) is decided before the first byte of the answer, so it gets a
//! proper status and `{"error": …}`. Then progress streams as NDJSON in Ollama's shape
//! (`pulling manifest`, `pulling <digest>` with `total`/`completed`, `verifying sha256
//! digest`, `writing manifest`, `success`), and a failure after that is an
//! `{"error": …}` line. With `"stream": false` the answer is one object once done.
//! A client that goes away cancels the download; the partial file is resumed by the
//! next pull of the same file.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Extensions, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::app::AppState;
use crate::models::pull::{PullError, PullEvent};

use super::accounts::audit;
use super::auth::{Caller, client_ip};
use super::error::ApiError;
use super::extract::LenientJson as Json;
use super::ollama::OllamaError;

/// Body of `POST /api/pull`.
#[derive(Debug, Deserialize)]
pub struct PullRequest {
    #[serde(default)]
    model: Option<String>,
    /// The older name of `model`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    /// Ollama's "allow an insecure registry": meaningless for the hub (its URL is
    /// configured), accepted and ignored.
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted for Ollama clients; see the field comment"
    )]
    insecure: Option<bool>,
}

fn ndjson_line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn event_line(event: &PullEvent) -> Value {
    match event {
        PullEvent::Status(status) => json!({ "status": status }),
        PullEvent::Progress {
            digest,
            total,
            completed,
        } => {
            // Ollama names a layer by the first 12 hex digits of its digest.
            let short: String = digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            json!({
                "status": format!("pulling {short}"),
                "digest": digest,
                "total": total,
                "completed": completed,
            })
        }
    }
}

/// `POST /api/pull`.
pub async fn pull(
    State(state): State<AppState>,
    Caller(caller): Caller,
    extensions: Extensions,
    Json(req): Json<PullRequest>,
) -> Result<Response, OllamaError> {
    let reference = req.model.or(req.name).unwrap_or_default();
    if reference.trim().is_empty() {
        return Err(ApiError::bad_field(
            "model",
            format!(
                "`model` is required: {}",
                crate::models::pull::reference::FORMS
            ),
        )
        .into());
    }
    let shown: String = reference.chars().take(200).collect();
    let ip = client_ip(&extensions);
    let plan = match state.puller.plan(&reference).await {
        Ok(plan) => plan,
        Err(e) => {
            audit(
                &state,
                Some(&caller.name),
                "model.pull",
                Some(&shown),
                ip,
                false,
                json!({"reference": shown, "error": audit_error(&e)}),
            );
            return Err(ApiError::Pull(e).into());
        }
    };
    let detail = json!({
        "reference": plan.reference.to_string(),
        "file": plan.file.path,
        "sha256": plan.sha256,
        "bytes": plan.file.size,
        "resumed_from": plan.resumed_from,
        "already_installed": plan.installed.is_some(),
    });
    let name = plan.name.clone();
    let (events, received) = mpsc::channel::<PullEvent>(16);
    let (finished, outcome) = oneshot::channel::<Result<(), PullError>>();
    let puller = state.puller.clone();
    let audit_state = state.clone();
    let actor = caller.name.clone();
    tokio::spawn(async move {
        let result = puller.run(plan, &events).await.map(|info| {
            tracing::info!(model = %info.name, "pulled a model");
        });
        let mut detail = detail;
        if let Err(e) = &result {
            detail["error"] = json!(audit_error(e));
            if !matches!(e, PullError::Cancelled) {
                tracing::warn!(error = %e, "a pull failed");
            }
        }
        audit(
            &audit_state,
            Some(&actor),
            "model.pull",
            Some(&name),
            ip,
            result.is_ok(),
            detail,
        );
        let _ = finished.send(result);
    });
    let progress = stream::unfold(received, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    });
    if !req.stream.unwrap_or(true) {
        // Drain the progress (the download waits for it), then answer once.
        progress.for_each(|_| async {}).await;
        return match outcome.await {
            Ok(Ok(())) => Ok(axum::Json(json!({"status": "success"})).into_response()),
            Ok(Err(e)) => Err(ApiError::Pull(e).into()),
            Err(_) => {
                Err(ApiError::Internal("the pull task ended without an answer".into()).into())
            }
        };
    }
    let last = stream::once(async move {
        match outcome.await {
            Ok(Ok(())) => json!({"status": "success"}),
            Ok(Err(e)) => json!({"error": ApiError::Pull(e).public_message()}),
            Err(_) => json!({"error": ApiError::Internal(String::new()).public_message()}),
        }
    });
    let lines = stream::once(async { json!({"status": "pulling manifest"}) })
        .chain(progress.map(|event| event_line(&event)))
        .chain(last)
        .map(|value| Ok::<_, Infallible>(ndjson_line(&value)));
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// A pull error as the audit log records it: what the client read, never paths.
fn audit_error(e: &PullError) -> String {
    match e {
        PullError::Io { .. } => "model storage error".into(),
        PullError::Internal(_) => "internal error".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_have_ollamas_shape() {
        let line = event_line(&PullEvent::Progress {
            digest: format!("sha256:{}", "ab".repeat(32)),
            total: 10,
            completed: 4,
        });
        assert_eq!(line["status"], "pulling abababababab");
        assert_eq!(line["total"], 10);
        assert_eq!(line["completed"], 4);
        assert_eq!(
            event_line(&PullEvent::Status("writing manifest")),
            json!({"status": "writing manifest"})
        );
    }
}
