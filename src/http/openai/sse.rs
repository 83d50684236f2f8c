//! The OpenAI streaming wire: server-sent events of chat and text completion chunks
//! (one `created` and `id` per stream, a role-only first delta, tool-call deltas, the
//! finish chunk, an optional usage chunk, `[DONE]`; a mid-stream failure as
//! `data: {"error": …}`), for one choice or several interleaved.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive as SseKeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};

use super::types::UsageOut;
use super::{Head, fingerprint, finish_reason, logprob_entries};
use crate::engine::{FinishReason, ToolCall, Usage};
use crate::http::reply::{Reply, ReplyEvent};

pub(super) fn sse(stream: impl Stream<Item = Value> + Send + 'static) -> Response {
    let events = stream.map(|value| {
        let data = match value {
            Value::String(s) if s == "[DONE]" => s,
            other => other.to_string(),
        };
        Ok::<_, Infallible>(SseEvent::default().data(data))
    });
    Sse::new(events)
        .keep_alive(SseKeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The payloads of a reply's `index`th call.
type CallPayloads = Box<dyn Fn(usize, &ToolCall) -> Vec<Value> + Send + Sync>;

/// One wire shape of a streamed reply: the first payload, each text chunk, and the
/// payloads that close a finished stream.
struct Shape {
    opening: Option<Value>,
    chunk: Box<dyn Fn(&str) -> Value + Send + Sync>,
    /// The payloads of the `index`th call.
    call: CallPayloads,
    /// Given whether any call was made.
    closing: Box<dyn Fn(FinishReason, Usage, bool) -> Vec<Value> + Send + Sync>,
}

/// Maps a reply onto an OpenAI event stream: the opening payload, one payload per text,
/// the closing payloads and `[DONE]` — or, when the generation fails after it started,
/// an `{"error": …}` payload (the status line is long gone by then).
fn drive(reply: Reply, shape: Shape) -> impl Stream<Item = Value> + Send + 'static {
    let Shape {
        opening,
        chunk,
        call,
        closing,
    } = shape;
    let mut calls = 0;
    let mut logprobs = Vec::new();
    let body = reply.events().flat_map(move |event| {
        let out: Vec<Value> = match event {
            ReplyEvent::Logprobs(l) => {
                logprobs.extend(l);
                Vec::new()
            }
            ReplyEvent::Text(text) => {
                let mut payload = chunk(&text);
                if !logprobs.is_empty() {
                    let entries = logprob_entries(&std::mem::take(&mut logprobs));
                    payload["choices"][0]["logprobs"] = json!({ "content": entries });
                }
                vec![payload]
            }
            ReplyEvent::Call(c) => {
                calls += 1;
                call(calls - 1, &c)
            }
            ReplyEvent::Done {
                finish_reason,
                usage,
                ..
            } => {
                let mut out = closing(finish_reason, usage, calls > 0);
                out.push(Value::String("[DONE]".into()));
                out
            }
            ReplyEvent::Failed { error, .. } => vec![error.body()],
        };
        stream::iter(out)
    });
    stream::iter(opening).chain(body)
}

/// One streamed choice: chunks, its finish chunk, a usage chunk when asked, `[DONE]`.
pub(super) fn chat_stream(
    head: Head,
    reply: Reply,
    include_usage: bool,
    sources: Option<Value>,
) -> impl Stream<Item = Value> + Send + 'static {
    choice_stream(head, 0, reply, include_usage, sources)
}

/// Several streamed choices (`n` > 1) interleaved as their chunks come, each under its
/// own `index`; one usage chunk (the prompt counted once) and one `[DONE]` at the end.
pub(super) fn choices_stream(
    head: Head,
    replies: Vec<Reply>,
    include_usage: bool,
) -> impl Stream<Item = Value> + Send + 'static {
    let total = std::sync::Arc::new(parking_lot::Mutex::new(None::<Usage>));
    let streams = replies.into_iter().enumerate().map(|(index, reply)| {
        let head = Head {
            id: head.id.clone(),
            created: head.created,
            model: head.model.clone(),
        };
        // Each choice reports its usage; it is summed here and sent once.
        choice_stream(head, index, reply, true, None).boxed()
    });
    let sum = total.clone();
    let merged = stream::select_all(streams).filter_map(move |value| {
        let out = match &value {
            Value::String(done) if done == "[DONE]" => None,
            v if v["choices"].as_array().is_some_and(Vec::is_empty) => {
                let usage = |key: &str| v["usage"][key].as_u64().unwrap_or(0) as u32;
                let mut total = sum.lock();
                let t = total.get_or_insert_with(|| Usage {
                    prompt_tokens: usage("prompt_tokens"),
                    cached_tokens: v["usage"]["prompt_tokens_details"]["cached_tokens"]
                        .as_u64()
                        .unwrap_or(0) as u32,
                    ..Usage::default()
                });
                t.completion_tokens += usage("completion_tokens");
                None
            }
            _ => Some(value),
        };
        std::future::ready(out)
    });
    let closing = stream::once(async move {
        let mut out = Vec::new();
        if include_usage && let Some(usage) = *total.lock() {
            out.push(json!({
                "id": head.id, "object": "chat.completion.chunk", "created": head.created,
                "model": head.model, "system_fingerprint": fingerprint(),
                "choices": [], "usage": UsageOut::from(usage),
            }));
        }
        out.push(Value::String("[DONE]".into()));
        stream::iter(out)
    })
    .flatten();
    merged.chain(closing)
}

fn choice_stream(
    head: Head,
    index: usize,
    reply: Reply,
    include_usage: bool,
    sources: Option<Value>,
) -> impl Stream<Item = Value> + Send + 'static {
    let chunk = {
        let (id, created, model) = (head.id.clone(), head.created, head.model.clone());
        move |delta: Value, finish: Option<&str>| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": fingerprint(),
                "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
            })
        }
    };
    let opening = chunk(json!({"role": "assistant", "content": ""}), None);
    let token_chunk = chunk.clone();
    let call_chunk = chunk.clone();
    drive(
        reply,
        Shape {
            opening: Some(opening),
            chunk: Box::new(move |text| token_chunk(json!({"content": text}), None)),
            // The id, type and name once, then the arguments.
            call: Box::new(move |index, c| {
                vec![
                    call_chunk(
                        json!({"tool_calls": [{"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                        None,
                    ),
                    call_chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": c.arguments}}]}),
                        None,
                    ),
                ]
            }),
            closing: Box::new(move |reason, usage, called| {
                let mut last = chunk(json!({}), Some(finish_reason(reason, called)));
                if let Some(sources) = &sources {
                    last["sources"] = sources.clone();
                }
                let mut out = vec![last];
                if include_usage {
                    out.push(json!({
                        "id": head.id, "object": "chat.completion.chunk", "created": head.created,
                        "model": head.model, "system_fingerprint": fingerprint(),
                        "choices": [], "usage": UsageOut::from(usage),
                    }));
                }
                out
            }),
        },
    )
}

pub(super) fn text_stream(
    head: Head,
    reply: Reply,
    include_usage: bool,
    echo: Option<String>,
) -> impl Stream<Item = Value> + Send + 'static {
    let chunk = {
        let (id, created, model) = (head.id.clone(), head.created, head.model.clone());
        move |text: &str, finish: Option<&str>| {
            json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "system_fingerprint": fingerprint(),
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            })
        }
    };
    let opening = echo.map(|e| chunk(&e, None));
    let token_chunk = chunk.clone();
    drive(
        reply,
        Shape {
            opening,
            chunk: Box::new(move |text| token_chunk(text, None)),
            call: Box::new(|_, _| Vec::new()),
            closing: Box::new(move |reason, usage, _| {
                let mut out = vec![chunk("", Some(finish_reason(reason, false)))];
                if include_usage {
                    out.push(json!({
                        "id": head.id, "object": "text_completion", "created": head.created,
                        "model": head.model, "choices": [], "usage": UsageOut::from(usage),
                    }));
                }
                out
            }),
        },
    )
}
