//! The one place where errors become HTTP statuses and bodies.
//!
//! Every error a handler can return is an [`ApiError`]; its body always has the OpenAI
//! shape `{"error":{"message","type","param","code"}}` that existing clients parse.
//! Domain errors convert into it through exhaustive matches (no catch-all arm), so a
//! new variant cannot silently become a 500.
//!
//! What a client reads is [`ApiError::public_message`]: for failures inside the daemon
//! (database, storage, bugs) only the kind of failure and the request id, never SQL,
//! I/O error text or paths; the full error goes to the log with the request id.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;
use crate::models::pull::PullError;
use crate::models::pull::reference::RefError;
use crate::models::registry::RegistryError;
use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The data dir's disk is full: nothing was written.
    #[error("the server's disk is full")]
    DiskFull,
    /// The request is malformed or invalid; `param` names the offending field.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, for a person.
        message: String,
        /// The field at fault, when there is one.
        param: Option<String>,
    },
    /// The body is larger than this route accepts.
    #[error("request body is larger than this endpoint's limit of {limit} bytes")]
    PayloadTooLarge {
        /// The route's limit.
        limit: usize,
    },
    /// The body's media type is not accepted.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// A per-user or per-client limit was hit; retry after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        /// Why.
        message: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state of the resource.
    #[error("{0}")]
    Conflict(String),
    /// The route exists but not for this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The daemon cannot serve this right now; retry after the given seconds.
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// A database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An inference engine failure.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A model registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A model pull failure.
    #[error(transparent)]
    Pull(#[from] PullError),
    /// A bug or an unexpected failure inside the daemon.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn bad_field(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<&str>) {
        match self {
            ApiError::BadRequest { param, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                param.as_deref(),
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                None,
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "unsupported_media_type",
                None,
            ),
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "unauthorized",
                None,
            ),
            ApiError::Forbidden(_) => {
                (StatusCode::FORBIDDEN, "permission_error", "forbidden", None)
            }
            ApiError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limited",
                None,
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error", "not_found", None),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                "invalid_request_error",
                "conflict",
                None,
            ),
            ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                None,
            ),
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "unavailable",
                None,
            ),
            ApiError::Store(e) => match e {
                StoreError::NotFound(_) => {
                    (StatusCode::NOT_FOUND, "not_found_error", "not_found", None)
                }
                StoreError::Conflict(_) => (
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    "conflict",
                    None,
                ),
                StoreError::ReadOnly(_) => {
                    (StatusCode::FORBIDDEN, "permission_error", "read_only", None)
                }
                StoreError::Closed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "shutting_down",
                    None,
                ),
                StoreError::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "database_busy",
                    None,
                ),
                e if e.is_disk_full() => (
                    StatusCode::INSUFFICIENT_STORAGE,
                    "server_error",
                    "insufficient_storage",
                    None,
                ),
                StoreError::Sqlite(_)
                | StoreError::Migration { .. }
                | StoreError::SchemaTooNew { .. }
                | StoreError::Open { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "database_error",
                    None,
                ),
            },
            ApiError::Engine(e) => match e {
                EngineError::Busy { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "overloaded",
                    None,
                ),
                EngineError::UserBusy { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "too_many_concurrent_requests",
                    None,
                ),
                EngineError::NoRoom { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "no_room_to_load",
                    Some("model"),
                ),
                EngineError::GpuQueueFull { .. } | EngineError::OutOfMemory { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "gpu_memory_busy",
                    Some("model"),
                ),
                EngineError::TooLargeForGpu { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "model_too_large_for_gpu",
                    Some("model"),
                ),
                EngineError::Unloading { .. } | EngineError::ShuttingDown => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "unavailable",
                    None,
                ),
                EngineError::Protocol { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "engine_crashed",
                    None,
                ),
                EngineError::ContextOverflow { .. } => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "context_length_exceeded",
                    Some("messages"),
                ),
                EngineError::InputTooLong { .. } => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "context_length_exceeded",
                    Some("input"),
                ),
                EngineError::InvalidRequest(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_request",
                    None,
                ),
                EngineError::LoadFailed { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "model_load_failed",
                    Some("model"),
                ),
                EngineError::EngineCrashed { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "engine_crashed",
                    None,
                ),
                EngineError::Timeout { .. } => {
                    (StatusCode::GATEWAY_TIMEOUT, "server_error", "timeout", None)
                }
                EngineError::Decode(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "inference_failed",
                    None,
                ),
                EngineError::BadAudio(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_audio",
                    Some("file"),
                ),
            },
            ApiError::Registry(e) => match e {
                RegistryError::NotFound(_) => (
                    StatusCode::NOT_FOUND,
                    "not_found_error",
                    "model_not_found",
                    Some("model"),
                ),
                RegistryError::Invalid { .. } | RegistryError::BadModel { .. } => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_model_file",
                    None,
                ),
                RegistryError::BadName(_) => (
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_model_name",
                    Some("name"),
                ),
                RegistryError::Exists(_) => (
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    "model_exists",
                    Some("name"),
                ),
                RegistryError::Io { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "model_storage_error",
                    None,
                ),
            },
            ApiError::Pull(e) => pull_parts(e),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                None,
            ),
            ApiError::DiskFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "server_error",
                "insufficient_storage",
                None,
            ),
        }
    }

    /// Seconds a client should wait before retrying, for overload answers.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable {
                retry_after_secs, ..
            }
            | ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::Engine(
                EngineError::Busy {
                    retry_after_secs, ..
                }
                | EngineError::UserBusy {
                    retry_after_secs, ..
                }
                | EngineError::GpuQueueFull {
                    retry_after_secs, ..
                },
            ) => Some(*retry_after_secs),
            ApiError::Engine(EngineError::OutOfMemory { .. }) => Some(1),
            ApiError::Engine(EngineError::NoRoom { .. } | EngineError::Unloading { .. })
            | ApiError::Store(StoreError::Busy) => Some(2),
            _ => None,
        }
    }

    /// What a client reads when the disk is full.
    const DISK_FULL: &str = "the server's disk is full, so nothing was saved; retry once an administrator has freed space (the daemon keeps serving reads)";

    /// The message a client reads. Failures inside the daemon are described by kind
    /// only; their details (SQL, I/O errors, paths) go to the log.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Store(e) if e.is_disk_full() => Self::DISK_FULL.into(),
            ApiError::Store(
                StoreError::Sqlite(_)
                | StoreError::Migration { .. }
                | StoreError::SchemaTooNew { .. }
                | StoreError::Open { .. },
            ) => "a database error occurred; the daemon log has the details (look for this request's x-request-id)".into(),
            ApiError::Registry(RegistryError::Io { .. })
            | ApiError::Pull(PullError::Io { .. }) => {
                "the model storage failed; the daemon log has the details (look for this request's x-request-id)".into()
            }
            ApiError::Registry(RegistryError::Invalid { reason, .. }) => {
                format!("the model file is not a usable GGUF model: {reason}")
            }
            ApiError::Registry(RegistryError::BadModel { reason, .. }) => {
                format!("the model is not usable: {reason}")
            }
            ApiError::DiskFull => Self::DISK_FULL.into(),
            ApiError::Internal(_) | ApiError::Pull(PullError::Internal(_)) => {
                "an internal error occurred; the daemon log has the details (look for this request's x-request-id)".into()
            }
            other => other.to_string(),
        }
    }

    /// A 507 for an I/O error that is the disk filling up, else the internal error it
    /// is (for handlers writing files).
    pub fn from_io(context: &str, e: &std::io::Error) -> ApiError {
        if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
            ApiError::DiskFull
        } else {
            ApiError::Internal(format!("{context}: {e}"))
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The OpenAI-shaped error body (also sent inside streams).
    pub fn body(&self) -> serde_json::Value {
        let (_, kind, code, param) = self.parts();
        json!({
            "error": {
                "message": self.public_message(),
                "type": kind,
                "param": param,
                "code": code,
            }
        })
    }
}

/// Status, type, code and param of a pull failure.
fn pull_parts(e: &PullError) -> (StatusCode, &'static str, &'static str, Option<&'static str>) {
    let bad = |code| {
        (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            Some("model"),
        )
    };
    let upstream = |code| (StatusCode::BAD_GATEWAY, "server_error", code, None);
    match e {
        PullError::Reference(r) => match r {
            RefError::NotHuggingFace(_)
            | RefError::Malformed(_)
            | RefError::Ambiguous { .. }
            | RefError::Split(_) => bad("invalid_reference"),
            RefError::NoMatch(_) => (
                StatusCode::NOT_FOUND,
                "not_found_error",
                "model_not_found",
                Some("model"),
            ),
        },
        PullError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "not_found_error",
            "model_not_found",
            Some("model"),
        ),
        PullError::Unsupported(_) => bad("unsupported_model"),
        PullError::TooLarge { .. } => bad("model_too_large"),
        PullError::InsufficientStorage { .. } => (
            StatusCode::INSUFFICIENT_STORAGE,
            "server_error",
            "insufficient_storage",
            None,
        ),
        PullError::Exists(_) => (
            StatusCode::CONFLICT,
            "invalid_request_error",
            "model_exists",
            Some("model"),
        ),
        PullError::InProgress(_) => (
            StatusCode::CONFLICT,
            "invalid_request_error",
            "pull_in_progress",
            Some("model"),
        ),
        PullError::Denied(_) => upstream("hub_denied"),
        PullError::Hub(_) | PullError::Transient(_) => upstream("hub_error"),
        PullError::Corrupt(_) => upstream("download_corrupt"),
        PullError::Invalid(_) => upstream("invalid_model_file"),
        PullError::Cancelled => (
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "cancelled",
            None,
        ),
        PullError::Io { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "model_storage_error",
            None,
        ),
        PullError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            None,
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::documents::IngestError> for ApiError {
    fn from(e: crate::documents::IngestError) -> ApiError {
        match e {
            crate::documents::IngestError::Engine(e) => ApiError::Engine(e),
            crate::documents::IngestError::Store(e) => ApiError::Store(e),
            crate::documents::IngestError::Fatal(message) => ApiError::Unavailable {
                message,
                retry_after_secs: 30,
            },
        }
    }
}

impl From<crate::chat::context::GroundError> for ApiError {
    fn from(e: crate::chat::context::GroundError) -> ApiError {
        match e {
            crate::chat::context::GroundError::Documents(e) => e.into(),
            crate::chat::context::GroundError::Engine(e) => ApiError::Engine(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_failures_get_the_status_a_client_can_act_on() {
        let cases = [
            (
                PullError::Reference(RefError::NotHuggingFace("llama3".into())),
                StatusCode::BAD_REQUEST,
            ),
            (
                PullError::Reference(RefError::NoMatch("no Q9".into())),
                StatusCode::NOT_FOUND,
            ),
            (
                PullError::InsufficientStorage {
                    needed: 10,
                    free: 1,
                    margin: 0,
                },
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (PullError::Exists("m".into()), StatusCode::CONFLICT),
            (PullError::Corrupt("bad".into()), StatusCode::BAD_GATEWAY),
            (
                PullError::TooLarge { size: 2, limit: 1 },
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::Pull(error).status(), status);
        }
        let full = ApiError::Pull(PullError::InsufficientStorage {
            needed: 1234,
            free: 56,
            margin: 7,
        });
        let message = full.public_message();
        assert!(
            message.contains("1234") && message.contains("56"),
            "{message}"
        );
    }

    #[test]
    fn server_side_failures_tell_the_client_the_kind_never_the_detail() {
        let sql = ApiError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(1),
            Some("no such table: secret_stuff".into()),
        )));
        let io = ApiError::Registry(RegistryError::Io {
            context: "reading /var/lib/appliance/models/x.gguf".into(),
            source: std::io::Error::other("permission denied"),
        });
        let bug = ApiError::Internal("index out of bounds at src/x.rs:3".into());
        let pull_io = ApiError::Pull(PullError::Io {
            context: "writing /var/lib/appliance/models/.partial/x.gguf.part".into(),
            source: std::io::Error::other("permission denied"),
        });
        for error in [sql, io, bug, pull_io] {
            let body = error.body().to_string();
            for leak in ["secret_stuff", "/var/lib", "permission denied", "src/x.rs"] {
                assert!(!body.contains(leak), "{body}");
            }
            assert!(error.status().is_server_error());
        }
    }
}
