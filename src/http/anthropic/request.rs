//! A Messages API request checked field by field and converted for the engine: the
//! conversation as engine messages, tools through the shared [`ToolSet`] validation,
//! sampling numbers through the shared bounds.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::chat::tools::ToolSet;
use crate::engine::{ChatMessage, Constraint, SamplingParams, ToolCall};

use super::super::error::ApiError;
use super::super::extract::from_value;
use super::super::inference::{self, WireSampling};

/// Top-level fields this server reads or, for hints, accepts and ignores.
const FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "output_config",
    // Hints about caching, routing and speed: nothing to do with them here.
    "service_tier",
    "cache_control",
    "speed",
    "inference_geo",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
];

/// `POST /v1/messages`, once its top-level fields are checked.
#[derive(Debug, Deserialize)]
pub(in crate::http) struct MessagesRequest {
    #[serde(default)]
    model: String,
    max_tokens: Option<i64>,
    messages: Vec<InMessage>,
    #[serde(default)]
    system: Option<Content>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    tool_choice: Option<InToolChoice>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<i32>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    output_config: Option<OutputConfig>,
}

/// `output_config`: `format` constrains the answer to a JSON schema; `effort` is a
/// hint for reasoning models, ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputConfig {
    #[serde(default)]
    #[allow(dead_code)]
    effort: Option<Value>,
    #[serde(default)]
    format: Option<Map<String, Value>>,
}

/// One message of the conversation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage {
    role: String,
    content: Content,
}

/// `content` or `system`: a string or typed blocks (checked one by one).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Map<String, Value>>),
}

/// `tool_choice`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

/// `metadata`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// A request checked and converted for the engine.
pub(in crate::http) struct Prepared {
    pub(in crate::http) model: String,
    pub(in crate::http) messages: Vec<ChatMessage>,
    pub(in crate::http) tools: Option<ToolSet>,
    pub(in crate::http) params: SamplingParams,
    pub(in crate::http) stream: bool,
}

/// Refuses top-level fields that would otherwise be silently ignored.
fn check_fields(body: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in body {
        // A field set to null is the same as one left out.
        if FIELDS.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        let message = match key.as_str() {
            // Turning thinking off is what happens anyway.
            "thinking" if value["type"] == "disabled" => continue,
            "thinking" => "extended thinking is not supported by this server".to_string(),
            _ => format!("`{key}` is not supported by this server"),
        };
        return Err(ApiError::bad_field(key, message));
    }
    Ok(())
}

/// Checks and converts a request body (no I/O: the handler and the fuzz tests share it).
pub(in crate::http) fn prepare(body: Value, ctx_per_slot: u32) -> Result<Prepared, ApiError> {
    check_fields(crate::http::extract::object(&body)?)?;
    let req: MessagesRequest = from_value(body)?;
    inference::end_user(
        "metadata.user_id",
        req.metadata.as_ref().and_then(|m| m.user_id.as_deref()),
    )?;
    let tools = tool_set(req.tools.as_deref(), req.tool_choice.as_ref())?;
    let params = sampling(&req, ctx_per_slot)?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            messages.push(ChatMessage::new("system", text));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        convert_message(m, i, &mut messages)?;
    }
    if req.messages.last().is_some_and(|m| m.role == "assistant") {
        return Err(ApiError::bad_field(
            &format!("messages[{}].role", req.messages.len() - 1),
            "continuing a final assistant message (prefill) is not supported; end with a user message",
        ));
    }
    inference::check_messages(&messages)?;
    Ok(Prepared {
        model: req.model,
        messages,
        tools,
        params,
        stream: req.stream,
    })
}

fn sampling(req: &MessagesRequest, ctx_per_slot: u32) -> Result<SamplingParams, ApiError> {
    let Some(max_tokens) = req.max_tokens else {
        return Err(ApiError::bad_field(
            "max_tokens",
            "`max_tokens` is required",
        ));
    };
    // Anthropic's range (OpenAI's goes to 2).
    if req.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(ApiError::bad_field(
            "temperature",
            "`temperature` must be between 0 and 1",
        ));
    }
    if max_tokens < 1 {
        return Err(ApiError::bad_field(
            "max_tokens",
            "`max_tokens` must be at least 1",
        ));
    }
    let wire = WireSampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        // Larger values are cut to the model's context when the generation starts.
        max_tokens: Some(max_tokens),
        stop: req.stop_sequences.clone().unwrap_or_default(),
        ..WireSampling::default()
    };
    let mut params = inference::sampling_params(&wire, ctx_per_slot).map_err(|e| match e {
        ApiError::BadRequest { message, param } if param.as_deref() == Some("stop") => {
            ApiError::BadRequest {
                message,
                param: Some("stop_sequences".into()),
            }
        }
        other => other,
    })?;
    if let Some(format) = req.output_config.as_ref().and_then(|c| c.format.as_ref()) {
        only_keys(format, &["type", "schema"], "output_config.format")?;
        if format.get("type").is_none_or(|t| t != "json_schema") {
            return Err(ApiError::bad_field(
                "output_config.format.type",
                "the only output format is `json_schema`",
            ));
        }
        let Some(schema @ Value::Object(_)) = format.get("schema") else {
            return Err(ApiError::bad_field(
                "output_config.format.schema",
                "a JSON schema object is required",
            ));
        };
        let constraint = Constraint::JsonSchema(schema.to_string());
        params.constraint = Some(inference::constraint("output_config.format", constraint)?);
    }
    Ok(params)
}

/// Fails unless `block` has only `allowed` keys.
fn only_keys(block: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ApiError> {
    // A field set to null is the same as one left out.
    let unknown = block
        .iter()
        .find(|(k, v)| !allowed.contains(&k.as_str()) && !v.is_null());
    match unknown.map(|(k, _)| k) {
        Some(key) => Err(ApiError::bad_field(
            &format!("{at}.{key}"),
            format!("`{key}` is not supported in this block"),
        )),
        None => Ok(()),
    }
}

fn string_field<'a>(
    block: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<&'a str, ApiError> {
    block.get(key).and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_field(&format!("{at}.{key}"), format!("`{key}` must be a string"))
    })
}

fn block_type<'a>(block: &'a Map<String, Value>, at: &str) -> Result<&'a str, ApiError> {
    let kind = string_field(block, "type", at)?;
    match kind {
        "text" | "tool_use" | "tool_result" => Ok(kind),
        "image" | "document" => Err(ApiError::bad_field(
            &format!("{at}.type"),
            format!("`{kind}` blocks are not supported by this model"),
        )),
        "thinking" | "redacted_thinking" => Err(ApiError::bad_field(
            &format!("{at}.type"),
            "thinking blocks are not supported by this server",
        )),
        other => Err(ApiError::bad_field(
            &format!("{at}.type"),
            format!("`{other}` blocks are not supported (text, tool_use and tool_result are)"),
        )),
    }
}

/// The text of a text-only content (`system`, a tool result): blocks joined by lines.
fn text_of(content: &Content, at: &str) -> Result<String, ApiError> {
    let blocks = match content {
        Content::Text(text) => return Ok(text.clone()),
        Content::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}[{j}]");
        if block_type(block, &at)? != "text" {
            return Err(ApiError::bad_field(
                &format!("{at}.type"),
                "only text blocks are allowed here",
            ));
        }
        only_keys(block, &["type", "text", "cache_control", "citations"], &at)?;
        texts.push(string_field(block, "text", &at)?);
    }
    Ok(texts.join("\n"))
}

/// One Anthropic message → engine messages: text and calls for the assistant; for the
/// user, one `tool` message per `tool_result` and then the text.
fn convert_message(m: &InMessage, i: usize, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let role = match m.role.as_str() {
        "user" | "assistant" => m.role.as_str(),
        other => {
            return Err(ApiError::bad_field(
                &format!("{at}.role"),
                format!(
                    "unknown role `{other}` (expected user or assistant; the system prompt goes in `system`)"
                ),
            ));
        }
    };
    let blocks = match &m.content {
        Content::Text(text) => {
            out.push(ChatMessage::new(role, text.clone()));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut message = ChatMessage::new(role, String::new());
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match block_type(block, &at)? {
            "text" => {
                only_keys(block, &["type", "text", "cache_control", "citations"], &at)?;
                texts.push(string_field(block, "text", &at)?);
            }
            "tool_use" if role == "assistant" => {
                only_keys(
                    block,
                    &[
                        "type",
                        "id",
                        "name",
                        "input",
                        "cache_control",
                        "caller",
                        "toolset_name",
                    ],
                    &at,
                )?;
                let input = block.get("input").unwrap_or(&Value::Null);
                if !input.is_object() {
                    return Err(ApiError::bad_field(
                        &format!("{at}.input"),
                        "`input` must be an object",
                    ));
                }
                message.tool_calls.push(ToolCall {
                    id: checked_id(string_field(block, "id", &at)?, &format!("{at}.id"))?,
                    name: checked_name(string_field(block, "name", &at)?, &format!("{at}.name"))?,
                    arguments: input.to_string(),
                });
            }
            "tool_result" if role == "user" => {
                let result = tool_result(block, &at, out)?;
                out.push(result);
            }
            kind => {
                return Err(ApiError::bad_field(
                    &format!("{at}.type"),
                    format!(
                        "`{kind}` blocks belong in {} messages",
                        if kind == "tool_use" {
                            "assistant"
                        } else {
                            "user"
                        }
                    ),
                ));
            }
        }
    }
    message.content = texts.join("\n");
    if !message.content.is_empty() || !message.tool_calls.is_empty() || role == "assistant" {
        out.push(message);
    }
    Ok(())
}

fn checked_id(id: &str, at: &str) -> Result<String, ApiError> {
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::bad_field(at, "an id must be 1–256 bytes"));
    }
    Ok(id.to_string())
}

fn checked_name(name: &str, at: &str) -> Result<String, ApiError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::bad_field(at, "a tool name must be 1–64 bytes"));
    }
    Ok(name.to_string())
}

/// A `tool_result` block as a `tool` message, named after the call it answers.
fn tool_result(
    block: &Map<String, Value>,
    at: &str,
    earlier: &[ChatMessage],
) -> Result<ChatMessage, ApiError> {
    only_keys(
        block,
        &[
            "type",
            "tool_use_id",
            "content",
            "is_error",
            "cache_control",
            "toolset_name",
        ],
        at,
    )?;
    let id = checked_id(
        string_field(block, "tool_use_id", at)?,
        &format!("{at}.tool_use_id"),
    )?;
    let content = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(value) => {
            let content: Content = serde_json::from_value(value.clone()).map_err(|_| {
                ApiError::bad_field(
                    &format!("{at}.content"),
                    "`content` must be a string or a list of text blocks",
                )
            })?;
            text_of(&content, &format!("{at}.content"))?
        }
    };
    let failed = match block.get("is_error") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_field(
                &format!("{at}.is_error"),
                "`is_error` must be a boolean",
            ));
        }
    };
    let name = earlier
        .iter()
        .rev()
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| c.id == id)
        .map(|c| c.name.clone());
    Ok(ChatMessage {
        role: "tool".into(),
        content: if failed {
            format!("Error: {content}")
        } else {
            content
        },
        tool_call_id: Some(id),
        name,
        ..ChatMessage::default()
    })
}

/// Anthropic tools → OpenAI's shape → the shared [`ToolSet`] validation, with errors
/// naming the fields as the client sent them.
fn tool_set(
    tools: Option<&[Map<String, Value>]>,
    choice: Option<&InToolChoice>,
) -> Result<Option<ToolSet>, ApiError> {
    let mut converted = Vec::new();
    for (i, tool) in tools.unwrap_or(&[]).iter().enumerate() {
        let at = format!("tools[{i}]");
        match tool.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "custom" => {}
            Some(other) => {
                return Err(ApiError::bad_field(
                    &format!("{at}.type"),
                    format!(
                        "tool type {other} is not supported (only client tools with an `input_schema`)"
                    ),
                ));
            }
        }
        let mut function = Map::new();
        for (key, value) in tool {
            match key.as_str() {
                "name" | "description" => {
                    function.insert(key.clone(), value.clone());
                }
                "input_schema" => {
                    function.insert("parameters".into(), value.clone());
                }
                "strict" => {
                    function.insert(key.clone(), value.clone());
                }
                // Hints about caching, streaming and examples for the model.
                "type" | "cache_control" | "eager_input_streaming" | "input_examples" => {}
                "defer_loading" if value == false => {}
                "allowed_callers" if value == &json!(["direct"]) => {}
                _ if value.is_null() => {}
                other => {
                    return Err(ApiError::bad_field(
                        &format!("{at}.{other}"),
                        format!("`{other}` is not supported in a tool definition"),
                    ));
                }
            }
        }
        converted.push(json!({"type": "function", "function": function}));
    }
    let (choice, parallel) = match choice {
        None => (None, None),
        Some(c) => {
            let openai = match c.kind.as_str() {
                "auto" => json!("auto"),
                "any" => json!("required"),
                "none" => json!("none"),
                "tool" => match c.name.as_deref() {
                    Some(name) => json!({"type": "function", "function": {"name": name}}),
                    None => {
                        return Err(ApiError::bad_field(
                            "tool_choice.name",
                            "`tool_choice` of type `tool` needs a `name`",
                        ));
                    }
                },
                other => {
                    return Err(ApiError::bad_field(
                        "tool_choice.type",
                        format!("`{other}` is not a tool choice (auto, any, tool or none)"),
                    ));
                }
            };
            (Some(openai), c.disable_parallel_tool_use.map(|d| !d))
        }
    };
    ToolSet::from_openai(Some(&converted), choice.as_ref(), parallel).map_err(|e| {
        let param = e
            .param
            .replacen(".function.parameters", ".input_schema", 1)
            .replacen(".function", "", 1);
        ApiError::bad_field(&param, e.message.replace("`parameters`", "`input_schema`"))
    })
}
