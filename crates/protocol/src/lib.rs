//! The wire between the daemon and a worker process (chat, embeddings or speech): one
//! JSON object per line, daemon → worker on the worker's stdin, worker → daemon on its
//! stdout. The worker's stderr carries only logs, which never reach a client.
//!
//! It is a crate of its own because the speech worker is a separate executable
//! (whisper.cpp and llama.cpp each link their own ggml and cannot share one binary):
//! both sides depend on this crate and nothing else of each other.
//!
//! The worker announces [`PROTOCOL_VERSION`] in [`Event::Ready`]; the daemon refuses a
//! worker speaking another version (a stale binary after an upgrade).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod stdio;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 5;

/// The longest line either side sends (a token, a count, an error): longer lines are a
/// broken peer, not a message.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// One chat message, already flattened to text by the HTTP layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// The functions an assistant message called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a `tool` message: the function's name, when the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }

    /// Bytes of client text in the message (content, call names and arguments).
    pub fn text_len(&self) -> usize {
        self.content.len()
            + self
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>()
    }
}

/// One function call made by the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (`call_…`), which the `tool` message answering it repeats.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, as JSON text (an object).
    pub arguments: String,
}

/// A function the model may call: OpenAI's `{"type": "function", "function": {…}}`
/// shape, kept as the client sent it so that the model's template sees it verbatim.
pub type ToolDefinition = serde_json::Value;

/// What to generate from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Messages rendered with the model's own chat template. Only the template's own
    /// text may contain special tokens: message contents are always plain text, so a
    /// user cannot forge a role marker such as `<|im_start|>system`.
    Chat(Vec<ChatMessage>),
    /// Raw text, tokenised as is with special tokens parsed (`/v1/completions`, Ollama
    /// `raw`): the caller writes the whole prompt, markers included.
    Text(String),
    /// Messages and the functions the model may call, rendered by the model's own
    /// (Jinja) chat template, which places the tool definitions where the model was
    /// trained to see them. Definitions and call arguments are plain text like contents.
    ChatWithTools {
        /// The conversation.
        messages: Vec<ChatMessage>,
        /// The functions (empty when the conversation only carries earlier calls).
        tools: Vec<ToolDefinition>,
    },
}

impl Prompt {
    /// Bytes of text in the prompt (what admission limits).
    pub fn text_len(&self) -> usize {
        match self {
            Prompt::Chat(messages) => messages.iter().map(ChatMessage::text_len).sum(),
            Prompt::Text(text) => text.len(),
            Prompt::ChatWithTools { messages, tools } => {
                messages.iter().map(ChatMessage::text_len).sum::<usize>()
                    + tools.iter().map(|t| t.to_string().len()).sum::<usize>()
            }
        }
    }
}

/// How to constrain the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Constraint {
    /// Any JSON value (OpenAI `json_object`, Ollama `format: "json"`).
    JsonObject,
    /// JSON matching this schema (serialised).
    JsonSchema(String),
    /// A GBNF grammar (llama-server's `grammar`).
    Grammar(String),
    /// Function calls and nothing else: each call is `open`, a JSON value matching
    /// `schema`, then `close`; exactly one call or, when `parallel`, one or more on
    /// their own lines. How a model is held to calling a function when the client
    /// requires one, in the framing its template taught it.
    ToolCalls {
        /// JSON schema of one call (serialised, properties in generation order).
        schema: String,
        /// Text before each call, e.g. `<tool_call>\n`.
        open: String,
        /// Text after each call.
        close: String,
        /// Whether several calls may follow one another.
        parallel: bool,
    },
}

/// Sampling and stopping settings. Defaults follow llama-server's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling (1.0 = off).
    pub top_p: f32,
    /// Top-k (0 = off).
    pub top_k: i32,
    /// Min-p (0.0 = off).
    pub min_p: f32,
    /// Repetition penalty (1.0 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at (-1: the whole context).
    pub repeat_last_n: i32,
    /// OpenAI frequency penalty.
    pub frequency_penalty: f32,
    /// OpenAI presence penalty.
    pub presence_penalty: f32,
    /// RNG seed; `None` picks one.
    pub seed: Option<u32>,
    /// Maximum tokens to generate; `None` = until the context is full.
    pub max_tokens: Option<u32>,
    /// Tokens this request may use in all (prompt + reply), below the slot's context
    /// (Ollama's `num_ctx`); `None` = the whole slot.
    #[serde(default)]
    pub max_context: Option<u32>,
    /// Stop sequences (not included in the output).
    pub stop: Vec<String>,
    /// Output constraint.
    pub constraint: Option<Constraint>,
    /// Report each generated token's log probability and this many most likely
    /// alternatives (0–20); `None` = no log probabilities.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Which settings the client left unset, by their Ollama names (`temperature`,
    /// `num_predict`, …). Daemon-side only (never sent): a model's own parameters
    /// (Ollama's `PARAMETER`) fill these before the request reaches a worker.
    #[serde(skip)]
    pub unset: Vec<&'static str>,
}

/// Most alternatives a token's log probability may list.
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// A token and its log probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenProb {
    /// The token's text (invalid UTF-8 replaced).
    pub token: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Natural log of its probability under the model (before sampling settings).
    pub logprob: f32,
}

/// A generated token's log probability and the most likely alternatives at its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token chosen.
    #[serde(flatten)]
    pub chosen: TokenProb,
    /// The most likely tokens at this place, most likely first.
    pub top: Vec<TokenProb>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 40,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
            max_tokens: None,
            max_context: None,
            stop: Vec::new(),
            constraint: None,
            logprobs: None,
            unset: Vec::new(),
        }
    }
}

/// Whether speech is written down in its own language or translated to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechTask {
    /// Text in the spoken language.
    Transcribe,
    /// English text, whatever the spoken language.
    Translate,
}

/// How to transcribe one audio file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechOptions {
    /// Transcribe or translate.
    pub task: SpeechTask,
    /// ISO-639-1 code of the spoken language; `None` = detect it.
    pub language: Option<String>,
    /// Text that conditions the decoder (names, spelling, the previous passage).
    pub prompt: Option<String>,
    /// Sampling temperature (0 = greedy, with whisper's fallback on failure).
    pub temperature: f32,
    /// Time every word, not only every segment.
    pub word_timestamps: bool,
    /// Audio longer than this is refused while decoding.
    pub max_seconds: f64,
}

/// One timed word (or word piece joined into a word).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechWord {
    /// The word, without surrounding spaces.
    pub word: String,
    /// Start, seconds from the beginning of the audio.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The decoder's probability for it (the lowest of its pieces).
    pub probability: f32,
}

/// One segment of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechSegment {
    /// Position in the transcript, from 0.
    pub index: u32,
    /// Start, seconds from the beginning of the audio.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// The text, as whisper wrote it (with its leading space).
    pub text: String,
    /// Mean log probability of its tokens.
    pub avg_logprob: f32,
    /// Probability that the segment holds no speech.
    pub no_speech_prob: f32,
    /// The words, when asked for.
    #[serde(default)]
    pub words: Vec<SpeechWord>,
}

/// Daemon → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Start a generation.
    Generate {
        /// Request id, unique per worker.
        id: u64,
        /// What to continue.
        prompt: Prompt,
        /// How.
        params: SamplingParams,
    },
    /// Tokenise a prompt and report its length without generating.
    Count {
        /// Request id.
        id: u64,
        /// The prompt.
        prompt: Prompt,
    },
    /// Embed texts (an embedding worker).
    Embed {
        /// Request id.
        id: u64,
        /// The texts.
        inputs: Vec<String>,
        /// Cut texts longer than the model's positions instead of failing.
        truncate: bool,
    },
    /// Transcribe an audio file (a speech worker).
    Transcribe {
        /// Request id.
        id: u64,
        /// The uploaded file, readable by the worker.
        audio: PathBuf,
        /// The name the client gave it (its extension is checked against the content).
        name: Option<String>,
        /// How.
        options: SpeechOptions,
    },
    /// Stop a request (client gone, deadline passed).
    Cancel {
        /// Request id.
        id: u64,
    },
    /// Finish and exit.
    Shutdown,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token or a stop sequence.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
    /// Cancelled on request.
    Cancelled,
}

/// A request-level failure reported by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerError {
    /// The prompt does not fit the per-slot context.
    ContextOverflow {
        /// Tokens in the prompt.
        prompt_tokens: u32,
        /// Tokens that fit.
        n_ctx: u32,
    },
    /// The grammar or JSON schema was rejected.
    InvalidConstraint {
        /// Why.
        message: String,
    },
    /// The model cannot render chat messages.
    NoChatTemplate,
    /// The request was invalid for another reason.
    Invalid {
        /// Why.
        message: String,
    },
    /// An input has more tokens than the model takes (and truncation was not asked).
    InputTooLong {
        /// Which input (0-based).
        index: u32,
        /// Its tokens.
        tokens: u32,
        /// The most the model takes.
        limit: u32,
    },
    /// llama.cpp failed while decoding.
    Decode {
        /// Its message.
        message: String,
    },
    /// The audio could not be read (unsupported, corrupt, lying about its format, too
    /// long): the client's input is at fault.
    Audio {
        /// What was wrong, in words safe for the client.
        message: String,
    },
}

/// Token accounting and timings of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Of those, reused from the KV cache (not evaluated again).
    pub cached_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Time evaluating the prompt, ms.
    pub prompt_ms: f64,
    /// Time generating, ms.
    pub generation_ms: f64,
    /// Time waiting for a free slot inside the worker, ms.
    pub queue_ms: f64,
}

/// Worker → daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The model is loaded and the worker accepts commands.
    Ready {
        /// The worker's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Context tokens available to each slot.
        n_ctx_slot: u32,
        /// Parallel sequences.
        slots: u32,
        /// Context length the model was trained with.
        n_ctx_train: u32,
        /// Time to load, ms.
        load_ms: f64,
        /// Bytes of model weights.
        model_bytes: u64,
        /// Whether the model has a chat template.
        chat_template: bool,
    },
    /// The prompt was accepted and is being evaluated.
    Started {
        /// Request id.
        id: u64,
        /// Prompt length in tokens.
        prompt_tokens: u32,
    },
    /// Generated text (whole UTF-8 characters, stop sequences withheld).
    Token {
        /// Request id.
        id: u64,
        /// The text.
        text: String,
        /// The log probabilities of the tokens behind the text, when asked for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logprobs: Vec<TokenLogprob>,
    },
    /// The generation finished.
    Done {
        /// Request id.
        id: u64,
        /// Why it ended.
        finish_reason: FinishReason,
        /// Counts and timings.
        usage: Usage,
    },
    /// Answer to [`Command::Count`].
    Counted {
        /// Request id.
        id: u64,
        /// Prompt length in tokens.
        prompt_tokens: u32,
    },
    /// Answer to [`Command::Embed`].
    Embedded {
        /// Request id.
        id: u64,
        /// One unit vector per input, in input order.
        embeddings: Vec<Vec<f32>>,
        /// Tokens in all inputs.
        prompt_tokens: u32,
    },
    /// A speech request's audio was decoded (the transcription starts).
    Decoded {
        /// Request id.
        id: u64,
        /// Length of the audio.
        seconds: f64,
        /// Container and codec, e.g. `ogg/opus`.
        format: String,
    },
    /// How far a speech request has got, 0–100.
    Progress {
        /// Request id.
        id: u64,
        /// Percent done.
        percent: u8,
    },
    /// A finished segment of a transcript (sent as soon as whisper finishes it).
    Segment {
        /// Request id.
        id: u64,
        /// The segment.
        segment: SpeechSegment,
    },
    /// A speech request finished; its segments were sent before this.
    Transcribed {
        /// Request id.
        id: u64,
        /// The language (detected, or the one asked for).
        language: String,
        /// Length of the audio.
        seconds: f64,
        /// Time decoding and resampling the file, ms.
        decode_ms: f64,
        /// Time in whisper, ms.
        inference_ms: f64,
        /// Every segment, with probabilities and (when asked) words.
        segments: Vec<SpeechSegment>,
    },
    /// The request failed.
    Failed {
        /// Request id.
        id: u64,
        /// Why.
        error: WorkerError,
    },
}
