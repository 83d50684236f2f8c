//! API keys: list, create (the secret is shown once), revoke.
//!
//! The rule: a credential never creates or widens a credential beyond itself. A
//! browser session may give a new key any scope its user's role allows; an API key
//! (only administrators' keys with the `admin` scope reach these routes at all) may
//! give a new key only scopes it has itself, and no longer a life than its own.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{self, Credential, Role, Scope};

use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::extract::{Json, Path, Query};
use super::audit_by;

/// Query of `GET /api/v1/keys`.
#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    /// Admins: every user's keys.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/keys`: the caller's keys (admins: `?all=true` for everyone's).
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<KeysQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let owner = if q.all && caller.is_admin() {
        None
    } else {
        Some(caller.user_id)
    };
    Ok(axum::Json(
        json!({"data": state.store.list_api_keys(owner).await?}),
    ))
}

/// Body of `POST /api/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    name: String,
    /// Scope names, or `["all"]`.
    scopes: Vec<String>,
    /// Days until it expires (none: never, or as long as the creating key lives).
    #[serde(default)]
    expires_in_days: Option<u32>,
    /// Admins: create it for this user name.
    #[serde(default)]
    user: Option<String>,
}

fn timestamp(days: u32) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `POST /api/v1/keys`: creates a key and shows its secret this one time.
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateKeyBody>,
) -> Result<Response, ApiError> {
    if body.name.trim().is_empty()
        || body.name.len() > 100
        || body.name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_field(
            "name",
            "`name` needs 1-100 characters and no control characters",
        ));
    }
    if body.scopes.len() > 16 {
        return Err(ApiError::bad_field("scopes", "at most 16 scopes"));
    }
    let scopes =
        Scope::parse_list(&body.scopes.join(",")).map_err(|m| ApiError::bad_field("scopes", m))?;
    let owner = match &body.user {
        Some(name) if !name.eq_ignore_ascii_case(&caller.name) => {
            if !caller.is_admin() {
                return Err(ApiError::Forbidden(
                    "only administrators create keys for other users".into(),
                ));
            }
            state
                .store
                .user_by_name(name.clone())
                .await?
                .map(|(u, _)| u)
                .ok_or_else(|| ApiError::bad_field("user", format!("no user named `{name}`")))?
        }
        _ => state.store.user(caller.user_id).await?,
    };
    if owner.is_local_admin() {
        return Err(ApiError::bad_field(
            "user",
            "the built-in local-admin account cannot own API keys (it is reached only on the Unix socket); create the key for a named user with `user`",
        ));
    }
    if scopes.contains(&Scope::Admin) && owner.role != Role::Admin {
        return Err(ApiError::bad_field(
            "scopes",
            "only administrators' keys can have the `admin` scope",
        ));
    }
    let mut expires_at = match body.expires_in_days {
        Some(0) => return Err(ApiError::bad_field("expires_in_days", "must be at least 1")),
        Some(days) if days > 3650 => {
            return Err(ApiError::bad_field("expires_in_days", "at most 3650"));
        }
        Some(days) => Some(timestamp(days)),
        None => None,
    };
    // A key never mints a wider or longer-lived key than itself.
    if let Credential::ApiKey {
        scopes: own,
        expires_at: own_expiry,
        ..
    } = &caller.credential
    {
        if let Some(extra) = scopes.iter().find(|s| !own.contains(s)) {
            return Err(ApiError::Forbidden(format!(
                "this API key cannot create a key with the `{extra}` scope, which it does not have itself"
            )));
        }
        if let Some(limit) = own_expiry {
            match &expires_at {
                Some(wanted) if wanted > limit => {
                    return Err(ApiError::bad_field(
                        "expires_in_days",
                        format!(
                            "a key created with an API key cannot outlive it (it expires at {limit})"
                        ),
                    ));
                }
                Some(_) => {}
                None => expires_at = Some(limit.clone()),
            }
        }
    }
    let (id, key, secret_hash) = auth::new_api_key();
    let stored = state
        .store
        .create_api_key(
            id.clone(),
            owner.id,
            body.name.clone(),
            secret_hash,
            scopes.clone(),
            expires_at,
        )
        .await?;
    audit_by(
        &state,
        &caller,
        "key.create",
        Some(&id),
        json!({"owner": owner.name, "scopes": Scope::join(&scopes)}),
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"key": key, "api_key": stored})),
    )
        .into_response())
}

/// `DELETE /api/v1/keys/{id}`: revokes one of the caller's keys (admins: anyone's).
pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let key = state
        .store
        .revoke_api_key(id.clone(), caller.owner_filter())
        .await?;
    audit_by(
        &state,
        &caller,
        "key.revoke",
        Some(&id),
        json!({"owner": key.user_name}),
    );
    Ok(axum::Json(json!(key)))
}
