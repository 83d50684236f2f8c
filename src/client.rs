//! The CLI's client for a running daemon: the CLI talks to the daemon over the same
//! HTTP API as everyone else, never to its database behind its back.

use std::time::Duration;

use serde_json::Value;

/// Why a request to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered.
    #[error(
        "no appliance is answering at {url} ({reason}); start it with `appliance serve` or check --port/--bind"
    )]
    Unreachable {
        /// The daemon's URL.
        url: String,
        /// The connection error.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("the daemon answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error message from the body.
        message: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

/// A client bound to one daemon URL.
pub struct DaemonClient {
    base: String,
    http: reqwest::Client,
}

impl DaemonClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8470`).
    pub fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building an HTTP client with static settings");
        Self { base, http }
    }

    /// `GET path` → JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&e),
            })?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string();
            return Err(ClientError::Status {
                status: status.as_u16(),
                message,
            });
        }
        Ok(body)
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
