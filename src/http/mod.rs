//! The HTTP server: routes, wire formats and status codes. Nothing outside this module
//! knows about HTTP; handlers translate between the wire and the domain modules.

pub(crate) mod accounts;
mod assets;
pub mod auth;
mod conversations;
mod defences;
pub mod error;
pub mod extract;
#[cfg(test)]
mod fuzz;
mod inference;
pub mod middleware;
mod ollama;
mod openai;
mod reply;
mod routes;
pub mod server;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::app::AppState;
use crate::auth::Scope;
pub use auth::Access;
pub use error::ApiError;
pub use middleware::REQUEST_ID;
pub use server::{ServerOptions, Tls, serve};

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
    use Access::{Account, Admin, Authenticated, Public, Read, Session, Write};
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
        r(Method::POST, "/api/v1/models/{name}/load", Admin, false, post(routes::models::load)),
        r(Method::POST, "/api/v1/models/{name}/unload", Admin, false, post(routes::models::unload)),
        // Accounts.
        r(Method::POST, "/api/v1/setup", Public, false, post(accounts::session::setup)),
        r(Method::POST, "/api/v1/auth/login", Public, false, post(accounts::session::login)),
        r(Method::POST, "/api/v1/auth/logout", Authenticated, false, post(accounts::session::logout)),
        r(Method::GET, "/api/v1/auth/me", Authenticated, false, get(accounts::session::me)),
        r(Method::POST, "/api/v1/auth/password", Session, false, post(accounts::session::change_password)),
        r(Method::GET, "/api/v1/keys", Account, false, get(accounts::keys::list)),
        r(Method::POST, "/api/v1/keys", Account, false, post(accounts::keys::create)),
        r(Method::DELETE, "/api/v1/keys/{id}", Account, false, delete(accounts::keys::revoke)),
        r(Method::GET, "/api/v1/users", Admin, false, get(accounts::users::list)),
        r(Method::POST, "/api/v1/users", Admin, false, post(accounts::users::create)),
        r(Method::PATCH, "/api/v1/users/{id}", Admin, false, patch(accounts::users::update)),
        r(Method::DELETE, "/api/v1/users/{id}", Admin, false, delete(accounts::users::delete)),
        r(Method::GET, "/api/v1/audit", Admin, false, get(accounts::audit::list)),
        r(Method::GET, "/api/v1/usage", Authenticated, false, get(accounts::audit::usage)),
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
        r(Method::POST, "/api/v1/tokenize", Write(CHAT), true, post(openai::tokenize)),
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
    app.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        middleware::panic_response,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        middleware::observe,
    ))
    .with_state(state)
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    ApiError::MethodNotAllowed {
        method: middleware::method_label(&method).to_string(),
        path: uri.path().chars().take(200).collect(),
    }
}
