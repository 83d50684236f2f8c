//! Reading function calls out of generated text, whole ([`parse`]) or as it streams
//! ([`CallStream`]).
//!
//! Every common family is recognised whatever the template (small models mix them up):
//! Hermes/Qwen `<tool_call>{…}</tool_call>` blocks, Mistral `[TOOL_CALLS][…]`, Llama
//! 3.x `<|python_tag|>{…}` or a bare `{"name": …, "parameters": …}`, and plain JSON (an
//! object or array of `{"name", "arguments"}`). A call counts only when it names one of
//! the offered functions and its arguments are a JSON object; anything else stays text,
//! so nothing the model wrote is lost. While streaming, text that may be the start of a
//! call is held back until it is clear, so call syntax never leaks into `content`.

use serde_json::Value;

use super::{ToolCall, ToolSet, call_id};

/// Markers that open a call in some family.
const MARKERS: [&str; 3] = ["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>"];
const HERMES_CLOSE: &str = "</tool_call>";

/// A finished answer split into text and calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The text outside calls (trimmed).
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ToolCall>,
}

/// A piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text for `content`.
    Text(String),
    /// A complete call.
    Call(ToolCall),
}

/// Parses a whole answer.
pub fn parse(text: &str, tools: &ToolSet) -> Parsed {
    let mut stream = CallStream::new(tools.clone());
    let mut pieces = stream.push(text);
    pieces.extend(stream.finish());
    let mut parsed = Parsed::default();
    for piece in pieces {
        match piece {
            Piece::Text(t) => parsed.content.push_str(&t),
            Piece::Call(c) => parsed.calls.push(c),
        }
    }
    parsed.content = parsed.content.trim().to_string();
    parsed
}

/// `{"name": …, "arguments"|"parameters": {…}}` naming an offered function → a call.
fn call_from(value: &Value, tools: &ToolSet) -> Option<ToolCall> {
    let object = value.as_object()?;
    let (name, arguments) = match object.get("function") {
        // OpenAI's own shape, which models sometimes echo.
        Some(f @ Value::Object(_)) => (f.get("name")?, f.get("arguments")?),
        _ => (
            object.get("name")?,
            object
                .get("arguments")
                .or_else(|| object.get("parameters"))?,
        ),
    };
    let name = name.as_str()?;
    tools.get(name)?;
    let arguments = match arguments {
        Value::Object(_) => arguments.clone(),
        // Arguments given as JSON text.
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return None,
        },
        _ => return None,
    };
    Some(ToolCall {
        id: call_id(),
        name: name.to_string(),
        arguments: arguments.to_string(),
    })
}

/// Calls written as JSON: one object, a list, or several objects one after another,
/// possibly inside a Markdown code fence; `None` unless every value is a call.
fn calls_from(text: &str, tools: &ToolSet) -> Option<Vec<ToolCall>> {
    let text = unfence(text.trim());
    let mut calls = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value.ok()? {
            Value::Array(items) if !items.is_empty() => {
                for item in &items {
                    calls.push(call_from(item, tools)?);
                }
            }
            value @ Value::Object(_) => calls.push(call_from(&value, tools)?),
            _ => return None,
        }
    }
    (!calls.is_empty()).then_some(calls)
}

/// The inside of a Markdown code fence (```json … ```), or the text as it is.
fn unfence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// Llama 3 after `<|python_tag|>`: one call, or several separated by `;`.
fn python_tag_calls(text: &str, tools: &ToolSet) -> Option<Vec<ToolCall>> {
    calls_from(text, tools).or_else(|| {
        text.split(';')
            .filter(|part| !part.trim().is_empty())
            .map(|part| calls_from(part, tools))
            .collect::<Option<Vec<Vec<ToolCall>>>>()
            .map(|v| v.into_iter().flatten().collect::<Vec<_>>())
            .filter(|calls| !calls.is_empty())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Ordinary text.
    Text,
    /// The answer so far is whitespace and then `{` or `[`: perhaps plain-JSON calls,
    /// decided at the end.
    Json,
    /// The answer so far is whitespace and then a code fence: JSON calls if the fenced
    /// text starts with `{` or `[`, else text.
    Fence,
    /// Inside a `<tool_call>` block.
    Hermes,
    /// After `[TOOL_CALLS]` or `<|python_tag|>`: calls to the end.
    Tail(usize),
}

/// Splits a streamed answer into text and calls.
pub struct CallStream {
    tools: ToolSet,
    mode: Mode,
    buffer: String,
    /// Whether any text or call has been let out yet.
    started: bool,
    /// Whether the last thing let out was a call (whitespace after it is dropped).
    after_call: bool,
    /// Calls let out so far.
    calls: usize,
}

impl CallStream {
    /// A splitter for an answer to a request offering `tools`.
    pub fn new(tools: ToolSet) -> CallStream {
        CallStream {
            tools,
            mode: Mode::Text,
            buffer: String::new(),
            started: false,
            after_call: false,
            calls: 0,
        }
    }

    /// Takes more text; returns what can be let out now.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buffer.push_str(text);
        let mut out = Vec::new();
        loop {
            let progressed = match self.mode {
                Mode::Text => self.scan_text(&mut out),
                Mode::Hermes => self.scan_hermes(&mut out),
                Mode::Fence => self.scan_fence(),
                Mode::Json | Mode::Tail(_) => false,
            };
            if !progressed {
                break;
            }
        }
        self.limit(out)
    }

    /// Without parallel calls, only the first call counts (`parallel_tool_calls: false`
    /// promises at most one); later ones are dropped.
    fn limit(&mut self, out: Vec<Piece>) -> Vec<Piece> {
        let parallel = self.tools.parallel;
        out.into_iter()
            .filter(|piece| {
                if !matches!(piece, Piece::Call(_)) {
                    return true;
                }
                self.calls += 1;
                parallel || self.calls == 1
            })
            .collect()
    }

    /// The end of the answer: whatever was held back, as calls or as text.
    pub fn finish(mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buffer);
        match self.mode {
            Mode::Text => self.text(&rest, &mut out),
            Mode::Json | Mode::Fence => match calls_from(&rest, &self.tools) {
                Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                None => self.text(&rest, &mut out),
            },
            Mode::Hermes => {
                // An unterminated block: the call if its JSON is complete.
                let inner = &rest["<tool_call>".len()..];
                match calls_from(inner, &self.tools) {
                    Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                    None => self.text(&rest, &mut out),
                }
            }
            Mode::Tail(marker) => {
                let inner = &rest[marker..];
                let calls = if rest.starts_with("[TOOL_CALLS]") {
                    calls_from(inner, &self.tools)
                } else {
                    python_tag_calls(inner, &self.tools)
                };
                match calls {
                    Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                    None => self.text(&rest, &mut out),
                }
            }
        }
        self.limit(out)
    }

    fn text(&mut self, text: &str, out: &mut Vec<Piece>) {
        // Leading whitespace before anything else, and whitespace between calls, is
        // not content.
        let text = if self.started && !self.after_call {
            text
        } else {
            text.trim_start()
        };
        if text.is_empty() {
            return;
        }
        self.started = true;
        self.after_call = false;
        match out.last_mut() {
            Some(Piece::Text(last)) => last.push_str(text),
            _ => out.push(Piece::Text(text.to_string())),
        }
    }

    fn scan_text(&mut self, out: &mut Vec<Piece>) -> bool {
        if !self.started {
            let trimmed = self.buffer.trim_start();
            let marker_like =
                trimmed.starts_with("[TOOL_CALLS]") || "[TOOL_CALLS]".starts_with(trimmed);
            if trimmed.starts_with('{') || (trimmed.starts_with('[') && !marker_like) {
                self.mode = Mode::Json;
                return false;
            }
            if trimmed.starts_with("```") {
                self.mode = Mode::Fence;
                return true;
            }
            if !trimmed.is_empty() && "```".starts_with(trimmed) {
                return false;
            }
        }
        let found = MARKERS
            .iter()
            .filter_map(|m| self.buffer.find(m).map(|at| (at, *m)))
            .min();
        if let Some((at, marker)) = found {
            let before: String = self.buffer.drain(..at).collect();
            self.text(&before, out);
            self.mode = match marker {
                "<tool_call>" => Mode::Hermes,
                other => Mode::Tail(other.len()),
            };
            return true;
        }
        // Hold back a tail that could still become a marker (or, at the start, JSON).
        let keep = MARKERS
            .iter()
            .flat_map(|m| (1..m.len()).map(move |n| &m[..n]))
            .filter(|prefix| self.buffer.ends_with(prefix))
            .map(|p| p.len())
            .max()
            .unwrap_or(0);
        let cut = self.buffer.len() - keep;
        if (!self.started || self.after_call) && self.buffer[..cut].trim().is_empty() {
            return false;
        }
        let ready: String = self.buffer.drain(..cut).collect();
        self.text(&ready, out);
        false
    }

    /// Decides a code fence at the start once its first line and the next character
    /// are in: JSON is held as possible calls, anything else is text after all.
    fn scan_fence(&mut self) -> bool {
        let trimmed = self.buffer.trim_start();
        let Some((_, body)) = trimmed.split_once('\n') else {
            return false;
        };
        let Some(first) = body.trim_start().chars().next() else {
            return false;
        };
        self.mode = if first == '{' || first == '[' {
            Mode::Json
        } else {
            // Let it out as text (the started flag makes the next scan emit it), without
            // the blanks before it, like any answer's start.
            let blanks = self.buffer.len() - self.buffer.trim_start().len();
            self.buffer.drain(..blanks);
            self.started = true;
            Mode::Text
        };
        self.mode == Mode::Text
    }

    fn scan_hermes(&mut self, out: &mut Vec<Piece>) -> bool {
        let Some(end) = self.buffer.find(HERMES_CLOSE) else {
            return false;
        };
        let block: String = self.buffer.drain(..end + HERMES_CLOSE.len()).collect();
        let inner = &block["<tool_call>".len()..end];
        match calls_from(inner, &self.tools) {
            Some(calls) => {
                self.started = true;
                self.after_call = true;
                out.extend(calls.into_iter().map(Piece::Call));
            }
            None => self.text(&block, out),
        }
        self.mode = Mode::Text;
        true
    }
}
