//! A Responses API request checked field by field and converted: input items, flat
//! function tools through the shared [`ToolSet`] validation, sampling numbers through
//! the shared bounds, `text.format` as an output constraint, and the request fields the
//! response object repeats.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::chat::tools::ToolSet;
use crate::engine::{Constraint, SamplingParams};

use super::super::super::error::ApiError;
use super::super::super::extract::from_value;
use super::super::super::inference::{self, WireSampling};
use super::items::{self, Item};

/// Top-level fields this server reads (`stream_options`, `service_tier`,
/// `prompt_cache_key` and `safety_identifier` are hints, accepted and ignored).
const FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "previous_response_id",
    "user",
    "metadata",
    "text",
    "stream_options",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// `POST /v1/responses`, once its top-level fields are checked.
#[derive(Debug, Deserialize)]
pub(in crate::http) struct ResponsesRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    text: Option<Value>,
}

/// A request checked and converted, before the stored history is read.
pub(in crate::http) struct Prepared {
    pub(super) model: String,
    pub(super) instructions: Option<String>,
    pub(super) input: Vec<Item>,
    pub(super) previous: Option<String>,
    pub(in crate::http) tools: Option<ToolSet>,
    pub(in crate::http) params: SamplingParams,
    pub(super) stream: bool,
    pub(super) store: bool,
    /// Request fields the response object repeats.
    pub(super) echo: Map<String, Value>,
}

/// Refuses fields that would otherwise be silently ignored; a few are accepted at the
/// value that changes nothing.
fn check_fields(body: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in body {
        if FIELDS.contains(&key.as_str()) {
            continue;
        }
        let (neutral, message) = match key.as_str() {
            "truncation" => (
                value.is_null() || value == "disabled",
                "only `\"disabled\"` is supported: a prompt that does not fit is refused, never cut",
            ),
            "background" => (
                value.is_null() || value == false,
                "background responses are not supported",
            ),
            "include" => (
                value.is_null() || value.as_array().is_some_and(Vec::is_empty),
                "`include` is not supported (there is nothing more to include)",
            ),
            "reasoning" => (
                value.is_null()
                    || value
                        .as_object()
                        .is_some_and(|o| o.values().all(Value::is_null)),
                "reasoning options are not supported by this server's models",
            ),
            "conversation" => (
                value.is_null(),
                "conversations are not supported; continue with `previous_response_id`",
            ),
            "top_logprobs" => (value.is_null() || value == 0, "logprobs are not supported"),
            // A field set to null is the same as one left out.
            _ => (value.is_null(), "not supported by this server"),
        };
        if !neutral {
            return Err(ApiError::bad_field(key, format!("`{key}`: {message}")));
        }
    }
    Ok(())
}

/// Checks and converts a request body (no I/O: the handler and the fuzz tests share it).
pub(in crate::http) fn prepare(body: Value, ctx_per_slot: u32) -> Result<Prepared, ApiError> {
    check_fields(crate::http::extract::object(&body)?)?;
    let req: ResponsesRequest = from_value(body)?;
    inference::end_user("user", req.user.as_deref())?;
    check_metadata(req.metadata.as_ref())?;
    if req
        .previous_response_id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 256)
    {
        return Err(ApiError::bad_field(
            "previous_response_id",
            "`previous_response_id` must be 1–256 bytes",
        ));
    }
    let tools = tool_set(&req)?;
    let (params, format) = sampling(&req, ctx_per_slot)?;
    let input = items::parse_input(req.input.as_ref())?;
    let mut echo = Map::new();
    echo.insert("instructions".into(), json!(req.instructions));
    echo.insert("max_output_tokens".into(), json!(req.max_output_tokens));
    echo.insert(
        "parallel_tool_calls".into(),
        json!(req.parallel_tool_calls.unwrap_or(true)),
    );
    echo.insert(
        "previous_response_id".into(),
        json!(req.previous_response_id),
    );
    echo.insert("reasoning".into(), json!({"effort": null, "summary": null}));
    echo.insert("store".into(), json!(req.store.unwrap_or(true)));
    echo.insert("temperature".into(), json!(params.temperature));
    echo.insert("top_p".into(), json!(params.top_p));
    echo.insert("text".into(), json!({"format": format}));
    echo.insert(
        "tool_choice".into(),
        req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
    );
    echo.insert("tools".into(), json!(req.tools.clone().unwrap_or_default()));
    echo.insert("truncation".into(), json!("disabled"));
    echo.insert("background".into(), json!(false));
    echo.insert("user".into(), json!(req.user));
    echo.insert(
        "metadata".into(),
        json!(req.metadata.clone().unwrap_or_default()),
    );
    Ok(Prepared {
        model: req.model,
        instructions: req.instructions.filter(|i| !i.is_empty()),
        input,
        previous: req.previous_response_id,
        tools,
        params,
        stream: req.stream.unwrap_or(false),
        store: req.store.unwrap_or(true),
        echo,
    })
}

/// OpenAI's bounds on `metadata`: 16 pairs of strings, keys to 64 and values to 512.
fn check_metadata(metadata: Option<&Map<String, Value>>) -> Result<(), ApiError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if metadata.len() > 16 {
        return Err(ApiError::bad_field("metadata", "at most 16 metadata pairs"));
    }
    for (key, value) in metadata {
        let fits = key.len() <= 64 && value.as_str().is_some_and(|v| v.len() <= 512);
        if !fits {
            return Err(ApiError::bad_field(
                &format!("metadata.{key}"),
                "metadata keys are strings of at most 64 bytes, values strings of at most 512",
            ));
        }
    }
    Ok(())
}

/// Flat function tools → the chat shape → the shared [`ToolSet`] validation.
fn tool_set(req: &ResponsesRequest) -> Result<Option<ToolSet>, ApiError> {
    let converted: Vec<Value> = req
        .tools
        .iter()
        .flatten()
        .map(|tool| match tool.as_object() {
            Some(t) if t.get("type").is_some_and(|k| k == "function") => {
                let mut function = t.clone();
                function.remove("type");
                json!({"type": "function", "function": function})
            }
            // Anything else is refused by the shared validation, naming `type`.
            _ => tool.clone(),
        })
        .collect();
    let choice = match &req.tool_choice {
        Some(Value::Object(c)) => match c.get("type").and_then(Value::as_str) {
            Some("function") => {
                Some(json!({"type": "function", "function": {"name": c.get("name")}}))
            }
            other => {
                return Err(ApiError::bad_field(
                    "tool_choice.type",
                    format!(
                        "tool choice {} is not supported (auto, none, required or a function)",
                        other.unwrap_or("without a type")
                    ),
                ));
            }
        },
        other => other.clone(),
    };
    ToolSet::from_openai(Some(&converted), choice.as_ref(), req.parallel_tool_calls)
        .map_err(|e| ApiError::bad_field(&e.param.replacen(".function", "", 1), e.message))
}

/// Sampling fields and `text.format`; returns the format as the response repeats it.
fn sampling(
    req: &ResponsesRequest,
    ctx_per_slot: u32,
) -> Result<(SamplingParams, Value), ApiError> {
    let wire = WireSampling {
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_output_tokens,
        ..WireSampling::default()
    };
    let mut params = inference::sampling_params(&wire, ctx_per_slot).map_err(|e| match e {
        ApiError::BadRequest { message, param } if param.as_deref() == Some("max_tokens") => {
            ApiError::BadRequest {
                message: message.replace("`max_tokens`", "`max_output_tokens`"),
                param: Some("max_output_tokens".into()),
            }
        }
        other => other,
    })?;
    let text = match &req.text {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(t)) => t.clone(),
        Some(_) => return Err(ApiError::bad_field("text", "`text` must be an object")),
    };
    if let Some(key) = text
        .keys()
        .find(|k| !matches!(k.as_str(), "format" | "verbosity"))
    {
        return Err(ApiError::bad_field(
            &format!("text.{key}"),
            format!("`text.{key}` is not supported"),
        ));
    }
    let format = match text.get("format") {
        None | Some(Value::Null) => json!({"type": "text"}),
        Some(f @ Value::Object(_)) => f.clone(),
        Some(_) => {
            return Err(ApiError::bad_field(
                "text.format",
                "`text.format` must be an object",
            ));
        }
    };
    let bad = |param: &str, message: &str| ApiError::bad_field(param, message);
    let constraint = match format["type"].as_str() {
        Some("text") => None,
        Some("json_object") => Some(Constraint::JsonObject),
        Some("json_schema") => {
            let fields = format
                .as_object()
                .map(|f| f.keys().collect::<Vec<_>>())
                .unwrap_or_default();
            if let Some(key) = fields.iter().find(|k| {
                !matches!(
                    k.as_str(),
                    "type" | "name" | "schema" | "strict" | "description"
                )
            }) {
                return Err(bad(
                    &format!("text.format.{key}"),
                    "not a field of a JSON schema format",
                ));
            }
            match format.get("schema") {
                Some(schema @ Value::Object(_)) => Some(Constraint::JsonSchema(schema.to_string())),
                _ => {
                    return Err(bad(
                        "text.format.schema",
                        "a JSON schema object is required",
                    ));
                }
            }
        }
        _ => {
            return Err(bad(
                "text.format.type",
                "`text.format.type` must be text, json_object or json_schema",
            ));
        }
    };
    params.constraint = constraint
        .map(|c| inference::constraint("text.format", c))
        .transpose()?;
    Ok((params, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: Value) -> Option<String> {
        match prepare(body, 4096) {
            Err(ApiError::BadRequest { param, .. }) => param,
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn unsupported_fields_are_named_and_neutral_values_accepted() {
        let weather =
            json!({"type": "function", "name": "get_weather", "parameters": {"type": "object"}});
        let cases = [
            (json!({"reasoning": {"effort": "high"}}), "reasoning"),
            (json!({"include": ["file_search_call.results"]}), "include"),
            (json!({"background": true}), "background"),
            (json!({"truncation": "auto"}), "truncation"),
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"frobnicate": 1}), "frobnicate"),
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (
                json!({"tools": [{"type": "function", "name": "has space"}]}),
                "tools[0].name",
            ),
            (
                json!({"tools": [weather.clone()], "tool_choice": {"type": "function", "name": "nope"}}),
                "tool_choice",
            ),
            (
                json!({"tools": [weather], "tool_choice": {"type": "web_search_preview"}}),
                "tool_choice.type",
            ),
            (json!({"max_output_tokens": 0}), "max_output_tokens"),
            (json!({"temperature": 3}), "temperature"),
            (
                json!({"text": {"format": {"type": "json_schema", "name": "x"}}}),
                "text.format.schema",
            ),
            (
                json!({"text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
            (json!({"metadata": {"k": 1}}), "metadata.k"),
            (
                json!({"input": [{"type": "item_reference", "id": "x"}]}),
                "input[0].type",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(param(body.clone()).as_deref(), Some(expected), "{body}");
        }
        let neutral = json!({"input": "hi", "truncation": "disabled", "background": false, "include": [],
            "reasoning": null, "store": false, "text": {"format": {"type": "json_object"}}, "metadata": {"a": "b"}});
        assert_eq!(param(neutral), None);
    }

    #[test]
    fn flat_function_tools_are_shared_tools() {
        let body = json!({"input": "Weather in Paris?", "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false,
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "strict": true,
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
        let prepared = prepare(body, 4096).unwrap();
        let tools = prepared.tools.unwrap();
        assert_eq!(
            tools.choice,
            crate::chat::tools::ToolChoice::Named("get_weather".into())
        );
        assert!(!tools.parallel);
        assert_eq!(prepared.echo["tool_choice"]["name"], "get_weather");
    }
}
