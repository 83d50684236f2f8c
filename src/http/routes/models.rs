//! Administrators' control of model residency: load (and pin) or unload a model.
//! Everyone else's requests can only keep a shared model loaded longer.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;

use super::super::accounts::audit_by;
use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::extract::{Json, Path};
use super::super::inference;

/// Body of `POST /api/v1/models/{name}/load`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBody {
    /// How long it stays loaded once idle; negative pins it until unloaded.
    #[serde(default)]
    keep_alive: Option<Value>,
}

/// `POST /api/v1/models/{name}/load`: loads a model now, with a keep-alive (negative:
/// pinned until an administrator unloads it).
pub async fn load(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Json(body): Json<LoadBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let (spec, _) = inference::resolve_model(&state, &name).await?;
    let keep_alive = inference::keep_alive(&state, &caller, body.keep_alive.as_ref())?.unwrap_or(
        crate::engine::KeepAliveRequest::set(state.engine.config().settings(&spec.name).keep_alive),
    );
    let took = state.engine.load(&spec, keep_alive).await?;
    audit_by(
        &state,
        &caller,
        "model.load",
        Some(&spec.name),
        json!({"keep_alive": body.keep_alive}),
    );
    Ok(axum::Json(
        json!({"model": spec.name, "loaded": true, "load_ms": took.as_millis() as u64}),
    ))
}

/// Body of `POST /api/v1/models/{name}/unload`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnloadBody {
    /// End the requests in flight at once instead of waiting for them.
    #[serde(default)]
    force: bool,
}

/// `POST /api/v1/models/{name}/unload`: unloads a model once its requests in flight
/// have finished (new ones wait and load it again), or at once with `force`.
pub async fn unload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    Json(body): Json<UnloadBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let (spec, _) = inference::resolve_model(&state, &name).await?;
    let was_loaded = state.engine.unload(&spec.name, body.force).await?;
    audit_by(
        &state,
        &caller,
        "model.unload",
        Some(&spec.name),
        json!({"force": body.force, "was_loaded": was_loaded}),
    );
    Ok(axum::Json(
        json!({"model": spec.name, "unloaded": was_loaded, "forced": body.force}),
    ))
}
