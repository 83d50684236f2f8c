//! Inference engines: the daemon side of the model workers.
//!
//! Each loaded model runs in its own worker process (`appliance worker llm` for chat,
//! `appliance worker embed` for sentence embeddings, see [`worker`]) that owns the
//! model: llama.cpp's model and context, or candle's BERT. The daemon talks to it over
//! [`protocol`] and never runs inference itself. A worker that crashes takes only its
//! own requests down: they get [`EngineError::EngineCrashed`], and the next request
//! starts a fresh worker. Killing a worker frees all of its memory (and VRAM).
//!
//! - [`Engine`] is the cheap handle the HTTP layer holds.
//! - `scheduler` is the one actor deciding residency: loads (one per model, shared by
//!   concurrent first requests), `max_loaded_models`, least-recently-used eviction,
//!   keep-alive expiry, graceful and forced unloads.
//! - `supervisor` owns one worker process: the [`Spawner`] seam, the ready handshake,
//!   admission (`slots + queue`, and a per-user share of it), event routing, crashes.
//! - [`Generation`] is one request's stream: a deadline, and cancel-on-drop.
//!
//! Who may shorten or pin residency is the caller's decision ([`KeepAliveRequest`]):
//! the HTTP layer lets only administrators do it.

pub mod constraint;
pub mod footprint;
mod generation;
pub mod placement;
pub mod plan;
mod scheduler;
mod speech;
mod supervisor;
pub mod worker;

/// The daemon ⇄ worker wire (its own crate: the speech worker is another executable).
pub use appliance_protocol as protocol;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use generation::{FinishHook, GenEvent, Generation};
pub use placement::{BudgetConfig, GpuLayers, ModelOverrides, ModelSettings, Placement};
pub use protocol::{
    ChatMessage, Constraint, FinishReason, Prompt, SamplingParams, TokenLogprob, TokenProb,
    ToolCall, ToolDefinition, Usage,
};
pub use scheduler::{BudgetView, GpuView, QueuedLoad, Residency};
use scheduler::{Msg, Scheduler};
pub use speech::{SpeechEvent, SpeechRequest, Transcript, Transcription};
pub use supervisor::Launch;
pub use supervisor::{Spawner, Worker, WorkerExe};

use crate::gpu::Gpu;
use crate::telemetry::Metrics;
use footprint::{Footprint, Shape};

/// The longest residency any keep-alive can ask for (longer is "until unloaded").
pub const MAX_KEEP_ALIVE: Duration = Duration::from_secs(365 * 86_400);

/// Errors a caller of the engine can act on. Every message is safe to show a client:
/// details from inside a worker go to the daemon's log, never here.
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
    /// This user already holds their share of the model's places.
    #[error(
        "you already have {limit} requests running or queued on model `{model}` (the most one user may hold while others share it); retry in {retry_after_secs} s"
    )]
    UserBusy {
        /// The model.
        model: String,
        /// Places one user may hold.
        limit: usize,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// No model could be loaded in time: every loaded model stayed busy, or loading
    /// took too long.
    #[error(
        "model `{model}` could not be loaded within {secs} s (the other loaded models are busy, or loading is slow); retry later"
    )]
    NoRoom {
        /// The model.
        model: String,
        /// How long the request waited.
        secs: u64,
    },
    /// Too many loads already wait for GPU memory.
    #[error(
        "model `{model}` is waiting for GPU memory behind {queued} other loads (the most allowed); retry in {retry_after_secs} s"
    )]
    GpuQueueFull {
        /// The model.
        model: String,
        /// Loads waiting.
        queued: usize,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// The model's fixed GPU layers can never fit the GPU budget.
    #[error(
        "model `{model}` needs {needs_mib} MiB of GPU memory with its configured gpu_layers but the GPU budget can hold at most {capacity_mib} MiB; lower its gpu_layers (or set -1 to offload what fits)"
    )]
    TooLargeForGpu {
        /// The model.
        model: String,
        /// What it needs, MiB.
        needs_mib: u64,
        /// The most the budget holds, MiB.
        capacity_mib: u64,
    },
    /// Loading ran out of GPU memory; the next load offloads fewer layers.
    #[error(
        "model `{model}` ran out of GPU memory while loading; it will be loaded with fewer GPU layers on the next request; retry"
    )]
    OutOfMemory {
        /// The model.
        model: String,
    },
    /// The model is being unloaded; the request should try again (it will load afresh).
    #[error("model `{model}` is being unloaded; retry")]
    Unloading {
        /// The model.
        model: String,
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
    /// An input has more tokens than the embedding model takes.
    #[error(
        "input {index} has {tokens} tokens but this embedding model takes at most {limit}; split the text (or ask for truncation)"
    )]
    InputTooLong {
        /// Which input (0-based).
        index: u32,
        /// Its tokens.
        tokens: u32,
        /// The model's limit.
        limit: u32,
    },
    /// The request cannot be served as asked (bad grammar, no chat template, …).
    #[error("{0}")]
    InvalidRequest(String),
    /// The worker could not load the model.
    #[error("model `{model}` failed to load: {detail}")]
    LoadFailed {
        /// The model.
        model: String,
        /// What went wrong, in words safe for a client.
        detail: String,
    },
    /// The worker process died while serving this request.
    #[error(
        "the inference worker for `{model}` crashed ({detail}); the request was aborted and the next request starts a new worker"
    )]
    EngineCrashed {
        /// The model.
        model: String,
        /// What happened, in words safe for a client.
        detail: String,
    },
    /// The worker said something that is not the protocol.
    #[error("the inference worker for `{model}` answered out of protocol; see the daemon log")]
    Protocol {
        /// The model.
        model: String,
    },
    /// The request ran past its deadline and was cancelled.
    #[error("the request exceeded its deadline of {secs} s and was cancelled")]
    Timeout {
        /// The deadline.
        secs: u64,
    },
    /// llama.cpp or whisper.cpp failed while running the model.
    #[error("inference failed: {0}")]
    Decode(String),
    /// The audio could not be read (the client's input is at fault).
    #[error("{0}")]
    BadAudio(String),
    /// The daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

impl EngineError {
    /// Whether trying again later may succeed (background jobs retry these).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EngineError::Busy { .. }
                | EngineError::UserBusy { .. }
                | EngineError::NoRoom { .. }
                | EngineError::GpuQueueFull { .. }
                | EngineError::OutOfMemory { .. }
                | EngineError::Unloading { .. }
                | EngineError::EngineCrashed { .. }
                | EngineError::Timeout { .. }
                | EngineError::Protocol { .. }
        )
    }
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
    /// Layers offloaded to the GPU, unless a model's settings say otherwise.
    pub gpu_layers: GpuLayers,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// How long an idle model stays loaded when the request does not say.
    pub keep_alive: KeepAlive,
    /// How long a worker may take to load a model.
    pub load_timeout: Duration,
    /// Models loaded at once.
    pub max_loaded_models: u32,
    /// Places (running or queued) one user may hold per model; 0 = half of
    /// `slots + queue`, rounded up.
    pub max_requests_per_user: u32,
    /// Speech workers.
    pub speech: SpeechEngineConfig,
    /// The GPU budget and per-model settings.
    pub budget: BudgetConfig,
}

impl EngineConfig {
    /// What a model's memory estimate depends on: its context and parallel requests.
    pub fn shape(&self, model: &ModelSpec) -> Shape {
        let settings = self.settings(&model.name);
        Shape {
            ctx_per_slot: settings.ctx_per_slot,
            slots: match model.kind {
                ModelKind::Speech => self.speech.parallel,
                _ => settings.slots,
            },
        }
    }

    /// One model's settings: `[engine]` with its `[models."name"]` overrides.
    pub fn settings(&self, name: &str) -> ModelSettings {
        let o = self.budget.models.get(name).cloned().unwrap_or_default();
        ModelSettings {
            gpu_layers: o
                .gpu_layers
                .map_or(self.gpu_layers, GpuLayers::from_setting),
            ctx_per_slot: o.ctx_per_slot.unwrap_or(self.ctx_per_slot),
            slots: o.slots.unwrap_or(self.slots),
            keep_alive: if o.pinned {
                KeepAlive::Forever
            } else {
                o.keep_alive.unwrap_or(self.keep_alive)
            },
            pinned: o.pinned,
            preload: o.preload,
        }
    }
}

/// How speech workers run (from `[speech]`).
#[derive(Debug, Clone)]
pub struct SpeechEngineConfig {
    /// Requests one worker transcribes at once.
    pub parallel: u32,
    /// CPU threads per transcription.
    pub threads: u32,
    /// Decoder beam width (1 = greedy).
    pub beam_size: u32,
    /// Seconds allowed per second of audio, when longer than the request deadline.
    pub realtime_factor: f64,
}

/// How long a model stays loaded after its last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload after this long idle (zero: right after the request).
    For(Duration),
    /// Never unload automatically.
    Forever,
}

/// A keep-alive a request asks for, and whether it may shorten or pin residency
/// (administrators) or only extend it (everyone else, and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveRequest {
    /// How long to stay loaded once idle.
    pub value: KeepAlive,
    /// Only ever move the unload time later, never earlier, never pin.
    pub extend_only: bool,
}

impl KeepAliveRequest {
    /// Sets residency to exactly `value` (an administrator's request).
    pub fn set(value: KeepAlive) -> KeepAliveRequest {
        KeepAliveRequest {
            value,
            extend_only: false,
        }
    }

    /// Extends residency to at least `value` from now.
    pub fn extend(value: KeepAlive) -> KeepAliveRequest {
        KeepAliveRequest {
            value,
            extend_only: true,
        }
    }
}

/// A generation to start.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The model.
    pub model: ModelSpec,
    /// Who asks (user id; 0 for the anonymous principal of an auth-less daemon).
    pub user: i64,
    /// What to continue.
    pub prompt: Prompt,
    /// How.
    pub params: SamplingParams,
    /// Residency after it (the configured default, extend-only, when `None`).
    pub keep_alive: Option<KeepAliveRequest>,
}

/// A model the engine can load.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The name clients use.
    pub name: String,
    /// The validated GGUF file (chat), or the model directory (embeddings).
    pub path: PathBuf,
    /// Which worker runs it.
    pub kind: ModelKind,
}

/// What a model does, and so which worker runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Text generation (llama.cpp).
    Chat,
    /// Sentence embeddings (candle).
    Embedding,
    /// Speech to text (whisper.cpp).
    Speech,
}

/// The vectors of one embedding request.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One unit vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens in all inputs.
    pub tokens: u32,
    /// Time spent loading the model for this request.
    pub load_time: Duration,
}

/// A loaded model, as `/api/ps` and `status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedModel {
    /// Model name.
    pub name: String,
    /// What it does.
    pub kind: ModelKind,
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
    /// Kept loaded until an administrator unloads it.
    pub pinned: bool,
    /// An unload is waiting for its requests to finish.
    pub unloading: bool,
    /// Layers on the GPU (0: on the CPU).
    pub gpu_layers: u32,
    /// GPU memory it holds, bytes (measured when the driver tells, else estimated).
    pub vram_bytes: u64,
}

/// The cheap, cloneable handle to every model worker.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    scheduler: mpsc::Sender<Msg>,
    next_id: AtomicU64,
    /// Estimates by model name, with the file length they were made from (`None`:
    /// assumed by a test).
    footprints: parking_lot::Mutex<HashMap<String, CachedFootprint>>,
}

/// An estimate and the model file's length it was made from (`None`: assumed).
type CachedFootprint = (Option<u64>, Arc<Footprint>);

impl Engine {
    /// An engine whose workers `spawner` starts (normally [`WorkerExe`]). Starts the
    /// scheduler on the current runtime.
    pub fn new(
        config: EngineConfig,
        spawner: Arc<dyn Spawner>,
        metrics: Metrics,
        gpu: Gpu,
    ) -> Engine {
        let scheduler = Scheduler::start(config.clone(), spawner, metrics, gpu);
        Engine {
            inner: Arc::new(Inner {
                config,
                scheduler,
                next_id: AtomicU64::new(1),
                footprints: parking_lot::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Uses `footprint` as the estimate of model `name` (a hardware seam for tests of
    /// the scheduler with simulated GPUs and fake workers, whose files do not exist).
    pub fn assume_footprint(&self, name: &str, footprint: Footprint) {
        self.inner
            .footprints
            .lock()
            .insert(name.to_string(), (None, Arc::new(footprint)));
    }

    /// The memory estimate of `model` when its settings apply (blocking reads happen
    /// on a blocking thread; cached while the file keeps its length).
    pub async fn footprint(&self, model: &ModelSpec) -> Option<Arc<Footprint>> {
        let cached = self.inner.footprints.lock().get(&model.name).cloned();
        if let Some((None, footprint)) = &cached {
            return Some(footprint.clone());
        }
        let shape = self.inner.config.shape(model);
        let (kind, path) = (model.kind, model.path.clone());
        let cached_len = cached.as_ref().and_then(|(len, _)| *len);
        let estimated = tokio::task::spawn_blocking(move || {
            let len = fs_err::metadata(&path).ok().map(|m| m.len());
            if len.is_some() && len == cached_len {
                return Ok(None);
            }
            footprint::estimate(kind, &path, shape).map(|f| Some((len, f)))
        })
        .await;
        match estimated {
            Ok(Ok(None)) => cached.map(|(_, f)| f),
            Ok(Ok(Some((len, footprint)))) => {
                let footprint = Arc::new(footprint);
                self.inner
                    .footprints
                    .lock()
                    .insert(model.name.clone(), (len, footprint.clone()));
                Some(footprint)
            }
            Ok(Err(e)) => {
                tracing::warn!(model = %model.name, error = %e, "no memory estimate: the model runs on the CPU");
                None
            }
            Err(_) => None,
        }
    }

    /// The GPU budget, what holds it and what waits for it.
    pub async fn gpu_view(&self) -> Option<GpuView> {
        let (reply, answer) = oneshot::channel();
        self.inner.scheduler.send(Msg::Gpu { reply }).await.ok()?;
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .ok()?
            .ok()
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The residency a request gets when it asks for none: its model's keep-alive,
    /// extend-only.
    pub fn default_keep_alive(&self, model: &ModelSpec) -> KeepAliveRequest {
        KeepAliveRequest::extend(self.inner.config.settings(&model.name).keep_alive)
    }

    /// A loaded worker for `model`: loads it (or waits for its load, or for room)
    /// within the load deadline.
    async fn worker(&self, model: &ModelSpec) -> Result<Arc<Worker>, EngineError> {
        let footprint = if self.inner.config.budget.offload {
            self.footprint(model).await
        } else {
            None
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .scheduler
            .send(Msg::Acquire {
                spec: model.clone(),
                footprint,
                reply,
            })
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        let wait = self.inner.config.load_timeout + Duration::from_secs(5);
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError::ShuttingDown),
            Err(_) => Err(EngineError::NoRoom {
                model: model.name.clone(),
                secs: wait.as_secs(),
            }),
        }
    }

    /// Runs `admit` against a loaded worker, retrying once when the worker turns out
    /// to be unloading (the retry waits for the unload and loads the model afresh).
    async fn with_worker<T>(
        &self,
        model: &ModelSpec,
        admit: impl Fn(&Worker, Duration) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut attempts = 0;
        loop {
            let started = Instant::now();
            let worker = self.worker(model).await?;
            match admit(&worker, started.elapsed()) {
                Err(EngineError::Unloading { .. }) if attempts == 0 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Loads a model without generating (Ollama's empty prompt); returns how long the
    /// load took.
    pub async fn load(
        &self,
        model: &ModelSpec,
        keep_alive: KeepAliveRequest,
    ) -> Result<Duration, EngineError> {
        let started = Instant::now();
        let worker = self.worker(model).await?;
        worker.touch(keep_alive);
        Ok(started.elapsed())
    }

    /// Starts a generation. The returned stream yields events until `Done`; dropping
    /// it early cancels the generation and frees its slot.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        let keep_alive = request
            .keep_alive
            .unwrap_or_else(|| self.default_keep_alive(&request.model));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.with_worker(&request.model, |worker, load_time| {
            worker.generate(
                id,
                request.user,
                request.prompt.clone(),
                request.params.clone(),
                keep_alive,
                load_time,
            )
        })
        .await
    }

    /// Embeds `inputs` with an embedding model, admitted like a generation (one place
    /// per request) and bounded by the request deadline.
    pub async fn embed(
        &self,
        model: &ModelSpec,
        user: i64,
        inputs: Vec<String>,
        truncate: bool,
        keep_alive: Option<KeepAliveRequest>,
    ) -> Result<Embeddings, EngineError> {
        let keep_alive = keep_alive.unwrap_or_else(|| self.default_keep_alive(model));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut attempts = 0;
        loop {
            let started = Instant::now();
            let worker = self.worker(model).await?;
            let load_time = started.elapsed();
            match worker
                .embed(id, user, inputs.clone(), truncate, keep_alive)
                .await
            {
                Err(EngineError::Unloading { .. }) if attempts == 0 => attempts += 1,
                Ok((vectors, tokens)) => {
                    return Ok(Embeddings {
                        vectors,
                        tokens,
                        load_time,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts transcribing an audio file. The returned stream yields events until
    /// `Done`; dropping it early cancels the transcription.
    pub async fn transcribe(&self, request: SpeechRequest) -> Result<Transcription, EngineError> {
        let keep_alive = request
            .keep_alive
            .unwrap_or_else(|| self.default_keep_alive(&request.model));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let factor = self.inner.config.speech.realtime_factor;
        self.with_worker(&request.model, |worker, _| {
            worker.transcribe(id, &request, keep_alive, factor)
        })
        .await
    }

    /// Counts a prompt's tokens with the model's tokenizer (and template), admitted
    /// like a generation and bounded by the request deadline.
    pub async fn count_tokens(
        &self,
        model: &ModelSpec,
        user: i64,
        prompt: Prompt,
    ) -> Result<u32, EngineError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut attempts = 0;
        loop {
            let worker = self.worker(model).await?;
            match worker.count(id, user, prompt.clone()).await {
                Err(EngineError::Unloading { .. }) if attempts == 0 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Unloads a model: gracefully (new requests wait, the ones in flight finish, then
    /// the worker exits) or, with `force`, at once (requests in flight fail). Returns
    /// whether it was loaded. Waits at most the request deadline plus a margin.
    pub async fn unload(&self, name: &str, force: bool) -> Result<bool, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .scheduler
            .send(Msg::Unload {
                name: name.to_string(),
                force,
                reply,
            })
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        let wait = self.inner.config.request_timeout + Duration::from_secs(10);
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(was_loaded)) => Ok(was_loaded),
            Ok(Err(_)) => Err(EngineError::ShuttingDown),
            Err(_) => Err(EngineError::Timeout {
                secs: wait.as_secs(),
            }),
        }
    }

    /// Every loaded model.
    pub async fn loaded(&self) -> Vec<LoadedModel> {
        let (reply, answer) = oneshot::channel();
        if self
            .inner
            .scheduler
            .send(Msg::List { reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    /// Stops every worker (daemon shutdown); bounded.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self
            .inner
            .scheduler
            .send(Msg::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer).await;
        }
    }
}
