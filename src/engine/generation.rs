//! A generation in progress, as its caller sees it: a stream of [`GenEvent`]s with a
//! deadline, that cancels itself in the worker when dropped early.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::protocol::{Command, Event, FinishReason, TokenLogprob, Usage};
use super::supervisor::{Shared, worker_error};
use super::{EngineError, KeepAliveRequest};

/// What a generation yields.
#[derive(Debug, Clone)]
pub enum GenEvent {
    /// The request got a slot; its prompt has this many tokens.
    Started {
        /// Prompt tokens.
        prompt_tokens: u32,
    },
    /// More text, and the log probabilities of its tokens when they were asked for.
    Token(String, Vec<TokenLogprob>),
    /// Finished.
    Done {
        /// Why.
        finish_reason: FinishReason,
        /// Counts and timings.
        usage: Usage,
    },
}

/// Called once when a generation ends, however it ends, with (prompt tokens, generated
/// tokens) — for usage accounting.
pub type FinishHook = Box<dyn FnOnce(u32, u32) + Send>;

/// One admission place, held by a request until it ends (dropped): the place, the
/// user's share of places, and the keep-alive to apply when it is given back.
pub(super) struct Permit {
    shared: Arc<Shared>,
    user: i64,
    keep_alive: KeepAliveRequest,
}

impl Permit {
    pub(super) fn new(shared: Arc<Shared>, user: i64, keep_alive: KeepAliveRequest) -> Permit {
        Permit {
            shared,
            user,
            keep_alive,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.release(self.user, self.keep_alive);
    }
}

/// `timeout` from now; a deadline past what the clock can represent is "never" (a year).
pub(super) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// A generation in progress. Yields [`GenEvent`]s until `Done`; dropping it before
/// then cancels the generation in the worker, which frees the slot within one decode
/// step.
pub struct Generation {
    id: u64,
    rx: mpsc::UnboundedReceiver<Result<Event, EngineError>>,
    commands: mpsc::Sender<Command>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    started: bool,
    finished: bool,
    load_time: Duration,
    shared: Arc<Shared>,
    _permit: Permit,
    prompt_tokens: u32,
    tokens_seen: u32,
    on_finish: Option<FinishHook>,
}

impl Generation {
    pub(super) fn new(
        id: u64,
        rx: mpsc::UnboundedReceiver<Result<Event, EngineError>>,
        commands: mpsc::Sender<Command>,
        timeout: Duration,
        load_time: Duration,
        permit: Permit,
        shared: Arc<Shared>,
    ) -> Generation {
        Generation {
            id,
            rx,
            commands,
            deadline: deadline_after(timeout),
            timeout,
            started: false,
            finished: false,
            load_time,
            shared,
            _permit: permit,
            prompt_tokens: 0,
            tokens_seen: 0,
            on_finish: None,
        }
    }

    /// How long loading the model took before this request (zero when it was loaded).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Registers the [`FinishHook`].
    pub fn on_finish(&mut self, hook: FinishHook) {
        self.on_finish = Some(hook);
    }

    fn report(&mut self, prompt: u32, generated: u32) {
        if let Some(hook) = self.on_finish.take() {
            hook(prompt, generated);
        }
    }

    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<GenEvent, EngineError>> {
        if self.finished {
            return None;
        }
        let event = match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Err(_) => {
                self.fail();
                let _ = self.commands.try_send(Command::Cancel { id: self.id });
                return Some(Err(EngineError::Timeout {
                    secs: self.timeout.as_secs(),
                }));
            }
            Ok(None) => {
                self.fail();
                return Some(Err(self.shared.crashed("the worker stopped answering")));
            }
            Ok(Some(Err(e))) => {
                self.fail();
                return Some(Err(e));
            }
            Ok(Some(Ok(event))) => event,
        };
        Some(match event {
            Event::Started { prompt_tokens, .. } => {
                self.started = true;
                self.prompt_tokens = prompt_tokens;
                self.shared.running.fetch_add(1, Ordering::AcqRel);
                Ok(GenEvent::Started { prompt_tokens })
            }
            Event::Token { text, logprobs, .. } => {
                self.tokens_seen += 1;
                Ok(GenEvent::Token(text, logprobs))
            }
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                self.finish();
                let outcome = match finish_reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                    FinishReason::Cancelled => "cancelled",
                };
                self.report(usage.prompt_tokens, usage.completion_tokens);
                self.shared.metrics.llm_request(
                    &self.shared.name,
                    outcome,
                    usage.prompt_tokens.into(),
                    usage.cached_tokens.into(),
                    usage.completion_tokens.into(),
                );
                Ok(GenEvent::Done {
                    finish_reason,
                    usage,
                })
            }
            Event::Failed { error, .. } => {
                self.fail();
                Err(worker_error(error))
            }
            _ => {
                self.fail();
                Err(EngineError::Protocol {
                    model: self.shared.name.clone(),
                })
            }
        })
    }

    fn fail(&mut self) {
        if !self.finished {
            self.report(self.prompt_tokens, self.tokens_seen);
            self.shared
                .metrics
                .llm_request(&self.shared.name, "error", 0, 0, 0);
        }
        self.finish();
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            if self.started {
                self.shared.running.fetch_sub(1, Ordering::AcqRel);
            }
            self.shared.routes.lock().remove(&self.id);
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away: stop generating for it. The channel has room for
            // this cancel (see `Worker::commands`).
            let _ = self.commands.try_send(Command::Cancel { id: self.id });
            self.report(self.prompt_tokens, self.tokens_seen);
            self.shared
                .metrics
                .llm_request(&self.shared.name, "cancelled", 0, 0, 0);
            self.finish();
        }
    }
}
