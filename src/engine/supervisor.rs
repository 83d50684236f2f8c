//! One supervised worker process: spawning it, routing its events to the requests
//! waiting for them, admission control, and noticing when it dies.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Lines;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::protocol::{Command, Event, FinishReason, Prompt, SamplingParams, Usage, WorkerError};
use super::{EngineConfig, EngineError, KeepAlive, LoadedModel, ModelSpec};
use crate::telemetry::Metrics;

/// What a generation yields.
#[derive(Debug, Clone)]
pub enum GenEvent {
    /// The request got a slot; its prompt has this many tokens.
    Started {
        /// Prompt tokens.
        prompt_tokens: u32,
    },
    /// More text.
    Token(String),
    /// Finished.
    Done {
        /// Why.
        finish_reason: FinishReason,
        /// Counts and timings.
        usage: Usage,
    },
}

type Route = mpsc::UnboundedSender<Result<Event, EngineError>>;

/// Shared between the worker handle and its reader task.
struct Shared {
    name: String,
    routes: Mutex<HashMap<u64, Route>>,
    alive: AtomicBool,
    running: AtomicUsize,
    /// Idle deadline after the last request, `None` = never.
    expires: Mutex<Option<Instant>>,
    in_flight: AtomicUsize,
    metrics: Metrics,
}

/// The daemon's handle on one worker process.
pub struct LlmWorker {
    shared: Arc<Shared>,
    /// Feeds the task that writes command lines to the worker's stdin.
    commands: mpsc::UnboundedSender<Command>,
    child: tokio::sync::Mutex<Child>,
    pid: u32,
    admission: Arc<Semaphore>,
    limit: usize,
    slots: u32,
    n_ctx_slot: u32,
    size_bytes: u64,
}

impl LlmWorker {
    /// Starts `exe worker llm …` for `model` and waits for its `Ready`.
    pub async fn spawn(
        exe: &Path,
        model: &ModelSpec,
        config: &EngineConfig,
        metrics: Metrics,
    ) -> Result<LlmWorker, EngineError> {
        let load_failed = |detail: String| EngineError::LoadFailed {
            model: model.name.clone(),
            detail,
        };
        let mut child = Process::new(exe)
            .args(["worker", "llm", "--model"])
            .arg(&model.path)
            .args(["--slots", &config.slots.to_string()])
            .args(["--ctx-per-slot", &config.ctx_per_slot.to_string()])
            .args(["--threads", &config.threads.to_string()])
            .args(["--gpu-layers", &config.gpu_layers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| load_failed(format!("cannot start the worker process: {e}")))?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let stderr_tail =
            spawn_stderr_forwarder(&model.name, child.stderr.take().expect("stderr is piped"));

        let ready = tokio::time::timeout(config.load_timeout, stdout.next_line()).await;
        let ready = match ready {
            Ok(Ok(Some(line))) => serde_json::from_str::<Event>(&line).ok(),
            Ok(_) => None,
            Err(_) => {
                let _ = child.kill().await;
                return Err(load_failed(format!(
                    "no answer within {} s",
                    config.load_timeout.as_secs()
                )));
            }
        };
        let Some(Event::Ready {
            n_ctx_slot,
            slots,
            load_ms,
            model_bytes,
            ..
        }) = ready
        else {
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            // Give the stderr forwarder a moment to collect the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tail = stderr_tail
                .lock()
                .map(|t| t.join(" | "))
                .unwrap_or_default();
            return Err(load_failed(format!("the worker exited ({status}): {tail}")));
        };
        tracing::info!(model = %model.name, pid, load_ms, n_ctx_slot, slots, "model loaded");

        let limit = (config.slots + config.queue) as usize;
        let shared = Arc::new(Shared {
            name: model.name.clone(),
            routes: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            running: AtomicUsize::new(0),
            expires: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            metrics,
        });
        spawn_event_reader(shared.clone(), stdout, stderr_tail);
        Ok(LlmWorker {
            shared,
            commands: spawn_command_writer(stdin),
            child: tokio::sync::Mutex::new(child),
            pid,
            admission: Arc::new(Semaphore::new(limit)),
            limit,
            slots,
            n_ctx_slot,
            size_bytes: model_bytes,
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

    /// Whether the idle keep-alive has run out.
    pub fn is_expired(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) == 0
            && self
                .shared
                .expires
                .lock()
                .ok()
                .and_then(|e| *e)
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Restarts the idle clock with `keep_alive`.
    pub fn touch(&self, keep_alive: KeepAlive) {
        set_expiry(&self.shared, keep_alive);
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .send(command)
            .map_err(|_| self.crashed("its input pipe is closed".into()))
    }

    fn crashed(&self, detail: String) -> EngineError {
        EngineError::EngineCrashed {
            model: self.shared.name.clone(),
            detail,
        }
    }

    fn route(&self, id: u64) -> mpsc::UnboundedReceiver<Result<Event, EngineError>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .routes
            .lock()
            .expect("routes lock")
            .insert(id, tx);
        rx
    }

    /// Starts generation `id`, subject to admission control.
    pub async fn generate(
        &self,
        id: u64,
        prompt: Prompt,
        params: SamplingParams,
        timeout: Duration,
        keep_alive: KeepAlive,
        load_time: Duration,
    ) -> Result<Generation, EngineError> {
        let permit = self.admission.clone().try_acquire_owned().map_err(|_| {
            // A slot frees roughly every few seconds with small models; say so.
            EngineError::Busy {
                model: self.shared.name.clone(),
                in_flight: self.limit,
                limit: self.limit,
                retry_after_secs: 2,
            }
        })?;
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let rx = self.route(id);
        let guard = InFlight {
            shared: self.shared.clone(),
            keep_alive,
            _permit: permit,
        };
        if let Err(e) = self.send(Command::Generate { id, prompt, params }) {
            self.shared.routes.lock().expect("routes lock").remove(&id);
            return Err(e);
        }
        Ok(Generation {
            id,
            rx,
            commands: self.commands.clone(),
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            started: false,
            finished: false,
            load_time,
            _in_flight: guard,
            shared: self.shared.clone(),
            prompt_tokens: 0,
            tokens_seen: 0,
            on_finish: None,
        })
    }

    /// Counts a prompt's tokens.
    pub async fn count(&self, id: u64, prompt: Prompt) -> Result<u32, EngineError> {
        let mut rx = self.route(id);
        self.send(Command::Count { id, prompt })?;
        match rx.recv().await {
            Some(Ok(Event::Counted { prompt_tokens, .. })) => Ok(prompt_tokens),
            Some(Ok(Event::Failed { error, .. })) => Err(worker_error(error)),
            Some(Err(e)) => Err(e),
            Some(Ok(other)) => Err(EngineError::Decode(format!("unexpected event {other:?}"))),
            None => Err(self.crashed("the worker stopped answering".into())),
        }
    }

    /// Asks the worker to exit, then kills it if it does not.
    pub async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
        let mut child = self.child.lock().await;
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        self.shared.alive.store(false, Ordering::Release);
    }

    /// How `/api/ps` and `status` show it.
    pub fn describe(&self) -> LoadedModel {
        let in_flight = self.shared.in_flight.load(Ordering::Acquire);
        let running = self.shared.running.load(Ordering::Acquire).min(in_flight);
        let expires_at = if in_flight == 0 {
            self.shared
                .expires
                .lock()
                .ok()
                .and_then(|e| *e)
                .map(|deadline| {
                    let from_now = deadline.saturating_duration_since(Instant::now());
                    (jiff::Timestamp::now() + from_now).to_string()
                })
        } else {
            None
        };
        LoadedModel {
            name: self.shared.name.clone(),
            pid: self.pid,
            size_bytes: self.size_bytes,
            context_length: self.n_ctx_slot,
            slots: self.slots,
            running,
            waiting: in_flight - running,
            expires_at,
        }
    }
}

/// Keeps a request counted as in flight (and its admission permit held) until dropped.
struct InFlight {
    shared: Arc<Shared>,
    keep_alive: KeepAlive,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        set_expiry(&self.shared, self.keep_alive);
    }
}

fn set_expiry(shared: &Shared, keep_alive: KeepAlive) {
    if let Ok(mut expires) = shared.expires.lock() {
        *expires = match keep_alive {
            KeepAlive::For(d) => Some(Instant::now() + d),
            KeepAlive::Forever => None,
        };
    }
}

/// A generation in progress. Yields [`GenEvent`]s until `Done`; dropping it before
/// then cancels the generation in the worker, which frees the slot within one decode
/// step.
pub struct Generation {
    id: u64,
    rx: mpsc::UnboundedReceiver<Result<Event, EngineError>>,
    commands: mpsc::UnboundedSender<Command>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    started: bool,
    finished: bool,
    load_time: Duration,
    shared: Arc<Shared>,
    _in_flight: InFlight,
    prompt_tokens: u32,
    tokens_seen: u32,
    on_finish: Option<FinishHook>,
}

/// Called once when a generation ends, however it ends, with (prompt tokens, generated
/// tokens) — for usage accounting.
pub type FinishHook = Box<dyn FnOnce(u32, u32) + Send>;

impl Generation {
    /// How long loading the model took before this request (zero when it was loaded).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Registers the [`FinishHook`].
    pub fn on_finish(&mut self, hook: FinishHook) {
        self.on_finish = Some(hook);
    }

    fn report(&mut self, prompt: u32, generated: u32) {
        if let Some(hook) = self.on_finish.take() {
            hook(prompt, generated);
        }
    }

    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<GenEvent, EngineError>> {
        if self.finished {
            return None;
        }
        let event = match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Err(_) => {
                self.fail();
                let _ = self.commands.send(Command::Cancel { id: self.id });
                return Some(Err(EngineError::Timeout {
                    secs: self.timeout.as_secs(),
                }));
            }
            Ok(None) => {
                self.fail();
                return Some(Err(EngineError::EngineCrashed {
                    model: self.shared.name.clone(),
                    detail: "the worker stopped answering".into(),
                }));
            }
            Ok(Some(event)) => event,
        };
        let event = match event {
            Err(e) => {
                self.fail();
                return Some(Err(e));
            }
            Ok(event) => event,
        };
        Some(match event {
            Event::Started { prompt_tokens, .. } => {
                self.started = true;
                self.prompt_tokens = prompt_tokens;
                self.shared.running.fetch_add(1, Ordering::AcqRel);
                Ok(GenEvent::Started { prompt_tokens })
            }
            Event::Token { text, .. } => {
                self.tokens_seen += 1;
                Ok(GenEvent::Token(text))
            }
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                self.finish();
                let outcome = match finish_reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                    FinishReason::Cancelled => "cancelled",
                };
                self.report(usage.prompt_tokens, usage.completion_tokens);
                self.shared.metrics.llm_request(
                    &self.shared.name,
                    outcome,
                    usage.prompt_tokens.into(),
                    usage.cached_tokens.into(),
                    usage.completion_tokens.into(),
                );
                Ok(GenEvent::Done {
                    finish_reason,
                    usage,
                })
            }
            Event::Failed { error, .. } => {
                self.fail();
                Err(worker_error(error))
            }
            Event::Ready { .. } | Event::Counted { .. } => {
                self.finish();
                Err(EngineError::Decode(format!("unexpected event {event:?}")))
            }
        })
    }

    fn fail(&mut self) {
        if !self.finished {
            self.report(self.prompt_tokens, self.tokens_seen);
            self.shared
                .metrics
                .llm_request(&self.shared.name, "error", 0, 0, 0);
        }
        self.finish();
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            if self.started {
                self.shared.running.fetch_sub(1, Ordering::AcqRel);
            }
            self.shared
                .routes
                .lock()
                .expect("routes lock")
                .remove(&self.id);
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away: stop generating for it.
            let _ = self.commands.send(Command::Cancel { id: self.id });
            self.report(self.prompt_tokens, self.tokens_seen);
            self.shared
                .metrics
                .llm_request(&self.shared.name, "cancelled", 0, 0, 0);
            self.finish();
        }
    }
}

fn worker_error(error: WorkerError) -> EngineError {
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
        WorkerError::Decode { message } => EngineError::Decode(message),
    }
}

/// Writes commands to the worker's stdin, one JSON line each.
fn spawn_command_writer(mut stdin: ChildStdin) -> mpsc::UnboundedSender<Command> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    tokio::spawn(async move {
        while let Some(command) = rx.recv().await {
            let mut line = serde_json::to_vec(&command).expect("commands serialise");
            line.push(b'\n');
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break; // the reader notices the exit and fails pending requests
            }
        }
    });
    tx
}

/// Routes the worker's events to their requests; on EOF (exit or crash) fails every
/// pending request with `EngineCrashed` and marks the worker dead.
fn spawn_event_reader(
    shared: Arc<Shared>,
    mut stdout: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let event: Event = match serde_json::from_str(&line) {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(model = %shared.name, error = %e, "unreadable worker event");
                    continue;
                }
            };
            let id = match &event {
                Event::Started { id, .. }
                | Event::Token { id, .. }
                | Event::Done { id, .. }
                | Event::Counted { id, .. }
                | Event::Failed { id, .. } => *id,
                Event::Ready { .. } => continue,
            };
            let terminal = matches!(
                event,
                Event::Done { .. } | Event::Failed { .. } | Event::Counted { .. }
            );
            let mut routes = shared.routes.lock().expect("routes lock");
            if let Some(route) = routes.get(&id) {
                let _ = route.send(Ok(event));
            }
            if terminal {
                routes.remove(&id);
            }
        }
        shared.alive.store(false, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tail = stderr_tail
            .lock()
            .map(|t| t.join(" | "))
            .unwrap_or_default();
        let detail = if tail.is_empty() {
            "the worker process exited".to_string()
        } else {
            format!("the worker process exited: {tail}")
        };
        tracing::error!(model = %shared.name, %detail, "inference worker died");
        let routes: Vec<Route> = shared
            .routes
            .lock()
            .expect("routes lock")
            .drain()
            .map(|(_, r)| r)
            .collect();
        for route in routes {
            let _ = route.send(Err(EngineError::EngineCrashed {
                model: shared.name.clone(),
                detail: detail.clone(),
            }));
        }
    });
}

/// Forwards the worker's stderr into the daemon's log and keeps the last lines for
/// error messages.
fn spawn_stderr_forwarder(
    model: &str,
    stderr: tokio::process::ChildStderr,
) -> Arc<Mutex<Vec<String>>> {
    let tail = Arc::new(Mutex::new(Vec::new()));
    let keep = tail.clone();
    let model = model.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(model = %model, "worker: {line}");
            if let Ok(mut tail) = keep.lock() {
                if tail.len() == 8 {
                    tail.remove(0);
                }
                tail.push(line);
            }
        }
    });
    tail
}
