//! Inference engines: the daemon side of the model workers.
//!
//! Each loaded chat model runs in its own worker process (`appliance worker llm`, see
//! [`worker`]) that owns the llama.cpp model and context. The daemon talks to it over
//! [`protocol`] and never runs inference itself. A worker that crashes takes only its
//! own requests down: they get [`EngineError::EngineCrashed`], and the next request
//! starts a fresh worker. Killing a worker frees all of its memory (and VRAM).
//!
//! [`Engine`] is the cheap handle the HTTP layer holds: it loads models on first use,
//! admits at most `slots + queue` requests per model (then [`EngineError::Busy`]),
//! enforces per-request deadlines, unloads idle models after their keep-alive, and
//! cancels a generation when its [`Generation`] is dropped (the client went away).

pub mod protocol;
mod supervisor;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Mutex;

pub use protocol::{ChatMessage, Constraint, FinishReason, Prompt, SamplingParams, Usage};
use supervisor::LlmWorker;

use crate::telemetry::Metrics;
pub use supervisor::{FinishHook, GenEvent, Generation};

/// Errors a caller of the engine can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The server is at capacity for this model; retry later.
    #[error(
        "model `{model}` is busy: {in_flight} requests are running or queued (limit {limit}); retry in {retry_after_secs} s"
    )]
    Busy {
        /// The model.
        model: String,
        /// Requests admitted now.
        in_flight: usize,
        /// Slots + queue.
        limit: usize,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// The prompt does not fit the model's per-request context.
    #[error(
        "the prompt has {prompt_tokens} tokens but this model's context holds {n_ctx} per request (including at least one generated token); shorten the conversation or the input"
    )]
    ContextOverflow {
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Tokens that fit.
        n_ctx: u32,
    },
    /// The request cannot be served as asked (bad grammar, no chat template, …).
    #[error("{0}")]
    InvalidRequest(String),
    /// The worker could not load the model.
    #[error("model `{model}` failed to load: {detail}")]
    LoadFailed {
        /// The model.
        model: String,
        /// What the worker said.
        detail: String,
    },
    /// The worker process died while serving this request.
    #[error(
        "the inference worker for `{model}` crashed ({detail}); the request was aborted and the next request starts a new worker"
    )]
    EngineCrashed {
        /// The model.
        model: String,
        /// Exit status or signal.
        detail: String,
    },
    /// The request ran past its deadline and was cancelled.
    #[error("the request exceeded its deadline of {secs} s and was cancelled")]
    Timeout {
        /// The deadline.
        secs: u64,
    },
    /// llama.cpp failed while decoding.
    #[error("inference failed: {0}")]
    Decode(String),
}

/// Engine settings (from `[engine]`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Parallel sequences per loaded model.
    pub slots: u32,
    /// Requests that may wait beyond the slots.
    pub queue: u32,
    /// Context tokens per slot.
    pub ctx_per_slot: u32,
    /// Decode threads per worker.
    pub threads: u32,
    /// Layers offloaded to the GPU.
    pub gpu_layers: u32,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// How long an idle model stays loaded when the request does not say.
    pub keep_alive: KeepAlive,
    /// How long a worker may take to load a model.
    pub load_timeout: Duration,
}

/// How long a model stays loaded after its last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload after this long idle (zero: right after the request).
    For(Duration),
    /// Never unload automatically.
    Forever,
}

/// A model the engine can load: a name and a validated GGUF file.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The name clients use.
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
}

/// A loaded model, as `/api/ps` and `status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModel {
    /// Model name.
    pub name: String,
    /// Worker process id.
    pub pid: u32,
    /// Bytes of weights.
    pub size_bytes: u64,
    /// Context tokens per request.
    pub context_length: u32,
    /// Parallel sequences.
    pub slots: u32,
    /// Requests generating now.
    pub running: usize,
    /// Requests waiting for a slot.
    pub waiting: usize,
    /// When it will be unloaded if still idle (RFC 3339), `None` = never / busy.
    pub expires_at: Option<String>,
}

/// The cheap, cloneable handle to every model worker.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    exe: PathBuf,
    metrics: Metrics,
    workers: Mutex<HashMap<String, Arc<LlmWorker>>>,
    next_id: AtomicU64,
}

impl Engine {
    /// An engine that starts workers from `exe` (normally `std::env::current_exe()`).
    /// Spawns the idle reaper on the current runtime.
    pub fn new(config: EngineConfig, exe: PathBuf, metrics: Metrics) -> Engine {
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                exe,
                metrics,
                workers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        };
        let weak = Arc::downgrade(&engine.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Engine { inner }.reap_idle().await;
            }
        });
        engine
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Loads `model` if needed and returns its worker (restarting a dead one).
    async fn worker(&self, model: &ModelSpec) -> Result<Arc<LlmWorker>, EngineError> {
        let mut workers = self.inner.workers.lock().await;
        if let Some(worker) = workers.get(&model.name) {
            if worker.is_alive() {
                return Ok(worker.clone());
            }
            tracing::warn!(model = %model.name, "restarting a dead inference worker");
            workers.remove(&model.name);
        }
        // Loading holds the map lock: concurrent first requests wait for one load
        // instead of starting several workers for the same model.
        let worker = Arc::new(
            LlmWorker::spawn(
                &self.inner.exe,
                model,
                &self.inner.config,
                self.inner.metrics.clone(),
            )
            .await?,
        );
        workers.insert(model.name.clone(), worker.clone());
        Ok(worker)
    }

    /// Loads a model without generating (Ollama's empty prompt).
    pub async fn load(
        &self,
        model: &ModelSpec,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Duration, EngineError> {
        let started = Instant::now();
        let worker = self.worker(model).await?;
        worker.touch(keep_alive.unwrap_or(self.inner.config.keep_alive));
        Ok(started.elapsed())
    }

    /// Starts a generation. The returned stream yields events until `Done`; dropping
    /// it early cancels the generation and frees its slot.
    pub async fn generate(
        &self,
        model: &ModelSpec,
        prompt: Prompt,
        params: SamplingParams,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Generation, EngineError> {
        let load_started = Instant::now();
        let worker = self.worker(model).await?;
        let load_time = load_started.elapsed();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let keep_alive = keep_alive.unwrap_or(self.inner.config.keep_alive);
        worker
            .generate(
                id,
                prompt,
                params,
                self.inner.config.request_timeout,
                keep_alive,
                load_time,
            )
            .await
    }

    /// Counts a prompt's tokens with the model's tokenizer (and template).
    pub async fn count_tokens(
        &self,
        model: &ModelSpec,
        prompt: Prompt,
    ) -> Result<u32, EngineError> {
        let worker = self.worker(model).await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        worker.count(id, prompt).await
    }

    /// Unloads a model now (its worker exits and frees its memory).
    pub async fn unload(&self, name: &str) -> bool {
        let worker = self.inner.workers.lock().await.remove(name);
        match worker {
            Some(worker) => {
                worker.shutdown().await;
                true
            }
            None => false,
        }
    }

    /// Every loaded model.
    pub async fn loaded(&self) -> Vec<LoadedModel> {
        let workers = self.inner.workers.lock().await;
        let mut list: Vec<LoadedModel> = workers
            .values()
            .filter(|w| w.is_alive())
            .map(|w| w.describe())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Stops every worker (daemon shutdown).
    pub async fn shutdown(&self) {
        let workers: Vec<_> = self
            .inner
            .workers
            .lock()
            .await
            .drain()
            .map(|(_, w)| w)
            .collect();
        for worker in workers {
            worker.shutdown().await;
        }
    }

    async fn reap_idle(&self) {
        let expired: Vec<Arc<LlmWorker>> = {
            let mut workers = self.inner.workers.lock().await;
            let names: Vec<String> = workers
                .iter()
                .filter(|(_, w)| w.is_expired() || !w.is_alive())
                .map(|(n, _)| n.clone())
                .collect();
            names.iter().filter_map(|n| workers.remove(n)).collect()
        };
        for worker in expired {
            tracing::info!(model = %worker.name(), "unloading idle model");
            worker.shutdown().await;
        }
    }
}
