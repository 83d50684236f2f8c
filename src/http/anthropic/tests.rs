//! The Messages API's request checks and conversion, and its error shape.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::super::error::ApiError;
use super::error_body;
use super::request::prepare;

fn param(body: Value) -> Option<String> {
    match prepare(body, 4096) {
        Err(ApiError::BadRequest { param, .. }) => param,
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => None,
    }
}

fn base() -> Value {
    json!({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
}

fn with(extra: Value) -> Value {
    let mut body = base();
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn unsupported_fields_and_blocks_are_named() {
    let image = json!([{"role": "user", "content": [{"type": "image", "source": {}}]}]);
    let cases = [
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "thinking",
        ),
        (json!({"container": "x"}), "container"),
        (json!({"messages": image}), "messages[0].content[0].type"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [{"name": "has space", "input_schema": {}}]}),
            "tools[0].name",
        ),
        (
            json!({"tools": [{"name": "f", "input_schema": {"type": "string"}}]}),
            "tools[0].input_schema.type",
        ),
        (json!({"tool_choice": {"type": "any"}}), "tool_choice"),
        (
            json!({"tool_choice": {"type": "sometimes"}}),
            "tool_choice.type",
        ),
        (json!({"temperature": 1.5}), "temperature"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"stop_sequences": vec!["x"; 17]}), "stop_sequences"),
        (
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            "messages[1].role",
        ),
        (
            json!({"output_config": {"format": {"type": "xml"}}}),
            "output_config.format.type",
        ),
        (
            json!({"tools": [{"name": "f", "input_schema": {}, "defer_loading": true}]}),
            "tools[0].defer_loading",
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(
            param(with(extra.clone())).as_deref(),
            Some(expected),
            "{extra}"
        );
    }
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("max_tokens");
    assert_eq!(param(missing).as_deref(), Some("max_tokens"));
    // Hints are accepted, and so is a JSON schema for the answer.
    let hints = json!({
        "thinking": {"type": "disabled"},
        "metadata": {"user_id": "u1"},
        "cache_control": {"type": "ephemeral"},
        "speed": "fast",
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
    });
    assert_eq!(param(with(hints)), None);
}

#[test]
fn tool_use_and_results_become_calls_and_tool_messages() {
    let body = with(json!({
        "system": "Be brief.",
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "31 C"}]}, {"type": "text", "text": "And so?"}]},
        ],
    }));
    let p = prepare(body, 4096).unwrap();
    let roles: Vec<&str> = p.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    assert_eq!(p.messages[2].content, "Checking.");
    assert_eq!(p.messages[2].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(p.messages[3].content, "31 C");
    assert_eq!(p.messages[3].name.as_deref(), Some("get_weather"));
    assert_eq!(p.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
    let tools = p.tools.unwrap();
    assert!(!tools.parallel);
    assert_eq!(tools.tools[0].definition["function"]["name"], "get_weather");
}

#[test]
fn errors_take_anthropics_types_by_status() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
    ] {
        let body = error_body(StatusCode::from_u16(status).unwrap(), "m");
        assert_eq!(body["error"]["type"], kind);
        assert_eq!(body["type"], "error");
    }
}
