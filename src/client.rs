//! The CLI's client for a running daemon: the CLI talks to the daemon over the same
//! HTTP API as everyone else, never to its database behind its back.
//!
//! How it reaches the daemon ([`DaemonClient::for_cli`]): with an API key, or with
//! `--port`/`--bind` on the command line, over TCP to the configured address; otherwise
//! over the daemon's Unix socket when it is there and this user may connect (the
//! daemon then knows who is asking from the kernel, so no key is needed); else over
//! TCP, where a key is needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::{Loaded, Source};

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
    /// Where it connects, for messages: the URL, or `unix:PATH`.
    endpoint: String,
    /// Added to a 401: why no credential was sent.
    hint: Option<String>,
}

/// How the CLI reaches the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Over TCP to the configured address; `why_not_socket` says why the Unix socket
    /// was not used when no API key was given (for the 401's message).
    Tcp {
        /// Why the socket was not used, if that matters.
        why_not_socket: Option<String>,
    },
    /// Over the daemon's Unix socket, authenticated as this process's Unix user.
    Unix(PathBuf),
}

/// Chooses the transport: an API key or a TCP address named on the command line means
/// TCP; else the Unix socket if `probe` can connect to it; else TCP.
pub fn choose_transport(
    api_key: bool,
    tcp_named: bool,
    socket: Option<&Path>,
    probe: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Transport {
    if api_key {
        return Transport::Tcp {
            why_not_socket: None,
        };
    }
    let why_not = |why: String| Transport::Tcp {
        why_not_socket: Some(why),
    };
    let Some(socket) = socket else {
        return why_not("the daemon has no Unix socket (server.unix_socket is empty)".into());
    };
    if tcp_named {
        return why_not(format!(
            "--port/--bind name a TCP address, so the Unix socket {} was not used",
            socket.display()
        ));
    }
    match probe(socket) {
        Ok(()) => Transport::Unix(socket.to_path_buf()),
        Err(e) => why_not(format!(
            "the Unix socket {} is not usable: {}",
            socket.display(),
            match e.kind() {
                std::io::ErrorKind::NotFound =>
                    "it does not exist (is the daemon running with this configuration?)".to_string(),
                std::io::ErrorKind::PermissionDenied =>
                    "permission denied (ask an administrator to add you to the socket's group)"
                        .to_string(),
                std::io::ErrorKind::ConnectionRefused => "nothing listens on it".to_string(),
                _ => e.to_string(),
            }
        )),
    }
}

impl DaemonClient {
    /// The client a CLI command uses, per [`choose_transport`]: the configured API key
    /// (`client.api_key`, `--api-key`) or `--port`/`--bind` on the command line mean
    /// TCP; else the Unix socket (`server.unix_socket`) when it answers; else TCP.
    pub fn for_cli(loaded: &Loaded) -> DaemonClient {
        let config = &loaded.config;
        let flag = |key: &str| matches!(loaded.source_of(key), Some(Source::Flag(_)));
        let socket = config.unix_socket_path();
        let transport = choose_transport(
            !config.client.api_key.is_empty(),
            flag("server.port") || flag("server.bind"),
            socket.as_deref(),
            |path| std::os::unix::net::UnixStream::connect(path).map(drop),
        );
        match transport {
            Transport::Unix(path) => Self::over_unix_socket(&path),
            Transport::Tcp { why_not_socket } => {
                let mut client = Self::with_tls(
                    config.local_url(),
                    &config.client.api_key,
                    config.tls_enabled().then_some(config.tls.cert.as_path()),
                );
                client.hint = why_not_socket.map(|why| {
                    format!(
                        "no API key was given (--api-key or APPLIANCE_CLIENT_API_KEY), and {why}"
                    )
                });
                client
            }
        }
    }

    /// A client of the daemon's Unix socket at `path` (plain HTTP; the daemon
    /// authenticates this process's Unix user).
    pub fn over_unix_socket(path: &Path) -> Self {
        let http = reqwest::Client::builder()
            .unix_socket(path)
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(Duration::from_secs(600))
            .build()
            .expect("building an HTTP client with static settings");
        Self {
            // The daemon's Host allow-list accepts `localhost`.
            base: "http://localhost".to_string(),
            http,
            api_key: None,
            endpoint: format!("unix:{}", path.display()),
            hint: None,
        }
    }

    /// Where this client connects: the daemon's URL, or `unix:PATH`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

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
            endpoint: base.clone(),
            base,
            http,
            api_key,
            hint: None,
        }
    }

    /// `GET path` → JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let response = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        self.check(response).await
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
            url: self.endpoint.clone(),
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
        self.check(response).await.map(|v| v.to_string())
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
        self.check(response).await.map(|_| ())
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
        self.check(response).await
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
        Err(self.status_error(status, &body))
    }

    /// The JSON body of a successful answer, or the daemon's error.
    async fn check(&self, response: reqwest::Response) -> Result<Value, ClientError> {
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let body = response.json::<Value>().await;
        if status.is_success() {
            return body.map_err(|e| ClientError::Protocol(e.to_string()));
        }
        Err(self.status_error(status.as_u16(), &body.unwrap_or_default()))
    }

    /// The daemon's error answer, with this client's hint on a 401.
    fn status_error(&self, status: u16, body: &Value) -> ClientError {
        let mut message = body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        if let (401, Some(hint)) = (status, &self.hint) {
            message = format!("{message} ({hint})");
        }
        ClientError::Status { status, message }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: std::io::ErrorKind) -> impl FnOnce(&Path) -> std::io::Result<()> {
        move |_: &Path| Err(kind.into())
    }

    #[test]
    fn the_socket_is_used_only_without_a_key_or_a_named_tcp_address() {
        let socket = Path::new("/run/appliance/appliance.sock");
        assert_eq!(
            choose_transport(false, false, Some(socket), |_| Ok(())),
            Transport::Unix(socket.to_path_buf())
        );
        // An explicit key means TCP, and so does an address on the command line.
        assert_eq!(
            choose_transport(true, false, Some(socket), |_| Ok(())),
            Transport::Tcp {
                why_not_socket: None
            }
        );
        assert!(matches!(
            choose_transport(false, true, Some(socket), |_| Ok(())),
            Transport::Tcp { why_not_socket: Some(why) } if why.contains("--port")
        ));
        // A socket that is missing, closed to this user or stale: TCP, saying why.
        for (kind, says) in [
            (std::io::ErrorKind::NotFound, "does not exist"),
            (std::io::ErrorKind::PermissionDenied, "permission denied"),
            (std::io::ErrorKind::ConnectionRefused, "nothing listens"),
        ] {
            match choose_transport(false, false, Some(socket), refused(kind)) {
                Transport::Tcp {
                    why_not_socket: Some(why),
                } => assert!(
                    why.contains(says) && why.contains("appliance.sock"),
                    "{why}"
                ),
                other => panic!("{kind:?}: {other:?}"),
            }
        }
        assert!(matches!(
            choose_transport(false, false, None, |_| Ok(())),
            Transport::Tcp { why_not_socket: Some(why) } if why.contains("server.unix_socket")
        ));
    }
}
