//! Liveness, readiness and metrics endpoints (for systemd, load balancers, Prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::{self, AppState};
use crate::telemetry::{self, Gauge};

/// `GET /healthz`: 200 while the process runs and its runtime answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every check passes, else 503 listing the failing ones.
/// Anyone sees each check's name and status; only administrators see the details
/// (paths, free space, hints).
pub async fn readyz(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> Response {
    let checks = state.readiness().await;
    let ready = app::is_ready(&checks);
    let detailed = principal.is_some_and(|p| p.is_admin());
    let shown: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            if detailed {
                json!(c)
            } else {
                json!({"name": c.name, "status": c.status})
            }
        })
        .collect();
    let failing: Vec<_> = shown
        .iter()
        .filter(|c| c["status"] == "fail")
        .cloned()
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": shown,
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
    let loaded = state.engine.loaded().await;
    let per_model = |value: fn(&crate::engine::LoadedModel) -> f64| -> Vec<(String, f64)> {
        loaded
            .iter()
            .map(|m| {
                let name = m.name.replace(['"', '\\', '\n'], "_");
                let kind = match m.kind {
                    crate::engine::ModelKind::Chat => "chat",
                    crate::engine::ModelKind::Embedding => "embedding",
                    crate::engine::ModelKind::Speech => "speech",
                };
                (format!("model=\"{name}\",kind=\"{kind}\""), value(m))
            })
            .collect()
    };
    let jobs: Vec<(String, f64)> = state
        .store
        .job_counts()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, job_state, _)| matches!(job_state.as_str(), "queued" | "running"))
        .map(|(kind, job_state, n)| {
            let kind = kind.replace(['"', '\\', '\n'], "_");
            (format!("kind=\"{kind}\",state=\"{job_state}\""), n as f64)
        })
        .collect();
    let gauges = [
        Gauge {
            name: "appliance_jobs",
            help: "Background jobs queued or running, by kind and state (the queue depth).",
            samples: jobs,
        },
        Gauge {
            name: "appliance_llm_loaded_models",
            help: "Models loaded in worker processes (chat, embedding and speech).",
            samples: vec![(String::new(), loaded.len() as f64)],
        },
        Gauge {
            name: "appliance_llm_requests_running",
            help: "Requests running in a worker (generations holding a slot, embeddings, transcriptions), by model and kind.",
            samples: per_model(|m| m.running as f64),
        },
        Gauge {
            name: "appliance_llm_requests_waiting",
            help: "Admitted requests waiting for a place in their worker, by model and kind.",
            samples: per_model(|m| m.waiting as f64),
        },
        Gauge {
            name: "appliance_llm_slots",
            help: "Requests a loaded model runs at once (chat slots, speech states), by model and kind.",
            samples: per_model(|m| m.slots as f64),
        },
    ];
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&process, &gauges),
    )
        .into_response()
}
