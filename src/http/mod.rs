//! The HTTP server: routes, wire formats and status codes. Nothing outside this module
//! knows about HTTP; handlers translate between the wire and the domain modules.

mod assets;
mod conversations;
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
pub use error::ApiError;
pub use middleware::REQUEST_ID;

/// Builds the router with every route, limit and middleware.
pub fn router(state: AppState) -> Router {
    let json_limit = state.config.server.max_json_body_bytes;
    let api = Router::new()
        .route("/api/v1/status", get(routes::status::status))
        .route(
            "/api/v1/log-level",
            get(routes::status::get_log_level).put(routes::status::set_log_level),
        )
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(axum::Extension(extract::BodyLimit(json_limit)));

    // Inference routes take longer bodies (whole conversations).
    let inference_limit = state.config.server.max_inference_body_bytes;
    let inference = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{*id}", get(openai::get_model))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/version", get(ollama::version))
        .route("/api/v1/tokenize", post(openai::tokenize))
        .route(
            "/api/v1/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route("/api/v1/conversations/search", get(conversations::search))
        .route("/api/v1/conversations/import", post(conversations::import))
        .route(
            "/api/v1/conversations/{id}",
            get(conversations::get)
                .patch(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/api/v1/conversations/{id}/messages",
            post(conversations::send),
        )
        .route(
            "/api/v1/conversations/{id}/export",
            get(conversations::export),
        )
        .layer(DefaultBodyLimit::max(inference_limit))
        .layer(axum::Extension(extract::BodyLimit(inference_limit)));

    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .merge(api)
        .merge(inference)
        .fallback(assets::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
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
/// Returns whether every request finished within the grace period.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<bool> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
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
