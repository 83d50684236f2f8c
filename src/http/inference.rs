//! What the OpenAI, Ollama and native chat routes share: resolving a model name,
//! turning wire sampling fields into [`SamplingParams`] with range checks, and
//! keep-alive values.

use std::sync::Arc;

use serde_json::Value;

use crate::app::AppState;
use crate::engine::{ChatMessage, KeepAlive, ModelSpec, SamplingParams};
use crate::models::registry::ModelInfo;

use super::error::ApiError;

/// Looks a client's model name up in the registry ("" and "default" mean the
/// configured default model).
pub async fn resolve_model(
    state: &AppState,
    name: &str,
) -> Result<(ModelSpec, Arc<ModelInfo>), ApiError> {
    let wanted = match name.trim() {
        "" | "default" => state.config.engine.default_model.clone(),
        other => other.to_string(),
    };
    if wanted.len() > 256 {
        return Err(ApiError::bad_field(
            "model",
            "`model` is longer than 256 characters",
        ));
    }
    let registry = state.registry.clone();
    let info = tokio::task::spawn_blocking(move || registry.find(&wanted))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((
        ModelSpec {
            name: info.name.clone(),
            path: info.path.clone(),
        },
        info,
    ))
}

/// Starts a generation on behalf of `caller`: checks their daily token quota first and
/// records the tokens when it ends, however it ends.
pub async fn generate(
    state: &AppState,
    caller: &crate::auth::Principal,
    spec: &crate::engine::ModelSpec,
    prompt: crate::engine::Prompt,
    params: SamplingParams,
    keep_alive: Option<KeepAlive>,
) -> Result<crate::engine::Generation, ApiError> {
    let user = caller.user_id;
    if user > 0
        && let Err(exceeded) = state.limits.check_tokens(user).await?
    {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "user `{}` has used {}; it resets at midnight UTC",
                caller.name, exceeded.what
            ),
            retry_after_secs: exceeded.retry_after_secs,
        });
    }
    let mut generation = state
        .engine
        .generate(spec, prompt, params, keep_alive)
        .await?;
    let limits = state.limits.clone();
    generation.on_finish(Box::new(move |prompt, generated| {
        limits.record_tokens(user, prompt, generated)
    }));
    Ok(generation)
}

/// Checks `value` is within `range`, naming `param` otherwise.
fn check_range(param: &str, value: Option<f32>, min: f32, max: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) || v.is_nan() => Err(ApiError::bad_field(
            param,
            format!("`{param}` must be between {min} and {max}, got {v}"),
        )),
        _ => Ok(()),
    }
}

/// Sampling fields as both APIs name them, before validation.
#[derive(Debug, Default, Clone)]
pub struct WireSampling {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k`.
    pub top_k: Option<i32>,
    /// `min_p`.
    pub min_p: Option<f32>,
    /// `repeat_penalty`.
    pub repeat_penalty: Option<f32>,
    /// `repeat_last_n`.
    pub repeat_last_n: Option<i32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `seed`.
    pub seed: Option<i64>,
    /// `max_tokens` / `num_predict`.
    pub max_tokens: Option<i64>,
    /// `stop`.
    pub stop: Vec<String>,
}

/// Validates and converts wire sampling fields.
pub fn sampling_params(wire: &WireSampling) -> Result<SamplingParams, ApiError> {
    check_range("temperature", wire.temperature, 0.0, 2.0)?;
    check_range("top_p", wire.top_p, 0.0, 1.0)?;
    check_range("min_p", wire.min_p, 0.0, 1.0)?;
    check_range("repeat_penalty", wire.repeat_penalty, 0.0, 10.0)?;
    check_range("frequency_penalty", wire.frequency_penalty, -2.0, 2.0)?;
    check_range("presence_penalty", wire.presence_penalty, -2.0, 2.0)?;
    if wire.top_k.is_some_and(|k| k < 0) {
        return Err(ApiError::bad_field(
            "top_k",
            "`top_k` must be 0 (off) or positive",
        ));
    }
    if wire.stop.len() > 16 || wire.stop.iter().any(|s| s.len() > 256) {
        return Err(ApiError::bad_field(
            "stop",
            "at most 16 stop sequences of at most 256 bytes each",
        ));
    }
    let max_tokens = match wire.max_tokens {
        None => None,
        // Ollama: -1 = unlimited, -2 = fill the context.
        Some(n) if n < 0 => None,
        Some(0) => {
            return Err(ApiError::bad_field(
                "max_tokens",
                "`max_tokens` must be at least 1",
            ));
        }
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
    };
    let defaults = SamplingParams::default();
    Ok(SamplingParams {
        temperature: wire.temperature.unwrap_or(defaults.temperature),
        top_p: wire.top_p.unwrap_or(defaults.top_p),
        top_k: wire.top_k.unwrap_or(defaults.top_k),
        min_p: wire.min_p.unwrap_or(defaults.min_p),
        repeat_penalty: wire.repeat_penalty.unwrap_or(defaults.repeat_penalty),
        repeat_last_n: wire.repeat_last_n.unwrap_or(defaults.repeat_last_n),
        frequency_penalty: wire.frequency_penalty.unwrap_or(defaults.frequency_penalty),
        presence_penalty: wire.presence_penalty.unwrap_or(defaults.presence_penalty),
        // Seeds are 32-bit in llama.cpp; larger ones are folded, not rejected.
        seed: wire.seed.map(|s| s as u32),
        max_tokens,
        stop: wire
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        constraint: None,
    })
}

/// Parses a keep-alive value: a duration string ("5m"), seconds, or a negative number.
pub fn keep_alive(value: Option<&Value>) -> Result<Option<KeepAlive>, ApiError> {
    let bad = || {
        ApiError::bad_field(
            "keep_alive",
            "`keep_alive` must be a duration such as \"5m\" or a number of seconds (negative = forever)",
        )
    };
    let parsed = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => crate::config::parse_keep_alive(s).ok_or_else(bad)?,
        Some(Value::Number(n)) => {
            crate::config::parse_keep_alive(&n.to_string()).ok_or_else(bad)?
        }
        Some(_) => return Err(bad()),
    };
    Ok(Some(match parsed {
        Some(duration) => KeepAlive::For(duration),
        None => KeepAlive::Forever,
    }))
}

/// Checks roles and sizes of chat messages.
pub fn check_messages(messages: &[ChatMessage]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_field(
            "messages",
            "`messages` must not be empty",
        ));
    }
    if messages.len() > 10_000 {
        return Err(ApiError::bad_field("messages", "at most 10000 messages"));
    }
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
            return Err(ApiError::bad_field(
                &format!("messages[{i}].role"),
                format!(
                    "unknown role `{}` (expected system, developer, user, assistant or tool)",
                    m.role
                ),
            ));
        }
        if m.content.contains('\0') {
            return Err(ApiError::bad_field(
                &format!("messages[{i}].content"),
                "content must not contain NUL characters",
            ));
        }
    }
    Ok(())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
