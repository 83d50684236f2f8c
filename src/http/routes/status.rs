//! The daemon's own status and runtime controls (`/api/v1/status`, `/api/v1/log-level`),
//! used by `appliance status` and the status page.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{AppState, VERSION};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Json;

/// `GET /api/v1/status`.
pub async fn status(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let instance_id = state.store.meta("instance_id").await?;
    let loaded = state.engine.loaded().await;
    let paths = &state.config.paths;
    let started_at = jiff::Timestamp::try_from(state.started_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(axum::Json(json!({
        "version": VERSION,
        "pid": std::process::id(),
        "instance_id": instance_id,
        "started_at": started_at,
        "uptime_seconds": state.metrics.uptime().as_secs_f64(),
        "url": state.config.local_url(),
        "paths": {
            "data_dir": paths.data_dir,
            "database": state.store.path(),
            "models_dir": paths.models_dir,
            "log_dir": paths.log_dir,
            "runtime_dir": paths.runtime_dir,
            "unix_socket": state.config.unix_socket_path(),
        },
        "models": { "loaded": loaded.iter().map(|m| &m.name).collect::<Vec<_>>(), "workers": loaded },
        "queue": {
            "waiting": loaded.iter().map(|m| m.waiting).sum::<usize>(),
            "running": loaded.iter().map(|m| m.running).sum::<usize>(),
        },
        "log_level": state.log_level.current(),
        "previous_run_unclean": state.unclean_previous_run,
        "gpu": gpu_summary(&state),
        "plan": &*state.plan.read(),
    })))
}

/// One line about the GPUs for `status`.
fn gpu_summary(state: &AppState) -> Value {
    let snapshot = state.gpu.latest();
    json!({
        "state": snapshot.state,
        "reason": snapshot.reason,
        "devices": snapshot.devices.iter().map(|d| json!({
            "index": d.index,
            "name": d.name,
            "memory_total_bytes": d.memory_total_bytes,
            "memory_free_bytes": d.memory_free_bytes,
        })).collect::<Vec<_>>(),
        "cuda_build": state.engine.config().budget.offload,
    })
}

/// `GET /api/v1/gpu`: the devices as the driver reports them (our processes marked),
/// the VRAM budget, the models holding it, the load queue and the start-up plan.
pub async fn gpu(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let view = state
        .engine
        .gpu_view()
        .await
        .ok_or_else(|| ApiError::Unavailable {
            message: "the scheduler did not answer; retry".into(),
            retry_after_secs: 1,
        })?;
    let workers: Vec<(u32, String)> = state
        .engine
        .loaded()
        .await
        .into_iter()
        .map(|m| (m.pid, m.name))
        .collect();
    let mut snapshot = (*state.gpu.latest()).clone();
    snapshot.mark_ours(std::process::id(), &workers);
    let mut report =
        serde_json::to_value(&snapshot).map_err(|e| ApiError::Internal(e.to_string()))?;
    report["cuda_build"] = json!(state.engine.config().budget.offload);
    report["budget"] = json!(view.budget);
    report["resident"] = json!(view.resident);
    report["queue"] = json!(view.queue);
    report["plan"] = json!(&*state.plan.read());
    Ok(axum::Json(report))
}

/// `GET /api/v1/system`: CPU, memory, disk and GPU samples of the last minutes.
pub async fn system(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({
        "interval_secs": crate::monitor::INTERVAL_SECS,
        "samples": state.monitor.samples(),
    }))
}

/// Body of `PUT /api/v1/log-level`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLevelRequest {
    /// A tracing filter, e.g. `debug` or `info,appliance::http=trace`.
    pub level: String,
}

/// `PUT /api/v1/log-level`: changes the log filter without a restart.
pub async fn set_log_level(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<LogLevelRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    if body.level.len() > 512 {
        return Err(ApiError::bad_field(
            "level",
            "`level` is longer than 512 characters",
        ));
    }
    state
        .log_level
        .set(&body.level)
        .map_err(|e| ApiError::bad_field("level", e.to_string()))?;
    tracing::info!(level = %body.level, "log level changed");
    crate::http::accounts::audit(
        &state,
        Some(&caller.name),
        "config.log_level",
        Some("log.level"),
        None,
        true,
        json!({"level": body.level}),
    );
    Ok(axum::Json(json!({ "level": state.log_level.current() })))
}

/// `GET /api/v1/log-level`.
pub async fn get_log_level(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({ "level": state.log_level.current() }))
}
