//! The one generation-stream adaptor every chat API maps over.
//!
//! [`Reply::start`] waits until the request holds a slot (or failed), so errors known
//! before the first byte keep their HTTP status. [`Reply::events`] then yields text and
//! exactly one terminal event, recording the exchange when a [`Recorder`] is attached:
//! saved whole at the end, labelled `error` when the engine fails, `cut_off` when the
//! client goes away (the stream is dropped). [`Reply::collect`] is the non-streaming
//! form. The OpenAI, Ollama and native handlers only choose the wire shape.

use futures_util::stream::{self, Stream, StreamExt};

use crate::chat::Recorder;
use crate::chat::tools::{CallStream, Piece, ToolSet};
use crate::engine::{FinishReason, GenEvent, Generation, TokenLogprob, ToolCall, Usage};
use crate::store::conversations::{Message, MessageStatus};

use super::error::ApiError;

/// A generation that has started.
pub struct Reply {
    generation: Generation,
    recorder: Option<Recorder>,
    tools: Option<ToolSet>,
}

/// What a reply stream yields.
pub enum ReplyEvent {
    /// More text.
    Text(String),
    /// The log probabilities of the tokens of the text that follows (only when asked
    /// for).
    Logprobs(Vec<TokenLogprob>),
    /// A complete function call (only when the reply looks for calls).
    Call(ToolCall),
    /// The end.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Counts and timings.
        usage: Usage,
        /// The stored (user, reply) messages, when recording.
        stored: Option<Box<(Message, Message)>>,
    },
    /// The generation failed after it started.
    Failed {
        /// What went wrong.
        error: ApiError,
        /// The stored partial reply, when recording.
        stored: Option<Box<Message>>,
    },
}

/// A finished non-streaming reply.
pub struct Collected {
    /// The text (outside calls).
    pub text: String,
    /// The function calls, when the reply looked for them.
    pub calls: Vec<ToolCall>,
    /// Every generated token's log probability, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Counts and timings.
    pub usage: Usage,
    /// The stored (user, reply) messages, when recording.
    pub stored: Option<(Message, Message)>,
}

impl Reply {
    /// Waits for `generation` to get a slot.
    pub async fn start(mut generation: Generation) -> Result<Reply, ApiError> {
        match generation.next().await {
            Some(Ok(GenEvent::Started { .. })) => Ok(Reply {
                generation,
                recorder: None,
                tools: None,
            }),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(_)) | None => Err(ApiError::Internal(
                "the generation ended before it started".into(),
            )),
        }
    }

    /// Records the exchange as the reply proceeds.
    pub fn record(mut self, recorder: Option<Recorder>) -> Reply {
        self.recorder = recorder;
        self
    }

    /// Looks for calls of `tools` in the text (when they are active): call syntax is
    /// held back from the text and comes out as [`ReplyEvent::Call`]s.
    pub fn parse_tools(mut self, tools: Option<ToolSet>) -> Reply {
        self.tools = tools.filter(ToolSet::active);
        self
    }

    /// How long loading the model took before this request.
    pub fn load_time(&self) -> std::time::Duration {
        self.generation.load_time()
    }

    /// The reply as a stream: text (and call) events, then one `Done` or `Failed`.
    pub fn events(self) -> impl Stream<Item = ReplyEvent> + Send + 'static {
        let mut calls = self.tools.map(CallStream::new);
        let pieces = |pieces: Vec<Piece>| {
            pieces.into_iter().map(|p| match p {
                Piece::Text(t) => ReplyEvent::Text(t),
                Piece::Call(c) => ReplyEvent::Call(c),
            })
        };
        Self::raw_events(self.generation, self.recorder).flat_map(move |event| {
            let out: Vec<ReplyEvent> = match (event, calls.as_mut()) {
                (event, None) => vec![event],
                (ReplyEvent::Text(t), Some(splitter)) => pieces(splitter.push(&t)).collect(),
                (done @ ReplyEvent::Done { .. }, Some(_)) => {
                    let rest = calls.take().map(CallStream::finish).unwrap_or_default();
                    pieces(rest).chain([done]).collect()
                }
                (event, Some(_)) => vec![event],
            };
            stream::iter(out)
        })
    }

    fn raw_events(
        generation: Generation,
        recorder: Option<Recorder>,
    ) -> impl Stream<Item = ReplyEvent> + Send + 'static {
        // A token event with log probabilities becomes two events: them, then the text
        // (kept in the state until the next step).
        stream::unfold(Some((generation, recorder, None)), |state| async move {
            let (mut generation, mut recorder, held) = state?;
            if let Some(text) = held {
                return Some((ReplyEvent::Text(text), Some((generation, recorder, None))));
            }
            loop {
                return match generation.next().await? {
                    Ok(GenEvent::Started { .. }) => continue,
                    Ok(GenEvent::Token(text, logprobs)) => {
                        if let Some(r) = recorder.as_mut() {
                            r.push(&text);
                        }
                        if logprobs.is_empty() {
                            Some((ReplyEvent::Text(text), Some((generation, recorder, None))))
                        } else {
                            Some((
                                ReplyEvent::Logprobs(logprobs),
                                Some((generation, recorder, Some(text))),
                            ))
                        }
                    }
                    Ok(GenEvent::Done {
                        finish_reason,
                        usage,
                    }) => {
                        let stored = match recorder {
                            Some(r) => match r
                                .save(MessageStatus::Complete, Some(finish_reason), Some(usage))
                                .await
                            {
                                Ok(pair) => Some(Box::new(pair)),
                                Err(e) => {
                                    let error = ApiError::from(e);
                                    return Some((
                                        ReplyEvent::Failed {
                                            error,
                                            stored: None,
                                        },
                                        None,
                                    ));
                                }
                            },
                            None => None,
                        };
                        Some((
                            ReplyEvent::Done {
                                finish_reason,
                                usage,
                                stored,
                            },
                            None,
                        ))
                    }
                    Err(e) => {
                        let stored = match recorder {
                            Some(r) => r
                                .save(MessageStatus::Error, None, None)
                                .await
                                .ok()
                                .map(|(_, reply)| Box::new(reply)),
                            None => None,
                        };
                        Some((
                            ReplyEvent::Failed {
                                error: e.into(),
                                stored,
                            },
                            None,
                        ))
                    }
                };
            }
        })
    }

    /// Drains the reply into its whole text.
    pub async fn collect(self) -> Result<Collected, ApiError> {
        let events = self.events();
        futures_util::pin_mut!(events);
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut logprobs = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                ReplyEvent::Text(t) => text.push_str(&t),
                ReplyEvent::Logprobs(l) => logprobs.extend(l),
                ReplyEvent::Call(c) => calls.push(c),
                ReplyEvent::Done {
                    finish_reason,
                    usage,
                    stored,
                } => {
                    return Ok(Collected {
                        text,
                        calls,
                        logprobs,
                        finish_reason,
                        usage,
                        stored: stored.map(|b| *b),
                    });
                }
                ReplyEvent::Failed { error, .. } => return Err(error),
            }
        }
        Err(ApiError::Internal(
            "the generation ended without finishing".into(),
        ))
    }
}
