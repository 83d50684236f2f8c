//! Request extractors whose rejections are [`ApiError`]s, so malformed input gets the
//! same JSON error body as every other failure (axum's defaults answer plain text).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::Json`, but malformed bodies become precise 400/413/415 [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = BodyLimit::of(&req);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(from_rejection(rejection, limit)),
        }
    }
}

/// The body limit in force for a route, recorded so errors can state it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl BodyLimit {
    /// The limit recorded on a request (0 when the route recorded none).
    fn of(req: &Request) -> usize {
        req.extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or_default()
    }
}

fn from_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde_path_to_error gives "field.path: message"; surface the path as param.
            let text = e.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text)
                .to_string();
            let param = detail.split_once(": ").map(|(path, _)| path.to_string());
            ApiError::BadRequest {
                message: format!("invalid request body: {detail}"),
                param: param.filter(|p| !p.contains(' ')),
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
            message: format!(
                "request body is not valid JSON: {}",
                e.body_text()
                    .trim_start_matches("Failed to parse the request body as JSON: ")
            ),
            param: None,
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a JSON body with `Content-Type: application/json`".to_string(),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit }
        }
        other => ApiError::BadRequest {
            message: format!("cannot read request body: {}", other.body_text()),
            param: None,
        },
    }
}

/// Like [`Json`] but without requiring `Content-Type: application/json`: Ollama and
/// llama-server accept any content type on their inference routes, and tools that talk
/// to them (curl one-liners, some plugins) rely on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LenientJson<T>(pub T);

impl<S, T> FromRequest<S> for LenientJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = BodyLimit::of(&req);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::BadRequest {
                        message: format!("cannot read request body: {}", e.body_text()),
                        param: None,
                    }
                }
            })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut deserializer) {
            Ok(value) => Ok(LenientJson(value)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Err(ApiError::BadRequest {
                        message: format!("request body is not valid JSON: {inner}"),
                        param: None,
                    })
                } else {
                    Err(ApiError::BadRequest {
                        message: format!("invalid request body: {path}: {inner}"),
                        param: (path != ".").then_some(path),
                    })
                }
            }
        }
    }
}

/// The body as a JSON object (APIs that check its top-level fields by name first).
pub fn object(
    body: &serde_json::Value,
) -> Result<&serde_json::Map<String, serde_json::Value>, ApiError> {
    body.as_object().ok_or_else(|| ApiError::BadRequest {
        message: "the request body must be a JSON object".into(),
        param: None,
    })
}

/// Deserialises a body already parsed as JSON (after a handler has looked at its
/// fields) into `T`; errors name the field as [`LenientJson`]'s do.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::BadRequest {
            message: format!("invalid request body: {path}: {}", e.into_inner()),
            param: (path != ".").then_some(path),
        }
    })
}

/// `axum::extract::Path`, but a path segment of the wrong type is a JSON 400 naming the
/// segment (axum's default is a `text/plain` answer).
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let kind = e.into_kind();
                // Name the segment: from the error, else from the route's parameters.
                let names: Vec<String> =
                    axum::extract::RawPathParams::from_request_parts(parts, state)
                        .await
                        .map(|raw| raw.iter().map(|(k, _)| k.to_string()).collect())
                        .unwrap_or_default();
                let param = path_param(&kind, &names);
                Err(ApiError::BadRequest {
                    message: format!("invalid path: {kind}"),
                    param,
                })
            }
            Err(other) => Err(ApiError::Internal(format!(
                "path parameters unavailable: {}",
                other.body_text()
            ))),
        }
    }
}

fn path_param(kind: &axum::extract::path::ErrorKind, names: &[String]) -> Option<String> {
    use axum::extract::path::ErrorKind;
    match kind {
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::InvalidUtf8InPathParam { key } => {
            Some(key.clone())
        }
        ErrorKind::ParseErrorAtIndex { index, .. } => names.get(*index).cloned(),
        ErrorKind::ParseError { .. } if names.len() == 1 => names.first().cloned(),
        _ => None,
    }
}

/// `axum::extract::Query`, but a malformed query string is a JSON 400 naming the
/// parameter (axum's default is a `text/plain` answer).
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        match serde_path_to_error::deserialize(deserializer) {
            Ok(value) => Ok(Query(value)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                Err(ApiError::BadRequest {
                    message: format!("invalid query string: {path}: {inner}"),
                    param: (path != "." && !path.is_empty()).then_some(path),
                })
            }
        }
    }
}
