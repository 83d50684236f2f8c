//! The audit log (administrators) and usage per day.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;

use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::extract::Query;

/// Query of `GET /api/v1/usage`.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// How many days back (default 30).
    #[serde(default)]
    days: Option<u32>,
    /// Admins: everyone's usage.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/usage`: the caller's usage per day and effective limits (admins:
/// `?all=true` for every user).
pub async fn usage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<UsageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    let since = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * (days as i64 - 1)))
        .strftime("%Y-%m-%d")
        .to_string();
    let owner = if q.all && caller.is_admin() {
        None
    } else {
        caller.owner_id()
    };
    // Counted but unwritten usage is merged in memory: reading never writes.
    let rows = state.limits.usage(owner, since).await?;
    let limits = match caller.owner_id() {
        Some(id) => Some(state.limits.effective(id).await?),
        None => None,
    };
    Ok(axum::Json(json!({"data": rows, "limits": limits})))
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    before: Option<i64>,
}

/// `GET /api/v1/audit` (admins): newest first.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(axum::Json(
        json!({"data": state.store.audit_log(limit, q.before).await?}),
    ))
}
