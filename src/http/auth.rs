//! Authentication and authorization at the HTTP boundary.
//!
//! [`authenticate`] runs on every request and turns credentials (an API key as
//! `Authorization: Bearer apl_…` or, for Anthropic's clients, `x-api-key: apl_…`; or the
//! session cookie) into a [`Principal`] request extension. A request on the Unix socket
//! with neither is authenticated by its peer's Unix user instead (`auth::peer`); explicit
//! credentials always take precedence, and TCP requests never have peer credentials.
//! Every route declares an [`Access`] in the route table (`http::routes`); [`enforce`]
//! checks it, including CSRF for state-changing cookie requests. Handlers receive the
//! principal through the
//! [`Caller`] extractor and scope their queries to it.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::peer::{self, PeerAccount};
use crate::auth::{self, Credential, Principal, Role, Scope};
use crate::limits::Client;

use super::error::ApiError;
use super::unix::PeerCredentials;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "appliance_session";
/// The header Anthropic's clients send their API key in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header carrying the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, setup, login, the web assets); limited per client address.
    Public,
    /// A signed-in browser session, whatever the role (changing one's password: an API
    /// key, possibly leaked, must not be able to take over the account).
    Session,
    /// Managing credentials: a signed-in session, or an API key with the `admin` scope.
    /// A credential never creates or widens one beyond its own scopes.
    Account,
    /// Any signed-in user or valid key, whatever its scopes.
    Authenticated,
    /// A key with this scope, or a session; read-only accounts may call it too.
    Read(Scope),
    /// A key with this scope, or a session; not read-only accounts.
    Write(Scope),
    /// Admins (keys need the admin scope too).
    Admin,
}

/// Why credentials were refused, kept for [`enforce`] to report.
#[derive(Debug, Clone)]
struct Refused(String);

/// Resolves the request's credentials into a [`Principal`] extension.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !state.config.auth.enabled {
        req.extensions_mut().insert(Principal::anonymous_admin());
        return next.run(req).await;
    }
    let peer = req.extensions().get::<PeerCredentials>().copied();
    match resolve(&state, req.headers(), peer).await {
        Ok(Some(principal)) => {
            tracing::Span::current().record("user", principal.name.as_str());
            req.extensions_mut().insert(principal);
        }
        Ok(None) => {}
        Err(Refusal::Credentials(why)) => {
            req.extensions_mut().insert(Refused(why));
        }
        Err(Refusal::Store(e)) => return ApiError::from(e).into_response(),
    }
    next.run(req).await
}

enum Refusal {
    Credentials(String),
    Store(crate::store::StoreError),
}

fn refused(why: impl Into<String>) -> Refusal {
    Refusal::Credentials(why.into())
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Refusal::Store(e)
    }
}

async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<PeerCredentials>,
) -> Result<Option<Principal>, Refusal> {
    // `Authorization: Bearer` (OpenAI, Ollama clients) or `x-api-key` (Anthropic's).
    let sent_key = match (
        headers.get(header::AUTHORIZATION),
        headers.get(API_KEY_HEADER),
    ) {
        (Some(value), _) => {
            let text = value.to_str().unwrap_or_default();
            Some(
                text.strip_prefix("Bearer ")
                    .or_else(|| text.strip_prefix("bearer "))
                    .map(str::trim)
                    .unwrap_or_default(),
            )
        }
        (None, Some(value)) => Some(value.to_str().unwrap_or_default().trim()),
        (None, None) => None,
    };
    if let Some(key) = sent_key {
        let Some((id, secret)) = auth::parse_api_key(key) else {
            return Err(refused("the API key is malformed"));
        };
        let Some((key, hash, user)) = state.store.api_key_for_auth(id.to_string()).await? else {
            return Err(refused("the API key is not valid"));
        };
        if !auth::constant_time_eq(&auth::sha256_hex(secret), &hash) {
            return Err(refused("the API key is not valid"));
        }
        if key.revoked_at.is_some() {
            return Err(refused("the API key has been revoked"));
        }
        if key
            .expires_at
            .as_deref()
            .is_some_and(|at| at <= crate::store::conversations::now().as_str())
        {
            return Err(refused("the API key has expired"));
        }
        if user.disabled {
            return Err(refused("the API key's user is disabled"));
        }
        // Only a verified, valid key records its use.
        let (store, used) = (state.store.clone(), key.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&used).await {
                tracing::warn!(error = %e, "could not record an API key's use");
            }
        });
        return Ok(Some(Principal {
            user_id: user.id,
            name: user.name,
            role: user.role,
            credential: Credential::ApiKey {
                id: key.id,
                scopes: key.scopes,
                expires_at: key.expires_at,
            },
        }));
    }
    let Some(token) = session_cookie(headers) else {
        return match peer {
            Some(peer) => peer_principal(state, headers, peer).await.map(Some),
            None => Ok(None),
        };
    };
    let Some((session, user)) = state.store.session(auth::sha256_hex(&token)).await? else {
        return Err(refused(
            "the session has expired or was revoked; log in again",
        ));
    };
    if user.disabled {
        return Err(refused("this account is disabled"));
    }
    Ok(Some(Principal {
        user_id: user.id,
        name: user.name,
        role: user.role,
        credential: Credential::Session {
            csrf: session.csrf_token,
        },
    }))
}

/// Headers that mark a request as relayed from a browser or by a proxy. Peer
/// authentication is ambient, like a cookie: a proxy forwarding to the socket must not
/// lend its own Unix user to whoever reached it, so such requests need a credential.
const RELAYED: [&str; 5] = [
    "origin",
    "sec-fetch-site",
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
];

/// The principal of a Unix socket request without credentials, from its peer's user.
async fn peer_principal(
    state: &AppState,
    headers: &HeaderMap,
    peer: PeerCredentials,
) -> Result<Principal, Refusal> {
    if let Some(name) = RELAYED.iter().find(|name| headers.contains_key(**name)) {
        return Err(refused(format!(
            "a request relayed by a browser or proxy (it has `{name}`) is not authenticated by the socket's peer; send an API key"
        )));
    }
    let daemon_uid = rustix::process::geteuid().as_raw();
    // Looking up a name may ask a network directory (a blocking call): not for root
    // and the daemon's user, who need none.
    let unix_name = if peer::is_local_admin(peer.uid, daemon_uid) {
        None
    } else {
        let uid = peer.uid;
        match tokio::task::spawn_blocking(move || peer::user_name(uid)).await {
            Ok(Ok(name)) => name,
            Ok(Err(e)) => {
                tracing::warn!(uid, error = %e, "cannot look up a Unix user's name");
                None
            }
            Err(_) => None,
        }
    };
    let user = match peer::account_for(peer.uid, daemon_uid, unix_name.as_deref(), |name| {
        state.config.server.peer_user(name)
    }) {
        PeerAccount::LocalAdmin => state.store.local_admin().await?,
        PeerAccount::User(name) => match state.store.user_by_name(name.to_string()).await? {
            Some((user, _)) => user,
            None => {
                return Err(refused(format!(
                    "Unix user `{}` is mapped to appliance user `{name}` (server.peer_users), which does not exist",
                    unix_name.unwrap_or_default()
                )));
            }
        },
        PeerAccount::Refused(why) => return Err(refused(why)),
    };
    if user.disabled {
        return Err(refused(format!(
            "appliance user `{}` is disabled",
            user.name
        )));
    }
    Ok(Principal {
        user_id: user.id,
        name: user.name,
        role: user.role,
        credential: Credential::Peer { uid: peer.uid },
    })
}

/// The session token from the `Cookie` header, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks a route's [`Access`] against the request's principal.
///
/// A refused HTTP/1 request whose body was never read ends its connection
/// (`Connection: close`): the unread body is still on the wire, and a client that
/// reused the connection would see it dropped under its next request.
pub async fn enforce(
    State((state, access)): State<(AppState, Access)>,
    req: Request,
    next: Next,
) -> Response {
    // Only the parts (a borrowed body would make this future not `Send`).
    let refused = refusal(
        &state,
        access,
        req.extensions(),
        req.headers(),
        req.method(),
    )
    .await;
    let Some(mut refused) = refused else {
        return next.run(req).await;
    };
    if super::defences::has_unread_body(&req) {
        refused.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    refused
}

/// Why `req` may not reach a route with `access`, as the response; `None` if it may.
async fn refusal(
    state: &AppState,
    access: Access,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    method: &Method,
) -> Option<Response> {
    if access == Access::Public {
        // Anyone can reach these, so they are limited per client instead.
        if let Some(client) = client(extensions)
            && let Err(exceeded) = state.limits.public_request(client)
        {
            return Some(too_many(exceeded).into_response());
        }
        return None;
    }
    let Some(principal) = extensions.get::<Principal>() else {
        let message = extensions.get::<Refused>().map_or_else(
            || {
                "authentication required: send `Authorization: Bearer <API key>` (or `x-api-key`) or log in"
                    .to_string()
            },
            |r| r.0.clone(),
        );
        return Some(ApiError::Unauthorized(message).into_response());
    };
    if let Err(e) = permitted(principal, access) {
        return Some(e.into_response());
    }
    if let Credential::ApiKey { id, .. } = &principal.credential
        && principal.user_id > 0
        && let Err(exceeded) = state.limits.key_request(id)
    {
        return Some(too_many(exceeded).into_response());
    }
    if principal.user_id > 0 {
        match state.limits.request(principal.user_id).await {
            Ok(Ok(())) => {}
            Ok(Err(exceeded)) => {
                return Some(
                    ApiError::TooManyRequests {
                        message: format!(
                            "user `{}` has reached {}; retry in {} s",
                            principal.name, exceeded.what, exceeded.retry_after_secs
                        ),
                        retry_after_secs: exceeded.retry_after_secs,
                    }
                    .into_response(),
                );
            }
            Err(e) => return Some(ApiError::from(e).into_response()),
        }
    }
    if let Credential::Session { csrf } = &principal.credential {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !safe && !auth::constant_time_eq(sent, csrf) {
            return Some(
                ApiError::Forbidden(format!(
                    "missing or wrong `{CSRF_HEADER}` header for a cookie-authenticated request"
                ))
                .into_response(),
            );
        }
    }
    None
}

/// A rate limit was hit: 429 with when to retry.
fn too_many(exceeded: crate::limits::Exceeded) -> ApiError {
    ApiError::TooManyRequests {
        message: format!(
            "{}; retry in {} s",
            exceeded.what, exceeded.retry_after_secs
        ),
        retry_after_secs: exceeded.retry_after_secs,
    }
}

fn permitted(principal: &Principal, access: Access) -> Result<(), ApiError> {
    let missing = |scope: Scope| {
        ApiError::Forbidden(format!("this API key does not have the `{scope}` scope"))
    };
    let session = matches!(principal.credential, Credential::Session { .. });
    // A peer is the Unix user the kernel vouches for: like a session, it may manage
    // the account's keys, but it is not one (no password change without a session).
    let peer = matches!(principal.credential, Credential::Peer { .. });
    match access {
        Access::Public | Access::Authenticated => Ok(()),
        Access::Session if session => Ok(()),
        Access::Session => Err(ApiError::Forbidden(
            "this needs a signed-in session; API keys cannot do it".to_string(),
        )),
        Access::Account if session || peer || principal.is_admin() => Ok(()),
        Access::Account => Err(ApiError::Forbidden(
            "managing API keys needs a signed-in session (or an administrator's key with the `admin` scope)".to_string(),
        )),
        Access::Read(scope) if principal.has_scope(scope) => Ok(()),
        Access::Read(scope) => Err(missing(scope)),
        Access::Write(_) if principal.role == Role::Readonly => Err(ApiError::Forbidden(
            "read-only accounts cannot do this".to_string(),
        )),
        Access::Write(scope) if principal.has_scope(scope) => Ok(()),
        Access::Write(scope) => Err(missing(scope)),
        Access::Admin if principal.is_admin() => Ok(()),
        Access::Admin if principal.role == Role::Admin => Err(missing(Scope::Admin)),
        Access::Admin => Err(ApiError::Forbidden("administrators only".to_string())),
    }
}

/// The authenticated caller, for handlers behind a non-public route.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthorized("authentication required".to_string()))
    }
}

/// Whom the request's connection counts against: its TCP client's address, or its
/// Unix user on the socket.
pub fn client(extensions: &axum::http::Extensions) -> Option<Client> {
    if let Some(peer) = extensions.get::<PeerCredentials>() {
        return Some(Client::LocalUser(peer.uid));
    }
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| Client::Address(c.0.ip()))
}

/// The client's address, for the audit log and throttling: an IP address, or
/// `unix:uid=N` on the Unix socket.
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<String> {
    client(extensions).map(|client| match client {
        Client::Address(ip) => ip.to_string(),
        Client::LocalUser(uid) => format!("unix:uid={uid}"),
    })
}

/// [`client_ip`] as an extractor (`unknown` when the connection named none, which only
/// happens in tests that call the router directly).
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            client_ip(&parts.extensions).unwrap_or_else(|| "unknown".to_string()),
        ))
    }
}
