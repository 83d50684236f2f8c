//! A response streamed as the Responses API's typed server-sent events, each with its
//! `sequence_number`: `response.created`, `response.in_progress`, then per output item
//! `response.output_item.added`, its content (`response.content_part.added`,
//! `response.output_text.delta`…`.done`, `response.content_part.done`, or
//! `response.function_call_arguments.delta`/`.done`) and `response.output_item.done`,
//! and last `response.completed` (`response.incomplete` when cut by
//! `max_output_tokens`, `response.failed` when the generation or saving failed).
//!
//! The exchange is saved before the final event, so a client that has seen
//! `response.completed` can continue from it at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};

use crate::engine::{FinishReason, ToolCall, Usage};

use super::super::super::error::ApiError;
use super::super::super::reply::{Reply, ReplyEvent};
use super::items::{self, Item};
use super::{Echo, Saver, ending};

/// The message item being written.
struct OpenText {
    id: String,
    index: usize,
    text: String,
}

/// Where a streamed response is.
struct Writer {
    echo: Echo,
    events: Pin<Box<dyn Stream<Item = ReplyEvent> + Send>>,
    saver: Option<Saver>,
    pending: VecDeque<SseEvent>,
    sequence: u64,
    /// Finished output items, as answered and as stored.
    output: Vec<Value>,
    kept: Vec<Item>,
    text: Option<OpenText>,
    called: bool,
    finished: bool,
}

impl Writer {
    fn push(&mut self, kind: &'static str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        self.pending
            .push_back(SseEvent::default().event(kind).data(data.to_string()));
    }

    fn open_text(&mut self) {
        let id = items::new_id("msg");
        let index = self.output.len();
        self.push(
            "response.output_item.added",
            json!({"output_index": index, "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}),
        );
        self.push(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        self.text = Some(OpenText {
            id,
            index,
            text: String::new(),
        });
    }

    fn close_text(&mut self, status: &str) {
        let Some(open) = self.text.take() else {
            return;
        };
        let OpenText { id, index, text } = open;
        self.push(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        );
        self.push(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                   "part": {"type": "output_text", "text": text, "annotations": []}}),
        );
        let item = items::message_item(&id, &text, status);
        self.push(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
        self.kept.push(Item::Message {
            role: "assistant".into(),
            content: text,
        });
    }

    fn text(&mut self, delta: String) {
        if self.text.is_none() {
            self.open_text();
        }
        let Some(open) = self.text.as_mut() else {
            return;
        };
        open.text.push_str(&delta);
        let (id, index) = (open.id.clone(), open.index);
        self.push(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }

    fn call(&mut self, call: ToolCall) {
        self.close_text("completed");
        self.called = true;
        let id = items::new_id("fc");
        let index = self.output.len();
        let mut added = items::call_item(&id, &call, "in_progress");
        added["arguments"] = json!("");
        self.push(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        self.push(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": index, "delta": call.arguments}),
        );
        self.push(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "name": call.name, "arguments": call.arguments}),
        );
        let item = items::call_item(&id, &call, "completed");
        self.push(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
        self.output.push(item);
        self.kept.push(Item::FunctionCall {
            call_id: call.id,
            name: call.name,
            arguments: call.arguments,
        });
    }

    async fn done(&mut self, reason: FinishReason, usage: Usage) {
        let (status, incomplete) = ending(reason, self.called);
        if self.output.is_empty() && self.text.is_none() {
            // Even an empty answer is one (empty) message.
            self.open_text();
        }
        self.close_text(if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        });
        if let Some(saver) = self.saver.take()
            && let Err(error) = saver.save(&self.echo, &self.kept).await
        {
            self.fail(&error, Some(&usage));
            return;
        }
        let response = self
            .echo
            .object(status, &self.output, Some(&usage), incomplete, None);
        let kind = if incomplete.is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.push(kind, json!({"response": response}));
    }

    fn fail(&mut self, error: &ApiError, usage: Option<&Usage>) {
        let body = error.body();
        let detail = json!({"code": body["error"]["code"], "message": body["error"]["message"]});
        let response = self
            .echo
            .object("failed", &self.output, usage, None, Some(detail));
        self.push("response.failed", json!({"response": response}));
    }

    async fn on(&mut self, event: ReplyEvent) {
        match event {
            ReplyEvent::Text(delta) => self.text(delta),
            // Not asked for: this API does not offer logprobs here.
            ReplyEvent::Logprobs(_) => {}
            ReplyEvent::Call(call) => self.call(call),
            ReplyEvent::Done {
                finish_reason,
                usage,
                ..
            } => {
                self.done(finish_reason, usage).await;
                self.finished = true;
            }
            ReplyEvent::Failed { error, .. } => {
                self.fail(&error, None);
                self.finished = true;
            }
        }
    }
}

/// The reply as the Responses API's event stream.
pub(super) fn respond(echo: Echo, reply: Reply, saver: Option<Saver>) -> Response {
    let mut writer = Writer {
        events: Box::pin(reply.events()),
        saver,
        pending: VecDeque::new(),
        sequence: 0,
        output: Vec::new(),
        kept: Vec::new(),
        text: None,
        called: false,
        finished: false,
        echo,
    };
    let opening = writer.echo.object("in_progress", &[], None, None, None);
    writer.push("response.created", json!({"response": opening}));
    writer.push("response.in_progress", json!({"response": opening}));
    let events = stream::unfold(writer, |mut writer| async move {
        loop {
            if let Some(event) = writer.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), writer));
            }
            if writer.finished {
                return None;
            }
            match writer.events.next().await {
                Some(event) => writer.on(event).await,
                None => writer.finished = true,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
