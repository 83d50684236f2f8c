//! Property tests over everything a client can send: the wire request types, the
//! numbers and durations inside them, grammars and schemas. Whatever arrives, parsing
//! and validation either accept it within bounds or refuse it; they never panic.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::engine::Constraint;
use crate::engine::constraint;

use crate::models::modelfile::{self, Overrides};
use crate::models::pull::reference::{self, HubFile};

use super::anthropic;
use super::ollama;
use super::openai::{self, responses, types::ChatCompletionRequest};

/// Strings that have broken parsers before, mixed with arbitrary text.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e20".to_string()),
        Just("1e308".to_string()),
        Just("-1".to_string()),
        Just("5m".to_string()),
        Just("1h30m".to_string()),
        Just("99999999999h".to_string()),
        Just(".".to_string()),
        Just("-".to_string()),
        Just("1.5.5s".to_string()),
        Just("\u{0}".to_string()),
        "\\PC{0,24}",
        "[0-9.eE+-]{0,24}[a-zµ]{0,3}",
    ]
}

/// Any JSON number, including ones past every integer type.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
    ]
}

/// Any JSON value, shallow.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        tricky_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Fields the chat APIs read, each given an arbitrary value (or left out).
const SAMPLING_FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "logprobs",
    "stream",
    "keep_alive",
    "grammar",
    "response_format",
    "stream_options",
];
const OLLAMA_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "num_predict",
    "num_ctx",
    "stop",
];

/// Fields of Anthropic's Messages API.
const ANTHROPIC_FIELDS: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "system",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "output_config",
];
/// Fields of OpenAI's Responses API.
const RESPONSES_FIELDS: &[&str] = &[
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
    "truncation",
    "reasoning",
    "include",
];

/// A content block or item of one of the shapes the APIs read, with arbitrary values.
fn block() -> impl Strategy<Value = Value> {
    let kinds = prop_oneof![
        Just("text"),
        Just("tool_use"),
        Just("tool_result"),
        Just("image"),
        Just("message"),
        Just("input_text"),
        Just("function_call"),
        Just("function_call_output"),
    ];
    let fields = object_with(&[
        "text",
        "id",
        "name",
        "input",
        "tool_use_id",
        "content",
        "is_error",
        "role",
        "call_id",
        "arguments",
        "output",
    ]);
    (kinds, fields).prop_map(|(kind, mut fields)| {
        fields.insert("type".into(), json!(kind));
        Value::Object(fields)
    })
}

fn object_with(
    fields: &'static [&'static str],
) -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::vec(prop::option::of(value()), fields.len()).prop_map(move |values| {
        fields
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn keep_alive_parsing_never_panics_and_stays_bounded(text in tricky_string(), n in number()) {
        for input in [text, n.to_string()] {
            if let Some(Some(d)) = crate::config::parse_keep_alive(&input) {
                prop_assert!(d.as_secs_f64() <= crate::config::MAX_KEEP_ALIVE_SECS);
            }
        }
    }

    #[test]
    fn openai_requests_validate_without_panicking(fields in object_with(SAMPLING_FIELDS)) {
        let mut body = fields;
        body.insert("model".into(), json!("m"));
        body.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
        if let Ok(req) = serde_json::from_value::<ChatCompletionRequest>(Value::Object(body))
            && let Ok(params) = openai::sampling(&req.sampling, 4096)
        {
            prop_assert!((0.0..=2.0).contains(&params.temperature));
            prop_assert!((0.0..=1.0).contains(&params.top_p));
            prop_assert!(params.stop.len() <= 16);
        }
    }

    #[test]
    fn ollama_requests_validate_without_panicking(options in object_with(OLLAMA_OPTIONS), format in prop::option::of(value())) {
        let body = json!({"model": "m", "messages": [], "options": options, "format": format});
        if let Ok(req) = serde_json::from_value::<ollama::ChatRequest>(body)
            && let Ok(params) = ollama::params(req.options.as_ref(), req.format.as_ref(), 4096)
        {
            prop_assert!(params.repeat_last_n <= 4096);
            prop_assert!(params.max_context.is_none_or(|n| n <= 1 << 20));
        }
    }

    #[test]
    fn pull_references_and_hub_listings_are_handled_without_panicking(
        text in tricky_string(),
        tail in "[a-zA-Z0-9:/._+%é-]{0,60}",
        names in prop::collection::vec("[a-zA-Z0-9/._é-]{0,30}(-0000[12]-of-00002)?(\\.gguf)?", 0..6),
    ) {
        for input in [text, format!("hf.co/{tail}"), format!("https://huggingface.co/{tail}")] {
            if let Ok(parsed) = reference::parse(&input) {
                prop_assert!(!parsed.org.contains("..") && !parsed.repo.contains(".."));
                prop_assert!(!parsed.org.contains('/') && !parsed.repo.contains('/'));
                let files: Vec<HubFile> = names
                    .iter()
                    .map(|n| HubFile { path: n.clone(), size: 1, sha256: None })
                    .collect();
                if let Ok(chosen) = reference::choose(&parsed, &files) {
                    prop_assert!(chosen.path.to_ascii_lowercase().ends_with(".gguf"));
                }
            }
        }
    }

    #[test]
    fn modelfiles_and_create_parameters_are_checked_without_panicking(
        lines in prop::collection::vec("(FROM|SYSTEM|PARAMETER|TEMPLATE|LICENSE|ADAPTER|#)? ?[a-z_]{0,12} ?[\"0-9.a-z-]{0,8}(\"\"\")?", 0..8),
        parameters in object_with(OLLAMA_OPTIONS),
    ) {
        let _ = modelfile::parse(&lines.join("\n"));
        let settings = Overrides { parameters: parameters.into_iter().collect(), ..Default::default() };
        if settings.check().is_ok() {
            let as_options = Value::Object(settings.parameters.into_iter().collect());
            if let Ok(options) = serde_json::from_value::<ollama::Options>(as_options) {
                let _ = ollama::params(Some(&options), None, 4096);
            }
        }
    }

    #[test]
    fn anthropic_requests_validate_without_panicking(fields in object_with(ANTHROPIC_FIELDS), blocks in prop::collection::vec(block(), 0..4), role in prop_oneof![Just("user"), Just("assistant")]) {
        let mut body = fields;
        body.insert("model".into(), json!("m"));
        body.insert("messages".into(), json!([{"role": role, "content": blocks}]));
        if let Ok(prepared) = anthropic::prepare(Value::Object(body), 4096) {
            prop_assert!((0.0..=1.0).contains(&prepared.params.temperature));
            prop_assert!(prepared.params.stop.len() <= 16);
            prop_assert!(!prepared.messages.is_empty());
        }
    }

    #[test]
    fn responses_requests_validate_without_panicking(fields in object_with(RESPONSES_FIELDS), items in prop::collection::vec(block(), 0..4)) {
        let mut body = fields;
        body.insert("model".into(), json!("m"));
        body.entry("input").or_insert(Value::Array(items));
        if let Ok(prepared) = responses::prepare(Value::Object(body), 4096) {
            prop_assert!((0.0..=2.0).contains(&prepared.params.temperature));
            prop_assert!(prepared.params.max_tokens.is_none_or(|n| n >= 1));
        }
    }

    #[test]
    fn grammars_and_schemas_are_checked_without_panicking(grammar in "[()\\[\\]{}\"a-z0-9:=|,# \\\\\n]{0,200}", schema in value()) {
        let _ = constraint::check(Constraint::Grammar(grammar));
        let _ = constraint::check(Constraint::JsonSchema(schema.to_string()));
        if let Value::Object(_) = schema {
            let mut schema = schema;
            let _ = constraint::check_schema(&mut schema);
        }
    }

    #[test]
    fn patterns_are_normalised_or_refused_without_panicking(pattern in "\\^?[a-z\\\\()\\[\\]{}|.*+?^$:,0-9dDwWsS-]{0,40}\\$?") {
        if let Ok(normal) = constraint::normalize_pattern(&pattern) {
            prop_assert!(normal.starts_with('^') && normal.ends_with('$'));
        }
    }

    #[test]
    fn tools_and_tool_choices_validate_without_panicking(tools in prop::collection::vec(value(), 0..4), choice in prop::option::of(value()), function in object_with(&["name", "description", "parameters", "strict"])) {
        let mut offered = tools;
        offered.push(json!({"type": "function", "function": function}));
        if let Ok(Some(set)) = crate::chat::tools::ToolSet::from_openai(Some(&offered), choice.as_ref(), None) {
            prop_assert!(set.tools.len() <= crate::chat::tools::MAX_TOOLS);
            let dialect = crate::chat::tools::Dialect::of(Some("{% if tools %}<tool_call>{% endif %}"));
            let _ = crate::chat::tools::prepare(vec![crate::engine::ChatMessage::new("user", "x")], Some(&set), dialect);
        }
    }

    #[test]
    fn streamed_answers_lose_no_text(pieces in prop::collection::vec("(<tool_call>|</tool_call>|\\[TOOL_CALLS\\]|<\\|python_tag\\|>|```|\\{\"name\": \"f\", \"arguments\": \\{\\}\\}|[ a-z{}\\[\\]\"<>|\n]{0,6}|\\PC{0,3})", 0..12)) {
        let f = json!({"type": "function", "function": {"name": "f"}});
        let set = crate::chat::tools::ToolSet::from_openai(Some(&[f]), None, None).unwrap().unwrap();
        let mut stream = crate::chat::tools::CallStream::new(set);
        let mut out = Vec::new();
        for p in &pieces {
            out.extend(stream.push(p));
        }
        out.extend(stream.finish());
        let calls = out.iter().filter(|p| matches!(p, crate::chat::tools::Piece::Call(_))).count();
        let text: String = out.iter().filter_map(|p| match p {
            crate::chat::tools::Piece::Text(t) => Some(t.as_str()),
            crate::chat::tools::Piece::Call(_) => None,
        }).collect();
        if calls == 0 {
            // Without calls, the answer comes out whole (only leading blanks dropped).
            prop_assert_eq!(text, pieces.concat().trim_start().to_string());
        }
    }
}
