//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/completions`, `/v1/models`;
//! `/v1/responses` is in [`responses`].
//!
//! Shapes follow what the official SDKs parse (see `shared/api-compat.md`): unique ids,
//! one `created` per stream, a role-only first delta, a final empty delta with
//! `finish_reason`, an optional usage chunk, `[DONE]`, and errors after streaming has
//! begun sent as `data: {"error":…}`. Errors known before the first byte (unknown
//! model, prompt too long, server busy) get their proper HTTP status instead.

pub mod responses;
mod sse;
pub mod types;

use sse::{chat_stream, choices_stream, sse, text_stream};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::{AppState, VERSION};
use crate::chat::Recorder;
use crate::chat::tools::ToolSet;
use crate::engine::{ChatMessage, Constraint, FinishReason, Prompt, ToolCall};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{LenientJson as Json, Path};
use super::inference::{self, WireSampling};
use super::reply::Reply;
use types::{
    ChatCompletionRequest, CompletionRequest, Content, ContentPart, PromptField, ResponseFormat,
    Sampling, UsageOut,
};

/// `GET /v1/models`.
pub async fn list_models(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let registry = state.registry.clone();
    let (models, embedders, transcribers) = tokio::task::spawn_blocking(move || {
        (
            registry.list(),
            registry.embedders(),
            registry.transcribers(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut data: Vec<Value> = models.iter().map(|m| model_object(m)).collect();
    let other = |id: &str, modified: &str, meta: Value| json!({"id": id, "object": "model", "created": created(modified), "owned_by": "appliance", "meta": meta});
    let config = &state.config;
    for (entry, m) in data.iter_mut().zip(models.iter()) {
        entry["meta"]["default"] = (m.name == config.engine.default_model).into();
    }
    data.extend(embedders.iter().map(|m| {
        let default = m.name == config.engine.default_embedding_model;
        other(&m.name, &m.modified_at, json!({"kind": "embedding", "default": default, "dimensions": m.dimensions, "max_tokens": m.max_tokens, "size": m.size}))
    }));
    data.extend(transcribers.iter().map(|m| {
        let default = m.name == config.speech.default_model;
        other(&m.name, &m.modified_at, json!({"kind": "speech", "default": default, "size_class": m.size_class, "multilingual": m.multilingual, "size": m.size}))
    }));
    Ok(axum::Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{id}`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let (_, info) = inference::resolve_model(&state, &id).await?;
    Ok(axum::Json(model_object(&info)))
}

/// Seconds since the epoch of an RFC 3339 time (0 when unreadable).
fn created(modified_at: &str) -> i64 {
    jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", modified_at)
        .or_else(|_| modified_at.parse::<jiff::Timestamp>())
        .map(|t| t.as_second())
        .unwrap_or(0)
}

fn model_object(m: &crate::models::registry::ModelInfo) -> Value {
    json!({
        "id": m.name,
        "object": "model",
        "created": created(&m.modified_at),
        "owned_by": "appliance",
        "meta": {
            "kind": "chat",
            "architecture": m.architecture,
            "parameters": m.parameters,
            "quantization": m.quantization,
            "context_length": m.context_length,
            "size": m.size,
        }
    })
}

/// Refuses options that would otherwise be silently ignored, and converts the rest.
pub(super) fn sampling(
    s: &Sampling,
    ctx_per_slot: u32,
) -> Result<crate::engine::SamplingParams, ApiError> {
    let logprobs = match (s.logprobs, s.top_logprobs) {
        (Some(true), top) => {
            let top = top.unwrap_or(0);
            if top > crate::engine::protocol::MAX_TOP_LOGPROBS {
                return Err(ApiError::bad_field(
                    "top_logprobs",
                    "`top_logprobs` must be from 0 to 20",
                ));
            }
            Some(top)
        }
        (_, Some(_)) => {
            return Err(ApiError::bad_field(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ));
        }
        (_, None) => None,
    };
    let wire = WireSampling {
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: None,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
        seed: s.seed,
        max_tokens: s.max_completion_tokens.or(s.max_tokens).map(i64::from),
        max_context: None,
        stop: s.stop.clone().map(|st| st.into_vec()).unwrap_or_default(),
    };
    let mut params = inference::sampling_params(&wire, ctx_per_slot)?;
    let constraint = match (&s.response_format, &s.grammar) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_field(
                "grammar",
                "give either `response_format` or `grammar`, not both",
            ));
        }
        (_, Some(g)) => Some(Constraint::Grammar(g.clone())),
        (None | Some(ResponseFormat::Text), None) => None,
        (Some(ResponseFormat::JsonObject), None) => Some(Constraint::JsonObject),
        (Some(ResponseFormat::JsonSchema { json_schema }), None) => match &json_schema.schema {
            Some(schema) if schema.is_object() => Some(Constraint::JsonSchema(schema.to_string())),
            _ => {
                return Err(ApiError::bad_field(
                    "response_format.json_schema.schema",
                    "a JSON schema object is required",
                ));
            }
        },
    };
    let param = if s.grammar.is_some() {
        "grammar"
    } else {
        "response_format"
    };
    params.constraint = constraint
        .map(|c| inference::constraint(param, c))
        .transpose()?;
    params.logprobs = logprobs;
    Ok(params)
}

/// OpenAI messages → engine messages (text, calls and results).
fn flatten_messages(req: &ChatCompletionRequest) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system".to_string(),
            other => other.to_string(),
        };
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut texts = Vec::new();
                for part in parts {
                    match part {
                        ContentPart::Text { text } => texts.push(text.as_str()),
                        ContentPart::ImageUrl { .. } | ContentPart::Other => {
                            return Err(ApiError::bad_field(
                                &format!("messages[{i}].content"),
                                "only text content parts are supported by this model",
                            ));
                        }
                    }
                }
                texts.join("\n")
            }
        };
        let mut message = ChatMessage::new(role, content);
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            let at = format!("messages[{i}].tool_calls[{j}]");
            if call.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(ApiError::bad_field(
                    &format!("{at}.type"),
                    "only `function` calls are supported",
                ));
            }
            message.tool_calls.push(inference::history_call(
                &at,
                call.id.clone(),
                &call.function.name,
                &call.function.arguments,
            )?);
        }
        message.tool_call_id = m.tool_call_id.clone();
        message.name = m.name.clone();
        out.push(message);
    }
    inference::check_messages(&out)?;
    Ok(out)
}

/// OpenAI's reason; a cut-off answer is `length` even when it made calls (the last
/// one may be the part that was cut).
fn finish_reason(reason: FinishReason, called: bool) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        _ if called => "tool_calls",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// A call as OpenAI returns it in a message.
fn call_object(call: &ToolCall) -> Value {
    json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let tools = ToolSet::from_openai(
        req.tools.as_deref(),
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
    )
    .map_err(inference::tool_error)?;
    inference::end_user("user", req.user.as_deref())?;
    let mut messages = flatten_messages(&req)?;
    let mut params = sampling(&req.sampling, state.config.engine.ctx_per_slot)?;
    let keep_alive = inference::keep_alive(&state, &caller, req.sampling.keep_alive.as_ref())?;
    let (spec, info) = inference::resolve_model(&state, &req.model).await?;
    let mut sources = None;
    if let Some(ids) = req.collections.as_ref().filter(|ids| !ids.is_empty()) {
        super::documents::searchable(&state, &caller, Some(ids)).await?;
        let Some(question) = messages.iter().rev().find(|m| m.role == "user") else {
            return Err(ApiError::bad_field(
                "collections",
                "grounding in collections needs a user message to search for",
            ));
        };
        let question = question.content.clone();
        let grounded =
            super::conversations::ground(&state, &caller, &spec, ids, messages, &question, &params)
                .await?;
        messages = grounded.prompt;
        sources = Some(json!(grounded.sources));
    }
    let last_user = match (&req.conversation_id, messages.last()) {
        (None, _) => None,
        (Some(id), Some(last)) if last.role == "user" => {
            state
                .store
                .conversation(id.clone(), caller.owner_filter())
                .await?;
            Some((id.clone(), last.content.clone()))
        }
        (Some(_), _) => {
            return Err(ApiError::bad_field(
                "conversation_id",
                "to store the exchange, the last message must be the user's",
            ));
        }
    };
    let prompt =
        inference::tool_prompt(&state, &spec, &info, messages, tools.as_ref(), &mut params).await?;
    let name = spec.name.clone();
    let n = choices(&req, &state)?;
    let asked_logprobs = params.logprobs.is_some();
    if n > 1 {
        let stream = req
            .sampling
            .stream
            .then(|| req.sampling.stream_options.is_some_and(|o| o.include_usage));
        let several = Several {
            spec,
            prompt,
            params,
            keep_alive,
            tools,
            n,
            stream,
        };
        return several.run(&state, &caller).await;
    }
    let reply = inference::start(&state, &caller, spec, prompt, params, keep_alive).await?;
    let recorder = last_user.map(|(id, content)| {
        Recorder::new(
            state.store.clone(),
            state.tasks.clone(),
            id,
            caller.owner_filter(),
            name.clone(),
            content,
        )
    });
    let recorder = match (&sources, recorder) {
        (Some(s), Some(r)) => Some(r.with_sources(s.clone())),
        (_, r) => r,
    };
    let reply = reply.record(recorder).parse_tools(tools);
    let head = Head::new("chatcmpl", name);
    if req.sampling.stream {
        let include_usage = req.sampling.stream_options.is_some_and(|o| o.include_usage);
        return Ok(sse(chat_stream(head, reply, include_usage, sources)));
    }
    let done = reply.collect().await?;
    let mut body = completion_body(&head, &[done], asked_logprobs);
    if let Some(sources) = sources {
        body["sources"] = sources;
    }
    Ok(axum::Json(body).into_response())
}

/// The number of choices asked for (`n`), checked against what this request may do.
fn choices(req: &ChatCompletionRequest, state: &AppState) -> Result<u32, ApiError> {
    let n = req.sampling.n.unwrap_or(1);
    // One slot per choice, within one user's share of a model (as the engine computes
    // it), so no choice is refused after the others started.
    let engine = &state.config.engine;
    let share = match engine.max_requests_per_user {
        0 => (engine.slots.max(1) + engine.queue).div_ceil(2).max(1),
        n => n,
    };
    let most = engine.slots.min(share).min(8);
    if n == 0 || n > most {
        return Err(ApiError::bad_field(
            "n",
            format!("`n` must be from 1 to {most} on this server (one parallel slot per choice)"),
        ));
    }
    if n > 1 && (req.conversation_id.is_some() || req.collections.is_some()) {
        return Err(ApiError::bad_field(
            "n",
            "`n` > 1 cannot be combined with `conversation_id` or `collections`",
        ));
    }
    Ok(n)
}

/// `n` > 1: as many generations of the same prompt, in parallel slots; with a seed,
/// choice `i` uses `seed + i` so the choices differ but repeat.
struct Several {
    spec: crate::engine::ModelSpec,
    prompt: Prompt,
    params: crate::engine::SamplingParams,
    keep_alive: Option<crate::engine::KeepAliveRequest>,
    tools: Option<ToolSet>,
    n: u32,
    /// `Some(include_usage)` when streaming.
    stream: Option<bool>,
}

impl Several {
    async fn run(
        self,
        state: &AppState,
        caller: &crate::auth::Principal,
    ) -> Result<Response, ApiError> {
        let head = Head::new("chatcmpl", self.spec.name.clone());
        let asked_logprobs = self.params.logprobs.is_some();
        // The model's own parameters (a stored seed) first, so choices still differ.
        let mut base = self.params;
        inference::with_model_parameters(state, &self.spec, &mut base).await;
        let mut replies = Vec::with_capacity(self.n as usize);
        for i in 0..self.n {
            let mut params = base.clone();
            params.seed = params.seed.map(|s| s.wrapping_add(i));
            let reply = inference::start(
                state,
                caller,
                self.spec.clone(),
                self.prompt.clone(),
                params,
                self.keep_alive,
            )
            .await?;
            replies.push(reply.parse_tools(self.tools.clone()));
        }
        if let Some(include_usage) = self.stream {
            return Ok(sse(choices_stream(head, replies, include_usage)));
        }
        let done =
            futures_util::future::try_join_all(replies.into_iter().map(Reply::collect)).await?;
        Ok(axum::Json(completion_body(&head, &done, asked_logprobs)).into_response())
    }
}

/// OpenAI's `logprobs.content` entries.
fn logprob_entries(logprobs: &[crate::engine::TokenLogprob]) -> Vec<Value> {
    let prob = |p: &crate::engine::TokenProb| json!({"token": p.token, "logprob": p.logprob, "bytes": p.bytes});
    logprobs
        .iter()
        .map(|l| {
            let mut entry = prob(&l.chosen);
            entry["top_logprobs"] = l.top.iter().map(prob).collect();
            entry
        })
        .collect()
}

/// A `chat.completion` with one choice per finished reply; usage counts the prompt once.
fn completion_body(head: &Head, done: &[super::reply::Collected], asked_logprobs: bool) -> Value {
    let choices: Vec<Value> = done
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let called = !d.calls.is_empty();
            let mut message = json!({"role": "assistant", "content": d.text});
            if called {
                if d.text.is_empty() {
                    message["content"] = Value::Null;
                }
                message["tool_calls"] = d.calls.iter().map(call_object).collect();
            }
            let logprobs = if asked_logprobs {
                json!({"content": logprob_entries(&d.logprobs)})
            } else {
                Value::Null
            };
            json!({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason(d.finish_reason, called)})
        })
        .collect();
    let mut usage = done.first().map(|d| d.usage).unwrap_or_default();
    usage.completion_tokens = done.iter().map(|d| d.usage.completion_tokens).sum();
    json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": fingerprint(),
        "choices": choices,
        "usage": UsageOut::from(usage),
    })
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, ApiError> {
    if req.suffix.is_some() {
        return Err(ApiError::bad_field(
            "suffix",
            "`suffix` (fill-in-the-middle) is not supported",
        ));
    }
    if req.sampling.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_field(
            "n",
            "only n = 1 is supported for text completions",
        ));
    }
    let prompt = match req.prompt {
        PromptField::One(p) => p,
        PromptField::Many(mut list) if list.len() == 1 => list.remove(0),
        PromptField::Many(_) => {
            return Err(ApiError::bad_field(
                "prompt",
                "exactly one prompt per request is supported",
            ));
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::bad_field("prompt", "`prompt` must not be empty"));
    }
    let params = sampling(&req.sampling, state.config.engine.ctx_per_slot)?;
    if params.logprobs.is_some() {
        return Err(ApiError::bad_field(
            "logprobs",
            "log probabilities are supported on /v1/chat/completions only",
        ));
    }
    let keep_alive = inference::keep_alive(&state, &caller, req.sampling.keep_alive.as_ref())?;
    let (spec, _) = inference::resolve_model(&state, &req.model).await?;
    let echo = req.echo.then(|| prompt.clone());
    let name = spec.name.clone();
    let reply = inference::start(
        &state,
        &caller,
        spec,
        Prompt::Text(prompt),
        params,
        keep_alive,
    )
    .await?;
    let head = Head {
        id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
        created: inference::unix_now(),
        model: name,
    };
    if req.sampling.stream {
        let include_usage = req.sampling.stream_options.is_some_and(|o| o.include_usage);
        return Ok(sse(text_stream(head, reply, include_usage, echo)));
    }
    let done = reply.collect().await?;
    let text = echo.unwrap_or_default() + &done.text;
    Ok(axum::Json(json!({
        "id": head.id,
        "object": "text_completion",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": fingerprint(),
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason(done.finish_reason, false)}],
        "usage": UsageOut::from(done.usage),
    }))
    .into_response())
}

fn fingerprint() -> String {
    format!("appliance-{VERSION}")
}

/// What every chunk of one response repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    /// A new response of `model` with a unique `<prefix>-…` id.
    fn new(prefix: &str, model: String) -> Head {
        Head {
            id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
            created: inference::unix_now(),
            model,
        }
    }
}

/// Body of `POST /api/v1/tokenize`.
#[derive(Debug, serde::Deserialize)]
pub struct TokenizeRequest {
    /// Model name.
    #[serde(default)]
    model: String,
    /// Chat messages, rendered with the model's template.
    #[serde(default)]
    messages: Option<Vec<types::InMessage>>,
    /// Or raw text.
    #[serde(default)]
    prompt: Option<String>,
}

/// `POST /api/v1/tokenize`: how many tokens a prompt is, exactly as a chat or
/// completion request would count it (so clients can budget the context). It uses the
/// model's worker, so it is admitted, bounded and deadlined like a generation.
pub async fn tokenize(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<TokenizeRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    let prompt = match (req.messages, req.prompt) {
        (Some(messages), None) => {
            let as_chat = ChatCompletionRequest {
                model: req.model.clone(),
                messages,
                sampling: Sampling::default(),
                tools: None,
                tool_choice: None,
                parallel_tool_calls: None,
                user: None,
                conversation_id: None,
                collections: None,
            };
            Prompt::Chat(flatten_messages(&as_chat)?)
        }
        (None, Some(prompt)) if !prompt.is_empty() => Prompt::Text(prompt),
        _ => {
            return Err(ApiError::bad_field(
                "messages",
                "give either `messages` or a non-empty `prompt`",
            ));
        }
    };
    let max = state.config.engine.max_prompt_bytes;
    if prompt.text_len() > max {
        return Err(ApiError::bad_field(
            "messages",
            format!("at most {max} bytes of prompt text are accepted per request"),
        ));
    }
    let (spec, _) = inference::resolve_model(&state, &req.model).await?;
    let system = super::model_admin::settings(&state, &spec.name)
        .await
        .system;
    let prompt = inference::with_model_system(system.as_deref(), prompt);
    let count = state
        .engine
        .count_tokens(&spec, caller.user_id, prompt)
        .await?;
    Ok(axum::Json(
        json!({"model": spec.name, "tokens": count, "context_length": state.config.engine.ctx_per_slot}),
    ))
}
