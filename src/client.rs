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
    /// The daemon reported a failure in the middle of a stream.
    #[error("{0}")]
    Failed(String),
}

/// The message of an error body in the OpenAI or the Ollama shape.
fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or("no message")
        .to_string()
}

/// A client bound to one daemon URL.
pub struct DaemonClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

impl DaemonClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8470`) sending `api_key` if set.
    /// For `https` the daemon's own certificate (`tls.cert`) is trusted besides the
    /// system's roots, so a self-signed certificate works on this host.
    pub fn new(base: String, api_key: &str) -> Self {
        Self::with_tls(base, api_key, None)
    }

    /// [`DaemonClient::new`] trusting the PEM certificates in `cert` too.
    pub fn with_tls(base: String, api_key: &str, cert: Option<&std::path::Path>) -> Self {
        tls_provider();
        // No overall timeout: a chat reply streams for as long as it takes.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(Duration::from_secs(600));
        if let Some(pem) = cert.and_then(|c| fs_err::read(c).ok()) {
            let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .expect("building an HTTP client with static settings");
        let api_key = (!api_key.is_empty()).then(|| api_key.to_string());
        Self {
            base,
            http,
            api_key,
        }
    }

    /// `GET path` → JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        check(response).await
    }

    /// Sends `request` with this client's API key, if any.
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        request.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })
    }
}

impl DaemonClient {
    /// `POST path` with a JSON body → JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let response = self.send_post(path, body).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET path`, answered as text (an export).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let request = self.http.get(format!("{}{path}", self.base));
        let response = self.send(request).await?;
        if response.status().is_success() {
            return response
                .text()
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()));
        }
        check(response).await.map(|v| v.to_string())
    }

    /// `POST path` and read the answer as server-sent events, calling `on_event` with
    /// each `data:` payload parsed as JSON (`[DONE]` ends the stream).
    pub async fn post_sse(
        &self,
        path: &str,
        body: &Value,
        mut on_event: impl FnMut(Value),
    ) -> Result<(), ClientError> {
        let mut response = self.send_post(path, body).await?;
        let mut buffer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Protocol(root_cause(&e)))?
        {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = find(&buffer, b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&event).lines() {
                    let Some(data) = line.strip_prefix("data: ") else {
                        continue;
                    };
                    if data == "[DONE]" {
                        return Ok(());
                    }
                    let value: Value = serde_json::from_str(data)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    on_event(value);
                }
            }
        }
        Ok(())
    }

    /// `POST path` and read the answer as newline-delimited JSON (Ollama's streams),
    /// calling `on_line` with each object. A line carrying `error` ends the stream with
    /// [`ClientError::Failed`]. Errors before the stream are read in either the OpenAI
    /// (`{"error": {"message"}}`) or the Ollama (`{"error": "…"}`) shape.
    pub async fn post_ndjson(
        &self,
        path: &str,
        body: &Value,
        mut on_line: impl FnMut(Value),
    ) -> Result<(), ClientError> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        let mut response = self.send(request).await?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or_default();
            return Err(ClientError::Status {
                status,
                message: error_message(&body),
            });
        }
        let mut buffer = Vec::new();
        let mut handle = |line: &[u8]| -> Result<(), ClientError> {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let value: Value =
                serde_json::from_slice(line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            if value.get("error").is_some() {
                return Err(ClientError::Failed(error_message(&value)));
            }
            on_line(value);
            Ok(())
        };
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Protocol(root_cause(&e)))?
        {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                handle(&line)?;
            }
        }
        handle(&buffer)
    }

    /// `DELETE path` (any 2xx is success).
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let request = self.http.delete(format!("{}{path}", self.base));
        let response = self.send(request).await?;
        check(response).await.map(|_| ())
    }

    /// `POST path` with `file` as the multipart part `file`, streamed from disk;
    /// `on_progress(sent, total)` follows the upload. Returns the JSON answer.
    pub async fn upload(
        &self,
        path: &str,
        file: &std::path::Path,
        on_progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<Value, ClientError> {
        self.upload_with(path, file, &[], on_progress).await
    }

    /// [`DaemonClient::upload`] with text `fields` sent before the file.
    pub async fn upload_with(
        &self,
        path: &str,
        file: &std::path::Path,
        fields: &[(&'static str, String)],
        on_progress: impl Fn(u64, u64) + Send + Sync + 'static,
    ) -> Result<Value, ClientError> {
        use futures_util::StreamExt;
        let cannot = |e: std::io::Error| {
            ClientError::Protocol(format!("cannot read {}: {e}", file.display()))
        };
        let total = tokio::fs::metadata(file).await.map_err(cannot)?.len();
        let reader = tokio::fs::File::open(file).await.map_err(cannot)?;
        let mut sent = 0u64;
        let stream = tokio_util::io::ReaderStream::new(reader).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                sent += chunk.len() as u64;
                on_progress(sent, total);
            }
        });
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".into());
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), total)
                .file_name(name);
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(*name, value.clone());
        }
        let form = form.part("file", part);
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .multipart(form);
        let response = self.send(request).await?;
        check(response).await
    }

    async fn send_post(&self, path: &str, body: &Value) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.post(&url).json(body);
        let response = self.send(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        Err(ClientError::Status { status, message })
    }
}

/// The JSON body of a successful answer, or the daemon's error.
async fn check(response: reqwest::Response) -> Result<Value, ClientError> {
    let status = response.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let body = response.json::<Value>().await;
    if status.is_success() {
        return body.map_err(|e| ClientError::Protocol(e.to_string()));
    }
    let body = body.unwrap_or_default();
    Err(ClientError::Status {
        status: status.as_u16(),
        message: body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string(),
    })
}

/// Installs the process's TLS implementation (ring) once; every rustls user (the
/// daemon's HTTPS listener, this client) needs it before its first handshake.
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
