//! # Appliance
//!
//! One daemon that serves a web UI, OpenAI- and Ollama-compatible APIs and an admin
//! API over a single SQLite database, and the `appliance` CLI that administers it.
//!
//! # Layout
//!
//! Dependencies point one way: `commands → app → {http, store, models, gpu, health,
//! telemetry, lock} → config`. `store` and the engines never import `http`.
//!
//! - [`auth`]: roles, scopes, password hashing, key/session token formats, [`auth::Principal`].
//! - [`chat`]: the chat domain: prompts from conversations, recording exchanges,
//!   titles, import checks.
//! - [`cli`]: clap definitions, flag → configuration mapping, exit codes.
//! - [`commands`]: one function per subcommand; `serve` assembles the daemon.
//! - [`config`]: the only reader of configuration files and the environment.
//! - [`app`]: [`app::AppState`], the daemon's shared handles, and readiness.
//! - [`http`]: axum router, middleware, wire formats, the one error → status map.
//! - [`engine`]: supervised inference worker processes (llama.cpp chat, candle
//!   embeddings) and the daemon's handle on them; [`engine::worker`] is the worker
//!   process itself.
//! - [`documents`]: collections' files, extraction (in a limited child process),
//!   chunking, embedding, hybrid search.
//! - [`jobs`]: durable background jobs with retries, cancel and resume after a crash.
//! - [`store`]: the SQLite database on its own threads; the only module with SQL.
//! - [`models`]: model files on disk and the default model manifest.
//! - [`monitor`]: the sampling thread behind the admin system graphs.
//! - [`gpu`]: the GPUs behind the `GpuProbe` seam (NVML, the only code that talks to
//!   the NVIDIA driver, and a simulated GPU for tests).
//! - [`backup`]: archives of the database, files and configuration; verify, restore.
//! - [`hashing`]: sha256 while reading.
//! - [`notify`]: notifications to webhooks, and what raises them.
//! - [`health`]: checks shared by `doctor` and `/readyz`.
//! - [`telemetry`]: logging, Prometheus metrics, process statistics.
//! - [`limits`]: per-user rate limits, daily quotas and usage accounting.
//! - [`lock`]: the single-instance lock.
//! - [`client`]: the CLI's HTTP client for a running daemon.

pub mod app;
pub mod auth;
pub mod backup;
pub mod chat;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod documents;
pub mod engine;
pub mod gpu;
pub mod hashing;
pub mod health;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod lock;
pub mod models;
pub mod monitor;
pub mod notify;
pub mod speech;
pub mod store;
pub mod telemetry;
