//! What the OpenAI, Ollama and native chat routes share: resolving a model name,
//! turning wire sampling fields into [`SamplingParams`] with range checks (every number
//! a client sends is bounded here, with a 400 naming the field), keep-alive values and
//! who may use which, and starting a generation with the caller's quota.

use std::sync::Arc;

use serde_json::Value;

use crate::app::AppState;
use crate::auth::Principal;
use crate::engine::constraint;
use crate::engine::{
    ChatMessage, Constraint, GenerateRequest, KeepAlive, KeepAliveRequest, ModelKind, ModelSpec,
    Prompt, SamplingParams, ToolCall,
};
use crate::models::registry::ModelInfo;

use super::error::ApiError;
use super::reply::Reply;

/// The model a client asked for: its name, or `default` for "" and "default"; bounded.
pub fn requested_model(name: &str, default: &str) -> Result<String, ApiError> {
    let wanted = match name.trim() {
        "" | "default" => default.to_string(),
        other => other.to_string(),
    };
    if wanted.len() > 256 {
        return Err(ApiError::bad_field(
            "model",
            "`model` is longer than 256 characters",
        ));
    }
    Ok(wanted)
}

/// Looks a client's model name up in the registry ("" and "default" mean the
/// configured default model).
pub async fn resolve_model(
    state: &AppState,
    name: &str,
) -> Result<(ModelSpec, Arc<ModelInfo>), ApiError> {
    let wanted = requested_model(name, &state.config.engine.default_model)?;
    let registry = state.registry.clone();
    let info = tokio::task::spawn_blocking(move || registry.find(&wanted))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((
        ModelSpec {
            name: info.name.clone(),
            path: info.path.clone(),
            kind: ModelKind::Chat,
        },
        info,
    ))
}

/// Starts a generation on behalf of `caller` and waits for its slot: bounds the prompt,
/// reserves the caller's daily token quota (cutting `max_tokens` to what is left), and
/// settles the quota with the real count when the generation ends, however it ends.
pub async fn start(
    state: &AppState,
    caller: &Principal,
    model: ModelSpec,
    prompt: Prompt,
    mut params: SamplingParams,
    keep_alive: Option<KeepAliveRequest>,
) -> Result<Reply, ApiError> {
    let prompt = with_model_settings(state, &model, prompt, &mut params).await;
    let max = state.config.engine.max_prompt_bytes;
    if prompt.text_len() > max {
        return Err(ApiError::BadRequest {
            message: format!(
                "the prompt is {} bytes; at most {max} bytes of text are accepted per request",
                prompt.text_len()
            ),
            param: Some(
                match prompt {
                    Prompt::Chat(_) => "messages",
                    Prompt::ChatWithTools { .. } => "tools",
                    Prompt::Text(_) => "prompt",
                }
                .into(),
            ),
        });
    }
    let ctx = u64::from(state.config.engine.ctx_per_slot);
    let wanted = params.max_tokens.map_or(ctx, |m| u64::from(m).min(ctx));
    let reservation = match state.limits.reserve_tokens(caller.user_id, wanted).await? {
        Ok(reservation) => reservation,
        Err(exceeded) => {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "user `{}` has used {}; it resets at midnight UTC",
                    caller.name, exceeded.what
                ),
                retry_after_secs: exceeded.retry_after_secs,
            });
        }
    };
    if let Some(r) = &reservation {
        params.max_tokens = Some(u32::try_from(r.granted()).unwrap_or(u32::MAX));
    }
    let mut generation = state
        .engine
        .generate(GenerateRequest {
            model,
            user: caller.user_id,
            prompt,
            params,
            keep_alive,
        })
        .await?;
    let (limits, user) = (state.limits.clone(), caller.user_id);
    generation.on_finish(Box::new(move |prompt, generated| match reservation {
        Some(r) => r.settle(prompt, generated),
        None => limits.record_tokens(user, prompt, generated),
    }));
    Reply::start(generation).await
}

/// A model's own settings (`/api/create`), read once per request: `SYSTEM` opens a chat
/// that brings no system message, `PARAMETER`s fill the sampling settings it left unset.
async fn with_model_settings(
    state: &AppState,
    model: &ModelSpec,
    prompt: Prompt,
    params: &mut SamplingParams,
) -> Prompt {
    let settings = super::model_admin::settings(state, &model.name).await;
    apply_model_parameters(state, &model.name, &settings.parameters, params);
    with_model_system(settings.system.as_deref(), prompt)
}

/// `prompt` opened by the model's `system` text when it brings no system message.
pub fn with_model_system(system: Option<&str>, prompt: Prompt) -> Prompt {
    match prompt {
        Prompt::Chat(messages) => Prompt::Chat(model_system(system, messages)),
        Prompt::ChatWithTools { messages, tools } => Prompt::ChatWithTools {
            messages: model_system(system, messages),
            tools,
        },
        text @ Prompt::Text(_) => text,
    }
}

fn model_system(system: Option<&str>, mut messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let has_system = messages
        .iter()
        .any(|m| m.role == "system" || m.role == "developer");
    if !has_system && let Some(system) = system {
        messages.insert(0, ChatMessage::new("system", system));
    }
    messages
}

/// Reads the model's settings and lets its `PARAMETER`s fill what `params` left unset
/// (for `n` > 1, before the choices' seeds are offset).
pub async fn with_model_parameters(
    state: &AppState,
    model: &ModelSpec,
    params: &mut SamplingParams,
) {
    if params.unset.is_empty() {
        return;
    }
    let settings = super::model_admin::settings(state, &model.name).await;
    apply_model_parameters(state, &model.name, &settings.parameters, params);
}

/// The stored `PARAMETER`s fill the settings the request left unset (`params.unset`,
/// emptied so they apply once).
fn apply_model_parameters(
    state: &AppState,
    model: &str,
    stored: &std::collections::BTreeMap<String, Value>,
    params: &mut SamplingParams,
) {
    if stored.is_empty() || params.unset.is_empty() {
        return;
    }
    // Read and bounded exactly as a request's `options` are (they were checked when
    // stored). Settings that no longer pass (the file was edited, the context made
    // smaller) are the administrator's problem, not this request's: logged, not applied.
    let checked = serde_json::from_value::<super::ollama::Options>(Value::Object(
        stored.clone().into_iter().collect(),
    ))
    .ok()
    .and_then(|options| {
        super::ollama::params(Some(&options), None, state.config.engine.ctx_per_slot).ok()
    });
    let Some(from_model) = checked else {
        tracing::warn!(%model, "the model's stored parameters no longer pass their checks; not applied");
        return;
    };
    for name in std::mem::take(&mut params.unset) {
        if !stored.contains_key(name) {
            continue;
        }
        match name {
            "temperature" => params.temperature = from_model.temperature,
            "top_p" => params.top_p = from_model.top_p,
            "top_k" => params.top_k = from_model.top_k,
            "min_p" => params.min_p = from_model.min_p,
            "repeat_penalty" => params.repeat_penalty = from_model.repeat_penalty,
            "repeat_last_n" => params.repeat_last_n = from_model.repeat_last_n,
            "frequency_penalty" => params.frequency_penalty = from_model.frequency_penalty,
            "presence_penalty" => params.presence_penalty = from_model.presence_penalty,
            "seed" => params.seed = from_model.seed,
            "num_predict" => params.max_tokens = from_model.max_tokens,
            "num_ctx" => params.max_context = from_model.max_context,
            "stop" => params.stop.clone_from(&from_model.stop),
            _ => {}
        }
    }
}

/// Checks an output constraint before it reaches a worker, naming `param` when it is
/// refused.
pub fn constraint(param: &str, constraint: Constraint) -> Result<Constraint, ApiError> {
    constraint::check(constraint).map_err(|refused| {
        let at = if refused.at.is_empty() {
            String::new()
        } else {
            format!(" (at {})", refused.at)
        };
        ApiError::bad_field(param, format!("{}{at}", refused.message))
    })
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
    /// Ollama's `num_ctx`: tokens this request may use in all.
    pub max_context: Option<i64>,
    /// `stop`.
    pub stop: Vec<String>,
}

/// Largest `top_k` accepted (the largest vocabularies in use).
const MAX_TOP_K: i32 = 262_144;

/// Validates and converts wire sampling fields. `ctx_per_slot` bounds the fields that
/// count tokens of context.
pub fn sampling_params(wire: &WireSampling, ctx_per_slot: u32) -> Result<SamplingParams, ApiError> {
    check_range("temperature", wire.temperature, 0.0, 2.0)?;
    check_range("top_p", wire.top_p, 0.0, 1.0)?;
    check_range("min_p", wire.min_p, 0.0, 1.0)?;
    check_range("repeat_penalty", wire.repeat_penalty, 0.0, 10.0)?;
    check_range("frequency_penalty", wire.frequency_penalty, -2.0, 2.0)?;
    check_range("presence_penalty", wire.presence_penalty, -2.0, 2.0)?;
    if wire.top_k.is_some_and(|k| !(0..=MAX_TOP_K).contains(&k)) {
        return Err(ApiError::bad_field(
            "top_k",
            format!("`top_k` must be from 0 (off) to {MAX_TOP_K}"),
        ));
    }
    let ctx = i64::from(ctx_per_slot);
    if wire
        .repeat_last_n
        .is_some_and(|n| !(-1..=ctx).contains(&i64::from(n)))
    {
        return Err(ApiError::bad_field(
            "repeat_last_n",
            format!(
                "`repeat_last_n` must be from -1 (the whole context) to {ctx} (this model's context)"
            ),
        ));
    }
    let max_context = match wire.max_context {
        None => None,
        Some(n) if (1..=1 << 20).contains(&n) => Some(n as u32),
        Some(_) => {
            return Err(ApiError::bad_field(
                "num_ctx",
                "`num_ctx` must be from 1 to 1048576 (it is capped to this model's context)",
            ));
        }
    };
    let seed = match wire.seed {
        None | Some(-1) => None,
        Some(s) => Some(u32::try_from(s).map_err(|_| {
            ApiError::bad_field(
                "seed",
                "`seed` must be from 0 to 4294967295 (or -1 for random)",
            )
        })?),
    };
    if wire.stop.len() > 16 || wire.stop.iter().any(|s| s.len() > 256) {
        return Err(ApiError::bad_field(
            "stop",
            "at most 16 stop sequences of at most 256 bytes each",
        ));
    }
    let max_tokens = match wire.max_tokens {
        None => None,
        // Ollama: -1 = unlimited, -2 = fill the context.
        Some(-1 | -2) => None,
        Some(n) if n < 1 => {
            return Err(ApiError::bad_field(
                "max_tokens",
                "`max_tokens` must be at least 1 (Ollama's num_predict may also be -1 or -2)",
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
        seed,
        max_tokens,
        max_context,
        stop: wire
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect(),
        constraint: None,
        logprobs: None,
        unset: [
            ("temperature", wire.temperature.is_none()),
            ("top_p", wire.top_p.is_none()),
            ("top_k", wire.top_k.is_none()),
            ("min_p", wire.min_p.is_none()),
            ("repeat_penalty", wire.repeat_penalty.is_none()),
            ("repeat_last_n", wire.repeat_last_n.is_none()),
            ("frequency_penalty", wire.frequency_penalty.is_none()),
            ("presence_penalty", wire.presence_penalty.is_none()),
            ("seed", wire.seed.is_none()),
            ("num_predict", wire.max_tokens.is_none()),
            ("num_ctx", wire.max_context.is_none()),
            ("stop", wire.stop.iter().all(String::is_empty)),
        ]
        .into_iter()
        .filter_map(|(name, unset)| unset.then_some(name))
        .collect(),
    })
}

/// Parses a request's keep-alive (a duration string such as "5m", seconds, or a
/// negative number) and applies who may do what: administrators set residency as they
/// like (0 unloads once idle, negative pins); everyone else may only keep a shared model
/// loaded longer, up to `engine.user_max_keep_alive`.
pub fn keep_alive(
    state: &AppState,
    caller: &Principal,
    value: Option<&Value>,
) -> Result<Option<KeepAliveRequest>, ApiError> {
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
    let value = match parsed {
        Some(duration) => KeepAlive::For(duration),
        None => KeepAlive::Forever,
    };
    if caller.is_admin() {
        return Ok(Some(KeepAliveRequest::set(value)));
    }
    let limit = crate::config::parse_keep_alive(&state.config.engine.user_max_keep_alive)
        .flatten()
        .unwrap_or_default();
    match value {
        KeepAlive::Forever => Err(ApiError::Forbidden(
            "keeping a shared model loaded forever (`keep_alive` < 0) is for administrators".into(),
        )),
        KeepAlive::For(d) if d > limit => Err(ApiError::bad_field(
            "keep_alive",
            format!(
                "`keep_alive` may be at most {} s for users who are not administrators",
                limit.as_secs()
            ),
        )),
        KeepAlive::For(_) => Ok(Some(KeepAliveRequest::extend(value))),
    }
}

/// Logs the end user a client names (OpenAI's `user`, Anthropic's `metadata.user_id`),
/// refusing a name longer than 256 bytes.
pub fn end_user(param: &str, user: Option<&str>) -> Result<(), ApiError> {
    if let Some(user) = user {
        if user.len() > 256 {
            return Err(ApiError::bad_field(
                param,
                format!("`{param}` may be at most 256 bytes"),
            ));
        }
        tracing::debug!(end_user = user, "request on behalf of");
    }
    Ok(())
}

/// A tool problem as a 400 naming its field.
pub fn tool_error(e: crate::chat::tools::ToolError) -> ApiError {
    ApiError::bad_field(&e.param, e.message)
}

/// A call from a message of the history: the id as given (or a new one), arguments as
/// JSON text whether the client sent text (OpenAI) or an object (Ollama).
pub fn history_call(
    at: &str,
    id: Option<String>,
    name: &str,
    arguments: &Value,
) -> Result<ToolCall, ApiError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_field(
            &format!("{at}.function.name"),
            "a function name must be 1–64 bytes",
        ));
    }
    let arguments = match arguments {
        Value::String(text) => text.clone(),
        Value::Null => "{}".to_string(),
        other @ Value::Object(_) => other.to_string(),
        _ => {
            return Err(ApiError::bad_field(
                &format!("{at}.function.arguments"),
                "`arguments` must be JSON text or an object",
            ));
        }
    };
    let id = match id {
        Some(id) if id.len() > 256 => {
            return Err(ApiError::bad_field(
                &format!("{at}.id"),
                "an id may be at most 256 bytes",
            ));
        }
        Some(id) => id,
        None => crate::chat::tools::call_id(),
    };
    Ok(ToolCall {
        id,
        name: name.to_string(),
        arguments,
    })
}

/// The prompt for `messages` with `tools` under `model`'s template; a required call's
/// grammar goes into `params` (which must not already carry a constraint). When the tools
/// are lowered into a system message, the model's `SYSTEM` goes in first, so it is kept.
pub async fn tool_prompt(
    state: &AppState,
    spec: &ModelSpec,
    model: &ModelInfo,
    messages: Vec<ChatMessage>,
    tools: Option<&crate::chat::tools::ToolSet>,
    params: &mut SamplingParams,
) -> Result<Prompt, ApiError> {
    let dialect = crate::chat::tools::Dialect::of(model.template_text.as_deref());
    let lowered = !dialect.native && tools.is_some_and(crate::chat::tools::ToolSet::active);
    let messages = if lowered {
        let system = super::model_admin::settings(state, &spec.name).await.system;
        model_system(system.as_deref(), messages)
    } else {
        messages
    };
    let (prompt, constraint) =
        crate::chat::tools::prepare(messages, tools, dialect).map_err(tool_error)?;
    if let Some(constraint) = constraint {
        if params.constraint.is_some() {
            return Err(ApiError::bad_field(
                "tool_choice",
                "a required tool call cannot be combined with `response_format`, `format` or `grammar`",
            ));
        }
        params.constraint = Some(constraint);
    }
    Ok(prompt)
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
        let short = |v: &Option<String>| v.as_ref().is_none_or(|v| v.len() <= 256);
        if !short(&m.name) || !short(&m.tool_call_id) {
            return Err(ApiError::bad_field(
                &format!("messages[{i}]"),
                "`name` and `tool_call_id` may be at most 256 bytes",
            ));
        }
        if m.content.contains('\0')
            || m.tool_calls
                .iter()
                .any(|c| c.arguments.contains('\0') || c.id.contains('\0'))
        {
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
