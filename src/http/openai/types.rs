//! OpenAI wire types: what clients send to `/v1/*` and what they parse back.
//!
//! Requests accept (and ignore) fields this server does not use, as OpenAI's own API
//! does, except where ignoring would silently change the answer (`n > 1`, logprobs):
//! those are refused with a 400 naming the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several (OpenAI allows up to 4; we allow 16).
    Many(Vec<String>),
}

impl Stop {
    /// As a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// `{name, schema, strict}`.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema` (`name` and `strict` are accepted and ignored: the
/// schema is always enforced by grammar).
#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    /// The JSON schema.
    #[serde(default)]
    pub schema: Option<Value>,
}

/// Sampling fields shared by chat and text completions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Tokens to generate at most.
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// 0–2.
    pub temperature: Option<f32>,
    /// 0–1.
    pub top_p: Option<f32>,
    /// llama-server extension.
    pub top_k: Option<i32>,
    /// llama-server extension.
    pub min_p: Option<f32>,
    /// llama-server extension.
    pub repeat_penalty: Option<f32>,
    /// -2–2.
    pub frequency_penalty: Option<f32>,
    /// -2–2.
    pub presence_penalty: Option<f32>,
    /// Deterministic sampling.
    pub seed: Option<i64>,
    /// Stop sequences.
    pub stop: Option<Stop>,
    /// Choices to return (only 1 is supported).
    pub n: Option<u32>,
    /// Output constraint.
    pub response_format: Option<ResponseFormat>,
    /// A GBNF grammar (llama-server extension).
    pub grammar: Option<String>,
    /// Not supported: refused when true.
    pub logprobs: Option<bool>,
    /// Not supported: refused when set.
    pub top_logprobs: Option<u32>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Idle unload delay for this model (Ollama-style extension).
    pub keep_alive: Option<Value>,
}

/// A content part of a message.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (not supported by text models).
    ImageUrl {
        /// `{url}`.
        #[allow(dead_code)]
        image_url: Value,
    },
    /// Other part types (audio, files).
    #[serde(other)]
    Other,
}

/// `content`: a string, parts, or null.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<ContentPart>),
}

/// One input message.
#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content (null for assistant tool calls).
    #[serde(default)]
    pub content: Option<Content>,
    /// The calls an assistant message made.
    #[serde(default)]
    pub tool_calls: Option<Vec<InToolCall>>,
    /// For a `tool` message: the call it answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// The author's or function's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A call in an assistant message of the history.
#[derive(Debug, Clone, Deserialize)]
pub struct InToolCall {
    /// Its id.
    #[serde(default)]
    pub id: Option<String>,
    /// `function`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `{name, arguments}`.
    pub function: InFunctionCall,
}

/// The function of a call in the history.
#[derive(Debug, Clone, Deserialize)]
pub struct InFunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments: JSON text (OpenAI) or an object (Ollama).
    #[serde(default)]
    pub arguments: Value,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<InMessage>,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Functions the model may call.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required` or `{"type": "function", "function": {"name": …}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// Whether several calls may come in one answer (default true).
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// The end user, for the log (OpenAI's abuse-monitoring field).
    #[serde(default)]
    pub user: Option<String>,
    /// Also store the last user message and the reply in this conversation
    /// (appliance extension).
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Ground the reply in these document collections; the answer carries the
    /// numbered `sources` it was given (appliance extension).
    #[serde(default)]
    pub collections: Option<Vec<i64>>,
}

/// `prompt`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    /// One prompt.
    One(String),
    /// Several prompts (only one is supported).
    Many(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// The text to continue.
    pub prompt: PromptField,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Not supported: refused when set.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Prepend the prompt to the answer.
    #[serde(default)]
    pub echo: bool,
}

/// `usage`.
#[derive(Debug, Clone, Serialize)]
pub struct UsageOut {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
    /// `{cached_tokens}`.
    pub prompt_tokens_details: PromptDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Serialize)]
pub struct PromptDetails {
    /// Prompt tokens reused from the cache.
    pub cached_tokens: u32,
}

impl From<crate::engine::Usage> for UsageOut {
    fn from(u: crate::engine::Usage) -> Self {
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: PromptDetails {
                cached_tokens: u.cached_tokens,
            },
        }
    }
}
