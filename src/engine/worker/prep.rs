//! The preparation thread: chat template rendering, tokenization, context checks and
//! constraint compilation, off the decode loop.
//!
//! Special tokens: the template's own text is tokenized with special-token parsing
//! (that is where `<|im_start|>` and friends legitimately are), message contents never
//! are. Most messages contain no control-token text at all, and then the whole rendered
//! prompt is tokenized in one piece, exactly as llama-server does; only a message that
//! contains such text is tokenized on its own as plain text.

use std::sync::mpsc;

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token_type::LlamaTokenAttr;

use super::batch::Pending;
use super::jinja::JinjaTemplate;
use super::{Input, PrepJob, emit, sampler};
use crate::engine::protocol::{
    ChatMessage, Event, Prompt, SamplingParams, ToolDefinition, WorkerError,
};

/// Renders and tokenizes prompts for one model. Usable from any thread.
pub struct ChatTokenizer<'m> {
    model: &'m LlamaModel,
    template: Option<LlamaChatTemplate>,
    /// The same template compiled for the Jinja engine (prompts with tools); `None`
    /// when there is no template or minijinja cannot compile it.
    jinja: Option<JinjaTemplate>,
    /// The text of every token that only special-token parsing produces.
    control_texts: Vec<String>,
}

/// A chat prompt as tokens, and whether any message needed plain-text handling.
#[derive(Debug)]
pub struct TokenizedChat {
    /// The prompt.
    pub tokens: Vec<LlamaToken>,
    /// Whether some message contained control-token text (tokenized as plain text).
    pub segmented: bool,
}

/// Marks where message `i`'s content goes when locating contents in a rendering.
fn sentinel(i: usize) -> String {
    format!("{SENTINEL_OPEN}{i}\u{1}")
}

const SENTINEL_OPEN: &str = "\u{1}appliance-message-";

/// The first sentinel of a message below `count` in `text`: (offset, message, length).
fn next_sentinel(text: &str, count: usize) -> Option<(usize, usize, usize)> {
    let mut from = 0;
    while let Some(found) = text[from..].find(SENTINEL_OPEN) {
        let at = from + found;
        let digits = &text[at + SENTINEL_OPEN.len()..];
        let end = digits.find('\u{1}').unwrap_or(0);
        if let Ok(i) = digits[..end].parse::<usize>()
            && i < count
        {
            return Some((at, i, SENTINEL_OPEN.len() + end + 1));
        }
        from = at + SENTINEL_OPEN.len();
    }
    None
}

impl<'m> ChatTokenizer<'m> {
    /// A tokenizer for `model` (reads its chat template and special tokens).
    pub fn new(model: &'m LlamaModel) -> ChatTokenizer<'m> {
        let vocab = model.vocab();
        let mut control_texts: Vec<String> = vocab
            .tokens()
            .filter(|t| {
                let attr = vocab.attr(*t);
                attr.contains(LlamaTokenAttr::Control) || attr.contains(LlamaTokenAttr::Unknown)
            })
            .filter_map(|t| {
                vocab
                    .text(t)
                    .and_then(|c| c.to_str().ok().map(str::to_string))
            })
            .filter(|text| !text.is_empty())
            .collect();
        control_texts.sort();
        control_texts.dedup();
        let template = model.chat_template(None).ok();
        let piece = |t| {
            vocab
                .text(t)
                .and_then(|c| c.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let jinja = template
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(|source| {
                JinjaTemplate::new(source, &piece(vocab.bos()), &piece(vocab.eos()))
                    .map_err(
                        |e| tracing::warn!(error = %e, "chat template: tool prompts unavailable"),
                    )
                    .ok()
            });
        ChatTokenizer {
            model,
            template,
            jinja,
            control_texts,
        }
    }

    /// Whether the model has a chat template.
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// Tokenizes any prompt.
    pub fn tokenize(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, WorkerError> {
        let tokens = match prompt {
            Prompt::Text(text) => self.model.vocab().tokenize(text.as_bytes(), true, true),
            Prompt::Chat(messages) => self.tokenize_chat(messages, None)?.tokens,
            Prompt::ChatWithTools { messages, tools } => {
                self.tokenize_chat(messages, Some(tools))?.tokens
            }
        };
        if tokens.is_empty() {
            return Err(WorkerError::Invalid {
                message: "the prompt is empty".into(),
            });
        }
        Ok(tokens)
    }

    /// Renders with llama.cpp's built-in template function (role/content pairs), or,
    /// for prompts with tools or earlier tool calls (`tools` is `Some`), with the
    /// template itself through the Jinja engine.
    fn render(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[ToolDefinition]>,
    ) -> Result<String, WorkerError> {
        let template = self.template.as_ref().ok_or(WorkerError::NoChatTemplate)?;
        if let Some(tools) = tools {
            let jinja = self.jinja.as_ref().ok_or_else(|| WorkerError::Invalid {
                message: "this model's chat template cannot render tool calls".into(),
            })?;
            return jinja
                .render(messages, tools)
                .map_err(|e| WorkerError::Invalid {
                    message: e.to_string(),
                });
        }
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| WorkerError::Invalid {
                message: "a message contains a NUL character".into(),
            })?;
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|_| WorkerError::Invalid {
                message: "this model's chat template cannot render these messages".into(),
            })
    }

    /// Renders with the Jinja engine even without tools (tests compare it with the
    /// built-in renderer).
    pub fn render_jinja(&self, messages: &[ChatMessage]) -> Result<String, WorkerError> {
        self.render(messages, Some(&[]))
    }

    /// Renders with llama.cpp's built-in template function.
    pub fn render_builtin(&self, messages: &[ChatMessage]) -> Result<String, WorkerError> {
        self.render(messages, None)
    }

    fn has_control_text(&self, content: &str) -> bool {
        self.control_texts
            .iter()
            .any(|t| content.contains(t.as_str()))
    }

    /// Renders `messages` with the model's template and tokenizes them, parsing special
    /// tokens only in the template's own text.
    pub fn tokenize_chat(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[ToolDefinition]>,
    ) -> Result<TokenizedChat, WorkerError> {
        // Tool definitions, names and arguments are printed by the template (often
        // through `tojson`), where they cannot be located reliably: they must not
        // contain control-token text at all.
        let tool_text =
            tools
                .into_iter()
                .flatten()
                .map(|t| t.to_string())
                .chain(messages.iter().flat_map(|m| {
                    m.tool_calls
                        .iter()
                        // Arguments as sent and as JSON-decoded: a template prints
                        // them decoded (`tojson`), so `\u003c|im_start|>` is checked too.
                        .map(|c| {
                            let decoded = serde_json::from_str::<serde_json::Value>(&c.arguments)
                                .map(|v| v.to_string())
                                .unwrap_or_default();
                            format!("{}{}{}{decoded}", c.id, c.name, c.arguments)
                        })
                        .chain(m.tool_call_id.clone())
                        .chain(m.name.clone())
                }));
        for text in tool_text {
            if self.has_control_text(&text) {
                return Err(WorkerError::Invalid {
                    message:
                        "a tool definition or tool call contains special-token text; remove it"
                            .into(),
                });
            }
        }
        let rendered = self.render(messages, tools)?;
        let vocab = self.model.vocab();
        // The template already contains any BOS it wants.
        if !messages.iter().any(|m| self.has_control_text(&m.content)) {
            return Ok(TokenizedChat {
                tokens: vocab.tokenize(rendered.as_bytes(), false, true),
                segmented: false,
            });
        }
        let pieces = self.locate(messages, tools, &rendered)?;
        let mut tokens = Vec::new();
        for (text, is_content) in pieces {
            if !text.is_empty() {
                tokens.extend(vocab.tokenize(text.as_bytes(), false, !is_content));
            }
        }
        Ok(TokenizedChat {
            tokens,
            segmented: true,
        })
    }

    /// Splits `rendered` into template text and message contents. The template is
    /// rendered once more with a sentinel in place of each content; the real rendering
    /// must then be that text with each sentinel replaced by its content (as is, or
    /// trimmed, as some templates trim). Anything else is refused rather than guessed.
    fn locate<'r>(
        &self,
        messages: &[ChatMessage],
        tools: Option<&[ToolDefinition]>,
        rendered: &'r str,
    ) -> Result<Vec<(&'r str, bool)>, WorkerError> {
        let marked: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage {
                // An empty content stays empty: templates test it (`if message.content`).
                content: if m.content.is_empty() {
                    String::new()
                } else {
                    sentinel(i)
                },
                ..m.clone()
            })
            .collect();
        let skeleton = self.render(&marked, tools)?;
        let refused = || {
            WorkerError::Invalid {
            message: "a message contains special-token text that this model's chat template cannot keep apart from its own markers; remove it".into(),
        }
        };
        // Template text and message indexes in output order, in one pass over the
        // skeleton (a search per message per step was quadratic in the messages).
        let mut order: Vec<(String, Option<usize>)> = Vec::new();
        let mut rest = skeleton.as_str();
        while let Some((at, i, len)) = next_sentinel(rest, messages.len()) {
            order.push((rest[..at].to_string(), Some(i)));
            rest = &rest[at + len..];
        }
        order.push((rest.to_string(), None));
        let mut pieces = Vec::new();
        let mut pos = 0;
        for (n, (text, message)) in order.iter().enumerate() {
            if !rendered[pos..].starts_with(text.as_str()) {
                return Err(refused());
            }
            pieces.push((&rendered[pos..pos + text.len()], false));
            pos += text.len();
            let Some(i) = message else { continue };
            let following = order.get(n + 1).map_or("", |(t, _)| t.as_str());
            let content = messages[*i].content.as_str();
            let fits = [
                content,
                content.trim(),
                content.trim_start(),
                content.trim_end(),
            ]
            .into_iter()
            .find(|c| {
                rendered[pos..].starts_with(c) && rendered[pos + c.len()..].starts_with(following)
            })
            .ok_or_else(refused)?;
            pieces.push((&rendered[pos..pos + fits.len()], true));
            pos += fits.len();
        }
        if pos != rendered.len() {
            return Err(refused());
        }
        Ok(pieces)
    }
}

/// The preparation thread's state.
pub(super) struct Preparer<'m> {
    tokenizer: ChatTokenizer<'m>,
    n_ctx_slot: u32,
}

impl<'m> Preparer<'m> {
    pub(super) fn new(tokenizer: ChatTokenizer<'m>, n_ctx_slot: u32) -> Self {
        Preparer {
            tokenizer,
            n_ctx_slot,
        }
    }

    /// Serves jobs until told to stop or the decode loop is gone.
    pub(super) fn run(self, jobs: mpsc::Receiver<PrepJob>, decode: mpsc::Sender<Input>) {
        for job in jobs {
            let settled = match job {
                PrepJob::Stop => return,
                PrepJob::Count { id, prompt } => {
                    let event = match self.tokenizer.tokenize(&prompt) {
                        Ok(tokens) => Event::Counted {
                            id,
                            prompt_tokens: tokens.len() as u32,
                        },
                        Err(error) => Event::Failed { id, error },
                    };
                    if emit(&event).is_err() {
                        return;
                    }
                    Input::Settled(id)
                }
                PrepJob::Generate {
                    id,
                    prompt,
                    params,
                    received,
                } => match self.prepare(&prompt, &params) {
                    Ok(tokens) => Input::Prepared(Box::new(Pending {
                        id,
                        tokens,
                        params: *params,
                        received,
                    })),
                    Err(error) => {
                        if emit(&Event::Failed { id, error }).is_err() {
                            return;
                        }
                        Input::Settled(id)
                    }
                },
            };
            if decode.send(settled).is_err() {
                return;
            }
        }
    }

    fn prepare(
        &self,
        prompt: &Prompt,
        params: &SamplingParams,
    ) -> Result<Vec<LlamaToken>, WorkerError> {
        let tokens = self.tokenizer.tokenize(prompt)?;
        let limit = params
            .max_context
            .map_or(self.n_ctx_slot, |n| n.min(self.n_ctx_slot));
        // The prompt must leave room for at least one generated token.
        if tokens.len() as u64 >= u64::from(limit) {
            return Err(WorkerError::ContextOverflow {
                prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                n_ctx: limit,
            });
        }
        // Compile the constraint now so a bad one fails before queueing.
        sampler::Chain::build(self.tokenizer.model, params, self.n_ctx_slot)?;
        Ok(tokens)
    }
}
