//! The native conversations API (`/api/v1/conversations…`): server-side chat history.
//!
//! Sending a message streams the reply and then stores the user turn and the reply in
//! one transaction. If the client disconnects or the engine fails mid-reply, the
//! partial reply is stored marked `cut_off` or `error` — labelled, never silently
//! half-written — and nothing at all is stored when the request fails before the
//! reply starts (busy, prompt too long).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::engine::{ChatMessage, FinishReason, GenEvent, Generation, Prompt, Usage};
use crate::store::Store;
use crate::store::conversations::{
    self as conv, Conversation, ConversationPatch, Message, MessageStatus, Owner,
};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::Json;
use super::inference::{self, WireSampling};

const DEFAULT_TITLE: &str = "New conversation";

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
    fn parse(value: &Value, param: &str) -> Result<Settings, ApiError> {
        let settings: Settings = serde_json::from_value(value.clone())
            .map_err(|e| ApiError::bad_field(param, format!("invalid settings: {e}")))?;
        inference::sampling_params(&settings.wire())?;
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
    Settings::parse(&settings, "settings")?;
    let (_, model) = inference::resolve_model(&state, body.model.as_deref().unwrap_or("")).await?;
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
            },
            caller.owner_id(),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// A title from the first message: whitespace collapsed, at most 60 characters, cut at
/// a word boundary with an ellipsis.
fn short_title(text: &str) -> String {
    let mut title = String::new();
    for word in text.split_whitespace() {
        let extra = usize::from(!title.is_empty());
        if title.chars().count() + extra + word.chars().count() > 60 {
            if title.is_empty() {
                title = word.chars().take(59).collect();
            }
            title.push('…');
            return title;
        }
        if extra == 1 {
            title.push(' ');
        }
        title.push_str(word);
    }
    title
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
        Settings::parse(s, "settings")?;
    }
    let model = match &body.model {
        Some(m) => Some(inference::resolve_model(&state, m).await?.1.name.clone()),
        None => None,
    };
    let patch = ConversationPatch {
        title: body.title,
        model,
        system_prompt: body.system_prompt,
        settings: body.settings,
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
    let params = inference::sampling_params(&Settings::parse(&settings, "settings")?.wire())?;
    let (spec, _) = inference::resolve_model(&state, &conversation.model).await?;

    let mut prompt = Vec::with_capacity(history.len() + 2);
    if !conversation.system_prompt.is_empty() {
        prompt.push(ChatMessage {
            role: "system".into(),
            content: conversation.system_prompt.clone(),
        });
    }
    prompt.extend(history.iter().map(|m| ChatMessage {
        role: m.role.clone(),
        content: m.content.clone(),
    }));
    prompt.push(ChatMessage {
        role: "user".into(),
        content: body.content.clone(),
    });
    let mut generation =
        inference::generate(&state, &caller, &spec, Prompt::Chat(prompt), params, None).await?;
    match generation.next().await {
        Some(Ok(GenEvent::Started { .. })) => {}
        Some(Err(e)) => return Err(e.into()),
        _ => {
            return Err(ApiError::Internal(
                "the generation ended before it started".into(),
            ));
        }
    }
    if history.is_empty() && conversation.title == DEFAULT_TITLE {
        let title = short_title(&body.content);
        let patch = ConversationPatch {
            title: Some(title),
            ..Default::default()
        };
        state
            .store
            .update_conversation(id.clone(), patch, caller.owner_filter())
            .await?;
    }
    let recorder = Recorder::new(
        state.store.clone(),
        id,
        caller.owner_filter(),
        spec.name,
        body.content.clone(),
    );
    if body.stream.unwrap_or(true) {
        Ok(stream_reply(recorder, generation))
    } else {
        let mut recorder = recorder;
        let mut generation = generation;
        loop {
            match generation.next().await {
                Some(Ok(GenEvent::Token(t))) => recorder.text.push_str(&t),
                Some(Ok(GenEvent::Started { .. })) => {}
                Some(Ok(GenEvent::Done {
                    finish_reason,
                    usage,
                })) => {
                    let (user, reply) = recorder
                        .save(MessageStatus::Complete, Some(finish_reason), Some(usage))
                        .await?;
                    return Ok(
                        axum::Json(json!({ "user_message": user, "message": reply }))
                            .into_response(),
                    );
                }
                Some(Err(e)) => {
                    let _ = recorder.save(MessageStatus::Error, None, None).await;
                    return Err(e.into());
                }
                None => {
                    return Err(ApiError::Internal(
                        "the generation ended without finishing".into(),
                    ));
                }
            }
        }
    }
}

/// Owns the pending user turn and the reply so far, and stores them exactly once:
/// through [`Recorder::save`] when the caller wants the stored rows back, otherwise
/// when dropped — with the outcome set by [`Recorder::outcome`], or `cut_off` when the
/// stream was dropped early because the client left.
pub(super) struct Recorder {
    store: Store,
    conversation: String,
    owner: Owner,
    model: String,
    user: Option<Message>,
    /// The reply so far.
    pub(super) text: String,
    outcome: (MessageStatus, Option<FinishReason>, Option<Usage>),
}

impl Recorder {
    /// Starts recording a user turn in `conversation`.
    pub(super) fn new(
        store: Store,
        conversation: String,
        owner: Owner,
        model: String,
        user_content: String,
    ) -> Recorder {
        Recorder {
            store,
            conversation,
            owner,
            model,
            user: Some(Message {
                id: 0,
                role: "user".into(),
                content: user_content,
                model: None,
                status: MessageStatus::Complete,
                finish_reason: None,
                prompt_tokens: None,
                completion_tokens: None,
                cached_tokens: None,
                prompt_ms: None,
                generation_ms: None,
                created_at: conv::now(),
            }),
            text: String::new(),
            outcome: (MessageStatus::CutOff, None, None),
        }
    }

    /// Records how the reply ended (stored when the recorder is dropped).
    pub(super) fn outcome(
        &mut self,
        status: MessageStatus,
        reason: Option<FinishReason>,
        usage: Option<Usage>,
    ) {
        self.outcome = (status, reason, usage);
    }

    fn messages(&mut self) -> Option<Vec<Message>> {
        let user = self.user.take()?;
        let (status, reason, usage) = self.outcome;
        let reply = Message {
            id: 0,
            role: "assistant".into(),
            content: std::mem::take(&mut self.text),
            model: Some(self.model.clone()),
            status,
            finish_reason: reason.map(|r| match r {
                FinishReason::Length => "length".to_string(),
                FinishReason::Stop | FinishReason::Cancelled => "stop".to_string(),
            }),
            prompt_tokens: usage.map(|u| u.prompt_tokens.into()),
            completion_tokens: usage.map(|u| u.completion_tokens.into()),
            cached_tokens: usage.map(|u| u.cached_tokens.into()),
            prompt_ms: usage.map(|u| u.prompt_ms),
            generation_ms: usage.map(|u| u.generation_ms),
            created_at: conv::now(),
        };
        Some(vec![user, reply])
    }

    /// Stores the exchange now and returns the stored (user, reply).
    pub(super) async fn save(
        &mut self,
        status: MessageStatus,
        reason: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Result<(Message, Message), ApiError> {
        self.outcome(status, reason, usage);
        let messages = self
            .messages()
            .ok_or_else(|| ApiError::Internal("the exchange was already stored".into()))?;
        let mut stored = self
            .store
            .append_messages(self.conversation.clone(), messages, self.owner)
            .await?;
        let reply = stored.pop().expect("two messages stored");
        let user = stored.pop().expect("two messages stored");
        Ok((user, reply))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(messages) = self.messages() {
            let (store, id, owner) = (self.store.clone(), self.conversation.clone(), self.owner);
            tokio::spawn(async move {
                if let Err(e) = store.append_messages(id, messages, owner).await {
                    tracing::error!(error = %e, "could not store a reply");
                }
            });
        }
    }
}

fn stream_reply(recorder: Recorder, generation: Generation) -> Response {
    let events = stream::unfold(Some((recorder, generation)), |state| async move {
        let (mut recorder, mut generation) = state?;
        loop {
            let value = match generation.next().await {
                Some(Ok(GenEvent::Token(text))) => {
                    recorder.text.push_str(&text);
                    json!({"type": "token", "text": text})
                }
                Some(Ok(GenEvent::Started { .. })) => continue,
                Some(Ok(GenEvent::Done { finish_reason, usage })) => {
                    match recorder.save(MessageStatus::Complete, Some(finish_reason), Some(usage)).await {
                        Ok((user, reply)) => {
                            return Some((json!({"type": "done", "user_message": user, "message": reply}), None));
                        }
                        Err(e) => return Some((json!({"type": "error", "error": e.body()["error"]}), None)),
                    }
                }
                Some(Err(e)) => {
                    let error = ApiError::from(e);
                    let stored = recorder.save(MessageStatus::Error, None, None).await.ok();
                    return Some((
                        json!({"type": "error", "error": error.body()["error"], "message": stored.map(|s| s.1)}),
                        None,
                    ));
                }
                None => return None,
            };
            return Some((value, Some((recorder, generation))));
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
    let c = &doc.conversation;
    if !c.id.starts_with("conv_")
        || c.id.len() > 64
        || !c
            .id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        return Err(ApiError::bad_field(
            "conversation.id",
            "not a conversation id",
        ));
    }
    check_text("conversation.title", &c.title, 500)?;
    Settings::parse(&c.settings, "conversation.settings")?;
    for (i, m) in doc.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(ApiError::bad_field(
                &format!("messages[{i}].role"),
                "must be system, user or assistant",
            ));
        }
        check_text(&format!("messages[{i}].content"), &m.content, 1_000_000)?;
    }
    let stored = state
        .store
        .import_conversation(doc.conversation, doc.messages, caller.owner_id())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(stored)).into_response())
}

#[cfg(test)]
mod tests {
    use super::short_title;

    #[test]
    fn titles_are_cut_at_a_word_boundary() {
        assert_eq!(
            short_title("  What is   the capital? "),
            "What is the capital?"
        );
        let long = "Write a function that returns the sum of a list of numbers in Rust please";
        let title = short_title(long);
        assert!(
            title.ends_with('…') && title.chars().count() <= 61,
            "{title}"
        );
        assert!(long.starts_with(title.trim_end_matches('…')));
        assert!(!title.trim_end_matches('…').ends_with(' '));
        assert_eq!(short_title(&"x".repeat(100)).chars().count(), 60);
    }
}
