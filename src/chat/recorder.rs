//! Recording an exchange (a user turn and its reply) exactly once.

use tokio_util::task::TaskTracker;

use crate::engine::{FinishReason, Usage};
use crate::store::conversations::{self as conv, Message, MessageStatus, Owner};
use crate::store::{Store, StoreError};

/// Owns the pending user turn and the reply so far, and stores them exactly once:
/// through [`Recorder::save`] when the caller wants the stored rows back, otherwise when
/// dropped — as `cut_off` (the client left mid-reply). The write after a drop runs on
/// the daemon's task tracker, which shutdown waits for, so a cut-off reply is not lost
/// when the daemon stops.
pub struct Recorder {
    store: Store,
    tasks: TaskTracker,
    conversation: String,
    owner: Owner,
    model: String,
    user: Option<Message>,
    text: String,
    sources: Option<serde_json::Value>,
}

impl Recorder {
    /// Starts recording a user turn in `conversation`.
    pub fn new(
        store: Store,
        tasks: TaskTracker,
        conversation: String,
        owner: Owner,
        model: String,
        user_content: String,
    ) -> Recorder {
        Recorder {
            store,
            tasks,
            conversation,
            owner,
            model,
            user: Some(Message {
                id: 0,
                role: "user".into(),
                content: user_content,
                model: None,
                status: MessageStatus::Complete,
                finish_reason: None,
                prompt_tokens: None,
                completion_tokens: None,
                cached_tokens: None,
                prompt_ms: None,
                generation_ms: None,
                created_at: conv::now(),
                sources: None,
            }),
            text: String::new(),
            sources: None,
        }
    }

    /// Records the numbered passages the reply was given.
    pub fn with_sources(mut self, sources: serde_json::Value) -> Recorder {
        self.sources = Some(sources);
        self
    }

    /// Adds generated text to the reply.
    pub fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn messages(
        &mut self,
        status: MessageStatus,
        reason: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Option<Vec<Message>> {
        let user = self.user.take()?;
        let reply = Message {
            id: 0,
            role: "assistant".into(),
            content: std::mem::take(&mut self.text),
            model: Some(self.model.clone()),
            status,
            finish_reason: reason.map(|r| match r {
                FinishReason::Length => "length".to_string(),
                FinishReason::Stop | FinishReason::Cancelled => "stop".to_string(),
            }),
            prompt_tokens: usage.map(|u| u.prompt_tokens.into()),
            completion_tokens: usage.map(|u| u.completion_tokens.into()),
            cached_tokens: usage.map(|u| u.cached_tokens.into()),
            prompt_ms: usage.map(|u| u.prompt_ms),
            generation_ms: usage.map(|u| u.generation_ms),
            created_at: conv::now(),
            sources: self.sources.take(),
        };
        Some(vec![user, reply])
    }

    /// Stores the exchange now with this outcome and returns the stored (user, reply).
    pub async fn save(
        mut self,
        status: MessageStatus,
        reason: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Result<(Message, Message), StoreError> {
        let messages = self
            .messages(status, reason, usage)
            .expect("a recorder is saved at most once: save takes it by value");
        let mut stored = self
            .store
            .append_messages(self.conversation.clone(), messages, self.owner)
            .await?;
        let reply = stored.pop().ok_or(StoreError::NotFound("reply"))?;
        let user = stored.pop().ok_or(StoreError::NotFound("user message"))?;
        Ok((user, reply))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(messages) = self.messages(MessageStatus::CutOff, None, None) {
            let (store, id, owner) = (self.store.clone(), self.conversation.clone(), self.owner);
            self.tasks.spawn(async move {
                if let Err(e) = store.append_messages(id, messages, owner).await {
                    tracing::error!(error = %e, "could not store a cut-off reply");
                }
            });
        }
    }
}
