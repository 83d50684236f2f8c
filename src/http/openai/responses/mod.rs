//! OpenAI's Responses API (`POST /v1/responses`), the stateless subset plus
//! `previous_response_id`.
//!
//! A request's items become the same engine messages and [`ToolSet`] as a chat
//! completion (flat function tools are converted to the chat shape and validated by the
//! same code; `text.format` is the same constraint as `response_format`). With `store`
//! (OpenAI's default) the exchange is kept ([`crate::store::responses`]) so a later
//! request naming it in `previous_response_id` continues the conversation; a chain
//! belongs to its owner alone, and anyone else's id is answered 404. What this server
//! cannot honour is refused with a 400 naming the field: reasoning options, `include`,
//! background responses, truncation other than `disabled`, built-in tools,
//! conversations. Streaming is in [`stream`].

pub mod items;
mod request;
mod stream;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::engine::{FinishReason, ToolCall, Usage};
use crate::store::StoreError;
use crate::store::responses::NewResponse;

use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::extract::LenientJson as Json;
use super::super::inference;
use items::Item;
pub(in crate::http) use request::{Prepared, prepare};

/// What every response object of one request repeats.
pub(super) struct Echo {
    id: String,
    created_at: u64,
    model: String,
    fields: Map<String, Value>,
}

impl Echo {
    /// The response object with this status and output.
    fn object(
        &self,
        status: &str,
        output: &[Value],
        usage: Option<&Usage>,
        incomplete: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        let mut object = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete.map(|reason| json!({"reason": reason})),
            "model": self.model,
            "output": output,
            "usage": usage.map(usage_object),
        });
        if let Value::Object(map) = &mut object {
            map.extend(self.fields.clone());
        }
        object
    }
}

fn usage_object(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// How a finished reply ended: the response's status and, when incomplete, why.
fn ending(reason: FinishReason, called: bool) -> (&'static str, Option<&'static str>) {
    match reason {
        FinishReason::Length if !called => ("incomplete", Some("max_output_tokens")),
        _ => ("completed", None),
    }
}

/// Keeps an exchange for `previous_response_id` (when the request has `store`).
pub(super) struct Saver {
    store: crate::store::Store,
    user_id: Option<i64>,
    previous: Option<String>,
    input: Vec<Item>,
}

impl Saver {
    async fn save(self, echo: &Echo, output: &[Item]) -> Result<(), ApiError> {
        let values = |items: &[Item]| Value::Array(items.iter().map(Item::to_value).collect());
        self.store
            .save_response(NewResponse {
                id: echo.id.clone(),
                user_id: self.user_id,
                previous_id: self.previous,
                model: echo.model.clone(),
                input: values(&self.input),
                output: values(output),
            })
            .await
            .map_err(ApiError::from)
    }
}

/// The output items of a finished reply, as answered and as stored.
fn outputs(text: &str, calls: &[ToolCall], message_status: &str) -> (Vec<Value>, Vec<Item>) {
    let mut shown = Vec::new();
    let mut kept = Vec::new();
    if !text.is_empty() || calls.is_empty() {
        shown.push(items::message_item(
            &items::new_id("msg"),
            text,
            message_status,
        ));
        kept.push(Item::Message {
            role: "assistant".into(),
            content: text.to_string(),
        });
    }
    for call in calls {
        shown.push(items::call_item(&items::new_id("fc"), call, "completed"));
        kept.push(Item::FunctionCall {
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
    }
    (shown, kept)
}

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let Prepared {
        model,
        instructions,
        input,
        previous,
        tools,
        mut params,
        stream,
        store,
        echo,
    } = prepare(body, state.config.engine.ctx_per_slot)?;
    let mut history = Vec::new();
    if let Some(id) = &previous {
        let stored = match state
            .store
            .response_items(id.clone(), caller.owner_id())
            .await
        {
            Ok(stored) => stored,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::NotFound(format!(
                    "previous response `{id}` not found"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        for value in &stored {
            history.push(items::parse(value, "previous_response_id")?);
        }
    }
    history.extend(input.iter().cloned());
    let mut messages = Vec::with_capacity(history.len() + 1);
    if let Some(instructions) = instructions {
        messages.push(crate::engine::ChatMessage::new("system", instructions));
    }
    messages.extend(items::to_messages(&history));
    inference::check_messages(&messages).map_err(|e| match e {
        ApiError::BadRequest { message, .. } => ApiError::bad_field("input", message),
        other => other,
    })?;
    let (spec, info) = inference::resolve_model(&state, &model).await?;
    let prompt =
        inference::tool_prompt(&state, &spec, &info, messages, tools.as_ref(), &mut params).await?;
    let echo = Echo {
        id: items::new_id("resp"),
        created_at: inference::unix_now(),
        model: spec.name.clone(),
        fields: echo,
    };
    let reply = inference::start(&state, &caller, spec, prompt, params, None)
        .await?
        .parse_tools(tools);
    let saver = store.then(|| Saver {
        store: state.store.clone(),
        user_id: caller.owner_id(),
        previous,
        input,
    });
    if stream {
        return Ok(stream::respond(echo, reply, saver));
    }
    let done = reply.collect().await?;
    let (status, incomplete) = ending(done.finish_reason, !done.calls.is_empty());
    let message_status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    let (output, kept) = outputs(&done.text, &done.calls, message_status);
    if let Some(saver) = saver {
        saver.save(&echo, &kept).await?;
    }
    let object = echo.object(status, &output, Some(&done.usage), incomplete, None);
    Ok(axum::Json(object).into_response())
}
