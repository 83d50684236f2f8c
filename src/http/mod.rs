//! The HTTP server: routes, wire formats and status codes. Nothing outside this module
//! knows about HTTP; handlers translate between the wire and the domain modules.

pub(crate) mod accounts;
mod assets;
pub mod auth;
mod conversations;
mod defences;
pub mod error;
pub mod extract;
mod inference;
pub mod middleware;
mod ollama;
mod openai;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::auth::Scope;
pub use auth::Access;
pub use error::ApiError;
pub use middleware::REQUEST_ID;

/// One route: method, path template, who may call it, and how large a body it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// axum path template.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Whether it takes the larger inference body limit.
    pub large_body: bool,
}

type Handler = axum::routing::MethodRouter<AppState>;

/// Every route of the API, with its access policy. The router is built from this list
/// and nothing else, so no route can exist without a declared policy; a test walks it.
#[rustfmt::skip]
fn table() -> Vec<(RouteSpec, Handler)> {
    use Access::{Admin, Authenticated, Public, Read, Write};
    use axum::routing::{delete, patch, put};
    const CHAT: Scope = Scope::Chat;
    let r =
        |method: Method, path: &'static str, access: Access, large_body: bool, handler: Handler| {
            (
                RouteSpec {
                    method,
                    path,
                    access,
                    large_body,
                },
                handler,
            )
        };
    vec![
        r(Method::GET, "/healthz", Public, false, get(routes::health::healthz)),
        r(Method::GET, "/readyz", Public, false, get(routes::health::readyz)),
        r(Method::GET, "/metrics", Admin, false, get(routes::health::metrics)),
        r(Method::GET, "/api/v1/status", Admin, false, get(routes::status::status)),
        r(Method::GET, "/api/v1/system", Admin, false, get(routes::status::system)),
        r(Method::GET, "/api/v1/log-level", Admin, false, get(routes::status::get_log_level)),
        r(Method::PUT, "/api/v1/log-level", Admin, false, put(routes::status::set_log_level)),
        // Accounts.
        r(Method::POST, "/api/v1/setup", Public, false, post(accounts::setup)),
        r(Method::POST, "/api/v1/auth/login", Public, false, post(accounts::login)),
        r(Method::POST, "/api/v1/auth/logout", Authenticated, false, post(accounts::logout)),
        r(Method::GET, "/api/v1/auth/me", Authenticated, false, get(accounts::me)),
        r(Method::POST, "/api/v1/auth/password", Authenticated, false, post(accounts::change_password)),
        r(Method::GET, "/api/v1/keys", Authenticated, false, get(accounts::list_keys)),
        r(Method::POST, "/api/v1/keys", Authenticated, false, post(accounts::create_key)),
        r(Method::DELETE, "/api/v1/keys/{id}", Authenticated, false, delete(accounts::revoke_key)),
        r(Method::GET, "/api/v1/users", Admin, false, get(accounts::list_users)),
        r(Method::POST, "/api/v1/users", Admin, false, post(accounts::create_user)),
        r(Method::PATCH, "/api/v1/users/{id}", Admin, false, patch(accounts::update_user)),
        r(Method::DELETE, "/api/v1/users/{id}", Admin, false, delete(accounts::delete_user)),
        r(Method::GET, "/api/v1/audit", Admin, false, get(accounts::audit_log)),
        r(Method::GET, "/api/v1/usage", Authenticated, false, get(accounts::usage)),
        // OpenAI.
        r(Method::POST, "/v1/chat/completions", Write(CHAT), true, post(openai::chat_completions)),
        r(Method::POST, "/v1/completions", Write(CHAT), true, post(openai::completions)),
        r(Method::GET, "/v1/models", Authenticated, false, get(openai::list_models)),
        r(Method::GET, "/v1/models/{*id}", Authenticated, false, get(openai::get_model)),
        // Ollama.
        r(Method::POST, "/api/chat", Write(CHAT), true, post(ollama::chat)),
        r(Method::POST, "/api/generate", Write(CHAT), true, post(ollama::generate)),
        r(Method::GET, "/api/tags", Authenticated, false, get(ollama::tags)),
        r(Method::GET, "/api/ps", Authenticated, false, get(ollama::ps)),
        r(Method::POST, "/api/show", Authenticated, false, post(ollama::show)),
        r(Method::GET, "/api/version", Public, false, get(ollama::version)),
        // Native chat.
        r(Method::POST, "/api/v1/tokenize", Read(CHAT), true, post(openai::tokenize)),
        r(Method::GET, "/api/v1/conversations", Read(CHAT), false, get(conversations::list)),
        r(Method::POST, "/api/v1/conversations", Write(CHAT), false, post(conversations::create)),
        r(Method::GET, "/api/v1/conversations/search", Read(CHAT), false, get(conversations::search)),
        r(Method::POST, "/api/v1/conversations/import", Write(CHAT), true, post(conversations::import)),
        r(Method::GET, "/api/v1/conversations/{id}", Read(CHAT), false, get(conversations::get)),
        r(Method::PATCH, "/api/v1/conversations/{id}", Write(CHAT), false, patch(conversations::update)),
        r(Method::DELETE, "/api/v1/conversations/{id}", Write(CHAT), false, delete(conversations::delete)),
        r(Method::POST, "/api/v1/conversations/{id}/messages", Write(CHAT), true, post(conversations::send)),
        r(Method::DELETE, "/api/v1/conversations/{id}/messages/{message_id}", Write(CHAT), false, delete(conversations::truncate)),
        r(Method::GET, "/api/v1/conversations/{id}/export", Read(CHAT), false, get(conversations::export)),
    ]
}

/// Every route and its policy (for the route-walk test and documentation).
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(spec, _)| spec).collect()
}

/// Builds the router with every route, limit and middleware.
pub fn router(state: AppState) -> Router {
    let cors = defences::cors(&state.config.server.cors_origins);
    let json_limit = state.config.server.max_json_body_bytes;
    let inference_limit = state.config.server.max_inference_body_bytes;
    let mut router = Router::new();
    for (spec, handler) in table() {
        let limit = if spec.large_body {
            inference_limit
        } else {
            json_limit
        };
        let handler: Handler = handler
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), spec.access),
                auth::enforce,
            ))
            .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(limit))
            .layer::<_, std::convert::Infallible>(axum::Extension(extract::BodyLimit(limit)));
        router = router.route(spec.path, handler);
    }
    let mut app = router
        .fallback(assets::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            defences::defend,
        ));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::observe,
    ))
    .with_state(state)
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

/// Serves `router` on an already-bound listener until `shutdown` resolves, then stops
/// accepting and gives in-flight requests `grace` to finish before cutting them off.
/// With `tls`, connections are HTTPS (the configuration can be reloaded while serving).
/// Returns whether every request finished within the grace period.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
) -> std::io::Result<bool> {
    listener.set_nonblocking(true)?;
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let Some(tls) = tls else {
        return serve_plain(TcpListener::from_std(listener)?, service, shutdown, grace).await;
    };
    let handle = axum_server::Handle::new();
    // When the shutdown began, to tell a drain from a cut-off.
    let began = std::sync::Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let (signalled, mark) = (handle.clone(), began.clone());
    tokio::spawn(async move {
        shutdown.await;
        if let Ok(mut at) = mark.lock() {
            *at = Some(std::time::Instant::now());
        }
        signalled.graceful_shutdown(Some(grace));
    });
    let server = axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(service);
    server.await?;
    let within = began
        .lock()
        .ok()
        .and_then(|at| *at)
        .is_none_or(|at| at.elapsed() < grace);
    if !within {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight requests did not finish within the grace period; cutting them off"
        );
    }
    Ok(within)
}

async fn serve_plain(
    listener: TcpListener,
    service: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = signalled_tx.send(());
    });
    let deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.map(|()| true),
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period; cutting them off");
            Ok(false)
        }
    }
}
