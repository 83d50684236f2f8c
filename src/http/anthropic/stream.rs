//! A reply streamed as Anthropic's named server-sent events: `message_start`, then per
//! content block `content_block_start` (the first followed by `ping`),
//! `content_block_delta` (`text_delta` or `input_json_delta`) and `content_block_stop`,
//! then `message_delta` with the stop reason and usage, and `message_stop`; a failure
//! after the start is an `error` event.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};

use super::super::reply::{Reply, ReplyEvent};
use super::{error_body, stop_reason, tool_use};

fn event(name: &'static str, data: Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

/// Where a streamed message is: the content block being written, if any.
struct Blocks {
    /// Index of the next block.
    next: usize,
    /// A text block is open (at `next - 1`).
    text_open: bool,
    called: bool,
}

impl Blocks {
    fn open(&mut self, block: Value, out: &mut Vec<SseEvent>) -> usize {
        let index = self.next;
        self.next += 1;
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if index == 0 {
            out.push(event("ping", json!({"type": "ping"})));
        }
        index
    }

    fn close(index: usize, out: &mut Vec<SseEvent>) {
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }

    fn close_text(&mut self, out: &mut Vec<SseEvent>) {
        if self.text_open {
            self.text_open = false;
            Self::close(self.next - 1, out);
        }
    }

    fn on(&mut self, event_in: ReplyEvent) -> Vec<SseEvent> {
        let mut out = Vec::new();
        match event_in {
            // Not asked for: Anthropic's API has no logprobs.
            ReplyEvent::Logprobs(_) => {}
            ReplyEvent::Text(text) => {
                if !self.text_open {
                    self.open(json!({"type": "text", "text": ""}), &mut out);
                    self.text_open = true;
                }
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": self.next - 1,
                           "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            ReplyEvent::Call(call) => {
                self.close_text(&mut out);
                self.called = true;
                let mut block = tool_use(&call);
                block["input"] = json!({});
                let index = self.open(block, &mut out);
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": call.arguments}}),
                ));
                Self::close(index, &mut out);
            }
            ReplyEvent::Done {
                finish_reason,
                usage,
                ..
            } => {
                self.close_text(&mut out);
                if self.next == 0 {
                    // Even an empty answer has its (empty) text block.
                    let index = self.open(json!({"type": "text", "text": ""}), &mut out);
                    Self::close(index, &mut out);
                }
                out.push(event(
                    "message_delta",
                    json!({"type": "message_delta",
                           "delta": {"stop_reason": stop_reason(finish_reason, self.called), "stop_sequence": null},
                           "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}}),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
            }
            ReplyEvent::Failed { error, .. } => {
                out.push(event(
                    "error",
                    error_body(error.status(), &error.public_message()),
                ));
            }
        }
        out
    }
}

/// The reply as Anthropic's named server-sent events.
pub(super) fn message_stream(id: String, model: String, reply: Reply) -> Response {
    let start = event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            // The prompt's count arrives with `message_delta`.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }}),
    );
    let mut blocks = Blocks {
        next: 0,
        text_open: false,
        called: false,
    };
    let body = reply.events().flat_map(move |e| stream::iter(blocks.on(e)));
    let events = stream::iter([start]).chain(body).map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
