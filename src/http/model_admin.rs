//! Ollama's model management (administrators): `DELETE /api/delete`, `POST /api/copy`
//! and `POST /api/create`, over the registry and the settings sidecars of
//! [`crate::models::modelfile`]. Every change is audited.
//!
//! `create` makes a model from an installed one or from a GGUF file on the daemon's
//! host (an absolute path), with settings from the request's `system`, `template`,
//! `license`, `parameters` fields and/or a Modelfile (`FROM`, `SYSTEM`, `TEMPLATE`,
//! `PARAMETER`, `LICENSE`). Uploaded blobs (`files`), adapters, quantisation and
//! `messages` are refused by name.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::models::modelfile::{self, ModelfileError, Overrides};
use crate::models::registry::{self, RegistryError};

use super::accounts::audit;
use super::auth::{Caller, client_ip};
use super::error::ApiError;
use super::extract::LenientJson as Json;
use super::ollama::{self, OllamaError};

/// Longest model name or `from` value accepted.
const MAX_NAME: usize = 512;

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    let value = value.unwrap_or_default();
    if value.trim().is_empty() {
        return Err(ApiError::bad_field(field, format!("`{field}` is required")));
    }
    if value.len() > MAX_NAME {
        return Err(ApiError::bad_field(
            field,
            format!("`{field}` is longer than {MAX_NAME} bytes"),
        ));
    }
    Ok(value.trim().to_string())
}

fn settings_error(e: ModelfileError) -> ApiError {
    ApiError::BadRequest {
        message: e.0,
        param: None,
    }
}

/// A model's settings sidecar (none when it has none or it cannot be read; a broken
/// one is logged).
pub(super) async fn settings(state: &AppState, name: &str) -> Overrides {
    let dir = state.registry.dir().to_path_buf();
    let name = name.to_string();
    match blocking(move || Overrides::load(&dir, &name)).await {
        Ok(Ok(found)) => found.unwrap_or_default(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "ignoring a model's settings file");
            Overrides::default()
        }
        Err(_) => Overrides::default(),
    }
}

/// Body of `DELETE /api/delete`.
#[derive(Debug, Deserialize)]
pub struct DeleteRequest {
    #[serde(default)]
    model: Option<String>,
    /// The older name of `model`.
    #[serde(default)]
    name: Option<String>,
}

/// `DELETE /api/delete`: unloads the model (its requests in flight finish first), then
/// deletes its file and settings.
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    extensions: Extensions,
    Json(req): Json<DeleteRequest>,
) -> Result<Response, OllamaError> {
    let wanted = required(req.model.or(req.name), "model")?;
    let registry = state.registry.clone();
    let info = blocking(move || registry.find(&wanted)).await??;
    if info.name == state.config.engine.default_model {
        return Err(ApiError::Conflict(format!(
            "`{}` is the default model (engine.default_model); configure another default before deleting it",
            info.name
        ))
        .into());
    }
    let was_loaded = state.engine.unload(&info.name, false).await?;
    let registry = state.registry.clone();
    let name = info.name.clone();
    blocking(move || registry.remove(&name)).await??;
    audit(
        &state,
        Some(&caller.name),
        "model.delete",
        Some(&info.name),
        client_ip(&extensions),
        true,
        json!({"bytes": info.size, "was_loaded": was_loaded}),
    );
    Ok(StatusCode::OK.into_response())
}

/// Body of `POST /api/copy`.
#[derive(Debug, Deserialize)]
pub struct CopyRequest {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    destination: Option<String>,
}

/// `POST /api/copy`: the same weights (a hard link) and settings under a new name.
pub async fn copy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    extensions: Extensions,
    Json(req): Json<CopyRequest>,
) -> Result<Response, OllamaError> {
    let source = required(req.source, "source")?;
    let destination = required(req.destination, "destination")?;
    let destination = destination
        .strip_suffix(":latest")
        .unwrap_or(&destination)
        .to_string();
    registry::validate_name(&destination)
        .map_err(|e| ApiError::bad_field("destination", e.to_string()))?;
    let registry = state.registry.clone();
    let found = source.clone();
    let info = blocking(move || registry.find(&found)).await??;
    let overrides = settings(&state, &info.name).await;
    let registry = state.registry.clone();
    let (from, to) = (info.name.clone(), destination.clone());
    let copied = blocking(move || registry.copy(&from, &to, &overrides)).await??;
    audit(
        &state,
        Some(&caller.name),
        "model.copy",
        Some(&copied.name),
        client_ip(&extensions),
        true,
        json!({"source": info.name}),
    );
    Ok(StatusCode::OK.into_response())
}

/// Body of `POST /api/create` (current and older Ollama clients).
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    #[serde(default)]
    model: Option<String>,
    /// The older name of `model`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    from: Option<String>,
    /// Older clients: a Modelfile's text.
    #[serde(default)]
    modelfile: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    template: Option<String>,
    /// A string or a list of strings.
    #[serde(default)]
    license: Option<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    /// Uploaded blobs (`/api/blobs`), not supported.
    #[serde(default)]
    files: Option<Map<String, Value>>,
    #[serde(default)]
    adapters: Option<Map<String, Value>>,
    #[serde(default)]
    quantize: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Value>>,
    /// Older clients: the Modelfile's path on the server, not supported.
    #[serde(default)]
    path: Option<String>,
}

/// Where a new model's weights come from.
enum Source {
    /// An installed model (its settings are the base of the new ones).
    Model(String),
    /// A GGUF file on the daemon's host.
    File(PathBuf),
}

/// The settings in a create request's own fields.
fn field_settings(req: &CreateRequest) -> Result<Overrides, ApiError> {
    let license = match &req.license {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad_field("license", "`license` must be text"))?
                .join("\n"),
        ),
        Some(_) => return Err(ApiError::bad_field("license", "`license` must be text")),
    };
    let mut parameters = req.parameters.clone().unwrap_or_default();
    if let Some(stop @ Value::String(_)) = parameters.get("stop").cloned() {
        parameters.insert("stop".into(), Value::Array(vec![stop]));
    }
    if parameters.len() > 32 {
        return Err(ApiError::bad_field("parameters", "at most 32 parameters"));
    }
    Ok(Overrides {
        from: None,
        system: req.system.clone().filter(|s| !s.is_empty()),
        template: req.template.clone().filter(|s| !s.is_empty()),
        license,
        parameters: parameters.into_iter().collect(),
    })
}

/// Checks parameter ranges the way every request's `options` are checked.
fn check_ranges(state: &AppState, overrides: &Overrides) -> Result<(), ApiError> {
    let as_options = Value::Object(overrides.parameters.clone().into_iter().collect());
    let options: ollama::Options = serde_json::from_value(as_options)
        .map_err(|e| ApiError::bad_field("parameters", format!("invalid parameters: {e}")))?;
    ollama::params(Some(&options), None, state.config.engine.ctx_per_slot).map(|_| ())
}

/// `POST /api/create`.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    extensions: Extensions,
    Json(req): Json<CreateRequest>,
) -> Result<Response, OllamaError> {
    let target = required(req.model.clone().or(req.name.clone()), "model")?;
    let target = target
        .strip_suffix(":latest")
        .unwrap_or(&target)
        .to_string();
    registry::validate_name(&target).map_err(|e| ApiError::bad_field("model", e.to_string()))?;
    for (field, present) in [
        ("files", req.files.as_ref().is_some_and(|f| !f.is_empty())),
        (
            "adapters",
            req.adapters.as_ref().is_some_and(|a| !a.is_empty()),
        ),
        (
            "quantize",
            req.quantize.as_ref().is_some_and(|q| !q.is_empty()),
        ),
        (
            "messages",
            req.messages.as_ref().is_some_and(|m| !m.is_empty()),
        ),
        ("path", req.path.as_ref().is_some_and(|p| !p.is_empty())),
    ] {
        if present {
            return Err(ApiError::bad_field(
                field,
                format!(
                    "`{field}` is not supported: create a model `from` an installed model or an absolute path to a GGUF file on the appliance's host, with `system`, `template`, `parameters` or a `modelfile`"
                ),
            )
            .into());
        }
    }
    let parsed = match &req.modelfile {
        Some(text) => modelfile::parse(text).map_err(settings_error)?,
        None => modelfile::Modelfile::default(),
    };
    let asked = parsed.overrides.clone().merged(field_settings(&req)?);
    asked.check().map_err(settings_error)?;
    check_ranges(&state, &asked)?;
    let from = req
        .from
        .clone()
        .filter(|f| !f.trim().is_empty())
        .or(parsed.from.clone())
        .map(|f| f.trim().to_string());
    let Some(from) = from else {
        return Err(ApiError::bad_field(
            "from",
            "`from` (or a FROM line in `modelfile`) is required: an installed model's name or an absolute path to a GGUF file on the appliance's host",
        )
        .into());
    };
    if from.len() > MAX_NAME {
        return Err(ApiError::bad_field("from", "`from` is too long").into());
    }
    let source = if from.starts_with('/') {
        Source::File(PathBuf::from(&from))
    } else if from.contains('/') || from.starts_with('.') {
        return Err(ApiError::bad_field(
            "from",
            "a GGUF file must be given by its absolute path on the appliance's host",
        )
        .into());
    } else {
        Source::Model(from.clone())
    };
    let registry = state.registry.clone();
    let (created, updated, from_label) = match source {
        Source::Model(base) => {
            let found = base.clone();
            let r = registry.clone();
            let base_info = blocking(move || r.find(&found)).await??;
            let base_settings = settings(&state, &base_info.name).await;
            let mut merged = base_settings.merged(asked);
            if base_info.name == target {
                // Re-creating a model from itself changes only its settings.
                let dir = registry.dir().to_path_buf();
                let name = target.clone();
                blocking(move || merged.save(&dir, &name)).await??;
                (base_info, true, target.clone())
            } else {
                merged.from = Some(base_info.name.clone());
                let (from, to) = (base_info.name.clone(), target.clone());
                let info = blocking(move || registry.copy(&from, &to, &merged)).await??;
                (info, false, base_info.name.clone())
            }
        }
        Source::File(path) => {
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut settings = asked;
            // Only the file's name is kept: `/api/show` is open to every user.
            settings.from = Some(file_name.clone());
            let name = target.clone();
            let info = blocking(move || -> Result<_, RegistryError> {
                if !path.is_file() {
                    return Err(RegistryError::BadModel {
                        path: path.display().to_string(),
                        reason: "no such file on the appliance's host".into(),
                    });
                }
                if registry.find(&name).is_ok() {
                    return Err(RegistryError::Exists(name));
                }
                settings.save(registry.dir(), &name)?;
                registry.import(&path, Some(&name)).inspect_err(|_| {
                    let _ = modelfile::remove(registry.dir(), &name);
                })
            })
            .await??;
            (info, false, file_name)
        }
    };
    audit(
        &state,
        Some(&caller.name),
        "model.create",
        Some(&created.name),
        client_ip(&extensions),
        true,
        json!({"from": from_label, "settings_only": updated}),
    );
    let statuses = ["reading model metadata", "writing manifest", "success"];
    if !req.stream.unwrap_or(true) {
        return Ok(axum::Json(json!({"status": "success"})).into_response());
    }
    let mut body = String::new();
    for status in statuses {
        body.push_str(&json!({ "status": status }).to_string());
        body.push('\n');
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
