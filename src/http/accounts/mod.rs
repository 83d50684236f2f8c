//! Accounts over HTTP, one file per resource: sessions (setup, login, logout, the
//! caller's profile and password), API keys, users (administrators), and the audit log
//! and usage. Every change is audited; no secret or prompt ever reaches the audit log.

pub mod audit;
pub mod keys;
pub mod session;
pub mod users;

use serde_json::Value;

use crate::app::AppState;
use crate::auth::{self, Credential, Principal};
use crate::store::accounts::AuditEntry;
use crate::store::conversations::now;

use super::auth::ClientAddress;
use super::error::ApiError;

type Peer = ClientAddress;

fn ip(peer: &Peer) -> String {
    peer.0.clone()
}

/// [`audit`] of an action by an authenticated caller: they are the actor, and an
/// action through peer authentication on the Unix socket says so (`via: peer` and the
/// Unix uid in the detail), since no credential of theirs was shown.
pub fn audit_by(
    state: &AppState,
    caller: &Principal,
    action: &str,
    target: Option<&str>,
    mut detail: Value,
) {
    if let (Credential::Peer { uid }, Some(fields)) = (&caller.credential, detail.as_object_mut()) {
        fields.insert("via".into(), Value::from("peer"));
        fields.insert("uid".into(), Value::from(*uid));
    }
    audit(
        state,
        Some(&caller.name),
        action,
        target,
        None,
        true,
        detail,
    );
}

/// Appends to the audit log without making the caller wait for it (the write is tracked,
/// so shutdown waits for it).
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
    state.tasks.spawn(async move {
        if let Err(e) = store.audit(entry).await {
            tracing::error!(error = %e, "could not write the audit log");
        }
    });
}

/// Checks a new password's strength and hashes it on the bounded hashing pool.
async fn hash(state: &AppState, password: String) -> Result<String, ApiError> {
    auth::check_password(&password).map_err(|m| ApiError::bad_field("password", m))?;
    state
        .hasher
        .run(move || auth::hash_password(&password))
        .await
        .map_err(busy)?
        .map_err(ApiError::Internal)
}

fn busy(e: auth::hasher::HasherBusy) -> ApiError {
    ApiError::Unavailable {
        message: e.to_string(),
        retry_after_secs: 1,
    }
}
