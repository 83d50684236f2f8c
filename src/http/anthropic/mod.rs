//! The Anthropic Messages API (`POST /v1/messages`), which the official `anthropic`
//! SDKs and the tools built on them speak.
//!
//! A request becomes the same engine messages and [`ToolSet`] as an OpenAI chat
//! completion: tools are converted to OpenAI's shape and validated by the same code,
//! `tool_use` blocks become assistant calls and `tool_result` blocks `tool` messages.
//! What this server cannot honour is refused with a 400 naming the field (images,
//! documents, extended thinking, server tools, a final assistant message to continue);
//! `cache_control` is only a hint and is ignored.
//!
//! Every error on this route, wherever it arises (credentials, limits, validation, the
//! engine), leaves in Anthropic's shape `{"type":"error","error":{"type","message"}}`:
//! [`error_shape`] rewrites the one [`ApiError`] body on the way out, and streams use
//! the same [`error_body`]. Known gap: the worker reports a stop sequence and the end
//! of the turn alike, so `stop_reason` is `end_turn` (never `stop_sequence`) for both.

mod request;
mod stream;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::engine::{FinishReason, ToolCall};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::LenientJson as Json;
use super::inference;
pub(super) use request::{Prepared, prepare};

/// The route this module serves.
pub const PATH: &str = "/v1/messages";

/// Anthropic's error `type` for an HTTP status: the one mapping every error on this
/// route goes through.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An error in Anthropic's shape (also sent inside streams).
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// Rewrites the JSON error answers of this route (from the handler, or from the
/// credential and limit checks before it) into Anthropic's shape, keeping the status
/// and headers (`Retry-After`); the field at fault leads the message.
pub async fn error_shape(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status().is_success() || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    // Anthropic's body has no `param`: the message names the field instead.
    let message = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => match (v["error"]["message"].as_str(), v["error"]["param"].as_str()) {
            (Some(message), Some(param)) => format!("{param}: {message}"),
            (Some(message), None) => message.to_string(),
            (None, _) => String::from_utf8_lossy(&bytes).into_owned(),
        },
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = error_body(parts.status, &message).to_string();
    Response::from_parts(parts, Body::from(body))
}

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let Prepared {
        model,
        messages,
        tools,
        mut params,
        stream,
    } = prepare(body, state.config.engine.ctx_per_slot)?;
    let (spec, info) = inference::resolve_model(&state, &model).await?;
    let prompt =
        inference::tool_prompt(&state, &spec, &info, messages, tools.as_ref(), &mut params).await?;
    let name = spec.name.clone();
    let reply = inference::start(&state, &caller, spec, prompt, params, None)
        .await?
        .parse_tools(tools);
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    if stream {
        return Ok(stream::message_stream(id, name, reply));
    }
    let done = reply.collect().await?;
    let mut content = Vec::new();
    if !done.text.is_empty() || done.calls.is_empty() {
        content.push(json!({"type": "text", "text": done.text}));
    }
    content.extend(done.calls.iter().map(tool_use));
    Ok(axum::Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": name,
        "content": content,
        "stop_reason": stop_reason(done.finish_reason, !done.calls.is_empty()),
        "stop_sequence": null,
        "usage": {"input_tokens": done.usage.prompt_tokens, "output_tokens": done.usage.completion_tokens},
    }))
    .into_response())
}

pub(super) fn stop_reason(reason: FinishReason, called: bool) -> &'static str {
    match reason {
        _ if called => "tool_use",
        FinishReason::Length => "max_tokens",
        FinishReason::Stop | FinishReason::Cancelled => "end_turn",
    }
}

/// Anthropic's id for a call (`toolu_…`).
fn tool_use_id(call: &ToolCall) -> String {
    match call.id.strip_prefix("call_") {
        Some(rest) => format!("toolu_{rest}"),
        None => call.id.clone(),
    }
}

pub(super) fn tool_use(call: &ToolCall) -> Value {
    let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
    json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": input})
}

#[cfg(test)]
mod tests;
