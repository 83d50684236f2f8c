//! Per-request plumbing: request ids, the request span, access logging and metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::AppState;

/// The header that carries a request's id, in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Takes the client's `x-request-id` when it is sane (visible ASCII, at most 128
/// bytes), otherwise makes one; echoes it on the response; runs the request inside a
/// span carrying it, so every log line of the request names it; records metrics.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // Unmatched paths share one label so a scanner cannot blow up metric cardinality.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));

    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        user = tracing::field::Empty
    );
    state.metrics.http_started();
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .http_finished(&route, &method, status, elapsed);

    let _entered = span.enter();
    let quiet = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    let ms = elapsed.as_secs_f64() * 1000.0;
    if quiet && status < 400 {
        tracing::debug!(status, duration_ms = ms, "request finished");
    } else {
        tracing::info!(status, duration_ms = ms, "request finished");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}
