//! Conversation items of the Responses API: what clients send as `input` (and what is
//! stored for `previous_response_id`), checked and turned into engine messages; and the
//! output items a reply becomes.
//!
//! Items are kept in one normal form ([`Item`]): a message with its text, a function
//! call, or a function call's output. Whatever the client sent (a string, typed content
//! parts, output items echoed back with their ids and statuses) reduces to it, and the
//! stored form is that same JSON, read back by the same code.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::engine::{ChatMessage, ToolCall};

use super::super::super::error::ApiError;

/// One conversation item in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A message: `system`, `developer`, `user` or `assistant`.
    Message {
        /// Its role.
        role: String,
        /// Its text.
        content: String,
    },
    /// A call the assistant made.
    FunctionCall {
        /// The id its output repeats.
        call_id: String,
        /// The function.
        name: String,
        /// Its arguments, JSON text.
        arguments: String,
    },
    /// What a call returned.
    FunctionCallOutput {
        /// The call it answers.
        call_id: String,
        /// Its output text.
        output: String,
    },
}

impl Item {
    /// As stored.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn bad(at: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_field(at, message)
}

fn only_keys(item: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ApiError> {
    // A field set to null is the same as one left out.
    let unknown = item
        .iter()
        .find(|(k, v)| !allowed.contains(&k.as_str()) && !v.is_null());
    match unknown.map(|(k, _)| k) {
        Some(key) => Err(bad(
            &format!("{at}.{key}"),
            format!("`{key}` is not supported in this item"),
        )),
        None => Ok(()),
    }
}

fn string<'a>(item: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a str, ApiError> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("{at}.{key}"), format!("`{key}` must be a string")))
}

fn id(item: &Map<String, Value>, key: &str, at: &str) -> Result<String, ApiError> {
    let id = string(item, key, at)?;
    if id.is_empty() || id.len() > 256 {
        return Err(bad(&format!("{at}.{key}"), "an id must be 1–256 bytes"));
    }
    Ok(id.to_string())
}

/// Text of `content`: a string or a list of text parts (joined by lines).
fn text(content: Option<&Value>, at: &str) -> Result<String, ApiError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(bad(at, "content must be a string or a list of text parts"));
        }
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let Some(part) = part.as_object() else {
            return Err(bad(&at, "a content part must be an object"));
        };
        match string(part, "type", &at)? {
            "input_text" | "output_text" | "text" => {}
            kind @ ("input_image" | "input_file" | "input_audio") => {
                return Err(bad(
                    &format!("{at}.type"),
                    format!("`{kind}` parts are not supported by this model"),
                ));
            }
            other => {
                return Err(bad(
                    &format!("{at}.type"),
                    format!("`{other}` parts are not supported (input_text and output_text are)"),
                ));
            }
        }
        only_keys(part, &["type", "text", "annotations", "logprobs"], &at)?;
        texts.push(string(part, "text", &at)?);
    }
    Ok(texts.join("\n"))
}

/// One input (or stored) item in normal form; `at` names it in errors.
pub fn parse(value: &Value, at: &str) -> Result<Item, ApiError> {
    let Some(item) = value.as_object() else {
        return Err(bad(at, "an input item must be an object"));
    };
    let kind = match item.get("type") {
        None | Some(Value::Null) => "message",
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(bad(&format!("{at}.type"), "`type` must be a string")),
    };
    match kind {
        "message" => {
            only_keys(item, &["type", "role", "content", "id", "status"], at)?;
            let role = string(item, "role", at)?;
            if !matches!(role, "user" | "system" | "developer" | "assistant") {
                return Err(bad(
                    &format!("{at}.role"),
                    format!(
                        "unknown role `{role}` (expected user, system, developer or assistant)"
                    ),
                ));
            }
            Ok(Item::Message {
                role: role.to_string(),
                content: text(item.get("content"), &format!("{at}.content"))?,
            })
        }
        "function_call" => {
            only_keys(
                item,
                &["type", "call_id", "name", "arguments", "id", "status"],
                at,
            )?;
            let name = string(item, "name", at)?;
            if name.is_empty() || name.len() > 64 {
                return Err(bad(
                    &format!("{at}.name"),
                    "a function name must be 1–64 bytes",
                ));
            }
            Ok(Item::FunctionCall {
                call_id: id(item, "call_id", at)?,
                name: name.to_string(),
                arguments: string(item, "arguments", at)?.to_string(),
            })
        }
        "function_call_output" => {
            only_keys(item, &["type", "call_id", "output", "id", "status"], at)?;
            Ok(Item::FunctionCallOutput {
                call_id: id(item, "call_id", at)?,
                output: text(item.get("output"), &format!("{at}.output"))?,
            })
        }
        other => Err(bad(
            &format!("{at}.type"),
            format!(
                "`{other}` items are not supported (message, function_call and function_call_output are)"
            ),
        )),
    }
}

/// The `input` field in normal form: a string is one user message.
pub fn parse_input(input: Option<&Value>) -> Result<Vec<Item>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![Item::Message {
            role: "user".into(),
            content: text.clone(),
        }]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse(v, &format!("input[{i}]")))
            .collect(),
        Some(_) => Err(bad("input", "`input` must be a string or a list of items")),
    }
}

/// Items → engine messages: consecutive calls join the assistant message before them,
/// outputs become `tool` messages named after their call.
pub fn to_messages(items: &[Item]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Item::Message { role, content } => {
                let role = if role == "developer" { "system" } else { role };
                out.push(ChatMessage::new(role, content.clone()));
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
            } => {
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                };
                match out.last_mut() {
                    Some(last) if last.role == "assistant" => last.tool_calls.push(call),
                    _ => {
                        let mut message = ChatMessage::new("assistant", String::new());
                        message.tool_calls.push(call);
                        out.push(message);
                    }
                }
            }
            Item::FunctionCallOutput { call_id, output } => {
                let name = out
                    .iter()
                    .rev()
                    .flat_map(|m| m.tool_calls.iter())
                    .find(|c| &c.id == call_id)
                    .map(|c| c.name.clone());
                out.push(ChatMessage {
                    role: "tool".into(),
                    content: output.clone(),
                    tool_call_id: Some(call_id.clone()),
                    name,
                    ..ChatMessage::default()
                });
            }
        }
    }
    out
}

/// A new id with `prefix` (`msg`, `fc`, `resp`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// An assistant message as an output item.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

/// A call as an output item.
pub fn call_item(id: &str, call: &ToolCall, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call.id, "name": call.name,
        "arguments": call.arguments, "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_items_echoed_outputs_and_stored_items_reduce_to_one_form() {
        let sent = json!([
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            message_item("msg_1", "Checking.", "completed"),
            call_item("fc_1", &ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: "{}".into() }, "completed"),
            {"type": "function_call_output", "call_id": "call_1", "output": "31 C"},
        ]);
        let items = parse_input(Some(&sent)).unwrap();
        let stored: Vec<Value> = items.iter().map(Item::to_value).collect();
        let again = parse_input(Some(&Value::Array(stored))).unwrap();
        assert_eq!(items, again);
        let messages = to_messages(&items);
        let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(messages[2].content, "Checking.");
        assert_eq!(messages[2].tool_calls[0].id, "call_1");
        assert_eq!(messages[3].name.as_deref(), Some("get_weather"));
    }

    #[test]
    fn unsupported_items_and_parts_are_named() {
        let cases = [
            (
                json!([{"type": "reasoning", "summary": []}]),
                "input[0].type",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
                "input[0].content[0].type",
            ),
            (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
            (
                json!([{"type": "function_call", "name": "f", "arguments": "{}"}]),
                "input[0].call_id",
            ),
            (
                json!([{"role": "user", "content": "x", "extra": 1}]),
                "input[0].extra",
            ),
            (json!(7), "input"),
        ];
        for (input, param) in cases {
            match parse_input(Some(&input)) {
                Err(ApiError::BadRequest { param: Some(p), .. }) => assert_eq!(p, param, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
