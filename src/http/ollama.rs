//! The Ollama-compatible API (`/api/chat`, `/api/generate`, `/api/tags`, `/api/ps`,
//! `/api/show`, `/api/version`; pulling and managing models are in `pull` and
//! `model_admin`), which Open WebUI, IDE plugins and the `ollama`
//! client libraries speak. Streams are newline-delimited JSON, durations are in
//! nanoseconds, and errors are `{"error": "…"}` as Ollama sends them.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{AppState, VERSION};
use crate::auth::Principal;
use crate::chat::tools::ToolSet;
use crate::engine::{
    ChatMessage, Constraint, FinishReason, KeepAlive, KeepAliveRequest, Prompt, SamplingParams,
    ToolCall, Usage,
};
use crate::models::registry::ModelInfo;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::LenientJson as Json;
use super::inference::{self, WireSampling};
use super::reply::{Reply, ReplyEvent};

/// An [`ApiError`] answered in Ollama's shape.
pub struct OllamaError(ApiError);

impl<E: Into<ApiError>> From<E> for OllamaError {
    fn from(e: E) -> Self {
        OllamaError(e.into())
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let text = self.0.public_message();
        // The status, Retry-After and logging come from the one error mapping.
        let mapped = self.0.into_response();
        let mut response = (mapped.status(), axum::Json(json!({ "error": text }))).into_response();
        if let Some(retry) = mapped.headers().get(header::RETRY_AFTER) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry.clone());
        }
        response
    }
}

/// `options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Options {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    seed: Option<i64>,
    num_predict: Option<i64>,
    num_ctx: Option<i64>,
    stop: Option<Vec<String>>,
}

/// One message.
#[derive(Debug, Clone, Deserialize)]
pub struct OllamaMessage {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Option<Vec<Value>>,
    /// Calls an assistant message made: `[{"function": {"name", "arguments": {…}}}]`.
    #[serde(default)]
    tool_calls: Option<Vec<OllamaToolCall>>,
    /// For a `tool` message: the function that produced it.
    #[serde(default)]
    tool_name: Option<String>,
    /// The call it answers (newer clients).
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// A call in the history.
#[derive(Debug, Clone, Deserialize)]
pub struct OllamaToolCall {
    #[serde(default)]
    id: Option<String>,
    function: OllamaFunction,
}

/// The function of a call in the history.
#[derive(Debug, Clone, Deserialize)]
pub struct OllamaFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// `POST /api/chat`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<OllamaMessage>,
    #[serde(default)]
    pub(super) format: Option<Value>,
    #[serde(default)]
    pub(super) options: Option<Options>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

/// `POST /api/generate`.
#[derive(Debug, Clone, Deserialize)]
pub struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    images: Option<Vec<Value>>,
}

pub(super) fn params(
    options: Option<&Options>,
    format: Option<&Value>,
    ctx_per_slot: u32,
) -> Result<SamplingParams, ApiError> {
    let o = options.cloned().unwrap_or_default();
    let mut params = inference::sampling_params(
        &WireSampling {
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            min_p: o.min_p,
            repeat_penalty: o.repeat_penalty,
            repeat_last_n: o.repeat_last_n,
            frequency_penalty: o.frequency_penalty,
            presence_penalty: o.presence_penalty,
            seed: o.seed,
            max_tokens: o.num_predict,
            max_context: o.num_ctx,
            stop: o.stop.unwrap_or_default(),
        },
        ctx_per_slot,
    )
    .map_err(|e| match e {
        // Name the fields as this API calls them.
        ApiError::BadRequest { message, param } => ApiError::BadRequest {
            message: message.replace("`max_tokens`", "`options.num_predict`"),
            param: param.map(|p| match p.as_str() {
                "max_tokens" => "options.num_predict".to_string(),
                other => format!("options.{other}"),
            }),
        },
        other => other,
    })?;
    let constraint = match format {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(Constraint::JsonObject),
        Some(schema @ Value::Object(_)) => Some(Constraint::JsonSchema(schema.to_string())),
        Some(_) => {
            return Err(ApiError::bad_field(
                "format",
                "`format` must be \"json\" or a JSON schema object",
            ));
        }
    };
    params.constraint = constraint
        .map(|c| inference::constraint("format", c))
        .transpose()?;
    Ok(params)
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn done_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

/// The statistics Ollama puts on its final line (nanoseconds).
fn stats(started: Instant, load_ns: u128, usage: &Usage) -> Value {
    json!({
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": load_ns as u64,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": (usage.prompt_ms * 1e6) as u64,
        "eval_count": usage.completion_tokens,
        "eval_duration": (usage.generation_ms * 1e6) as u64,
    })
}

/// How one response line wraps text: chat puts it in `message`, generate in `response`.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Generate,
}

fn line(kind: Kind, model: &str, text: &str, done: bool) -> serde_json::Map<String, Value> {
    let mut obj = serde_json::Map::new();
    obj.insert("model".into(), json!(model));
    obj.insert("created_at".into(), json!(now()));
    match kind {
        Kind::Chat => obj.insert(
            "message".into(),
            json!({"role": "assistant", "content": text}),
        ),
        Kind::Generate => obj.insert("response".into(), json!(text)),
    };
    obj.insert("done".into(), json!(done));
    obj
}

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<ChatRequest>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    let tools =
        ToolSet::from_openai(req.tools.as_deref(), None, None).map_err(inference::tool_error)?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_field(
                &format!("messages[{i}].images"),
                "images are not supported by this model",
            )
            .into());
        }
        let mut message = ChatMessage::new(m.role.clone(), m.content.clone());
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            message.tool_calls.push(inference::history_call(
                &format!("messages[{i}].tool_calls[{j}]"),
                call.id.clone(),
                &call.function.name,
                &call.function.arguments,
            )?);
        }
        message.name = m.tool_name.clone();
        message.tool_call_id = m.tool_call_id.clone();
        messages.push(message);
    }
    let keep_alive = inference::keep_alive(&state, &caller, req.keep_alive.as_ref())?;
    if messages.is_empty() {
        // Ollama: an empty chat loads (or, with keep_alive 0, unloads) the model.
        return load_or_unload(&state, &caller, &req.model, keep_alive, Kind::Chat).await;
    }
    inference::check_messages(&messages)?;
    let mut params = params(
        req.options.as_ref(),
        req.format.as_ref(),
        state.config.engine.ctx_per_slot,
    )?;
    let (spec, info) = inference::resolve_model(&state, &req.model).await?;
    let prompt =
        inference::tool_prompt(&state, &spec, &info, messages, tools.as_ref(), &mut params).await?;
    let name = spec.name.clone();
    let reply = inference::start(&state, &caller, spec, prompt, params, keep_alive)
        .await?
        .parse_tools(tools);
    respond(Kind::Chat, name, reply, req.stream.unwrap_or(true), started).await
}

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<GenerateRequest>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    if req.images.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_field("images", "images are not supported by this model").into());
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_field(
            "suffix",
            "`suffix` (fill-in-the-middle) is not supported",
        )
        .into());
    }
    let keep_alive = inference::keep_alive(&state, &caller, req.keep_alive.as_ref())?;
    let prompt = req.prompt.unwrap_or_default();
    if prompt.is_empty() {
        return load_or_unload(&state, &caller, &req.model, keep_alive, Kind::Generate).await;
    }
    let prompt = if req.raw {
        Prompt::Text(prompt)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = req.system.filter(|s| !s.is_empty()) {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", prompt));
        inference::check_messages(&messages)?;
        Prompt::Chat(messages)
    };
    let params = params(
        req.options.as_ref(),
        req.format.as_ref(),
        state.config.engine.ctx_per_slot,
    )?;
    let (spec, _) = inference::resolve_model(&state, &req.model).await?;
    let name = spec.name.clone();
    let reply = inference::start(&state, &caller, spec, prompt, params, keep_alive).await?;
    respond(
        Kind::Generate,
        name,
        reply,
        req.stream.unwrap_or(true),
        started,
    )
    .await
}

/// Ollama's empty request: load the model, or with `keep_alive: 0` unload it. Unloading
/// waits for the requests in flight (nobody's generation is cut off) and is for
/// administrators: on a shared appliance a user's `keep_alive` can only keep a model
/// loaded longer.
async fn load_or_unload(
    state: &AppState,
    caller: &Principal,
    model: &str,
    keep_alive: Option<KeepAliveRequest>,
    kind: Kind,
) -> Result<Response, OllamaError> {
    let unload = keep_alive.is_some_and(|k| k.value == KeepAlive::For(std::time::Duration::ZERO));
    if unload && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "unloading a shared model is for administrators; a request's keep_alive can only keep it loaded longer".into(),
        )
        .into());
    }
    let (spec, _) = inference::resolve_model(state, model).await?;
    let spec = &spec;
    let reason = if unload {
        state.engine.unload(&spec.name, false).await?;
        "unload"
    } else {
        let keep_alive = keep_alive.unwrap_or_else(|| state.engine.default_keep_alive(spec));
        state.engine.load(spec, keep_alive).await?;
        "load"
    };
    let mut obj = line(kind, &spec.name, "", true);
    obj.insert("done_reason".into(), json!(reason));
    Ok(axum::Json(Value::Object(obj)).into_response())
}

async fn respond(
    kind: Kind,
    model: String,
    reply: Reply,
    stream: bool,
    started: Instant,
) -> Result<Response, OllamaError> {
    let load_ns = reply.load_time().as_nanos();
    let closing = move |model: &str, reason: FinishReason, usage: &Usage| {
        let mut obj = line(kind, model, "", true);
        obj.insert("done_reason".into(), json!(done_reason(reason)));
        if let Value::Object(s) = stats(started, load_ns, usage) {
            obj.extend(s);
        }
        obj
    };
    if !stream {
        let done = reply.collect().await?;
        let mut obj = closing(&model, done.finish_reason, &done.usage);
        obj.insert(
            match kind {
                Kind::Chat => "message".into(),
                Kind::Generate => "response".into(),
            },
            match kind {
                Kind::Chat if !done.calls.is_empty() => json!({
                    "role": "assistant",
                    "content": done.text,
                    "tool_calls": done.calls.iter().map(call_object).collect::<Vec<_>>(),
                }),
                Kind::Chat => json!({"role": "assistant", "content": done.text}),
                Kind::Generate => json!(done.text),
            },
        );
        return Ok(axum::Json(Value::Object(obj)).into_response());
    }
    let lines = reply
        .events()
        .filter_map(move |event| {
            std::future::ready(match event {
                // Ollama's API asks for no log probabilities.
                ReplyEvent::Logprobs(_) => None,
                ReplyEvent::Text(text) => Some(Value::Object(line(kind, &model, &text, false))),
                ReplyEvent::Call(call) => {
                    let mut obj = line(kind, &model, "", false);
                    obj.insert(
                        "message".into(),
                        json!({"role": "assistant", "content": "", "tool_calls": [call_object(&call)]}),
                    );
                    Some(Value::Object(obj))
                }
                ReplyEvent::Done {
                    finish_reason,
                    usage,
                    ..
                } => Some(Value::Object(closing(&model, finish_reason, &usage))),
                ReplyEvent::Failed { error, .. } => Some(json!({"error": error.public_message()})),
            })
        })
        .map(|v| {
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            bytes.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(bytes))
        });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// A call as Ollama returns it: arguments as an object.
fn call_object(call: &ToolCall) -> Value {
    let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
    json!({"id": call.id, "function": {"name": call.name, "arguments": arguments}})
}

fn details(m: &ModelInfo) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": m.architecture,
        "families": [m.architecture],
        "parameter_size": m.parameter_size(),
        "quantization_level": m.quantization,
    })
}

async fn digest(state: &AppState, info: std::sync::Arc<ModelInfo>) -> Result<String, ApiError> {
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || registry.digest(&info))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

/// `GET /api/tags`.
pub async fn tags(State(state): State<AppState>) -> Result<axum::Json<Value>, OllamaError> {
    let registry = state.registry.clone();
    let models = tokio::task::spawn_blocking(move || registry.list())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut out = Vec::new();
    for m in models {
        let digest = digest(&state, m.clone()).await?;
        out.push(json!({
            "name": m.name,
            "model": m.name,
            "modified_at": m.modified_at,
            "size": m.size,
            "digest": digest,
            "details": details(&m),
        }));
    }
    Ok(axum::Json(json!({ "models": out })))
}

/// `GET /api/ps`.
pub async fn ps(State(state): State<AppState>) -> Result<axum::Json<Value>, OllamaError> {
    let mut out = Vec::new();
    for loaded in state.engine.loaded().await {
        let registry = state.registry.clone();
        let name = loaded.name.clone();
        let info = tokio::task::spawn_blocking(move || registry.find(&name).ok())
            .await
            .ok()
            .flatten();
        let (details, digest) = match info {
            Some(info) => (
                details(&info),
                digest(&state, info).await.unwrap_or_default(),
            ),
            None => (json!({}), String::new()),
        };
        out.push(json!({
            "name": loaded.name,
            "model": loaded.name,
            "size": loaded.size_bytes,
            "digest": digest,
            "details": details,
            "expires_at": loaded.expires_at,
            "size_vram": loaded.vram_bytes,
            "context_length": loaded.context_length,
            "pid": loaded.pid,
            "slots": loaded.slots,
            "running": loaded.running,
            "waiting": loaded.waiting,
            "gpu_layers": loaded.gpu_layers,
            "pinned": loaded.pinned,
        }));
    }
    // Loads waiting for GPU memory, in order (an extension: Ollama lists none).
    let queue = state
        .engine
        .gpu_view()
        .await
        .map(|view| view.queue)
        .unwrap_or_default();
    Ok(axum::Json(json!({ "models": out, "queue": queue })))
}

/// Body of `POST /api/show`.
#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    #[serde(default)]
    model: Option<String>,
    /// The older name of `model`.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/show`.
pub async fn show(
    State(state): State<AppState>,
    Json(req): Json<ShowRequest>,
) -> Result<axum::Json<Value>, OllamaError> {
    let name = req.model.or(req.name).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::bad_field("model", "`model` is required").into());
    }
    let (_, info) = inference::resolve_model(&state, &name).await?;
    let arch = info.architecture.clone();
    // Settings given by `/api/create` (see `model_admin`), shown as Ollama shows them.
    let settings = super::model_admin::settings(&state, &info.name).await;
    Ok(axum::Json(json!({
        "license": settings.license.clone().or(info.license.clone()).unwrap_or_default(),
        "modelfile": settings.modelfile(&info.name),
        "parameters": settings.parameters_text(),
        "system": settings.system.clone().unwrap_or_default(),
        "template": settings.template.clone().or(info.template_text.clone()).unwrap_or_default(),
        "details": details(&info),
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": info.parameters,
            format!("{arch}.context_length"): info.context_length,
        },
        "capabilities": ["completion"],
        "modified_at": info.modified_at,
    })))
}

/// `GET /api/version`.
pub async fn version() -> axum::Json<Value> {
    axum::Json(json!({ "version": VERSION }))
}
