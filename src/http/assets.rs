//! The embedded web UI (`assets/dist`, built by Vite, compiled into the binary by rust-embed),
//! served with content types, strong ETags and cache headers.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::error::ApiError;
use crate::app::AppState;
use axum::extract::State;

#[derive(Embed)]
#[folder = "assets/dist"]
struct Assets;

/// Fallback for every unrouted request: a GET/HEAD for a UI file serves it (from the
/// binary, or from `server.ui_dir` when set), anything else is a JSON 404.
pub async fn fallback(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if method == Method::GET || method == Method::HEAD {
        let name = match path.trim_start_matches('/') {
            "" => "index.html",
            other => other,
        };
        let dir = &state.config.server.ui_dir;
        if !dir.as_os_str().is_empty() {
            if let Some(response) = from_dir(dir, &method, &uri, &headers).await {
                return response;
            }
        } else if let Some(file) = Assets::get(name) {
            return serve(name, file, &headers, method == Method::HEAD);
        }
    }
    ApiError::NotFound(format!("no route for {method} {path}")).into_response()
}

/// A file under `dir` (development UI), served by tower-http's `ServeDir`, which
/// resolves paths safely: `..`, absolute paths and anything outside the directory are
/// never served. `None` when there is no such file.
async fn from_dir(
    dir: &std::path::Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .body(Body::empty())
        .ok()?;
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::RANGE,
    ] {
        if let Some(value) = headers.get(&name) {
            request.headers_mut().insert(name, value.clone());
        }
    }
    let served = tower_http::services::ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .oneshot(request)
        .await
        .ok()?;
    if !(served.status().is_success() || served.status() == StatusCode::NOT_MODIFIED) {
        return None;
    }
    let mut response = served.map(Body::new);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

fn serve(name: &str, file: rust_embed::EmbeddedFile, headers: &HeaderMap, head: bool) -> Response {
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    // HTML must be revalidated so a new version is picked up at once; the build's
    // fingerprinted files (`assets/<name>-<hash>.js`) never change; the rest hourly.
    let cache = if name.ends_with(".html") {
        "no-cache"
    } else if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache);
    if fresh {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return builder.body(Body::empty()).unwrap_or_default();
    }
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    builder = builder
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        )
        .header(header::CONTENT_LENGTH, file.data.len());
    let body = if head {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    };
    builder.body(body).unwrap_or_default()
}
