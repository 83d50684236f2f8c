//! Accounts over HTTP: first-run setup, login/logout, the caller's own profile and API
//! keys, and (for admins) users and the audit log. Every change is audited; no secret
//! or prompt ever reaches the audit log.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{self, Credential, Role, Scope};
use crate::store::accounts::{AuditEntry, User};
use crate::store::conversations::now;
use crate::store::usage::LimitOverrides;

use super::auth::{Caller, SESSION_COOKIE, session_cookie};
use super::error::ApiError;
use super::extract::Json;

type Peer = ConnectInfo<std::net::SocketAddr>;

fn ip(peer: &Peer) -> String {
    peer.0.ip().to_string()
}

/// Appends to the audit log without making the caller wait for it.
pub fn audit(
    state: &AppState,
    actor: Option<&str>,
    action: &str,
    target: Option<&str>,
    ip: Option<String>,
    success: bool,
    detail: Value,
) {
    let entry = AuditEntry {
        id: 0,
        at: now(),
        actor: actor.map(str::to_string),
        action: action.to_string(),
        target: target.map(str::to_string),
        ip,
        success,
        detail,
    };
    let store = state.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.audit(entry).await {
            tracing::error!(error = %e, "could not write the audit log");
        }
    });
}

async fn hash(password: String) -> Result<String, ApiError> {
    auth::check_password(&password).map_err(|m| ApiError::bad_field("password", m))?;
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)
}

/// Body of `POST /api/v1/setup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    token: String,
    name: String,
    password: String,
}

/// `POST /api/v1/setup`: creates the first admin with the one-time token the daemon
/// printed at start. Refused once any user exists.
pub async fn setup(
    State(state): State<AppState>,
    peer: Peer,
    Json(body): Json<SetupBody>,
) -> Result<Response, ApiError> {
    let expected = state
        .setup_token
        .lock()
        .map(|t| t.clone())
        .unwrap_or_default();
    let Some(expected) = expected else {
        return Err(ApiError::Forbidden(
            "setup is already done; log in instead".into(),
        ));
    };
    if !auth::constant_time_eq(&body.token, &expected) {
        audit(
            &state,
            None,
            "setup",
            Some(&body.name),
            Some(ip(&peer)),
            false,
            json!({}),
        );
        return Err(ApiError::Forbidden("the setup token is not valid".into()));
    }
    auth::check_user_name(&body.name).map_err(|m| ApiError::bad_field("name", m))?;
    let hash = hash(body.password).await?;
    let user = state
        .store
        .create_user(body.name.clone(), hash, Role::Admin, true)
        .await?;
    if let Ok(mut token) = state.setup_token.lock() {
        *token = None;
    }
    audit(
        &state,
        Some(&user.name),
        "setup",
        Some(&user.name),
        Some(ip(&peer)),
        true,
        json!({}),
    );
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    name: String,
    password: String,
}

/// `POST /api/v1/auth/login`: checks the password and starts a cookie session. Unknown
/// users and wrong passwords get the same answer in the same time; repeated failures
/// per account and per address are throttled with growing delays.
pub async fn login(
    State(state): State<AppState>,
    peer: Peer,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let address = ip(&peer);
    let account = body.name.to_lowercase();
    if let Some(wait) = state.login_throttle.blocked(&[&account, &address]) {
        audit(
            &state,
            None,
            "login",
            Some(&body.name),
            Some(address),
            false,
            json!({"reason": "throttled"}),
        );
        return Err(ApiError::TooManyRequests {
            message: format!("too many failed logins; try again in {wait} s"),
            retry_after_secs: wait,
        });
    }
    if body.name.len() > 64 || body.password.len() > 1024 {
        return Err(ApiError::Unauthorized(
            "invalid user name or password".into(),
        ));
    }
    let found = state.store.user_by_name(body.name.clone()).await?;
    let password = body.password.clone();
    let ok_user = tokio::task::spawn_blocking(move || match found {
        Some((user, hash)) if auth::verify_password(&hash, &password) && !user.disabled => {
            Some(user)
        }
        Some(_) => None,
        None => {
            auth::verify_against_dummy(&password);
            None
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(user) = ok_user else {
        state.login_throttle.failed(&[&account, &address]);
        audit(
            &state,
            None,
            "login",
            Some(&body.name),
            Some(address),
            false,
            json!({}),
        );
        return Err(ApiError::Unauthorized(
            "invalid user name or password".into(),
        ));
    };
    state.login_throttle.succeeded(&[&account, &address]);
    let token = auth::random_hex(32);
    let csrf = auth::random_hex(32);
    let lifetime = state.config.auth.session_hours;
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(lifetime as i64);
    let expires_at = expires.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    state
        .store
        .create_session(
            auth::sha256_hex(&token),
            user.id,
            csrf.clone(),
            expires_at.clone(),
            Some(address.clone()),
        )
        .await?;
    audit(
        &state,
        Some(&user.name),
        "login",
        Some(&user.name),
        Some(address),
        true,
        json!({}),
    );
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        lifetime * 3600,
        if state.config.tls_enabled() {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response =
        axum::Json(json!({"user": user, "csrf_token": csrf, "expires_at": expires_at}))
            .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /api/v1/auth/logout`: revokes the cookie session.
pub async fn logout(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        state.store.revoke_session(auth::sha256_hex(&token)).await?;
    }
    audit(
        &state,
        Some(&caller.name),
        "logout",
        Some(&caller.name),
        None,
        true,
        json!({}),
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "appliance_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

/// `GET /api/v1/auth/me`.
pub async fn me(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<axum::Json<Value>, ApiError> {
    let user = state.store.user(caller.user_id).await?;
    let (via, scopes, csrf) = match &caller.credential {
        Credential::ApiKey { scopes, .. } => ("api_key", scopes.clone(), None),
        Credential::Session { csrf } => ("session", Scope::ALL.to_vec(), Some(csrf.clone())),
    };
    Ok(axum::Json(
        json!({"user": user, "via": via, "scopes": scopes, "csrf_token": csrf}),
    ))
}

/// Body of `POST /api/v1/auth/password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/auth/password`: changes one's own password (revokes all sessions).
pub async fn change_password(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let found = state.store.user_by_name(caller.name.clone()).await?;
    let current = body.current_password;
    let ok = tokio::task::spawn_blocking(move || {
        found.is_some_and(|(_, h)| auth::verify_password(&h, &current))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !ok {
        audit(
            &state,
            Some(&caller.name),
            "password.change",
            Some(&caller.name),
            None,
            false,
            json!({}),
        );
        return Err(ApiError::bad_field(
            "current_password",
            "the current password is wrong",
        ));
    }
    let hash = hash(body.new_password).await?;
    state
        .store
        .update_user(caller.user_id, Some(hash), None, None)
        .await?;
    audit(
        &state,
        Some(&caller.name),
        "password.change",
        Some(&caller.name),
        None,
        true,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /api/v1/keys`.
#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    /// Admins: every user's keys.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/keys`: the caller's keys (admins: `?all=true` for everyone's).
pub async fn list_keys(
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
    /// Days until it expires (none: never).
    #[serde(default)]
    expires_in_days: Option<u32>,
    /// Admins: create it for this user name.
    #[serde(default)]
    user: Option<String>,
}

/// `POST /api/v1/keys`: creates a key and shows its secret this one time.
pub async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateKeyBody>,
) -> Result<Response, ApiError> {
    if body.name.trim().is_empty() || body.name.len() > 100 {
        return Err(ApiError::bad_field("name", "`name` needs 1-100 characters"));
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
    if scopes.contains(&Scope::Admin) && owner.role != Role::Admin {
        return Err(ApiError::bad_field(
            "scopes",
            "only administrators' keys can have the `admin` scope",
        ));
    }
    let expires_at = match body.expires_in_days {
        Some(0) => return Err(ApiError::bad_field("expires_in_days", "must be at least 1")),
        Some(days) if days > 3650 => {
            return Err(ApiError::bad_field("expires_in_days", "at most 3650"));
        }
        Some(days) => Some(
            (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days as i64))
                .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        ),
        None => None,
    };
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
    audit(
        &state,
        Some(&caller.name),
        "key.create",
        Some(&id),
        None,
        true,
        json!({"owner": owner.name, "scopes": Scope::join(&scopes)}),
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"key": key, "api_key": stored})),
    )
        .into_response())
}

/// `DELETE /api/v1/keys/{id}`: revokes one of the caller's keys (admins: anyone's).
pub async fn revoke_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let owner = caller.owner_filter();
    let key = state.store.revoke_api_key(id.clone(), owner).await?;
    audit(
        &state,
        Some(&caller.name),
        "key.revoke",
        Some(&id),
        None,
        true,
        json!({"owner": key.user_name}),
    );
    Ok(axum::Json(json!(key)))
}

/// `GET /api/v1/users` (admins).
pub async fn list_users(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
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
pub async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(body): Json<CreateUserBody>,
) -> Result<Response, ApiError> {
    auth::check_user_name(&body.name).map_err(|m| ApiError::bad_field("name", m))?;
    let role = role(body.role.as_deref())?;
    let hash = hash(body.password).await?;
    let user = state
        .store
        .create_user(body.name, hash, role, false)
        .await?;
    audit(
        &state,
        Some(&caller.name),
        "user.create",
        Some(&user.name),
        None,
        true,
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
pub async fn update_user(
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
        Some(p) => Some(hash(p).await?),
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
    audit(
        &state,
        Some(&caller.name),
        "user.update",
        Some(&user.name),
        None,
        true,
        json!({"role": role.map(|r| r.as_str()), "disabled": body.disabled, "password_reset": reset, "limits": body.limits}),
    );
    Ok(axum::Json(user))
}

/// `DELETE /api/v1/users/{id}` (admins).
pub async fn delete_user(
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
    audit(
        &state,
        Some(&caller.name),
        "user.delete",
        Some(&user.name),
        None,
        true,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

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
    state.limits.flush().await?;
    let owner = if q.all && caller.is_admin() {
        None
    } else {
        caller.owner_id()
    };
    let rows = state.store.usage(owner, since).await?;
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
pub async fn audit_log(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(axum::Json(
        json!({"data": state.store.audit_log(limit, q.before).await?}),
    ))
}
