//! The embedded web assets (`assets/web`, compiled into the binary by rust-embed),
//! served with content types, strong ETags and cache headers.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use super::error::ApiError;

#[derive(Embed)]
#[folder = "assets/web"]
struct Assets;

/// Fallback for every unrouted request: a GET/HEAD for an embedded file serves it,
/// anything else is a JSON 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if method == Method::GET || method == Method::HEAD {
        let name = match path.trim_start_matches('/') {
            "" => "index.html",
            other => other,
        };
        if let Some(file) = Assets::get(name) {
            return serve(name, file, &headers, method == Method::HEAD);
        }
    }
    ApiError::NotFound(format!("no route for {method} {path}")).into_response()
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
    // HTML must be revalidated so a new version is picked up at once; other files are
    // revalidated hourly until the UI build fingerprints its file names.
    let cache = if name.ends_with(".html") {
        "no-cache"
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
