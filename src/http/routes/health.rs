//! Liveness, readiness and metrics endpoints (for systemd, load balancers, Prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::{self, AppState};
use crate::telemetry;

/// `GET /healthz`: 200 while the process runs and its runtime answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every check passes, else 503 listing the failing ones.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let checks = state.readiness().await;
    let ready = app::is_ready(&checks);
    let failing: Vec<_> = checks
        .iter()
        .filter(|c| c.status == crate::health::Status::Fail)
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
        "failing": failing,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text exposition format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let process = tokio::task::spawn_blocking(telemetry::process_stats)
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&process),
    )
        .into_response()
}
