//! Configuration: the one place that reads configuration files and the environment.
//!
//! Values come in four layers, each overriding the one before:
//! compiled defaults (`default.toml`, embedded) < the TOML file < `APPLIANCE_*`
//! environment variables < command-line flags. Every effective value remembers the
//! layer it came from ([`Source`]) so `appliance config show` can say so. Unknown keys
//! and ill-typed values are rejected naming the file (or variable, or flag) and the key.
//!
//! Nothing else in the crate calls `std::env::var`: the environment is captured once
//! into an [`Environment`] and handed here. (Libraries that speak a protocol through
//! the environment, such as `sd-notify` reading `NOTIFY_SOCKET`, are the exception.)

mod layers;
mod paths;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use layers::ConfigError;
pub use paths::Layout;

/// The commented default configuration file; also the source of the compiled defaults.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Environment variables that are not a `section.key` setting.
pub const ENV_CONFIG_FILE: &str = "APPLIANCE_CONFIG";
/// Chooses the directory layout: `user` or `system`.
pub const ENV_LAYOUT: &str = "APPLIANCE_LAYOUT";
/// The conventional log filter variable; it overrides `log.level`.
pub const ENV_RUST_LOG: &str = "RUST_LOG";

/// The effective configuration of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener settings.
    pub server: ServerConfig,
    /// Where data, models, logs and runtime files live.
    pub paths: PathsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The SQLite store.
    pub store: StoreConfig,
    /// Readiness thresholds.
    pub health: HealthConfig,
    /// Inference engines.
    pub engine: EngineSection,
    /// Authentication.
    pub auth: AuthSection,
    /// What CLI commands send to the daemon.
    pub client: ClientSection,
    /// Per-user rate limits and daily quotas.
    pub limits: Limits,
    /// HTTPS.
    pub tls: TlsSection,
    /// Documents and retrieval.
    pub documents: DocumentsSection,
    /// Background jobs.
    pub jobs: JobsSection,
    /// Speech to text.
    pub speech: SpeechSection,
    /// Downloading models from Hugging Face (or a mirror).
    pub pull: PullSection,
    /// The GPU budget.
    pub gpu: GpuSection,
    /// Backups.
    pub backup: BackupSection,
    /// Notifications.
    pub notify: NotifySection,
    /// Per-model settings, by model name (`[models."name"]`; file only).
    #[serde(default)]
    pub models: BTreeMap<String, ModelSection>,
}

/// `[notify]` (its `Debug` leaves the webhook URLs out: they are secrets).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// `kind:URL` targets.
    pub webhooks: Vec<String>,
    /// Minutes before the same event is sent again.
    pub min_interval_minutes: u64,
    /// GPU temperature that notifies, °C.
    pub gpu_temperature_c: u32,
    /// Email recipients (`ops@example.com` or `Ops <ops@example.com>`; none: no email).
    pub email_to: Vec<String>,
    /// The email sender.
    pub email_from: String,
    /// The SMTP relay.
    pub smtp_host: String,
    /// Its port.
    pub smtp_port: u16,
    /// `starttls`, `tls` (implicit) or `none` (a relay on this host only).
    pub smtp_security: String,
    /// Signs in as this user (empty: no authentication).
    pub smtp_username: String,
    /// A file holding the password (read at start-up; the password itself is never in
    /// the config).
    pub smtp_password_file: PathBuf,
}

impl fmt::Debug for NotifySection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySection")
            .field("webhooks", &format!("({} set)", self.webhooks.len()))
            .field("min_interval_minutes", &self.min_interval_minutes)
            .field("gpu_temperature_c", &self.gpu_temperature_c)
            .field("email_to", &format!("({} set)", self.email_to.len()))
            .field("email_from", &self.email_from)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_security", &self.smtp_security)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password_file", &self.smtp_password_file)
            .finish()
    }
}

/// `[backup]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Where archives go (empty: `<data_dir>/backups`).
    pub dir: PathBuf,
    /// Hours between scheduled backups (0: none).
    pub schedule_hours: u64,
    /// Scheduled archives kept.
    pub keep: u32,
}

/// `[gpu]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSection {
    /// MiB of GPU memory kept free for other processes and fragmentation.
    pub reserve_mb: u64,
    /// The most MiB the daemon's models may hold together; 0 = all free memory.
    pub budget_mb: u64,
    /// Loads that may wait for GPU memory at once.
    pub max_queued_loads: u32,
}

/// `[models."name"]`: one model's settings; what is left out comes from `[engine]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Layers on the GPU (-1: as many as fit).
    pub gpu_layers: Option<i64>,
    /// Context tokens per request.
    pub ctx_per_slot: Option<u32>,
    /// Parallel sequences.
    pub slots: Option<u32>,
    /// Residency after the last request (see [`parse_keep_alive`]).
    pub keep_alive: Option<String>,
    /// Never unloaded for room or by time.
    #[serde(default)]
    pub pinned: bool,
    /// Loaded when the daemon starts.
    #[serde(default)]
    pub preload: bool,
}

/// `[pull]` (its `Debug` leaves the token out).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSection {
    /// The hub's base URL (Hugging Face or a mirror serving the same paths).
    pub hub_url: String,
    /// An HTTP(S) proxy for pulls; empty: direct (the environment is not consulted).
    pub proxy: String,
    /// A Hugging Face token, sent to `hub_url` only; empty: none.
    pub token: String,
    /// Largest file a pull may download, in bytes.
    pub max_download_bytes: u64,
    /// Free space (MiB) that must remain after a download.
    pub free_space_margin_mb: u64,
    /// Seconds to connect.
    pub connect_timeout_secs: u64,
    /// Seconds without a byte before a download is dropped and resumed.
    pub stall_timeout_secs: u64,
    /// Resumptions without progress before a pull fails.
    pub retries: u32,
}

impl fmt::Debug for PullSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSection")
            .field("hub_url", &self.hub_url)
            .field("proxy", &self.proxy)
            .field("token", &if self.token.is_empty() { "" } else { "(set)" })
            .field("max_download_bytes", &self.max_download_bytes)
            .field("free_space_margin_mb", &self.free_space_margin_mb)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("stall_timeout_secs", &self.stall_timeout_secs)
            .field("retries", &self.retries)
            .finish()
    }
}

/// `[speech]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechSection {
    /// The model used when a request names none (or `whisper-1`, `default`).
    pub default_model: String,
    /// Requests transcribed at once per model; 0 = cores / threads.
    pub parallel: u32,
    /// CPU threads per transcription; 0 = `engine.threads`.
    pub threads: u32,
    /// Beam width (1 = greedy).
    pub beam_size: u32,
    /// Largest audio file accepted, bytes.
    pub max_file_bytes: u64,
    /// Longest audio accepted, seconds.
    pub max_audio_secs: u64,
    /// Seconds of processing allowed per second of audio, beyond the request deadline.
    pub max_realtime_factor: f64,
    /// Audio longer than this (seconds) sent to OpenAI's API runs as a job.
    pub job_threshold_secs: u64,
    /// The worker executable; empty = `appliance-stt-worker` beside the daemon.
    pub worker_path: PathBuf,
}

/// `[documents]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsSection {
    /// Largest file an upload may send, in bytes.
    pub max_file_bytes: u64,
    /// Tokens (of the embedding model) per chunk.
    pub chunk_tokens: u32,
    /// Tokens of overlap between neighbouring chunks.
    pub chunk_overlap: u32,
    /// Memory the extraction process may use, in MiB.
    pub extract_memory_mb: u64,
    /// Seconds reading one file may take.
    pub extract_timeout_secs: u64,
    /// Let URLs reach private, loopback and link-local addresses.
    pub allow_private_urls: bool,
    /// Largest page or file a URL may return, in bytes.
    pub max_url_bytes: u64,
    /// Seconds fetching a URL may take.
    pub url_timeout_secs: u64,
    /// Least cosine similarity for a passage to count as relevant.
    pub min_score: f32,
    /// Passages put into a chat prompt at most.
    pub context_chunks: u32,
}

/// `[jobs]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    /// Jobs run at once.
    pub concurrency: u32,
    /// Seconds before the first retry of a failed attempt (each further one waits 4x).
    pub retry_base_secs: u64,
}

/// `[tls]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain (empty: no TLS).
    pub cert: PathBuf,
    /// PEM private key (empty: no TLS).
    pub key: PathBuf,
}

/// `[limits]` (also the shape of per-user overrides); 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Requests per minute through one API key (global only; overrides ignore it).
    #[serde(default)]
    pub key_requests_per_minute: u32,
    /// Generated tokens per UTC day.
    pub daily_generated_tokens: u64,
    /// Audio minutes per UTC day.
    pub daily_audio_minutes: u64,
    /// Images per UTC day.
    pub daily_images: u64,
    /// Requests per minute from one client address to routes that need no credentials
    /// (global only; overrides ignore it).
    #[serde(default)]
    pub public_requests_per_minute: u32,
}

/// `[client]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// API key for `status`/`chat` (empty: none).
    pub api_key: String,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Require credentials.
    pub enabled: bool,
    /// Session lifetime in hours.
    pub session_hours: u64,
    /// Failures before login delays start.
    pub login_free_failures: u32,
    /// Password hashes computed at once (each takes ~19 MiB and a core for ~50 ms).
    pub max_concurrent_hashes: usize,
    /// Days audit entries are kept.
    pub audit_retention_days: u32,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// TCP port (0 picks a free one, useful for tests).
    pub port: u16,
    /// Host names accepted in `Host`/`Origin` besides IPs and localhost.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed cross-origin access (CORS).
    pub cors_origins: Vec<String>,
    /// Serve the UI from this directory (development); empty: embedded.
    pub ui_dir: PathBuf,
    /// Seconds in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Body limit of JSON API routes.
    pub max_json_body_bytes: usize,
    /// Body limit of chat and completion routes.
    pub max_inference_body_bytes: usize,
    /// Seconds a client has to send a request head.
    pub header_timeout_secs: u64,
    /// Seconds a request body may pause between parts before it is abandoned.
    pub body_timeout_secs: u64,
    /// Open connections at once, from everyone.
    pub max_connections: usize,
    /// Open connections at once from one client address.
    pub max_connections_per_address: usize,
    /// The Unix socket for local clients; relative to `paths.runtime_dir`; empty: none.
    pub unix_socket: PathBuf,
    /// The socket's group; empty: the daemon's own.
    pub unix_socket_group: String,
    /// Unix users who may act on the socket as an appliance user: `unix` or `unix=appliance`.
    pub peer_users: Vec<String>,
}

impl ServerConfig {
    /// The appliance user a Unix user acts as on the socket, if `peer_users` lists them.
    pub fn peer_user(&self, unix_name: &str) -> Option<&str> {
        self.peer_users
            .iter()
            .filter_map(|entry| split_peer_user(entry))
            .find(|(unix, _)| *unix == unix_name)
            .map(|(_, appliance)| appliance)
    }
}

/// `unix` or `unix=appliance` → `(unix, appliance)`; `None` when malformed.
fn split_peer_user(entry: &str) -> Option<(&str, &str)> {
    let (unix, appliance) = entry.split_once('=').unwrap_or((entry, entry));
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '$'))
    };
    (name(unix) && name(appliance)).then_some((unix, appliance))
}

/// `[paths]` — always absolute and non-empty once loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// SQLite database, uploads, the instance lock.
    pub data_dir: PathBuf,
    /// Model weights.
    pub models_dir: PathBuf,
    /// Rotated log files.
    pub log_dir: PathBuf,
    /// Sockets and other per-boot files.
    pub runtime_dir: PathBuf,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter directive.
    pub level: String,
    /// Console format.
    pub format: LogFormat,
    /// Whether to write rotated files to the log dir.
    pub file: bool,
    /// How many daily files to keep.
    pub retention_days: usize,
}

/// Console log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite busy timeout.
    pub busy_timeout_ms: u64,
    /// Number of read-only connection threads.
    pub readers: usize,
}

/// `[health]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Free space below which the data dir's disk counts as failing.
    pub min_free_disk_mb: u64,
}

/// `[engine]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Model used when a request names none.
    pub default_model: String,
    /// Parallel sequences per model.
    pub slots: u32,
    /// Waiting requests beyond the slots.
    pub queue: u32,
    /// Context tokens per request.
    pub ctx_per_slot: u32,
    /// Threads per worker (0 = cores).
    pub threads: u32,
    /// Layers on the GPU (-1: as many as fit, 0: none).
    pub gpu_layers: i64,
    /// Per-request deadline in seconds.
    pub request_timeout_secs: u64,
    /// Default keep-alive (see [`parse_keep_alive`]).
    pub keep_alive: String,
    /// Model load deadline in seconds.
    pub load_timeout_secs: u64,
    /// Chat models loaded at once; loading another unloads the least recently used
    /// idle one.
    pub max_loaded_models: u32,
    /// Running or queued requests one user may hold per model (0: half of slots +
    /// queue, rounded up).
    pub max_requests_per_user: u32,
    /// The longest keep-alive a request from a non-administrator may ask for.
    pub user_max_keep_alive: String,
    /// Largest prompt, in bytes of text, a request may send to a model.
    pub max_prompt_bytes: usize,
    /// The embedding model used when a request names none or "default" (a directory
    /// in the models dir).
    pub default_embedding_model: String,
}

/// The longest keep-alive a value can express; longer values are clamped to it.
pub const MAX_KEEP_ALIVE_SECS: f64 = 365.0 * 86_400.0;

/// Parses a keep-alive: a duration in Go's notation as Ollama takes it (`5m`, `30s`,
/// `1h30m`, `250ms`, `1.5h`), plain seconds, `0` (unload right away) or any negative
/// number (forever). Values beyond a year are clamped to a year. `None` when
/// malformed, including NaN and infinities: a client-supplied number never reaches
/// `Duration` arithmetic unchecked.
pub fn parse_keep_alive(text: &str) -> Option<Option<std::time::Duration>> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let secs = match text.parse::<f64>() {
        Ok(n) => n,
        Err(_) => {
            let (negative, mut rest) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text.strip_prefix('+').unwrap_or(text)),
            };
            let mut total = 0.0;
            while !rest.is_empty() {
                let split = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .filter(|at| *at > 0)?;
                let number: f64 = rest[..split].parse().ok()?;
                rest = &rest[split..];
                let unit_len = rest
                    .find(|c: char| c.is_ascii_digit() || c == '.')
                    .unwrap_or(rest.len());
                let scale = match &rest[..unit_len] {
                    "ns" => 1e-9,
                    "us" | "µs" => 1e-6,
                    "ms" => 1e-3,
                    "s" => 1.0,
                    "m" => 60.0,
                    "h" => 3600.0,
                    _ => return None,
                };
                total += number * scale;
                rest = &rest[unit_len..];
            }
            if negative { -total } else { total }
        }
    };
    if !secs.is_finite() {
        return None;
    }
    if secs < 0.0 {
        return Some(None);
    }
    std::time::Duration::try_from_secs_f64(secs.min(MAX_KEEP_ALIVE_SECS))
        .ok()
        .map(Some)
}

impl Config {
    /// Database file inside the data dir.
    pub fn database_path(&self) -> PathBuf {
        self.paths.data_dir.join("appliance.db")
    }

    /// Where backup archives go.
    pub fn backup_dir(&self) -> PathBuf {
        if self.backup.dir.as_os_str().is_empty() {
            self.paths.data_dir.join("backups")
        } else {
            self.backup.dir.clone()
        }
    }

    /// The instance lock file inside the data dir.
    pub fn lock_path(&self) -> PathBuf {
        self.paths.data_dir.join("appliance.lock")
    }

    /// The daemon's Unix socket, if it has one: `server.unix_socket`, inside the runtime
    /// dir when relative.
    pub fn unix_socket_path(&self) -> Option<PathBuf> {
        let path = &self.server.unix_socket;
        (!path.as_os_str().is_empty()).then(|| self.paths.runtime_dir.join(path))
    }

    /// Whether the daemon serves HTTPS.
    pub fn tls_enabled(&self) -> bool {
        !self.tls.cert.as_os_str().is_empty()
    }

    /// The URL clients on this host use to reach the daemon.
    pub fn local_url(&self) -> String {
        let host = match self.server.bind {
            IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let scheme = if self.tls_enabled() { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.server.port)
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The compiled default.
    Default,
    /// Derived from the directory layout (a path default).
    Layout(Layout),
    /// A configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::Layout(layout) => write!(f, "default for the {layout} layout"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A captured copy of the process environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// Reads the real process environment (the only place that does).
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that reads the environment"
    )]
    pub fn capture() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// Builds an environment from explicit pairs (tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The user's home-based directories need `HOME`; `directories` reads it itself,
    /// so this only exists to decide on a runtime dir.
    fn xdg_runtime_dir(&self) -> Option<PathBuf> {
        self.get("XDG_RUNTIME_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    }
}

/// What the command line contributes to configuration.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    /// `--config PATH`.
    pub config_file: Option<PathBuf>,
    /// `--system` / `--user`.
    pub layout: Option<Layout>,
    /// `(key, value, flag)`: e.g. `("server.port", "9000", "--port")`.
    pub settings: Vec<(String, String, String)>,
}

/// A loaded configuration and the provenance of each value.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The directory layout that supplied path defaults.
    pub layout: Layout,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// Every key (`section.key`) with its effective value and source.
    pub values: BTreeMap<String, (toml::Value, Source)>,
}

impl Loaded {
    /// The source of one key's effective value.
    pub fn source_of(&self, key: &str) -> Option<&Source> {
        self.values.get(key).map(|(_, source)| source)
    }

    /// The configuration file for display: its path, or a note that none was read.
    pub fn file_path_display(&self) -> String {
        match &self.file {
            Some(path) => path.display().to_string(),
            None => "(none: no configuration file found, defaults in effect)".to_string(),
        }
    }
}

/// Loads the configuration from every layer.
pub fn load(cli: &CliOverrides, env: &Environment) -> Result<Loaded, ConfigError> {
    layers::load(cli, env)
}

/// The default configuration file location for a layout.
pub fn default_config_file(layout: Layout) -> Option<PathBuf> {
    paths::default_config_file(layout)
}

#[cfg(test)]
mod tests;
