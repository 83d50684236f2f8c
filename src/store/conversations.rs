//! Conversations and messages: creation, listing (newest first, keyset-paginated so it
//! stays fast with many thousands), full-text search, and atomic appends.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Store, StoreError};

/// A conversation's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Public id (`conv_…`).
    pub id: String,
    /// Title shown in lists.
    pub title: String,
    /// Model used for new replies.
    pub model: String,
    /// System prompt prepended to every exchange (may be empty).
    pub system_prompt: String,
    /// Sampling settings (a JSON object).
    pub settings: Value,
    /// RFC 3339, millisecond precision.
    pub created_at: String,
    /// Last change (new message, rename).
    pub updated_at: String,
    /// Collections replies answer from (retrieval), by id.
    #[serde(default)]
    pub collections: Vec<i64>,
}

/// How a stored message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// A whole message.
    Complete,
    /// The reply stopped because the client went away.
    CutOff,
    /// The reply stopped because the engine failed.
    Error,
}

impl MessageStatus {
    fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Complete => "complete",
            MessageStatus::CutOff => "cut_off",
            MessageStatus::Error => "error",
        }
    }

    fn parse(s: &str) -> MessageStatus {
        match s {
            "cut_off" => MessageStatus::CutOff,
            "error" => MessageStatus::Error,
            _ => MessageStatus::Complete,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Row id (increasing within a conversation).
    #[serde(default)]
    pub id: i64,
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Model that wrote it (assistant messages).
    #[serde(default)]
    pub model: Option<String>,
    /// How it ended.
    pub status: MessageStatus,
    /// `stop` or `length` for assistant messages.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Prompt tokens of the request that produced it.
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: Option<i64>,
    /// Prompt tokens reused from the cache.
    #[serde(default)]
    pub cached_tokens: Option<i64>,
    /// Prompt evaluation time, ms.
    #[serde(default)]
    pub prompt_ms: Option<f64>,
    /// Generation time, ms.
    #[serde(default)]
    pub generation_ms: Option<f64>,
    /// RFC 3339.
    pub created_at: String,
    /// The numbered passages an assistant reply was given (retrieval), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Value>,
}

/// A search result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    /// The conversation.
    pub conversation: Conversation,
    /// The matching message, when the match is in a message (not the title).
    pub message_id: Option<i64>,
    /// Matching text with the terms marked `[…]`.
    pub snippet: String,
}

/// What may change on a conversation.
#[derive(Debug, Clone, Default)]
pub struct ConversationPatch {
    /// New title.
    pub title: Option<String>,
    /// New model.
    pub model: Option<String>,
    /// New system prompt.
    pub system_prompt: Option<String>,
    /// New settings.
    pub settings: Option<Value>,
    /// New collections.
    pub collections: Option<Vec<i64>>,
}

/// The current time in the store's fixed-width format (sorts as text).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The time `after` from now, in the store's format.
pub fn timestamp_after(after: std::time::Duration) -> String {
    let after = jiff::SignedDuration::try_from(after).unwrap_or(jiff::SignedDuration::MAX);
    jiff::Timestamp::now()
        .checked_add(after)
        .unwrap_or(jiff::Timestamp::MAX)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A new conversation id.
pub fn new_id() -> String {
    format!("conv_{}", uuid::Uuid::new_v4().simple())
}

const CONVERSATION_COLUMNS: &str =
    "id, title, model, system_prompt, settings, created_at, updated_at, collections";
const MESSAGE_COLUMNS: &str = "id, role, content, model, status, finish_reason, prompt_tokens, \
     completion_tokens, cached_tokens, prompt_ms, generation_ms, created_at, sources";

fn conversation_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    let settings: String = row.get(4)?;
    Ok(Conversation {
        id: row.get(0)?,
        title: row.get(1)?,
        model: row.get(2)?,
        system_prompt: row.get(3)?,
        settings: serde_json::from_str(&settings).unwrap_or(Value::Object(Default::default())),
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
        collections: serde_json::from_str(&row.get::<_, String>(7)?).unwrap_or_default(),
    })
}

fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let status: String = row.get(4)?;
    Ok(Message {
        id: row.get(0)?,
        role: row.get(1)?,
        content: row.get(2)?,
        model: row.get(3)?,
        status: MessageStatus::parse(&status),
        finish_reason: row.get(5)?,
        prompt_tokens: row.get(6)?,
        completion_tokens: row.get(7)?,
        cached_tokens: row.get(8)?,
        prompt_ms: row.get(9)?,
        generation_ms: row.get(10)?,
        created_at: row.get(11)?,
        sources: row
            .get::<_, Option<String>>(12)?
            .and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// Owner filter: `Some(user)` limits to that user's conversations, `None` (admins)
/// sees all.
pub type Owner = Option<i64>;

fn get(conn: &Connection, id: &str, owner: Owner) -> Result<Option<Conversation>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations \
                 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
            ),
            params![id, owner],
            conversation_row,
        )
        .optional()?)
}

fn insert_messages(
    conn: &Connection,
    conversation: &str,
    messages: &[Message],
) -> Result<Vec<Message>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO messages (conversation_id, role, content, model, status, finish_reason, \
         prompt_tokens, completion_tokens, cached_tokens, prompt_ms, generation_ms, created_at, sources) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING {MESSAGE_COLUMNS}"
    ))?;
    let mut stored = Vec::with_capacity(messages.len());
    for m in messages {
        stored.push(stmt.query_row(
            params![
                conversation,
                m.role,
                m.content,
                m.model,
                m.status.as_str(),
                m.finish_reason,
                m.prompt_tokens,
                m.completion_tokens,
                m.cached_tokens,
                m.prompt_ms,
                m.generation_ms,
                m.created_at,
                m.sources.as_ref().map(Value::to_string)
            ],
            message_row,
        )?);
    }
    Ok(stored)
}

/// Turns free text into a safe FTS5 query: every word quoted (so no operator syntax
/// can be injected), all required, the last one as a prefix.
fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{w}\""))
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(format!("{}*", words.join(" ")))
}

const INSERT_CONVERSATION: &str = "INSERT INTO conversations \
     (id, title, model, system_prompt, settings, created_at, updated_at, user_id, collections) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

fn insert_conversation(
    conn: &Connection,
    c: &Conversation,
    user_id: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        INSERT_CONVERSATION,
        params![
            c.id,
            c.title,
            c.model,
            c.system_prompt,
            c.settings.to_string(),
            c.created_at,
            c.updated_at,
            user_id,
            serde_json::to_string(&c.collections).unwrap_or_else(|_| "[]".into())
        ],
    )?;
    Ok(())
}

impl Store {
    /// Creates a conversation owned by `user_id`.
    pub async fn create_conversation(
        &self,
        conversation: Conversation,
        user_id: Option<i64>,
    ) -> Result<Conversation, StoreError> {
        self.write("create_conversation", move |conn| {
            insert_conversation(conn, &conversation, user_id)?;
            get(conn, &conversation.id, None)?.ok_or(StoreError::NotFound("conversation"))
        })
        .await
    }

    /// One conversation (`NotFound` also when `owner` does not own it: ids are not
    /// confirmed to people who may not see them).
    pub async fn conversation(&self, id: String, owner: Owner) -> Result<Conversation, StoreError> {
        self.read("get_conversation", move |conn| {
            get(conn, &id, owner)?.ok_or(StoreError::NotFound("conversation"))
        })
        .await
    }

    /// A conversation's messages, oldest first.
    pub async fn messages(&self, id: String, owner: Owner) -> Result<Vec<Message>, StoreError> {
        self.read("list_messages", move |conn| {
            if get(conn, &id, owner)?.is_none() {
                return Err(StoreError::NotFound("conversation"));
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([id], message_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Conversations newest first; `after` is the (updated_at, id) of the last item of
    /// the previous page.
    pub async fn list_conversations(
        &self,
        limit: u32,
        after: Option<(String, String)>,
        owner: Owner,
    ) -> Result<Vec<Conversation>, StoreError> {
        self.read("list_conversations", move |conn| {
            let (at, id) = after.unwrap_or_else(|| ("\u{10FFFF}".to_string(), String::new()));
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations \
                 WHERE (updated_at, id) < (?1, ?2) AND (?4 IS NULL OR user_id = ?4) \
                 ORDER BY updated_at DESC, id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![at, id, limit, owner], conversation_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Changes title, model, system prompt or settings.
    pub async fn update_conversation(
        &self,
        id: String,
        patch: ConversationPatch,
        owner: Owner,
    ) -> Result<Conversation, StoreError> {
        self.write("update_conversation", move |conn| {
            let tx = super::immediate(conn)?;
            let mut current = get(&tx, &id, owner)?.ok_or(StoreError::NotFound("conversation"))?;
            if let Some(t) = patch.title {
                current.title = t;
            }
            if let Some(m) = patch.model {
                current.model = m;
            }
            if let Some(s) = patch.system_prompt {
                current.system_prompt = s;
            }
            if let Some(s) = patch.settings {
                current.settings = s;
            }
            if let Some(c) = patch.collections {
                current.collections = c;
            }
            tx.execute(
                "UPDATE conversations SET title = ?2, model = ?3, system_prompt = ?4, settings = ?5, \
                 updated_at = ?6, collections = ?7 WHERE id = ?1",
                params![
                    id,
                    current.title,
                    current.model,
                    current.system_prompt,
                    current.settings.to_string(),
                    now(),
                    serde_json::to_string(&current.collections).unwrap_or_else(|_| "[]".into())
                ],
            )?;
            let updated = get(&tx, &id, None)?.ok_or(StoreError::NotFound("conversation"))?;
            tx.commit()?;
            Ok(updated)
        })
        .await
    }

    /// Deletes a conversation and its messages.
    pub async fn delete_conversation(&self, id: String, owner: Owner) -> Result<(), StoreError> {
        self.write("delete_conversation", move |conn| {
            match conn.execute(
                "DELETE FROM conversations WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                params![id, owner],
            )? {
                0 => Err(StoreError::NotFound("conversation")),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Appends messages in one transaction (a user turn and its reply are stored
    /// together or not at all) and bumps `updated_at`.
    pub async fn append_messages(
        &self,
        id: String,
        messages: Vec<Message>,
        owner: Owner,
    ) -> Result<Vec<Message>, StoreError> {
        self.write("append_messages", move |conn| {
            let tx = super::immediate(conn)?;
            let updated = tx.execute(
                "UPDATE conversations SET updated_at = ?2 WHERE id = ?1 AND (?3 IS NULL OR user_id = ?3)",
                params![id, now(), owner],
            )?;
            if updated == 0 {
                return Err(StoreError::NotFound("conversation"));
            }
            let stored = insert_messages(&tx, &id, &messages)?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    /// Deletes message `from` and every later message of the conversation (for
    /// regenerate and edit-and-resend); returns how many were removed.
    pub async fn truncate_messages(
        &self,
        id: String,
        from: i64,
        owner: Owner,
    ) -> Result<usize, StoreError> {
        self.write("truncate_messages", move |conn| {
            let tx = super::immediate(conn)?;
            if get(&tx, &id, owner)?.is_none() {
                return Err(StoreError::NotFound("conversation"));
            }
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND conversation_id = ?2)",
                params![from, id],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NotFound("message"));
            }
            let removed = tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND id >= ?2",
                params![id, from],
            )?;
            tx.execute(
                "UPDATE conversations SET updated_at = ?2 WHERE id = ?1",
                params![id, now()],
            )?;
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    /// Stores a whole conversation with its messages in one transaction (import),
    /// keeping its id when it is free.
    pub async fn import_conversation(
        &self,
        conversation: Conversation,
        messages: Vec<Message>,
        user_id: Option<i64>,
    ) -> Result<Conversation, StoreError> {
        self.write("import_conversation", move |conn| {
            let tx = super::immediate(conn)?;
            let mut conversation = conversation;
            if get(&tx, &conversation.id, None)?.is_some() {
                conversation.id = new_id();
            }
            insert_conversation(&tx, &conversation, user_id)?;
            insert_messages(&tx, &conversation.id, &messages)?;
            let stored =
                get(&tx, &conversation.id, None)?.ok_or(StoreError::NotFound("conversation"))?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    /// Full-text search over titles and message contents, newest conversations first.
    pub async fn search_conversations(
        &self,
        text: String,
        limit: u32,
        owner: Owner,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.read("search_conversations", move |conn| {
            let Some(query) = fts_query(&text) else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {cols}, hit_message, hit_snippet FROM ( \
                   SELECT {c_cols}, NULL AS hit_message, \
                          snippet(conversations_fts, 0, '[', ']', '…', 12) AS hit_snippet, 0 AS pref \
                   FROM conversations_fts JOIN conversations c ON c.seq = conversations_fts.rowid \
                   WHERE conversations_fts MATCH ?1 AND (?3 IS NULL OR c.user_id = ?3) \
                   UNION ALL \
                   SELECT {c_cols}, m.id, snippet(messages_fts, 0, '[', ']', '…', 12), 1 \
                   FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid \
                   JOIN conversations c ON c.id = m.conversation_id \
                   WHERE messages_fts MATCH ?1 AND (?3 IS NULL OR c.user_id = ?3) \
                 ) ORDER BY updated_at DESC, pref, hit_message LIMIT ?2",
                cols = CONVERSATION_COLUMNS,
                c_cols = "c.id, c.title, c.model, c.system_prompt, c.settings, c.created_at, c.updated_at, c.collections"
            ))?;
            let rows = stmt.query_map(params![query, limit, owner], |row| {
                Ok(SearchHit {
                    conversation: conversation_row(row)?,
                    message_id: row.get(8)?,
                    snippet: row.get(9)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_cannot_inject_syntax() {
        assert_eq!(
            fts_query("paris OR \"x").as_deref(),
            Some("\"paris\" \"OR\" \"x\"*")
        );
        assert_eq!(fts_query("  -*()  "), None);
        assert_eq!(fts_query("Zürich").as_deref(), Some("\"Zürich\"*"));
    }
}
