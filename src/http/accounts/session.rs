//! First-run setup, login and logout, the caller's profile, and password changes.
//!
//! Password checks are throttled per account and per address, counted before the hash
//! runs, and hashed a bounded number at a time (see [`crate::auth::throttle`] and
//! [`crate::auth::hasher`]).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::throttle::{Attempt, ThrottleKey};
use crate::auth::{self, Credential, Role, Scope};

use super::super::auth::{Caller, SESSION_COOKIE, session_cookie};
use super::super::error::ApiError;
use super::super::extract::Json;
use super::{Peer, audit, audit_by, busy, hash, ip};

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
    let expected = state.setup_token.lock().clone();
    let Some(expected) = expected else {
        return Err(ApiError::Forbidden(
            "setup is already done; log in instead".into(),
        ));
    };
    if !auth::constant_time_eq(&body.token, &expected) {
        // The name is only recorded when it is a valid one: the audit log must not
        // store whatever a stranger sends.
        let name = auth::check_user_name(&body.name)
            .is_ok()
            .then_some(body.name.as_str());
        audit(
            &state,
            None,
            "setup",
            name,
            Some(ip(&peer)),
            false,
            json!({}),
        );
        return Err(ApiError::Forbidden("the setup token is not valid".into()));
    }
    auth::check_user_name(&body.name).map_err(|m| ApiError::bad_field("name", m))?;
    let hash = hash(&state, body.password).await?;
    let user = state
        .store
        .create_user(body.name.clone(), hash, Role::Admin, true)
        .await?;
    *state.setup_token.lock() = None;
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

/// Begins a throttled password attempt for `name` from `address`, or answers 429.
fn begin_attempt(state: &AppState, name: &str, address: &str) -> Result<Attempt, ApiError> {
    let keys = vec![
        ThrottleKey::Account(name.to_lowercase()),
        ThrottleKey::Address(address.to_string()),
    ];
    state.login_throttle.begin(keys).map_err(|wait| {
        if let Some(summary) = state.login_throttle.note_throttled(address) {
            state.notifier.notify(
                "login_throttled",
                address,
                crate::notify::Severity::Warning,
                "Login throttling",
                format!(
                    "{} failed password attempts from {address}; logins from there are being slowed down",
                    summary.attempts
                ),
            );
            audit(
                state,
                None,
                "login.throttled",
                None,
                Some(address.to_string()),
                false,
                json!({"attempts": summary.attempts}),
            );
        }
        ApiError::TooManyRequests {
            message: format!("too many failed password attempts; try again in {wait} s"),
            retry_after_secs: wait,
        }
    })
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
    let invalid = || ApiError::Unauthorized("invalid user name or password".into());
    if body.name.len() > 64 || body.password.len() > 1024 {
        return Err(invalid());
    }
    let attempt = begin_attempt(&state, &body.name, &address)?;
    let found = state.store.user_by_name(body.name.clone()).await?;
    let password = body.password;
    let ok_user = state
        .hasher
        .run(move || match found {
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
        .map_err(busy)?;
    let Some(user) = ok_user else {
        let name = auth::check_user_name(&body.name)
            .is_ok()
            .then_some(body.name.as_str());
        audit(&state, None, "login", name, Some(address), false, json!({}));
        return Err(invalid());
    };
    state.login_throttle.succeeded(attempt);
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
    audit_by(&state, &caller, "logout", Some(&caller.name), json!({}));
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
    let via = caller.credential.kind();
    let (scopes, csrf) = match &caller.credential {
        Credential::ApiKey { scopes, .. } => (scopes.clone(), None),
        Credential::Session { csrf } => (Scope::ALL.to_vec(), Some(csrf.clone())),
        Credential::Peer { .. } => (Scope::ALL.to_vec(), None),
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
/// Needs a signed-in session, and is throttled like a login: the current password is
/// what is being guessed.
pub async fn change_password(
    State(state): State<AppState>,
    Caller(caller): Caller,
    peer: Peer,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let address = ip(&peer);
    if body.current_password.len() > 1024 {
        return Err(ApiError::bad_field(
            "current_password",
            "the current password is wrong",
        ));
    }
    let attempt = begin_attempt(&state, &caller.name, &address)?;
    let found = state.store.user_by_name(caller.name.clone()).await?;
    let current = body.current_password;
    let ok = state
        .hasher
        .run(move || found.is_some_and(|(_, h)| auth::verify_password(&h, &current)))
        .await
        .map_err(busy)?;
    if !ok {
        audit(
            &state,
            Some(&caller.name),
            "password.change",
            Some(&caller.name),
            Some(address),
            false,
            json!({}),
        );
        return Err(ApiError::bad_field(
            "current_password",
            "the current password is wrong",
        ));
    }
    state.login_throttle.succeeded(attempt);
    let hash = hash(&state, body.new_password).await?;
    state
        .store
        .update_user(caller.user_id, Some(hash), None, None)
        .await?;
    audit(
        &state,
        Some(&caller.name),
        "password.change",
        Some(&caller.name),
        Some(address),
        true,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}
