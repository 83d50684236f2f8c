//! One supervised worker process, whatever it runs: spawning it through a
//! [`Spawner`], the ready handshake with a deadline, routing its events to the requests
//! waiting for them, admission control, keep-alive bookkeeping, and noticing when it
//! dies.
//!
//! What a worker writes to stderr is logged with the model's name and never reaches a
//! client: it can contain anything, including text from other tenants' requests. Every
//! line read from the worker is length-bounded, every wait has a deadline, and every
//! channel to the worker is bounded by admission.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::generation::{Generation, Permit};
use super::protocol::{
    Command, Event, MAX_LINE_BYTES, PROTOCOL_VERSION, Prompt, SamplingParams, WorkerError,
};
use super::speech::{SpeechRequest, Transcription};
use super::{
    EngineConfig, EngineError, KeepAlive, KeepAliveRequest, LoadedModel, ModelKind, ModelSettings,
    ModelSpec,
};
use crate::telemetry::Metrics;

/// How one worker is to be started: its model's settings and the layers the scheduler
/// placed on the GPU.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The model's settings.
    pub settings: ModelSettings,
    /// Layers (or, for whole-unit models, 1 = on the GPU) offloaded.
    pub gpu_layers: u32,
}

/// How a worker process is started. Production runs `appliance worker llm`; tests run
/// the scripted `appliance worker fake` through the same supervision.
pub trait Spawner: Send + Sync + 'static {
    /// The command that starts a worker for `model`, arguments included.
    fn command(
        &self,
        model: &ModelSpec,
        config: &EngineConfig,
        launch: &Launch,
    ) -> tokio::process::Command;
}

/// Starts `exe worker llm|embed …` (the daemon's own binary in its worker mode), or
/// the speech worker executable.
pub struct WorkerExe {
    /// The appliance binary.
    pub exe: std::path::PathBuf,
    /// The speech worker (`appliance-stt-worker`).
    pub speech_exe: std::path::PathBuf,
}

impl Spawner for WorkerExe {
    fn command(
        &self,
        model: &ModelSpec,
        config: &EngineConfig,
        launch: &Launch,
    ) -> tokio::process::Command {
        if model.kind == ModelKind::Speech {
            let speech = &config.speech;
            let mut cmd = tokio::process::Command::new(&self.speech_exe);
            cmd.arg("--model")
                .arg(&model.path)
                .args(["--threads", &speech.threads.to_string()])
                .args(["--parallel", &speech.parallel.to_string()])
                .args(["--beam-size", &speech.beam_size.to_string()]);
            if launch.gpu_layers > 0 {
                cmd.arg("--gpu");
            }
            return cmd;
        }
        let mut cmd = tokio::process::Command::new(&self.exe);
        if model.kind == ModelKind::Embedding {
            cmd.args(["worker", "embed", "--model"])
                .arg(&model.path)
                .args(if launch.gpu_layers > 0 {
                    &["--gpu"][..]
                } else {
                    &[]
                })
                // candle sizes its thread pool like rayon.
                .env("RAYON_NUM_THREADS", config.threads.to_string());
            return cmd;
        }
        cmd.args(["worker", "llm", "--model"])
            .arg(&model.path)
            .args(["--slots", &launch.settings.slots.to_string()])
            .args(["--ctx-per-slot", &launch.settings.ctx_per_slot.to_string()])
            .args(["--threads", &config.threads.to_string()])
            .args(["--gpu-layers", &launch.gpu_layers.to_string()]);
        cmd
    }
}

impl<F> Spawner for F
where
    F: Fn(&ModelSpec, &EngineConfig, &Launch) -> tokio::process::Command + Send + Sync + 'static,
{
    fn command(
        &self,
        model: &ModelSpec,
        config: &EngineConfig,
        launch: &Launch,
    ) -> tokio::process::Command {
        self(model, config, launch)
    }
}

/// Whether a worker's last words say CUDA ran out of GPU memory (host-memory failures
/// do not count: fewer GPU layers would not help them).
fn out_of_gpu_memory(stderr: &[String]) -> bool {
    stderr.iter().any(|line| {
        let line = line.to_ascii_lowercase();
        line.contains("cudamalloc failed")
            || line.contains("cuda error: out of memory")
            || (line.contains("ggml_backend_cuda") && line.contains("alloc"))
            || (line.contains("cuda") && line.contains("out of memory"))
    })
}

/// Lines of a worker's stderr kept for the log when it dies, and their longest length.
const STDERR_TAIL_LINES: usize = 8;
const STDERR_LINE_BYTES: usize = 512;

pub(super) type Route = mpsc::UnboundedSender<Result<Event, EngineError>>;

/// Who holds admission places.
#[derive(Default)]
struct Admission {
    in_flight: usize,
    per_user: HashMap<i64, usize>,
    /// An unload is waiting for the requests in flight: admit nobody new.
    draining: bool,
}

/// Shared between the worker handle, its reader task and the requests it serves.
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) routes: Mutex<HashMap<u64, Route>>,
    alive: AtomicBool,
    /// The daemon asked the worker to stop (an unload or shutdown, not a crash).
    stopping: AtomicBool,
    pub(super) running: AtomicUsize,
    admission: Mutex<Admission>,
    /// When it may be unloaded if still idle; `None` = never (pinned).
    expires: Mutex<Option<Instant>>,
    /// Pinned by configuration: never evicted, keep-alives do not change it.
    pinned: bool,
    pub(super) metrics: Metrics,
    /// Told when the worker becomes idle or dies, so residency decisions happen at
    /// once rather than at the next tick.
    on_idle: Box<dyn Fn(&str) + Send + Sync>,
}

impl Shared {
    /// Gives back an admission place (a [`Permit`] ends).
    pub(super) fn release(&self, user: i64, keep_alive: KeepAliveRequest) {
        let idle = {
            let mut admission = self.admission.lock();
            admission.in_flight = admission.in_flight.saturating_sub(1);
            if let Some(n) = admission.per_user.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    admission.per_user.remove(&user);
                }
            }
            admission.in_flight == 0
        };
        self.apply_keep_alive(keep_alive);
        if idle {
            (self.on_idle)(&self.name);
        }
    }

    fn apply_keep_alive(&self, request: KeepAliveRequest) {
        if self.pinned {
            *self.expires.lock() = None;
            return;
        }
        let new = match request.value {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(
                Instant::now()
                    .checked_add(d.min(super::MAX_KEEP_ALIVE))
                    .unwrap_or_else(Instant::now),
            ),
        };
        let mut expires = self.expires.lock();
        *expires = match (request.extend_only, *expires, new) {
            // A request that may only extend residency never shortens it or unpins it.
            (true, None, _) => None,
            (true, Some(old), Some(new)) => Some(old.max(new)),
            (_, _, new) => new,
        };
    }

    pub(super) fn crashed(&self, detail: &str) -> EngineError {
        EngineError::EngineCrashed {
            model: self.name.clone(),
            detail: detail.to_string(),
        }
    }
}

/// The daemon's handle on one worker process.
pub struct Worker {
    shared: Arc<Shared>,
    /// Feeds the task that writes command lines to the worker's stdin. Bounded: each
    /// admitted request sends at most a start and a cancel, so it is never full unless
    /// the worker stopped reading.
    commands: mpsc::Sender<Command>,
    child: tokio::sync::Mutex<Option<Child>>,
    pid: u32,
    limit: usize,
    per_user_limit: usize,
    slots: u32,
    n_ctx_slot: u32,
    size_bytes: u64,
    request_timeout: Duration,
    kind: ModelKind,
}

impl Worker {
    /// Starts a worker for `model` and waits (at most `load_timeout`) for its `Ready`.
    pub(super) async fn spawn(
        spawner: &dyn Spawner,
        model: &ModelSpec,
        config: &EngineConfig,
        launch: &Launch,
        metrics: Metrics,
        on_idle: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Worker, EngineError> {
        let load_failed = |detail: &str| EngineError::LoadFailed {
            model: model.name.clone(),
            detail: detail.to_string(),
        };
        let mut child = spawner
            .command(model, config, launch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                tracing::error!(model = %model.name, error = %e, "cannot start a worker process");
                load_failed("the worker process could not be started; see the daemon log")
            })?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(load_failed("the worker's pipes could not be opened"));
        };
        let mut events = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
        let stderr_tail = spawn_stderr_forwarder(&model.name, pid, stderr);

        let ready = match tokio::time::timeout(config.load_timeout, events.next()).await {
            Err(_) => Err(format!(
                "the worker did not finish loading within {} s",
                config.load_timeout.as_secs()
            )),
            Ok(Some(Ok(line))) => match serde_json::from_str::<Event>(&line) {
                Ok(Event::Ready { protocol, .. }) if protocol != PROTOCOL_VERSION => Err(format!(
                    "the worker speaks protocol version {protocol}, this daemon {PROTOCOL_VERSION} (a stale binary?)"
                )),
                Ok(Event::Ready {
                    n_ctx_slot,
                    slots,
                    load_ms,
                    model_bytes,
                    ..
                }) => Ok((n_ctx_slot, slots, load_ms, model_bytes)),
                _ => Err("the worker answered something other than the protocol".into()),
            },
            Ok(_) => Err("the worker exited before it was ready".into()),
        };
        let (n_ctx_slot, slots, load_ms, model_bytes) = match ready {
            Ok(ready) => ready,
            Err(reason) => {
                let status = stop_child(&mut child).await;
                // Let the stderr forwarder collect the last lines for the log.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let tail = stderr_tail.lock().clone();
                tracing::error!(
                    model = %model.name,
                    pid,
                    %reason,
                    exit = %status,
                    gpu_layers = launch.gpu_layers,
                    stderr = %tail.join(" | "),
                    "the inference worker failed to start"
                );
                if launch.gpu_layers > 0 && out_of_gpu_memory(&tail) {
                    return Err(EngineError::OutOfMemory {
                        model: model.name.clone(),
                    });
                }
                return Err(load_failed(&format!("{reason}; see the daemon log")));
            }
        };
        tracing::info!(model = %model.name, pid, load_ms, n_ctx_slot, slots, "model loaded");

        // The worker says how many requests it runs at once (chat: its slots; speech:
        // its parallel states; embeddings: one).
        let limit = (slots.max(1) + config.queue) as usize;
        let per_user_limit = match config.max_requests_per_user {
            0 => limit.div_ceil(2).max(1),
            n => n as usize,
        };
        let shared = Arc::new(Shared {
            name: model.name.clone(),
            routes: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            admission: Mutex::new(Admission::default()),
            expires: Mutex::new(None),
            pinned: launch.settings.pinned,
            metrics,
            on_idle,
        });
        shared.apply_keep_alive(KeepAliveRequest::set(launch.settings.keep_alive));
        spawn_event_reader(shared.clone(), events, stderr_tail, pid);
        Ok(Worker {
            shared,
            // Starts and cancels of every admitted request, plus a shutdown.
            commands: spawn_command_writer(stdin, 2 * limit + 8),
            child: tokio::sync::Mutex::new(Some(child)),
            pid,
            limit,
            per_user_limit,
            slots,
            n_ctx_slot,
            size_bytes: model_bytes,
            request_timeout: config.request_timeout,
            kind: model.kind,
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the process is still serving.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// Requests admitted now (running or waiting for a slot).
    pub fn in_flight(&self) -> usize {
        self.shared.admission.lock().in_flight
    }

    /// Kept loaded until an administrator unloads it (keep-alive -1, or pinned).
    pub fn is_pinned(&self) -> bool {
        self.shared.expires.lock().is_none()
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it may be unloaded to make room: alive, idle and not pinned by
    /// configuration (a keep-alive of -1 only stops the timer, as in Ollama).
    pub fn is_evictable(&self) -> bool {
        self.is_alive() && self.in_flight() == 0 && !self.shared.pinned
    }

    /// Whether the idle keep-alive has run out.
    pub fn is_expired(&self) -> bool {
        self.in_flight() == 0
            && self
                .shared
                .expires
                .lock()
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Applies a keep-alive now (a load without a generation).
    pub fn touch(&self, keep_alive: KeepAliveRequest) {
        self.shared.apply_keep_alive(keep_alive);
    }

    /// Stops admitting requests: an unload waits for the ones in flight.
    pub fn drain(&self) {
        self.shared.admission.lock().draining = true;
    }

    /// Takes an admission place for `user`, or says why not.
    fn admit(&self, user: i64, keep_alive: KeepAliveRequest) -> Result<Permit, EngineError> {
        let mut admission = self.shared.admission.lock();
        if admission.draining || !self.is_alive() {
            return Err(EngineError::Unloading {
                model: self.shared.name.clone(),
            });
        }
        if admission.in_flight >= self.limit {
            // A slot frees roughly every few seconds with small models; say so.
            return Err(EngineError::Busy {
                model: self.shared.name.clone(),
                in_flight: admission.in_flight,
                limit: self.limit,
                retry_after_secs: 2,
            });
        }
        let mine = admission.per_user.get(&user).copied().unwrap_or(0);
        if user > 0 && mine >= self.per_user_limit {
            return Err(EngineError::UserBusy {
                model: self.shared.name.clone(),
                limit: self.per_user_limit,
                retry_after_secs: 2,
            });
        }
        admission.in_flight += 1;
        *admission.per_user.entry(user).or_default() += 1;
        Ok(Permit::new(self.shared.clone(), user, keep_alive))
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands.try_send(command).map_err(|e| {
            tracing::error!(model = %self.shared.name, pid = self.pid, "the worker is not reading its commands ({e}); killing it");
            self.shared.alive.store(false, Ordering::Release);
            if let Ok(mut child) = self.child.try_lock()
                && let Some(child) = child.as_mut()
            {
                let _ = child.start_kill();
            }
            self.shared.crashed("the worker stopped accepting requests")
        })
    }

    fn route(&self, id: u64) -> mpsc::UnboundedReceiver<Result<Event, EngineError>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.routes.lock().insert(id, tx);
        rx
    }

    /// Starts generation `id` for `user`, subject to admission control.
    pub(super) fn generate(
        &self,
        id: u64,
        user: i64,
        prompt: Prompt,
        params: SamplingParams,
        keep_alive: KeepAliveRequest,
        load_time: Duration,
    ) -> Result<Generation, EngineError> {
        let permit = self.admit(user, keep_alive)?;
        let rx = self.route(id);
        if let Err(e) = self.send(Command::Generate { id, prompt, params }) {
            self.shared.routes.lock().remove(&id);
            return Err(e);
        }
        Ok(Generation::new(
            id,
            rx,
            self.commands.clone(),
            self.request_timeout,
            load_time,
            permit,
            self.shared.clone(),
        ))
    }

    /// Starts transcription `id` for `user`, subject to admission control.
    pub(super) fn transcribe(
        &self,
        id: u64,
        request: &SpeechRequest,
        keep_alive: KeepAliveRequest,
        realtime_factor: f64,
    ) -> Result<Transcription, EngineError> {
        let permit = self.admit(request.user, keep_alive)?;
        let rx = self.route(id);
        let command = Command::Transcribe {
            id,
            audio: request.audio.clone(),
            name: request.name.clone(),
            options: request.options.clone(),
        };
        if let Err(e) = self.send(command) {
            self.shared.routes.lock().remove(&id);
            return Err(e);
        }
        Ok(Transcription::new(
            id,
            rx,
            self.commands.clone(),
            self.request_timeout,
            realtime_factor,
            permit,
            self.shared.clone(),
        ))
    }

    /// Counts a prompt's tokens for `user`: admitted like a generation (it uses the
    /// worker) and bounded by the request deadline.
    pub(super) async fn count(
        &self,
        id: u64,
        user: i64,
        prompt: Prompt,
    ) -> Result<u32, EngineError> {
        match self.call(id, user, Command::Count { id, prompt }).await? {
            Event::Counted { prompt_tokens, .. } => Ok(prompt_tokens),
            _ => Err(EngineError::Protocol {
                model: self.shared.name.clone(),
            }),
        }
    }

    /// Embeds `inputs` for `user` (an embedding worker): one vector per input, and the
    /// tokens they took.
    pub(super) async fn embed(
        &self,
        id: u64,
        user: i64,
        inputs: Vec<String>,
        truncate: bool,
        keep_alive: KeepAliveRequest,
    ) -> Result<(Vec<Vec<f32>>, u32), EngineError> {
        let count = inputs.len();
        let _permit = self.admit(user, keep_alive)?;
        let command = Command::Embed {
            id,
            inputs,
            truncate,
        };
        match self.call_admitted(id, command).await? {
            Event::Embedded {
                embeddings,
                prompt_tokens,
                ..
            } if embeddings.len() == count => Ok((embeddings, prompt_tokens)),
            _ => Err(EngineError::Protocol {
                model: self.shared.name.clone(),
            }),
        }
    }

    /// One command answered by one event, admitted for `user` without changing the
    /// model's residency.
    async fn call(&self, id: u64, user: i64, command: Command) -> Result<Event, EngineError> {
        let _permit = self.admit(
            user,
            KeepAliveRequest::extend(KeepAlive::For(Duration::ZERO)),
        )?;
        self.call_admitted(id, command).await
    }

    /// Sends `command` and waits (at most the request deadline) for its answer. If the
    /// caller goes away or the deadline passes first, the worker is told to cancel.
    async fn call_admitted(&self, id: u64, command: Command) -> Result<Event, EngineError> {
        let mut rx = self.route(id);
        let mut guard = CallGuard {
            worker: self,
            id,
            answered: false,
        };
        self.send(command)?;
        let answer = tokio::time::timeout(self.request_timeout, rx.recv())
            .await
            .map_err(|_| EngineError::Timeout {
                secs: self.request_timeout.as_secs(),
            })?;
        guard.answered = true;
        match answer {
            Some(Ok(Event::Failed { error, .. })) => Err(worker_error(error)),
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(e),
            None => Err(self.shared.crashed("the worker stopped answering")),
        }
    }

    /// Stops the process: asks it to exit (when `graceful`), then kills it if it has
    /// not exited within a short grace. Requests still in flight fail.
    pub async fn shutdown(&self, graceful: bool) {
        self.drain();
        self.shared.stopping.store(true, Ordering::Release);
        if graceful {
            let _ = self.commands.try_send(Command::Shutdown);
        }
        let mut child = self.child.lock().await;
        if let Some(child) = child.as_mut() {
            let grace = if graceful {
                Duration::from_secs(2)
            } else {
                Duration::ZERO
            };
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let status = stop_child(child).await;
                tracing::debug!(model = %self.shared.name, pid = self.pid, exit = %status, "worker killed");
            }
        }
        *child = None;
        self.shared.alive.store(false, Ordering::Release);
    }

    /// How `/api/ps` and `status` show it.
    pub fn describe(&self) -> LoadedModel {
        let (in_flight, draining) = {
            let admission = self.shared.admission.lock();
            (admission.in_flight, admission.draining)
        };
        let running = self.shared.running.load(Ordering::Acquire).min(in_flight);
        let expires = *self.shared.expires.lock();
        let expires_at = if in_flight == 0 {
            expires.and_then(|deadline| {
                let from_now = deadline.saturating_duration_since(Instant::now());
                jiff::SignedDuration::try_from(from_now)
                    .ok()
                    .and_then(|d| jiff::Timestamp::now().checked_add(d).ok())
                    .map(|t| t.to_string())
            })
        } else {
            None
        };
        LoadedModel {
            name: self.shared.name.clone(),
            kind: self.kind,
            pid: self.pid,
            size_bytes: self.size_bytes,
            context_length: self.n_ctx_slot,
            slots: self.slots,
            running,
            waiting: in_flight - running,
            expires_at,
            pinned: expires.is_none(),
            unloading: draining,
            gpu_layers: 0,
            vram_bytes: 0,
        }
    }
}

/// Removes a call's route when the call ends, and cancels it in the worker when it
/// ended without an answer (deadline, or the caller went away).
struct CallGuard<'a> {
    worker: &'a Worker,
    id: u64,
    answered: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.worker.shared.routes.lock().remove(&self.id);
        if !self.answered {
            let _ = self
                .worker
                .commands
                .try_send(Command::Cancel { id: self.id });
        }
    }
}

/// Maps a worker's request-level failure to the engine's error. Worker messages are
/// ours (fixed strings), never llama.cpp's or another request's text.
pub(super) fn worker_error(error: WorkerError) -> EngineError {
    match error {
        WorkerError::ContextOverflow {
            prompt_tokens,
            n_ctx,
        } => EngineError::ContextOverflow {
            prompt_tokens,
            n_ctx,
        },
        WorkerError::InvalidConstraint { message } | WorkerError::Invalid { message } => {
            EngineError::InvalidRequest(message)
        }
        WorkerError::NoChatTemplate => EngineError::InvalidRequest(
            "this model has no chat template; use /v1/completions with a raw prompt".into(),
        ),
        WorkerError::InputTooLong {
            index,
            tokens,
            limit,
        } => EngineError::InputTooLong {
            index,
            tokens,
            limit,
        },
        WorkerError::Decode { message } => EngineError::Decode(message),
        WorkerError::Audio { message } => EngineError::BadAudio(message),
    }
}

/// Writes commands to the worker's stdin, one JSON line each.
fn spawn_command_writer(mut stdin: ChildStdin, capacity: usize) -> mpsc::Sender<Command> {
    use tokio::io::AsyncWriteExt;
    let (tx, mut rx) = mpsc::channel::<Command>(capacity);
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&command) else {
                continue;
            };
            line.push(b'\n');
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break; // the reader notices the exit and fails pending requests
            }
        }
    });
    tx
}

/// Routes the worker's events to their requests; on EOF (exit or crash) or a protocol
/// violation, marks the worker dead and fails every pending request with
/// `EngineCrashed` (the details go to the log, not to the clients).
fn spawn_event_reader(
    shared: Arc<Shared>,
    mut events: FramedRead<tokio::process::ChildStdout, LinesCodec>,
    stderr_tail: Arc<Mutex<Vec<String>>>,
    pid: u32,
) {
    tokio::spawn(async move {
        let mut why = "the worker process exited";
        while let Some(line) = events.next().await {
            let Ok(line) = line else {
                why = "the worker broke the protocol (an over-long or unreadable line)";
                break;
            };
            let event: Event = match serde_json::from_str(&line) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(model = %shared.name, pid, error = %e, "unreadable worker event");
                    continue;
                }
            };
            let id = match &event {
                Event::Started { id, .. }
                | Event::Token { id, .. }
                | Event::Done { id, .. }
                | Event::Counted { id, .. }
                | Event::Embedded { id, .. }
                | Event::Decoded { id, .. }
                | Event::Progress { id, .. }
                | Event::Segment { id, .. }
                | Event::Transcribed { id, .. }
                | Event::Failed { id, .. } => *id,
                Event::Ready { .. } => continue,
            };
            let terminal = matches!(
                event,
                Event::Done { .. }
                    | Event::Failed { .. }
                    | Event::Counted { .. }
                    | Event::Embedded { .. }
                    | Event::Transcribed { .. }
            );
            let mut routes = shared.routes.lock();
            if let Some(route) = routes.get(&id) {
                let _ = route.send(Ok(event));
            }
            if terminal {
                routes.remove(&id);
            }
        }
        shared.alive.store(false, Ordering::Release);
        // Let the stderr forwarder collect the last lines for the log.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let routes: Vec<Route> = shared.routes.lock().drain().map(|(_, r)| r).collect();
        if shared.stopping.load(Ordering::Acquire) {
            tracing::info!(model = %shared.name, pid, failed_requests = routes.len(), "inference worker stopped");
        } else {
            shared.metrics.worker_crash(&shared.name);
            tracing::error!(
                model = %shared.name,
                pid,
                reason = why,
                failed_requests = routes.len(),
                stderr = %stderr_tail.lock().join(" | "),
                "inference worker stopped unexpectedly"
            );
        }
        for route in routes {
            let _ = route.send(Err(shared.crashed("the worker process exited")));
        }
        (shared.on_idle)(&shared.name);
    });
}

/// Kills a child that failed or is being discarded, and reaps it (bounded).
async fn stop_child(child: &mut Child) -> String {
    let _ = child.start_kill();
    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(e)) => format!("unknown ({e})"),
        Err(_) => "did not exit within 5 s of SIGKILL".into(),
    }
}

/// Keeps the last lines of a worker's stderr for the log when it dies; every line is
/// also logged at debug level. Lines are length-bounded.
fn spawn_stderr_forwarder(
    model: &str,
    pid: u32,
    stderr: tokio::process::ChildStderr,
) -> Arc<Mutex<Vec<String>>> {
    let tail = Arc::new(Mutex::new(Vec::new()));
    let keep = tail.clone();
    let model = model.to_string();
    tokio::spawn(async move {
        let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
        while let Some(line) = lines.next().await {
            let mut line = match line {
                Ok(line) => line,
                Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded) => {
                    "[an over-long line]".to_string()
                }
                Err(_) => break,
            };
            tracing::debug!(model = %model, pid, "worker: {line}");
            if line.len() > STDERR_LINE_BYTES {
                let mut cut = STDERR_LINE_BYTES;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push('…');
            }
            let mut tail = keep.lock();
            if tail.len() == STDERR_TAIL_LINES {
                tail.remove(0);
            }
            tail.push(line);
        }
    });
    tail
}
