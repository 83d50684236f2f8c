//! The HTTP server: routes, wire formats and status codes. Nothing outside this module
//! knows about HTTP; handlers translate between the wire and the domain modules.

pub(crate) mod accounts;
mod anthropic;
mod assets;
mod audio;
pub mod auth;
mod backups;
mod conversations;
mod defences;
mod documents;
mod embeddings;
pub mod error;
pub mod extract;
#[cfg(test)]
mod fuzz;
mod inference;
mod jobs;
pub mod middleware;
mod model_admin;
mod notifications;
mod ollama;
mod openai;
mod pull;
mod reply;
mod routes;
pub mod server;
mod transcripts;
mod unix;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::app::AppState;
use crate::auth::Scope;
pub use audio::upload_dir as audio_upload_dir;
pub use auth::Access;
pub use error::ApiError;
pub use middleware::REQUEST_ID;
pub use server::{ServerOptions, Tls, serve};
pub use unix::{PeerCredentials, SOCKET_MODE, UnixSocket};

/// One route: method, path template, who may call it, and how large a body it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// axum path template.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Which body limit applies.
    pub body: BodySize,
}

/// The body limits routes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// `server.max_json_body_bytes`.
    Json,
    /// `server.max_inference_body_bytes` (prompts, imports).
    Inference,
    /// `documents.max_file_bytes` plus room for the multipart framing.
    Upload,
    /// `speech.max_file_bytes` plus room for the multipart framing and form fields.
    Audio,
}

type Handler = axum::routing::MethodRouter<AppState>;

/// Every route of the API, with its access policy. The router is built from this list
/// and nothing else, so no route can exist without a declared policy; a test walks it.
#[rustfmt::skip]
fn table() -> Vec<(RouteSpec, Handler)> {
    use Access::{Account, Admin, Authenticated, Public, Read, Session, Write};
    use axum::routing::{delete, patch, put};
    const CHAT: Scope = Scope::Chat;
    const EMBED: Scope = Scope::Embeddings;
    const DOCS: Scope = Scope::Documents;
    const AUDIO: Scope = Scope::Audio;
    use BodySize::{Audio as A, Inference as I, Json as J, Upload as U};
    let r = |method: Method, path: &'static str, access: Access, body: BodySize, handler: Handler| {
        (
            RouteSpec {
                method,
                path,
                access,
                body,
            },
            handler,
        )
    };
    vec![
        r(Method::GET, "/healthz", Public, J, get(routes::health::healthz)),
        r(Method::GET, "/readyz", Public, J, get(routes::health::readyz)),
        r(Method::GET, "/metrics", Admin, J, get(routes::health::metrics)),
        r(Method::GET, "/api/v1/status", Admin, J, get(routes::status::status)),
        r(Method::GET, "/api/v1/system", Admin, J, get(routes::status::system)),
        r(Method::GET, "/api/v1/gpu", Admin, J, get(routes::status::gpu)),
        r(Method::GET, "/api/v1/notifications", Admin, J, get(notifications::view)),
        r(Method::POST, "/api/v1/notifications/test", Admin, J, post(notifications::test)),
        r(Method::GET, "/api/v1/events", Authenticated, J, get(notifications::events)),
        r(Method::GET, "/api/v1/backups", Admin, J, get(backups::list)),
        r(Method::POST, "/api/v1/backups", Admin, J, post(backups::create)),
        r(Method::GET, "/api/v1/backups/{name}", Admin, J, get(backups::download)),
        r(Method::DELETE, "/api/v1/backups/{name}", Admin, J, delete(backups::delete)),
        r(Method::GET, "/api/v1/log-level", Admin, J, get(routes::status::get_log_level)),
        r(Method::PUT, "/api/v1/log-level", Admin, J, put(routes::status::set_log_level)),
        r(Method::POST, "/api/v1/models/{name}/load", Admin, J, post(routes::models::load)),
        r(Method::POST, "/api/v1/models/{name}/unload", Admin, J, post(routes::models::unload)),
        // Accounts.
        r(Method::POST, "/api/v1/setup", Public, J, post(accounts::session::setup)),
        r(Method::POST, "/api/v1/auth/login", Public, J, post(accounts::session::login)),
        r(Method::POST, "/api/v1/auth/logout", Authenticated, J, post(accounts::session::logout)),
        r(Method::GET, "/api/v1/auth/me", Authenticated, J, get(accounts::session::me)),
        r(Method::POST, "/api/v1/auth/password", Session, J, post(accounts::session::change_password)),
        r(Method::GET, "/api/v1/keys", Account, J, get(accounts::keys::list)),
        r(Method::POST, "/api/v1/keys", Account, J, post(accounts::keys::create)),
        r(Method::DELETE, "/api/v1/keys/{id}", Account, J, delete(accounts::keys::revoke)),
        r(Method::GET, "/api/v1/users", Admin, J, get(accounts::users::list)),
        r(Method::POST, "/api/v1/users", Admin, J, post(accounts::users::create)),
        r(Method::PATCH, "/api/v1/users/{id}", Admin, J, patch(accounts::users::update)),
        r(Method::DELETE, "/api/v1/users/{id}", Admin, J, delete(accounts::users::delete)),
        r(Method::GET, "/api/v1/audit", Admin, J, get(accounts::audit::list)),
        r(Method::GET, "/api/v1/usage", Authenticated, J, get(accounts::audit::usage)),
        // OpenAI.
        r(Method::POST, "/v1/chat/completions", Write(CHAT), I, post(openai::chat_completions)),
        r(Method::POST, "/v1/completions", Write(CHAT), I, post(openai::completions)),
        r(Method::POST, "/v1/embeddings", Write(EMBED), I, post(embeddings::openai)),
        r(Method::POST, "/v1/audio/transcriptions", Write(AUDIO), A, post(audio::transcriptions)),
        r(Method::POST, "/v1/audio/translations", Write(AUDIO), A, post(audio::translations)),
        r(Method::POST, "/v1/responses", Write(CHAT), I, post(openai::responses::create)),
        r(Method::GET, "/v1/models", Authenticated, J, get(openai::list_models)),
        // Anthropic.
        r(Method::POST, anthropic::PATH, Write(CHAT), I, post(anthropic::messages)),
        r(Method::GET, "/v1/models/{*id}", Authenticated, J, get(openai::get_model)),
        // Ollama.
        r(Method::POST, "/api/chat", Write(CHAT), I, post(ollama::chat)),
        r(Method::POST, "/api/generate", Write(CHAT), I, post(ollama::generate)),
        r(Method::POST, "/api/embed", Write(EMBED), I, post(embeddings::ollama_embed)),
        r(Method::POST, "/api/embeddings", Write(EMBED), I, post(embeddings::ollama_legacy)),
        r(Method::GET, "/api/tags", Authenticated, J, get(ollama::tags)),
        r(Method::GET, "/api/ps", Authenticated, J, get(ollama::ps)),
        r(Method::POST, "/api/show", Authenticated, J, post(ollama::show)),
        r(Method::GET, "/api/version", Public, J, get(ollama::version)),
        r(Method::POST, "/api/pull", Admin, J, post(pull::pull)),
        r(Method::DELETE, "/api/delete", Admin, J, delete(model_admin::delete)),
        r(Method::POST, "/api/copy", Admin, J, post(model_admin::copy)),
        r(Method::POST, "/api/create", Admin, J, post(model_admin::create)),
        // Native chat.
        r(Method::POST, "/api/v1/tokenize", Write(CHAT), I, post(openai::tokenize)),
        r(Method::GET, "/api/v1/conversations", Read(CHAT), J, get(conversations::list)),
        r(Method::POST, "/api/v1/conversations", Write(CHAT), J, post(conversations::create)),
        r(Method::GET, "/api/v1/conversations/search", Read(CHAT), J, get(conversations::search)),
        r(Method::POST, "/api/v1/conversations/import", Write(CHAT), I, post(conversations::import)),
        r(Method::GET, "/api/v1/conversations/{id}", Read(CHAT), J, get(conversations::get)),
        r(Method::PATCH, "/api/v1/conversations/{id}", Write(CHAT), J, patch(conversations::update)),
        r(Method::DELETE, "/api/v1/conversations/{id}", Write(CHAT), J, delete(conversations::delete)),
        r(Method::POST, "/api/v1/conversations/{id}/messages", Write(CHAT), I, post(conversations::send)),
        r(Method::DELETE, "/api/v1/conversations/{id}/messages/{message_id}", Write(CHAT), J, delete(conversations::truncate)),
        r(Method::GET, "/api/v1/conversations/{id}/export", Read(CHAT), J, get(conversations::export)),
        // Documents and retrieval.
        r(Method::GET, "/api/v1/collections", Read(DOCS), J, get(documents::list_collections)),
        r(Method::POST, "/api/v1/collections", Write(DOCS), J, post(documents::create_collection)),
        r(Method::GET, "/api/v1/collections/{id}", Read(DOCS), J, get(documents::get_collection)),
        r(Method::PATCH, "/api/v1/collections/{id}", Write(DOCS), J, patch(documents::update_collection)),
        r(Method::DELETE, "/api/v1/collections/{id}", Write(DOCS), J, delete(documents::delete_collection)),
        r(Method::GET, "/api/v1/collections/{id}/documents", Read(DOCS), J, get(documents::list_documents)),
        r(Method::POST, "/api/v1/collections/{id}/documents", Write(DOCS), U, post(documents::upload)),
        r(Method::POST, "/api/v1/collections/{id}/urls", Write(DOCS), J, post(documents::add_url)),
        r(Method::GET, "/api/v1/documents/{id}", Read(DOCS), J, get(documents::get_document)),
        r(Method::DELETE, "/api/v1/documents/{id}", Write(DOCS), J, delete(documents::delete_document)),
        r(Method::POST, "/api/v1/documents/{id}/reindex", Write(DOCS), J, post(documents::reindex_document)),
        r(Method::GET, "/api/v1/documents/{id}/chunks", Read(DOCS), J, get(documents::chunks)),
        r(Method::GET, "/api/v1/documents/{id}/file", Read(DOCS), J, get(documents::file)),
        r(Method::POST, "/api/v1/search", Read(DOCS), J, post(documents::search)),
        // Speech to text.
        r(Method::GET, "/api/v1/transcripts", Read(AUDIO), J, get(transcripts::list)),
        r(Method::POST, "/api/v1/transcripts", Write(AUDIO), A, post(transcripts::create)),
        r(Method::GET, "/api/v1/transcripts/{id}", Read(AUDIO), J, get(transcripts::get)),
        r(Method::DELETE, "/api/v1/transcripts/{id}", Write(AUDIO), J, delete(transcripts::delete)),
        r(Method::GET, "/api/v1/transcripts/{id}/export", Read(AUDIO), J, get(transcripts::export)),
        r(Method::POST, "/api/v1/transcripts/{id}/collection", Write(DOCS), J, post(transcripts::to_collection)),
        // Jobs.
        r(Method::GET, "/api/v1/jobs", Authenticated, J, get(jobs::list)),
        r(Method::GET, "/api/v1/jobs/{id}", Authenticated, J, get(jobs::get)),
        r(Method::DELETE, "/api/v1/jobs/{id}", Authenticated, J, delete(jobs::cancel)),
        r(Method::GET, "/api/v1/jobs/{id}/events", Authenticated, J, get(jobs::events)),
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
        let limit = match spec.body {
            BodySize::Json => json_limit,
            BodySize::Inference => inference_limit,
            BodySize::Upload => usize::try_from(
                state
                    .config
                    .documents
                    .max_file_bytes
                    .saturating_add(1 << 20),
            )
            .unwrap_or(usize::MAX),
            BodySize::Audio => {
                usize::try_from(state.config.speech.max_file_bytes.saturating_add(1 << 20))
                    .unwrap_or(usize::MAX)
            }
        };
        let handler: Handler = handler
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), spec.access),
                auth::enforce,
            ))
            .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(limit))
            .layer::<_, std::convert::Infallible>(axum::Extension(extract::BodyLimit(limit)));
        // Anthropic's clients parse errors in Anthropic's shape, including those of the
        // credential and limit checks above.
        let handler = if spec.path == anthropic::PATH {
            handler.layer::<_, std::convert::Infallible>(axum::middleware::from_fn(
                anthropic::error_shape,
            ))
        } else {
            handler
        };
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
