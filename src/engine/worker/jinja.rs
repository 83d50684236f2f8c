//! The model's own chat template, run by a Jinja engine (minijinja), for prompts that
//! carry tools or earlier tool calls: llama.cpp's built-in template function takes only
//! role/content pairs, so it cannot place tool definitions where the model was trained
//! to see them.
//!
//! The environment behaves like the one Hugging Face's tokenizers render templates with:
//! `trim_blocks` and `lstrip_blocks` on, loop controls, Python string/dict/list methods
//! (`.strip()`, `.items()`, …), `raise_exception`, `strftime_now`, and a `tojson` that
//! prints what Python's `json.dumps(ensure_ascii=False)` prints (`{"a": 1, "b": [2]}`),
//! since that is the text the model saw in training. Rendering is bounded by fuel so a
//! template cannot loop for ever on a large request.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;

use crate::engine::protocol::{ChatMessage, ToolDefinition};

/// Instructions one rendering may execute (a template over a full context is well
/// below a million).
const FUEL: u64 = 50_000_000;

/// A compiled chat template.
pub struct JinjaTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

/// Why a template could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl JinjaTemplate {
    /// Compiles `source`; `bos`/`eos` are the model's special token texts, which some
    /// templates print.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<JinjaTemplate, TemplateError> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| TemplateError(e.to_string()))?,
        );
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |format: String| {
            jiff::Timestamp::now().strftime(&format).to_string()
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TemplateError(format!("the chat template does not compile: {e}")))?;
        Ok(JinjaTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// Renders `messages` (and `tools`, when any) followed by the assistant's prompt.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError(e.to_string()))?;
        let messages: Vec<Value> = messages.iter().map(message_value).collect();
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            Value::from(tools.iter().map(json_value).collect::<Vec<_>>())
        };
        let context = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("tools", tools),
            ("add_generation_prompt", Value::from(true)),
            ("bos_token", Value::from(self.bos.as_str())),
            ("eos_token", Value::from(self.eos.as_str())),
        ]);
        template.render(context).map_err(|e| {
            // A template's own `raise_exception` says what it does not accept.
            let detail = match e.kind() {
                ErrorKind::InvalidOperation => e.detail().unwrap_or("").to_string(),
                ErrorKind::OutOfFuel => "the request is too large for it".to_string(),
                _ => String::new(),
            };
            if detail.is_empty() {
                TemplateError("this model's chat template cannot render these messages".into())
            } else {
                TemplateError(format!(
                    "this model's chat template cannot render these messages: {detail}"
                ))
            }
        })
    }
}

/// A message as templates expect it: Hugging Face's shape, with each call's arguments
/// as an object (templates print them with `tojson`).
fn message_value(m: &ChatMessage) -> Value {
    let mut pairs: Vec<(&str, Value)> = vec![
        ("role", Value::from(m.role.as_str())),
        ("content", Value::from(m.content.as_str())),
    ];
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let arguments = serde_json::from_str::<Json>(&c.arguments)
                    .map(|v| json_value(&v))
                    .unwrap_or_else(|_| Value::from(c.arguments.as_str()));
                let function = Value::from_pairs([
                    ("name", Value::from(c.name.as_str())),
                    ("arguments", arguments),
                ]);
                Value::from_pairs([
                    ("id", Value::from(c.id.as_str())),
                    ("type", Value::from("function")),
                    ("function", function),
                ])
            })
            .collect();
        pairs.push(("tool_calls", Value::from(calls)));
    }
    if let Some(id) = &m.tool_call_id {
        pairs.push(("tool_call_id", Value::from(id.as_str())));
    }
    if let Some(name) = &m.name {
        pairs.push(("name", Value::from(name.as_str())));
    }
    Value::from_pairs(pairs)
}

/// JSON → a template value, keeping object key order.
fn json_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .unwrap_or_else(|| Value::from(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(json_value).collect::<Vec<_>>()),
        Json::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_value(v))))
        }
    }
}

/// `tojson` as Hugging Face defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent, sort_keys=sort_keys)`.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    // `separators` is accepted with Python's default meaning only.
    let _: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    let style = Style {
        indent,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    dump(value, &style, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct Style {
    indent: Option<usize>,
    sort_keys: bool,
    ensure_ascii: bool,
}

fn newline(style: &Style, depth: usize, out: &mut String) {
    if let Some(n) = style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * depth));
    }
}

fn dump(value: &Value, style: &Style, depth: usize, out: &mut String) -> Result<(), Error> {
    if depth > 64 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "value nested too deeply",
        ));
    }
    // With an indent, Python separates items by "," and a newline; without, by ", ".
    let item_sep = if style.indent.is_some() { "," } else { ", " };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                out.push_str(&value.to_string());
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => string(value.as_str().unwrap_or(""), style.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(style, depth + 1, out);
                dump(item, style, depth + 1, out)?;
            }
            newline(style, depth, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(style, depth + 1, out);
                string(&key.to_string(), style.ensure_ascii, out);
                out.push_str(": ");
                dump(&value.get_item(key)?, style, depth + 1, out)?;
            }
            newline(style, depth, out);
            out.push('}');
        }
        _ => string(&value.to_string(), style.ensure_ascii, out),
    }
    Ok(())
}

/// Python's `repr` of a float, as `json.dumps` prints it.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let s = format!("{f:?}");
    // Rust prints 1e20 as "1e20", Python as "1e+20".
    match s.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => s,
    }
}

fn string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::ToolCall;

    fn render(source: &str, value: Json) -> String {
        let t = JinjaTemplate::new(source, "<s>", "</s>").unwrap();
        t.render(&[], &[value]).unwrap()
    }

    #[test]
    fn tojson_prints_what_python_prints() {
        let v = serde_json::json!({"b": 1, "a": [1.5, "é\n\"", null, true], "c": {}});
        assert_eq!(
            render("{{ tools[0] | tojson }}", v.clone()),
            r#"{"b": 1, "a": [1.5, "é\n\"", null, true], "c": {}}"#
        );
        assert_eq!(
            render(
                "{{ tools[0] | tojson(indent=2) }}",
                serde_json::json!({"k": [1, 2]})
            ),
            "{\n  \"k\": [\n    1,\n    2\n  ]\n}"
        );
        assert_eq!(
            render("{{ tools[0] | tojson(sort_keys=true) }}", v),
            r#"{"a": [1.5, "é\n\"", null, true], "b": 1, "c": {}}"#
        );
        assert_eq!(python_float(1e20), "1e+20");
        assert_eq!(python_float(2.0), "2.0");
        // No HTML escaping, unlike minijinja's own filter.
        assert_eq!(
            render("{{ tools[0] | tojson }}", serde_json::json!("<a&b>")),
            "\"<a&b>\""
        );
    }

    #[test]
    fn python_methods_and_exceptions_work() {
        let t = JinjaTemplate::new(
            "{% for m in messages %}{{ m.content.strip() | upper }}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  hi ")], &[]).unwrap(),
            "HI"
        );
        let e = t.render(&[ChatMessage::new("tool", "x")], &[]).unwrap_err();
        assert!(e.to_string().ends_with("no tools here"), "{e}");
    }

    #[test]
    fn calls_reach_the_template_with_object_arguments() {
        let t = JinjaTemplate::new(
            "{% for m in messages %}{% for c in m.tool_calls %}{{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let mut m = ChatMessage::new("assistant", "");
        m.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris","days":2}"#.into(),
        });
        assert_eq!(
            t.render(&[m], &[]).unwrap(),
            r#"get_weather {"city": "Paris", "days": 2}"#
        );
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let t = JinjaTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert!(t.render(&[], &[]).is_err());
    }
}
