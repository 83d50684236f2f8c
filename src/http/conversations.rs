//! The native conversations API (`/api/v1/conversations…`): server-side chat history.
//!
//! Sending a message streams the reply and then stores the user turn and the reply in
//! one transaction. If the client disconnects or the engine fails mid-reply, the
//! partial reply is stored marked `cut_off` or `error` — labelled, never silently
//! half-written — and nothing at all is stored when the request fails before the
//! reply starts (busy, prompt too long).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::chat::{self, DEFAULT_TITLE, Recorder};
use crate::engine::Prompt;
use crate::store::conversations::{
    self as conv, Conversation, ConversationPatch, Message, MessageStatus, Owner,
};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::inference::{self, WireSampling};
use super::reply::{Reply, ReplyEvent};

/// Sampling settings a conversation may carry (unknown keys are refused).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    seed: Option<i64>,
    max_tokens: Option<i64>,
    stop: Option<Vec<String>>,
}

impl Settings {
    fn parse(value: &Value, param: &str, ctx_per_slot: u32) -> Result<Settings, ApiError> {
        let settings: Settings = serde_json::from_value(value.clone())
            .map_err(|e| ApiError::bad_field(param, format!("invalid settings: {e}")))?;
        inference::sampling_params(&settings.wire(), ctx_per_slot)?;
        Ok(settings)
    }

    fn wire(&self) -> WireSampling {
        WireSampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: None,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            max_context: None,
            stop: self.stop.clone().unwrap_or_default(),
        }
    }
}

fn check_text(param: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.len() > max {
        return Err(ApiError::bad_field(
            param,
            format!("`{param}` is longer than {max} bytes"),
        ));
    }
    if text.contains('\0') {
        return Err(ApiError::bad_field(
            param,
            format!("`{param}` must not contain NUL characters"),
        ));
    }
    Ok(())
}

/// Body of `POST /api/v1/conversations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_prompt: Option<String>,
    #[serde(default)]
    settings: Option<Value>,
    /// Collections replies answer from (each must be readable by the caller).
    #[serde(default)]
    collections: Option<Vec<i64>>,
}

/// Checks that the caller may read every collection named.
async fn check_collections(
    state: &AppState,
    caller: &crate::auth::Principal,
    ids: Option<&Vec<i64>>,
) -> Result<(), ApiError> {
    if let Some(ids) = ids {
        super::documents::searchable(state, caller, Some(ids)).await?;
    }
    Ok(())
}

/// `POST /api/v1/conversations`.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    let title = body.title.unwrap_or_else(|| DEFAULT_TITLE.to_string());
    check_text("title", &title, 500)?;
    let system_prompt = body.system_prompt.unwrap_or_default();
    check_text("system_prompt", &system_prompt, 100_000)?;
    let settings = body.settings.unwrap_or_else(|| json!({}));
    Settings::parse(&settings, "settings", state.config.engine.ctx_per_slot)?;
    let (_, model) = inference::resolve_model(&state, body.model.as_deref().unwrap_or("")).await?;
    check_collections(&state, &caller, body.collections.as_ref()).await?;
    let at = conv::now();
    let created = state
        .store
        .create_conversation(
            Conversation {
                id: conv::new_id(),
                title,
                model: model.name.clone(),
                system_prompt,
                settings,
                created_at: at.clone(),
                updated_at: at,
                collections: body.collections.unwrap_or_default(),
            },
            caller.owner_id(),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// Query of `GET /api/v1/conversations`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
    /// Admins: every user's conversations, not just their own.
    #[serde(default)]
    all: bool,
}

/// Lists and searches show the caller's own conversations; admins may ask for all.
fn list_owner(caller: &crate::auth::Principal, all: bool) -> Owner {
    if all && caller.is_admin() {
        None
    } else {
        caller.owner_id()
    }
}

/// `GET /api/v1/conversations`: newest first, `limit` (1–200, default 50) per page,
/// `cursor` from the previous page's `next_cursor`.
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            "`limit` must be from 1 to 200",
        ));
    }
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.split_once('~')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    ApiError::bad_field("cursor", "`cursor` is not one this server issued")
                })?,
        ),
    };
    let page = state
        .store
        .list_conversations(limit, after, list_owner(&caller, q.all))
        .await?;
    let next_cursor = (page.len() == limit as usize)
        .then(|| page.last().map(|c| format!("{}~{}", c.updated_at, c.id)))
        .flatten();
    Ok(axum::Json(
        json!({ "data": page, "next_cursor": next_cursor }),
    ))
}

/// Query of `GET /api/v1/conversations/search`.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: String,
    #[serde(default)]
    limit: Option<u32>,
    /// Admins: search every user's conversations.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/conversations/search?q=…`: full-text search of titles and messages.
pub async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<SearchQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    check_text("q", &q.q, 500)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let hits = state
        .store
        .search_conversations(q.q, limit, list_owner(&caller, q.all))
        .await?;
    Ok(axum::Json(json!({ "data": hits })))
}

/// `GET /api/v1/conversations/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let conversation = state
        .store
        .conversation(id.clone(), caller.owner_filter())
        .await?;
    let messages = state.store.messages(id, caller.owner_filter()).await?;
    Ok(axum::Json(
        json!({ "conversation": conversation, "messages": messages }),
    ))
}

/// `PATCH /api/v1/conversations/{id}`.
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<CreateBody>,
) -> Result<axum::Json<Conversation>, ApiError> {
    if let Some(t) = &body.title {
        check_text("title", t, 500)?;
        if t.trim().is_empty() {
            return Err(ApiError::bad_field("title", "`title` must not be empty"));
        }
    }
    if let Some(s) = &body.system_prompt {
        check_text("system_prompt", s, 100_000)?;
    }
    if let Some(s) = &body.settings {
        Settings::parse(s, "settings", state.config.engine.ctx_per_slot)?;
    }
    let model = match &body.model {
        Some(m) => Some(inference::resolve_model(&state, m).await?.1.name.clone()),
        None => None,
    };
    check_collections(&state, &caller, body.collections.as_ref()).await?;
    let patch = ConversationPatch {
        title: body.title,
        model,
        system_prompt: body.system_prompt,
        settings: body.settings,
        collections: body.collections,
    };
    Ok(axum::Json(
        state
            .store
            .update_conversation(id, patch, caller.owner_filter())
            .await?,
    ))
}

/// `DELETE /api/v1/conversations/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_conversation(id, caller.owner_filter())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/conversations/{id}/messages/{message_id}`: removes that message and
/// every later one (regenerate, edit-and-resend).
pub async fn truncate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, message_id)): Path<(String, i64)>,
) -> Result<axum::Json<Value>, ApiError> {
    let removed = state
        .store
        .truncate_messages(id, message_id, caller.owner_filter())
        .await?;
    Ok(axum::Json(json!({ "removed": removed })))
}

/// Body of `POST /api/v1/conversations/{id}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    content: String,
    /// Stream the reply as server-sent events (default true).
    #[serde(default)]
    stream: Option<bool>,
    /// Settings for this message only, over the conversation's.
    #[serde(default)]
    settings: Option<Value>,
}

/// `POST /api/v1/conversations/{id}/messages`: adds a user message and generates the
/// reply.
pub async fn send(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Json(body): Json<SendBody>,
) -> Result<Response, ApiError> {
    if body.content.trim().is_empty() {
        return Err(ApiError::bad_field(
            "content",
            "`content` must not be empty",
        ));
    }
    check_text("content", &body.content, 1_000_000)?;
    let conversation = state
        .store
        .conversation(id.clone(), caller.owner_filter())
        .await?;
    let history = state
        .store
        .messages(id.clone(), caller.owner_filter())
        .await?;
    let mut settings = conversation.settings.clone();
    if let (Some(Value::Object(over)), Value::Object(base)) = (&body.settings, &mut settings) {
        base.extend(over.clone());
    }
    let ctx = state.config.engine.ctx_per_slot;
    let params =
        inference::sampling_params(&Settings::parse(&settings, "settings", ctx)?.wire(), ctx)?;
    let (spec, _) = inference::resolve_model(&state, &conversation.model).await?;
    let mut prompt = chat::conversation_prompt(&conversation, &history, &body.content);
    let mut grounding = None;
    if !conversation.collections.is_empty() {
        let grounded = ground(
            &state,
            &caller,
            &spec,
            &conversation.collections,
            prompt,
            &body.content,
            &params,
        )
        .await?;
        prompt = grounded.prompt;
        grounding = Some((grounded.sources, grounded.dropped));
    }
    let name = spec.name.clone();
    let reply = inference::start(&state, &caller, spec, Prompt::Chat(prompt), params, None).await?;
    if history.is_empty() && conversation.title == DEFAULT_TITLE {
        let patch = ConversationPatch {
            title: Some(chat::short_title(&body.content)),
            ..Default::default()
        };
        state
            .store
            .update_conversation(id.clone(), patch, caller.owner_filter())
            .await?;
    }
    let recorder = Recorder::new(
        state.store.clone(),
        state.tasks.clone(),
        id,
        caller.owner_filter(),
        name,
        body.content.clone(),
    );
    let recorder = match &grounding {
        Some((sources, _)) => recorder.with_sources(json!(sources)),
        None => recorder,
    };
    let reply = reply.record(Some(recorder));
    let retrieval =
        grounding.map(|(sources, dropped)| json!({"sources": sources, "dropped_sources": dropped}));
    if body.stream.unwrap_or(true) {
        return Ok(stream_reply(reply, retrieval));
    }
    let done = reply.collect().await?;
    let (user, message) = done
        .stored
        .ok_or_else(|| ApiError::Internal("the exchange was not stored".into()))?;
    let mut out = json!({ "user_message": user, "message": message });
    if let Some(r) = retrieval {
        out["sources"] = r["sources"].clone();
        out["dropped_sources"] = r["dropped_sources"].clone();
    }
    Ok(axum::Json(out).into_response())
}

/// Grounds the prompt in the conversation's collections (those the caller can still
/// read: a collection unshared or deleted since is skipped).
pub(super) async fn ground(
    state: &AppState,
    caller: &crate::auth::Principal,
    spec: &crate::engine::ModelSpec,
    collections: &[i64],
    prompt: Vec<crate::engine::ChatMessage>,
    question: &str,
    params: &crate::engine::SamplingParams,
) -> Result<chat::context::Grounded, ApiError> {
    let readable = state.store.list_collections(caller.owner_filter()).await?;
    let collections: Vec<i64> = collections
        .iter()
        .copied()
        .filter(|id| readable.iter().any(|c| c.id == *id))
        .collect();
    let ctx = state.config.engine.ctx_per_slot;
    let reserve = params.max_tokens.unwrap_or((ctx / 4).min(512)).min(ctx / 2);
    let grounding = chat::context::Grounding {
        collections,
        max_sources: state.config.documents.context_chunks as usize,
        min_score: state.config.documents.min_score,
        n_ctx: ctx,
        reserve,
    };
    Ok(chat::context::ground(
        &state.documents,
        &state.engine,
        spec,
        caller.user_id,
        prompt,
        question,
        grounding,
    )
    .await?)
}

fn stream_reply(reply: Reply, retrieval: Option<Value>) -> Response {
    let events = reply
        .events()
        .map(move |event| match event {
            ReplyEvent::Text(text) => json!({"type": "token", "text": text}),
            // Conversations ask for no log probabilities: never sent.
            ReplyEvent::Logprobs(_) => json!({"type": "logprobs"}),
            // Conversations offer no tools, so no reply looks for calls.
            ReplyEvent::Call(call) => json!({"type": "tool_call", "name": call.name}),
            ReplyEvent::Done { stored, .. } => {
                let (user, message) = match stored {
                    Some(pair) => (json!(pair.0), json!(pair.1)),
                    None => (Value::Null, Value::Null),
                };
                let mut done = json!({"type": "done", "user_message": user, "message": message});
                if let Some(r) = &retrieval {
                    done["sources"] = r["sources"].clone();
                    done["dropped_sources"] = r["dropped_sources"].clone();
                }
                done
            }
            ReplyEvent::Failed { error, stored } => {
                json!({"type": "error", "error": error.body()["error"], "message": stored})
            }
        })
        .map(|value| Ok::<_, Infallible>(SseEvent::default().data(value.to_string())));
    Sse::new(events)
        .keep_alive(SseKeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Query of the export route.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// The JSON export/import document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportDocument {
    /// Always `appliance.conversation.v1`.
    format: String,
    conversation: Conversation,
    messages: Vec<Message>,
}

const EXPORT_FORMAT: &str = "appliance.conversation.v1";

/// `GET /api/v1/conversations/{id}/export?format=json|markdown`.
pub async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let conversation = state
        .store
        .conversation(id.clone(), caller.owner_filter())
        .await?;
    let messages = state
        .store
        .messages(id.clone(), caller.owner_filter())
        .await?;
    let file = |ext: &str| format!("attachment; filename=\"{id}.{ext}\"");
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            // Message ids are internal row ids: leave them out so an export of an
            // imported conversation is identical to the original export.
            let messages: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let mut v = serde_json::to_value(m).unwrap_or_default();
                    if let Value::Object(o) = &mut v {
                        o.remove("id");
                    }
                    v
                })
                .collect();
            let doc = json!({"format": EXPORT_FORMAT, "conversation": conversation, "messages": messages});
            Ok((
                [(header::CONTENT_DISPOSITION, file("json"))],
                axum::Json(doc),
            )
                .into_response())
        }
        "markdown" | "md" => {
            let mut md = format!("# {}\n\n", conversation.title);
            md.push_str(&format!(
                "*Model: {} · created {} · exported from the appliance*\n\n",
                conversation.model, conversation.created_at
            ));
            if !conversation.system_prompt.is_empty() {
                md.push_str(&format!("## System\n\n{}\n\n", conversation.system_prompt));
            }
            for m in &messages {
                let who = match m.role.as_str() {
                    "user" => "User",
                    "assistant" => "Assistant",
                    _ => "System",
                };
                let note = match m.status {
                    MessageStatus::Complete => "",
                    MessageStatus::CutOff => " (cut off)",
                    MessageStatus::Error => " (interrupted by an error)",
                };
                md.push_str(&format!("## {who}{note}\n\n{}\n\n", m.content));
            }
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        "text/markdown; charset=utf-8".to_string(),
                    ),
                    (header::CONTENT_DISPOSITION, file("md")),
                ],
                md,
            )
                .into_response())
        }
        other => Err(ApiError::bad_field(
            "format",
            format!("unknown export format `{other}` (json or markdown)"),
        )),
    }
}

/// `POST /api/v1/conversations/import`: stores an exported conversation (keeping its
/// id when it is free).
pub async fn import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(doc): Json<ExportDocument>,
) -> Result<Response, ApiError> {
    if doc.format != EXPORT_FORMAT {
        return Err(ApiError::bad_field(
            "format",
            format!("expected `{EXPORT_FORMAT}`"),
        ));
    }
    chat::check_import(&doc.conversation, &doc.messages)
        .map_err(|e| ApiError::bad_field(&e.field, format!("`{}` {}", e.field, e.message)))?;
    Settings::parse(
        &doc.conversation.settings,
        "conversation.settings",
        state.config.engine.ctx_per_slot,
    )?;
    // Collection ids belong to the install that exported them: attach anew here.
    let mut conversation = doc.conversation;
    conversation.collections.clear();
    let stored = state
        .store
        .import_conversation(conversation, doc.messages, caller.owner_id())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(stored)).into_response())
}
