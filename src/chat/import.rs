//! What an imported conversation must satisfy. An import is client input like any
//! other: a far-future or malformed `updated_at` would hide the conversation from every
//! list (they sort by it), and unchecked counts would poison usage views.

use crate::store::conversations::{Conversation, Message};

/// An imported field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The field, as a path (`messages[3].created_at`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        field: field.into(),
        message: message.into(),
    }
}

/// Most messages one conversation may import.
pub const MAX_IMPORTED_MESSAGES: usize = 10_000;

fn text(field: &str, value: &str, max: usize) -> Result<(), ImportError> {
    if value.len() > max {
        return Err(bad(field, format!("longer than {max} bytes")));
    }
    if value.contains('\0') {
        return Err(bad(field, "contains a NUL character"));
    }
    Ok(())
}

fn name(field: &str, value: &str) -> Result<(), ImportError> {
    text(field, value, 256)?;
    if value.chars().any(char::is_control) {
        return Err(bad(field, "contains control characters"));
    }
    Ok(())
}

/// A timestamp from 2000 to a day from now, in RFC 3339.
fn timestamp(field: &str, value: &str) -> Result<jiff::Timestamp, ImportError> {
    let at: jiff::Timestamp = value.parse().map_err(|_| {
        bad(
            field,
            "not an RFC 3339 timestamp such as 2026-01-31T12:00:00Z",
        )
    })?;
    let earliest = jiff::Timestamp::from_second(946_684_800).expect("2000-01-01 is valid");
    let latest = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    if at < earliest || at > latest {
        return Err(bad(field, "must be between the year 2000 and now"));
    }
    Ok(at)
}

fn count(field: &str, value: Option<i64>) -> Result<(), ImportError> {
    if value.is_some_and(|v| !(0..=100_000_000).contains(&v)) {
        return Err(bad(field, "must be from 0 to 100000000"));
    }
    Ok(())
}

fn millis(field: &str, value: Option<f64>) -> Result<(), ImportError> {
    if value.is_some_and(|v| !(v.is_finite() && (0.0..=1e10).contains(&v))) {
        return Err(bad(
            field,
            "must be a number of milliseconds from 0 to 1e10",
        ));
    }
    Ok(())
}

/// Checks an exported conversation before it is stored.
pub fn check_import(c: &Conversation, messages: &[Message]) -> Result<(), ImportError> {
    let id_ok = c.id.starts_with("conv_")
        && c.id.len() <= 64
        && c.id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !id_ok {
        return Err(bad("conversation.id", "not a conversation id"));
    }
    name("conversation.title", &c.title)?;
    name("conversation.model", &c.model)?;
    text("conversation.system_prompt", &c.system_prompt, 100_000)?;
    let created = timestamp("conversation.created_at", &c.created_at)?;
    let updated = timestamp("conversation.updated_at", &c.updated_at)?;
    if updated < created {
        return Err(bad(
            "conversation.updated_at",
            "must not be before created_at",
        ));
    }
    if messages.len() > MAX_IMPORTED_MESSAGES {
        return Err(bad(
            "messages",
            format!("at most {MAX_IMPORTED_MESSAGES} messages"),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(bad(at("role"), "must be system, user or assistant"));
        }
        text(&at("content"), &m.content, 1_000_000)?;
        if let Some(model) = &m.model {
            name(&at("model"), model)?;
        }
        if m.finish_reason
            .as_deref()
            .is_some_and(|r| !matches!(r, "stop" | "length"))
        {
            return Err(bad(at("finish_reason"), "must be stop, length or null"));
        }
        count(&at("prompt_tokens"), m.prompt_tokens)?;
        count(&at("completion_tokens"), m.completion_tokens)?;
        count(&at("cached_tokens"), m.cached_tokens)?;
        millis(&at("prompt_ms"), m.prompt_ms)?;
        millis(&at("generation_ms"), m.generation_ms)?;
        timestamp(&at("created_at"), &m.created_at)?;
    }
    Ok(())
}
