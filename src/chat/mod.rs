//! The chat domain, independent of any wire format: how a stored conversation becomes a
//! prompt, how an exchange is recorded (exactly once, whole or labelled), titles, and
//! what an imported conversation must satisfy, and grounding replies in documents
//! ([`context`]). HTTP handlers call it; it never sees
//! HTTP types.

pub mod context;
mod import;
mod recorder;
pub mod tools;

pub use import::{ImportError, check_import};
pub use recorder::Recorder;

use crate::engine::ChatMessage;
use crate::store::conversations::{Conversation, Message};

/// The title of a conversation before its first message names it.
pub const DEFAULT_TITLE: &str = "New conversation";

/// A title from the first message: whitespace collapsed, at most 60 characters, cut at
/// a word boundary with an ellipsis.
pub fn short_title(text: &str) -> String {
    let mut title = String::new();
    for word in text.split_whitespace() {
        let extra = usize::from(!title.is_empty());
        if title.chars().count() + extra + word.chars().count() > 60 {
            if title.is_empty() {
                title = word.chars().take(59).collect();
            }
            title.push('…');
            return title;
        }
        if extra == 1 {
            title.push(' ');
        }
        title.push_str(word);
    }
    title
}

/// The prompt for the next reply in `conversation`: its system prompt, its history, and
/// the new user message.
pub fn conversation_prompt(
    conversation: &Conversation,
    history: &[Message],
    user_content: &str,
) -> Vec<ChatMessage> {
    let mut prompt = Vec::with_capacity(history.len() + 2);
    if !conversation.system_prompt.is_empty() {
        prompt.push(ChatMessage::new(
            "system",
            conversation.system_prompt.clone(),
        ));
    }
    prompt.extend(
        history
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone())),
    );
    prompt.push(ChatMessage::new("user", user_content.to_string()));
    prompt
}

#[cfg(test)]
mod tests {
    use super::short_title;

    #[test]
    fn titles_are_cut_at_a_word_boundary() {
        assert_eq!(
            short_title("  What is   the capital? "),
            "What is the capital?"
        );
        let long = "Write a function that returns the sum of a list of numbers in Rust please";
        let title = short_title(long);
        assert!(
            title.ends_with('…') && title.chars().count() <= 61,
            "{title}"
        );
        assert!(long.starts_with(title.trim_end_matches('…')));
        assert!(!title.trim_end_matches('…').ends_with(' '));
        assert_eq!(short_title(&"x".repeat(100)).chars().count(), 60);
    }
}
