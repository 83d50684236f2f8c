//! Tool (function) calling, independent of any wire format: the functions a client
//! offers ([`ToolSet`]), how they reach the model, how a required call is enforced,
//! and how calls are read back out of the generated text ([`parse`]).
//!
//! How they reach the model depends on its chat template:
//! - a template that reads `tools` (Qwen 2.5, Llama 3.1+, Mistral, Hermes…) gets the
//!   definitions and earlier calls as they are, rendered by the template itself
//!   ([`Prompt::ChatWithTools`], the worker's Jinja engine);
//! - any other template (SmolLM2's plain ChatML) gets them lowered to text: a system
//!   message describing the functions in the Hermes `<tool_call>` format, earlier calls
//!   as that text, results as `<tool_response>` user turns.
//!
//! `tool_choice` `required` or a named function is enforced with a grammar
//! ([`Constraint::ToolCalls`]) built from the functions' JSON schemas in the framing the
//! template taught the model, so even a 135M model produces a valid call.

pub mod parse;

use serde_json::{Map, Value, json};

use crate::engine::{ChatMessage, Constraint, Prompt, ToolCall};

pub use parse::{CallStream, Parsed, Piece, parse as parse_calls};

/// Most functions one request may offer.
pub const MAX_TOOLS: usize = 128;
/// Largest serialised definition of one function.
pub const MAX_TOOL_BYTES: usize = 64 * 1024;

/// A request's problem with its tools; `param` names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    /// The offending field, e.g. `tools[2].function.name`.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

fn error(param: impl Into<String>, message: impl Into<String>) -> ToolError {
    ToolError {
        param: param.into(),
        message: message.into(),
    }
}

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name (`[A-Za-z0-9_.-]`, 1–64 characters).
    pub name: String,
    /// JSON schema of its arguments (an object schema).
    pub parameters: Value,
    /// The OpenAI-shaped definition the template sees.
    pub definition: Value,
}

/// Which calls the model must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text or calls, as the model decides.
    Auto,
    /// No calls: the functions are not shown.
    None,
    /// At least one call.
    Required,
    /// Exactly one call of this function.
    Named(String),
}

/// The functions of one request and the choice over them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSet {
    /// The functions.
    pub tools: Vec<Tool>,
    /// What the model must do.
    pub choice: ToolChoice,
    /// Whether several calls may come in one answer.
    pub parallel: bool,
}

/// How a model family writes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>` (Hermes, Qwen, and the
    /// lowered form for templates without tools).
    Hermes,
    /// `{"name": …, "parameters": …}` (Llama 3.x), possibly after `<|python_tag|>`.
    Llama3,
    /// `[TOOL_CALLS][{"name": …, "arguments": …}]` (Mistral).
    Mistral,
}

/// How a model's template handles tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The call format the model was taught.
    pub format: Format,
    /// Whether the template renders tools itself.
    pub native: bool,
}

impl Dialect {
    /// The dialect of a chat template.
    pub fn of(template: Option<&str>) -> Dialect {
        let source = template.unwrap_or("");
        let native = source.contains("tools");
        let format = if !native {
            Format::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            Format::Mistral
        } else if source.contains("<tool_call>") {
            Format::Hermes
        } else if source.contains("<|python_tag|>") || source.contains("ipython") {
            Format::Llama3
        } else {
            Format::Hermes
        };
        Dialect { format, native }
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl ToolSet {
    /// Reads OpenAI's (and Ollama's) `tools`, `tool_choice` and `parallel_tool_calls`.
    /// `None` when no functions are offered (`tool_choice` must then be absent, `none`
    /// or `auto`).
    pub fn from_openai(
        tools: Option<&[Value]>,
        choice: Option<&Value>,
        parallel: Option<bool>,
    ) -> Result<Option<ToolSet>, ToolError> {
        let tools = tools.unwrap_or(&[]);
        if tools.len() > MAX_TOOLS {
            return Err(error(
                "tools",
                format!("at most {MAX_TOOLS} tools per request"),
            ));
        }
        let mut parsed = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            if t.to_string().len() > MAX_TOOL_BYTES {
                return Err(error(
                    at,
                    format!("a tool definition may be at most {MAX_TOOL_BYTES} bytes"),
                ));
            }
            match t.get("type").and_then(Value::as_str) {
                Some("function") => {}
                Some(other) => {
                    return Err(error(
                        format!("{at}.type"),
                        format!("tool type `{other}` is not supported (only `function`)"),
                    ));
                }
                None => return Err(error(format!("{at}.type"), "`type` must be \"function\"")),
            }
            let Some(function) = t.get("function").and_then(Value::as_object) else {
                return Err(error(
                    format!("{at}.function"),
                    "`function` must be an object",
                ));
            };
            let tool = Tool::new(function, &format!("{at}.function"))?;
            if parsed.iter().any(|p: &Tool| p.name == tool.name) {
                return Err(error(
                    format!("{at}.function.name"),
                    format!("two tools are named `{}`", tool.name),
                ));
            }
            parsed.push(tool);
        }
        let choice = parse_choice(choice, &parsed)?;
        if parsed.is_empty() {
            return Ok(None);
        }
        Ok(Some(ToolSet {
            tools: parsed,
            choice,
            parallel: parallel.unwrap_or(true),
        }))
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Whether calls are to be looked for in the answer.
    pub fn active(&self) -> bool {
        self.choice != ToolChoice::None
    }
}

impl Tool {
    /// A function from OpenAI's `{name, description, parameters, strict}` object;
    /// `at` names it in errors.
    pub fn new(function: &Map<String, Value>, at: &str) -> Result<Tool, ToolError> {
        for key in function.keys() {
            if !matches!(
                key.as_str(),
                "name" | "description" | "parameters" | "strict"
            ) {
                return Err(error(
                    format!("{at}.{key}"),
                    format!("unknown field `{key}` in a function definition"),
                ));
            }
        }
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_name(name) {
            return Err(error(
                format!("{at}.name"),
                "a function name must be 1–64 letters, digits, `_`, `-` or `.`",
            ));
        }
        if function.get("description").is_some_and(|d| !d.is_string()) {
            return Err(error(
                format!("{at}.description"),
                "`description` must be a string",
            ));
        }
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(error(
                    format!("{at}.parameters"),
                    "`parameters` must be a JSON schema object",
                ));
            }
        };
        if parameters.get("type").is_some_and(|t| t != "object") {
            return Err(error(
                format!("{at}.parameters.type"),
                "a function's parameters must be an object schema (`\"type\": \"object\"`)",
            ));
        }
        let mut inner = Map::new();
        inner.insert("name".into(), name.into());
        if let Some(d) = function.get("description") {
            inner.insert("description".into(), d.clone());
        }
        inner.insert("parameters".into(), parameters.clone());
        Ok(Tool {
            name: name.to_string(),
            definition: json!({"type": "function", "function": inner}),
            parameters,
        })
    }
}

fn parse_choice(choice: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, ToolError> {
    let parsed = match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" | "any" => ToolChoice::Required,
            other => {
                return Err(error(
                    "tool_choice",
                    format!(
                        "`{other}` is not a tool choice (auto, none, required or {{\"type\": \"function\", \"function\": {{\"name\": …}}}})"
                    ),
                ));
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str);
            let Some(name) = name else {
                return Err(error(
                    "tool_choice",
                    "a named tool choice needs `function.name`",
                ));
            };
            if !tools.iter().any(|t| t.name == name) {
                return Err(error(
                    "tool_choice",
                    format!("`tool_choice` names `{name}`, which is not among the tools"),
                ));
            }
            ToolChoice::Named(name.to_string())
        }
        Some(_) => {
            return Err(error(
                "tool_choice",
                "`tool_choice` must be a string or an object",
            ));
        }
    };
    if tools.is_empty() && matches!(parsed, ToolChoice::Required | ToolChoice::Named(_)) {
        return Err(error(
            "tool_choice",
            "`tool_choice` requires a call but no `tools` were given",
        ));
    }
    Ok(parsed)
}

/// A new call id (`call_` and 24 random characters), unique per call.
pub fn call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// Whether a conversation carries tool calls or results (and so needs the tool path
/// even without `tools`).
pub fn has_tool_messages(messages: &[ChatMessage]) -> bool {
    messages
        .iter()
        .any(|m| !m.tool_calls.is_empty() || m.role == "tool")
}

/// The prompt and constraint for `messages` with `tools` under a model whose template
/// has `dialect`.
pub fn prepare(
    messages: Vec<ChatMessage>,
    tools: Option<&ToolSet>,
    dialect: Dialect,
) -> Result<(Prompt, Option<Constraint>), ToolError> {
    let shown: Vec<&Tool> = match tools {
        Some(set) if set.active() => set.tools.iter().collect(),
        _ => Vec::new(),
    };
    if shown.is_empty() && !has_tool_messages(&messages) {
        return Ok((Prompt::Chat(messages), None));
    }
    let constraint = tools
        .map(|set| constraint(set, dialect))
        .transpose()?
        .flatten();
    let mut messages = messages;
    if dialect.native && dialect.format == Format::Mistral {
        mistral_ids(&mut messages);
    }
    let prompt = if dialect.native {
        Prompt::ChatWithTools {
            messages,
            tools: shown.iter().map(|t| t.definition.clone()).collect(),
        }
    } else {
        Prompt::Chat(lower(messages, &shown))
    };
    Ok((prompt, constraint))
}

/// Text of one call in the Hermes format.
fn hermes_call(call: &ToolCall) -> String {
    let arguments: Value = serde_json::from_str(&call.arguments)
        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
    format!(
        "<tool_call>\n{}\n</tool_call>",
        json!({"name": call.name, "arguments": arguments})
    )
}

/// The conversation for a template without tools: functions described in the system
/// message, calls and results as text in the Hermes format.
fn lower(messages: Vec<ChatMessage>, tools: &[&Tool]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    let mut rest = messages.into_iter().peekable();
    if !tools.is_empty() {
        let mut system = String::new();
        if let Some(first) = rest.next_if(|m| m.role == "system") {
            system.push_str(&first.content);
            system.push_str("\n\n");
        }
        system.push_str(
            "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
             You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
        );
        for tool in tools {
            system.push('\n');
            system.push_str(&tool.definition.to_string());
        }
        system.push_str(
            "\n</tools>\n\nFor each function call, return a json object with function name and \
             arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n\
             {\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
        );
        out.push(ChatMessage::new("system", system));
    }
    for m in rest {
        if m.role == "tool" {
            let text = format!("<tool_response>\n{}\n</tool_response>", m.content);
            // Consecutive results share one user turn.
            match out.last_mut() {
                Some(last) if last.role == "user" && last.content.ends_with("</tool_response>") => {
                    last.content.push('\n');
                    last.content.push_str(&text);
                }
                _ => out.push(ChatMessage::new("user", text)),
            }
        } else if !m.tool_calls.is_empty() {
            let mut text = m.content.clone();
            for call in &m.tool_calls {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&hermes_call(call));
            }
            out.push(ChatMessage::new(m.role, text));
        } else {
            out.push(ChatMessage::new(m.role, m.content));
        }
    }
    out
}

/// For `required` or a named choice, the grammar-enforced framing of calls.
fn constraint(set: &ToolSet, dialect: Dialect) -> Result<Option<Constraint>, ToolError> {
    let chosen: Vec<&Tool> = match &set.choice {
        ToolChoice::Auto | ToolChoice::None => return Ok(None),
        ToolChoice::Required => set.tools.iter().collect(),
        ToolChoice::Named(name) => set.tools.iter().filter(|t| &t.name == name).collect(),
    };
    // Llama 3.1's template takes one call per message.
    let parallel =
        set.parallel && set.choice == ToolChoice::Required && dialect.format != Format::Llama3;
    let key = match dialect.format {
        Format::Llama3 => "parameters",
        Format::Hermes | Format::Mistral => "arguments",
    };
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for (i, tool) in chosen.iter().enumerate() {
        let mut parameters = tool.parameters.clone();
        hoist_definitions(&mut parameters, i, &mut defs).map_err(|r| {
            error(
                "tools",
                format!(
                    "a call cannot be required of `{}`: its schema refers to `{r}`; only `#/$defs/…` and `#/definitions/…` references are supported",
                    tool.name
                ),
            )
        })?;
        // Name first: the model must choose the function before its arguments. The
        // schema is written as text so the converter keeps this order.
        branches.push(format!(
            "{{\"type\":\"object\",\"properties\":{{\"name\":{{\"const\":{}}},\"{key}\":{}}},\"required\":[\"name\",\"{key}\"],\"additionalProperties\":false}}",
            Value::String(tool.name.clone()),
            parameters
        ));
    }
    let one = if branches.len() == 1 {
        branches.remove(0)
    } else {
        format!("{{\"anyOf\":[{}]}}", branches.join(","))
    };
    let with_defs = |schema: String| -> String {
        if defs.is_empty() {
            schema
        } else {
            // Insert `$defs` into the top-level object.
            let defs = Value::Object(defs.clone()).to_string();
            format!("{{\"$defs\":{defs},{}", &schema[1..])
        }
    };
    let (schema, open, close, parallel) = match dialect.format {
        Format::Hermes => (with_defs(one), "<tool_call>\n", "\n</tool_call>", parallel),
        Format::Llama3 => (with_defs(one), "", "", parallel),
        Format::Mistral => {
            let max = if parallel {
                String::new()
            } else {
                ",\"maxItems\":1".into()
            };
            (
                with_defs(format!(
                    "{{\"type\":\"array\",\"items\":{one},\"minItems\":1{max}}}"
                )),
                "[TOOL_CALLS]",
                "",
                false,
            )
        }
    };
    let param = match &set.choice {
        ToolChoice::Named(_) => "tool_choice",
        _ => "tools",
    };
    let checked = crate::engine::constraint::check(Constraint::ToolCalls {
        schema,
        open: open.into(),
        close: close.into(),
        parallel,
    })
    .map_err(|r| {
        error(
            param,
            format!(
                "a call cannot be required of these tools: {} (at {})",
                r.message,
                if r.at.is_empty() { "/" } else { &r.at }
            ),
        )
    })?;
    Ok(Some(checked))
}

/// Moves a tool's `$defs`/`definitions` to the top of the combined schema under
/// `t<index>_<name>`, rewriting its references, so that `#/…` pointers still resolve.
fn hoist_definitions(
    schema: &mut Value,
    index: usize,
    defs: &mut Map<String, Value>,
) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Ok(());
    };
    let mut own = Vec::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(found)) = map.remove(key) {
            own.extend(found);
        }
    }
    rewrite_refs(schema, index)?;
    for (name, mut def) in own {
        rewrite_refs(&mut def, index)?;
        defs.insert(format!("t{index}_{name}"), def);
    }
    Ok(())
}

/// Points a tool's `#/$defs/X` (and `#/definitions/X`) references at its hoisted
/// definitions; any other in-document reference (`#`, `#/properties/…`) would point
/// into the combined schema, so it is refused (returned).
fn rewrite_refs(value: &mut Value, index: usize) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "$ref"
                    && let Value::String(r) = child
                {
                    let name = ["#/$defs/", "#/definitions/"]
                        .iter()
                        .find_map(|prefix| r.strip_prefix(prefix));
                    match name {
                        Some(name) => *r = format!("#/$defs/t{index}_{name}"),
                        None => return Err(r.clone()),
                    }
                } else {
                    rewrite_refs(child, index)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_refs(item, index)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Mistral's template accepts only call ids of exactly 9 letters and digits: each id
/// (ours are `call_…`) is shown to it as a stable 9-character alias.
fn mistral_ids(messages: &mut [ChatMessage]) {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let alias = |id: &str| -> String {
        let digest = sha2::Sha256::digest(id.as_bytes());
        digest[..9]
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect()
    };
    for m in messages {
        for call in &mut m.tool_calls {
            call.id = alias(&call.id);
        }
        if let Some(id) = m.tool_call_id.as_mut() {
            *id = alias(id);
        }
    }
}

#[cfg(test)]
mod tests;
