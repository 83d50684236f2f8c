//! Stored responses of the OpenAI Responses API: one row per exchange (`store: true`),
//! linked to the response it continued, so that `previous_response_id` can rebuild a
//! conversation without the client sending it again.
//!
//! A response chain belongs to exactly one owner: lookups match the owner exactly
//! (administrators included), because continuing a chain puts its words into the
//! caller's context. Ids that are not the caller's are answered as not found.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::conversations::now;
use super::{Store, StoreError};

/// Links followed back from one response at most (a longer chain could not fit any
/// context anyway).
pub const MAX_CHAIN: u32 = 10_000;

/// One exchange to keep.
#[derive(Debug, Clone)]
pub struct NewResponse {
    /// Public id (`resp_…`).
    pub id: String,
    /// Owner (`None` for the anonymous principal of a daemon without authentication).
    pub user_id: Option<i64>,
    /// The response this one continued.
    pub previous_id: Option<String>,
    /// The model that answered.
    pub model: String,
    /// The request's input items (a JSON array).
    pub input: Value,
    /// The output items (a JSON array).
    pub output: Value,
}

/// Parses a stored JSON array (an empty list when unreadable: the CHECK constraint
/// makes that impossible short of editing the file by hand).
fn items(text: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

impl Store {
    /// Keeps an exchange. The response it continues must belong to the same owner.
    pub async fn save_response(&self, new: NewResponse) -> Result<(), StoreError> {
        self.write("save_response", move |conn| {
            let tx = super::immediate(conn)?;
            if let Some(previous) = &new.previous_id {
                let owned = tx
                    .query_row(
                        "SELECT 1 FROM responses WHERE id = ?1 AND user_id IS ?2",
                        params![previous, new.user_id],
                        |_| Ok(()),
                    )
                    .optional()?;
                if owned.is_none() {
                    return Err(StoreError::NotFound("response"));
                }
            }
            let inserted = tx.execute(
                "INSERT INTO responses (id, user_id, previous_id, model, input, output, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                params![
                    new.id,
                    new.user_id,
                    new.previous_id,
                    new.model,
                    new.input.to_string(),
                    new.output.to_string(),
                    now()
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict("response"));
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The items of the conversation that ended with response `id`, oldest first:
    /// each exchange's input items followed by its output items. `NotFound` unless
    /// `owner` owns it.
    pub async fn response_items(
        &self,
        id: String,
        owner: Option<i64>,
    ) -> Result<Vec<Value>, StoreError> {
        self.read("response_items", move |conn| {
            let mut stmt = conn.prepare_cached(
                "WITH RECURSIVE chain (id, previous_id, input, output, depth) AS ( \
                   SELECT id, previous_id, input, output, 0 FROM responses \
                   WHERE id = ?1 AND user_id IS ?2 \
                   UNION ALL \
                   SELECT r.id, r.previous_id, r.input, r.output, c.depth + 1 \
                   FROM responses r JOIN chain c ON r.id = c.previous_id \
                   WHERE r.user_id IS ?2 AND c.depth < ?3 \
                 ) SELECT input, output FROM chain ORDER BY depth DESC",
            )?;
            let rows = stmt.query_map(params![id, owner, MAX_CHAIN], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut found = false;
            let mut out = Vec::new();
            for row in rows {
                let (input, output) = row?;
                found = true;
                out.extend(items(&input));
                out.extend(items(&output));
            }
            if !found {
                return Err(StoreError::NotFound("response"));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::store::StoreOptions;

    fn new(id: &str, user: Option<i64>, previous: Option<&str>, said: &str) -> NewResponse {
        NewResponse {
            id: id.into(),
            user_id: user,
            previous_id: previous.map(String::from),
            model: "m".into(),
            input: json!([{"type": "message", "role": "user", "content": said}]),
            output: json!([{"type": "message", "role": "assistant", "content": format!("re: {said}")}]),
        }
    }

    #[tokio::test]
    async fn a_chain_comes_back_in_order_and_only_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("d.db"),
            StoreOptions::new(Duration::from_secs(5), 1),
        )
        .unwrap();
        let alice = store
            .create_user("alice".into(), "x".into(), crate::auth::Role::User, false)
            .await
            .unwrap()
            .id;
        store
            .save_response(new("resp_1", Some(alice), None, "one"))
            .await
            .unwrap();
        store
            .save_response(new("resp_2", Some(alice), Some("resp_1"), "two"))
            .await
            .unwrap();
        let items = store
            .response_items("resp_2".into(), Some(alice))
            .await
            .unwrap();
        let said: Vec<&str> = items
            .iter()
            .map(|i| i["content"].as_str().unwrap())
            .collect();
        assert_eq!(said, ["one", "re: one", "two", "re: two"]);

        // Someone else (an administrator too, or the anonymous principal) sees nothing.
        for owner in [Some(alice + 1), None] {
            assert!(matches!(
                store.response_items("resp_2".into(), owner).await,
                Err(StoreError::NotFound(_))
            ));
            assert!(matches!(
                store
                    .save_response(new("resp_3", owner, Some("resp_1"), "x"))
                    .await,
                Err(StoreError::NotFound(_))
            ));
        }
        assert!(matches!(
            store
                .save_response(new("resp_1", Some(alice), None, "again"))
                .await,
            Err(StoreError::Conflict(_))
        ));
    }
}
