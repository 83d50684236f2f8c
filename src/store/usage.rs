//! Usage per user and day, and per-user limit overrides.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Per-user overrides of `[limits]`; `None` keeps the global value, 0 is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Generated tokens per UTC day.
    #[serde(default)]
    pub daily_generated_tokens: Option<u64>,
    /// Audio minutes per UTC day.
    #[serde(default)]
    pub daily_audio_minutes: Option<u64>,
    /// Images per UTC day.
    #[serde(default)]
    pub daily_images: Option<u64>,
}

/// One user's usage on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow {
    /// User id.
    pub user_id: i64,
    /// User name.
    pub user_name: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// API requests.
    pub requests: i64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: i64,
    /// Tokens generated.
    pub generated_tokens: i64,
    /// Audio transcribed, seconds.
    pub audio_seconds: f64,
    /// Images generated.
    pub images: i64,
}

/// An increment to add to a user's day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageDelta {
    /// Requests.
    pub requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Generated tokens.
    pub generated_tokens: i64,
    /// Seconds of audio transcribed.
    pub audio_seconds: f64,
}

impl Store {
    /// A user's overrides (all `None` when there are none).
    pub async fn user_limits(&self, user_id: i64) -> Result<LimitOverrides, StoreError> {
        self.read("user_limits", move |conn| {
            Ok(conn
                .query_row(
                    "SELECT requests_per_minute, daily_generated_tokens, daily_audio_minutes, daily_images \
                     FROM user_limits WHERE user_id = ?1",
                    [user_id],
                    |r| {
                        Ok(LimitOverrides {
                            requests_per_minute: r.get(0)?,
                            daily_generated_tokens: r.get::<_, Option<i64>>(1)?.map(|v| v.max(0) as u64),
                            daily_audio_minutes: r.get::<_, Option<i64>>(2)?.map(|v| v.max(0) as u64),
                            daily_images: r.get::<_, Option<i64>>(3)?.map(|v| v.max(0) as u64),
                        })
                    },
                )
                .optional()?
                .unwrap_or_default())
        })
        .await
    }

    /// Replaces a user's overrides.
    pub async fn set_user_limits(&self, user_id: i64, o: LimitOverrides) -> Result<(), StoreError> {
        self.write("set_user_limits", move |conn| {
            conn.execute(
                "INSERT INTO user_limits (user_id, requests_per_minute, daily_generated_tokens, \
                 daily_audio_minutes, daily_images) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (user_id) DO UPDATE SET requests_per_minute = ?2, \
                 daily_generated_tokens = ?3, daily_audio_minutes = ?4, daily_images = ?5",
                params![
                    user_id,
                    o.requests_per_minute,
                    o.daily_generated_tokens
                        .map(|v| v.min(i64::MAX as u64) as i64),
                    o.daily_audio_minutes.map(|v| v.min(i64::MAX as u64) as i64),
                    o.daily_images.map(|v| v.min(i64::MAX as u64) as i64)
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound("user")
                }
                other => other.into(),
            })?;
            Ok(())
        })
        .await
    }

    /// Adds batched increments, one transaction.
    pub async fn add_usage(
        &self,
        deltas: Vec<(i64, String, UsageDelta)>,
    ) -> Result<(), StoreError> {
        self.write("add_usage", move |conn| {
            let tx = super::immediate(conn)?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO usage_daily (user_id, day, requests, prompt_tokens, generated_tokens, audio_seconds) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1) \
                     ON CONFLICT (user_id, day) DO UPDATE SET requests = requests + ?3, \
                     prompt_tokens = prompt_tokens + ?4, generated_tokens = generated_tokens + ?5, \
                     audio_seconds = audio_seconds + ?6",
                )?;
                for (user, day, d) in &deltas {
                    stmt.execute(params![user, day, d.requests, d.prompt_tokens, d.generated_tokens, d.audio_seconds])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Usage rows from `since_day` on, newest first; `user` limits to one user.
    pub async fn usage(
        &self,
        user: Option<i64>,
        since_day: String,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.read("usage", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT d.user_id, u.name, d.day, d.requests, d.prompt_tokens, d.generated_tokens, \
                 d.audio_seconds, d.images FROM usage_daily d JOIN users u ON u.id = d.user_id \
                 WHERE (?1 IS NULL OR d.user_id = ?1) AND d.day >= ?2 ORDER BY d.day DESC, u.name",
            )?;
            let rows = stmt.query_map(params![user, since_day], |r| {
                Ok(UsageRow {
                    user_id: r.get(0)?,
                    user_name: r.get(1)?,
                    day: r.get(2)?,
                    requests: r.get(3)?,
                    prompt_tokens: r.get(4)?,
                    generated_tokens: r.get(5)?,
                    audio_seconds: r.get(6)?,
                    images: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
