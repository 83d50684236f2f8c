//! The command line: clap definitions, how flags become configuration overrides, and
//! what each exit code means.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{CliOverrides, Layout};

/// Exit codes. Scripts and systemd can act on them.
pub mod exit {
    /// Success (for `doctor`: no check failed).
    pub const OK: u8 = 0;
    /// The command failed (the message says why).
    pub const FAILURE: u8 = 1;
    /// The command line could not be parsed (clap's convention).
    pub const USAGE: u8 = 2;
    /// The configuration is invalid.
    pub const CONFIG: u8 = 3;
    /// Another `serve` holds this data directory.
    pub const ALREADY_RUNNING: u8 = 4;
    /// The daemon did not answer (`status`).
    pub const UNREACHABLE: u8 = 5;
    /// `doctor` found at least one failing check.
    pub const CHECKS_FAILED: u8 = 6;
}

/// The `appliance` command.
#[derive(Debug, Parser)]
#[command(
    name = "appliance",
    version,
    about = "A self-hosted AI appliance: one daemon for local chat, documents, speech and images",
    after_help = "Commands that talk to the daemon (status, chat, docs, transcribe) pick the way: with an API key (--api-key, APPLIANCE_CLIENT_API_KEY) or --port/--bind, over TCP; otherwise over the daemon's Unix socket (server.unix_socket, in the runtime dir) when it exists and you may connect, as your Unix user (root and the daemon's user act as the built-in administrator local-admin; others as listed in server.peer_users); else over TCP.\n\nExit codes: 0 ok, 1 failure, 2 usage, 3 invalid configuration, 4 already running, 5 daemon unreachable, 6 doctor found failures."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command; each one overrides a configuration key.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: /etc/appliance/config.toml for the system service,
    /// ~/.config/appliance/config.toml otherwise).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Use the system service's directories (/var/lib/appliance, …).
    #[arg(long, global = true, conflicts_with = "user")]
    pub system: bool,
    /// Use the current user's XDG directories.
    #[arg(long, global = true)]
    pub user: bool,
    /// Print the full error chain and more log output.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Listen address [server.bind].
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Listen port [server.port].
    #[arg(long, global = true, value_name = "PORT")]
    pub port: Option<String>,
    /// Data directory [paths.data_dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Models directory [paths.models_dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Log directory [paths.log_dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Runtime directory [paths.runtime_dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Log filter [log.level], e.g. `debug` or `info,appliance=trace`.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// API key for commands that talk to the daemon [client.api_key]; without one they
    /// use the daemon's Unix socket when they can.
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Set any configuration key, e.g. `--set store.readers=4` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd runs this).
    Serve,
    /// Ask the running daemon how it is doing.
    Status {
        /// Print the daemon's JSON answer instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Show the GPUs: memory, utilisation, temperature, processes, the daemon's VRAM
    /// budget, the models on the GPU, the load queue and the start-up plan.
    Gpu {
        /// Print the JSON report instead of tables.
        #[arg(long)]
        json: bool,
        /// Refresh every N seconds until interrupted.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
    /// Check the installation offline: configuration, directories, disk, database,
    /// port, models and GPU.
    Doctor,
    /// Inspect the configuration.
    Config {
        /// Which view.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Database maintenance.
    Db {
        /// Which operation.
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Chat with a model through the running daemon (streams tokens).
    Chat(crate::commands::ChatArgs),
    /// Transcribe audio files through the running daemon (speech to text).
    Transcribe(crate::commands::transcribe::TranscribeArgs),
    /// Documents for retrieval, through the running daemon: add, list, remove, search.
    Docs {
        /// Which operation.
        #[command(subcommand)]
        command: crate::commands::docs::DocsCommand,
    },
    /// Manage user accounts (on this host, directly in the database).
    Users {
        /// Which operation.
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage API keys (on this host, directly in the database).
    Keys {
        /// Which operation.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Show the audit log.
    Audit(AuditArgs),
    /// Show usage per user and day.
    Usage(UsageArgs),
    /// TLS certificates.
    Tls {
        /// Which operation.
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Manage the chat models in the models dir.
    Models {
        /// Which operation.
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Backups: make one (while the daemon runs, or not), list, verify.
    Backup {
        /// Which operation.
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Restore a backup archive into the data dir (the daemon must be stopped; the
    /// archive is verified and restored beside the data dir, then swapped in).
    Restore {
        /// The archive (`.tar.zst`).
        file: std::path::PathBuf,
        /// Stop the running daemon first (SIGTERM, waiting for it to exit).
        #[arg(long)]
        stop: bool,
        /// Also put the backed-up configuration file in place of the current one.
        #[arg(long)]
        with_config: bool,
    },
    /// Print the version.
    Version,
    /// Internal (packaging): write the man pages and shell completions generated from
    /// these definitions into DIR (`man/`, `completions/`); scripts/package runs it.
    #[command(hide = true)]
    GenerateAssets {
        /// The output directory (created if missing).
        dir: PathBuf,
    },
    /// Internal: an inference worker process, started and supervised by `serve`.
    #[command(hide = true)]
    Worker {
        /// Which engine.
        #[command(subcommand)]
        kind: WorkerKind,
    },
}

/// `appliance worker …` (internal).
#[derive(Debug, Subcommand)]
pub enum WorkerKind {
    /// A llama.cpp chat model.
    Llm(crate::engine::worker::WorkerArgs),
    /// A sentence-embedding model (candle).
    Embed(crate::engine::worker::embed::EmbedArgs),
    /// Reads one document file into chunks, under memory and CPU limits.
    Extract(crate::documents::worker::ExtractArgs),
    /// A scripted stand-in speaking the same protocol (tests of the daemon side).
    Fake(crate::engine::worker::fake::FakeArgs),
}

/// `appliance config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every effective value and where it came from.
    Show,
    /// The commented default configuration file.
    Default,
}

/// `appliance users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users.
    List,
    /// Create a user (a random password is printed unless --password-stdin).
    Add {
        /// User name.
        name: String,
        /// Make them an administrator.
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// Role: admin, user or readonly (default user).
        #[arg(long)]
        role: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user (their sessions end, their keys stop working).
    Disable {
        /// User name.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// User name.
        name: String,
    },
    /// Delete a user with their keys, sessions and conversations.
    Delete {
        /// User name.
        name: String,
    },
    /// Override the global `[limits]` for one user (0 = unlimited).
    Limits {
        /// User name.
        name: String,
        /// Requests per minute.
        #[arg(long)]
        requests_per_minute: Option<u32>,
        /// Generated tokens per UTC day.
        #[arg(long)]
        daily_tokens: Option<u64>,
        /// Audio minutes per UTC day.
        #[arg(long)]
        daily_audio_minutes: Option<u64>,
        /// Images per UTC day.
        #[arg(long)]
        daily_images: Option<u64>,
        /// Remove every override (back to the global limits).
        #[arg(long)]
        clear: bool,
    },
    /// Set a new password (a random one is printed unless --password-stdin).
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `appliance keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key alone is printed on stdout, once.
    Create {
        /// Owner's user name.
        #[arg(long)]
        owner: String,
        /// A label.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Comma-separated scopes (chat, embeddings, audio, images, documents, admin) or `all`.
        #[arg(long, default_value = "chat")]
        scopes: String,
        /// Days until it expires, 1 to 3650 (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List keys (never their secrets).
    List {
        /// Only this user's keys.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `apl_`).
        id: String,
    },
}

/// `appliance tls …`
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a self-signed certificate and key for first use of HTTPS.
    SelfSigned(crate::commands::SelfSignedArgs),
}

/// `appliance usage`
#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    /// Only this user.
    #[arg(long)]
    pub owner: Option<String>,
    /// How many days back.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
}

/// `appliance audit`
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `appliance backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Make a backup now: the database (a consistent copy, safe while the daemon
    /// serves), uploaded files, recordings, TLS files and the configuration; model files
    /// are listed by checksum unless --with-models.
    Create {
        /// Write the archive exactly here instead of the backup dir.
        #[arg(long, value_name = "FILE")]
        to: Option<std::path::PathBuf>,
        /// Copy the model files too.
        #[arg(long)]
        with_models: bool,
        /// Mark it as made before a package upgrade (the package scripts use this).
        #[arg(long, hide = true)]
        pre_upgrade: bool,
    },
    /// List the archives in the backup dir, newest first.
    List,
    /// Check an archive: every checksum, the database's integrity and row counts.
    Verify {
        /// The archive.
        file: std::path::PathBuf,
    },
}

/// `appliance models …`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List installed models: chat (GGUF), embedding and speech models.
    List,
    /// Show one model, including its sha256.
    Show {
        /// Model name.
        name: String,
    },
    /// Delete a model's file.
    Rm {
        /// Model name.
        name: String,
    },
    /// Download a GGUF chat model from Hugging Face (or the configured mirror) through
    /// the running daemon, resuming an interrupted download.
    #[command(
        after_help = "References: hf.co/ORG/REPO:QUANT (e.g. hf.co/bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M; without :QUANT, Q4_K_M or the only GGUF file) or hf.co/ORG/REPO/FILE.gguf; huggingface.co/… and https://huggingface.co/… work too. Needs an administrator's API key."
    )]
    Pull {
        /// The model on Hugging Face.
        reference: String,
    },
    /// Write a chat model (weights and settings) into an offline bundle: a tar file with
    /// a manifest of sha256 checksums, installed elsewhere with `models import`.
    Export {
        /// Model name.
        name: String,
        /// The bundle file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Add a local model: a GGUF file (validated, then hard-linked or copied), an
    /// offline bundle made by `models export` (every checksum verified first), or a
    /// faster-whisper (CTranslate2) Whisper folder, converted to whisper.cpp's format.
    Import {
        /// The .gguf file, the bundle (.tar), or the faster-whisper folder (holding
        /// model.bin).
        path: PathBuf,
        /// Name to register it under (default: the file name without .gguf, or
        /// `whisper-…` from the folder's name).
        #[arg(long)]
        name: Option<String>,
        /// Where Whisper's vocabularies and mel filters are (gpt2.tiktoken,
        /// multilingual.tiktoken, mel_filters.npz); default: whisper-assets in the
        /// models dir.
        #[arg(long)]
        assets: Option<PathBuf>,
    },
}

/// `appliance db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations.
    Migrate,
}

impl GlobalArgs {
    /// The configuration overrides these flags express. Relative directories are made
    /// absolute against the working directory, as a shell user would expect.
    pub fn overrides(&self) -> Result<CliOverrides, String> {
        let mut settings = Vec::new();
        let mut push = |key: &str, value: String, flag: &str| {
            settings.push((key.to_string(), value, flag.to_string()));
        };
        if let Some(v) = &self.bind {
            push("server.bind", v.clone(), "--bind");
        }
        if let Some(v) = &self.port {
            push("server.port", v.clone(), "--port");
        }
        for (value, key, flag) in [
            (&self.data_dir, "paths.data_dir", "--data-dir"),
            (&self.models_dir, "paths.models_dir", "--models-dir"),
            (&self.log_dir, "paths.log_dir", "--log-dir"),
            (&self.runtime_dir, "paths.runtime_dir", "--runtime-dir"),
        ] {
            if let Some(dir) = value {
                push(key, absolute(dir).display().to_string(), flag);
            }
        }
        if let Some(v) = &self.log_level {
            push("log.level", v.clone(), "--log-level");
        }
        if let Some(v) = &self.api_key {
            push("client.api_key", v.clone(), "--api-key");
        }
        for pair in &self.set {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                format!("--set {pair}: expected KEY=VALUE, e.g. --set server.port=9000")
            })?;
            push(
                key.trim(),
                value.to_string(),
                &format!("--set {}", key.trim()),
            );
        }
        let layout = if self.system {
            Some(Layout::System)
        } else if self.user {
            Some(Layout::User)
        } else {
            None
        };
        Ok(CliOverrides {
            config_file: self.config.clone(),
            layout,
            settings,
        })
    }
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // Catches duplicate flag names between global and subcommand options.
        super::Cli::command().debug_assert();
    }
}
