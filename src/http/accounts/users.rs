//! Users, for administrators: list, create, update (role, disabled, password reset,
//! limit overrides), delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{self, Role};
use crate::store::accounts::User;
use crate::store::usage::LimitOverrides;

use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::extract::{Json, Path};
use super::{audit_by, hash};

/// `GET /api/v1/users` (admins).
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(json!({"data": state.store.list_users().await?})))
}

/// Body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    name: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

fn role(text: Option<&str>) -> Result<Role, ApiError> {
    text.unwrap_or("user")
        .parse()
        .map_err(|m: String| ApiError::bad_field("role", m))
}

/// `POST /api/v1/users` (admins).
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateUserBody>,
) -> Result<Response, ApiError> {
    auth::check_user_name(&body.name).map_err(|m| ApiError::bad_field("name", m))?;
    let role = role(body.role.as_deref())?;
    let hash = hash(&state, body.password).await?;
    let user = state
        .store
        .create_user(body.name, hash, role, false)
        .await?;
    audit_by(
        &state,
        &caller,
        "user.create",
        Some(&user.name),
        json!({"role": role.as_str()}),
    );
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

/// Body of `PATCH /api/v1/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    /// A new password (an admin reset).
    #[serde(default)]
    password: Option<String>,
    /// Per-user limit overrides (`null` fields fall back to the global limits).
    #[serde(default)]
    limits: Option<LimitOverrides>,
}

/// `PATCH /api/v1/users/{id}` (admins): role, disable/enable, password reset.
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Json(body): Json<UpdateUserBody>,
) -> Result<axum::Json<User>, ApiError> {
    let role = body.role.as_deref().map(|r| role(Some(r))).transpose()?;
    if id == caller.user_id
        && (body.disabled == Some(true) || role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::bad_field(
            "role",
            "administrators cannot disable or demote themselves",
        ));
    }
    let hash = match body.password {
        Some(_) if state.store.user(id).await?.is_local_admin() => {
            return Err(ApiError::bad_field(
                "password",
                "the built-in local-admin account has no password: only root and the daemon's user reach it, on the Unix socket",
            ));
        }
        Some(p) => Some(hash(&state, p).await?),
        None => None,
    };
    let reset = hash.is_some();
    let user = state
        .store
        .update_user(id, hash, role, body.disabled)
        .await?;
    if let Some(limits) = body.limits {
        state.store.set_user_limits(id, limits).await?;
        state.limits.invalidate(id);
    }
    audit_by(
        &state,
        &caller,
        "user.update",
        Some(&user.name),
        json!({"role": role.map(|r| r.as_str()), "disabled": body.disabled, "password_reset": reset, "limits": body.limits}),
    );
    Ok(axum::Json(user))
}

/// `DELETE /api/v1/users/{id}` (admins).
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if id == caller.user_id {
        return Err(ApiError::bad_field(
            "id",
            "administrators cannot delete themselves",
        ));
    }
    let user = state.store.user(id).await?;
    state.store.delete_user(id).await?;
    audit_by(&state, &caller, "user.delete", Some(&user.name), json!({}));
    Ok(StatusCode::NO_CONTENT)
}
