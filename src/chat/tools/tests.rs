use serde_json::json;

use super::*;

fn weather() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})
}

fn time() -> Value {
    json!({"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}})
}

fn set(choice: Option<Value>) -> ToolSet {
    ToolSet::from_openai(Some(&[weather(), time()]), choice.as_ref(), None)
        .unwrap()
        .unwrap()
}

fn stream_all(chunks: &[&str], tools: &ToolSet) -> Vec<Piece> {
    let mut s = CallStream::new(tools.clone());
    let mut out = Vec::new();
    for c in chunks {
        out.extend(s.push(c));
    }
    out.extend(s.finish());
    out
}

fn calls(pieces: &[Piece]) -> Vec<(String, Value)> {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Call(c) => Some((c.name.clone(), serde_json::from_str(&c.arguments).unwrap())),
            Piece::Text(_) => None,
        })
        .collect()
}

fn text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            Piece::Call(_) => None,
        })
        .collect()
}

#[test]
fn definitions_and_choices_are_checked_by_field() {
    let bad = |tools: Vec<Value>, choice: Option<Value>| {
        ToolSet::from_openai(Some(&tools), choice.as_ref(), None).unwrap_err()
    };
    assert_eq!(
        bad(vec![json!({"type": "retrieval"})], None).param,
        "tools[0].type"
    );
    assert_eq!(
        bad(
            vec![json!({"type": "function", "function": {"name": "a b"}})],
            None
        )
        .param,
        "tools[0].function.name"
    );
    assert_eq!(
        bad(vec![weather(), weather()], None).param,
        "tools[1].function.name"
    );
    assert_eq!(
        bad(vec![json!({"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}})], None).param,
        "tools[0].function.parameters.type"
    );
    assert_eq!(
        bad(vec![weather()], Some(json!("sometimes"))).param,
        "tool_choice"
    );
    let named = json!({"type": "function", "function": {"name": "nope"}});
    assert!(bad(vec![weather()], Some(named)).message.contains("nope"));
    assert_eq!(
        ToolSet::from_openai(Some(&[]), Some(&json!("required")), None)
            .unwrap_err()
            .param,
        "tool_choice"
    );
    assert!(
        ToolSet::from_openai(None, Some(&json!("auto")), None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn every_family_is_parsed() {
    let tools = set(None);
    let hermes = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let p = parse_calls(hermes, &tools);
    assert_eq!(p.calls.len(), 1);
    assert_eq!(p.calls[0].name, "get_weather");
    assert_eq!(p.calls[0].arguments, r#"{"city":"Paris"}"#);
    assert!(p.calls[0].id.starts_with("call_") && p.calls[0].id.len() == 29);
    assert_eq!(p.content, "");

    let mistral = r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {}}]"#;
    assert_eq!(parse_calls(mistral, &tools).calls.len(), 2);
    let llama = r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}"#;
    assert_eq!(
        parse_calls(llama, &tools).calls[0].arguments,
        r#"{"city":"Rome"}"#
    );
    let bare = r#" {"name": "get_weather", "parameters": {"city": "Rome"}}"#;
    assert_eq!(parse_calls(bare, &tools).calls.len(), 1);
    let string_args = r#"{"name": "get_weather", "arguments": "{\"city\": \"Lima\"}"}"#;
    assert_eq!(
        parse_calls(string_args, &tools).calls[0].arguments,
        r#"{"city":"Lima"}"#
    );
}

#[test]
fn what_is_not_a_call_stays_text() {
    let tools = set(None);
    for answer in [
        "The weather is fine.",
        r#"{"answer": 42}"#,
        "<tool_call>\n{\"name\": \"launch_missiles\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}\n</tool_call>",
        "<tool_call>\nnot json",
        "[1, 2, 3]",
    ] {
        let p = parse_calls(answer, &tools);
        assert!(p.calls.is_empty(), "{answer}");
        assert_eq!(p.content, answer.trim(), "nothing lost");
    }
}

#[test]
fn streaming_holds_back_call_syntax_and_keeps_text() {
    let tools = set(None);
    // Text, then a call split across many chunks, then another call.
    let chunks = [
        "Let me ",
        "check.",
        "\n<tool",
        "_call>\n{\"name\": \"get_",
        "weather\", \"arguments\": {\"city\": ",
        "\"Paris\"}}\n</tool_call>",
        "\n",
        "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
    ];
    let pieces = stream_all(&chunks, &tools);
    assert_eq!(text(&pieces), "Let me check.\n");
    assert_eq!(
        calls(&pieces),
        vec![
            ("get_weather".into(), json!({"city": "Paris"})),
            ("get_time".into(), json!({}))
        ]
    );
    // No text piece ever contains call syntax.
    assert!(
        pieces
            .iter()
            .all(|p| !matches!(p, Piece::Text(t) if t.contains('<') || t.contains('{')))
    );

    // Plain text passes through as it comes (only a possible marker prefix is held).
    let mut s = CallStream::new(tools.clone());
    assert_eq!(s.push("Hello"), vec![Piece::Text("Hello".into())]);
    assert_eq!(s.push(" world <"), vec![Piece::Text(" world ".into())]);
    assert_eq!(s.push("b>"), vec![Piece::Text("<b>".into())]);

    // A JSON call at the start is held to the end, then parsed.
    let pieces = stream_all(&["{\"name\": \"get_time\",", " \"arguments\": {}}"], &tools);
    assert_eq!(calls(&pieces).len(), 1);
    assert_eq!(text(&pieces), "");
}

#[test]
fn templates_without_tools_get_them_as_text() {
    let tools = set(None);
    let dialect = Dialect::of(Some(
        "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}",
    ));
    assert!(!dialect.native);
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls.push(ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    });
    let mut result = ChatMessage::new("tool", "18 degrees");
    result.tool_call_id = Some("call_1".into());
    let messages = vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Weather in Paris?"),
        call,
        result.clone(),
        result,
    ];
    let (prompt, constraint) = prepare(messages, Some(&tools), dialect).unwrap();
    assert!(constraint.is_none());
    let Prompt::Chat(m) = prompt else {
        panic!("lowered to plain chat")
    };
    assert_eq!(m.len(), 4, "results share one user turn");
    assert!(m[0].content.starts_with("Be brief.\n\n# Tools"));
    assert!(m[0].content.contains(r#""name":"get_weather""#));
    assert_eq!(
        m[2].content,
        "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call>"
    );
    assert_eq!(m[3].role, "user");
    assert_eq!(m[3].content.matches("<tool_response>").count(), 2);
}

#[test]
fn native_templates_get_definitions_and_required_calls_get_a_grammar() {
    let qwen = Dialect::of(Some("{%- if tools %}<tools>{% endif %}<tool_call>"));
    assert_eq!(
        qwen,
        Dialect {
            format: Format::Hermes,
            native: true
        }
    );
    let tools = set(Some(
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ));
    let (prompt, constraint) =
        prepare(vec![ChatMessage::new("user", "hi")], Some(&tools), qwen).unwrap();
    let Prompt::ChatWithTools { tools: shown, .. } = prompt else {
        panic!()
    };
    assert_eq!(shown.len(), 2);
    let Some(Constraint::ToolCalls {
        schema,
        open,
        close,
        parallel,
    }) = constraint
    else {
        panic!()
    };
    assert_eq!(
        (open.as_str(), close.as_str(), parallel),
        ("<tool_call>\n", "\n</tool_call>", false)
    );
    let name_at = schema.find("\"name\"").unwrap();
    assert!(
        name_at < schema.find("\"arguments\"").unwrap(),
        "name comes first: {schema}"
    );
    assert!(schema.contains("\"const\":\"get_weather\"") && !schema.contains("get_time"));

    // `none` shows no tools and constrains nothing.
    let none = set(Some(json!("none")));
    let (prompt, constraint) =
        prepare(vec![ChatMessage::new("user", "hi")], Some(&none), qwen).unwrap();
    assert!(matches!(prompt, Prompt::Chat(_)) && constraint.is_none());

    // Mistral: one array after the marker.
    let mistral = Dialect::of(Some(
        "{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]",
    ));
    let required = set(Some(json!("required")));
    let (_, c) = prepare(
        vec![ChatMessage::new("user", "hi")],
        Some(&required),
        mistral,
    )
    .unwrap();
    let Some(Constraint::ToolCalls { schema, open, .. }) = c else {
        panic!()
    };
    assert_eq!(open, "[TOOL_CALLS]");
    assert!(schema.contains("\"anyOf\"") && schema.starts_with("{\"type\":\"array\""));
}

#[test]
fn definitions_are_hoisted_with_their_references() {
    let tool = json!({"type": "function", "function": {"name": "make", "parameters": {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "$defs": {"Item": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Item"}}}},
    }}});
    let set = ToolSet::from_openai(Some(&[tool]), Some(&json!("required")), None)
        .unwrap()
        .unwrap();
    let (_, c) = prepare(
        vec![ChatMessage::new("user", "x")],
        Some(&set),
        Dialect::of(None),
    )
    .unwrap();
    let Some(Constraint::ToolCalls { schema, .. }) = c else {
        panic!()
    };
    let value: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(
        value["$defs"]["t0_Item"]["properties"]["next"]["$ref"],
        "#/$defs/t0_Item"
    );
    assert_eq!(
        value["properties"]["arguments"]["properties"]["item"]["$ref"],
        "#/$defs/t0_Item"
    );
}

#[test]
fn unenforceable_parameters_are_refused_only_when_a_call_is_required() {
    let tool = json!({"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"email": {"type": "string", "format": "email"}}}}});
    let auto = ToolSet::from_openai(Some(std::slice::from_ref(&tool)), None, None)
        .unwrap()
        .unwrap();
    assert!(
        prepare(
            vec![ChatMessage::new("user", "x")],
            Some(&auto),
            Dialect::of(None)
        )
        .is_ok()
    );
    let required = ToolSet::from_openai(Some(&[tool]), Some(&json!("required")), None)
        .unwrap()
        .unwrap();
    let e = prepare(
        vec![ChatMessage::new("user", "x")],
        Some(&required),
        Dialect::of(None),
    )
    .unwrap_err();
    assert_eq!(e.param, "tools");
    assert!(e.message.contains("format"), "{}", e.message);
}

#[test]
fn fenced_and_consecutive_json_calls_are_calls_and_fenced_code_is_text() {
    let tools = set(None);
    let fenced =
        "```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\"city\": \"Paris\"}\n}\n```";
    let pieces = stream_all(&["``", "`json\n{", &fenced[9..]], &tools);
    assert_eq!(
        calls(&pieces),
        vec![("get_weather".into(), json!({"city": "Paris"}))]
    );
    assert_eq!(text(&pieces), "");
    let lines = "{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}";
    assert_eq!(parse_calls(lines, &tools).calls.len(), 2);
    // Code is let out as soon as its first line shows it is not JSON.
    let mut s = CallStream::new(tools.clone());
    assert!(s.push("```py").is_empty());
    assert_eq!(text(&s.push("thon\nprint(1)")), "```python\nprint(1)");
    assert_eq!(text(&s.push("\n```")), "\n```");
}

#[test]
fn without_parallel_calls_only_the_first_call_counts() {
    let serial = ToolSet::from_openai(Some(&[weather(), time()]), None, Some(false))
        .unwrap()
        .unwrap();
    let two = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
    let p = parse_calls(two, &serial);
    assert_eq!(
        p.calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["get_time"]
    );
    assert_eq!(p.content, "");
    assert_eq!(parse_calls(two, &set(None)).calls.len(), 2);
}

#[test]
fn references_outside_definitions_are_refused_for_required_calls() {
    let tool = json!({"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"}}}}});
    let set = ToolSet::from_openai(Some(&[tool]), Some(&json!("required")), None)
        .unwrap()
        .unwrap();
    let e = prepare(
        vec![ChatMessage::new("user", "x")],
        Some(&set),
        Dialect::of(None),
    )
    .unwrap_err();
    assert!(e.message.contains("#/properties/a"), "{}", e.message);
}

#[test]
fn mistral_sees_nine_character_call_ids_and_llama_one_call() {
    let mistral = Dialect::of(Some(
        "{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]",
    ));
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls.push(ToolCall {
        id: "call_abc".into(),
        name: "get_time".into(),
        arguments: "{}".into(),
    });
    let mut result = ChatMessage::new("tool", "12:00");
    result.tool_call_id = Some("call_abc".into());
    let (prompt, _) = prepare(
        vec![ChatMessage::new("user", "t?"), call, result],
        Some(&set(None)),
        mistral,
    )
    .unwrap();
    let Prompt::ChatWithTools { messages, .. } = prompt else {
        panic!()
    };
    let id = &messages[1].tool_calls[0].id;
    assert_eq!(id.len(), 9);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(messages[2].tool_call_id.as_ref(), Some(id));
    let llama = Dialect::of(Some("{% if tools %}ipython{% endif %}<|python_tag|>"));
    let (_, c) = prepare(
        vec![ChatMessage::new("user", "x")],
        Some(&set(Some(json!("required")))),
        llama,
    )
    .unwrap();
    let Some(Constraint::ToolCalls { parallel, .. }) = c else {
        panic!()
    };
    assert!(!parallel);
}
